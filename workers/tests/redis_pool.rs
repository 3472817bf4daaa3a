//! The Redis transport against a real Redis: jobs pushed by the
//! orchestrator's side run on a worker, and every outcome comes back on the
//! reports stream. Each test uses its own key prefix and deletes its
//! keys afterwards; it never touches keys it did not create.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

mod common;

use common::{OwnKeys, redis_url};

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use docket_workers::contract::{JOB_VERSION, Job, Outcome};
use docket_workers::handlers::Handlers;
use docket_workers::handlers::materials::MaterialsCheck;
use docket_workers::pool::Shared;
use docket_workers::redis::{
    self as transport, Completion, Pool, QueueSlots, RedisReporter, RedisSettings,
};
use docket_workers::sealing::Keyring;
use futures_util::future::BoxFuture;
use serde_json::json;
use tokio::sync::mpsc;

fn settings() -> RedisSettings {
    static N: AtomicU32 = AtomicU32::new(0);
    RedisSettings {
        prefix: format!(
            "docket-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ),
        heartbeat: Duration::from_secs(1),
        poll: Duration::from_millis(50),
        ..RedisSettings::default()
    }
}

/// Redis's answer to `command key`.
async fn ask<T: redis::FromRedisValue>(
    conn: &mut impl redis::aio::ConnectionLike,
    command: &str,
    key: &str,
) -> T {
    redis::cmd(command)
        .arg(key)
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("{command} {key}: {e}"))
}

fn job(n: u32, submitted: &[&str]) -> Job {
    let rules = json!({"documents": [], "always": [{"title": "Photo", "one_of": ["photo"]}], "by_category": {}, "through_agent": []});
    Job {
        version: JOB_VERSION,
        attempt_id: format!("case-{n}/check/1/1"),
        case_id: format!("case-{n}"),
        step: "check".into(),
        attempt: 1,
        handler: "materials.check".into(),
        queue: "materials".into(),
        params:
            json!({"rules": rules, "category": "x", "through_agent": false, "submitted": submitted})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_on_a_redis_worker_and_outcomes_come_back() {
    let Some(url) = redis_url() else { return };
    let settings = settings();
    let _keys = OwnKeys::new(&url, &settings.prefix);
    let conn = transport::connect(&url, &settings).await.expect("connect");
    let keyring = Keyring::ephemeral();
    let mut jobs = settings.jobs(conn.clone(), "materials");
    let together: Vec<Job> = (0..6)
        .map(|n| job(n, if n % 2 == 0 { &["photo"] } else { &[] }))
        .collect();
    transport::push_jobs(&mut jobs, &keyring, &together)
        .await
        .expect("push");
    // Ready at once, all of them: none left in the scheduled set for a
    // fetcher's clock to promote.
    let mut redis = conn.clone();
    let config = jobs.get_config();
    let ready: usize = ask(&mut redis, "LLEN", &config.active_jobs_list()).await;
    let scheduled: usize = ask(&mut redis, "ZCARD", &config.scheduled_jobs_set()).await;
    assert_eq!((ready, scheduled), (6, 0));
    // One job sealed with a key the worker does not have: refused, reported.
    let stranger = Keyring::parse(&Keyring::generate("stranger")).expect("key");
    transport::push_job(&mut jobs, &stranger, &job(6, &[]))
        .await
        .expect("push");

    let shared = Shared {
        handlers: Arc::new(Handlers::new().with("materials.check", MaterialsCheck)),
        reporter: Arc::new(RedisReporter::new(conn.clone(), &settings)),
    };
    let worker_settings = settings.clone();
    let worker_conn = conn.clone();
    let worker_keyring = keyring.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(async move {
        let queues = [QueueSlots {
            queue: "materials".into(),
            concurrency: 2,
        }];
        let shutdown = async move {
            let _ = stopped.await;
            Ok(())
        };
        let pool = Pool {
            worker_id: format!("{}-worker", worker_settings.prefix),
            settings: worker_settings,
            queues: queues.to_vec(),
            shared,
            keyring: worker_keyring,
            grace: Duration::from_secs(5),
        };
        transport::run_pool(pool, worker_conn, shutdown).await
    });

    let (tx, mut rx) = mpsc::unbounded_channel::<Completion>();
    let apply = Arc::new(
        move |reports: Vec<Completion>| -> BoxFuture<'static, Vec<Result<(), apalis::prelude::BoxDynError>>> {
            let applied = reports.into_iter().map(|c| {
                        let _ = tx.send(c);
                        Ok(())
                    })
                    .collect();
            Box::pin(async { applied })
        },
    );
    let consumer_settings = settings.clone();
    let consumer_conn = conn.clone();
    let (stop_consumer, consumer_stopped) = tokio::sync::watch::channel(false);
    let consumer_url = url.clone();
    let consumer = tokio::spawn(async move {
        transport::run_completion_consumer(
            format!("{}-orchestrator", consumer_settings.prefix),
            &consumer_url,
            consumer_conn,
            &consumer_settings,
            transport::COMPLETIONS_AT_ONCE,
            apply,
            consumer_stopped,
        )
        .await
    });

    let mut got = Vec::new();
    while got.len() < 7 {
        let c = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("all seven outcomes within 20 s")
            .expect("channel open");
        got.push(c);
    }
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .expect("the pool stops on its shutdown signal")
        .expect("pool task")
        .expect("pool");
    let _ = stop_consumer.send(true);
    tokio::time::timeout(Duration::from_secs(15), consumer)
        .await
        .expect("the consumer stops on its signal")
        .expect("consumer task")
        .expect("consumer");
    // Nothing of the finished jobs stays in Redis after a sweep.
    let mut sweeper = conn.clone();
    let removed = transport::sweep(&mut settings.jobs(conn.clone(), "materials"), &mut sweeper)
        .await
        .expect("sweep jobs");
    assert_eq!(removed, 7);
    let client = redis::Client::open(url.as_str()).expect("client");
    let mut raw = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    // Every report applied was acknowledged and deleted.
    let reports: usize = ask(&mut raw, "XLEN", &settings.reports()).await;
    assert_eq!(reports, 0, "reports left on the stream");
    let prefix = &settings.prefix;
    let data: usize = ask(&mut raw, "HLEN", &format!("{prefix}:jobs:materials:data")).await;
    let done: bool = ask(&mut raw, "EXISTS", &format!("{prefix}:jobs:materials:done")).await;
    assert_eq!((data, done), (0, false), "finished jobs left in Redis");

    got.sort_by(|a, b| a.attempt_id.cmp(&b.attempt_id));
    let refused = got.pop().expect("seven");
    assert_eq!(refused.attempt_id, "case-6/check/1/1");
    assert!(
        matches!(&refused.outcome, Outcome::Failed { code, retryable: false, message, .. } if code == "unreadable_job" && message.contains("stranger")),
        "{refused:?}"
    );
    for (n, c) in got.iter().enumerate() {
        assert_eq!(c.attempt_id, format!("case-{n}/check/1/1"));
        let expected = if n % 2 == 0 { "complete" } else { "incomplete" };
        assert!(
            matches!(&c.outcome, Outcome::Succeeded { outcome, .. } if outcome == expected),
            "{c:?}"
        );
    }
}

/// A handler for a service that takes its time.
#[derive(Debug)]
struct Slow(Duration);

impl docket_workers::handlers::Handler for Slow {
    fn run<'a>(&'a self, _: &'a Job) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            tokio::time::sleep(self.0).await;
            Outcome::succeeded("verified")
        })
    }
}

/// Finishes only once `0`'s number of jobs run at the same time.
#[derive(Debug)]
struct AllAtOnce(Arc<tokio::sync::Barrier>);

impl docket_workers::handlers::Handler for AllAtOnce {
    fn run<'a>(&'a self, _: &'a Job) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            self.0.wait().await;
            Outcome::succeeded("together")
        })
    }
}

/// Hands every outcome to the test without going through Redis.
#[derive(Debug)]
struct Forward(mpsc::UnboundedSender<Completion>);

impl docket_workers::pool::Reporter for Forward {
    fn report(&self, attempt_id: String, outcome: Outcome) -> BoxFuture<'_, ()> {
        let _ = self.0.send(Completion {
            attempt_id,
            outcome,
        });
        Box::pin(async {})
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_service_does_not_hold_up_other_queues() {
    let Some(url) = redis_url() else { return };
    let settings = settings();
    let _keys = OwnKeys::new(&url, &settings.prefix);
    let conn = transport::connect(&url, &settings).await.expect("connect");
    let keyring = Keyring::ephemeral();
    let mut identity = settings.jobs(conn.clone(), "identity");
    let mut materials = settings.jobs(conn.clone(), "materials");
    for n in 0..3 {
        let mut slow = job(100 + n, &[]);
        slow.handler = "identity.verify".into();
        slow.queue = "identity".into();
        slow.attempt_id = format!("slow-{n}/verify/1/1");
        transport::push_job(&mut identity, &keyring, &slow)
            .await
            .expect("push");
    }
    for n in 0..3 {
        transport::push_job(&mut materials, &keyring, &job(n, &["photo"]))
            .await
            .expect("push");
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Completion>();
    let shared = Shared {
        handlers: Arc::new(
            Handlers::new()
                .with("materials.check", MaterialsCheck)
                .with("identity.verify", Slow(Duration::from_secs(3))),
        ),
        reporter: Arc::new(Forward(tx)),
    };
    let pool = Pool {
        worker_id: format!("{}-worker", settings.prefix),
        settings: settings.clone(),
        queues: vec![
            QueueSlots {
                queue: "identity".into(),
                concurrency: 1,
            },
            QueueSlots {
                queue: "materials".into(),
                concurrency: 2,
            },
        ],
        shared,
        keyring,
        grace: Duration::from_secs(1),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(transport::run_pool(pool, conn.clone(), async move {
        let _ = stopped.await;
        Ok(())
    }));
    // Identity jobs take 3 s each, one at a time; the materials checks
    // must not wait behind them.
    let started = std::time::Instant::now();
    let mut checks = 0;
    while checks < 3 {
        let c = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("outcomes keep coming")
            .expect("channel open");
        if c.attempt_id.starts_with("case-") {
            checks += 1;
        }
    }
    let took = started.elapsed();
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
    assert!(
        took < Duration::from_secs(3),
        "the materials checks waited {took:?} behind the slow service"
    );
}

/// A queue's slots are shared by several apalis workers, which fetch side
/// by side: every slot is used, and each job runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_slot_of_a_queue_runs_a_job_at_once() {
    let Some(url) = redis_url() else { return };
    let settings = settings();
    let _keys = OwnKeys::new(&url, &settings.prefix);
    let conn = transport::connect(&url, &settings).await.expect("connect");
    let keyring = Keyring::ephemeral();
    const SLOTS: u32 = 6;
    let burst: Vec<Job> = (0..SLOTS).map(|n| job(n, &[])).collect();
    transport::push_jobs(
        &mut settings.jobs(conn.clone(), "materials"),
        &keyring,
        &burst,
    )
    .await
    .expect("push");
    let (tx, mut rx) = mpsc::unbounded_channel::<Completion>();
    let barrier = Arc::new(tokio::sync::Barrier::new(SLOTS as usize));
    let pool = Pool {
        worker_id: format!("{}-worker", settings.prefix),
        settings: settings.clone(),
        queues: vec![QueueSlots {
            queue: "materials".into(),
            concurrency: SLOTS as usize,
        }],
        shared: Shared {
            handlers: Arc::new(Handlers::new().with("materials.check", AllAtOnce(barrier))),
            reporter: Arc::new(Forward(tx)),
        },
        keyring,
        grace: Duration::from_secs(1),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(transport::run_pool(pool, conn.clone(), async move {
        let _ = stopped.await;
        Ok(())
    }));
    let mut finished = Vec::new();
    while finished.len() < SLOTS as usize {
        let c = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("outcomes keep coming")
            .expect("channel open");
        // Each job waits for the others, and times out (5 s) unless every
        // slot runs one at the same time.
        assert_eq!(
            c.outcome,
            Outcome::succeeded("together"),
            "{}",
            c.attempt_id
        );
        finished.push(c.attempt_id);
    }
    // None runs twice.
    let again = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
    assert!(again.is_err(), "a job ran again: {again:?}");
    finished.sort();
    let mut expected: Vec<String> = burst.into_iter().map(|j| j.attempt_id).collect();
    expected.sort();
    assert_eq!(finished, expected);
}

/// One queue's apalis worker can end on its own while the others run: its
/// registration dropped (another worker took it for dead after a late
/// heartbeat on a loaded machine) makes its next fetch fail. The queue is
/// served again, by a worker of a new name, and the other queue never
/// stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_whose_worker_ended_is_served_again() {
    let Some(url) = redis_url() else { return };
    let settings = settings();
    let _keys = OwnKeys::new(&url, &settings.prefix);
    let conn = transport::connect(&url, &settings).await.expect("connect");
    let keyring = Keyring::ephemeral();
    let (tx, mut rx) = mpsc::unbounded_channel::<Completion>();
    let pool = Pool {
        worker_id: format!("{}-worker", settings.prefix),
        settings: settings.clone(),
        queues: ["identity", "materials"]
            .map(|queue| QueueSlots {
                queue: queue.into(),
                concurrency: 1,
            })
            .to_vec(),
        shared: Shared {
            handlers: Arc::new(Handlers::new().with("materials.check", MaterialsCheck)),
            reporter: Arc::new(Forward(tx)),
        },
        keyring: keyring.clone(),
        grace: Duration::from_secs(1),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(transport::run_pool(pool, conn.clone(), async move {
        let _ = stopped.await;
        Ok(())
    }));
    let mut materials = settings.jobs(conn.clone(), "materials");
    let workers = materials.get_config().workers_set();
    let mut raw = conn.clone();
    let registered = async |raw: &mut redis::aio::ConnectionManager| -> Vec<String> {
        redis::cmd("ZRANGE")
            .arg(&workers)
            .arg(0)
            .arg(-1)
            .query_async(raw)
            .await
            .expect("zrange")
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let first = loop {
        if let Some(name) = registered(&mut raw).await.pop() {
            break name;
        }
        assert!(tokio::time::Instant::now() < deadline, "never registered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // As apalis's orphan recovery does to a worker it takes for dead.
    let _: () = redis::cmd("ZREM")
        .arg(&workers)
        .arg(&first)
        .query_async(&mut raw)
        .await
        .expect("zrem");
    transport::push_job(&mut materials, &keyring, &job(1, &["photo"]))
        .await
        .expect("push");
    let served = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
    let now = registered(&mut raw).await;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
    let served = served.expect("the materials queue is served within 10 s");
    assert_eq!(served.expect("channel open").attempt_id, "case-1/check/1/1");
    assert!(
        !now.is_empty() && !now.contains(&first),
        "registered now: {now:?}, the ended worker was {first}"
    );
}
