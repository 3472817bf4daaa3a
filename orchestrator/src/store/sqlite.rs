//! SQLite, the embedded default: one file holds every case.
//!
//! SQLite has no row locks; a write transaction locks the whole database.
//! Every write here begins `IMMEDIATE`, taking that lock before reading,
//! so a transaction never fails halfway when another writer (a second
//! process on the same file, such as a CLI command beside `serve`) got
//! there first: it waits up to the busy timeout instead. As a result
//! [`Lock::SkipLocked`] behaves like [`Lock::Wait`].

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Sqlite, Transaction};

use super::rows::{
    self, ActiveCaseRow, CaseRow, DefinitionRow, FiringRow, HistoryRow, OutboxRow, ScheduleRow,
    SummaryRow, TimerRow, WaitingRow,
};
use super::schedules::is_firing_attempt;
use super::write::{self, JobOwner, Sealed, Write};
use super::{
    ActiveCases, CaseFilter, CaseRecord, CaseSummary, Claim, Claimed, DefinitionRecord, DueTimer,
    Firing, FiringUpdate, HistoryRecord, Lock, OutboxRecord, ScheduleRecord, ScheduleSpec, Store,
    StoreError, Updated, WaitingJob, sql,
};
use crate::engine::{Decision, Job, Rejection, TimerKind};
use crate::privacy::{CaseKey, DataKeys};

static MIGRATOR: Migrator = sqlx::migrate!("../migrations/sqlite");

/// Deletes the case's timers whose ids are not in the JSON array `$2`.
const DELETE_OTHER_TIMERS: &str = "\
    DELETE FROM timers WHERE case_id = $1 AND id NOT IN (SELECT value FROM json_each($2))";

/// The claim of the outbox rows whose ids are in the JSON array `$1`: of
/// concurrent claims of one row, one changes it.
const CLAIM_JOBS: &str = "\
    UPDATE outbox SET dispatched_at = $2 \
    WHERE id IN (SELECT value FROM json_each($1)) AND dispatched_at IS NULL \
    RETURNING id";

const MARK_ATTEMPTS_DISPATCHED: &str = "\
    UPDATE attempts SET status = 'dispatched', dispatched_at = $2 \
    WHERE id IN (SELECT value FROM json_each($1)) AND status <> 'finished'";

const RELEASE_ATTEMPTS: &str = "\
    UPDATE attempts SET status = 'scheduled', dispatched_at = NULL \
    WHERE id IN (SELECT attempt_id FROM outbox WHERE id IN (SELECT value FROM json_each($1))) \
    AND status = 'dispatched'";

const RELEASE_OUTBOX: &str = "\
    UPDATE outbox SET dispatched_at = NULL WHERE id IN (SELECT value FROM json_each($1))";

/// Retires the workflow's schedules whose ids are not in the JSON array `$2`.
const RETIRE_OTHER_SCHEDULES: &str = "\
    UPDATE schedules SET retired_at = $3, updated_at = $3 \
    WHERE workflow = $1 AND retired_at IS NULL \
    AND schedule NOT IN (SELECT value FROM json_each($2))";

/// How long a statement waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The store on SQLite.
///
/// The pool holds exactly one connection, kept open for the life of the
/// store. Within the process that serializes every statement, which is
/// what SQLite does with writers anyway, and it rules out lock-upgrade
/// failures between the process's own connections (`SQLITE_BUSY`) without
/// a separate writer pool. Reads wait behind a write, which for an
/// embedded deployment — one office, one process — costs little; the
/// write transactions are short (the engine's decision is pure and fast).
/// It also keeps an in-memory database alive: it lives exactly as long as
/// its one connection.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    keys: Arc<DataKeys>,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `url_or_path`: a
    /// `sqlite:` URL or a file path. The file is put in WAL mode, so that
    /// another process can read it while this one writes.
    pub async fn open(url_or_path: &str) -> Result<Self, StoreError> {
        let options = if url_or_path.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url_or_path)?
        } else {
            SqliteConnectOptions::new().filename(url_or_path)
        };
        SqliteStore::with_options(
            options
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal),
            DataKeys::unconfigured(),
        )
        .await
    }

    /// A private database in memory, gone when the store is dropped; its
    /// personal data is sealed under keys that are gone with it.
    pub async fn in_memory() -> Result<Self, StoreError> {
        SqliteStore::with_options(
            SqliteConnectOptions::from_str("sqlite::memory:")?,
            DataKeys::ephemeral(),
        )
        .await
    }

    async fn with_options(
        options: SqliteConnectOptions,
        keys: DataKeys,
    ) -> Result<Self, StoreError> {
        let options = options.busy_timeout(BUSY_TIMEOUT).foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Ok(SqliteStore {
            pool,
            keys: Arc::new(keys),
        })
    }

    /// Seals and opens personal data with `keys`: a database file opened
    /// without them can read and write no personal data.
    pub fn with_data_keys(mut self, keys: DataKeys) -> Self {
        self.keys = Arc::new(keys);
        self
    }

    /// The master keys this store wraps case keys with.
    pub fn data_keys(&self) -> &DataKeys {
        &self.keys
    }

    /// A write transaction, holding the database's write lock from the
    /// start.
    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Applies the migrations up to and including `version` only: a
    /// database as an earlier release left it.
    #[cfg(test)]
    pub(crate) async fn migrate_to(&self, version: i64) -> Result<(), StoreError> {
        MIGRATOR.run_to(version, &self.pool).await?;
        Ok(())
    }

    /// For the store's other traits (audit, API) kept in their own files.
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Writes everything a decision changes except the case row.
async fn write(
    conn: &mut SqliteConnection,
    w: &Write<'_>,
    sealed: &Sealed,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for row in &sealed.rows {
        sqlx::query(sql::INSERT_HISTORY)
            .bind(w.case_id)
            .bind(row.seq)
            .bind(sealed.at)
            .bind(actor)
            .bind(row.kind)
            .bind(Json(&row.payload))
            .bind(&row.hash)
            .execute(&mut *conn)
            .await?;
    }
    if !sealed.rows.is_empty() {
        sqlx::query(sql::SET_HISTORY_HEAD)
            .bind(w.case_id)
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
        sqlx::query(sql::FINISH_ATTEMPT)
            .bind(attempt_id)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        sqlx::query(sql::WITHDRAW_WAITING_JOB)
            .bind(attempt_id)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(DELETE_OTHER_TIMERS)
        .bind(w.case_id)
        .bind(Json(w.timer_ids()))
        .execute(&mut *conn)
        .await?;
    for t in &w.timers {
        let sql = if t.changed {
            sql::SET_TIMER
        } else {
            sql::KEEP_TIMER
        };
        sqlx::query(sql)
            .bind(w.case_id)
            .bind(&t.timer.id)
            .bind(t.timer.due)
            .bind(Json(&t.timer.kind))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Schedules a job: its attempt and its outbox row. A job scheduled
/// before (a decision written again) is left as it is.
async fn enqueue_job(
    conn: &mut SqliteConnection,
    owner: JobOwner<'_>,
    job: &Job,
    key: Option<&CaseKey>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let insert = match owner {
        JobOwner::Case(case_id) => sqlx::query(sql::INSERT_ATTEMPT)
            .bind(&job.attempt_id)
            .bind(case_id),
        JobOwner::Firing(firing_id) => sqlx::query(sql::INSERT_FIRING_ATTEMPT)
            .bind(&job.attempt_id)
            .bind(firing_id),
    };
    let scheduled = insert
        .bind(&job.step)
        .bind(&job.handler)
        .bind(&job.queue)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    if scheduled.rows_affected() == 1 {
        sqlx::query(sql::INSERT_OUTBOX)
            .bind(&job.attempt_id)
            .bind(&job.queue)
            .bind(Json(write::stored_job(job, key)))
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

impl SqliteStore {
    /// Reads a case, asks `decide` what changes and writes it, inside the
    /// caller's transaction. Only a [`StoreError::Database`] comes after a
    /// write.
    async fn update_in<F>(
        &self,
        conn: &mut SqliteConnection,
        case_id: &str,
        actor: &str,
        now: DateTime<Utc>,
        decide: F,
    ) -> Result<Updated, StoreError>
    where
        F: FnOnce(&CaseRecord) -> Result<Decision, Rejection>,
    {
        let row: Option<CaseRow> = sqlx::query_as(sql::CASE)
            .bind(case_id)
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else {
            return Err(StoreError::UnknownCase(case_id.to_owned()));
        };
        let Some(decided) = write::decide_locked(case_id, row, &self.keys, decide, actor, now)?
        else {
            return Ok(Updated::Unchanged);
        };
        if let Some(wrapped) = &decided.new_key {
            sqlx::query(sql::SET_CASE_KEY)
                .bind(case_id)
                .bind(wrapped)
                .execute(&mut *conn)
                .await?;
        }
        let w = decided.write();
        sqlx::query(sql::UPDATE_CASE)
            .bind(case_id)
            .bind(w.status)
            .bind(w.outcome)
            .bind(&w.state.step)
            .bind(Json(&decided.state))
            .bind(w.next_seq)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        write(conn, &w, &decided.sealed, actor, now).await?;
        Ok(Updated::Written(decided.decision))
    }
}

impl Store for SqliteStore {
    /// One: the pool's one connection.
    fn writers(&self) -> usize {
        1
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        // Two processes opening a new file at once (`serve` and a CLI
        // command) both see no migration applied; the loser's `CREATE`
        // then fails on the winner's tables. SQLite has no advisory lock
        // for sqlx to take, so look again: by then the winner's migration
        // is recorded and there is nothing left to do.
        let mut tries = 0;
        loop {
            match MIGRATOR.run(&self.pool).await {
                Ok(()) => return Ok(()),
                Err(_) if tries < 3 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
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
        let mut tx = self.begin().await?;
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
        _lock: Lock,
        actor: &str,
        now: DateTime<Utc>,
        decide: F,
    ) -> Result<Updated, StoreError>
    where
        F: FnOnce(&CaseRecord) -> Result<Decision, Rejection> + Send,
    {
        let mut tx = self.begin().await?;
        let updated = self.update_in(&mut tx, case_id, actor, now, decide).await?;
        match updated {
            Updated::Written(_) => tx.commit().await?,
            // A rejection returned above; either way nothing was written.
            Updated::Unchanged | Updated::Busy => tx.rollback().await?,
        }
        Ok(updated)
    }

    /// One transaction for all the cases: with one connection, what costs
    /// is the statements and each commit, not waiting for locks.
    async fn update_cases<F>(
        &self,
        cases: Vec<(String, F)>,
        _lock: Lock,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<Updated, StoreError>>, StoreError>
    where
        F: FnOnce(&CaseRecord) -> Result<Decision, Rejection> + Send,
    {
        let mut tx = self.begin().await?;
        let mut results = Vec::with_capacity(cases.len());
        for (case_id, decide) in cases {
            // A case named twice is decided again on what its first
            // decision wrote: the transaction reads its own writes.
            match self.update_in(&mut tx, &case_id, actor, now, decide).await {
                Err(StoreError::Database(e)) => return Err(StoreError::Database(e)),
                // Any other error is found before the case's first write.
                other => results.push(other),
            }
        }
        tx.commit().await?;
        Ok(results)
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
        let mut tx = self.begin().await?;
        let ids: Vec<i64> = sqlx::query_scalar(CLAIM_JOBS)
            .bind(Json(outbox_ids))
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
        let rows: Vec<OutboxRow> = sqlx::query_as(sql::JOBS_IN)
            .bind(Json(&ids))
            .fetch_all(&mut *tx)
            .await?;
        let (claimed, unreadable) = rows::open_claimed(rows, &self.keys);
        if !unreadable.is_empty() {
            sqlx::query(RELEASE_OUTBOX)
                .bind(Json(&unreadable))
                .execute(&mut *tx)
                .await?;
        }
        let attempts: Vec<&str> = claimed.iter().map(|r| r.job.attempt_id.as_str()).collect();
        sqlx::query(MARK_ATTEMPTS_DISPATCHED)
            .bind(Json(&attempts))
            .bind(now)
            .execute(&mut *tx)
            .await?;
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
                sqlx::query(sql::PUSH_ATTEMPT_TIMEOUT)
                    .bind(&job.case_id)
                    .bind(Json(&kind))
                    .bind(due)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn release_jobs(&self, outbox_ids: &[i64]) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(RELEASE_ATTEMPTS)
            .bind(Json(outbox_ids))
            .execute(&mut *tx)
            .await?;
        sqlx::query(RELEASE_OUTBOX)
            .bind(Json(outbox_ids))
            .execute(&mut *tx)
            .await?;
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
        let mut tx = self.begin().await?;
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
        let mut tx = self.begin().await?;
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
            .bind(Json(ids))
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
        let mut tx = self.begin().await?;
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
        let mut tx = self.begin().await?;
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
