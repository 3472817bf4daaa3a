//! What only one of the databases has: PostgreSQL's row locks, SQLite's
//! file.

use super::*;

// --- PostgreSQL only: row locks ------------------------------------------

/// Holds the case's row lock from a second connection.
pub(super) async fn hold_row_lock(
    store: &PgStore,
    case_id: &str,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut holder = store.pool().begin().await.expect("begin");
    sqlx::query("SELECT id FROM cases WHERE id = $1 FOR UPDATE")
        .bind(case_id)
        .execute(&mut *holder)
        .await
        .expect("lock");
    holder
}

/// Waits until `n` sessions of this database wait for a lock.
async fn sessions_waiting_for_a_lock(store: &PgStore, n: i64) {
    for _ in 0..500 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(store.pool())
        .await
        .expect("pg_stat_activity");
        if waiting >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{n} sessions never waited for the lock");
}

pub(super) async fn updates_of_one_case_wait_for_each_other(store: &PgStore) {
    let first = started(store, "case-1", true, t0()).await;
    let attempt_id = job(&first).attempt_id.clone();
    let holder = hold_row_lock(store, "case-1").await;
    let now = t0() + Duration::minutes(1);
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let (store, attempt_id) = (store.clone(), attempt_id.clone());
            tokio::spawn(async move {
                apply(&store, "case-1", complete(&attempt_id, "verified"), now).await
            })
        })
        .collect();
    // Both completions are now blocked on the row, then run one at a time.
    sessions_waiting_for_a_lock(store, 2).await;
    holder.rollback().await.expect("release");
    for task in tasks {
        written(task.await.expect("the task").expect("complete"));
    }
    let kinds = kinds(store, "case-1").await;
    assert_eq!(
        kinds.iter().filter(|k| **k == "attempt_succeeded").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "completion_ignored").count(),
        1,
        "{kinds:?}"
    );
}

pub(super) async fn skip_locked_reports_busy(store: &PgStore) {
    let first = started(store, "case-1", false, t0()).await;
    let timer_id = first.state.timers.keys().next().expect("a timer").clone();
    let due = first.state.timers[&timer_id].due;
    let fire = |store: &PgStore| {
        let timer_id = timer_id.clone();
        let store = store.clone();
        async move {
            store
                .update_case("case-1", Lock::SkipLocked, "system:timer", due, |record| {
                    engine::decide(ctx(due), &record.state, Command::FireTimer { timer_id })
                })
                .await
        }
    };

    let holder = hold_row_lock(store, "case-1").await;
    assert_eq!(fire(store).await.expect("skip"), Updated::Busy);
    let unknown = store
        .update_case(
            "no-such-case",
            Lock::SkipLocked,
            "system:timer",
            due,
            |_| panic!("no case to decide on"),
        )
        .await;
    assert!(
        matches!(unknown, Err(StoreError::UnknownCase(_))),
        "{unknown:?}"
    );
    holder.rollback().await.expect("release");

    let fired = written(fire(store).await.expect("fire"));
    assert!(
        fired
            .history
            .iter()
            .any(|e| e.kind() == "attempt_timed_out")
    );
}

/// Two orchestrators claim one tick while a third holds the schedule's row
/// (it is mid-claim). When the third gives up, the two waiting claims run
/// one after the other: the first moves the tick on, the second then finds
/// it moved and writes nothing.
pub(super) async fn claims_waiting_on_one_tick_resolve_to_one(store: &PgStore) {
    use crate::store::{Claim, Claimed};
    let tick = t0();
    store
        .sync_schedules(
            "residence-permit",
            &[crate::store::ScheduleSpec {
                id: "morning_due_list".into(),
                cron: "0 0 9 * * *".into(),
                timezone: "Asia/Shanghai".into(),
                first_at: Some(tick),
            }],
            tick,
        )
        .await
        .expect("sync");
    let mut holder = store.pool().begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM schedules WHERE schedule = 'morning_due_list' FOR UPDATE")
        .execute(&mut *holder)
        .await
        .expect("lock");
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let claim = Claim {
                    workflow: "residence-permit".into(),
                    schedule: "morning_due_list".into(),
                    expected: tick,
                    next_at: Some(tick + Duration::days(1)),
                    firing: None,
                };
                store.claim_schedule(&claim, tick).await
            })
        })
        .collect();
    sessions_waiting_for_a_lock(store, 2).await;
    holder.rollback().await.expect("release");
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("the task").expect("claim"));
    }
    results.sort_by_key(|r| matches!(r, Claimed::Lost));
    assert_eq!(results, [Claimed::Won { firing: None }, Claimed::Lost]);
}

// --- SQLite only: the file ------------------------------------------------

pub(super) async fn a_database_file_is_created_and_kept(dir: &Path) {
    let path = dir.join("docket.sqlite");
    let keys = DataKeys::ephemeral();
    let store = SqliteStore::open(&path.to_string_lossy())
        .await
        .expect("create")
        .with_data_keys(keys.clone());
    store.migrate().await.expect("migrate");
    started(&store, "case-1", false, t0()).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .expect("journal mode");
    assert_eq!(mode, "wal");
    drop(store);

    let url = format!("sqlite:{}", path.to_string_lossy());
    let store = SqliteStore::open(&url)
        .await
        .expect("reopen")
        .with_data_keys(keys);
    store.migrate().await.expect("migrate again");
    assert_eq!(state(&store, "case-1").await.step, "verify_identity");
    let keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(store.pool())
        .await
        .expect("foreign keys");
    assert_eq!(keys, 1);
}
