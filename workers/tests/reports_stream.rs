//! The reports stream against a real Redis: a report is applied at least
//! once whatever happens to the orchestrator that read it, and the stream
//! keeps nothing of reports applied or of orchestrators gone. Each test
//! uses its own key prefix and deletes its keys afterwards.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

mod common;

use common::{OwnKeys, redis_url};

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use apalis::prelude::BoxDynError;
use docket_workers::contract::Outcome;
use docket_workers::pool::Reporter;
use docket_workers::redis::{self as transport, Completion, RedisReporter, RedisSettings};
use futures_util::future::BoxFuture;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Orphaned reports are claimed after 2 × 1 s.
fn settings() -> RedisSettings {
    static N: AtomicU32 = AtomicU32::new(0);
    RedisSettings {
        prefix: format!(
            "docket-test-reports-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ),
        heartbeat: Duration::from_secs(1),
        missed_heartbeats: 2,
        ..RedisSettings::default()
    }
}

/// An orchestrator's consumer whose `apply` fails while `failing` is set.
struct Consumer {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), BoxDynError>>,
    applied: mpsc::UnboundedReceiver<Completion>,
    tried: Arc<AtomicUsize>,
}

impl Consumer {
    fn start(
        name: &str,
        url: &str,
        conn: &ConnectionManager,
        settings: &RedisSettings,
        failing: bool,
    ) -> Consumer {
        let (tx, applied) = mpsc::unbounded_channel();
        let tried = Arc::new(AtomicUsize::new(0));
        let apply = Arc::new({
            let tried = Arc::clone(&tried);
            move |reports: Vec<Completion>| -> BoxFuture<'static, Vec<Result<(), BoxDynError>>> {
                tried.fetch_add(reports.len(), Ordering::SeqCst);
                let applied = reports
                    .into_iter()
                    .map(|c| {
                        if failing {
                            return Err("the database is away".into());
                        }
                        let _ = tx.send(c);
                        Ok(())
                    })
                    .collect();
                Box::pin(async { applied })
            }
        });
        let (stop, stopped) = watch::channel(false);
        let (name, url, conn, settings) = (
            name.to_owned(),
            url.to_owned(),
            conn.clone(),
            settings.clone(),
        );
        let task = tokio::spawn(async move {
            transport::run_completion_consumer(name, &url, conn, &settings, 4, apply, stopped).await
        });
        Consumer {
            stop,
            task,
            applied,
            tried,
        }
    }

    async fn stop(self) -> mpsc::UnboundedReceiver<Completion> {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the consumer stops on its signal")
            .expect("consumer task")
            .expect("consumer");
        self.applied
    }
}

async fn xlen(conn: &mut ConnectionManager, key: &str) -> usize {
    redis::cmd("XLEN")
        .arg(key)
        .query_async(conn)
        .await
        .expect("xlen")
}

/// A report that an orchestrator read and could not apply (its database
/// away), or that an orchestrator read and then died with, is applied by
/// another once it has waited as long as a dead worker's jobs do; reports
/// added before any orchestrator ran are applied too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_an_orchestrator_could_not_apply_is_applied_by_another() {
    let Some(url) = redis_url() else { return };
    let settings = settings();
    let _keys = OwnKeys::new(&url, &settings.prefix);
    let conn = transport::connect(&url, &settings).await.expect("connect");
    let reporter = RedisReporter::new(conn.clone(), &settings);
    reporter
        .report("early/s/1/1".into(), Outcome::succeeded("done"))
        .await;

    let failing = Consumer::start("failing", &url, &conn, &settings, true);
    reporter
        .report("late/s/1/1".into(), Outcome::succeeded("done"))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while failing.tried.load(Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failing consumer never read both reports"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    failing.stop().await;

    let mut healthy = Consumer::start("healthy", &url, &conn, &settings, false);
    let mut got = Vec::new();
    for _ in 0..2 {
        let c = tokio::time::timeout(Duration::from_secs(10), healthy.applied.recv())
            .await
            .expect("both reports applied by the other consumer within 10 s")
            .expect("channel open");
        got.push(c.attempt_id);
    }
    got.sort();
    assert_eq!(got, ["early/s/1/1", "late/s/1/1"]);
    let mut applied = healthy.stop().await;
    assert_eq!(applied.try_recv().ok(), None, "a report applied twice");
    let mut conn = conn.clone();
    assert_eq!(xlen(&mut conn, &settings.reports()).await, 0);
}

/// Each orchestrator start reads as a consumer of its own name; a sweep
/// forgets those that hold no report and have not been delivered one for a
/// while, and keeps one that has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_forgets_the_consumers_of_orchestrators_gone() {
    let Some(url) = redis_url() else { return };
    let settings = settings();
    let _keys = OwnKeys::new(&url, &settings.prefix);
    let mut conn = transport::connect(&url, &settings).await.expect("connect");
    let reporter = RedisReporter::new(conn.clone(), &settings);
    // Nothing to forget before any orchestrator ran.
    assert_eq!(
        transport::forget_gone_consumers(&mut conn, &settings)
            .await
            .expect("sweep"),
        0
    );
    // Redis knows a consumer once it has been delivered a report.
    let read_one = async |name: &str| {
        let mut consumer = Consumer::start(name, &url, &conn, &settings, false);
        reporter
            .report(format!("{name}/s/1/1"), Outcome::succeeded("done"))
            .await;
        tokio::time::timeout(Duration::from_secs(5), consumer.applied.recv())
            .await
            .expect("a report applied within 5 s")
            .expect("channel open");
        consumer
    };
    for name in ["gone-1", "gone-2"] {
        read_one(name).await.stop().await;
    }
    // Quiet for twice the time after which their reports would be
    // claimed (2 × 2 s here).
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let running = read_one("running").await;
    let forgotten = transport::forget_gone_consumers(&mut conn, &settings)
        .await
        .expect("sweep");
    let info: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(settings.reports())
        .arg("orchestrators")
        .query_async(&mut conn)
        .await
        .expect("xinfo consumers");
    running.stop().await;
    let left: Vec<String> = info.consumers.into_iter().map(|c| c.name).collect();
    // Each start of a consumer reads under its name and a generation.
    assert_eq!((forgotten, left), (2, vec!["running-0".to_owned()]));
}
