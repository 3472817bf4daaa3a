//! Running handlers on apalis workers: one attempt per task, the worker-side
//! timeout, and the report of each outcome to the orchestrator.
//!
//! The orchestrator owns retries and timeouts durably; a worker runs exactly
//! one attempt per task and reports what happened. Its own timeout only
//! frees the worker: whether the attempt timed out is for the
//! orchestrator's timer to say.

use std::sync::Arc;

use apalis::prelude::{
    BoxDynError, Data, MemorySink, MemoryStorage, Task, WorkerBuilder, WorkerBuilderExt,
};
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};

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

async fn handle(job: Job, shared: Data<Shared>) -> Result<(), BoxDynError> {
    execute(job, &shared).await;
    Ok(())
}

/// The sending side of an in-process queue.
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    sink: MemorySink<Job>,
}

#[derive(Debug, thiserror::Error)]
#[error("the in-process queue is closed")]
pub struct QueueClosed;

impl MemoryQueue {
    pub async fn push(&mut self, job: Job) -> Result<(), QueueClosed> {
        self.sink
            .send(Task::new(job))
            .await
            .map_err(|_| QueueClosed)
    }
}

/// An in-process queue on apalis's in-memory backend: its contents are lost
/// with the process, which the orchestrator's outbox makes good on restart.
pub fn memory_queue() -> (MemoryQueue, MemoryStorage<Job>) {
    let (tx, rx) = futures_channel::mpsc::unbounded::<Task<Job>>();
    let sender = Box::new(tx.sink_map_err(apalis::prelude::MemoryStorageError::SendError))
        as Box<
            dyn futures_util::Sink<Task<Job>, Error = apalis::prelude::MemoryStorageError>
                + Send
                + Sync
                + Unpin,
        >;
    let sink = MemorySink::new(Arc::new(futures_util::lock::Mutex::new(sender)));
    let storage = MemoryStorage::new_with(sink.clone(), rx.boxed());
    (MemoryQueue { sink }, storage)
}

/// Runs a worker on an in-process queue until the queue is closed.
pub async fn run_memory_worker(
    name: &str,
    storage: MemoryStorage<Job>,
    concurrency: usize,
    shared: Shared,
) -> Result<(), BoxDynError> {
    WorkerBuilder::new(name)
        .backend(storage)
        .concurrency(concurrency)
        .data(shared)
        .build(handle)
        .run()
        .await
        .map_err(|e| Box::new(e) as BoxDynError)
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
        let (mut queue, storage) = memory_queue();
        let worker = tokio::spawn(run_memory_worker("test-worker", storage, 4, shared));
        let rules = json!({"documents": [], "always": [{"title": "Photo", "one_of": ["photo"]}], "by_category": {}, "through_agent": []});
        let mut check = job(
            "materials.check",
            json!({"rules": rules, "category": "x", "through_agent": false, "submitted": ["photo"]}),
        );
        check.attempt_id = "a/check/1/1".into();
        let mut hang = job("identity.verify", json!({}));
        hang.attempt_id = "a/verify/1/1".into();
        hang.timeout = Duration::from_millis(50);
        queue.push(hang).await.expect("push");
        queue.push(check).await.expect("push");
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
}
