//! The facts appended to a case's history. Each is a past-tense event an
//! auditor can read; together they explain every state the case was in.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::state::Data;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HistoryEvent {
    CaseStarted {
        workflow: String,
        version: u32,
        input: Data,
    },
    StepEntered {
        step: String,
        entry: u32,
    },
    AttemptScheduled {
        step: String,
        attempt_id: String,
        attempt: u32,
        handler: String,
        queue: String,
    },
    AttemptSucceeded {
        attempt_id: String,
        outcome: String,
    },
    AttemptFailed {
        attempt_id: String,
        code: String,
        message: String,
        retryable: bool,
    },
    AttemptTimedOut {
        attempt_id: String,
    },
    /// The case moved on (a deadline expired, an operator cancelled) while
    /// the attempt was out; its completion will be ignored.
    AttemptAbandoned {
        attempt_id: String,
    },
    RetryScheduled {
        step: String,
        attempt: u32,
        at: DateTime<Utc>,
    },
    StepFailed {
        step: String,
        attempts: u32,
        error: String,
    },
    SignalReceived {
        event: String,
        data: Data,
    },
    WaitTimedOut {
        step: String,
    },
    BranchTaken {
        step: String,
        condition: Option<String>,
        next: String,
    },
    DeadlineStarted {
        deadline: String,
        started_at: DateTime<Utc>,
        due: DateTime<Utc>,
    },
    DeadlineNotCounted {
        deadline: String,
        error: String,
    },
    DeadlinePaused {
        deadline: String,
    },
    DeadlineResumed {
        deadline: String,
        due: DateTime<Utc>,
    },
    /// An operator extended the limit; `limit` is the new total.
    DeadlineExtended {
        deadline: String,
        limit: String,
        due: DateTime<Utc>,
        reason: String,
        legal_basis: String,
    },
    DeadlineMet {
        deadline: String,
    },
    DeadlineExpired {
        deadline: String,
        next: String,
    },
    ReminderScheduled {
        deadline: String,
        attempt_id: String,
    },
    /// The reminder before anniversary `n` will go out at `remind_at`;
    /// `due` is the anniversary itself.
    FollowUpScheduled {
        follow_up: String,
        n: u32,
        remind_at: DateTime<Utc>,
        due: DateTime<Utc>,
    },
    FollowUpSent {
        follow_up: String,
        n: u32,
        attempt_id: String,
    },
    SideJobFinished {
        attempt_id: String,
        outcome: String,
    },
    CompletionIgnored {
        attempt_id: String,
        reason: String,
    },
    StepRetried {
        step: String,
        reason: String,
    },
    CaseCompleted {
        outcome: String,
    },
    CaseCancelled {
        reason: String,
    },
    /// The case's personal data is kept until `erase_at`: the workflow's
    /// retention after the case ended.
    RetentionScheduled {
        erase_at: DateTime<Utc>,
    },
    /// The case's personal data (`values` of them) was erased at the end
    /// of its retention. The history keeps every event, personal values
    /// unreadable.
    PersonalDataErased {
        values: usize,
    },
    /// A file (a photo, a scan) was uploaded for the case: its content is
    /// named by its SHA-256, hex, so the hash chain covers what was given.
    /// The file itself is kept outside the history, sealed.
    MaterialUploaded {
        kind: String,
        sha256: String,
        media_type: String,
        size: u64,
    },
}

impl HistoryEvent {
    /// The event's type as stored, e.g. `attempt_failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            HistoryEvent::CaseStarted { .. } => "case_started",
            HistoryEvent::StepEntered { .. } => "step_entered",
            HistoryEvent::AttemptScheduled { .. } => "attempt_scheduled",
            HistoryEvent::AttemptSucceeded { .. } => "attempt_succeeded",
            HistoryEvent::AttemptFailed { .. } => "attempt_failed",
            HistoryEvent::AttemptTimedOut { .. } => "attempt_timed_out",
            HistoryEvent::AttemptAbandoned { .. } => "attempt_abandoned",
            HistoryEvent::RetryScheduled { .. } => "retry_scheduled",
            HistoryEvent::StepFailed { .. } => "step_failed",
            HistoryEvent::SignalReceived { .. } => "signal_received",
            HistoryEvent::WaitTimedOut { .. } => "wait_timed_out",
            HistoryEvent::BranchTaken { .. } => "branch_taken",
            HistoryEvent::DeadlineStarted { .. } => "deadline_started",
            HistoryEvent::DeadlineNotCounted { .. } => "deadline_not_counted",
            HistoryEvent::DeadlinePaused { .. } => "deadline_paused",
            HistoryEvent::DeadlineResumed { .. } => "deadline_resumed",
            HistoryEvent::DeadlineExtended { .. } => "deadline_extended",
            HistoryEvent::DeadlineMet { .. } => "deadline_met",
            HistoryEvent::DeadlineExpired { .. } => "deadline_expired",
            HistoryEvent::ReminderScheduled { .. } => "reminder_scheduled",
            HistoryEvent::FollowUpScheduled { .. } => "follow_up_scheduled",
            HistoryEvent::FollowUpSent { .. } => "follow_up_sent",
            HistoryEvent::SideJobFinished { .. } => "side_job_finished",
            HistoryEvent::CompletionIgnored { .. } => "completion_ignored",
            HistoryEvent::StepRetried { .. } => "step_retried",
            HistoryEvent::CaseCompleted { .. } => "case_completed",
            HistoryEvent::CaseCancelled { .. } => "case_cancelled",
            HistoryEvent::RetentionScheduled { .. } => "retention_scheduled",
            HistoryEvent::PersonalDataErased { .. } => "personal_data_erased",
            HistoryEvent::MaterialUploaded { .. } => "material_uploaded",
        }
    }
}
