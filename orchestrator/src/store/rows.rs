//! Rows as both databases return them, and their checked conversion into
//! the store's records. Stored JSON is decoded here and only here: a bad
//! document becomes [`StoreError::Corrupt`] naming the row, never a panic.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::{
    CaseRecord, CaseSummary, DefinitionRecord, DueTimer, HistoryRecord, OutboxRecord, StoreError,
};
use crate::engine::Job;

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
    /// The seq the case's next history event gets.
    pub(super) next_seq: i64,
}

impl CaseRow {
    pub(super) fn to_record(&self, case_id: &str) -> Result<CaseRecord, StoreError> {
        Ok(CaseRecord {
            definition_id: self.definition_id,
            state: decode(&self.state, || format!("state of case {case_id}"))?,
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
    pub(super) fn into_record(self, case_id: &str) -> Result<HistoryRecord, StoreError> {
        let event = decode(&self.payload, || {
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
pub(super) struct OutboxRow {
    id: i64,
    job: String,
    created_at: DateTime<Utc>,
}

impl OutboxRow {
    pub(super) fn into_record(self) -> Result<OutboxRecord, StoreError> {
        let job: Job = decode(&self.job, || format!("outbox job {}", self.id))?;
        Ok(OutboxRecord {
            id: self.id,
            job,
            created_at: self.created_at,
        })
    }
}

/// The waiting jobs that can be read. A job that cannot is logged and
/// left in the outbox for an operator: one bad row must not stop every
/// other job from being dispatched.
pub(super) fn readable_jobs(rows: Vec<OutboxRow>) -> Vec<OutboxRecord> {
    rows.into_iter()
        .filter_map(|row| match row.into_record() {
            Ok(record) => Some(record),
            Err(e) => {
                let cause = std::error::Error::source(&e).map(ToString::to_string);
                tracing::error!(error = %e, cause, "skipping an outbox job that cannot be read");
                None
            }
        })
        .collect()
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
