//! What auditors read and what checkpoints write: the raw rows behind the
//! hash chains of [`crate::audit`], read back without trusting them.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde_json::Value;
use sqlx::FromRow;

use super::StoreError;
use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use crate::audit::Problem;
use crate::audit::chain::{Entry, GENESIS, checkpoint_hash, stored_time};
use crate::audit::verify::{CaseHistory, StoredCheckpoint, StoredEvent};

/// A history row as exported: everything stored, with its hash.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExportedEvent {
    pub case_id: String,
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub kind: String,
    pub payload: Value,
    pub hash: Option<String>,
}

/// The instants `[start, end)` of the UTC days `from` to `to`, both
/// included: what an export of those days covers. `None` when `to` is
/// before `from` (or is the last day chrono knows).
pub fn export_period(from: NaiveDate, to: NaiveDate) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    if to < from {
        return None;
    }
    let start = from.and_time(NaiveTime::MIN).and_utc();
    let end = to.succ_opt()?.and_time(NaiveTime::MIN).and_utc();
    Some((start, end))
}

/// Writes `events` as JSON Lines, one event a line: the export format of
/// `orchestrator audit export` and `GET /audit/export`.
pub fn write_lines(events: &[ExportedEvent], sink: &mut impl Write) -> std::io::Result<()> {
    for event in events {
        serde_json::to_writer(&mut *sink, event)?;
        sink.write_all(b"\n")?;
    }
    Ok(())
}

/// What a verification checked and what it found.
#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    pub cases_checked: usize,
    pub events_checked: usize,
    /// Empty when the history is as written.
    pub problems: Vec<Problem>,
    /// The newest checkpoint: the hash an auditor archives.
    pub latest_checkpoint: Option<StoredCheckpoint>,
}

/// A checkpoint just written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpointed {
    pub id: i64,
    pub hash: String,
    pub cases: usize,
}

pub trait AuditStore: Send + Sync {
    /// The rows of one case, or of every case.
    fn audit_cases(
        &self,
        case_id: Option<&str>,
    ) -> impl Future<Output = Result<Vec<CaseHistory>, StoreError>> + Send;

    /// Every checkpoint, oldest first, with its entries.
    fn checkpoints(&self)
    -> impl Future<Output = Result<Vec<StoredCheckpoint>, StoreError>> + Send;

    /// Records the heads of the cases that changed since the last
    /// checkpoint; `None` when none did.
    fn checkpoint(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<Checkpointed>, StoreError>> + Send;

    /// History written in `[from, to)`, by case and seq.
    fn history_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<ExportedEvent>, StoreError>> + Send;
}

const CASE_HEADS: &str = "\
    SELECT id, next_seq - 1 AS head_seq, history_head FROM cases \
    WHERE ($1 IS NULL OR id = $1) ORDER BY id";

const ROWS: &str = "\
    SELECT case_id, seq, at, actor, kind, CAST(payload AS TEXT) AS payload, hash FROM history \
    WHERE ($1 IS NULL OR case_id = $1) ORDER BY case_id, seq";

const ROWS_BETWEEN: &str = "\
    SELECT case_id, seq, at, actor, kind, CAST(payload AS TEXT) AS payload, hash FROM history \
    WHERE at >= $1 AND at < $2 ORDER BY case_id, seq";

const CHECKPOINTS: &str = "SELECT id, at, previous, hash FROM audit_checkpoints ORDER BY id";

const ENTRIES: &str = "\
    SELECT checkpoint_id, case_id, seq, head FROM audit_checkpoint_entries \
    ORDER BY checkpoint_id, case_id";

const LAST_CHECKPOINT: &str =
    "SELECT id, at, previous, hash FROM audit_checkpoints ORDER BY id DESC LIMIT 1";

const CHANGED_CASES: &str = "\
    SELECT id, next_seq - 1 AS head_seq, history_head FROM cases \
    WHERE next_seq - 1 > checkpointed_seq AND history_head IS NOT NULL ORDER BY id";

const INSERT_CHECKPOINT: &str =
    "INSERT INTO audit_checkpoints (id, at, previous, hash) VALUES ($1, $2, $3, $4)";

const INSERT_ENTRY: &str = "\
    INSERT INTO audit_checkpoint_entries (checkpoint_id, case_id, seq, head) \
    VALUES ($1, $2, $3, $4)";

const MARK_CHECKPOINTED: &str = "\
    UPDATE cases SET checkpointed_seq = $2 WHERE id = $1 AND checkpointed_seq < $2";

#[derive(Debug, FromRow)]
struct HeadRow {
    id: String,
    head_seq: i64,
    history_head: Option<String>,
}

#[derive(Debug, FromRow)]
struct EventRow {
    case_id: String,
    seq: i64,
    at: DateTime<Utc>,
    actor: String,
    kind: String,
    payload: String,
    hash: Option<String>,
}

impl EventRow {
    /// A payload that no longer parses is kept as text: it hashes
    /// differently, so verification names it instead of failing.
    fn payload(&self) -> Value {
        serde_json::from_str(&self.payload).unwrap_or_else(|_| Value::String(self.payload.clone()))
    }

    fn into_exported(self) -> ExportedEvent {
        ExportedEvent {
            payload: self.payload(),
            case_id: self.case_id,
            seq: self.seq,
            at: self.at,
            actor: self.actor,
            kind: self.kind,
            hash: self.hash,
        }
    }
}

#[derive(Debug, FromRow)]
struct CheckpointRow {
    id: i64,
    at: DateTime<Utc>,
    previous: String,
    hash: String,
}

#[derive(Debug, FromRow)]
struct EntryRow {
    checkpoint_id: i64,
    case_id: String,
    seq: i64,
    head: String,
}

fn assemble(heads: Vec<HeadRow>, rows: Vec<EventRow>) -> Vec<CaseHistory> {
    let mut by_case: BTreeMap<String, Vec<StoredEvent>> = BTreeMap::new();
    for row in rows {
        let payload = row.payload();
        by_case.entry(row.case_id).or_default().push(StoredEvent {
            seq: row.seq,
            at: row.at,
            actor: row.actor,
            kind: row.kind,
            payload,
            hash: row.hash,
        });
    }
    heads
        .into_iter()
        .map(|h| CaseHistory {
            events: by_case.remove(&h.id).unwrap_or_default(),
            case_id: h.id,
            head_seq: h.head_seq,
            head: h.history_head,
        })
        .collect()
}

fn with_entries(checkpoints: Vec<CheckpointRow>, entries: Vec<EntryRow>) -> Vec<StoredCheckpoint> {
    let mut by_checkpoint: BTreeMap<i64, Vec<Entry>> = BTreeMap::new();
    for e in entries {
        by_checkpoint
            .entry(e.checkpoint_id)
            .or_default()
            .push(Entry {
                case_id: e.case_id,
                seq: e.seq,
                head: e.head,
            });
    }
    checkpoints
        .into_iter()
        .map(|c| StoredCheckpoint {
            entries: by_checkpoint.remove(&c.id).unwrap_or_default(),
            id: c.id,
            at: c.at,
            previous: c.previous,
            hash: c.hash,
        })
        .collect()
}

macro_rules! audit_store {
    ($store:ty, $lock:expr, $($begin:tt)*) => {
        impl AuditStore for $store {
            async fn audit_cases(&self, case_id: Option<&str>) -> Result<Vec<CaseHistory>, StoreError> {
                let heads: Vec<HeadRow> = sqlx::query_as(CASE_HEADS)
                    .bind(case_id)
                    .fetch_all(self.pool())
                    .await?;
                let rows: Vec<EventRow> = sqlx::query_as(ROWS)
                    .bind(case_id)
                    .fetch_all(self.pool())
                    .await?;
                Ok(assemble(heads, rows))
            }

            async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError> {
                let checkpoints: Vec<CheckpointRow> =
                    sqlx::query_as(CHECKPOINTS).fetch_all(self.pool()).await?;
                let entries: Vec<EntryRow> = sqlx::query_as(ENTRIES).fetch_all(self.pool()).await?;
                Ok(with_entries(checkpoints, entries))
            }

            async fn checkpoint(&self, now: DateTime<Utc>) -> Result<Option<Checkpointed>, StoreError> {
                let mut tx = self.pool().$($begin)*.await?;
                if let Some(lock) = $lock {
                    sqlx::query(lock).execute(&mut *tx).await?;
                }
                let last: Option<CheckpointRow> =
                    sqlx::query_as(LAST_CHECKPOINT).fetch_optional(&mut *tx).await?;
                let changed: Vec<HeadRow> = sqlx::query_as(CHANGED_CASES).fetch_all(&mut *tx).await?;
                if changed.is_empty() {
                    tx.rollback().await?;
                    return Ok(None);
                }
                let entries: Vec<Entry> = changed
                    .iter()
                    .map(|h| Entry {
                        case_id: h.id.clone(),
                        seq: h.head_seq,
                        head: h.history_head.clone().unwrap_or_default(),
                    })
                    .collect();
                let (id, previous) = last.map_or((1, GENESIS.to_owned()), |c| (c.id + 1, c.hash));
                let at = stored_time(now);
                let hash = checkpoint_hash(&previous, at, &entries);
                sqlx::query(INSERT_CHECKPOINT)
                    .bind(id)
                    .bind(at)
                    .bind(&previous)
                    .bind(&hash)
                    .execute(&mut *tx)
                    .await?;
                for e in &entries {
                    sqlx::query(INSERT_ENTRY)
                        .bind(id)
                        .bind(&e.case_id)
                        .bind(e.seq)
                        .bind(&e.head)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(MARK_CHECKPOINTED)
                        .bind(&e.case_id)
                        .bind(e.seq)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(Some(Checkpointed {
                    id,
                    hash,
                    cases: entries.len(),
                }))
            }

            async fn history_between(
                &self,
                from: DateTime<Utc>,
                to: DateTime<Utc>,
            ) -> Result<Vec<ExportedEvent>, StoreError> {
                let rows: Vec<EventRow> = sqlx::query_as(ROWS_BETWEEN)
                    .bind(from)
                    .bind(to)
                    .fetch_all(self.pool())
                    .await?;
                Ok(rows.into_iter().map(EventRow::into_exported).collect())
            }
        }
    };
}

// One checkpoint writer at a time, so the chain never forks; case updates
// go on meanwhile. SQLite's write lock, taken at BEGIN IMMEDIATE, does it.
audit_store!(
    PgStore,
    Some("LOCK TABLE audit_checkpoints IN EXCLUSIVE MODE"),
    begin()
);
audit_store!(
    SqliteStore,
    None::<&'static str>,
    begin_with("BEGIN IMMEDIATE")
);

/// Recomputes the chains of one case, or of every case and the
/// checkpoints, from the rows as they are now.
pub async fn verify<S: AuditStore>(
    store: &S,
    case_id: Option<&str>,
) -> Result<Vec<Problem>, StoreError> {
    Ok(verification(store, case_id).await?.problems)
}

/// [`verify`], with what was checked and the latest checkpoint.
pub async fn verification<S: AuditStore>(
    store: &S,
    case_id: Option<&str>,
) -> Result<Verification, StoreError> {
    let cases = store.audit_cases(case_id).await?;
    let mut checkpoints = store.checkpoints().await?;
    let problems = crate::audit::verify(&cases, &checkpoints, case_id.is_none());
    Ok(Verification {
        cases_checked: cases.len(),
        events_checked: cases.iter().map(|c| c.events.len()).sum(),
        problems,
        latest_checkpoint: checkpoints.pop(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_covers_whole_days_in_order() {
        let day = |d: &str| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok();
        let (Some(from), Some(to)) = (day("2026-03-01"), day("2026-03-02")) else {
            panic!("dates");
        };
        let (start, end) = export_period(from, to).unwrap_or_default();
        assert_eq!(start.to_rfc3339(), "2026-03-01T00:00:00+00:00");
        assert_eq!(end.to_rfc3339(), "2026-03-03T00:00:00+00:00");
        assert_eq!(export_period(to, from), None);
    }

    #[test]
    fn each_event_is_one_line() {
        let event = ExportedEvent {
            case_id: "c".into(),
            seq: 1,
            at: DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default(),
            actor: "a".into(),
            kind: "k".into(),
            payload: serde_json::json!({"text": "two\nlines"}),
            hash: None,
        };
        let mut out = Vec::new();
        assert!(write_lines(&[event.clone(), event], &mut out).is_ok());
        let text = String::from_utf8(out).unwrap_or_default();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.ends_with('\n'));
    }
}
