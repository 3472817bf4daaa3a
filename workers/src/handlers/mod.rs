//! Task handlers: one attempt of one job in, a typed [`Outcome`] out.
//!
//! [`Handlers::run`] is the only way a job reaches a handler. It refuses
//! jobs it cannot read (unknown layout version or handler) permanently and
//! with a reason, and turns a panicking handler into a failed attempt, so
//! one bad job never takes a worker down.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::contract::{JOB_VERSION, Job, Outcome};

pub mod bench;
pub mod identity;
pub mod materials;
pub mod notify;

/// Runs one attempt of one kind of job.
pub trait Handler: Send + Sync + 'static {
    fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Outcome>;
}

/// The handlers a worker runs, by stable name.
#[derive(Clone, Default)]
pub struct Handlers {
    by_name: BTreeMap<String, Arc<dyn Handler>>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

impl Handlers {
    pub fn new() -> Self {
        Handlers::default()
    }

    /// Registers `handler` under `name`, which must be in the catalog.
    pub fn with(mut self, name: &str, handler: impl Handler) -> Self {
        debug_assert!(
            crate::catalog::handler(name).is_some(),
            "{name} is not in the catalog"
        );
        self.by_name.insert(name.to_owned(), Arc::new(handler));
        self
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Runs one attempt. Never panics and never returns without an outcome.
    pub async fn run(&self, job: &Job) -> Outcome {
        if job.version != JOB_VERSION {
            return Outcome::permanent(
                "unsupported_job_version",
                format!("job layout version {} is not {JOB_VERSION}", job.version),
            );
        }
        let Some(handler) = self.by_name.get(&job.handler) else {
            return Outcome::permanent(
                "unknown_handler",
                format!("this worker has no handler `{}`", job.handler),
            );
        };
        match AssertUnwindSafe(handler.run(job)).catch_unwind().await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::retryable("panic", format!("handler `{}` panicked", job.handler)),
        }
    }
}

/// A text parameter of a job, or a permanent failure naming it.
pub(crate) fn text_param<'a>(job: &'a Job, name: &str) -> Result<&'a str, Outcome> {
    match job.params.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Outcome::permanent(
            "invalid_request",
            format!("parameter `{name}` must be text"),
        )),
        None => Err(Outcome::permanent(
            "invalid_request",
            format!("parameter `{name}` is missing"),
        )),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use serde_json::{Map, json};

    use super::*;

    pub(crate) fn job(handler: &str, params: Value) -> Job {
        Job {
            version: JOB_VERSION,
            attempt_id: "case-1/step/1/1".to_owned(),
            case_id: "case-1".to_owned(),
            step: "step".to_owned(),
            attempt: 1,
            handler: handler.to_owned(),
            queue: "q".to_owned(),
            params: params.as_object().cloned().unwrap_or_else(Map::new),
            timeout: Duration::from_secs(5),
        }
    }

    #[derive(Debug)]
    struct Panics;

    impl Handler for Panics {
        fn run<'a>(&'a self, _: &'a Job) -> BoxFuture<'a, Outcome> {
            Box::pin(async { panic!("boom") })
        }
    }

    #[tokio::test]
    async fn unreadable_jobs_fail_permanently_and_panics_are_failed_attempts() {
        let handlers = Handlers::new().with("identity.verify", Panics);
        let mut old = job("identity.verify", json!({}));
        old.version = 99;
        assert!(
            matches!(handlers.run(&old).await, Outcome::Failed { retryable: false, code, .. } if code == "unsupported_job_version")
        );
        let unknown = job("fax.send", json!({}));
        assert!(
            matches!(handlers.run(&unknown).await, Outcome::Failed { retryable: false, code, .. } if code == "unknown_handler")
        );
        let panics = job("identity.verify", json!({}));
        assert!(
            matches!(handlers.run(&panics).await, Outcome::Failed { retryable: true, code, .. } if code == "panic")
        );
    }
}
