//! The job contract between the orchestrator and the workers: what a job
//! carries and what an attempt reports back.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What one attempt of a job reports back to the orchestrator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// The handler finished with one of its business outcomes.
    Succeeded {
        outcome: String,
        #[serde(default)]
        output: Map<String, Value>,
    },
    /// The attempt failed. `retryable` failures are retried by the
    /// orchestrator's policy unless the step marks `code` non-retryable.
    Failed {
        code: String,
        message: String,
        retryable: bool,
        /// A delay the called service asked for, in seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_secs: Option<u64>,
    },
}

impl Outcome {
    pub fn succeeded(outcome: &str) -> Outcome {
        Outcome::Succeeded {
            outcome: outcome.to_owned(),
            output: Map::new(),
        }
    }

    pub fn retryable(code: &str, message: impl Into<String>) -> Outcome {
        Outcome::Failed {
            code: code.to_owned(),
            message: message.into(),
            retryable: true,
            retry_after_secs: None,
        }
    }

    pub fn permanent(code: &str, message: impl Into<String>) -> Outcome {
        Outcome::Failed {
            code: code.to_owned(),
            message: message.into(),
            retryable: false,
            retry_after_secs: None,
        }
    }
}
