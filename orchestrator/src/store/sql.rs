//! SQL text both databases run unchanged. Parameters are written `$1`,
//! which SQLite accepts too; JSON columns are read through
//! `CAST(… AS TEXT)`, a no-op on SQLite and `jsonb` → text on PostgreSQL,
//! so that a bad document is reported by serde (`StoreError::Corrupt`)
//! rather than by the driver. What differs — row locks, deleting by a list
//! of ids — lives in `postgres.rs` and `sqlite.rs`.

use super::CaseFilter;

// --- definitions --------------------------------------------------------

/// Returns the new row, or nothing when `(name, version)` exists.
pub(super) const INSERT_DEFINITION: &str = "\
    INSERT INTO definitions (name, version, hash, source, deployed_at) \
    VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT (name, version) DO NOTHING \
    RETURNING id, name, version, hash, source, deployed_at";

pub(super) const DEFINITION_BY_NAME_VERSION: &str = "\
    SELECT id, name, version, hash, source, deployed_at FROM definitions \
    WHERE name = $1 AND version = $2";

pub(super) const DEFINITION_BY_ID: &str = "\
    SELECT id, name, version, hash, source, deployed_at FROM definitions WHERE id = $1";

pub(super) const LATEST_DEFINITION: &str = "\
    SELECT id, name, version, hash, source, deployed_at FROM definitions \
    WHERE name = $1 ORDER BY version DESC LIMIT 1";

// --- cases --------------------------------------------------------------

pub(super) const CASE: &str = "\
    SELECT definition_id, CAST(state AS TEXT) AS state, data_key, next_seq, history_head \
    FROM cases WHERE id = $1";

pub(super) const CASE_KEY: &str = "SELECT data_key FROM cases WHERE id = $1";
pub(super) const CASE_DEFINITION: &str = "SELECT definition_id FROM cases WHERE id = $1";

pub(super) const SET_CASE_KEY: &str = "UPDATE cases SET data_key = $2 WHERE id = $1";

/// Erasure: without its key, none of the case's sealed values opens again.
pub(super) const ERASE_CASE_KEY: &str = "UPDATE cases SET data_key = NULL WHERE id = $1";

pub(super) const INSERT_CASE: &str = "\
    INSERT INTO cases \
    (id, definition_id, status, outcome, current_step, state, next_seq, created_at, updated_at, \
    data_key) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)";

pub(super) const UPDATE_CASE: &str = "\
    UPDATE cases SET status = $2, outcome = $3, current_step = $4, state = $5, \
    next_seq = $6, updated_at = $7 \
    WHERE id = $1";

/// The case list with only the filters that are set, so that each
/// combination can use its index; the values are bound in the order
/// returned, then the limit.
pub(super) fn list_cases(filter: &CaseFilter) -> (String, Vec<&str>) {
    let mut sql = String::from(
        "SELECT c.id, d.name AS workflow, d.version, c.status, c.outcome, \
         c.current_step AS step, c.created_at, c.updated_at \
         FROM cases c JOIN definitions d ON d.id = c.definition_id",
    );
    let mut binds = Vec::new();
    let filters = [
        ("d.name", filter.workflow.as_deref()),
        ("c.status", filter.status.as_deref()),
        ("c.current_step", filter.step.as_deref()),
    ];
    for (column, value) in filters {
        if let Some(value) = value {
            let word = if binds.is_empty() { "WHERE" } else { "AND" };
            binds.push(value);
            sql.push_str(&format!(" {word} {column} = ${}", binds.len()));
        }
    }
    sql.push_str(&format!(
        " ORDER BY c.created_at DESC, c.id DESC LIMIT ${}",
        binds.len() + 1
    ));
    (sql, binds)
}

// --- history ------------------------------------------------------------

pub(super) const INSERT_HISTORY: &str = "\
    INSERT INTO history (case_id, seq, at, actor, kind, payload, hash) \
    VALUES ($1, $2, $3, $4, $5, $6, $7)";

pub(super) const SET_HISTORY_HEAD: &str = "UPDATE cases SET history_head = $2 WHERE id = $1";

pub(super) const HISTORY: &str = "\
    SELECT seq, at, actor, CAST(payload AS TEXT) AS payload FROM history \
    WHERE case_id = $1 ORDER BY seq";

// --- attempts and the outbox ---------------------------------------------

/// Affects no row when the attempt exists: a decision written again
/// never schedules an attempt twice.
pub(super) const INSERT_ATTEMPT: &str = "\
    INSERT INTO attempts (id, case_id, step, handler, queue, status, scheduled_at) \
    VALUES ($1, $2, $3, $4, $5, 'scheduled', $6) \
    ON CONFLICT (id) DO NOTHING";

pub(super) const INSERT_OUTBOX: &str = "\
    INSERT INTO outbox (attempt_id, queue, job, created_at) VALUES ($1, $2, $3, $4) \
    ON CONFLICT (attempt_id) DO NOTHING";

pub(super) const FINISH_ATTEMPT: &str = "\
    UPDATE attempts SET status = 'finished', finished_at = $2 \
    WHERE id = $1 AND status <> 'finished'";

/// A settled attempt has nothing left to hand to the transport; its
/// `attempts` row keeps `dispatched_at` empty, which records that.
pub(super) const WITHDRAW_WAITING_JOB: &str = "\
    DELETE FROM outbox WHERE attempt_id = $1 AND dispatched_at IS NULL";

/// Outbox rows with the data key of their case, if they have one.
macro_rules! outbox_select {
    ($where:literal) => {
        concat!(
            "SELECT o.id, CAST(o.job AS TEXT) AS job, o.created_at, a.case_id, c.data_key \
             FROM outbox o JOIN attempts a ON a.id = o.attempt_id \
             LEFT JOIN cases c ON c.id = a.case_id ",
            $where
        )
    };
}

pub(super) const WAITING: &str = "\
    SELECT id, queue FROM outbox WHERE dispatched_at IS NULL ORDER BY id LIMIT $1";

pub(super) const WAITING_JOBS: &str =
    outbox_select!("WHERE o.dispatched_at IS NULL ORDER BY o.id LIMIT $1");

pub(super) const WAITING_JOBS_IN_QUEUE: &str =
    outbox_select!("WHERE o.dispatched_at IS NULL AND o.queue = $1 ORDER BY o.id LIMIT $2");

/// The jobs of the JSON array `$1`, oldest first: what SQLite's claim
/// returns (PostgreSQL's reads them in the claim's own statement).
pub(super) const JOBS_IN: &str =
    outbox_select!("WHERE o.id IN (SELECT value FROM json_each($1)) ORDER BY o.id");

pub(super) const DISPATCHED_UNFINISHED: &str = "\
    SELECT count(*) FROM attempts WHERE queue = $1 AND status = 'dispatched'";

pub(super) const REQUEUE_OUTBOX: &str = "\
    UPDATE outbox SET dispatched_at = NULL \
    WHERE dispatched_at IS NOT NULL \
    AND attempt_id IN (SELECT id FROM attempts WHERE status = 'dispatched')";

pub(super) const REQUEUE_ATTEMPTS: &str = "\
    UPDATE attempts SET status = 'scheduled', dispatched_at = NULL WHERE status = 'dispatched'";

// --- timers -------------------------------------------------------------

/// A timer the decision set or moved.
pub(super) const SET_TIMER: &str = "\
    INSERT INTO timers (case_id, id, due_at, kind) VALUES ($1, $2, $3, $4) \
    ON CONFLICT (case_id, id) DO UPDATE SET due_at = excluded.due_at, kind = excluded.kind";

/// A timer the decision left as it was: its row may have been pushed
/// later when its job was dispatched, and that must survive.
pub(super) const KEEP_TIMER: &str = "\
    INSERT INTO timers (case_id, id, due_at, kind) VALUES ($1, $2, $3, $4) \
    ON CONFLICT (case_id, id) DO NOTHING";

/// Moves an attempt's timeout timer later, never earlier. The timer is
/// found by its kind (`$2`, written by the same serializer as the row,
/// compared as `jsonb` on PostgreSQL and as text on SQLite), so the store
/// need not know how the engine names timers.
pub(super) const PUSH_ATTEMPT_TIMEOUT: &str = "\
    UPDATE timers SET due_at = $3 WHERE case_id = $1 AND kind = $2 AND due_at < $3";

pub(super) const DUE_TIMERS: &str = "\
    SELECT id, case_id, due_at FROM timers WHERE due_at <= $1 \
    ORDER BY due_at, case_id, id LIMIT $2";

pub(super) const NEXT_TIMER: &str = "SELECT min(due_at) FROM timers";

// --- schedules ------------------------------------------------------------

pub(super) const LATEST_DEFINITIONS: &str = "\
    SELECT id, name, version, hash, source, deployed_at FROM definitions d \
    WHERE version = (SELECT max(version) FROM definitions e WHERE e.name = d.name) \
    ORDER BY name";

/// Adds a schedule, or restarts one whose expression or time zone changed
/// or that comes back after being retired; leaves an unchanged one alone,
/// so its `next_at` — perhaps a tick missed while every orchestrator was
/// down — survives a restart.
pub(super) const UPSERT_SCHEDULE: &str = "\
    INSERT INTO schedules (workflow, schedule, cron, timezone, next_at, retired_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, NULL, $6) \
    ON CONFLICT (workflow, schedule) DO UPDATE SET \
    cron = excluded.cron, timezone = excluded.timezone, next_at = excluded.next_at, \
    retired_at = NULL, updated_at = excluded.updated_at \
    WHERE schedules.cron <> excluded.cron OR schedules.timezone <> excluded.timezone \
    OR schedules.retired_at IS NOT NULL";

pub(super) const SCHEDULES: &str = "\
    SELECT workflow, schedule, cron, timezone, next_at, retired_at FROM schedules \
    ORDER BY workflow, schedule";

pub(super) const DUE_SCHEDULES: &str = "\
    SELECT workflow, schedule, cron, timezone, next_at, retired_at FROM schedules \
    WHERE retired_at IS NULL AND next_at <= $1 \
    ORDER BY next_at, workflow, schedule LIMIT $2";

/// The earliest moment schedule work falls due: a tick, a notification
/// attempt timing out, or a retry. One cheap query per round.
pub(super) const NEXT_SCHEDULE_WORK: &str = "\
    SELECT min(at) FROM ( \
    SELECT min(next_at) AS at FROM schedules WHERE retired_at IS NULL \
    UNION ALL \
    SELECT min(due_at) AS at FROM schedule_firings WHERE status IN ('sending', 'retrying') \
    ) AS work";

/// The compare-and-set that claims a tick: only the orchestrator that read
/// `next_at` as `$3` moves it on. On PostgreSQL a second claimer waits for
/// the first's row lock, then finds `next_at` moved and changes nothing.
pub(super) const CLAIM_SCHEDULE: &str = "\
    UPDATE schedules SET next_at = $4, updated_at = $5 \
    WHERE workflow = $1 AND schedule = $2 AND next_at = $3 AND retired_at IS NULL";

/// Returns nothing when the tick was fired already.
pub(super) const INSERT_FIRING: &str = "\
    INSERT INTO schedule_firings \
    (workflow, schedule, tick_at, fired_at, cases, status, outcome, attempt, attempt_id, job, \
    due_at, finished_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
    ON CONFLICT (workflow, schedule, tick_at) DO NOTHING \
    RETURNING id";

pub(super) const INSERT_FIRING_ATTEMPT: &str = "\
    INSERT INTO attempts (id, firing_id, step, handler, queue, status, scheduled_at) \
    VALUES ($1, $2, $3, $4, $5, 'scheduled', $6) \
    ON CONFLICT (id) DO NOTHING";

/// A query of firings: the columns every firing is read with, then `$rest`.
macro_rules! select_firings {
    ($rest:literal) => {
        concat!(
            "SELECT f.id, f.workflow, f.schedule, f.tick_at, f.fired_at, f.cases, f.status, \
             f.outcome, f.attempt, f.attempt_id, CAST(f.job AS TEXT) AS job, f.due_at, \
             f.finished_at FROM schedule_firings f ",
            $rest
        )
    };
}

pub(super) const DUE_FIRINGS: &str = select_firings!(
    "WHERE f.status IN ('sending', 'retrying') AND f.due_at <= $1 \
     ORDER BY f.due_at, f.id LIMIT $2"
);

/// Found through `attempts`, so that a late report of an earlier attempt
/// still finds its firing (and is ignored there, knowingly).
pub(super) const FIRING_OF_ATTEMPT: &str =
    select_firings!("JOIN attempts a ON a.firing_id = f.id WHERE a.id = $1");

pub(super) const FIRINGS: &str = select_firings!(
    "WHERE f.workflow = $1 AND f.schedule = $2 ORDER BY f.tick_at DESC, f.id DESC LIMIT $3"
);

/// A compare-and-set on the firing's status and attempt: of two reports of
/// one attempt, or a report racing its timeout, one changes the firing.
pub(super) const UPDATE_FIRING: &str = "\
    UPDATE schedule_firings SET status = $4, outcome = $5, due_at = $6, finished_at = $7, \
    attempt = COALESCE($8, attempt), attempt_id = COALESCE($9, attempt_id), \
    job = COALESCE($10, job) \
    WHERE id = $1 AND status = $2 AND attempt = $3";

/// Moves a notification's timeout later when it is dispatched, as
/// `PUSH_ATTEMPT_TIMEOUT` does for a case's attempt.
pub(super) const PUSH_FIRING_TIMEOUT: &str = "\
    UPDATE schedule_firings SET due_at = $2 \
    WHERE attempt_id = $1 AND status = 'sending' AND due_at < $2";

pub(super) const ACTIVE_CASES: &str = "\
    SELECT c.id, CAST(c.state AS TEXT) AS state FROM cases c \
    JOIN definitions d ON d.id = c.definition_id \
    WHERE d.name = $1 AND c.status = 'active' ORDER BY c.id";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_case_list_binds_only_the_filters_set() {
        let none = CaseFilter::default();
        let (sql, binds) = list_cases(&none);
        assert!(!sql.contains("WHERE"));
        assert!(sql.ends_with("LIMIT $1"));
        assert!(binds.is_empty());

        let filter = CaseFilter {
            workflow: Some("w".into()),
            step: Some("s".into()),
            ..CaseFilter::default()
        };
        let (sql, binds) = list_cases(&filter);
        assert!(sql.contains("WHERE d.name = $1 AND c.current_step = $2"));
        assert!(sql.ends_with("LIMIT $3"));
        assert_eq!(binds, ["w", "s"]);
    }
}
