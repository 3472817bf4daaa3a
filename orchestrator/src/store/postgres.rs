//! PostgreSQL, the production store. Several orchestrators share one
//! database: a case is changed under its row lock (`SELECT … FOR UPDATE`),
//! so two completions of one attempt are applied one after the other, and
//! the timer loop skips a case another process holds (`SKIP LOCKED`)
//! instead of queueing behind it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::types::Json;

use super::rows::{
    self, ActiveCaseRow, CaseRow, DefinitionRow, FiringRow, HistoryRow, OutboxRow, ScheduleRow,
    SummaryRow, TimerRow, WaitingRow,
};
use super::schedules::is_firing_attempt;
use super::write::{self, JobOwner, Sealed, TimerWrite, Write};
use super::{
    ActiveCases, CaseFilter, CaseRecord, CaseSummary, Claim, Claimed, DefinitionRecord, DueTimer,
    Firing, FiringUpdate, HistoryRecord, Lock, OutboxRecord, ScheduleRecord, ScheduleSpec, Store,
    StoreError, Updated, WaitingJob, sql,
};
use crate::engine::{Decision, Job, Rejection, TimerKind};
use crate::privacy::{CaseKey, DataKeys};

mod batch;

static MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

const LOCK_CASE: &str = "\
    SELECT definition_id, CAST(state AS TEXT) AS state, data_key, next_seq, history_head \
    FROM cases WHERE id = $1 FOR UPDATE";

const LOCK_CASE_OR_SKIP: &str = "\
    SELECT definition_id, CAST(state AS TEXT) AS state, data_key, next_seq, history_head \
    FROM cases WHERE id = $1 FOR UPDATE SKIP LOCKED";

const CASE_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM cases WHERE id = $1)";

/// `sql::UPDATE_CASE` with the case's new chain head `$8` (null: no new
/// events, the head stays), so that a decision writes one new version of
/// the case's row, not two.
const UPDATE_CASE: &str = "\
    UPDATE cases SET status = $2, outcome = $3, current_step = $4, state = $5, \
    next_seq = $6, updated_at = $7, history_head = COALESCE($8, history_head) \
    WHERE id = $1";

/// A decision's history rows (`$4`–`$7`: seq, kind, payload and hash of
/// each) and the case's new chain head `$8`, unless `UPDATE_CASE` has set
/// it already.
const INSERT_HISTORY_ROWS: &str = "\
    WITH rows AS ( \
        INSERT INTO history (case_id, seq, at, actor, kind, payload, hash) \
        SELECT $1, seq, $2, $3, kind, payload, hash \
        FROM UNNEST($4::bigint[], $5::text[], $6::jsonb[], $7::text[]) AS r (seq, kind, payload, hash) \
    ) \
    UPDATE cases SET history_head = $8 WHERE id = $1 AND history_head IS DISTINCT FROM $8";

/// `sql::INSERT_ATTEMPT` and then, if it inserted, `sql::INSERT_OUTBOX`
/// with the job `$7`.
macro_rules! enqueue {
    ($owner:literal) => {
        concat!(
            "WITH attempt AS ( \
                INSERT INTO attempts (id, ",
            $owner,
            ", step, handler, queue, status, scheduled_at) \
                VALUES ($1, $2, $3, $4, $5, 'scheduled', $6) \
                ON CONFLICT (id) DO NOTHING RETURNING id \
            ) \
            INSERT INTO outbox (attempt_id, queue, job, created_at) \
            SELECT id, $5, $7, $6 FROM attempt \
            ON CONFLICT (attempt_id) DO NOTHING"
        )
    };
}
const ENQUEUE_CASE_JOB: &str = enqueue!("case_id");
const ENQUEUE_FIRING_JOB: &str = enqueue!("firing_id");

/// `sql::FINISH_ATTEMPT` and then `sql::WITHDRAW_WAITING_JOB` for the
/// attempt `$1`, in one statement. One attempt at a time: given the
/// attempts as an array, PostgreSQL planned the statement afresh at every
/// call (0.28 ms, more than it took to run, in `pg_stat_statements`), its
/// generic plan for an array of unknown length costing more; and a
/// decision nearly always settles one attempt.
const FINISH_ATTEMPT: &str = "\
    WITH finished AS ( \
        UPDATE attempts SET status = 'finished', finished_at = $2 \
        WHERE id = $1 AND status <> 'finished' \
    ) \
    DELETE FROM outbox WHERE attempt_id = $1 AND dispatched_at IS NULL";

/// The case's timers made those of its state: the others (not in `$2`)
/// deleted, those the decision set or moved (`$3`–`$5`: id, due, kind)
/// written as `sql::SET_TIMER` does, the unchanged ones (`$6`–`$8`) as
/// `sql::KEEP_TIMER` does.
const WRITE_TIMERS: &str = "\
    WITH gone AS ( \
        DELETE FROM timers WHERE case_id = $1 AND NOT (id = ANY ($2)) \
    ), kept AS ( \
        INSERT INTO timers (case_id, id, due_at, kind) \
        SELECT $1, id, due, kind \
        FROM UNNEST($6::text[], $7::timestamptz[], $8::jsonb[]) AS t (id, due, kind) \
        ON CONFLICT (case_id, id) DO NOTHING \
    ) \
    INSERT INTO timers (case_id, id, due_at, kind) \
    SELECT $1, id, due, kind \
    FROM UNNEST($3::text[], $4::timestamptz[], $5::jsonb[]) AS t (id, due, kind) \
    ON CONFLICT (case_id, id) DO UPDATE SET due_at = excluded.due_at, kind = excluded.kind";

/// The claim of the outbox rows whose ids are in the array `$1`, and of
/// their attempts: of concurrent claims of one row, one changes it. A join
/// rather than `id = ANY ($1)`, with which a cached generic plan can read
/// every waiting job through the partial index of waiting jobs to find a
/// few.
const CLAIM_JOBS: &str = "\
    WITH claimed AS ( \
        UPDATE outbox o SET dispatched_at = $2 FROM UNNEST($1::bigint[]) AS c (id) \
        WHERE o.id = c.id AND o.dispatched_at IS NULL \
        RETURNING o.id, o.attempt_id, o.job, o.created_at \
    ), marked AS ( \
        UPDATE attempts a SET status = 'dispatched', dispatched_at = $2 \
        FROM claimed o WHERE a.id = o.attempt_id AND a.status <> 'finished' \
    ) \
    SELECT o.id, CAST(o.job AS TEXT) AS job, o.created_at, a.case_id, c.data_key \
    FROM claimed o JOIN attempts a ON a.id = o.attempt_id \
    LEFT JOIN cases c ON c.id = a.case_id \
    ORDER BY o.id";

/// `sql::PUSH_ATTEMPT_TIMEOUT` for the attempts of many cases at once:
/// the arrays hold each timer's case, kind and new due time. The cases
/// are also named with `= ANY`, so that the timers are found through the
/// primary key: joined to the arrays alone, the plan PostgreSQL kept read
/// the whole timers table at every dispatch round (BENCHMARKS.md).
const PUSH_ATTEMPT_TIMEOUTS: &str = "\
    UPDATE timers t SET due_at = v.due \
    FROM UNNEST($1::text[], $2::jsonb[], $3::timestamptz[]) AS v (case_id, kind, due) \
    WHERE t.case_id = ANY ($1) AND t.case_id = v.case_id AND t.kind = v.kind \
    AND t.due_at < v.due";

const RELEASE_ATTEMPTS: &str = "\
    UPDATE attempts SET status = 'scheduled', dispatched_at = NULL \
    WHERE id IN (SELECT attempt_id FROM outbox WHERE id = ANY ($1)) AND status = 'dispatched'";

const RELEASE_OUTBOX: &str = "UPDATE outbox SET dispatched_at = NULL WHERE id = ANY ($1)";

/// Retires the workflow's schedules whose ids are not in the array `$2`.
const RETIRE_OTHER_SCHEDULES: &str = "\
    UPDATE schedules SET retired_at = $3, updated_at = $3 \
    WHERE workflow = $1 AND retired_at IS NULL AND NOT (schedule = ANY ($2))";

/// The store on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    keys: Arc<DataKeys>,
}

impl PgStore {
    /// A store on `pool` that can read and write no personal data until
    /// given the master keys with [`PgStore::with_data_keys`].
    pub fn new(pool: PgPool) -> Self {
        PgStore {
            pool,
            keys: Arc::new(DataKeys::unconfigured()),
        }
    }

    /// Seals and opens personal data with `keys`.
    pub fn with_data_keys(mut self, keys: DataKeys) -> Self {
        self.keys = Arc::new(keys);
        self
    }

    /// The master keys this store wraps case keys with.
    pub fn data_keys(&self) -> &DataKeys {
        &self.keys
    }

    /// Connects to `url` (`postgres://…`). Waiting for a connection is
    /// bounded, so an unreachable database is reported rather than hung on:
    /// within five seconds, so an API request made while the database is
    /// away is answered `unavailable` before its own ten-second limit.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(PgStore::new(pool))
    }

    /// The server's `synchronous_commit`, when it lets a commit be
    /// confirmed before it is durable (`off`): Docket's guarantees assume
    /// that what the database confirmed survives its crash.
    pub async fn lossy_commits(&self) -> Option<String> {
        let setting: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&self.pool)
            .await
            .ok()?;
        (setting == "off").then_some(setting)
    }

    /// Applies the migrations up to and including `version` only: a
    /// database as an earlier release left it.
    #[cfg(test)]
    pub(crate) async fn migrate_to(&self, version: i64) -> Result<(), StoreError> {
        MIGRATOR.run_to(version, &self.pool).await?;
        Ok(())
    }

    /// For the store's other traits (audit, API) kept in their own files.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Writes everything a decision changes except the case row, in one
/// statement per kind of row (and one per job and per settled attempt)
/// rather than one per row: each is a round trip, and the database's CPU
/// goes to statements more than to rows (BENCHMARKS.md).
async fn write(
    conn: &mut PgConnection,
    w: &Write<'_>,
    sealed: &Sealed,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if !sealed.rows.is_empty() {
        let seqs: Vec<i64> = sealed.rows.iter().map(|r| r.seq).collect();
        let kinds: Vec<&str> = sealed.rows.iter().map(|r| r.kind).collect();
        let payloads: Vec<Json<&serde_json::Value>> =
            sealed.rows.iter().map(|r| Json(&r.payload)).collect();
        let hashes: Vec<&str> = sealed.rows.iter().map(|r| r.hash.as_str()).collect();
        sqlx::query(INSERT_HISTORY_ROWS)
            .bind(w.case_id)
            .bind(sealed.at)
            .bind(actor)
            .bind(seqs)
            .bind(kinds)
            .bind(payloads)
            .bind(hashes)
            .bind(&sealed.head)
            .execute(&mut *conn)
            .await?;
    }
    for job in &w.jobs {
        enqueue_job(conn, JobOwner::Case(w.case_id), job, w.key, now).await?;
    }
    if w.erases {
        sqlx::query(sql::ERASE_CASE_KEY)
            .bind(w.case_id)
            .execute(&mut *conn)
            .await?;
    }
    for attempt_id in &w.finished {
        sqlx::query(FINISH_ATTEMPT)
            .bind(attempt_id)
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    let (set, kept): (Vec<_>, Vec<_>) = w.timers.iter().partition(|t| t.changed);
    let (set, kept) = (timer_columns(&set), timer_columns(&kept));
    sqlx::query(WRITE_TIMERS)
        .bind(w.case_id)
        .bind(w.timer_ids())
        .bind(set.0)
        .bind(set.1)
        .bind(set.2)
        .bind(kept.0)
        .bind(kept.1)
        .bind(kept.2)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Gives claimed jobs and their attempts back to the outbox.
async fn release(conn: &mut PgConnection, outbox_ids: &[i64]) -> Result<(), StoreError> {
    sqlx::query(RELEASE_ATTEMPTS)
        .bind(outbox_ids)
        .execute(&mut *conn)
        .await?;
    sqlx::query(RELEASE_OUTBOX)
        .bind(outbox_ids)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Timers as the columns of `WRITE_TIMERS`: ids, due times, kinds.
fn timer_columns<'a>(
    timers: &[&TimerWrite<'a>],
) -> (Vec<&'a str>, Vec<DateTime<Utc>>, Vec<Json<&'a TimerKind>>) {
    (
        timers.iter().map(|t| t.timer.id.as_str()).collect(),
        timers.iter().map(|t| t.timer.due).collect(),
        timers.iter().map(|t| Json(&t.timer.kind)).collect(),
    )
}

/// Schedules a job: its attempt and its outbox row, in one statement. A
/// job scheduled before (a decision written again) is left as it is.
async fn enqueue_job(
    conn: &mut PgConnection,
    owner: JobOwner<'_>,
    job: &Job,
    key: Option<&CaseKey>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let insert = match owner {
        JobOwner::Case(case_id) => sqlx::query(ENQUEUE_CASE_JOB)
            .bind(&job.attempt_id)
            .bind(case_id),
        JobOwner::Firing(firing_id) => sqlx::query(ENQUEUE_FIRING_JOB)
            .bind(&job.attempt_id)
            .bind(firing_id),
    };
    insert
        .bind(&job.step)
        .bind(&job.handler)
        .bind(&job.queue)
        .bind(now)
        .bind(Json(write::stored_job(job, key)))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Store for PgStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn deploy(
        &self,
        name: &str,
        version: u32,
        hash: &str,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<DefinitionRecord, StoreError> {
        let inserted: Option<DefinitionRow> = sqlx::query_as(sql::INSERT_DEFINITION)
            .bind(name)
            .bind(i64::from(version))
            .bind(hash)
            .bind(source)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(row) = inserted {
            return row.into_record();
        }
        // Rows are never changed once written, so reading outside the
        // insert's transaction cannot see another version of it.
        let existing: DefinitionRow = sqlx::query_as(sql::DEFINITION_BY_NAME_VERSION)
            .bind(name)
            .bind(i64::from(version))
            .fetch_one(&self.pool)
            .await?;
        let existing = existing.into_record()?;
        if existing.hash == hash {
            Ok(existing)
        } else {
            Err(StoreError::VersionConflict {
                name: name.to_owned(),
                version,
            })
        }
    }

    async fn definition(&self, id: i64) -> Result<Option<DefinitionRecord>, StoreError> {
        let row: Option<DefinitionRow> = sqlx::query_as(sql::DEFINITION_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(DefinitionRow::into_record).transpose()
    }

    async fn latest_definition(&self, name: &str) -> Result<Option<DefinitionRecord>, StoreError> {
        let row: Option<DefinitionRow> = sqlx::query_as(sql::LATEST_DEFINITION)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(DefinitionRow::into_record).transpose()
    }

    async fn insert_case(
        &self,
        definition_id: i64,
        decision: &Decision,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let case_id = decision.state.id.as_str();
        let (key, wrapped) = self.keys.new_case_key(case_id)?;
        let w = Write::new(case_id, decision, None, 1, Some(&key));
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql::INSERT_CASE)
            .bind(case_id)
            .bind(definition_id)
            .bind(w.status)
            .bind(w.outcome)
            .bind(&w.state.step)
            .bind(Json(w.stored_state()?))
            .bind(w.next_seq)
            .bind(now)
            .bind(wrapped)
            .execute(&mut *tx)
            .await?;
        write(&mut tx, &w, &w.sealed(None, actor, now)?, actor, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update_case<F>(
        &self,
        case_id: &str,
        lock: Lock,
        actor: &str,
        now: DateTime<Utc>,
        decide: F,
    ) -> Result<Updated, StoreError>
    where
        F: FnOnce(&CaseRecord) -> Result<Decision, Rejection> + Send,
    {
        let mut tx = self.pool.begin().await?;
        let select = match lock {
            Lock::Wait => LOCK_CASE,
            Lock::SkipLocked => LOCK_CASE_OR_SKIP,
        };
        let row: Option<CaseRow> = sqlx::query_as(select)
            .bind(case_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            let exists: bool = sqlx::query_scalar(CASE_EXISTS)
                .bind(case_id)
                .fetch_one(&mut *tx)
                .await?;
            return match (lock, exists) {
                (Lock::SkipLocked, true) => Ok(Updated::Busy),
                _ => Err(StoreError::UnknownCase(case_id.to_owned())),
            };
        };
        // A rejection returns here: the transaction rolls back, writing nothing.
        let Some(decided) = write::decide_locked(case_id, row, &self.keys, decide, actor, now)?
        else {
            tx.rollback().await?;
            return Ok(Updated::Unchanged);
        };
        if let Some(wrapped) = &decided.new_key {
            sqlx::query(sql::SET_CASE_KEY)
                .bind(case_id)
                .bind(wrapped)
                .execute(&mut *tx)
                .await?;
        }
        let w = decided.write();
        sqlx::query(UPDATE_CASE)
            .bind(case_id)
            .bind(w.status)
            .bind(w.outcome)
            .bind(&w.state.step)
            .bind(Json(&decided.state))
            .bind(w.next_seq)
            .bind(now)
            .bind(decided.new_head())
            .execute(&mut *tx)
            .await?;
        write(&mut tx, &w, &decided.sealed, actor, now).await?;
        tx.commit().await?;
        Ok(Updated::Written(decided.decision))
    }

    async fn update_cases<F>(
        &self,
        cases: Vec<(String, F)>,
        lock: Lock,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<Updated, StoreError>>, StoreError>
    where
        F: FnOnce(&CaseRecord) -> Result<Decision, Rejection> + Send,
    {
        batch::update_cases(self, cases, lock, actor, now).await
    }

    async fn case(&self, case_id: &str) -> Result<Option<CaseRecord>, StoreError> {
        let row: Option<CaseRow> = sqlx::query_as(sql::CASE)
            .bind(case_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let key = row.case_key(case_id, &self.keys)?;
        row.to_record(case_id, key.as_ref()).map(Some)
    }

    async fn case_definition(&self, case_id: &str) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(sql::CASE_DEFINITION)
            .bind(case_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn cases(&self, filter: &CaseFilter) -> Result<Vec<CaseSummary>, StoreError> {
        let (text, binds) = sql::list_cases(filter);
        let mut query = sqlx::query_as::<_, SummaryRow>(AssertSqlSafe(text));
        for value in binds {
            query = query.bind(value);
        }
        let rows = query
            .bind(i64::from(filter.limit.unwrap_or(100)))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(SummaryRow::into_summary).collect()
    }

    async fn history(&self, case_id: &str) -> Result<Vec<HistoryRecord>, StoreError> {
        let wrapped: Option<Option<String>> = sqlx::query_scalar(sql::CASE_KEY)
            .bind(case_id)
            .fetch_optional(&self.pool)
            .await?;
        let key = rows::case_key(case_id, wrapped.flatten().as_deref(), &self.keys)?;
        let rows: Vec<HistoryRow> = sqlx::query_as(sql::HISTORY)
            .bind(case_id)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| r.into_record(case_id, key.as_ref()))
            .collect()
    }

    async fn due_timers(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueTimer>, StoreError> {
        let rows: Vec<TimerRow> = sqlx::query_as(sql::DUE_TIMERS)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(DueTimer::from).collect())
    }

    async fn next_timer(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(sqlx::query_scalar(sql::NEXT_TIMER)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn waiting_jobs(
        &self,
        queue: Option<&str>,
        limit: u32,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        let limit = i64::from(limit);
        let rows: Vec<OutboxRow> = match queue {
            Some(queue) => {
                sqlx::query_as(sql::WAITING_JOBS_IN_QUEUE)
                    .bind(queue)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query_as(sql::WAITING_JOBS)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(rows::readable_jobs(rows, &self.keys))
    }

    async fn waiting(&self, limit: u32) -> Result<Vec<WaitingJob>, StoreError> {
        let rows: Vec<WaitingRow> = sqlx::query_as(sql::WAITING)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(WaitingJob::from).collect())
    }

    async fn claim_jobs(
        &self,
        outbox_ids: &[i64],
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        if outbox_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        let rows: Vec<OutboxRow> = sqlx::query_as(CLAIM_JOBS)
            .bind(outbox_ids)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
        let (claimed, unreadable) = rows::open_claimed(rows, &self.keys);
        if !unreadable.is_empty() {
            release(&mut tx, &unreadable).await?;
        }
        let mut timeouts = (Vec::new(), Vec::new(), Vec::new());
        for job in claimed.iter().map(|r| &r.job) {
            let Some(due) = write::timeout_from(job, now) else {
                continue;
            };
            if is_firing_attempt(&job.attempt_id) {
                sqlx::query(sql::PUSH_FIRING_TIMEOUT)
                    .bind(&job.attempt_id)
                    .bind(due)
                    .execute(&mut *tx)
                    .await?;
            } else {
                let kind = TimerKind::AttemptTimeout {
                    attempt_id: job.attempt_id.clone(),
                };
                timeouts.0.push(job.case_id.as_str());
                timeouts.1.push(Json(kind));
                timeouts.2.push(due);
            }
        }
        if !timeouts.0.is_empty() {
            sqlx::query(PUSH_ATTEMPT_TIMEOUTS)
                .bind(timeouts.0)
                .bind(timeouts.1)
                .bind(timeouts.2)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn release_jobs(&self, outbox_ids: &[i64]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        release(&mut tx, outbox_ids).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn dispatched_unfinished(&self, queue: &str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(sql::DISPATCHED_UNFINISHED)
            .bind(queue)
            .fetch_one(&self.pool)
            .await?;
        Ok(rows::count(n))
    }

    async fn requeue_unfinished(&self) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let requeued = sqlx::query(sql::REQUEUE_OUTBOX)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(sql::REQUEUE_ATTEMPTS).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(requeued)
    }
    async fn latest_definitions(&self) -> Result<Vec<DefinitionRecord>, StoreError> {
        let rows: Vec<DefinitionRow> = sqlx::query_as(sql::LATEST_DEFINITIONS)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(DefinitionRow::into_record).collect()
    }

    async fn sync_schedules(
        &self,
        workflow: &str,
        specs: &[ScheduleSpec],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for spec in specs {
            sqlx::query(sql::UPSERT_SCHEDULE)
                .bind(workflow)
                .bind(&spec.id)
                .bind(&spec.cron)
                .bind(&spec.timezone)
                .bind(spec.first_at)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        let ids: Vec<&str> = specs.iter().map(|s| s.id.as_str()).collect();
        sqlx::query(RETIRE_OTHER_SCHEDULES)
            .bind(workflow)
            .bind(ids)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        let rows: Vec<ScheduleRow> = sqlx::query_as(sql::SCHEDULES).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(ScheduleRecord::from).collect())
    }

    async fn next_schedule_work(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(sqlx::query_scalar(sql::NEXT_SCHEDULE_WORK)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn due_schedules(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ScheduleRecord>, StoreError> {
        let rows: Vec<ScheduleRow> = sqlx::query_as(sql::DUE_SCHEDULES)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(ScheduleRecord::from).collect())
    }

    async fn claim_schedule(
        &self,
        claim: &Claim,
        now: DateTime<Utc>,
    ) -> Result<Claimed, StoreError> {
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(sql::CLAIM_SCHEDULE)
            .bind(&claim.workflow)
            .bind(&claim.schedule)
            .bind(claim.expected)
            .bind(claim.next_at)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if moved == 0 {
            tx.rollback().await?;
            return Ok(Claimed::Lost);
        }
        let mut firing_id = None;
        if let Some(firing) = &claim.firing {
            let columns = firing.columns(now);
            firing_id = sqlx::query_scalar(sql::INSERT_FIRING)
                .bind(&claim.workflow)
                .bind(&claim.schedule)
                .bind(firing.tick_at)
                .bind(now)
                .bind(i64::try_from(firing.cases).unwrap_or(i64::MAX))
                .bind(firing.status.as_str())
                .bind(firing.outcome.as_deref())
                .bind(columns.attempt)
                .bind(columns.attempt_id)
                .bind(firing.job.as_ref().map(Json))
                .bind(firing.due_at)
                .bind(columns.finished_at)
                .fetch_optional(&mut *tx)
                .await?;
            if let (Some(id), Some(job)) = (firing_id, &firing.job) {
                enqueue_job(&mut tx, JobOwner::Firing(id), job, None, now).await?;
            }
        }
        tx.commit().await?;
        Ok(Claimed::Won { firing: firing_id })
    }

    async fn active_cases(&self, workflow: &str) -> Result<ActiveCases, StoreError> {
        let rows: Vec<ActiveCaseRow> = sqlx::query_as(sql::ACTIVE_CASES)
            .bind(workflow)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows::active_cases(rows))
    }

    async fn due_firings(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Firing>, StoreError> {
        let rows: Vec<FiringRow> = sqlx::query_as(sql::DUE_FIRINGS)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows::firings(rows)
    }

    async fn firing_of_attempt(&self, attempt_id: &str) -> Result<Option<Firing>, StoreError> {
        let row: Option<FiringRow> = sqlx::query_as(sql::FIRING_OF_ATTEMPT)
            .bind(attempt_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(FiringRow::into_firing).transpose()
    }

    async fn update_firing(
        &self,
        update: &FiringUpdate,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let next = update.enqueue.as_ref();
        let changed = sqlx::query(sql::UPDATE_FIRING)
            .bind(update.id)
            .bind(update.expected_status.as_str())
            .bind(i64::from(update.expected_attempt))
            .bind(update.status.as_str())
            .bind(update.outcome.as_deref())
            .bind(update.due_at)
            .bind(update.finished_at(now))
            .bind(next.map(|j| i64::from(j.attempt)))
            .bind(next.map(|j| j.attempt_id.as_str()))
            .bind(next.map(Json))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        if let Some(attempt_id) = &update.finish_attempt {
            sqlx::query(sql::FINISH_ATTEMPT)
                .bind(attempt_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(sql::WITHDRAW_WAITING_JOB)
                .bind(attempt_id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(job) = next {
            enqueue_job(&mut tx, JobOwner::Firing(update.id), job, None, now).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn firings(
        &self,
        workflow: &str,
        schedule: &str,
        limit: u32,
    ) -> Result<Vec<Firing>, StoreError> {
        let rows: Vec<FiringRow> = sqlx::query_as(sql::FIRINGS)
            .bind(workflow)
            .bind(schedule)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows::firings(rows)
    }
}
