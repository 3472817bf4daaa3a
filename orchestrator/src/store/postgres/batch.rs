//! Decisions on several cases in one transaction: the reports that arrive
//! together. Written one case at a time, a decision costs eight statements
//! and a commit, whatever its size, and PostgreSQL's CPU goes to
//! statements more than to rows (BENCHMARKS.md); here each kind of row of
//! all the cases is written by one statement.
//!
//! The cases are locked in the order of their ids, so two batches sharing
//! cases wait for each other instead of deadlocking; a single-case update
//! holds one lock and waits like any other.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnection;
use sqlx::types::Json;

use super::{FINISH_ATTEMPT, PgStore, write};
use crate::engine::{Decision, Job, Rejection, TimerKind};
use crate::store::rows::CaseRow;
use crate::store::write::{Decided, Write};
use crate::store::{CaseRecord, Lock, Store, StoreError, Updated, sql};

const LOCK_CASES: &str = "\
    SELECT id, definition_id, CAST(state AS TEXT) AS state, data_key, next_seq, history_head \
    FROM cases WHERE id = ANY ($1) ORDER BY id FOR UPDATE";

const LOCK_CASES_OR_SKIP: &str = "\
    SELECT id, definition_id, CAST(state AS TEXT) AS state, data_key, next_seq, history_head \
    FROM cases WHERE id = ANY ($1) ORDER BY id FOR UPDATE SKIP LOCKED";

const EXISTING_CASES: &str = "SELECT id FROM cases WHERE id = ANY ($1)";

/// `super::UPDATE_CASE` for many cases: a null head (no new events)
/// leaves the case's head as it is.
const UPDATE_CASES: &str = "\
    UPDATE cases c SET status = v.status, outcome = v.outcome, current_step = v.step, \
    state = v.state, next_seq = v.next_seq, updated_at = $8, \
    history_head = COALESCE(v.head, c.history_head) \
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::bigint[], \
        $7::text[]) AS v (id, status, outcome, step, state, next_seq, head) \
    WHERE c.id = v.id";

const INSERT_HISTORY: &str = "\
    INSERT INTO history (case_id, seq, at, actor, kind, payload, hash) \
    SELECT case_id, seq, $1, $2, kind, payload, hash \
    FROM UNNEST($3::text[], $4::bigint[], $5::text[], $6::jsonb[], $7::text[]) \
        AS r (case_id, seq, kind, payload, hash)";

/// `super::ENQUEUE_CASE_JOB` for many jobs.
const ENQUEUE_JOBS: &str = "\
    WITH job AS ( \
        SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
            $6::jsonb[]) AS j (id, case_id, step, handler, queue, job) \
    ), attempt AS ( \
        INSERT INTO attempts (id, case_id, step, handler, queue, status, scheduled_at) \
        SELECT id, case_id, step, handler, queue, 'scheduled', $7 FROM job \
        ON CONFLICT (id) DO NOTHING RETURNING id \
    ) \
    INSERT INTO outbox (attempt_id, queue, job, created_at) \
    SELECT job.id, job.queue, job.job, $7 FROM job JOIN attempt ON attempt.id = job.id \
    ON CONFLICT (attempt_id) DO NOTHING";

/// `super::WRITE_TIMERS` for the cases `$1`: `$2`, `$3` are the case and
/// id of every timer their states keep, `$4`–`$7` those set or moved
/// (case, id, due, kind), `$8`–`$11` the unchanged ones.
const WRITE_TIMERS: &str = "\
    WITH gone AS ( \
        DELETE FROM timers t WHERE t.case_id = ANY ($1) AND NOT EXISTS ( \
            SELECT 1 FROM UNNEST($2::text[], $3::text[]) AS k (case_id, id) \
            WHERE k.case_id = t.case_id AND k.id = t.id) \
    ), kept AS ( \
        INSERT INTO timers (case_id, id, due_at, kind) \
        SELECT * FROM UNNEST($8::text[], $9::text[], $10::timestamptz[], $11::jsonb[]) \
        ON CONFLICT (case_id, id) DO NOTHING \
    ) \
    INSERT INTO timers (case_id, id, due_at, kind) \
    SELECT * FROM UNNEST($4::text[], $5::text[], $6::timestamptz[], $7::jsonb[]) \
    ON CONFLICT (case_id, id) DO UPDATE SET due_at = excluded.due_at, kind = excluded.kind";

/// `super::FINISH_ATTEMPT` for the attempts `$1`.
const FINISH_ATTEMPTS: &str = "\
    WITH settled AS ( \
        SELECT * FROM UNNEST($1::text[]) AS s (id) \
    ), finished AS ( \
        UPDATE attempts a SET status = 'finished', finished_at = $2 \
        FROM settled s WHERE a.id = s.id AND a.status <> 'finished' \
    ) \
    DELETE FROM outbox o USING settled s \
    WHERE o.attempt_id = s.id AND o.dispatched_at IS NULL";

/// Up to this many attempts a batch settles are finished one statement
/// each: given an array, the statement is planned afresh at every call
/// (its generic plan, for an array of unknown length, costs more), which
/// costs a batch of a few attempts more than their round trips, and a
/// batch of many less (BENCHMARKS.md).
const FINISHED_ONE_BY_ONE: usize = 4;

#[derive(sqlx::FromRow)]
struct LockedRow {
    id: String,
    #[sqlx(flatten)]
    row: CaseRow,
}

type Outcomes = Vec<(usize, Result<Updated, StoreError>)>;

/// [`Store::update_cases`] on PostgreSQL.
pub(super) async fn update_cases<F>(
    store: &PgStore,
    cases: Vec<(String, F)>,
    lock: Lock,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Result<Updated, StoreError>>, StoreError>
where
    F: FnOnce(&CaseRecord) -> Result<Decision, Rejection> + Send,
{
    let mut seen = HashSet::new();
    let (first, again): (Vec<_>, Vec<_>) = cases
        .into_iter()
        .enumerate()
        .partition(|(_, (case_id, _))| seen.insert(case_id.clone()));
    let ids: Vec<&str> = first
        .iter()
        .map(|(_, (case_id, _))| case_id.as_str())
        .collect();
    let mut tx = store.pool.begin().await?;
    let select = match lock {
        Lock::Wait => LOCK_CASES,
        Lock::SkipLocked => LOCK_CASES_OR_SKIP,
    };
    let locked: Vec<LockedRow> = sqlx::query_as(select)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
    let mut rows: HashMap<String, CaseRow> = locked.into_iter().map(|l| (l.id, l.row)).collect();
    // A case not locked was skipped if it exists, and is unknown if not.
    let existing: HashSet<String> = if lock == Lock::SkipLocked && rows.len() < ids.len() {
        sqlx::query_scalar(EXISTING_CASES)
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect()
    } else {
        HashSet::new()
    };
    let mut done: Outcomes = Vec::with_capacity(seen.len());
    let mut decided: Vec<(usize, Decided)> = Vec::new();
    for (index, (case_id, decide)) in first {
        let Some(row) = rows.remove(&case_id) else {
            let missing = if existing.contains(&case_id) {
                Ok(Updated::Busy)
            } else {
                Err(StoreError::UnknownCase(case_id))
            };
            done.push((index, missing));
            continue;
        };
        // One case's bad row or rejected command is that case's result.
        match write::decide_locked(&case_id, row, &store.keys, decide, actor, now) {
            Ok(Some(d)) => decided.push((index, d)),
            Ok(None) => done.push((index, Ok(Updated::Unchanged))),
            Err(e) => done.push((index, Err(e))),
        }
    }
    if !decided.is_empty() {
        write_all(&mut tx, &decided, actor, now).await?;
    }
    tx.commit().await?;
    done.extend(
        decided
            .into_iter()
            .map(|(index, d)| (index, Ok(Updated::Written(d.decision)))),
    );
    for (index, (case_id, decide)) in again {
        let updated = store.update_case(&case_id, lock, actor, now, decide).await;
        done.push((index, updated));
    }
    done.sort_by_key(|(index, _)| *index);
    Ok(done.into_iter().map(|(_, outcome)| outcome).collect())
}

/// Writes the decisions, one statement per kind of row for all of them.
async fn write_all(
    conn: &mut PgConnection,
    decided: &[(usize, Decided)],
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let writes: Vec<(&Decided, Write<'_>)> = decided.iter().map(|(_, d)| (d, d.write())).collect();
    for (d, _) in &writes {
        if let Some(wrapped) = &d.new_key {
            sqlx::query(sql::SET_CASE_KEY)
                .bind(&d.case_id)
                .bind(wrapped)
                .execute(&mut *conn)
                .await?;
        }
    }
    update_rows(conn, &writes, now).await?;
    insert_history(conn, &writes, actor).await?;
    enqueue_jobs(conn, &writes, now).await?;
    for (d, w) in &writes {
        if w.erases {
            sqlx::query(sql::ERASE_CASE_KEY)
                .bind(&d.case_id)
                .execute(&mut *conn)
                .await?;
        }
    }
    let finished: Vec<&str> = writes
        .iter()
        .flat_map(|(_, w)| w.finished.iter().copied())
        .collect();
    finish_attempts(conn, &finished, now).await?;
    write_timers(conn, &writes).await
}

async fn finish_attempts(
    conn: &mut PgConnection,
    attempt_ids: &[&str],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if attempt_ids.len() > FINISHED_ONE_BY_ONE {
        sqlx::query(FINISH_ATTEMPTS)
            .bind(attempt_ids)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        return Ok(());
    }
    for attempt_id in attempt_ids {
        sqlx::query(FINISH_ATTEMPT)
            .bind(attempt_id)
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn update_rows(
    conn: &mut PgConnection,
    writes: &[(&Decided, Write<'_>)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(UPDATE_CASES)
        .bind(
            writes
                .iter()
                .map(|(d, _)| d.case_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(writes.iter().map(|(_, w)| w.status).collect::<Vec<_>>())
        .bind(writes.iter().map(|(_, w)| w.outcome).collect::<Vec<_>>())
        .bind(
            writes
                .iter()
                .map(|(_, w)| w.state.step.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            writes
                .iter()
                .map(|(d, _)| Json(&d.state))
                .collect::<Vec<_>>(),
        )
        .bind(writes.iter().map(|(_, w)| w.next_seq).collect::<Vec<_>>())
        .bind(writes.iter().map(|(d, _)| d.new_head()).collect::<Vec<_>>())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn insert_history(
    conn: &mut PgConnection,
    writes: &[(&Decided, Write<'_>)],
    actor: &str,
) -> Result<(), StoreError> {
    let rows: Vec<(&str, &write::SealedEvent)> = writes
        .iter()
        .flat_map(|(d, _)| d.sealed.rows.iter().map(|r| (d.case_id.as_str(), r)))
        .collect();
    let Some((first, _)) = writes.first() else {
        return Ok(());
    };
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(INSERT_HISTORY)
        .bind(first.sealed.at)
        .bind(actor)
        .bind(rows.iter().map(|(case_id, _)| *case_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, r)| r.seq).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, r)| r.kind).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|(_, r)| Json(&r.payload))
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|(_, r)| r.hash.as_str())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn enqueue_jobs(
    conn: &mut PgConnection,
    writes: &[(&Decided, Write<'_>)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let jobs: Vec<(&Decided, &Job)> = writes
        .iter()
        .flat_map(|(d, w)| w.jobs.iter().map(move |job| (*d, *job)))
        .collect();
    if jobs.is_empty() {
        return Ok(());
    }
    sqlx::query(ENQUEUE_JOBS)
        .bind(
            jobs.iter()
                .map(|(_, j)| j.attempt_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            jobs.iter()
                .map(|(d, _)| d.case_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            jobs.iter()
                .map(|(_, j)| j.step.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            jobs.iter()
                .map(|(_, j)| j.handler.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            jobs.iter()
                .map(|(_, j)| j.queue.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            jobs.iter()
                .map(|(d, j)| Json(write::stored_job(j, d.key.as_ref())))
                .collect::<Vec<_>>(),
        )
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Every timer of the cases' new states, as columns: case, id, due, kind.
type TimerColumns<'a> = (
    Vec<&'a str>,
    Vec<&'a str>,
    Vec<DateTime<Utc>>,
    Vec<Json<&'a TimerKind>>,
);

async fn write_timers(
    conn: &mut PgConnection,
    writes: &[(&Decided, Write<'_>)],
) -> Result<(), StoreError> {
    let mut set: TimerColumns = Default::default();
    let mut kept: TimerColumns = Default::default();
    for (d, w) in writes {
        for t in &w.timers {
            let columns = if t.changed { &mut set } else { &mut kept };
            columns.0.push(d.case_id.as_str());
            columns.1.push(t.timer.id.as_str());
            columns.2.push(t.timer.due);
            columns.3.push(Json(&t.timer.kind));
        }
    }
    let keys = (
        set.0.iter().chain(&kept.0).copied().collect::<Vec<_>>(),
        set.1.iter().chain(&kept.1).copied().collect::<Vec<_>>(),
    );
    sqlx::query(WRITE_TIMERS)
        .bind(
            writes
                .iter()
                .map(|(d, _)| d.case_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(keys.0)
        .bind(keys.1)
        .bind(set.0)
        .bind(set.1)
        .bind(set.2)
        .bind(set.3)
        .bind(kept.0)
        .bind(kept.1)
        .bind(kept.2)
        .bind(kept.3)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
