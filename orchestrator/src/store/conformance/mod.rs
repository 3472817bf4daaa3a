//! One suite every [`Store`] must pass, written once as generic async
//! functions and run by the thin runners at the bottom on SQLite (in
//! memory) and on PostgreSQL (a fresh database per test, from
//! `#[sqlx::test]`, which reads `DATABASE_URL`).
//!
//! The decisions written are the real engine's, on the residence-permit
//! workflow, so the store is tested with what it will be given.

use std::future::Future;
use std::path::Path;

use chrono::{DateTime, Duration, TimeZone, Utc};
use docket_workers::contract::Outcome;
use serde_json::json;

use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use super::{CaseFilter, DefinitionRecord, Lock, Store, StoreError, Updated};
use crate::engine::{self, Command, Decision, Effect, Job, Rejection};
use crate::privacy::DataKeys;
use crate::testing::{ctx, input};

// --- fixtures ------------------------------------------------------------

/// 2026-03-02 09:00 in Shanghai, a Monday.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 1, 0, 0)
        .single()
        .expect("a valid time")
}

/// Far enough ahead that every timer is due.
fn far() -> DateTime<Utc> {
    t0() + Duration::days(3650)
}

/// Writing rows by hand, as a bug or an operator at a console would: what
/// the suite needs besides the trait.
pub(crate) trait Tamper: Store + Clone {
    /// Runs `sql` with `$1` bound to `case_id`; returns the rows affected.
    fn tamper(
        &self,
        sql: &'static str,
        case_id: &str,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// Lifts the append-only guards on history, as a DBA could.
    fn allow_tampering(&self) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Runs statements built by the test itself, as a DBA would.
    fn run_sql(&self, sql: String) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// Migrates only up to `version`, as an earlier release did.
    fn migrate_to(&self, version: i64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Rows that break a foreign key (SQLite checks them only when asked).
    fn broken_references(&self) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// The one text column `sql` selects, `$1` bound to `case_id`: what a
    /// DBA reading the tables sees.
    fn read_texts(
        &self,
        sql: &'static str,
        case_id: &str,
    ) -> impl Future<Output = Result<Vec<String>, sqlx::Error>> + Send;
}

impl Tamper for SqliteStore {
    async fn read_texts(
        &self,
        sql: &'static str,
        case_id: &str,
    ) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(sql)
            .bind(case_id)
            .fetch_all(self.pool())
            .await
    }

    async fn allow_tampering(&self) -> Result<(), sqlx::Error> {
        for sql in [
            "DROP TRIGGER history_no_update",
            "DROP TRIGGER history_no_delete",
        ] {
            sqlx::query(sql).execute(self.pool()).await?;
        }
        Ok(())
    }

    async fn tamper(&self, sql: &'static str, case_id: &str) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(sql).bind(case_id).execute(self.pool()).await?;
        Ok(done.rows_affected())
    }

    async fn run_sql(&self, sql: String) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    async fn migrate_to(&self, version: i64) -> Result<(), StoreError> {
        SqliteStore::migrate_to(self, version).await
    }

    async fn broken_references(&self) -> Result<u64, sqlx::Error> {
        let rows = sqlx::query("PRAGMA foreign_key_check")
            .fetch_all(self.pool())
            .await?;
        Ok(rows.len() as u64)
    }
}

impl Tamper for PgStore {
    async fn read_texts(
        &self,
        sql: &'static str,
        case_id: &str,
    ) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(sql)
            .bind(case_id)
            .fetch_all(self.pool())
            .await
    }

    async fn allow_tampering(&self) -> Result<(), sqlx::Error> {
        sqlx::query("ALTER TABLE history DISABLE TRIGGER USER")
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn tamper(&self, sql: &'static str, case_id: &str) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(sql).bind(case_id).execute(self.pool()).await?;
        Ok(done.rows_affected())
    }

    async fn run_sql(&self, sql: String) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    async fn migrate_to(&self, version: i64) -> Result<(), StoreError> {
        PgStore::migrate_to(self, version).await
    }

    /// PostgreSQL checks every reference as it is written.
    async fn broken_references(&self) -> Result<u64, sqlx::Error> {
        Ok(0)
    }
}

async fn deployed<S: Store>(store: &S) -> DefinitionRecord {
    store
        .deploy("residence-permit", 1, "hash-1", "source v1", t0())
        .await
        .expect("deploy")
}

/// Starts a case with the engine and stores its first decision.
async fn started<S: Store>(
    store: &S,
    case_id: &str,
    through_agent: bool,
    now: DateTime<Utc>,
) -> Decision {
    let definition = deployed(store).await;
    let decision = engine::start(ctx(now), case_id, input(through_agent)).expect("start");
    store
        .insert_case(definition.id, &decision, "test:operator", now)
        .await
        .expect("insert the case");
    decision
}

/// Applies `command` with the engine under the case's lock.
async fn apply<S: Store>(
    store: &S,
    case_id: &str,
    command: Command,
    now: DateTime<Utc>,
) -> Result<Updated, StoreError> {
    store
        .update_case(case_id, Lock::Wait, "test:actor", now, |record| {
            engine::decide(ctx(now), &record.state, command)
        })
        .await
}

fn complete(attempt_id: &str, outcome: &str) -> Command {
    Command::Complete {
        attempt_id: attempt_id.to_owned(),
        outcome: Outcome::succeeded(outcome),
    }
}

/// The outbox ids of the jobs waiting, oldest first.
async fn waiting_ids<S: Store>(store: &S) -> Vec<i64> {
    store
        .waiting(10)
        .await
        .expect("waiting")
        .into_iter()
        .map(|w| w.id)
        .collect()
}

/// The one job a decision enqueues.
fn job(decision: &Decision) -> &Job {
    let jobs: Vec<&Job> = decision
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Enqueue(job) => Some(job),
            _ => None,
        })
        .collect();
    assert_eq!(jobs.len(), 1, "{:?}", decision.effects);
    jobs[0]
}

fn written(updated: Updated) -> Decision {
    match updated {
        Updated::Written(decision) => decision,
        other => panic!("expected a written decision, got {other:?}"),
    }
}

async fn kinds<S: Store>(store: &S, case_id: &str) -> Vec<&'static str> {
    store
        .history(case_id)
        .await
        .expect("history")
        .iter()
        .map(|r| r.event.kind())
        .collect()
}

async fn state<S: Store>(store: &S, case_id: &str) -> engine::CaseState {
    store
        .case(case_id)
        .await
        .expect("read")
        .expect("a case")
        .state
}

/// The case's rows in `timers`, as (id, due), sorted.
async fn timer_rows<S: Store>(store: &S, case_id: &str) -> Vec<(String, DateTime<Utc>)> {
    let mut rows: Vec<_> = store
        .due_timers(far(), 10_000)
        .await
        .expect("timers")
        .into_iter()
        .filter(|t| t.case_id == case_id)
        .map(|t| (t.id, t.due))
        .collect();
    rows.sort();
    rows
}

async fn assert_timers_follow_state<S: Store>(store: &S, case_id: &str) {
    let expected: Vec<_> = state(store, case_id)
        .await
        .timers
        .values()
        .map(|t| (t.id.clone(), t.due))
        .collect();
    assert_eq!(
        timer_rows(store, case_id).await,
        expected,
        "timers of {case_id}"
    );
}

mod audit;
mod batches;
mod materials;
mod privacy;
mod schedules;
mod specific;
mod suite;

use audit::*;
use batches::*;
use materials::*;
use privacy::*;
use schedules::*;
use specific::*;
use suite::*;

// --- runners ----------------------------------------------------------------

/// Runs each suite function on both stores.
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test]
                async fn $test() {
                    let store = SqliteStore::in_memory().await.expect("open");
                    store.migrate().await.expect("migrate");
                    super::$test(&store).await;
                }
            )*

            #[tokio::test]
            async fn an_existing_database_is_upgraded_in_place() {
                let store = SqliteStore::in_memory().await.expect("open");
                super::an_existing_database_is_upgraded_in_place(&store).await;
            }

            #[tokio::test]
            async fn a_database_file_is_created_and_kept() {
                let dir = std::env::temp_dir()
                    .join(format!("docket-store-{}", std::process::id()));
                std::fs::create_dir_all(&dir).expect("a temporary directory");
                super::a_database_file_is_created_and_kept(&dir).await;
                std::fs::remove_dir_all(&dir).expect("clean up");
            }
        }

        mod postgres {
            use super::*;
            $(
                #[sqlx::test(migrations = false)]
                async fn $test(pool: sqlx::PgPool) {
                    let store = PgStore::new(pool).with_data_keys(DataKeys::ephemeral());
                    store.migrate().await.expect("migrate");
                    super::$test(&store).await;
                }
            )*

            #[sqlx::test(migrations = false)]
            async fn an_existing_database_is_upgraded_in_place(pool: sqlx::PgPool) {
                let store = PgStore::new(pool).with_data_keys(DataKeys::ephemeral());
                super::an_existing_database_is_upgraded_in_place(&store).await;
            }

            #[sqlx::test(migrations = false)]
            async fn updates_of_one_case_wait_for_each_other(pool: sqlx::PgPool) {
                let store = PgStore::new(pool).with_data_keys(DataKeys::ephemeral());
                store.migrate().await.expect("migrate");
                super::updates_of_one_case_wait_for_each_other(&store).await;
            }

            #[sqlx::test(migrations = false)]
            async fn batches_sharing_cases_do_not_deadlock(pool: sqlx::PgPool) {
                let store = PgStore::new(pool).with_data_keys(DataKeys::ephemeral());
                store.migrate().await.expect("migrate");
                super::batches_sharing_cases_do_not_deadlock(&store).await;
            }

            #[sqlx::test(migrations = false)]
            async fn a_batch_skips_a_case_another_process_holds(pool: sqlx::PgPool) {
                let store = PgStore::new(pool).with_data_keys(DataKeys::ephemeral());
                store.migrate().await.expect("migrate");
                super::a_batch_skips_a_case_another_process_holds(&store).await;
            }

            #[sqlx::test(migrations = false)]
            async fn skip_locked_reports_busy(pool: sqlx::PgPool) {
                let store = PgStore::new(pool).with_data_keys(DataKeys::ephemeral());
                store.migrate().await.expect("migrate");
                super::skip_locked_reports_busy(&store).await;
            }

            #[sqlx::test(migrations = false)]
            async fn claims_waiting_on_one_tick_resolve_to_one(pool: sqlx::PgPool) {
                let store = PgStore::new(pool).with_data_keys(DataKeys::ephemeral());
                store.migrate().await.expect("migrate");
                super::claims_waiting_on_one_tick_resolve_to_one(&store).await;
            }
        }
    };
}

conformance!(
    migrations_run_twice_harmlessly,
    deploy_is_idempotent_by_hash,
    insert_case_writes_history_jobs_and_timers,
    a_completion_continues_the_history_and_enqueues_the_next_job,
    a_rejected_command_writes_nothing,
    a_noop_decision_writes_nothing,
    a_duplicate_completion_is_recorded_once,
    the_timers_table_follows_the_state,
    due_timers_come_earliest_first,
    jobs_go_out_and_come_back,
    jobs_are_claimed_together,
    corrupt_rows_are_reported_not_panicked,
    cases_are_listed_newest_first,
    concurrent_completions_apply_once,
    cases_updated_together_get_a_result_each,
    a_batch_settles_all_its_attempts,
    schedules_follow_the_latest_definition,
    a_tick_is_claimed_once,
    concurrent_claims_of_one_tick_fire_once,
    a_firings_message_goes_out_and_comes_back,
    a_sweep_reads_the_active_cases_of_its_workflow,
    history_verifies_and_each_tampering_is_named,
    materials_are_kept_once_per_content,
    an_upload_is_in_the_verified_history,
    personal_data_is_sealed_at_rest,
    erasing_a_case_keeps_its_history_verifiable,
);
