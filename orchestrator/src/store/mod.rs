//! Durable state in SQL: deployed definitions, cases, their append-only
//! history, attempts, timers and the transactional outbox of jobs.
//!
//! A case's change — its history events, its new state, the jobs it
//! schedules and its timers — is written in one transaction
//! ([`Store::update_case`]). PostgreSQL ([`postgres`]) is the production
//! store; SQLite ([`sqlite`]) is the embedded default. Both pass the same
//! conformance suite (`conformance`).

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::engine::{CaseState, Decision, HistoryEvent, Job, Rejection};

pub mod postgres;
mod rows;
mod sql;
pub mod sqlite;
mod write;

#[cfg(test)]
pub(crate) mod conformance;

/// A deployed workflow definition, stored by content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DefinitionRecord {
    pub id: i64,
    pub name: String,
    pub version: u32,
    /// SHA-256 of the source, hex.
    pub hash: String,
    pub source: String,
    pub deployed_at: DateTime<Utc>,
}

/// A case as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseRecord {
    pub definition_id: i64,
    pub state: CaseState,
}

/// One line of a case's list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseSummary {
    pub id: String,
    pub workflow: String,
    pub version: u32,
    /// `active`, `completed` or `cancelled`.
    pub status: String,
    pub outcome: Option<String>,
    pub step: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One event of a case's history, numbered from 1 per case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryRecord {
    pub case_id: String,
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub event: HistoryEvent,
}

/// A job waiting in the outbox to be handed to the transport.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    pub id: i64,
    pub job: Job,
    pub created_at: DateTime<Utc>,
}

/// A timer that has fallen due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueTimer {
    pub id: String,
    pub case_id: String,
    pub due: DateTime<Utc>,
}

/// How [`Store::update_case`] waits for a case another process is changing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// Wait for it (requests, completions).
    Wait,
    /// Skip it and report [`Updated::Busy`] (timer sweeps: another
    /// orchestrator is already working on the case).
    SkipLocked,
}

/// What [`Store::update_case`] did.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "returned once per write and never stored in bulk: boxing would buy nothing"
)]
pub enum Updated {
    /// The decision was written.
    Written(Decision),
    /// The decision changed nothing, so nothing was written.
    Unchanged,
    /// Another process holds the case; nothing was done.
    Busy,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("no case `{0}`")]
    UnknownCase(String),
    #[error(
        "workflow `{name}` version {version} is already deployed with different content; deploy it as a new version"
    )]
    VersionConflict { name: String, version: u32 },
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// A stored value could not be read back: named so an operator can
    /// find the row, and never fatal to the process.
    #[error("stored {what} could not be read")]
    Corrupt {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Filters for listing cases.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    pub workflow: Option<String>,
    pub status: Option<String>,
    pub step: Option<String>,
    pub limit: Option<u32>,
}

/// The operations the orchestrator needs from its database.
///
/// Every method is one transaction. Implementations must let several
/// orchestrator processes share one database: a case is changed under a
/// row lock, so no timer fires twice and no completion is applied twice.
pub trait Store: Send + Sync + 'static {
    /// Applies the migrations that have not run yet.
    fn migrate(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores a definition; deploying the same content again returns the
    /// existing record.
    fn deploy(
        &self,
        name: &str,
        version: u32,
        hash: &str,
        source: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<DefinitionRecord, StoreError>> + Send;

    fn definition(
        &self,
        id: i64,
    ) -> impl Future<Output = Result<Option<DefinitionRecord>, StoreError>> + Send;

    /// The highest deployed version of a workflow.
    fn latest_definition(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<DefinitionRecord>, StoreError>> + Send;

    /// Creates a case from its first decision.
    fn insert_case(
        &self,
        definition_id: i64,
        decision: &Decision,
        actor: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Locks a case, asks `decide` what changes, and writes the decision:
    /// history, state, attempts, outbox and timers, in one transaction.
    /// A [`Rejection`] from `decide` writes nothing and is returned as
    /// [`StoreError::Rejected`].
    fn update_case<F>(
        &self,
        case_id: &str,
        lock: Lock,
        actor: &str,
        now: DateTime<Utc>,
        decide: F,
    ) -> impl Future<Output = Result<Updated, StoreError>> + Send
    where
        F: FnOnce(&CaseRecord) -> Result<Decision, Rejection> + Send;

    fn case(
        &self,
        case_id: &str,
    ) -> impl Future<Output = Result<Option<CaseRecord>, StoreError>> + Send;

    fn cases(
        &self,
        filter: &CaseFilter,
    ) -> impl Future<Output = Result<Vec<CaseSummary>, StoreError>> + Send;

    fn history(
        &self,
        case_id: &str,
    ) -> impl Future<Output = Result<Vec<HistoryRecord>, StoreError>> + Send;

    /// Timers due at `now`, earliest first.
    fn due_timers(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<DueTimer>, StoreError>> + Send;

    /// When the next timer falls due, if any is set.
    fn next_timer(&self) -> impl Future<Output = Result<Option<DateTime<Utc>>, StoreError>> + Send;

    /// Jobs not yet handed to the transport, oldest first.
    fn waiting_jobs(
        &self,
        queue: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<OutboxRecord>, StoreError>> + Send;

    /// Records that a job is on the transport. The attempt's timeout timer
    /// is pushed to `now` plus the job's timeout, so time spent waiting in
    /// the outbox does not count against the attempt.
    fn mark_dispatched(
        &self,
        outbox_id: i64,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Jobs handed to the transport whose attempt has not finished, per
    /// queue: what the transport should hold.
    fn dispatched_unfinished(
        &self,
        queue: &str,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Puts every dispatched job whose attempt has not finished back in the
    /// outbox: after the transport lost its contents (an in-memory queue
    /// after a restart, a flushed Redis), nothing outstanding is lost.
    fn requeue_unfinished(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// The status column of a case.
pub(crate) fn status_columns(state: &CaseState) -> (&'static str, Option<&str>) {
    use crate::engine::Status;
    match &state.status {
        Status::Active => ("active", None),
        Status::Completed { outcome } => ("completed", Some(outcome.as_str())),
        Status::Cancelled { .. } => ("cancelled", None),
    }
}

/// The attempts a decision finishes, from its history.
pub(crate) fn finished_attempts(decision: &Decision) -> impl Iterator<Item = &str> {
    decision.history.iter().filter_map(|e| match e {
        HistoryEvent::AttemptSucceeded { attempt_id, .. }
        | HistoryEvent::AttemptFailed { attempt_id, .. }
        | HistoryEvent::AttemptTimedOut { attempt_id }
        | HistoryEvent::AttemptAbandoned { attempt_id }
        | HistoryEvent::SideJobFinished { attempt_id, .. } => Some(attempt_id.as_str()),
        _ => None,
    })
}
