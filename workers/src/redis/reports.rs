//! Workers' reports, carried back to the orchestrators on a Redis stream.
//!
//! A report is not an apalis job: as one, it cost as much Redis work as the
//! job it reported on (a push and a promotion, then a fetch, a lease and an
//! acknowledgement script at the orchestrator, and the consumer's
//! heartbeats), so every step paid for two job cycles (BENCHMARKS.md). On a
//! stream, a worker reports with one `XADD`; an orchestrator reads reports
//! in batches with a blocking `XREADGROUP` and acknowledges and deletes
//! each batch it has applied in one round trip.
//!
//! Delivery is at least once, through the stream's consumer group: a report
//! read by an orchestrator stays in the group's pending list until that
//! orchestrator has applied it. One left there — its orchestrator died, or
//! could not apply it because the database was away — is claimed by any
//! orchestrator of the group once it has waited as long as a worker's
//! missed heartbeats, and applied again. The orchestrator records a
//! report applied twice once: each attempt finishes once.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use apalis::prelude::BoxDynError;
use futures_channel::mpsc;
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimOptions, StreamId, StreamReadOptions, StreamReadReply};
use tokio::sync::watch;

use super::{Completion, RedisError, RedisSettings, connect, supervise, until};
use crate::contract::Outcome;
use crate::pool::Reporter;

/// The consumer group every orchestrator reads reports in.
const GROUP: &str = "orchestrators";

/// The field of a stream entry holding the report, as JSON.
const FIELD: &str = "report";

/// Longest a read waits for a report: how long a stopping consumer may
/// take to notice.
const READ_WAIT: Duration = Duration::from_millis(500);

/// How long a read that found fewer reports than a batch waits for more
/// before handing them over. A report applied alone costs the database
/// nearly what a batch does; at a moderate load, waiting this long for
/// company cut the work per report enough that the dispatch latency at
/// 300 steps/s fell (BENCHMARKS.md), the wait included.
const LINGER: Duration = Duration::from_millis(2);

/// Reports claimed from the pending list per round trip.
const CLAIM_PAGE: usize = 100;

/// On shutdown, how long the reports already read may take to be applied
/// and acknowledged. Those still unapplied after it stay pending, and
/// another orchestrator applies them.
const DRAIN: Duration = Duration::from_secs(10);

impl RedisSettings {
    /// The stream carrying reports to the orchestrators.
    pub fn reports(&self) -> String {
        format!("{}:reports", self.prefix)
    }

    /// How long a report read by an orchestrator and not acknowledged
    /// waits before another may claim it: as long as a worker's jobs wait
    /// for orphan recovery.
    fn reclaim_after(&self) -> Duration {
        self.heartbeat * u32::try_from(self.missed_heartbeats).unwrap_or(u32::MAX)
    }
}

/// Reports outcomes by adding them to the reports stream.
#[derive(Debug, Clone)]
pub struct RedisReporter {
    conn: ConnectionManager,
    stream: String,
}

impl RedisReporter {
    pub fn new(conn: ConnectionManager, settings: &RedisSettings) -> Self {
        RedisReporter {
            conn,
            stream: settings.reports(),
        }
    }
}

impl Reporter for RedisReporter {
    fn report(&self, attempt_id: String, outcome: Outcome) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let completion = Completion {
                attempt_id,
                outcome,
            };
            // Redis away: the report is lost, and the orchestrator's attempt
            // timer retries the job. Retrying here could block the slot.
            let added = match serde_json::to_string(&completion) {
                Ok(body) => {
                    let mut conn = self.conn.clone();
                    conn.xadd::<_, _, _, _, String>(&self.stream, "*", &[(FIELD, body)])
                        .await
                        .map(drop)
                        .map_err(BoxDynError::from)
                }
                Err(e) => Err(BoxDynError::from(e)),
            };
            if let Err(e) = added {
                tracing::warn!(error = %e, "outcome could not be reported; the attempt will time out");
            }
        })
    }
}

/// A report as read from the stream: its entry id, and the report, `None`
/// if it could not be read.
type Entry = (String, Option<Completion>);

/// Reports handed to `apply` together, at most: reports that have piled up
/// while the orchestrator was busy are applied in one go (one transaction
/// on PostgreSQL), which is what lets it catch up.
pub const REPORTS_PER_BATCH: usize = 16;

/// Runs an orchestrator's consumer of the reports stream until `stopped`
/// turns true: `apply` applies the reports that have arrived, up to
/// [`REPORTS_PER_BATCH`] together, `at_once` batches at a time; an error
/// leaves its report pending, to be delivered again. `name`
/// must be unique to the process. Reads block on a connection of their
/// own to `url`; `conn` acknowledges and claims. A consumer that fails (a
/// panic in `apply`, Redis away at its start) is started again.
pub async fn run_completion_consumer<F>(
    name: String,
    url: &str,
    conn: ConnectionManager,
    settings: &RedisSettings,
    at_once: usize,
    apply: Arc<F>,
    stopped: watch::Receiver<bool>,
) -> Result<(), BoxDynError>
where
    F: Fn(Vec<Completion>) -> BoxFuture<'static, Vec<Result<(), BoxDynError>>>
        + Send
        + Sync
        + 'static,
{
    let at_once = at_once.max(1);
    supervise("reports consumer", stopped, |generation, stopped| {
        let name = format!("{name}-{generation}");
        consume(
            name,
            url,
            conn.clone(),
            settings,
            at_once,
            Arc::clone(&apply),
            stopped,
        )
    })
    .await
}

async fn consume<F>(
    name: String,
    url: &str,
    conn: ConnectionManager,
    settings: &RedisSettings,
    at_once: usize,
    apply: Arc<F>,
    stopped: watch::Receiver<bool>,
) -> Result<(), BoxDynError>
where
    F: Fn(Vec<Completion>) -> BoxFuture<'static, Vec<Result<(), BoxDynError>>>
        + Send
        + Sync
        + 'static,
{
    let reader = Reader {
        blocking: connect(url, settings).await?,
        conn: conn.clone(),
        stream: settings.reports(),
        name,
        // Never 0: `BLOCK 0` waits for ever.
        wait: READ_WAIT
            .min(settings.response_timeout / 2)
            .max(Duration::from_millis(1)),
        reclaim_after: settings.reclaim_after(),
        batch: at_once * REPORTS_PER_BATCH,
    };
    // Entries read wait here while `at_once` batches are being applied;
    // each is already pending for this consumer.
    let (tx, rx) = mpsc::channel::<Entry>(at_once * REPORTS_PER_BATCH);
    let stream = settings.reports();
    let applying = tokio::spawn(async move {
        let mut conn = conn;
        let mut settled = rx
            .ready_chunks(REPORTS_PER_BATCH)
            .map(|entries: Vec<Entry>| apply_batch(Arc::clone(&apply), entries))
            .buffer_unordered(at_once)
            // Whatever has been applied by the time the last batch is
            // acknowledged is acknowledged together.
            .ready_chunks(at_once);
        while let Some(batches) = settled.next().await {
            let ids: Vec<String> = batches.into_iter().flatten().collect();
            acknowledge(&mut conn, &stream, &ids).await;
        }
    });
    reader.run(tx, stopped).await;
    match tokio::time::timeout(DRAIN, applying).await {
        Ok(finished) => Ok(finished?),
        Err(_) => {
            tracing::warn!(
                "reports still being applied at shutdown stay pending for another orchestrator"
            );
            Ok(())
        }
    }
}

/// Applies the reports of `entries` together; returns the entry ids to
/// acknowledge: those applied, and those that could not be read.
async fn apply_batch<F>(apply: Arc<F>, entries: Vec<Entry>) -> Vec<String>
where
    F: Fn(Vec<Completion>) -> BoxFuture<'static, Vec<Result<(), BoxDynError>>> + ?Sized,
{
    let mut settled = Vec::with_capacity(entries.len());
    let mut ids = Vec::with_capacity(entries.len());
    let mut reports = Vec::with_capacity(entries.len());
    for (id, report) in entries {
        match report {
            Some(report) => {
                ids.push(id);
                reports.push(report);
            }
            None => {
                // Kept, it would be claimed and fail again forever; its
                // attempt times out and is retried.
                tracing::error!(entry = %id, "unreadable report dropped");
                settled.push(id);
            }
        }
    }
    if reports.is_empty() {
        return settled;
    }
    let results = apply(reports).await;
    if results.len() != ids.len() {
        tracing::error!(
            reports = ids.len(),
            results = results.len(),
            "reports applied without a result each; they will be delivered again"
        );
        return settled;
    }
    for (id, result) in ids.into_iter().zip(results) {
        match result {
            Ok(()) => settled.push(id),
            Err(e) => {
                tracing::warn!(entry = %id, error = %e, "report not applied; it will be delivered again")
            }
        }
    }
    settled
}

/// Acknowledges applied reports and deletes them from the stream, so that
/// it holds only reports not yet applied. A failure leaves them pending:
/// they are claimed and applied again later, and recorded once.
async fn acknowledge(conn: &mut ConnectionManager, stream: &str, ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    let done: Result<(), _> = redis::pipe()
        .atomic()
        .xack(stream, GROUP, ids)
        .ignore()
        .xdel(stream, ids)
        .ignore()
        .query_async(conn)
        .await;
    if let Err(e) = done {
        tracing::warn!(error = %e, reports = ids.len(), "applied reports could not be acknowledged; they will be applied again");
    }
}

/// The reading half of a consumer.
struct Reader {
    /// Blocking reads hold their connection: acknowledgements and claims
    /// go on `conn`, so they never queue behind a read.
    blocking: ConnectionManager,
    conn: ConnectionManager,
    stream: String,
    name: String,
    wait: Duration,
    reclaim_after: Duration,
    batch: usize,
}

impl Reader {
    /// Reads new reports, and now and then claims those left pending too
    /// long, into `tx`, until `stopped` turns true.
    async fn run(mut self, mut tx: mpsc::Sender<Entry>, stopped: watch::Receiver<bool>) {
        const FIRST_PAUSE: Duration = Duration::from_millis(100);
        const LONGEST_PAUSE: Duration = Duration::from_secs(30);
        let mut pause = FIRST_PAUSE;
        // At once on start: a predecessor may have left reports pending.
        let mut next_claim = tokio::time::Instant::now();
        while !*stopped.borrow() {
            let now = tokio::time::Instant::now();
            let entries = if now >= next_claim {
                next_claim = now + self.reclaim_after / 2;
                self.claim().await
            } else {
                self.read().await
            };
            let entries = match entries {
                Ok(entries) => {
                    pause = FIRST_PAUSE;
                    entries
                }
                Err(e) => {
                    if e.code() == Some("NOGROUP") {
                        // A new stream, or a Redis that lost its data.
                        match self.create_group().await {
                            Ok(()) => continue,
                            Err(e) => {
                                tracing::warn!(error = %e, "the reports group could not be created")
                            }
                        }
                    } else {
                        tracing::warn!(error = %e, "reports could not be read; trying again");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = until(stopped.clone()) => return,
                    }
                    pause = (pause * 2).min(LONGEST_PAUSE);
                    continue;
                }
            };
            // A stop is heard even while every slot is held by a report
            // being applied: what was not handed over stays pending, for
            // another orchestrator.
            for entry in entries {
                tokio::select! {
                    sent = tx.send(entry) => {
                        if sent.is_err() {
                            return;
                        }
                    }
                    _ = until(stopped.clone()) => return,
                }
            }
        }
    }

    async fn read(&mut self) -> redis::RedisResult<Vec<Entry>> {
        let waiting = usize::try_from(self.wait.as_millis()).unwrap_or(usize::MAX);
        let mut entries = self.read_some(self.batch, Some(waiting)).await?;
        if !entries.is_empty() && entries.len() < REPORTS_PER_BATCH {
            tokio::time::sleep(LINGER).await;
            let more = self.read_some(self.batch - entries.len(), None).await?;
            entries.extend(more);
        }
        Ok(entries)
    }

    /// Reads up to `count` new reports, waiting up to `block` ms for the
    /// first, or not at all.
    async fn read_some(
        &mut self,
        count: usize,
        block: Option<usize>,
    ) -> redis::RedisResult<Vec<Entry>> {
        let mut options = StreamReadOptions::default()
            .group(GROUP, &self.name)
            .count(count);
        if let Some(ms) = block {
            options = options.block(ms);
        }
        let reply: Option<StreamReadReply> = self
            .blocking
            .xread_options(&[&self.stream], &[">"], &options)
            .await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(entry)
            .collect())
    }

    /// Takes over the reports that have been pending longer than
    /// `reclaim_after`, whoever read them.
    async fn claim(&mut self) -> redis::RedisResult<Vec<Entry>> {
        let idle = u64::try_from(self.reclaim_after.as_millis()).unwrap_or(u64::MAX);
        let mut claimed = Vec::new();
        let mut start = "0-0".to_owned();
        loop {
            let reply: redis::streams::StreamAutoClaimReply = self
                .conn
                .xautoclaim_options(
                    &self.stream,
                    GROUP,
                    &self.name,
                    idle,
                    &start,
                    StreamAutoClaimOptions::default().count(CLAIM_PAGE),
                )
                .await?;
            claimed.extend(reply.claimed.into_iter().map(entry));
            if reply.next_stream_id == "0-0" {
                break;
            }
            start = reply.next_stream_id;
        }
        if !claimed.is_empty() {
            tracing::info!(
                reports = claimed.len(),
                "claimed reports left pending by a stopped or failing orchestrator"
            );
        }
        Ok(claimed)
    }

    /// Creates the group, reading the stream from its start: reports added
    /// before any orchestrator ran are applied too.
    async fn create_group(&mut self) -> redis::RedisResult<()> {
        let created: redis::RedisResult<()> = self
            .conn
            .xgroup_create_mkstream(&self.stream, GROUP, "0")
            .await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }
}

fn entry(id: StreamId) -> Entry {
    let report = id
        .get::<String>(FIELD)
        .and_then(|body| serde_json::from_str(&body).ok());
    (id.id, report)
}

/// Forgets consumers of the reports group that hold no report: each
/// orchestrator start reads under a new name, and Redis keeps every name
/// it has delivered to. Only those that have not been delivered a report
/// for a while are looked at; a consumer is removed only if, at that
/// instant, it holds none (removing one would drop its pending reports),
/// and one still running simply comes back with its next report.
pub async fn forget_gone_consumers(
    conn: &mut ConnectionManager,
    settings: &RedisSettings,
) -> Result<usize, RedisError> {
    let stream = settings.reports();
    let quiet_for = settings.reclaim_after() * 2;
    let consumers: redis::RedisResult<redis::streams::StreamInfoConsumersReply> =
        conn.xinfo_consumers(&stream, GROUP).await;
    let consumers = match consumers {
        Ok(c) => c.consumers,
        // No stream or no group yet: nothing to forget.
        Err(e)
            if e.code() == Some("NOGROUP")
                || e.detail().is_some_and(|d| d.contains("no such key")) =>
        {
            return Ok(0);
        }
        Err(e) => return Err(RedisError::Sweep(Box::new(e))),
    };
    let quiet: Vec<String> = consumers
        .into_iter()
        .filter(|c| {
            c.pending == 0
                && Duration::from_millis(u64::try_from(c.idle).unwrap_or(u64::MAX)) >= quiet_for
        })
        .map(|c| c.name)
        .collect();
    if quiet.is_empty() {
        return Ok(0);
    }
    FORGET_IF_IDLE
        .key(&stream)
        .arg(GROUP)
        .arg(&quiet)
        .invoke_async(conn)
        .await
        .map_err(|e| RedisError::Sweep(Box::new(e)))
}

/// Removes the consumers named after the group (`ARGV[1]`) that hold no
/// pending report, checked and removed in one step.
static FORGET_IF_IDLE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        local removed = 0
        for i = 2, #ARGV do
            local pending = redis.call('xpending', KEYS[1], ARGV[1], '-', '+', 1, ARGV[i])
            if #pending == 0 then
                redis.call('xgroup', 'delconsumer', KEYS[1], ARGV[1], ARGV[i])
                removed = removed + 1
            end
        end
        return removed
        ",
    )
});
