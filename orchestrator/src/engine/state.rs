//! A case's state: everything the engine needs to decide what happens next,
//! stored as one JSON document beside the case's history.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::definition::period::Period;

/// Case data as given: field name to JSON value.
pub type Data = Map<String, Value>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseState {
    pub id: String,
    pub workflow: String,
    pub version: u32,
    pub status: Status,
    /// The step the case is in.
    pub step: String,
    /// Counts every entry into a step, so that a step entered again (a
    /// resubmission loop) gets fresh attempt and timer ids.
    pub entry: u32,
    pub phase: Phase,
    pub input: Data,
    /// The latest occurrence of each event received.
    pub events: BTreeMap<String, Received>,
    /// The latest result of each task or notify step.
    pub results: BTreeMap<String, StepResult>,
    pub deadlines: BTreeMap<String, DeadlineState>,
    /// Durable timers that are set, by id.
    pub timers: BTreeMap<String, Timer>,
    /// Jobs outside the step flow (deadline reminders) still outstanding.
    pub side_jobs: BTreeMap<String, String>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    Active,
    Completed { outcome: String },
    Cancelled { reason: String },
}

impl Status {
    pub fn is_active(&self) -> bool {
        matches!(self, Status::Active)
    }

    pub fn label(&self) -> String {
        match self {
            Status::Active => "active".to_owned(),
            Status::Completed { outcome } => format!("completed: {outcome}"),
            Status::Cancelled { .. } => "cancelled".to_owned(),
        }
    }
}

/// What the current step is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Attempt `attempt` of a task or notify step is out with the workers.
    Attempting { attempt: u32, attempt_id: String },
    /// The previous attempt failed; attempt `attempt` starts when its timer fires.
    BackingOff { attempt: u32 },
    /// Every attempt failed and the step routes no `failed` outcome: an
    /// operator may retry the step or cancel the case.
    Failed { attempts: u32, error: String },
    /// Waiting for an event.
    Waiting,
    /// The case is over.
    Finished,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Received {
    pub at: DateTime<Utc>,
    pub data: Data,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub outcome: String,
    #[serde(default)]
    pub output: Data,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlineState {
    pub started_at: DateTime<Utc>,
    /// `None` when the due date could not be computed (see `status`).
    pub due: Option<DateTime<Utc>>,
    pub status: DeadlineStatus,
    /// The limit as extended by an operator; the workflow's own otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_to: Option<Period>,
    /// Finished pauses. Time inside them does not count: the due date is
    /// derived from these facts rather than nudged at each resume, so it is
    /// the same however often the clock stopped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pauses: Vec<Pause>,
    /// Reminder jobs sent so far; numbers the next one's attempt id, since
    /// an extension may send a reminder again for the new due date.
    #[serde(default)]
    pub reminders_sent: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum DeadlineStatus {
    Running,
    Paused {
        since: DateTime<Utc>,
    },
    Met {
        at: DateTime<Utc>,
    },
    Expired {
        at: DateTime<Utc>,
    },
    /// The calendar could not count the limit (a year it does not cover):
    /// recorded for an operator, never guessed.
    Uncounted {
        error: String,
    },
}

/// A durable wake-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    pub id: String,
    pub case_id: String,
    pub due: DateTime<Utc>,
    pub kind: TimerKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TimerKind {
    /// The attempt has run too long.
    AttemptTimeout {
        attempt_id: String,
    },
    /// Time to start attempt `attempt` of the current step.
    Retry {
        attempt: u32,
    },
    /// The current wait's timeout.
    WaitTimeout {
        entry: u32,
    },
    DeadlineDue {
        deadline: String,
    },
    DeadlineReminder {
        deadline: String,
        index: usize,
    },
    /// The reminder before anniversary `n` of an ended case's follow-up.
    FollowUp {
        follow_up: String,
        n: u32,
    },
    /// The end of an ended case's retention: its personal data is erased.
    Retention,
}
