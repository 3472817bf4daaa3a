//! Running handlers: one attempt per job, the worker-side timeout, and the
//! report of each outcome to the orchestrator; and the in-process queue of
//! the embedded mode.
//!
//! The orchestrator owns retries and timeouts durably; a worker runs exactly
//! one attempt per task and reports what happened. Its own timeout only
//! frees the worker: whether the attempt timed out is for the
//! orchestrator's timer to say.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::sync::{Semaphore, mpsc};

use crate::contract::{Job, Outcome};
use crate::handlers::Handlers;

/// Where a worker sends each attempt's outcome.
pub trait Reporter: std::fmt::Debug + Send + Sync + 'static {
    fn report(&self, attempt_id: String, outcome: Outcome) -> BoxFuture<'_, ()>;
}

/// What every task of a worker shares.
#[derive(Debug, Clone)]
pub struct Shared {
    pub handlers: Arc<Handlers>,
    pub reporter: Arc<dyn Reporter>,
}

/// Runs one attempt and reports it. Never fails: every way an attempt can
/// go wrong is an outcome.
pub async fn execute(job: Job, shared: &Shared) {
    let outcome = match tokio::time::timeout(job.timeout, shared.handlers.run(&job)).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::retryable(
            "timeout",
            format!("the attempt ran longer than {}s", job.timeout.as_secs()),
        ),
    };
    tracing::debug!(attempt = %job.attempt_id, handler = %job.handler, outcome = outcome_label(&outcome), "attempt finished");
    shared.reporter.report(job.attempt_id, outcome).await;
}

fn outcome_label(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Succeeded { outcome, .. } => outcome,
        Outcome::Failed { code, .. } => code,
    }
}

/// The sending side of an in-process queue.
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    tx: mpsc::UnboundedSender<Job>,
}

#[derive(Debug, thiserror::Error)]
#[error("the in-process queue is closed")]
pub struct QueueClosed;

impl MemoryQueue {
    pub fn push(&self, job: Job) -> Result<(), QueueClosed> {
        self.tx.send(job).map_err(|_| QueueClosed)
    }
}

/// The receiving side of an in-process queue.
#[derive(Debug)]
pub struct MemoryReceiver {
    rx: mpsc::UnboundedReceiver<Job>,
}

/// An in-process queue. Its contents are lost with the process, which the
/// orchestrator's outbox makes good on restart.
///
/// This is a tokio channel rather than apalis's in-memory backend: with
/// apalis-core 1.0.0's `MemoryStorage`, a worker fed one job at a time
/// stopped picking jobs up (the 77th of 200 never ran; the test
/// `jobs_pushed_one_by_one_all_run` below).
pub fn memory_queue() -> (MemoryQueue, MemoryReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    (MemoryQueue { tx }, MemoryReceiver { rx })
}

/// Runs jobs from an in-process queue, at most `concurrency` at once, until
/// the queue is closed.
pub async fn run_memory_worker(mut queue: MemoryReceiver, concurrency: usize, shared: Shared) {
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    while let Some(job) = queue.rx.recv().await {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            execute(job, &shared).await;
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use tokio::sync::mpsc;

    use super::*;
    use crate::handlers::Handler;
    use crate::handlers::materials::MaterialsCheck;
    use crate::handlers::tests::job;

    #[derive(Debug)]
    struct Channel(mpsc::UnboundedSender<(String, Outcome)>);

    impl Reporter for Channel {
        fn report(&self, attempt_id: String, outcome: Outcome) -> BoxFuture<'_, ()> {
            let _ = self.0.send((attempt_id, outcome));
            Box::pin(async {})
        }
    }

    #[derive(Debug)]
    struct Hangs;

    impl Handler for Hangs {
        fn run<'a>(&'a self, _: &'a Job) -> BoxFuture<'a, Outcome> {
            Box::pin(futures_util::future::pending())
        }
    }

    #[tokio::test]
    async fn a_memory_worker_runs_jobs_and_reports_every_outcome() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let shared = Shared {
            handlers: Arc::new(
                Handlers::new()
                    .with("materials.check", MaterialsCheck)
                    .with("identity.verify", Hangs),
            ),
            reporter: Arc::new(Channel(tx)),
        };
        let (queue, receiver) = memory_queue();
        let worker = tokio::spawn(run_memory_worker(receiver, 4, shared));
        let rules = json!({"documents": [], "always": [{"title": "Photo", "one_of": ["photo"]}], "by_category": {}, "through_agent": []});
        let mut check = job(
            "materials.check",
            json!({"rules": rules, "category": "x", "through_agent": false, "submitted": ["photo"]}),
        );
        check.attempt_id = "a/check/1/1".into();
        let mut hang = job("identity.verify", json!({}));
        hang.attempt_id = "a/verify/1/1".into();
        hang.timeout = Duration::from_millis(50);
        queue.push(hang).expect("push");
        queue.push(check).expect("push");
        let mut got = Vec::new();
        for _ in 0..2 {
            got.push(
                tokio::time::timeout(Duration::from_secs(10), rx.recv())
                    .await
                    .expect("an outcome in time")
                    .expect("open"),
            );
        }
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got[0],
            ("a/check/1/1".to_owned(), Outcome::succeeded("complete"))
        );
        assert!(
            matches!(&got[1].1, Outcome::Failed { code, retryable: true, .. } if code == "timeout")
        );
        worker.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_pushed_one_by_one_all_run() {
        // As the dispatcher sends them: one job, then wait for its outcome.
        let (tx, mut rx) = mpsc::unbounded_channel();
        let shared = Shared {
            handlers: Arc::new(Handlers::new().with("materials.check", MaterialsCheck)),
            reporter: Arc::new(Channel(tx)),
        };
        let (queue, receiver) = memory_queue();
        let worker = tokio::spawn(run_memory_worker(receiver, 8, shared));
        for i in 0..200 {
            let mut j = job("materials.check", json!({}));
            j.attempt_id = format!("a/{i}");
            queue.push(j).expect("push");
            let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
            assert!(got.is_ok(), "job {i} never ran");
        }
        worker.abort();
    }
}
