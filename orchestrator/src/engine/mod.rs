//! The engine: a pure function from a case's state and what just happened
//! to its next state, the history events that explain the change, and the
//! effects to carry out (jobs to enqueue, timers to set or cancel).
//!
//! No I/O happens here and the clock is passed in, so every rule is tested
//! in microseconds and a recorded history can be replayed. The store writes
//! a [`Decision`] in one transaction; the dispatcher and the timer loop
//! carry out its effects.
//!
//! - [`state`]: the case state as stored.
//! - [`history`]: the facts appended to a case's history.
//! - [`values`]: evaluating conditions and templates, checking data.
//! - `machine`: the transitions.

pub mod history;
mod machine;
pub mod state;
pub mod values;

use chrono::{DateTime, Utc};
pub use docket_workers::contract::Job;
use docket_workers::contract::Outcome;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::calendar::Calendar;
use crate::definition::Workflow;
pub use history::HistoryEvent;
pub use machine::{Extension, Material, decide, start};
pub use state::{CaseState, Data, Phase, Status, Timer, TimerKind};

/// What a decision is made against.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The definition the case is pinned to.
    pub workflow: &'a Workflow,
    pub calendars: &'a BTreeMap<String, Calendar>,
    /// Addresses of the workflow's contacts, from configuration.
    pub contacts: &'a BTreeMap<String, String>,
    pub now: DateTime<Utc>,
}

/// Something that happened to a case.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// An external event, e.g. from the applicant or the police.
    Signal { event: String, data: Data },
    /// A worker's report on one attempt.
    Complete {
        attempt_id: String,
        outcome: Outcome,
    },
    /// A durable timer fell due.
    FireTimer { timer_id: String },
    /// An operator ends the case.
    Cancel { reason: String },
    /// An operator runs a failed step again, with a fresh retry budget.
    RetryStep { reason: String },
    /// An operator extends a statutory deadline.
    ExtendDeadline(Extension),
    /// A file was uploaded for the case and stored; only its history
    /// event is the engine's.
    RecordMaterial(Material),
}

/// The result of a transition.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub state: CaseState,
    pub history: Vec<HistoryEvent>,
    pub effects: Vec<Effect>,
}

impl Decision {
    /// A decision that changes nothing (a stale timer).
    pub fn is_noop(&self) -> bool {
        self.history.is_empty() && self.effects.is_empty()
    }
}

/// Work the engine asks for, carried out after the decision is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    Enqueue(Job),
    SetTimer(Timer),
    CancelTimer { timer_id: String },
}

/// Why a command was refused. A refused command changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("{what}: field `{field}` {problem}")]
    InvalidData {
        what: String,
        field: String,
        problem: String,
    },
    #[error("the case has ended ({status}); it accepts no more changes")]
    Finished { status: String },
    #[error("event `{event}` is not declared by workflow `{workflow}`")]
    UnknownEvent { event: String, workflow: String },
    #[error(
        "the case is at step `{step}` and is not waiting for `{event}`{}",
        waiting_for(expected)
    )]
    NotWaitingFor {
        event: String,
        step: String,
        expected: Vec<String>,
    },
    #[error("step `{step}` has not failed; only a failed step can be retried")]
    NotFailed { step: String },
    #[error("deadline `{deadline}` cannot be extended: {problem}")]
    ExtensionRefused { deadline: String, problem: String },
    #[error("the workflow leads to step `{step}`, which it does not define")]
    BrokenDefinition { step: String },
}

fn waiting_for(expected: &[String]) -> String {
    if expected.is_empty() {
        String::new()
    } else {
        format!(" (it waits for {})", expected.join(", "))
    }
}

#[cfg(test)]
mod tests;
