//! Several cases updated together (`Store::update_cases`): what the
//! reports consumer does with reports that arrive at once.

use std::collections::BTreeSet;

use super::*;
use crate::store::CaseRecord;
use crate::store::audit::{AuditStore, verify};

/// A decision of the engine on `command`, as `update_cases` takes it.
fn deciding(
    command: Command,
    now: DateTime<Utc>,
) -> impl FnOnce(&CaseRecord) -> Result<Decision, Rejection> + Send {
    move |record: &CaseRecord| engine::decide(ctx(now), &record.state, command)
}

fn address_bound() -> Command {
    Command::Signal {
        event: "address_bound".into(),
        data: json!({"address": "x"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    }
}

pub(crate) async fn cases_updated_together_get_a_result_each<S: Tamper + AuditStore>(store: &S) {
    let one = started(store, "case-1", true, t0()).await;
    let two = started(store, "case-2", false, t0()).await;
    let three = started(store, "case-3", true, t0()).await;
    let two_before = (
        store.history("case-2").await.expect("history"),
        state(store, "case-2").await,
    );
    let now = t0() + Duration::minutes(1);
    let (one_attempt, three_attempt) = (&job(&one).attempt_id, &job(&three).attempt_id);

    let mut results = store
        .update_cases(
            vec![
                (
                    "case-3".into(),
                    deciding(complete(three_attempt, "verified"), now),
                ),
                // Not waiting for it: rejected, and nothing of case-2 written.
                ("case-2".into(), deciding(address_bound(), now)),
                (
                    "no-such-case".into(),
                    deciding(Command::Cancel { reason: "x".into() }, now),
                ),
                (
                    "case-1".into(),
                    deciding(complete(one_attempt, "verified"), now),
                ),
                // The same report twice: the second is decided on what the
                // first wrote.
                (
                    "case-1".into(),
                    deciding(complete(one_attempt, "verified"), now),
                ),
            ],
            Lock::Wait,
            "test:actor",
            now,
        )
        .await
        .expect("the batch")
        .into_iter();
    let mut next = || results.next().expect("a result per case");
    let three_decision = written(next().expect("case-3"));
    let refused = next();
    assert!(
        matches!(
            refused,
            Err(StoreError::Rejected(Rejection::NotWaitingFor { .. }))
        ),
        "{refused:?}"
    );
    let unknown = next();
    assert!(
        matches!(&unknown, Err(StoreError::UnknownCase(id)) if id == "no-such-case"),
        "{unknown:?}"
    );
    let one_decision = written(next().expect("case-1"));
    let one_again = written(next().expect("case-1 again"));
    assert!(results.next().is_none());

    assert_eq!(state(store, "case-3").await, three_decision.state);
    assert_eq!(state(store, "case-1").await, one_again.state);
    let history = store.history("case-3").await.expect("history");
    let seqs: Vec<i64> = history.iter().map(|r| r.seq).collect();
    let total = (three.history.len() + three_decision.history.len()) as i64;
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>(), "numbering continues");
    assert!(
        history[three.history.len()..]
            .iter()
            .all(|r| r.actor == "test:actor" && r.at == now)
    );
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
    let two_after = (
        store.history("case-2").await.expect("history"),
        state(store, "case-2").await,
    );
    assert_eq!(two_after, two_before);

    let waiting: BTreeSet<String> = store
        .waiting_jobs(None, 10)
        .await
        .expect("waiting")
        .into_iter()
        .map(|r| r.job.attempt_id)
        .collect();
    let expected: BTreeSet<String> = [&one_decision, &three_decision, &two]
        .into_iter()
        .map(|d| job(d).attempt_id.clone())
        .collect();
    assert_eq!(
        waiting, expected,
        "each case's next job, and case-2's first"
    );
    for case_id in ["case-1", "case-2", "case-3"] {
        assert_timers_follow_state(store, case_id).await;
    }
    assert_eq!(verify(store, None).await.expect("verify"), vec![]);
}

/// A batch that settles many attempts at once (more than PostgreSQL
/// finishes one statement each): every attempt is finished, whether its
/// job was out or still waiting, and every waiting job is withdrawn.
pub(crate) async fn a_batch_settles_all_its_attempts<S: Store>(store: &S) {
    let ids: Vec<String> = (1..=10).map(|n| format!("case-{n:02}")).collect();
    let mut queue = String::new();
    for case_id in &ids {
        queue = job(&started(store, case_id, true, t0()).await)
            .queue
            .clone();
    }
    let sent = t0() + Duration::seconds(1);
    let waiting = waiting_ids(store).await;
    assert_eq!(waiting.len(), 10);
    let out = store
        .claim_jobs(&waiting[..5], sent)
        .await
        .expect("claim half");
    assert_eq!(out.len(), 5);

    let now = t0() + Duration::minutes(1);
    let batch = ids
        .iter()
        .map(|case_id| {
            (
                case_id.clone(),
                deciding(Command::Cancel { reason: "x".into() }, now),
            )
        })
        .collect();
    let results = store
        .update_cases(batch, Lock::Wait, "test:actor", now)
        .await
        .expect("the batch");
    for (case_id, result) in ids.iter().zip(results) {
        let kinds = written(result.expect("cancelled")).history;
        assert!(
            kinds.iter().any(|e| e.kind() == "attempt_abandoned"),
            "{case_id}: {kinds:?}"
        );
    }
    assert_eq!(waiting_ids(store).await, Vec::<i64>::new(), "withdrawn");
    assert_eq!(
        store.dispatched_unfinished(&queue).await.expect("count"),
        0,
        "the attempts out are finished"
    );
    assert_eq!(store.requeue_unfinished().await.expect("requeue"), 0);
}

/// PostgreSQL: batches lock their cases in one order, so two that share
/// cases wait for each other rather than deadlock, whatever order each
/// was given its cases in.
pub(crate) async fn batches_sharing_cases_do_not_deadlock(store: &PgStore) {
    let ids = ["case-1", "case-2", "case-3", "case-4"];
    let mut attempts = Vec::new();
    for case_id in ids {
        let first = started(store, case_id, true, t0()).await;
        attempts.push((case_id, job(&first).attempt_id.clone()));
    }
    let now = t0() + Duration::minutes(1);
    let rounds = 10;
    let tasks: Vec<_> = [false, true]
        .into_iter()
        .map(|reversed| {
            let store = store.clone();
            let mut attempts = attempts.clone();
            if reversed {
                attempts.reverse();
            }
            tokio::spawn(async move {
                for _ in 0..rounds {
                    let batch = attempts
                        .iter()
                        .map(|(case_id, attempt)| {
                            (
                                case_id.to_string(),
                                deciding(complete(attempt, "verified"), now),
                            )
                        })
                        .collect();
                    let results = store
                        .update_cases(batch, Lock::Wait, "test:actor", now)
                        .await
                        .expect("no deadlock");
                    assert!(results.iter().all(Result::is_ok), "{results:?}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("the task");
    }
    for case_id in ids {
        let kinds = kinds(store, case_id).await;
        let ignored = kinds.iter().filter(|k| **k == "completion_ignored").count();
        assert_eq!(ignored, 2 * rounds - 1, "{kinds:?}");
    }
    assert_eq!(verify(store, None).await.expect("verify"), vec![]);
}

/// PostgreSQL: a timer sweep's batch skips a case another process holds
/// and changes the others.
pub(crate) async fn a_batch_skips_a_case_another_process_holds(store: &PgStore) {
    let one = started(store, "case-1", true, t0()).await;
    let two = started(store, "case-2", true, t0()).await;
    let holder = hold_row_lock(store, "case-2").await;
    let now = t0() + Duration::minutes(1);
    let results = store
        .update_cases(
            vec![
                (
                    "case-1".into(),
                    deciding(complete(&job(&one).attempt_id, "verified"), now),
                ),
                (
                    "case-2".into(),
                    deciding(complete(&job(&two).attempt_id, "verified"), now),
                ),
                (
                    "no-such-case".into(),
                    deciding(Command::Cancel { reason: "x".into() }, now),
                ),
            ],
            Lock::SkipLocked,
            "test:actor",
            now,
        )
        .await
        .expect("the batch");
    drop(holder);
    let mut results = results.into_iter();
    let mut next = || results.next().expect("a result per case");
    written(next().expect("case-1"));
    assert_eq!(next().expect("case-2"), Updated::Busy);
    let unknown = next();
    assert!(
        matches!(&unknown, Err(StoreError::UnknownCase(id)) if id == "no-such-case"),
        "{unknown:?}"
    );
    let untouched: Vec<&str> = two.history.iter().map(|e| e.kind()).collect();
    assert_eq!(kinds(store, "case-2").await, untouched, "case-2 untouched");
}
