//! Cases changed together: workers' reports that arrive at once
//! (`Orchestrator::complete_all`, what the reports consumer calls) and
//! timers that fall due at once (`Orchestrator::fire_due_timers`). Each
//! case gets its own result, whatever becomes of the others; on SQLite,
//! and on PostgreSQL, whose store writes the cases of a batch in one
//! transaction.
#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use docket::calendar::{self, Calendar};
use docket::engine::{CaseState, Data};
use docket::privacy::DataKeys;
use docket::runtime::clock::{Clock, ManualClock, SequentialIds};
use docket::runtime::definitions::Registry;
use docket::runtime::{Orchestrator, RuntimeError};
use docket::store::postgres::PgStore;
use docket::store::sqlite::SqliteStore;
use docket::store::{Store, Updated};
use docket_workers::contract::Outcome;
use serde_json::json;

fn workflows() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows")
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 1, 0, 0)
        .single()
        .expect("a valid time")
}

fn input() -> Data {
    let input = json!({
        "applicant_name": "林小明",
        "id_number": "11010519491231002X",
        "phone": "13800000000",
        "wechat_openid": "o-applicant",
        "category": "employment",
        "through_agent": false,
    });
    input.as_object().cloned().unwrap_or_default()
}

async fn orchestrator<S: Store>(store: S, clock: Arc<ManualClock>) -> Orchestrator<S> {
    let start = start();
    let calendars: BTreeMap<String, Calendar> = calendar::load_dir(&workflows().join("calendars"))
        .expect("calendars")
        .into_iter()
        .map(|c| (c.name().to_owned(), c))
        .collect();
    let store = Arc::new(store);
    store.migrate().await.expect("migrate");
    let registry = Registry::new(&calendars);
    registry
        .deploy(&*store, &workflows(), start)
        .await
        .expect("deploy");
    Orchestrator {
        store,
        registry,
        calendars,
        contacts: BTreeMap::new(),
        clock: clock as Arc<dyn Clock>,
        ids: Arc::new(SequentialIds::new("together")),
    }
}

async fn reports_together_get_a_result_each<S: Store>(orch: Orchestrator<S>) {
    let cases = started(&orch, 2).await;
    let (one, two) = (&cases[0], &cases[1]);
    let mut first = BTreeMap::new();
    for record in orch.store.waiting_jobs(None, 10).await.expect("jobs") {
        orch.store
            .mark_dispatched(record.id, orch.clock.now())
            .await
            .expect("dispatched");
        let case_id = record
            .job
            .attempt_id
            .split_once('/')
            .expect("an attempt id")
            .0;
        first.insert(case_id.to_owned(), record.job);
    }
    let (one_job, two_job) = (&first[&one.id], &first[&two.id]);
    let verified = || Outcome::succeeded("verified");

    let results = orch
        .complete_all(vec![
            (one_job.attempt_id.clone(), verified()),
            ("not-an-attempt".into(), verified()),
            (two_job.attempt_id.clone(), verified()),
            ("no-such-case/verify/1/1".into(), verified()),
            // Delivered twice: recorded once, the second noted as ignored.
            (one_job.attempt_id.clone(), verified()),
        ])
        .await;

    assert_eq!(results.len(), 5, "{results:?}");
    assert!(
        matches!(results[0], Ok(Updated::Written(_))),
        "{:?}",
        results[0]
    );
    assert!(
        matches!(results[1], Err(RuntimeError::BadAttemptId(_))),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(results[2], Ok(Updated::Written(_))),
        "{:?}",
        results[2]
    );
    assert!(
        matches!(&results[3], Err(RuntimeError::UnknownCase(id)) if id == "no-such-case"),
        "{:?}",
        results[3]
    );
    assert!(
        matches!(results[4], Ok(Updated::Written(_))),
        "{:?}",
        results[4]
    );

    let kinds: Vec<&str> = orch
        .store
        .history(&one.id)
        .await
        .expect("history")
        .iter()
        .map(|r| r.event.kind())
        .collect();
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
    for case in [one, two] {
        let state = orch
            .store
            .case(&case.id)
            .await
            .expect("read")
            .expect("a case")
            .state;
        assert_ne!(
            state.step, case.step,
            "{} moved on from {}",
            case.id, case.step
        );
    }
    let unfinished = orch
        .store
        .dispatched_unfinished(&one_job.queue)
        .await
        .expect("count");
    assert_eq!(unfinished, 0, "both attempts finished");
}

/// More cases with a due timer than go into one transaction, `held` (if
/// any) locked by another process meanwhile: every other case's timer
/// fires, once.
async fn due_timers_fire_together<S: Store>(
    orch: &Orchestrator<S>,
    clock: &ManualClock,
    cases: &[String],
    held: Option<&str>,
) {
    // Each case's first job was never dispatched: its attempt times out.
    clock.advance_to(start() + TimeDelta::hours(1));
    let fired = orch.fire_due_timers(1_000).await.expect("fire");
    assert_eq!(fired, cases.len() - usize::from(held.is_some()));
    for case_id in cases {
        let kinds: Vec<&str> = orch
            .store
            .history(case_id)
            .await
            .expect("history")
            .iter()
            .map(|r| r.event.kind())
            .collect();
        let timed_out = kinds.iter().filter(|k| **k == "attempt_timed_out").count();
        let expected = usize::from(held != Some(case_id.as_str()));
        assert_eq!(timed_out, expected, "{case_id}: {kinds:?}");
    }
}

async fn started<S: Store>(orch: &Orchestrator<S>, n: usize) -> Vec<CaseState> {
    let mut cases = Vec::new();
    for _ in 0..n {
        let case = orch
            .start("residence-permit", input(), "gateway")
            .await
            .expect("start");
        cases.push(case);
    }
    cases
}

#[tokio::test]
async fn sqlite_reports_together_get_a_result_each() {
    let store = SqliteStore::in_memory().await.expect("sqlite");
    let clock = Arc::new(ManualClock::new(start()));
    reports_together_get_a_result_each(orchestrator(store, clock).await).await;
}

#[sqlx::test(migrations = false)]
async fn postgres_reports_together_get_a_result_each(pool: sqlx::PgPool) {
    let store = PgStore::new(pool).with_data_keys(DataKeys::ephemeral());
    let clock = Arc::new(ManualClock::new(start()));
    reports_together_get_a_result_each(orchestrator(store, clock).await).await;
}

#[tokio::test]
async fn sqlite_due_timers_fire_together() {
    let store = SqliteStore::in_memory().await.expect("sqlite");
    let clock = Arc::new(ManualClock::new(start()));
    let orch = orchestrator(store, Arc::clone(&clock)).await;
    let cases: Vec<String> = started(&orch, 20).await.into_iter().map(|c| c.id).collect();
    due_timers_fire_together(&orch, &clock, &cases, None).await;
}

#[sqlx::test(migrations = false)]
async fn postgres_due_timers_fire_together_but_for_a_held_case(pool: sqlx::PgPool) {
    let store = PgStore::new(pool.clone()).with_data_keys(DataKeys::ephemeral());
    let clock = Arc::new(ManualClock::new(start()));
    let orch = orchestrator(store, Arc::clone(&clock)).await;
    let cases: Vec<String> = started(&orch, 20).await.into_iter().map(|c| c.id).collect();
    let mut holder = pool.begin().await.expect("begin");
    sqlx::query("SELECT id FROM cases WHERE id = $1 FOR UPDATE")
        .bind(&cases[5])
        .execute(&mut *holder)
        .await
        .expect("lock");
    due_timers_fire_together(&orch, &clock, &cases, Some(&cases[5])).await;
    holder.rollback().await.expect("release");
    assert_eq!(
        orch.fire_due_timers(1_000).await.expect("fire"),
        1,
        "its turn came"
    );
}
