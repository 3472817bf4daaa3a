//! Production mode's transport: jobs go to the Redis worker pool, and the
//! workers' reports come back on the reports stream and are applied here.
//! Losing every key in Redis loses no case: the outbox and the attempts'
//! timeout timers are in SQL.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use apalis::prelude::BoxDynError;
use docket_workers::contract::Job;
use docket_workers::redis::{self as transport, Completion, RedisSettings};
use docket_workers::sealing::{Keyring, Sealed};
use futures_util::future::BoxFuture;
use redis::aio::ConnectionManager;
use tokio::sync::{Mutex, Notify, watch};

use super::Orchestrator;
use super::dispatcher::{Transport, TransportError};
use super::service::apply_reports;
use crate::store::Store;

/// Pushes jobs onto the per-queue Redis queues.
#[derive(Debug)]
pub struct RedisTransport {
    conn: ConnectionManager,
    settings: RedisSettings,
    keyring: Keyring,
    queues: Mutex<HashMap<String, apalis_redis::RedisStorage<Sealed>>>,
}

impl RedisTransport {
    pub fn new(conn: ConnectionManager, settings: RedisSettings, keyring: Keyring) -> Self {
        RedisTransport {
            conn,
            settings,
            keyring,
            queues: Mutex::new(HashMap::new()),
        }
    }

    /// The apalis storage of `queue`, made at its first job.
    async fn storage(&self, queue: &str) -> apalis_redis::RedisStorage<Sealed> {
        let mut queues = self.queues.lock().await;
        queues
            .entry(queue.to_owned())
            .or_insert_with(|| self.settings.jobs(self.conn.clone(), queue))
            .clone()
    }
}

impl Transport for RedisTransport {
    fn push(&self, job: Job) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let mut storage = self.storage(&job.queue).await;
            transport::push_job(&mut storage, &self.keyring, &job)
                .await
                .map_err(|e| TransportError(e.to_string()))
        })
    }

    /// The jobs of each queue in one push: two scripts per queue and round
    /// rather than two per job. A queue's jobs are pushed all or none.
    fn push_all(&self, jobs: Vec<Job>) -> BoxFuture<'_, Vec<Result<(), TransportError>>> {
        Box::pin(async move {
            let mut by_queue: BTreeMap<String, (Vec<usize>, Vec<Job>)> = BTreeMap::new();
            let count = jobs.len();
            for (i, job) in jobs.into_iter().enumerate() {
                let (places, queued) = by_queue.entry(job.queue.clone()).or_default();
                places.push(i);
                queued.push(job);
            }
            let pushed = futures_util::future::join_all(by_queue.into_iter().map(
                |(queue, (places, queued))| async move {
                    let mut storage = self.storage(&queue).await;
                    let result = transport::push_jobs(&mut storage, &self.keyring, &queued)
                        .await
                        .map_err(|e| TransportError(e.to_string()));
                    (places, result)
                },
            ))
            .await;
            let mut results = vec![Ok(()); count];
            for (places, result) in pushed {
                for i in places {
                    results[i] = result.clone();
                }
            }
            results
        })
    }
}

/// Consumes the workers' reports until `stopped` turns true, applying
/// each to its case and notifying `applied` (the loops, which dispatch the
/// job the report scheduled). A report that cannot be applied because the
/// database is away stays pending in Redis, to be delivered again.
pub async fn consume_completions<S: Store>(
    orch: Arc<Orchestrator<S>>,
    url: &str,
    conn: ConnectionManager,
    settings: RedisSettings,
    name: String,
    stopped: watch::Receiver<bool>,
    applied: Arc<Notify>,
) -> Result<(), BoxDynError> {
    // More batches in flight than the database has writers only queue in
    // its pool, in front of the dispatcher's statements: on SQLite's one
    // connection, eight reports at once doubled the dispatch latency at
    // half load that two gave (BENCHMARKS.md). Two keep one batch being
    // fetched and acknowledged while another is written.
    let at_once = transport::COMPLETIONS_AT_ONCE.min(orch.store.writers().saturating_mul(2));
    let apply = Arc::new(
        move |reports: Vec<Completion>| -> BoxFuture<'static, Vec<Result<(), BoxDynError>>> {
            let orch = Arc::clone(&orch);
            let applied = Arc::clone(&applied);
            Box::pin(async move {
                let reports = reports
                    .into_iter()
                    .map(|c| (c.attempt_id, c.outcome))
                    .collect();
                let results = apply_reports(&orch, reports).await;
                if results.iter().any(Result::is_ok) {
                    applied.notify_one();
                }
                results
                    .into_iter()
                    .map(|r| r.map_err(|e| Box::new(e) as BoxDynError))
                    .collect()
            })
        },
    );
    transport::run_completion_consumer(name, url, conn, &settings, at_once, apply, stopped).await
}
