//! Moving jobs from the SQL outbox onto the transport, keeping only a
//! bounded window of jobs per queue on the transport: the backlog stays in
//! SQL, where it costs nothing, and the transport never holds a list long
//! enough to slow it down (apalis-redis 1.0.0 fails at 8,000 due jobs).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use crate::engine::Job;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
#[error("the transport refused a job: {0}")]
pub struct TransportError(pub String);

/// Where dispatched jobs go: the in-process queue or Redis.
pub trait Transport: std::fmt::Debug + Send + Sync + 'static {
    fn push(&self, job: Job) -> BoxFuture<'_, Result<(), TransportError>>;
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// Dispatches waiting jobs, oldest first, up to `window` outstanding jobs
/// per queue. Returns how many were dispatched.
pub async fn dispatch_once<S: Store>(
    store: &S,
    transport: &dyn Transport,
    window: u64,
    now: DateTime<Utc>,
) -> Result<usize, DispatchError> {
    let waiting = store.waiting_jobs(None, 1_000).await?;
    let mut outstanding: BTreeMap<String, u64> = BTreeMap::new();
    let mut dispatched = 0;
    for record in waiting {
        let queue = record.job.queue.clone();
        let count = match outstanding.get(&queue) {
            Some(n) => *n,
            None => store.dispatched_unfinished(&queue).await?,
        };
        if count >= window {
            outstanding.insert(queue, count);
            continue;
        }
        // Claimed first, so that of several orchestrators one pushes it.
        if !store.mark_dispatched(record.id, now).await? {
            continue;
        }
        if let Err(e) = transport.push(record.job).await {
            store.release_dispatch(record.id).await?;
            return Err(e.into());
        }
        outstanding.insert(queue, count + 1);
        dispatched += 1;
    }
    Ok(dispatched)
}
