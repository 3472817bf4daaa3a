//! Pins the apalis-redis 1.0.0 behaviours that `docket_workers::redis` is
//! configured around (shared/notes/apalis-1.0.md). Each test fails if an
//! apalis upgrade, or a change to our settings, brings back the behaviour
//! the setting was chosen to avoid.
//!
//! The tests look at apalis-redis's own keys (the ready list, the workers'
//! heartbeat set, each worker's in-flight set, the done/scheduled/dead
//! sets), found through apalis's `Config`, because that is the only place
//! some of these behaviours show before they cost a duplicate run.
//!
//! Each test uses its own key prefix and deletes its keys when it ends,
//! passed or failed; apalis also writes `core:apalis:queues:list`, outside
//! any prefix. The Redis-restart test runs a redis-server of its own.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

mod common;

use common::{OwnKeys, redis_url};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apalis::prelude::BoxDynError;
use apalis_redis::{Config, ConnectionManager};
use docket_workers::contract::{JOB_VERSION, Job, Outcome};
use docket_workers::handlers::{Handler, Handlers};
use docket_workers::pool::{Reporter, Shared};
use docket_workers::redis::{
    self as transport, Completion, Pool, QueueSlots, RedisReporter, RedisSettings,
};
use docket_workers::sealing::Keyring;
use futures_util::future::BoxFuture;
use redis::aio::MultiplexedConnection;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// The queue every test's jobs go to.
const QUEUE: &str = "probe";

/// Production settings under a prefix of this test's own.
fn settings() -> RedisSettings {
    static N: AtomicU32 = AtomicU32::new(0);
    RedisSettings {
        prefix: format!(
            "docket-apalis-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ),
        ..RedisSettings::default()
    }
}

async fn raw(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

async fn query<T: redis::FromRedisValue>(
    conn: &mut MultiplexedConnection,
    cmd: &str,
    args: &[&str],
) -> T {
    let mut c = redis::cmd(cmd);
    for a in args {
        c.arg(*a);
    }
    c.query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("{cmd} {args:?}: {e}"))
}

async fn keys(conn: &mut MultiplexedConnection, pattern: &str) -> Vec<String> {
    let mut keys: Vec<String> = query(conn, "KEYS", &[pattern]).await;
    keys.sort();
    keys
}

/// apalis-redis's configuration of our jobs queue, for its key names.
fn jobs_config(conn: &ConnectionManager, settings: &RedisSettings) -> Config {
    settings.jobs(conn.clone(), QUEUE).get_config().clone()
}

/// The set of jobs `worker` has fetched and not yet acknowledged.
fn inflight_set(config: &Config, worker: &str) -> String {
    format!("{}:{worker}", config.inflight_jobs_set())
}

/// The names of the registered workers whose name starts with `worker_id`,
/// with their last heartbeat (Unix seconds).
async fn workers(
    conn: &mut MultiplexedConnection,
    config: &Config,
    worker_id: &str,
) -> Vec<(String, u64)> {
    let all: Vec<(String, u64)> = query(
        conn,
        "ZRANGE",
        &[&config.workers_set(), "0", "-1", "WITHSCORES"],
    )
    .await;
    all.into_iter()
        .filter(|(name, _)| name.starts_with(worker_id))
        .collect()
}

/// The one registered worker of pool `worker_id`, once it has registered.
async fn registered(
    conn: &mut MultiplexedConnection,
    config: &Config,
    worker_id: &str,
) -> (String, u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = workers(conn, config, worker_id).await;
        match found.as_slice() {
            [one] => return one.clone(),
            [] => assert!(
                Instant::now() < deadline,
                "{worker_id} never registered with apalis"
            ),
            more => panic!("{worker_id} registered more than once: {more:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `count` registered workers of pool `worker_id` (a queue's slots are
/// shared by several), once they have all registered.
async fn registered_all(
    conn: &mut MultiplexedConnection,
    config: &Config,
    worker_id: &str,
    count: usize,
) -> Vec<(String, u64)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = workers(conn, config, worker_id).await;
        assert!(
            found.len() <= count,
            "{worker_id} registered too many: {found:?}"
        );
        if found.len() == count {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{worker_id} registered {found:?}, not {count} workers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A job for [`Probe`]: it runs for `ms` and then reports `result`.
fn job(attempt_id: &str, ms: u64, result: &str) -> Job {
    Job {
        version: JOB_VERSION,
        attempt_id: attempt_id.to_owned(),
        case_id: attempt_id.to_owned(),
        step: "probe".into(),
        attempt: 1,
        handler: "identity.verify".into(),
        queue: QUEUE.into(),
        params: json!({"ms": ms, "result": result})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        timeout: Duration::from_secs(60),
    }
}

/// Every handler invocation of a test, as (pool tag, attempt id), across
/// all of its pools.
#[derive(Debug, Clone, Default)]
struct Runs(Arc<Mutex<Vec<(String, String)>>>);

impl Runs {
    fn all(&self) -> Vec<(String, String)> {
        let mut runs = self.0.lock().unwrap().clone();
        runs.sort();
        runs
    }
}

/// A handler that records each invocation, runs as long as its job says
/// and ends the way its job says.
#[derive(Debug)]
struct Probe {
    tag: &'static str,
    runs: Runs,
    started: mpsc::UnboundedSender<(String, String)>,
}

impl Handler for Probe {
    fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let run = (self.tag.to_owned(), job.attempt_id.clone());
            self.runs.0.lock().unwrap().push(run.clone());
            let _ = self.started.send(run);
            let ms = job.params.get("ms").and_then(Value::as_u64).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            match job.params.get("result").and_then(Value::as_str) {
                Some("retryable") => Outcome::retryable("service_down", "the probe failed"),
                Some("permanent") => Outcome::permanent("rejected", "the probe refused"),
                Some("panic") => panic!("the probe panicked on purpose"),
                _ => Outcome::succeeded("verified"),
            }
        })
    }
}

/// Sends every outcome to the test without going through Redis.
#[derive(Debug)]
struct Forward(mpsc::UnboundedSender<Completion>);

impl Reporter for Forward {
    fn report(&self, attempt_id: String, outcome: Outcome) -> BoxFuture<'_, ()> {
        let _ = self.0.send(Completion {
            attempt_id,
            outcome,
        });
        Box::pin(async {})
    }
}

/// A running [`transport::run_pool`].
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), BoxDynError>>,
}

impl Running {
    /// Stops the pool as a process's shutdown would, and waits for it.
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("the pool stops on its shutdown signal")
            .expect("pool task")
            .expect("pool");
    }
}

#[allow(clippy::too_many_arguments)]
fn start_pool(
    conn: &ConnectionManager,
    settings: &RedisSettings,
    keyring: &Keyring,
    worker_id: &str,
    concurrency: usize,
    tag: &'static str,
    runs: &Runs,
    started: &mpsc::UnboundedSender<(String, String)>,
    reporter: Arc<dyn Reporter>,
) -> Running {
    let probe = Probe {
        tag,
        runs: runs.clone(),
        started: started.clone(),
    };
    let pool = Pool {
        worker_id: worker_id.to_owned(),
        settings: settings.clone(),
        queues: vec![QueueSlots {
            queue: QUEUE.into(),
            concurrency,
        }],
        shared: Shared {
            handlers: Arc::new(Handlers::new().with("identity.verify", probe)),
            reporter,
        },
        keyring: keyring.clone(),
        grace: Duration::from_secs(10),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(transport::run_pool(pool, conn.clone(), async move {
        let _ = stopped.await;
        Ok(())
    }));
    Running { stop, task }
}

/// The orchestrator's side: consumes the completions queue.
struct Consumer {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), BoxDynError>>,
    completions: mpsc::UnboundedReceiver<Completion>,
}

impl Consumer {
    fn start(url: &str, conn: &ConnectionManager, settings: &RedisSettings) -> Consumer {
        let (tx, completions) = mpsc::unbounded_channel::<Completion>();
        let apply = Arc::new(
            move |reports: Vec<Completion>| -> BoxFuture<'static, Vec<Result<(), BoxDynError>>> {
                let applied = reports
                    .into_iter()
                    .map(|c| {
                        let _ = tx.send(c);
                        Ok(())
                    })
                    .collect();
                Box::pin(async { applied })
            },
        );
        let (stop, stopped) = watch::channel(false);
        let settings = settings.clone();
        let (url, conn) = (url.to_owned(), conn.clone());
        let task = tokio::spawn(async move {
            transport::run_completion_consumer(
                format!("{}-orchestrator", settings.prefix),
                &url,
                conn,
                &settings,
                transport::COMPLETIONS_AT_ONCE,
                apply,
                stopped,
            )
            .await
        });
        Consumer {
            stop,
            task,
            completions,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("the consumer stops on its signal")
            .expect("consumer task")
            .expect("consumer");
    }
}

/// The next `n` items of `rx`, each within `within`.
async fn take<T>(rx: &mut mpsc::UnboundedReceiver<T>, n: usize, within: Duration) -> Vec<T> {
    let mut got = Vec::new();
    while got.len() < n {
        let item = tokio::time::timeout(within, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} arrived in time", got.len()))
            .expect("the sender is gone: its pool or consumer stopped for good");
        got.push(item);
    }
    got
}

async fn push(
    jobs: &mut apalis_redis::RedisStorage<docket_workers::sealing::Sealed>,
    keyring: &Keyring,
    job: &Job,
) {
    transport::push_job(jobs, keyring, job).await.expect("push");
}

/// A worker whose slots are all taken by long jobs fetches nothing more:
/// the other jobs stay on the ready list for another worker, and the busy
/// worker keeps heartbeating, so none of its jobs is recovered and run a
/// second time. With a fetch batch larger than the free slots (apalis's
/// default is 10), apalis-redis held the extra jobs, stopped heartbeating,
/// and another worker re-ran all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_worker_fetches_no_more_than_its_slots_and_keeps_heartbeating() {
    let Some(url) = redis_url() else { return };
    // Production's batch and polling, with a shorter heartbeat so that a
    // missed one shows within the test: orphaned after 2 × 2 s.
    let settings = RedisSettings {
        heartbeat: Duration::from_secs(2),
        ..settings()
    };
    let _keys = OwnKeys::new(&url, &settings.prefix);
    let conn = transport::connect(&url, &settings).await.expect("connect");
    let config = jobs_config(&conn, &settings);
    let mut redis = raw(&url).await;
    let keyring = Keyring::ephemeral();
    let mut jobs = settings.jobs(conn.clone(), QUEUE);
    // Long enough to outlast the orphan threshold with room to spare.
    let long = Duration::from_secs(7);
    let ids: Vec<String> = (0..5).map(|n| format!("sat-{n}")).collect();
    for id in &ids {
        push(&mut jobs, &keyring, &job(id, long.as_millis() as u64, "ok")).await;
    }

    let runs = Runs::default();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (report, mut reports) = mpsc::unbounded_channel();
    let reporter: Arc<dyn Reporter> = Arc::new(Forward(report));
    let a_id = format!("{}-a", settings.prefix);
    let a = start_pool(
        &conn,
        &settings,
        &keyring,
        &a_id,
        2,
        "a",
        &runs,
        &started_tx,
        Arc::clone(&reporter),
    );
    // Which two is not known: apalis orders jobs pushed within the same
    // millisecond at random.
    let first = take(&mut started, 2, Duration::from_secs(10)).await;
    let saturated_at = Instant::now();
    // Its two slots are shared by two apalis workers, one each.
    let a_workers = registered_all(&mut redis, &config, &a_id, 2).await;
    // Several poll intervals with both slots taken.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut held = 0;
    for (name, _) in &a_workers {
        held += query::<usize>(&mut redis, "SCARD", &[&inflight_set(&config, name)]).await;
    }
    // apalis-redis 1.0.0 pushes every job onto the scheduled set, and a
    // fetch moves the due ones onto the ready list.
    let ready: usize = query(&mut redis, "LLEN", &[&config.active_jobs_list()]).await;
    let scheduled: usize = query(&mut redis, "ZCARD", &[&config.scheduled_jobs_set()]).await;
    let ready = ready + scheduled;
    assert_eq!(
        (held, ready),
        (2, 3),
        "the saturated worker holds only the jobs it runs; the rest stay ready"
    );

    // A second worker takes the rest while the first is still busy, and
    // has free slots left to re-run anything recovered from the first.
    let b = start_pool(
        &conn,
        &settings,
        &keyring,
        &format!("{}-b", settings.prefix),
        5,
        "b",
        &runs,
        &started_tx,
        Arc::clone(&reporter),
    );
    let rest = take(&mut started, 3, Duration::from_secs(10)).await;
    let mut expected: Vec<(String, String)> = ids
        .iter()
        .map(|id| {
            let on_a = first.iter().any(|(_, a)| a == id);
            ((if on_a { "a" } else { "b" }).to_owned(), id.clone())
        })
        .collect();
    expected.sort();
    let mut started_all: Vec<_> = first.iter().chain(&rest).cloned().collect();
    started_all.sort();
    assert_eq!(
        started_all, expected,
        "each job started once, the rest on the second worker"
    );

    // Just before the first worker's jobs end, it has been saturated for
    // longer than the orphan threshold: it must have heartbeated meanwhile,
    // at least twice (at +2 s and +4 s).
    let threshold = settings.heartbeat * settings.missed_heartbeats as u32;
    assert!(long > threshold + Duration::from_secs(2));
    tokio::time::sleep_until((saturated_at + long - Duration::from_millis(800)).into()).await;
    // By their names: a pool whose worker died registers a new one.
    for (name, seen_first) in &a_workers {
        let seen_last: Option<u64> =
            query(&mut redis, "ZSCORE", &[&config.workers_set(), name]).await;
        assert!(
            seen_last.is_some_and(|last| last >= seen_first + 2),
            "the saturated worker {name} stopped heartbeating (last seen at {seen_first}, then {seen_last:?})"
        );
    }

    let done = take(&mut reports, 5, Duration::from_secs(15)).await;
    assert!(
        done.iter()
            .all(|c| c.outcome == Outcome::succeeded("verified"))
    );
    // Time for the second worker to re-run anything recovered.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        runs.all(),
        expected,
        "every job ran once, where it was fetched"
    );
    let finished: usize = query(&mut redis, "SCARD", &[&config.done_jobs_set()]).await;
    assert_eq!(finished, 5);

    a.stop().await;
    b.stop().await;
}

/// An idle worker notices a new job within a few poll intervals. Without
/// `poll_with_interval`, apalis-redis looked for jobs only at its next
/// heartbeat (5 s in production).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_picks_up_a_new_job_well_before_its_next_heartbeat() {
    let Some(url) = redis_url() else { return };
    let settings = settings();
    let _keys = OwnKeys::new(&url, &settings.prefix);
    assert_eq!(settings.heartbeat, Duration::from_secs(5));
    let conn = transport::connect(&url, &settings).await.expect("connect");
    let config = jobs_config(&conn, &settings);
    let mut redis = raw(&url).await;
    let keyring = Keyring::ephemeral();
    let runs = Runs::default();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (report, _reports) = mpsc::unbounded_channel();
    let worker_id = format!("{}-w", settings.prefix);
    let pool = start_pool(
        &conn,
        &settings,
        &keyring,
        &worker_id,
        1,
        "w",
        &runs,
        &started_tx,
        Arc::new(Forward(report)),
    );
    // Registering counts as a heartbeat: the next one is 5 s away. Let the
    // worker find the queue empty and go idle first.
    let (_, registered_at) = registered(&mut redis, &config, &worker_id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let pushed = Instant::now();
    push(
        &mut settings.jobs(conn.clone(), QUEUE),
        &keyring,
        &job("idle-0", 0, "ok"),
    )
    .await;
    take(&mut started, 1, Duration::from_secs(10)).await;
    let waited = pushed.elapsed();
    let (_, seen) = registered(&mut redis, &config, &worker_id).await;
    pool.stop().await;

    assert_eq!(
        seen, registered_at,
        "the job was picked up only after a heartbeat"
    );
    assert!(
        waited < Duration::from_secs(2),
        "an idle worker took {waited:?} to notice a new job"
    );
}

/// An idle worker process asks Redis for a queue's jobs about once per
/// poll interval, however many apalis workers share the queue's slots:
/// each of four fetchers polling at the full rate made an idle pool cost
/// Redis four fetch scripts per interval and queue. Counted on a Redis of
/// the test's own, so that no other test's commands are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_pool_polls_once_per_interval_whatever_its_fetchers() {
    let dir = TempDir::new();
    let port = free_port();
    let Some(server) = PrivateRedis::start(&dir.0, port).await else {
        return;
    };
    let url = format!("redis://127.0.0.1:{port}");
    let settings = RedisSettings {
        wake_url: Some(url.clone()),
        ..settings()
    };
    let conn = transport::connect(&url, &settings).await.expect("connect");
    let config = jobs_config(&conn, &settings);
    let mut redis = raw(&url).await;
    let runs = Runs::default();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (report, _reports) = mpsc::unbounded_channel();
    let keyring = Keyring::ephemeral();
    let worker_id = format!("{}-w", settings.prefix);
    let slots = 2 * transport::FETCHERS_PER_QUEUE;
    let pool = start_pool(
        &conn,
        &settings,
        &keyring,
        &worker_id,
        slots,
        "w",
        &runs,
        &started_tx,
        Arc::new(Forward(report)),
    );
    registered_all(
        &mut redis,
        &config,
        &worker_id,
        transport::FETCHERS_PER_QUEUE,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let scripts = |info: String| -> u64 {
        info.lines()
            .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
            .filter_map(|l| {
                l.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    let before = scripts(query(&mut redis, "INFO", &["commandstats"]).await);
    let idle = Duration::from_secs(3);
    tokio::time::sleep(idle).await;
    let after = scripts(query(&mut redis, "INFO", &["commandstats"]).await);

    // Idle still means ready: a job pushed now is picked up at once.
    let pushed = Instant::now();
    push(
        &mut settings.jobs(conn.clone(), QUEUE),
        &keyring,
        &job("after-idle", 0, "ok"),
    )
    .await;
    take(&mut started, 1, Duration::from_secs(10)).await;
    let waited = pushed.elapsed();
    pool.stop().await;
    drop(server);

    // One fetch per interval, and each fetcher's heartbeat (5 s apart):
    // 15 + 4 over 3 s. Four fetchers at the full rate would be 60 + 4.
    let polls = idle.as_millis() as u64 / settings.poll.as_millis() as u64;
    let ran = after - before;
    assert!(
        ran <= polls + polls / 2 + transport::FETCHERS_PER_QUEUE as u64,
        "an idle pool of {slots} slots ran {ran} scripts in {idle:?} (poll {:?})",
        settings.poll
    );
    assert!(
        waited < Duration::from_secs(1),
        "an idle pool took {waited:?} to pick up a pushed job"
    );
}

/// A failed attempt, retryable or not, is the orchestrator's to retry: it
/// arrives once as data on the completions queue, and apalis-redis, which
/// would otherwise reschedule a failed job up to 25 times, runs it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_reported_once_and_never_retried_by_apalis() {
    let Some(url) = redis_url() else { return };
    let settings = settings();
    let _keys = OwnKeys::new(&url, &settings.prefix);
    let conn = transport::connect(&url, &settings).await.expect("connect");
    let config = jobs_config(&conn, &settings);
    let mut redis = raw(&url).await;
    let keyring = Keyring::ephemeral();
    let mut jobs = settings.jobs(conn.clone(), QUEUE);
    let cases = [
        ("fail-retryable", "retryable"),
        ("fail-permanent", "permanent"),
        ("fail-panic", "panic"),
    ];
    for (id, result) in cases {
        push(&mut jobs, &keyring, &job(id, 0, result)).await;
    }
    let runs = Runs::default();
    let (started_tx, _started) = mpsc::unbounded_channel();
    let pool = start_pool(
        &conn,
        &settings,
        &keyring,
        &format!("{}-w", settings.prefix),
        3,
        "w",
        &runs,
        &started_tx,
        Arc::new(RedisReporter::new(conn.clone(), &settings)),
    );
    let mut consumer = Consumer::start(&url, &conn, &settings);
    let mut got = take(&mut consumer.completions, 3, Duration::from_secs(10)).await;
    // apalis would reschedule a failed job after `attempt` seconds; give it
    // time for several such retries.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let late = consumer.completions.try_recv().ok();

    let done: Vec<String> = query(&mut redis, "SMEMBERS", &[&config.done_jobs_set()]).await;
    let mut statuses = Vec::new();
    for id in &done {
        let status: Option<String> = query(
            &mut redis,
            "HGET",
            &[&format!("{}:{id}", config.job_meta_hash()), "status"],
        )
        .await;
        statuses.push(status);
    }
    let scheduled: usize = query(&mut redis, "ZCARD", &[&config.scheduled_jobs_set()]).await;
    let dead: usize = query(&mut redis, "SCARD", &[&config.dead_jobs_set()]).await;
    pool.stop().await;
    consumer.stop().await;

    assert_eq!(late, None, "an attempt was reported twice");
    assert_eq!(
        runs.all(),
        [
            ("w".into(), "fail-panic".into()),
            ("w".into(), "fail-permanent".into()),
            ("w".into(), "fail-retryable".into()),
        ],
        "apalis ran a failed attempt again"
    );
    got.sort_by(|a, b| a.attempt_id.cmp(&b.attempt_id));
    let outcomes: Vec<(&str, &str, bool)> = got
        .iter()
        .map(|c| match &c.outcome {
            Outcome::Failed {
                code, retryable, ..
            } => (c.attempt_id.as_str(), code.as_str(), *retryable),
            other => panic!("{}: {other:?}", c.attempt_id),
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("fail-panic", "panic", true),
            ("fail-permanent", "rejected", false),
            ("fail-retryable", "service_down", true),
        ]
    );
    // For apalis, every attempt succeeded: nothing is
    // waiting for a retry of its own, nothing is dead.
    assert_eq!(
        (statuses, scheduled, dead),
        (vec![Some("Done".to_owned()); 3], 0, 0)
    );
    // Each report was applied once and acknowledged: none is left.
    let reports: usize = query(&mut redis, "XLEN", &[&settings.reports()]).await;
    assert_eq!(reports, 0, "reports left on the stream");
}

/// A finished job is acknowledged in Redis (`persist_results` on), so it
/// does not run again after its worker process stops and another starts.
/// With `persist_results(false)`, finished jobs stayed in the stopped
/// worker's in-flight set, and the next worker recovered and re-ran them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_do_not_run_again_after_a_worker_restart() {
    let Some(url) = redis_url() else { return };
    // Orphaned after 2 × 1 s, so that the restarted worker's recovery of
    // the stopped one happens within the test.
    let settings = RedisSettings {
        heartbeat: Duration::from_secs(1),
        ..settings()
    };
    let _keys = OwnKeys::new(&url, &settings.prefix);
    let conn = transport::connect(&url, &settings).await.expect("connect");
    let config = jobs_config(&conn, &settings);
    let mut redis = raw(&url).await;
    let keyring = Keyring::ephemeral();
    let mut jobs = settings.jobs(conn.clone(), QUEUE);
    let ids: Vec<String> = (0..3).map(|n| format!("restart-{n}")).collect();
    for id in &ids {
        push(&mut jobs, &keyring, &job(id, 0, "ok")).await;
    }
    let runs = Runs::default();
    let (started_tx, _started) = mpsc::unbounded_channel();
    let (report, mut reports) = mpsc::unbounded_channel();
    let reporter: Arc<dyn Reporter> = Arc::new(Forward(report));
    let first_id = format!("{}-first", settings.prefix);
    let first = start_pool(
        &conn,
        &settings,
        &keyring,
        &first_id,
        2,
        "first",
        &runs,
        &started_tx,
        Arc::clone(&reporter),
    );
    take(&mut reports, 3, Duration::from_secs(10)).await;
    let first_workers = registered_all(&mut redis, &config, &first_id, 2).await;
    first.stop().await;
    let mut held = 0;
    for (name, _) in &first_workers {
        held += query::<usize>(&mut redis, "SCARD", &[&inflight_set(&config, name)]).await;
    }
    let finished: usize = query(&mut redis, "SCARD", &[&config.done_jobs_set()]).await;
    assert_eq!(
        (held, finished),
        (0, 3),
        "finished jobs were not acknowledged"
    );

    // The next process start, under a new name as in production.
    let second_id = format!("{}-second", settings.prefix);
    let second = start_pool(
        &conn,
        &settings,
        &keyring,
        &second_id,
        2,
        "second",
        &runs,
        &started_tx,
        Arc::clone(&reporter),
    );
    registered_all(&mut redis, &config, &second_id, 2).await;
    // Past the orphan threshold and a few heartbeats of the new worker,
    // which recovers whatever the stopped one still held.
    let deadline = Instant::now() + Duration::from_secs(8);
    while !workers(&mut redis, &config, &first_id).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the new worker never recovered the stopped one"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let anything recovered be fetched and run.
    tokio::time::sleep(Duration::from_secs(1)).await;
    second.stop().await;

    let expected: Vec<(String, String)> = ids
        .iter()
        .map(|id| ("first".to_owned(), id.clone()))
        .collect();
    assert_eq!(runs.all(), expected, "a finished job ran again");
}

/// `sweep` leaves nothing of finished jobs in Redis, however many have
/// run (apalis's vacuum alone leaves every id in the done set), nor of
/// workers that are gone (apalis keeps a hash per worker name, and ours
/// are new at every start), and keeps jobs that have not run yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeping_keeps_finished_jobs_and_gone_workers_from_piling_up_in_redis() {
    let Some(url) = redis_url() else { return };
    // Orphaned after 2 × 1 s, so that a stopped worker is dropped by apalis
    // within the test.
    let settings = RedisSettings {
        heartbeat: Duration::from_secs(1),
        ..settings()
    };
    let _keys = OwnKeys::new(&url, &settings.prefix);
    let conn = transport::connect(&url, &settings).await.expect("connect");
    let config = jobs_config(&conn, &settings);
    let mut redis = raw(&url).await;
    let keyring = Keyring::ephemeral();
    let mut jobs = settings.jobs(conn.clone(), QUEUE);
    let runs = Runs::default();
    let (started_tx, _started) = mpsc::unbounded_channel();
    let reporter: Arc<dyn Reporter> = Arc::new(RedisReporter::new(conn.clone(), &settings));
    let mut consumer = Consumer::start(&url, &conn, &settings);
    let old_id = format!("{}-old", settings.prefix);
    let pool = start_pool(
        &conn,
        &settings,
        &keyring,
        &old_id,
        4,
        "old",
        &runs,
        &started_tx,
        Arc::clone(&reporter),
    );
    let sweep_jobs = async |expected: usize, when: &str| {
        let mut sweeper = conn.clone();
        let removed = transport::sweep(&mut settings.jobs(conn.clone(), QUEUE), &mut sweeper)
            .await
            .expect("sweep jobs");
        assert_eq!(removed, expected, "{when}: jobs swept");
    };

    let mut after_each_round = Vec::new();
    for round in 0..2 {
        for n in 0..10 {
            push(
                &mut jobs,
                &keyring,
                &job(&format!("sweep-{round}-{n}"), 0, "ok"),
            )
            .await;
        }
        take(&mut consumer.completions, 10, Duration::from_secs(10)).await;
        // The consumer's acknowledgement of the last completion may trail
        // its delivery.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let finished: usize = query(&mut redis, "SCARD", &[&config.done_jobs_set()]).await;
        assert_eq!(finished, 10, "round {round}: the done set before sweeping");
        sweep_jobs(10, &format!("round {round}")).await;
        let data: usize = query(&mut redis, "HLEN", &[&config.job_data_hash()]).await;
        let meta = keys(&mut redis, &format!("{}:*", config.job_meta_hash())).await;
        let done: bool = query(&mut redis, "EXISTS", &[&config.done_jobs_set()]).await;
        assert_eq!(
            (data, meta, done),
            (0, Vec::<String>::new(), false),
            "round {round}: jobs after sweeping"
        );
        after_each_round.push(keys(&mut redis, &format!("{}:*", settings.prefix)).await);
    }
    assert_eq!(
        after_each_round[0], after_each_round[1],
        "what stays in Redis grew with the jobs run"
    );

    // A job waiting for a worker survives a sweep and still runs, on the
    // next worker process.
    registered_all(&mut redis, &config, &old_id, 4).await;
    pool.stop().await;
    push(&mut jobs, &keyring, &job("sweep-waiting", 0, "ok")).await;
    sweep_jobs(0, "with a job waiting").await;
    let new_id = format!("{}-new", settings.prefix);
    let pool = start_pool(
        &conn,
        &settings,
        &keyring,
        &new_id,
        4,
        "new",
        &runs,
        &started_tx,
        reporter,
    );
    let last = take(&mut consumer.completions, 1, Duration::from_secs(10)).await;
    assert_eq!(last[0].attempt_id, "sweep-waiting");
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Once apalis has dropped the stopped worker, a sweep forgets it too:
    // what stays is what stayed with one worker before.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !workers(&mut redis, &config, &old_id).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the new worker never dropped the stopped one"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sweep_jobs(1, "after a worker restart").await;
    registered_all(&mut redis, &config, &new_id, 4).await;
    let left = keys(&mut redis, &format!("{}:*", settings.prefix)).await;
    pool.stop().await;
    consumer.stop().await;
    let renamed: Vec<String> = after_each_round[0]
        .iter()
        .map(|k| k.replace(&old_id, &new_id))
        .collect();
    assert_eq!(left, renamed, "what a gone worker left stays in Redis");
}

/// A redis-server of the test's own, persisting to `dir`, on `port`.
struct PrivateRedis {
    child: Child,
}

impl PrivateRedis {
    /// Starts it and waits until it answers; `None` (by hand only) when
    /// this machine has no redis-server.
    async fn start(dir: &Path, port: u16) -> Option<PrivateRedis> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "yes"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => PrivateRedis { child },
            Err(_) if std::env::var("CI").as_deref() != Ok("true") => {
                eprintln!("skipped: no redis-server on this machine");
                return None;
            }
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        let url = format!("redis://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(client) = redis::Client::open(url.as_str())
                && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return Some(child);
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Shuts it down cleanly (its append-only file complete) and waits
    /// for the process to end.
    async fn shutdown(mut self, url: &str) {
        let mut conn = raw(url).await;
        // The server closes the connection instead of answering.
        let _ = redis::cmd("SHUTDOWN").query_async::<()>(&mut conn).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "redis-server did not shut down");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl PrivateRedis {
    /// Kills it as a crash would: writes of the last second may be lost.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory of the test's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "docket-apalis-redis-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Redis restarts (not just stalls) under a running pool and consumer,
/// once shut down cleanly and once killed: both reconnect, and jobs pushed
/// after each restart run and report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_and_the_consumer_carry_on_after_redis_restarts() {
    let dir = TempDir::new();
    let port = free_port();
    let Some(mut server) = PrivateRedis::start(&dir.0, port).await else {
        return;
    };
    let url = format!("redis://127.0.0.1:{port}");
    // Production settings: this is about reconnecting, not about timing.
    let settings = settings();
    let conn = transport::connect(&url, &settings).await.expect("connect");
    let keyring = Keyring::ephemeral();
    let mut jobs = settings.jobs(conn.clone(), QUEUE);
    let runs = Runs::default();
    let (started_tx, _started) = mpsc::unbounded_channel();
    let pool = start_pool(
        &conn,
        &settings,
        &keyring,
        &format!("{}-w", settings.prefix),
        2,
        "w",
        &runs,
        &started_tx,
        Arc::new(RedisReporter::new(conn.clone(), &settings)),
    );
    let mut consumer = Consumer::start(&url, &conn, &settings);
    push(&mut jobs, &keyring, &job("before", 0, "ok")).await;
    let got = take(&mut consumer.completions, 1, Duration::from_secs(10)).await;
    assert_eq!(got[0].attempt_id, "before");

    for restart in ["shut down", "killed"] {
        if restart == "killed" {
            server.kill();
        } else {
            server.shutdown(&url).await;
        }
        // Down long enough for the pool's polls and heartbeats to fail.
        tokio::time::sleep(Duration::from_secs(2)).await;
        server = PrivateRedis::start(&dir.0, port)
            .await
            .expect("redis-server ran a moment ago");

        // The orchestrator's side pushes on the same connection manager;
        // its first command after the restart may fail while it reconnects.
        let ids: Vec<String> = (0..3).map(|n| format!("{restart}-{n}")).collect();
        for id in &ids {
            let deadline = Instant::now() + Duration::from_secs(10);
            while let Err(e) = transport::push_job(&mut jobs, &keyring, &job(id, 0, "ok")).await {
                assert!(
                    Instant::now() < deadline,
                    "pushing {id} after Redis was {restart}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        // Delivery is at least once: a report whose acknowledgement Redis
        // lost may come again.
        let mut missing: std::collections::BTreeSet<&str> =
            ids.iter().map(String::as_str).collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !missing.is_empty() {
            let c = tokio::time::timeout_at(deadline.into(), consumer.completions.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("after Redis was {restart}, never reported: {missing:?}")
                })
                .expect("the consumer stopped");
            assert_eq!(c.outcome, Outcome::succeeded("verified"), "{c:?}");
            missing.remove(c.attempt_id.as_str());
        }
    }
    pool.stop().await;
    consumer.stop().await;
    drop(server);
}
