//! `bench.noop`: for benchmarks only (`ops/bench`, `tests/bench/`). It does
//! no work and succeeds at once, so a workflow of such steps measures what
//! the orchestrator, the SQL store, the transport and the pool cost on
//! their own. It reports when it started (`started_at_us`, microseconds
//! since the Unix epoch) so the benchmark can measure dispatch latency:
//! from the previous step's completion being recorded to this job
//! starting on a worker.

use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

use super::Handler;
use crate::contract::{Job, Outcome};

/// The benchmark's no-op handler.
#[derive(Debug, Default, Clone, Copy)]
pub struct BenchNoop;

impl Handler for BenchNoop {
    fn run<'a>(&'a self, _job: &'a Job) -> BoxFuture<'a, Outcome> {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let mut output = Map::new();
        output.insert("started_at_us".to_owned(), Value::from(started));
        Box::pin(async move {
            Outcome::Succeeded {
                outcome: "done".to_owned(),
                output,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::handlers::tests::job;

    #[tokio::test]
    async fn succeeds_at_once_and_says_when_it_started() {
        let outcome = BenchNoop.run(&job("bench.noop", json!({}))).await;
        let Outcome::Succeeded { outcome, output } = outcome else {
            panic!("bench.noop failed: {outcome:?}");
        };
        assert_eq!(outcome, "done");
        assert!(output["started_at_us"].as_u64().is_some_and(|t| t > 0));
    }
}
