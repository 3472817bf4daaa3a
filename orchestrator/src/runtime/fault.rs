//! Fault injection for the reliability tests: a process that dies at a
//! chosen point, as a crash or a SIGKILL would leave it. Enabled only by
//! environment variables that tests set.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::BoxFuture;

use super::dispatcher::{Transport, TransportError};
use crate::engine::Job;

/// Set to N to abort the process just before the N-th job is handed to the
/// transport: its attempt is committed in SQL, but never dispatched.
pub const ABORT_BEFORE_DISPATCH: &str = "DOCKET_FAULT_ABORT_BEFORE_DISPATCH";

/// A transport that aborts the process before its `n`-th push.
#[derive(Debug)]
pub struct AbortBeforeDispatch {
    inner: Arc<dyn Transport>,
    remaining: AtomicU64,
}

impl AbortBeforeDispatch {
    /// Wraps `inner` when the environment asks for the fault.
    pub fn from_env(inner: Arc<dyn Transport>) -> Arc<dyn Transport> {
        match std::env::var(ABORT_BEFORE_DISPATCH)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            Some(n) if n > 0 => {
                tracing::warn!(n, "fault injection: aborting before dispatch number {n}");
                Arc::new(AbortBeforeDispatch {
                    inner,
                    remaining: AtomicU64::new(n),
                })
            }
            _ => inner,
        }
    }
}

impl AbortBeforeDispatch {
    fn count(&self, job: &Job) {
        if self.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
            eprintln!(
                "fault injection: aborting before dispatching {}",
                job.attempt_id
            );
            std::process::abort();
        }
    }
}

impl Transport for AbortBeforeDispatch {
    fn push(&self, job: Job) -> BoxFuture<'_, Result<(), TransportError>> {
        self.count(&job);
        self.inner.push(job)
    }

    fn push_all(&self, jobs: Vec<Job>) -> BoxFuture<'_, Vec<Result<(), TransportError>>> {
        jobs.iter().for_each(|job| self.count(job));
        self.inner.push_all(jobs)
    }
}
