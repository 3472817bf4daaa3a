//! Workflow schedules as stored: when each fires next, and what each firing
//! did. The runtime (`runtime::schedules`) decides; the store makes each
//! decision a compare-and-set in one transaction, so several orchestrators
//! can share the rows and a tick still fires once.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::engine::{CaseState, Job};

/// Attempt ids of firings' notifications start with this; ids of case
/// attempts never do (a case id has no `:`). The completion path routes on
/// it, and the store writes such attempts against their firing, not a case.
pub const FIRING_ATTEMPT_PREFIX: &str = "schedule:";

/// Whether an attempt belongs to a schedule's firing rather than a case.
pub fn is_firing_attempt(attempt_id: &str) -> bool {
    attempt_id.starts_with(FIRING_ATTEMPT_PREFIX)
}

/// One schedule of a workflow, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleRecord {
    pub workflow: String,
    pub schedule: String,
    pub cron: String,
    pub timezone: String,
    /// `None` when the cron expression has no tick left.
    pub next_at: Option<DateTime<Utc>>,
    /// Set while the workflow's latest version does not have the schedule.
    pub retired_at: Option<DateTime<Utc>>,
}

/// A schedule of a workflow's latest version, for
/// [`super::Store::sync_schedules`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSpec {
    pub id: String,
    pub cron: String,
    pub timezone: String,
    /// The first tick after now: where a new, changed or revived schedule
    /// starts. Ticks before it are never fired for it.
    pub first_at: Option<DateTime<Utc>>,
}

/// Where a firing is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FiringStatus {
    /// Its notification's attempt is out.
    Sending,
    /// An attempt failed; the next starts at `due_at`.
    Retrying,
    Sent,
    /// Nothing could be sent, or delivery finally failed; `outcome` says why.
    Failed,
    /// No case was due: nothing was sent.
    NothingDue,
}

impl FiringStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FiringStatus::Sending => "sending",
            FiringStatus::Retrying => "retrying",
            FiringStatus::Sent => "sent",
            FiringStatus::Failed => "failed",
            FiringStatus::NothingDue => "nothing_due",
        }
    }

    pub fn parse(s: &str) -> Option<FiringStatus> {
        Some(match s {
            "sending" => FiringStatus::Sending,
            "retrying" => FiringStatus::Retrying,
            "sent" => FiringStatus::Sent,
            "failed" => FiringStatus::Failed,
            "nothing_due" => FiringStatus::NothingDue,
            _ => return None,
        })
    }

    /// Whether nothing more will happen to the firing.
    pub fn is_finished(self) -> bool {
        !matches!(self, FiringStatus::Sending | FiringStatus::Retrying)
    }
}

/// One fired tick of a schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Firing {
    pub id: i64,
    pub workflow: String,
    pub schedule: String,
    /// The scheduled instant this firing stands for.
    pub tick_at: DateTime<Utc>,
    pub fired_at: DateTime<Utc>,
    /// Cases listed in the message.
    pub cases: u64,
    pub status: FiringStatus,
    pub outcome: Option<String>,
    /// The notification's current attempt, 0 when nothing is sent.
    pub attempt: u32,
    pub attempt_id: Option<String>,
    /// The current attempt's job, kept to send the next attempt.
    pub job: Option<Job>,
    pub due_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The record a claimed tick writes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFiring {
    pub tick_at: DateTime<Utc>,
    pub cases: u64,
    pub status: FiringStatus,
    pub outcome: Option<String>,
    /// The notification, enqueued in the claim's transaction.
    pub job: Option<Job>,
    pub due_at: Option<DateTime<Utc>>,
}

/// Moving a schedule on from the tick it was due at.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub workflow: String,
    pub schedule: String,
    /// `next_at` as read: the claim is refused if it has moved since.
    pub expected: DateTime<Utc>,
    pub next_at: Option<DateTime<Utc>>,
    /// `None` when the ticks passed are skipped (days off).
    pub firing: Option<NewFiring>,
}

/// What [`super::Store::claim_schedule`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// The schedule moved on; the firing written, if one was asked for and
    /// its tick had not been fired already.
    Won { firing: Option<i64> },
    /// Another orchestrator moved it first; nothing was written.
    Lost,
}

/// A change of a firing, applied only if it is still at
/// `expected_status` and `expected_attempt`.
#[derive(Debug, Clone, PartialEq)]
pub struct FiringUpdate {
    pub id: i64,
    pub expected_status: FiringStatus,
    pub expected_attempt: u32,
    pub status: FiringStatus,
    pub outcome: Option<String>,
    pub due_at: Option<DateTime<Utc>>,
    /// The attempt this change settles.
    pub finish_attempt: Option<String>,
    /// The next attempt, enqueued with the change; it becomes the firing's
    /// current attempt and job.
    pub enqueue: Option<Job>,
}

/// The active cases of a workflow, for a sweep.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActiveCases {
    /// As stored: personal values stay sealed, since a sweep reads only
    /// ids and deadlines.
    pub states: Vec<CaseState>,
    /// Cases whose stored state could not be read: named so the firing can
    /// say it could not look at them, rather than leaving them out unseen.
    pub unreadable: Vec<String>,
}

/// The columns of a new firing that follow from its job.
pub(super) struct FiringColumns<'a> {
    pub(super) attempt: i64,
    pub(super) attempt_id: Option<&'a str>,
    pub(super) finished_at: Option<DateTime<Utc>>,
}

impl NewFiring {
    pub(super) fn columns(&self, now: DateTime<Utc>) -> FiringColumns<'_> {
        FiringColumns {
            attempt: self.job.as_ref().map_or(0, |j| i64::from(j.attempt)),
            attempt_id: self.job.as_ref().map(|j| j.attempt_id.as_str()),
            finished_at: self.status.is_finished().then_some(now),
        }
    }
}

impl FiringUpdate {
    pub(super) fn finished_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.status.is_finished().then_some(now)
    }
}
