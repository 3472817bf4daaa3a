//! Durable state in SQL: deployed definitions, cases, their append-only
//! history, attempts, timers and the transactional outbox of jobs.
//!
//! A case's change — its history events, its new state, the jobs it
//! schedules and its timers — is written in one transaction
//! ([`Store::update_case`]). PostgreSQL ([`postgres`]) is the production
//! store; SQLite ([`sqlite`]) is the embedded default. Both pass the same
//! conformance suite (`conformance`).
//!
//! Workflow schedules ([`schedules`]) keep their next tick and every firing
//! here too; claiming a tick is a compare-and-set in the same transaction
//! as the firing's record and its notification job.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::engine::{CaseState, Decision, HistoryEvent, Job, Rejection};

pub mod api;
pub mod audit;
pub mod keys;
pub mod materials;
pub mod postgres;
mod rows;
pub mod schedules;
mod sql;
pub mod sqlite;
mod write;

pub use schedules::{
    ActiveCases, Claim, Claimed, Firing, FiringStatus, FiringUpdate, NewFiring, ScheduleRecord,
    ScheduleSpec,
};

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

/// A job waiting in the outbox, as a dispatcher chooses among them: before
/// it claims them, and before their parameters are opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingJob {
    pub id: i64,
    pub queue: String,
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
    #[error(transparent)]
    Privacy(#[from] crate::privacy::PrivacyError),
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

    /// How many transactions can write at once: what applying work in
    /// parallel can use before it only queues for a connection.
    fn writers(&self) -> usize {
        usize::MAX
    }

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

    /// [`Store::update_case`] for each of `cases`, with a result each, in
    /// their order. A store may write them in one transaction, sharing its
    /// round trips and statements (PostgreSQL does); an `Err` of the whole
    /// then means none of them was written. A case named twice gets its
    /// decisions one after the other.
    fn update_cases<F>(
        &self,
        cases: Vec<(String, F)>,
        lock: Lock,
        actor: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<Result<Updated, StoreError>>, StoreError>> + Send
    where
        F: FnOnce(&CaseRecord) -> Result<Decision, Rejection> + Send,
    {
        async move {
            let mut results = Vec::with_capacity(cases.len());
            for (case_id, decide) in cases {
                let updated = self.update_case(&case_id, lock, actor, now, decide).await;
                results.push(updated);
            }
            Ok(results)
        }
    }

    fn case(
        &self,
        case_id: &str,
    ) -> impl Future<Output = Result<Option<CaseRecord>, StoreError>> + Send;

    /// The definition a case runs on, without reading (or opening) its
    /// state: what a command needs before it takes the case's lock.
    fn case_definition(
        &self,
        case_id: &str,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;

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

    /// Jobs not yet handed to the transport, oldest first, by id and queue
    /// only: reading (and opening) every waiting job each round would cost
    /// more than dispatching the few there is room for.
    fn waiting(
        &self,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<WaitingJob>, StoreError>> + Send;

    /// Claims waiting jobs for the transport, before they are pushed, in
    /// one transaction; returns the jobs claimed, opened, oldest first. Of
    /// several orchestrators that read the same waiting job, one claims it;
    /// the others leave it out, as they do a job withdrawn since (its
    /// attempt settled) and one that cannot be read (logged, and left
    /// waiting for an operator). Each claimed attempt's timeout timer is
    /// pushed to `now` plus the job's timeout, so time spent waiting in the
    /// outbox does not count against the attempt — and a process that dies
    /// between the claim and the push leaves a job that comes back when
    /// that timer fires.
    fn claim_jobs(
        &self,
        outbox_ids: &[i64],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<OutboxRecord>, StoreError>> + Send;

    /// Gives back claimed jobs the transport refused, so that the next
    /// round dispatches them again.
    fn release_jobs(
        &self,
        outbox_ids: &[i64],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// [`Store::claim_jobs`] of one job: whether it was claimed.
    fn mark_dispatched(
        &self,
        outbox_id: i64,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move { Ok(!self.claim_jobs(&[outbox_id], now).await?.is_empty()) }
    }

    /// [`Store::release_jobs`] of one job.
    fn release_dispatch(
        &self,
        outbox_id: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move { self.release_jobs(&[outbox_id]).await }
    }

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

    // --- schedules -------------------------------------------------------

    /// The highest deployed version of every workflow, by name.
    fn latest_definitions(
        &self,
    ) -> impl Future<Output = Result<Vec<DefinitionRecord>, StoreError>> + Send;

    /// Makes the stored schedules of `workflow` those of its latest
    /// version: adds the missing ones at their `first_at`, restarts those
    /// whose expression or time zone changed, retires those it no longer
    /// has. An unchanged schedule keeps its `next_at`, even one long past.
    fn sync_schedules(
        &self,
        workflow: &str,
        specs: &[ScheduleSpec],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every stored schedule, retired ones included.
    fn schedules(&self) -> impl Future<Output = Result<Vec<ScheduleRecord>, StoreError>> + Send;

    /// When schedule work next falls due, if any is waiting: a tick, a
    /// notification timing out or a retry.
    fn next_schedule_work(
        &self,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, StoreError>> + Send;

    /// Schedules whose next tick is at or before `now`, earliest first.
    fn due_schedules(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ScheduleRecord>, StoreError>> + Send;

    /// Moves a schedule from `claim.expected` to `claim.next_at`, writing
    /// the firing and enqueueing its notification in the same transaction;
    /// [`Claimed::Lost`], writing nothing, if another process moved it
    /// first. Of any number of concurrent claims of one tick, one wins.
    fn claim_schedule(
        &self,
        claim: &Claim,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Claimed, StoreError>> + Send;

    /// The active cases of every version of `workflow`.
    fn active_cases(
        &self,
        workflow: &str,
    ) -> impl Future<Output = Result<ActiveCases, StoreError>> + Send;

    /// Firings whose notification timed out or is due to be retried.
    fn due_firings(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Firing>, StoreError>> + Send;

    /// The firing an attempt belongs to, whether or not it is the current one.
    fn firing_of_attempt(
        &self,
        attempt_id: &str,
    ) -> impl Future<Output = Result<Option<Firing>, StoreError>> + Send;

    /// Applies `update` if the firing is still where it expects; settles the
    /// attempt it names and enqueues the next, in one transaction. Returns
    /// whether it was applied.
    fn update_firing(
        &self,
        update: &FiringUpdate,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// A schedule's firings, latest tick first.
    fn firings(
        &self,
        workflow: &str,
        schedule: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Firing>, StoreError>> + Send;
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
