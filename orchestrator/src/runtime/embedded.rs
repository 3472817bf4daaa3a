//! Embedded mode: the workers run in the orchestrator's process on an
//! in-memory queue. The queue is not durable — the SQL outbox is: on start,
//! jobs that were on the queue when the process stopped go back to the
//! outbox ([`crate::store::Store::requeue_unfinished`]).

use std::sync::Arc;

use docket_workers::handlers::Handlers;
use docket_workers::pool::{self, MemoryQueue, Shared};
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::dispatcher::{Transport, TransportError};
use super::service::{ChannelReporter, Completion};
use crate::engine::Job;

/// The in-process queue as a transport.
#[derive(Debug)]
pub struct MemoryTransport {
    queue: MemoryQueue,
}

impl Transport for MemoryTransport {
    fn push(&self, job: Job) -> BoxFuture<'_, Result<(), TransportError>> {
        let pushed = self
            .queue
            .push(job)
            .map_err(|e| TransportError(e.to_string()));
        Box::pin(async move { pushed })
    }
}

/// In-process workers and the channel their reports arrive on.
#[derive(Debug)]
pub struct Embedded {
    pub transport: Arc<MemoryTransport>,
    pub completions: mpsc::UnboundedReceiver<Completion>,
    pub worker: JoinHandle<()>,
}

/// Starts an in-process worker running `handlers` with `concurrency` tasks.
pub fn start(handlers: Handlers, concurrency: usize) -> Embedded {
    let (tx, completions) = mpsc::unbounded_channel();
    let (queue, receiver) = pool::memory_queue();
    let shared = Shared {
        handlers: Arc::new(handlers),
        reporter: Arc::new(ChannelReporter(tx)),
    };
    let worker = tokio::spawn(pool::run_memory_worker(receiver, concurrency, shared));
    Embedded {
        transport: Arc::new(MemoryTransport { queue }),
        completions,
        worker,
    }
}
