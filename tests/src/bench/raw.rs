//! The floor: apalis-redis running no-op jobs with exactly the pool our
//! `worker` runs ([`docket_workers::redis::run_pool`] with
//! [`RedisSettings::default`]: one job per fetch, 5 s heartbeats, 200 ms
//! polling; jobs sealed), minus what only Docket adds — the orchestrator,
//! SQL and the report on the reports stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use docket_workers::contract::{JOB_VERSION, Job, Outcome};
use docket_workers::handlers::Handlers;
use docket_workers::handlers::bench::BenchNoop;
use docket_workers::pool::{Reporter, Shared};
use docket_workers::redis::{self as transport, Pool, QueueSlots, RedisSettings};
use docket_workers::sealing::Keyring;
use futures_util::future::BoxFuture;
use tokio::sync::Notify;

use super::cpu::{CpuShare, Watched};
use super::services::Redis;

/// What the raw run measured.
#[derive(Debug, Clone, Copy)]
pub struct RawFigures {
    pub jobs: usize,
    /// Jobs pushed per second, one `push` after another.
    pub push_per_s: f64,
    /// Jobs run per second, draining the pushed backlog.
    pub drain_per_s: f64,
    /// CPU per job of the drain: the pool (`worker`) and Redis.
    pub cpu: CpuShare,
}

/// Counts outcomes instead of sending them anywhere.
#[derive(Debug)]
struct Count {
    done: AtomicUsize,
    target: usize,
    all: Notify,
}

impl Reporter for Count {
    fn report(&self, _attempt_id: String, _outcome: Outcome) -> BoxFuture<'_, ()> {
        if self.done.fetch_add(1, Ordering::AcqRel) + 1 >= self.target {
            self.all.notify_one();
        }
        Box::pin(async {})
    }
}

/// Pushes `jobs` no-op jobs onto an empty queue, then drains them with a
/// pool of `concurrency` slots, in this process.
pub async fn run(redis: &Redis, jobs: usize, concurrency: usize) -> anyhow::Result<RawFigures> {
    let watched = Watched {
        worker: Some(std::process::id()),
        redis: Some(redis.pid()),
        ..Watched::default()
    };
    let redis = redis.url.as_str();
    let settings = RedisSettings {
        prefix: "bench-raw".to_owned(),
        ..RedisSettings::default()
    };
    let keyring = Keyring::parse(&Keyring::generate("raw"))?;
    let conn = transport::connect(redis, &settings).await?;
    let mut storage = settings.jobs(conn.clone(), "bench");
    let pushing = Instant::now();
    for n in 0..jobs {
        let job = Job {
            version: JOB_VERSION,
            attempt_id: format!("raw/s/1/{n}"),
            case_id: "raw".to_owned(),
            step: "s".to_owned(),
            attempt: 1,
            handler: "bench.noop".to_owned(),
            queue: "bench".to_owned(),
            params: serde_json::Map::new(),
            timeout: Duration::from_secs(30),
        };
        transport::push_job(&mut storage, &keyring, &job).await?;
    }
    let push_secs = pushing.elapsed().as_secs_f64();

    let count = Arc::new(Count {
        done: AtomicUsize::new(0),
        target: jobs,
        all: Notify::new(),
    });
    let pool = Pool {
        worker_id: format!("bench-raw-{}", std::process::id()),
        settings,
        queues: vec![QueueSlots {
            queue: "bench".to_owned(),
            concurrency,
        }],
        shared: Shared {
            handlers: Arc::new(Handlers::new().with("bench.noop", BenchNoop)),
            reporter: Arc::clone(&count) as Arc<dyn Reporter>,
        },
        keyring,
        grace: Duration::from_secs(5),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let before = watched.read()?;
    let draining = Instant::now();
    let worker = tokio::spawn(transport::run_pool(pool, conn, async move {
        let _ = stopped.await;
        Ok(())
    }));
    tokio::time::timeout(Duration::from_secs(600), count.all.notified())
        .await
        .context("the raw pool did not drain its jobs within 10 minutes")?;
    let drain_secs = draining.elapsed().as_secs_f64();
    let cpu = watched.read()?.per_unit_since(&before, jobs);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
    Ok(RawFigures {
        jobs,
        push_per_s: jobs as f64 / push_secs,
        drain_per_s: jobs as f64 / drain_secs,
        cpu,
    })
}
