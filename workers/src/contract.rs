//! The job contract between the orchestrator and the workers: what a job
//! carries and what an attempt reports back.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The version of [`Job`]'s layout. A worker refuses, permanently and with
/// a reason, a job of a version it does not know.
pub const JOB_VERSION: u32 = 1;

/// One attempt of a job for the workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Layout version, [`JOB_VERSION`] when written.
    pub version: u32,
    /// Stable id of this attempt, also the idempotency key handlers pass on
    /// to the services they call.
    pub attempt_id: String,
    pub case_id: String,
    pub step: String,
    pub attempt: u32,
    /// The handler's stable name, e.g. `identity.verify`.
    pub handler: String,
    pub queue: String,
    pub params: Map<String, Value>,
    /// How long the attempt may run on the worker.
    #[serde(rename = "timeout_secs", with = "secs")]
    pub timeout: Duration,
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

/// A workflow's materials rules, sent with each `materials.check` job so
/// the check always uses the rules of the version the case is pinned to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Materials {
    pub documents: Vec<Document>,
    /// Required of every applicant.
    pub always: Vec<Requirement>,
    /// Required by applicant category.
    pub by_category: BTreeMap<String, Vec<Requirement>>,
    /// Required in addition when a guardian or relative applies.
    pub through_agent: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub id: String,
    pub title: String,
}

/// Met by submitting any one of `one_of`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    pub title: String,
    pub one_of: Vec<String>,
}

impl Materials {
    /// Every requirement the submission does not meet, in the order the
    /// rules list them, so the applicant is told all of them at once.
    pub fn missing<'a>(
        &'a self,
        category: &str,
        through_agent: bool,
        submitted: &[String],
    ) -> Vec<&'a Requirement> {
        let by_category = self
            .by_category
            .get(category)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let agent = if through_agent {
            self.through_agent.as_slice()
        } else {
            &[]
        };
        self.always
            .iter()
            .chain(by_category)
            .chain(agent)
            .filter(|r| !r.one_of.iter().any(|doc| submitted.contains(doc)))
            .collect()
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Materials {
        let req = |title: &str, docs: &[&str]| Requirement {
            title: title.to_owned(),
            one_of: docs.iter().map(|d| (*d).to_owned()).collect(),
        };
        Materials {
            documents: Vec::new(),
            always: vec![
                req("Identity card", &["id_card"]),
                req("Residence", &["lease", "title"]),
            ],
            by_category: [("study".to_owned(), vec![req("Study", &["student_card"])])].into(),
            through_agent: vec![req("Agent ID", &["agent_id"])],
        }
    }

    #[test]
    fn lists_every_missing_requirement_at_once() {
        let r = rules();
        let titles =
            |m: Vec<&Requirement>| m.into_iter().map(|r| r.title.clone()).collect::<Vec<_>>();
        assert_eq!(
            titles(r.missing("study", true, &[])),
            ["Identity card", "Residence", "Study", "Agent ID"]
        );
        let submitted = [
            "id_card".to_owned(),
            "title".to_owned(),
            "student_card".to_owned(),
        ];
        assert!(r.missing("study", false, &submitted).is_empty());
        assert_eq!(titles(r.missing("study", true, &submitted)), ["Agent ID"]);
        assert_eq!(
            titles(r.missing("employment", false, &submitted)),
            Vec::<String>::new()
        );
    }
}
