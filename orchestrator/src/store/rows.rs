//! Rows as both databases return them, and their checked conversion into
//! the store's records. Stored JSON is decoded here and only here: a bad
//! document becomes [`StoreError::Corrupt`] naming the row, never a panic.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::schedules::{ActiveCases, Firing, FiringStatus, ScheduleRecord};
use super::{
    CaseRecord, CaseSummary, DefinitionRecord, DueTimer, HistoryRecord, OutboxRecord, StoreError,
    WaitingJob,
};
use crate::engine::{CaseState, Job};
use crate::privacy::{CaseKey, DataKeys};

/// Decodes a stored JSON document; `what` names it for an operator.
pub(super) fn decode<T: DeserializeOwned>(
    json: &str,
    what: impl FnOnce() -> String,
) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|source| StoreError::Corrupt {
        what: what(),
        source,
    })
}

/// Decodes a stored document and opens its sealed personal values.
fn open<T: DeserializeOwned>(
    json: &str,
    key: Option<&CaseKey>,
    document: &str,
    what: impl Fn() -> String,
) -> Result<T, StoreError> {
    let mut value: serde_json::Value = decode(json, &what)?;
    crate::privacy::seal::open_sealed(&mut value, key, document)?;
    serde_json::from_value(value).map_err(|source| StoreError::Corrupt {
        what: what(),
        source,
    })
}

/// A case's data key, unwrapped; `None` once erased.
pub(super) fn case_key(
    case_id: &str,
    wrapped: Option<&str>,
    keys: &DataKeys,
) -> Result<Option<CaseKey>, StoreError> {
    wrapped
        .map(|w| keys.open_case_key(case_id, w))
        .transpose()
        .map_err(StoreError::from)
}

/// A workflow version as stored (`BIGINT`, checked to fit a `u32`).
fn version(stored: i64) -> Result<u32, StoreError> {
    u32::try_from(stored).map_err(|e| StoreError::Database(sqlx::Error::Decode(Box::new(e))))
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct DefinitionRow {
    id: i64,
    name: String,
    version: i64,
    hash: String,
    source: String,
    deployed_at: DateTime<Utc>,
}

impl DefinitionRow {
    pub(super) fn into_record(self) -> Result<DefinitionRecord, StoreError> {
        Ok(DefinitionRecord {
            id: self.id,
            name: self.name,
            version: version(self.version)?,
            hash: self.hash,
            source: self.source,
            deployed_at: self.deployed_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct CaseRow {
    definition_id: i64,
    state: String,
    /// The case's data key, wrapped; gone once its personal data is erased.
    data_key: Option<String>,
    /// The seq the case's next history event gets.
    pub(super) next_seq: i64,
    /// The hash of the case's last history event.
    pub(super) history_head: Option<String>,
}

impl CaseRow {
    /// The case's data key; `None` once erased.
    pub(super) fn case_key(
        &self,
        case_id: &str,
        keys: &DataKeys,
    ) -> Result<Option<CaseKey>, StoreError> {
        case_key(case_id, self.data_key.as_deref(), keys)
    }

    /// The case with its personal data opened with `key`.
    pub(super) fn to_record(
        &self,
        case_id: &str,
        key: Option<&CaseKey>,
    ) -> Result<CaseRecord, StoreError> {
        Ok(CaseRecord {
            definition_id: self.definition_id,
            state: open(&self.state, key, "state", || {
                format!("state of case {case_id}")
            })?,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct SummaryRow {
    id: String,
    workflow: String,
    version: i64,
    status: String,
    outcome: Option<String>,
    step: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl SummaryRow {
    pub(super) fn into_summary(self) -> Result<CaseSummary, StoreError> {
        Ok(CaseSummary {
            id: self.id,
            workflow: self.workflow,
            version: version(self.version)?,
            status: self.status,
            outcome: self.outcome,
            step: self.step,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct HistoryRow {
    seq: i64,
    at: DateTime<Utc>,
    actor: String,
    payload: String,
}

impl HistoryRow {
    pub(super) fn into_record(
        self,
        case_id: &str,
        key: Option<&CaseKey>,
    ) -> Result<HistoryRecord, StoreError> {
        let event = open(&self.payload, key, &format!("history/{}", self.seq), || {
            format!("history event {case_id}#{}", self.seq)
        })?;
        Ok(HistoryRecord {
            case_id: case_id.to_owned(),
            seq: self.seq,
            at: self.at,
            actor: self.actor,
            event,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct WaitingRow {
    id: i64,
    queue: String,
}

impl From<WaitingRow> for WaitingJob {
    fn from(row: WaitingRow) -> Self {
        WaitingJob {
            id: row.id,
            queue: row.queue,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct OutboxRow {
    id: i64,
    job: String,
    created_at: DateTime<Utc>,
    /// The data key of the job's case; none for a schedule's job.
    data_key: Option<String>,
    case_id: Option<String>,
}

impl OutboxRow {
    /// The job with its parameters opened.
    pub(super) fn into_record(self, keys: &DataKeys) -> Result<OutboxRecord, StoreError> {
        let key = match &self.case_id {
            Some(case_id) => case_key(case_id, self.data_key.as_deref(), keys)?,
            None => None,
        };
        let what = || format!("outbox job {}", self.id);
        let mut job: serde_json::Value = decode(&self.job, what)?;
        let attempt = job
            .get("attempt_id")
            .and_then(|a| a.as_str())
            .unwrap_or_default();
        let document = format!("job/{attempt}");
        crate::privacy::seal::open_sealed(&mut job, key.as_ref(), &document)?;
        let job: Job = serde_json::from_value(job).map_err(|source| StoreError::Corrupt {
            what: what(),
            source,
        })?;
        Ok(OutboxRecord {
            id: self.id,
            job,
            created_at: self.created_at,
        })
    }
}

/// Outbox rows opened: the jobs that can be read, and the ids of those that
/// cannot (logged), which stay in the outbox for an operator — a claim
/// gives them back.
pub(super) fn open_claimed(rows: Vec<OutboxRow>, keys: &DataKeys) -> (Vec<OutboxRecord>, Vec<i64>) {
    let mut readable = Vec::with_capacity(rows.len());
    let mut unreadable = Vec::new();
    for row in rows {
        let id = row.id;
        match row.into_record(keys) {
            Ok(record) => readable.push(record),
            Err(e) => {
                let cause = std::error::Error::source(&e).map(ToString::to_string);
                tracing::error!(error = %e, cause, "leaving an outbox job that cannot be read");
                unreadable.push(id);
            }
        }
    }
    (readable, unreadable)
}

/// The waiting jobs that can be read. A job that cannot is logged and
/// left in the outbox for an operator: one bad row must not stop every
/// other job from being dispatched.
pub(super) fn readable_jobs(rows: Vec<OutboxRow>, keys: &DataKeys) -> Vec<OutboxRecord> {
    open_claimed(rows, keys).0
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct TimerRow {
    id: String,
    case_id: String,
    due_at: DateTime<Utc>,
}

impl From<TimerRow> for DueTimer {
    fn from(row: TimerRow) -> Self {
        DueTimer {
            id: row.id,
            case_id: row.case_id,
            due: row.due_at,
        }
    }
}

/// A count as stored (never negative).
pub(super) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct ScheduleRow {
    workflow: String,
    schedule: String,
    cron: String,
    timezone: String,
    next_at: Option<DateTime<Utc>>,
    retired_at: Option<DateTime<Utc>>,
}

impl From<ScheduleRow> for ScheduleRecord {
    fn from(row: ScheduleRow) -> Self {
        ScheduleRecord {
            workflow: row.workflow,
            schedule: row.schedule,
            cron: row.cron,
            timezone: row.timezone,
            next_at: row.next_at,
            retired_at: row.retired_at,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct FiringRow {
    id: i64,
    workflow: String,
    schedule: String,
    tick_at: DateTime<Utc>,
    fired_at: DateTime<Utc>,
    cases: i64,
    status: String,
    outcome: Option<String>,
    attempt: i64,
    attempt_id: Option<String>,
    job: Option<String>,
    due_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl FiringRow {
    pub(super) fn into_firing(self) -> Result<Firing, StoreError> {
        let what = || format!("firing {}", self.id);
        let status = FiringStatus::parse(&self.status).ok_or_else(|| StoreError::Corrupt {
            what: what(),
            source: serde::de::Error::custom(format!("unknown status `{}`", self.status)),
        })?;
        let job = self
            .job
            .as_deref()
            .map(|j| decode::<Job>(j, || format!("job of firing {}", self.id)))
            .transpose()?;
        let attempt = u32::try_from(self.attempt)
            .map_err(|e| StoreError::Database(sqlx::Error::Decode(Box::new(e))))?;
        Ok(Firing {
            id: self.id,
            workflow: self.workflow,
            schedule: self.schedule,
            tick_at: self.tick_at,
            fired_at: self.fired_at,
            cases: count(self.cases),
            status,
            outcome: self.outcome,
            attempt,
            attempt_id: self.attempt_id,
            job,
            due_at: self.due_at,
            finished_at: self.finished_at,
        })
    }
}

pub(super) fn firings(rows: Vec<FiringRow>) -> Result<Vec<Firing>, StoreError> {
    rows.into_iter().map(FiringRow::into_firing).collect()
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct ActiveCaseRow {
    id: String,
    state: String,
}

/// The states that can be read; the ids of those that cannot, logged here
/// and reported, so that one bad row does not stop a sweep.
pub(super) fn active_cases(rows: Vec<ActiveCaseRow>) -> ActiveCases {
    let mut out = ActiveCases::default();
    for row in rows {
        match decode::<CaseState>(&row.state, || format!("state of case {}", row.id)) {
            Ok(state) => out.states.push(state),
            Err(e) => {
                let cause = std::error::Error::source(&e).map(ToString::to_string);
                tracing::error!(case = %row.id, error = %e, cause, "a sweep skips a case that cannot be read");
                out.unreadable.push(row.id);
            }
        }
    }
    out
}
