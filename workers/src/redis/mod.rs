//! The Redis transport: one apalis-redis queue per Docket queue for jobs,
//! and a stream of the workers' reports that the orchestrators consume
//! ([`reports`]).
//!
//! apalis-redis 1.0.0's defaults are unsafe for us (measured in
//! shared/notes/apalis-1.0.md), so every setting is explicit here:
//! - a worker fetches one job per slot (`batch_size(1)`): with a batch
//!   larger than its free slots, a busy worker stops heartbeating and
//!   another worker re-runs all its jobs;
//! - jobs take no leases and no events are published (`lock_tasks(false)`,
//!   `emit_events(false)`): a lease cost a script per job and held the
//!   handler back until apalis's small event channel had room, and nothing
//!   reads either (orphan recovery goes by the worker's in-flight set);
//! - heartbeats and orphan recovery are tuned to seconds, not minutes;
//! - an idle queue is polled every 200 ms (its fetchers take turns)
//!   instead of at each heartbeat, and its idle workers are woken at once
//!   by a message published after each push ([`RedisSettings::wake_url`]),
//!   so a job waits for no poll;
//! - a worker's name is unique per process start: a reused name is refused
//!   for one heartbeat and hides dead workers from orphan recovery;
//! - handlers always return `Ok`: the outcome travels on the reports
//!   stream, and the orchestrator, not apalis, decides about retries
//!   (apalis-redis would retry up to 25 times on its own).
//! - jobs are sealed ([`crate::sealing`]): Redis never holds personal
//!   data in clear.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use apalis::prelude::{
    BackendExt, BoxDynError, Data, Task, TaskBuilder, TaskId, TaskSink, WorkerBuilder,
    WorkerBuilderExt,
};
use apalis_core::backend::ext::poll_strategy::Strategy;
use apalis_redis::{Config, ConnectionManager, RedisStorage};
use futures_util::task::AtomicWaker;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::contract::{Job, Outcome};
use crate::pool::{Shared, execute};
use crate::sealing::{Keyring, Sealed};

mod reports;
pub use reports::{
    REPORTS_PER_BATCH, RedisReporter, forget_gone_consumers, run_completion_consumer,
};

/// How the pool talks to Redis.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// Prefix of every key, so several deployments (or tests) can share a
    /// Redis without seeing each other's jobs.
    pub prefix: String,
    pub heartbeat: Duration,
    /// Missed heartbeats after which a worker's jobs are recovered.
    pub missed_heartbeats: usize,
    pub poll: Duration,
    /// Timeout of each Redis command.
    pub response_timeout: Duration,
    /// The Redis (the same server as the connection's) to subscribe to for
    /// the message published after each push ([`push_job`]), so that an
    /// idle worker fetches the job at once rather than at its next poll.
    /// `None`: polling only.
    pub wake_url: Option<String>,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            prefix: "docket".to_owned(),
            heartbeat: Duration::from_secs(5),
            missed_heartbeats: 2,
            poll: Duration::from_millis(200),
            response_timeout: Duration::from_secs(5),
            wake_url: None,
        }
    }
}

/// A worker's report, as it travels back on the reports stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub attempt_id: String,
    pub outcome: Outcome,
}

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("cannot connect to Redis")]
    Connect(#[source] apalis_redis::RedisError),
    #[error("Redis refused a job")]
    Push(#[source] BoxDynError),
    #[error("finished jobs could not be swept from Redis")]
    Sweep(#[source] BoxDynError),
}

impl RedisSettings {
    fn config(&self, queue: &str) -> Config {
        Config::default()
            .queue(format!("{}:{queue}", self.prefix))
            .batch_size(1)
            .lock_tasks(false)
            .emit_events(false)
            .heartbeat_interval(self.heartbeat)
            .missed_heartbeats(self.missed_heartbeats)
    }

    /// The apalis queue carrying the (sealed) jobs of Docket queue `queue`.
    pub fn jobs(&self, conn: ConnectionManager, queue: &str) -> RedisStorage<Sealed> {
        RedisStorage::new(conn).with_config(self.config(&format!("jobs:{queue}")))
    }

    /// When an idle fetcher of `config`'s queue, the `fetcher`th of
    /// `fetchers`, looks for a job: as soon as one is pushed (with
    /// [`RedisSettings::wake_url`]), and on its turn of the queue's poll.
    /// The subscription ends when `stopped` turns true.
    fn polling(
        &self,
        config: &Config,
        stopped: &watch::Receiver<bool>,
        fetcher: usize,
        fetchers: usize,
    ) -> Strategy {
        let strategy = Strategy::new();
        let strategy = match &self.wake_url {
            Some(url) => strategy.stream(Wake::on_push(
                url.clone(),
                wake_channel(config),
                stopped.clone(),
            )),
            None => strategy,
        };
        strategy.stream(PollTurns::new(self.poll, fetcher, fetchers))
    }
}

/// The idle polls of one of a queue's fetchers. The fetchers take turns,
/// one `poll` apart, so that the process looks at an idle queue once per
/// `poll` however many fetchers it has: each polling at the full rate made
/// four fetch scripts per interval. Any fetcher's fetch takes any ready job,
/// so a job whose wake-up was lost still waits one `poll` at most while
/// the fetchers are idle.
struct PollTurns(tokio::time::Interval);

impl PollTurns {
    fn new(poll: Duration, fetcher: usize, fetchers: usize) -> PollTurns {
        // tokio's intervals refuse a zero period.
        let poll = poll.max(Duration::from_millis(1));
        let period = poll.saturating_mul(u32::try_from(fetchers.max(1)).unwrap_or(u32::MAX));
        let first = poll.saturating_mul(u32::try_from(fetcher).unwrap_or(u32::MAX));
        let now = tokio::time::Instant::now();
        let start = now.checked_add(first).unwrap_or(now);
        let mut turns = tokio::time::interval_at(start, period);
        // A fetcher busy through its turns looks once when it is idle again,
        // not once per turn it missed.
        turns.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        PollTurns(turns)
    }
}

impl Stream for PollTurns {
    type Item = ();

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<()>> {
        self.0.poll_tick(cx).map(|_| Some(()))
    }
}

/// Where [`promote`] tells a queue's idle workers that a job was pushed.
///
/// apalis-redis's push script publishes `tasks:…:available` only for a job
/// it puts straight on the ready list, but a pushed task always carries its
/// run time (now), so apalis puts it in the scheduled set and the fetch
/// script moves it over: that message never comes. This channel is ours.
fn wake_channel(config: &Config) -> String {
    format!("{}:pushed", config.active_jobs_list())
}

/// Moves tasks just pushed from the scheduled set to the ready list, and
/// tells the queue's idle workers. The message is only a hint: lost, it
/// costs an idle worker one poll interval.
static PROMOTE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        local promoted = 0
        for i = 2, #ARGV do
            if redis.call('zrem', KEYS[1], ARGV[i]) == 1 then
                redis.call('rpush', KEYS[2], ARGV[i])
                promoted = promoted + 1
            end
        end
        if promoted > 0 then
            redis.call('del', KEYS[3])
            redis.call('lpush', KEYS[3], 1)
        end
        redis.call('publish', ARGV[1], 1)
        return promoted
        ",
    )
});

/// A task to push so that it is ready at once, whatever the clocks say,
/// and its id, to hand to [`promote`] once pushed.
///
/// apalis-redis stamps every pushed task with the pusher's clock and puts
/// it in its scheduled set; a fetcher moves it to the ready list once the
/// *fetcher's* clock has passed that stamp. A pusher whose clock runs
/// minutes ahead of the fetcher's would hold every job back by as much
/// (measured: the `workers_with_skewed_clocks` chaos scenario). So the task
/// gets an id of ours and is promoted by that id right after the push.
fn ready_task<T>(item: T) -> (Task<T>, String) {
    let id = uuid::Uuid::now_v7().to_string();
    let task = TaskBuilder::new(item)
        .task_id(TaskId::from(id.clone()))
        .build();
    (task, id)
}

/// Moves tasks `ids`, just pushed, to the ready list and wakes the queue's
/// idle workers. Should this fail, the tasks are still there, and are
/// promoted when the fetcher's clock catches up with the pusher's.
async fn promote<T>(storage: &mut RedisStorage<T>, ids: &[String]) {
    let config = storage.get_config();
    let keys = (
        config.scheduled_jobs_set(),
        config.active_jobs_list(),
        config.signal_list(),
        wake_channel(config),
    );
    let promoted: Result<i64, _> = PROMOTE
        .key(keys.0)
        .key(keys.1)
        .key(keys.2)
        .arg(keys.3)
        .arg(ids)
        .invoke_async(storage.get_connection())
        .await;
    if let Err(e) = promoted {
        tracing::debug!(error = %e, "pushed tasks wait for the fetcher's clock");
    }
}

/// Wakes an idle worker when a job is pushed onto its queue. A stream that
/// yields once for any number of pushes since it was last polled: the
/// worker then fetches until the queue is empty.
///
/// Every subscriber hears every push: with many workers on one queue,
/// each push wakes all of them and one gets the job. Polling stays on
/// beside it, so a message lost while the subscription reconnects costs
/// one poll interval, no more.
#[derive(Debug, Clone)]
struct Wake(Arc<WakeInner>);

#[derive(Debug, Default)]
struct WakeInner {
    waker: AtomicWaker,
    pushed: AtomicBool,
}

impl Wake {
    fn on_push(url: String, channel: String, mut stopped: watch::Receiver<bool>) -> Wake {
        let wake = Wake(Arc::new(WakeInner::default()));
        // The subscription ends with the worker that polls this stream.
        let worker = Arc::downgrade(&wake.0);
        tokio::spawn(async move {
            let signal = |worker: &Weak<WakeInner>| match worker.upgrade() {
                Some(inner) => {
                    Wake(inner).signal();
                    true
                }
                None => false,
            };
            loop {
                let subscribed = async {
                    let client: apalis_redis::Client = apalis_redis::Client::open(url.as_str())?;
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe(&channel).await?;
                    // Pushed while (re)subscribing: look once now.
                    if !signal(&worker) {
                        return Ok::<bool, redis::RedisError>(false);
                    }
                    let mut messages = pubsub.into_on_message();
                    while messages.next().await.is_some() {
                        if !signal(&worker) {
                            return Ok(false);
                        }
                    }
                    Ok(true)
                };
                tokio::select! {
                    result = subscribed => match result {
                        Ok(false) => return,
                        Ok(true) => {}
                        Err(e) => tracing::debug!(error = %e, "push notifications unavailable; polling meanwhile"),
                    },
                    _ = stopped.wait_for(|s| *s) => return,
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stopped.wait_for(|s| *s) => return,
                }
                if worker.strong_count() == 0 {
                    return;
                }
            }
        });
        wake
    }

    fn signal(&self) {
        self.0.pushed.store(true, Ordering::Release);
        self.0.waker.wake();
    }
}

impl Stream for Wake {
    type Item = ();

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<()>> {
        if self.0.pushed.swap(false, Ordering::AcqRel) {
            return Poll::Ready(Some(()));
        }
        self.0.waker.register(cx.waker());
        if self.0.pushed.swap(false, Ordering::AcqRel) {
            return Poll::Ready(Some(()));
        }
        Poll::Pending
    }
}

/// This process's clock is too far from Redis's to take part in a pool.
#[derive(Debug)]
pub struct ClockSkew {
    /// Seconds this clock is ahead of Redis's (negative: behind).
    pub offset: f64,
    pub allowed: Duration,
}

impl std::fmt::Display for ClockSkew {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "this machine's clock is {:.1} s {} Redis's, more than the {:.1} s allowed: \
             workers stamp their heartbeats with their own clocks and compare them, so with \
             clocks this far apart they take each other for dead and run each other's jobs \
             again; set the clock right (NTP) and start again",
            self.offset.abs(),
            if self.offset < 0.0 {
                "behind"
            } else {
                "ahead of"
            },
            self.allowed.as_secs_f64()
        )
    }
}

impl std::error::Error for ClockSkew {}

impl RedisSettings {
    /// How far a member's wall clock may be from Redis's. apalis-redis takes
    /// a worker for dead when its last heartbeat, stamped with its own clock,
    /// is `heartbeat × missed_heartbeats` old by another worker's clock: two
    /// clocks this far from Redis's, in opposite directions, still leave a
    /// heartbeat's margin.
    pub fn allowed_clock_skew(&self) -> Duration {
        let missed = u32::try_from(self.missed_heartbeats.saturating_sub(1)).unwrap_or(u32::MAX);
        (self.heartbeat * missed.max(1)) / 2
    }
}

/// Seconds this process's wall clock is ahead of Redis's (negative:
/// behind), measured over one `TIME` round trip.
pub async fn clock_offset(conn: &mut ConnectionManager) -> Result<f64, redis::RedisError> {
    let epoch = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let before = epoch(std::time::SystemTime::now());
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await?;
    let after = epoch(std::time::SystemTime::now());
    let redis_now = secs as f64 + micros as f64 / 1e6;
    Ok((before + after) / 2.0 - redis_now)
}

#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error("cannot read Redis's clock")]
    Unreadable(#[source] redis::RedisError),
    #[error(transparent)]
    Skewed(ClockSkew),
}

/// This process's clock offset from Redis's (see [`clock_offset`]), or
/// a refusal when it is further off than `settings` allow.
pub async fn check_clock(
    conn: &mut ConnectionManager,
    settings: &RedisSettings,
) -> Result<f64, ClockError> {
    let offset = clock_offset(conn).await.map_err(ClockError::Unreadable)?;
    let allowed = settings.allowed_clock_skew();
    if offset.abs() > allowed.as_secs_f64() {
        return Err(ClockError::Skewed(ClockSkew { offset, allowed }));
    }
    Ok(offset)
}

/// Connects with a response timeout, and reconnects on its own after Redis
/// restarts.
pub async fn connect(url: &str, settings: &RedisSettings) -> Result<ConnectionManager, RedisError> {
    let client = apalis_redis::Client::open(url).map_err(RedisError::Connect)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(settings.response_timeout))
        .set_connection_timeout(Some(settings.response_timeout));
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(RedisError::Connect)
}

/// Seals a job and pushes it onto its queue.
pub async fn push_job(
    storage: &mut RedisStorage<Sealed>,
    keyring: &Keyring,
    job: &Job,
) -> Result<(), RedisError> {
    push_jobs(storage, keyring, std::slice::from_ref(job)).await
}

/// Seals jobs and pushes them onto their queue (`storage`'s) together: one
/// script pushes them all or none, one more makes them ready, whatever
/// their number.
pub async fn push_jobs(
    storage: &mut RedisStorage<Sealed>,
    keyring: &Keyring,
    jobs: &[Job],
) -> Result<(), RedisError> {
    let (tasks, ids): (Vec<_>, Vec<_>) =
        jobs.iter().map(|job| ready_task(keyring.seal(job))).unzip();
    storage
        .push_all(futures_util::stream::iter(tasks))
        .await
        .map_err(|e| RedisError::Push(Box::new(e)))?;
    promote(storage, &ids).await;
    Ok(())
}

/// What a Redis worker's tasks share.
#[derive(Debug, Clone)]
struct Context {
    shared: Shared,
    keyring: Keyring,
}

async fn handle(sealed: Sealed, ctx: Data<Context>) -> Result<(), BoxDynError> {
    match ctx.keyring.open(&sealed) {
        Ok(job) => execute(job, &ctx.shared).await,
        // A job this worker cannot read fails for good, with the reason;
        // the worker goes on with the next one.
        Err(e) => {
            tracing::warn!(attempt = %sealed.attempt_id, error = %e, "job refused");
            let outcome = Outcome::permanent("unreadable_job", e.to_string());
            ctx.shared.reporter.report(sealed.attempt_id, outcome).await;
        }
    }
    Ok(())
}

/// Batches of reports one orchestrator applies at once, at most: while one
/// batch waits on the database another is being decided. A batch is one
/// transaction on PostgreSQL, so reports that pile up are applied
/// together; eight batches in flight did no better than four
/// (BENCHMARKS.md).
pub const COMPLETIONS_AT_ONCE: usize = 4;

/// Resolves when `stopped` turns true (or its sender is gone).
async fn until(mut stopped: watch::Receiver<bool>) -> std::io::Result<()> {
    let _ = stopped.wait_for(|s| *s).await;
    Ok(())
}

/// Runs `run` again whenever it ends before `stopped` turns true.
///
/// An apalis worker ends for good when one poll of Redis fails (a Redis
/// restart, or a stall longer than the response timeout), and its process
/// would carry on doing nothing. Each restart takes a fresh worker name:
/// apalis-redis refuses a name that heartbeated recently, and the jobs the
/// ended worker held are recovered once its heartbeats are missed.
async fn supervise<Fut, E>(
    what: &str,
    stopped: watch::Receiver<bool>,
    mut run: impl FnMut(u32, watch::Receiver<bool>) -> Fut,
) -> Result<(), BoxDynError>
where
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    const FIRST_PAUSE: Duration = Duration::from_secs(1);
    const LONGEST_PAUSE: Duration = Duration::from_secs(30);
    let mut pause = FIRST_PAUSE;
    for generation in 0.. {
        let started = tokio::time::Instant::now();
        let result = run(generation, stopped.clone()).await;
        if *stopped.borrow() {
            return Ok(());
        }
        match result {
            Ok(()) => tracing::error!(what, generation, "stopped on its own; restarting"),
            Err(e) => tracing::error!(what, generation, error = %e, "failed; restarting"),
        }
        if started.elapsed() > LONGEST_PAUSE * 2 {
            pause = FIRST_PAUSE;
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = until(stopped.clone()) => return Ok(()),
        }
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
    Ok(())
}

/// One queue a worker process serves, and how many of its jobs it runs at
/// once. Separate slots per queue keep a slow external service from
/// starving the other queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSlots {
    pub queue: String,
    pub concurrency: usize,
}

/// A worker process's pool: what it serves and with what.
#[derive(Debug, Clone)]
pub struct Pool {
    /// Unique per process start.
    pub worker_id: String,
    pub settings: RedisSettings,
    pub queues: Vec<QueueSlots>,
    pub shared: Shared,
    pub keyring: Keyring,
    /// On shutdown, how long running jobs may take to finish.
    pub grace: Duration,
}

/// apalis workers that fetch one queue's jobs in one process, at most
/// (never more than the queue's slots, which they share). An apalis worker
/// fetches one job per round trip and talks to Redis (fetching,
/// acknowledging, heartbeating) one request at a time, so with one per
/// queue the jobs a dispatch round pushed together were fetched one after
/// another: four halved the p99 of the pickup (BENCHMARKS.md).
pub const FETCHERS_PER_QUEUE: usize = 4;

/// How a queue's `concurrency` slots are shared among its fetchers.
fn shares(concurrency: usize) -> Vec<usize> {
    let n = FETCHERS_PER_QUEUE.clamp(1, concurrency.max(1));
    (0..n)
        .map(|k| concurrency / n + usize::from(k < concurrency % n))
        .collect()
}

/// Runs the apalis workers of each queue ([`FETCHERS_PER_QUEUE`]), each
/// under an apalis monitor of its own, until `shutdown` resolves; then
/// stops fetching and waits up to the grace period for running jobs. An
/// apalis worker that ends on its own (Redis away, or its registration
/// dropped after a late heartbeat, which fails its next fetch) is started
/// again under a new name: under one monitor for all queues, the monitor
/// ran on with the others and that queue was never served again.
pub async fn run_pool<F>(
    pool: Pool,
    conn: ConnectionManager,
    shutdown: F,
) -> Result<(), BoxDynError>
where
    F: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        let _ = shutdown.await;
        let _ = stop.send(true);
    });
    let fetchers = pool.queues.iter().flat_map(|slots| {
        let shares = shares(slots.concurrency);
        let n = shares.len();
        shares
            .into_iter()
            .enumerate()
            .map(move |(k, concurrency)| (slots, k, concurrency, n))
    });
    let workers = fetchers.map(|(slots, k, concurrency, n)| {
        let what = format!("worker {k} of queue {}", slots.queue);
        let (pool, conn, stopped) = (&pool, conn.clone(), stopped.clone());
        async move {
            supervise(&what, stopped, |generation, stopped| {
                let name = format!("{}-{generation}:{}:{k}", pool.worker_id, slots.queue);
                let storage = pool.settings.jobs(conn.clone(), &slots.queue);
                let polling = pool.settings.polling(storage.get_config(), &stopped, k, n);
                let ctx = Context {
                    shared: pool.shared.clone(),
                    keyring: pool.keyring.clone(),
                };
                apalis::prelude::Monitor::new()
                    .shutdown_timeout(pool.grace)
                    .register(move |_| {
                        WorkerBuilder::new(name.clone())
                            .backend(storage.clone().poll_with_strategy(polling.clone()))
                            .concurrency(concurrency)
                            .data(ctx.clone())
                            .build(handle)
                    })
                    .run_with_signal(until(stopped))
            })
            .await
        }
    });
    futures_util::future::try_join_all(workers).await?;
    Ok(())
}

/// Removes what finished jobs leave behind in one queue: their data and
/// metadata (apalis's vacuum), and their ids in the `done` set, which
/// apalis never trims. Without this, Redis memory grows with every job
/// ever run. Also removes what apalis keeps of workers that are gone
/// (see [`forget_gone_workers`]). Returns how many finished jobs were
/// removed.
pub async fn sweep<T>(
    storage: &mut RedisStorage<T>,
    conn: &mut ConnectionManager,
) -> Result<usize, RedisError>
where
    RedisStorage<T>:
        apalis_core::backend::Vacuum + apalis::prelude::Backend<Error = apalis_redis::Error>,
{
    use apalis_core::backend::Vacuum;
    let removed = storage
        .vacuum()
        .await
        .map_err(|e| RedisError::Sweep(Box::new(e)))?;
    // The done set only feeds apalis's own dashboards; finished jobs are
    // found through their metadata, which the vacuum above has read.
    let done = storage.get_config().done_jobs_set();
    let _: () = redis::cmd("DEL")
        .arg(done)
        .query_async(conn)
        .await
        .map_err(|e| RedisError::Sweep(Box::new(e)))?;
    forget_gone_workers(storage.get_config(), conn)
        .await
        .map_err(|e| RedisError::Sweep(Box::new(e)))?;
    Ok(removed)
}

/// apalis-redis writes a hash of metadata for each worker name when the
/// worker registers, and never deletes it. Our worker names are unique per
/// process start (and per restart after Redis was away), so each start
/// would leave one behind for good. Deletes the hashes of workers no
/// longer registered: apalis has dropped them (after recovering their
/// jobs) and reads a worker's hash only while it is registered.
async fn forget_gone_workers(
    config: &Config,
    conn: &mut ConnectionManager,
) -> Result<(), redis::RedisError> {
    // The layout of apalis-redis's `Config::worker_metadata_key`.
    let workers = config.workers_set();
    let prefix = format!("{workers}:metadata:");
    let pattern = format!("{}*", escape_glob(&prefix));
    // Checked and deleted in one script: a worker that registers meanwhile
    // keeps its hash.
    let forget = redis::Script::new(
        r#"
        local removed = 0
        for i = 2, #KEYS do
            local name = string.sub(KEYS[i], tonumber(ARGV[1]) + 1)
            if not redis.call("zscore", KEYS[1], name) then
                removed = removed + redis.call("del", KEYS[i])
            end
        end
        return removed
        "#,
    );
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        if !keys.is_empty() {
            let mut invocation = forget.key(&workers);
            invocation.key(&keys).arg(prefix.len());
            let _: usize = invocation.invoke_async(conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// `text` as a literal in a Redis glob pattern.
fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Sweeps `queues` every `every` until `stopped` turns true. A failed sweep
/// is logged and tried again next time.
pub async fn sweep_periodically(
    conn: ConnectionManager,
    settings: RedisSettings,
    queues: Vec<String>,
    every: Duration,
    stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = until(stopped.clone()) => return,
        }
        for queue in &queues {
            let mut conn = conn.clone();
            let result = if queue == COMPLETIONS {
                forget_gone_consumers(&mut conn, &settings).await
            } else {
                sweep(&mut settings.jobs(conn.clone(), queue), &mut conn).await
            };
            match result {
                Ok(removed) => tracing::debug!(queue, removed, "swept"),
                Err(e) => tracing::warn!(queue, error = %e, "sweep failed; trying again later"),
            }
        }
    }
}

/// The name [`sweep_periodically`] knows the reports stream by: sweeping
/// it forgets the consumers of orchestrators that are gone.
pub const COMPLETIONS: &str = "completions";

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::StreamExt;

    use super::{PollTurns, RedisSettings, escape_glob, shares};

    /// `--poll` is the operator's: no value of it may stop a worker.
    #[tokio::test]
    async fn any_poll_interval_gives_turns() {
        for (poll, fetcher) in [(Duration::ZERO, 0), (Duration::ZERO, 3), (Duration::MAX, 3)] {
            let mut turns = PollTurns::new(poll, fetcher, 4);
            if poll.is_zero() {
                let turn = tokio::time::timeout(Duration::from_secs(5), turns.next()).await;
                assert_eq!(turn, Ok(Some(())), "{poll:?}, fetcher {fetcher}");
            }
        }
    }

    /// Leases cost a script per job and made a handler wait for a place
    /// in apalis's event channel before it started; nothing reads them
    /// (orphan recovery goes by a worker's in-flight set, and a job's
    /// state is in SQL). Events are published to no one.
    #[test]
    fn jobs_take_no_leases_and_publish_no_events() {
        let config = RedisSettings::default().config("q");
        assert_eq!(config.batch_size, 1);
        assert!(!config.lock_tasks);
        assert!(!config.emit_events);
        assert!(
            config.persist_results,
            "finished jobs must leave the in-flight set"
        );
    }

    #[test]
    fn a_queues_slots_are_shared_among_its_fetchers() {
        assert_eq!(shares(1), [1]);
        assert_eq!(shares(3), [1, 1, 1]);
        assert_eq!(shares(6), [2, 2, 1, 1]);
        assert_eq!(shares(8), [2, 2, 2, 2]);
        // A queue given no slots still gets one worker, as before.
        assert_eq!(shares(0), [0]);
    }

    #[test]
    fn glob_characters_in_key_names_match_only_themselves() {
        assert_eq!(escape_glob("docket:jobs:a"), "docket:jobs:a");
        assert_eq!(escape_glob(r"q*?[x]\"), r"q\*\?\[x\]\\");
    }
}
