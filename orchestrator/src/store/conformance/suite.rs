//! The suite every store passes, one generic function per property.

use super::*;

pub(crate) async fn migrations_run_twice_harmlessly<S: Tamper>(store: &S) {
    store.migrate().await.expect("the second run");
    store.migrate().await.expect("the third run");
    started(store, "case-m", false, t0()).await;
    assert_eq!(kinds(store, "case-m").await.first(), Some(&"case_started"));
}

pub(crate) async fn deploy_is_idempotent_by_hash<S: Tamper>(store: &S) {
    assert_eq!(
        store
            .latest_definition("residence-permit")
            .await
            .expect("read"),
        None
    );
    let first = deployed(store).await;
    assert_eq!((first.version, first.hash.as_str()), (1, "hash-1"));
    assert_eq!(first.deployed_at, t0());

    let again = store
        .deploy(
            "residence-permit",
            1,
            "hash-1",
            "source v1",
            t0() + Duration::hours(1),
        )
        .await
        .expect("the same content again");
    assert_eq!(
        again, first,
        "the existing record, first deployment time kept"
    );

    let conflict = store
        .deploy("residence-permit", 1, "hash-other", "source v1'", t0())
        .await;
    assert!(
        matches!(&conflict, Err(StoreError::VersionConflict { name, version: 1 }) if name == "residence-permit"),
        "{conflict:?}"
    );

    let second = store
        .deploy("residence-permit", 2, "hash-2", "source v2", t0())
        .await
        .expect("version 2");
    assert_ne!(second.id, first.id);
    store
        .deploy("other", 7, "hash-o", "other", t0())
        .await
        .expect("another workflow");

    let latest = store
        .latest_definition("residence-permit")
        .await
        .expect("read");
    assert_eq!(latest.as_ref(), Some(&second));
    assert_eq!(store.definition(first.id).await.expect("read"), Some(first));
    assert_eq!(store.definition(-1).await.expect("read"), None);
    assert_eq!(
        store.latest_definition("nothing").await.expect("read"),
        None
    );
}

pub(crate) async fn insert_case_writes_history_jobs_and_timers<S: Tamper>(store: &S) {
    let decision = started(store, "case-1", true, t0()).await;
    let definition = deployed(store).await;

    let record = store.case("case-1").await.expect("read").expect("the case");
    assert_eq!(record.definition_id, definition.id);
    assert_eq!(record.state, decision.state);
    assert_eq!(
        store.case_definition("case-1").await.expect("read"),
        Some(definition.id)
    );
    assert_eq!(
        store.case_definition("no-such-case").await.expect("read"),
        None
    );

    let history = store.history("case-1").await.expect("history");
    let seqs: Vec<i64> = history.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (1..=decision.history.len() as i64).collect::<Vec<_>>()
    );
    let events: Vec<_> = history.iter().map(|r| r.event.clone()).collect();
    assert_eq!(events, decision.history);
    assert!(
        history
            .iter()
            .all(|r| r.actor == "test:operator" && r.at == t0() && r.case_id == "case-1")
    );

    let job = job(&decision);
    let waiting = store.waiting_jobs(None, 10).await.expect("waiting");
    assert_eq!(waiting.len(), 1);
    assert_eq!(&waiting[0].job, job);
    assert_eq!(waiting[0].created_at, t0());
    assert_eq!(
        store
            .waiting_jobs(Some(&job.queue), 10)
            .await
            .expect("waiting")
            .len(),
        1
    );
    assert!(
        store
            .waiting_jobs(Some("notify"), 10)
            .await
            .expect("waiting")
            .is_empty()
    );

    assert_eq!(decision.state.timers.len(), 1, "the attempt's timeout");
    assert_timers_follow_state(store, "case-1").await;

    let listed = store.cases(&CaseFilter::default()).await.expect("list");
    assert_eq!(listed.len(), 1);
    let summary = &listed[0];
    assert_eq!(
        (
            summary.id.as_str(),
            summary.workflow.as_str(),
            summary.version
        ),
        ("case-1", "residence-permit", 1)
    );
    assert_eq!(
        (
            summary.status.as_str(),
            summary.outcome.as_deref(),
            summary.step.as_str()
        ),
        ("active", None, "verify_identity")
    );
    assert_eq!((summary.created_at, summary.updated_at), (t0(), t0()));

    let again = store
        .insert_case(definition.id, &decision, "test:operator", t0())
        .await;
    assert!(matches!(again, Err(StoreError::Database(_))), "{again:?}");
}

pub(crate) async fn a_completion_continues_the_history_and_enqueues_the_next_job<S: Tamper>(
    store: &S,
) {
    let first = started(store, "case-1", true, t0()).await;
    let first_job = job(&first).clone();
    let waiting = store.waiting_jobs(None, 10).await.expect("waiting");
    store
        .mark_dispatched(waiting[0].id, t0())
        .await
        .expect("dispatch");
    assert_eq!(
        store
            .dispatched_unfinished(&first_job.queue)
            .await
            .expect("count"),
        1
    );

    let now = t0() + Duration::minutes(1);
    let decision = written(
        apply(
            store,
            "case-1",
            complete(&first_job.attempt_id, "verified"),
            now,
        )
        .await
        .expect("complete"),
    );
    let next_job = job(&decision).clone();
    assert_eq!(next_job.step, "verify_agent");

    let history = store.history("case-1").await.expect("history");
    let seqs: Vec<i64> = history.iter().map(|r| r.seq).collect();
    let total = (first.history.len() + decision.history.len()) as i64;
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>(), "numbering continues");
    let appended = &history[first.history.len()..];
    assert!(
        appended
            .iter()
            .all(|r| r.actor == "test:actor" && r.at == now)
    );
    assert_eq!(appended[0].event.kind(), "attempt_succeeded");
    assert_eq!(
        appended.last().map(|r| r.event.kind()),
        Some("attempt_scheduled")
    );

    assert_eq!(state(store, "case-1").await, decision.state);
    assert_eq!(
        store
            .dispatched_unfinished(&first_job.queue)
            .await
            .expect("count"),
        0,
        "the first attempt is finished"
    );
    assert_eq!(store.requeue_unfinished().await.expect("requeue"), 0);
    let waiting = store.waiting_jobs(None, 10).await.expect("waiting");
    let waiting: Vec<&Job> = waiting.iter().map(|r| &r.job).collect();
    assert_eq!(waiting, [&next_job]);
    assert_timers_follow_state(store, "case-1").await;
}

pub(crate) async fn a_rejected_command_writes_nothing<S: Tamper>(store: &S) {
    started(store, "case-1", false, t0()).await;
    let before = (
        store.history("case-1").await.expect("history"),
        state(store, "case-1").await,
    );
    let signal = Command::Signal {
        event: "address_bound".into(),
        data: json!({"address": "x"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    };
    let refused = apply(store, "case-1", signal, t0() + Duration::minutes(1)).await;
    assert!(
        matches!(
            refused,
            Err(StoreError::Rejected(Rejection::NotWaitingFor { .. }))
        ),
        "{refused:?}"
    );
    let after = (
        store.history("case-1").await.expect("history"),
        state(store, "case-1").await,
    );
    assert_eq!(after, before);
    assert_eq!(
        store.waiting_jobs(None, 10).await.expect("waiting").len(),
        1
    );

    let unknown = apply(
        store,
        "no-such-case",
        Command::Cancel { reason: "x".into() },
        t0(),
    )
    .await;
    assert!(
        matches!(&unknown, Err(StoreError::UnknownCase(id)) if id == "no-such-case"),
        "{unknown:?}"
    );
}

pub(crate) async fn a_noop_decision_writes_nothing<S: Tamper>(store: &S) {
    started(store, "case-1", false, t0()).await;
    let before = (
        store.history("case-1").await.expect("history"),
        state(store, "case-1").await,
    );
    let fire = Command::FireTimer {
        timer_id: "case-1:not-a-timer".into(),
    };
    let updated = apply(store, "case-1", fire, t0() + Duration::minutes(1))
        .await
        .expect("fire");
    assert_eq!(updated, Updated::Unchanged);
    let after = (
        store.history("case-1").await.expect("history"),
        state(store, "case-1").await,
    );
    assert_eq!(after, before);
    assert_timers_follow_state(store, "case-1").await;

    // Without history or effects a decision may still change the state — a
    // stale timer that fired is gone from it — and that is written.
    let updated = store
        .update_case("case-1", Lock::Wait, "test:actor", t0(), |record| {
            let mut state = record.state.clone();
            state.timers.clear();
            Ok(Decision {
                state,
                history: Vec::new(),
                effects: Vec::new(),
            })
        })
        .await
        .expect("update");
    assert!(matches!(updated, Updated::Written(_)), "{updated:?}");
    assert!(state(store, "case-1").await.timers.is_empty());
    assert!(timer_rows(store, "case-1").await.is_empty());
    assert_eq!(store.history("case-1").await.expect("history"), before.0);
}

pub(crate) async fn a_duplicate_completion_is_recorded_once<S: Tamper>(store: &S) {
    let first = started(store, "case-1", true, t0()).await;
    let attempt_id = job(&first).attempt_id.clone();
    let now = t0() + Duration::minutes(1);
    written(
        apply(store, "case-1", complete(&attempt_id, "verified"), now)
            .await
            .expect("complete"),
    );
    let jobs_before = store.waiting_jobs(None, 10).await.expect("waiting");

    let duplicate = written(
        apply(store, "case-1", complete(&attempt_id, "verified"), now)
            .await
            .expect("duplicate"),
    );
    assert!(duplicate.effects.is_empty(), "{:?}", duplicate.effects);
    let kinds = kinds(store, "case-1").await;
    assert_eq!(
        kinds.iter().filter(|k| **k == "attempt_succeeded").count(),
        1
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "completion_ignored").count(),
        1
    );
    assert_eq!(kinds.last(), Some(&"completion_ignored"));
    assert_eq!(
        store.waiting_jobs(None, 10).await.expect("waiting"),
        jobs_before
    );
    assert!(
        jobs_before.iter().all(|r| r.job.attempt_id != attempt_id),
        "not enqueued again"
    );
}

pub(crate) async fn the_timers_table_follows_the_state<S: Tamper>(store: &S) {
    let first = started(store, "case-1", false, t0()).await;
    assert_timers_follow_state(store, "case-1").await;

    // The completion cancels the attempt's timeout and the wait sets its own.
    let now = t0() + Duration::minutes(1);
    let attempt_id = job(&first).attempt_id.clone();
    written(
        apply(store, "case-1", complete(&attempt_id, "verified"), now)
            .await
            .expect("complete"),
    );
    let waiting = state(store, "case-1").await;
    assert_eq!(waiting.step, "await_address");
    assert_eq!(waiting.timers.len(), 1, "{:?}", waiting.timers);
    assert_timers_follow_state(store, "case-1").await;

    // Firing the wait's timeout removes it from the state without a
    // CancelTimer effect; the table follows.
    let wait_timeout = waiting.timers.values().next().expect("a timer").clone();
    let due = store.due_timers(wait_timeout.due, 10).await.expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].id.as_str(), due[0].case_id.as_str()),
        (wait_timeout.id.as_str(), "case-1")
    );
    let fired = written(
        apply(
            store,
            "case-1",
            Command::FireTimer {
                timer_id: due[0].id.clone(),
            },
            wait_timeout.due,
        )
        .await
        .expect("fire"),
    );
    assert!(fired.history.iter().any(|e| e.kind() == "wait_timed_out"));
    assert_timers_follow_state(store, "case-1").await;
    let summary = store.cases(&CaseFilter::default()).await.expect("list");
    assert_eq!(
        (summary[0].status.as_str(), summary[0].outcome.as_deref()),
        ("completed", Some("abandoned"))
    );

    // Cancelling a case leaves it no timers.
    started(store, "case-2", false, t0()).await;
    assert_eq!(timer_rows(store, "case-2").await.len(), 1);
    written(
        apply(
            store,
            "case-2",
            Command::Cancel {
                reason: "test".into(),
            },
            now,
        )
        .await
        .expect("cancel"),
    );
    // Its step's timers are gone; the end of its retention is set.
    let left: Vec<engine::TimerKind> = state(store, "case-2")
        .await
        .timers
        .into_values()
        .map(|t| t.kind)
        .collect();
    assert_eq!(left, [engine::TimerKind::Retention]);
    assert_timers_follow_state(store, "case-2").await;
    assert_eq!(
        store.next_timer().await.expect("next"),
        Some(now + Duration::days(1826) + Duration::hours(6))
    );
}

pub(crate) async fn due_timers_come_earliest_first<S: Tamper>(store: &S) {
    assert_eq!(store.next_timer().await.expect("next"), None);
    assert!(store.due_timers(far(), 10).await.expect("due").is_empty());
    // Inserted out of order; each has its attempt's timeout 2 minutes on.
    for (case, minutes) in [("case-b", 20), ("case-a", 10), ("case-c", 30)] {
        started(store, case, false, t0() + Duration::minutes(minutes)).await;
    }
    let timeout = Duration::minutes(2);
    assert_eq!(
        store.next_timer().await.expect("next"),
        Some(t0() + Duration::minutes(10) + timeout)
    );
    let due = store.due_timers(far(), 10).await.expect("due");
    let cases: Vec<&str> = due.iter().map(|t| t.case_id.as_str()).collect();
    assert_eq!(cases, ["case-a", "case-b", "case-c"]);
    let dues: Vec<DateTime<Utc>> = due.iter().map(|t| t.due).collect();
    assert_eq!(
        dues,
        [10, 20, 30].map(|m| t0() + Duration::minutes(m) + timeout)
    );
    let by_then = store
        .due_timers(t0() + Duration::minutes(20) + timeout, 10)
        .await
        .expect("due");
    assert_eq!(by_then.len(), 2, "due exactly at `now` counts");
    assert_eq!(
        store.due_timers(far(), 1).await.expect("due")[0].case_id,
        "case-a"
    );
    assert!(store.due_timers(t0(), 10).await.expect("due").is_empty());
}

pub(crate) async fn jobs_go_out_and_come_back<S: Tamper>(store: &S) {
    let a = started(store, "case-a", false, t0()).await;
    let b = started(store, "case-b", false, t0()).await;
    let (job_a, job_b) = (job(&a).clone(), job(&b).clone());
    let queue = job_a.queue.clone();
    let waiting = store.waiting_jobs(None, 10).await.expect("waiting");
    let jobs: Vec<&Job> = waiting.iter().map(|r| &r.job).collect();
    assert_eq!(jobs, [&job_a, &job_b], "oldest first");
    assert_eq!(store.waiting_jobs(None, 1).await.expect("waiting").len(), 1);
    assert_eq!(store.dispatched_unfinished(&queue).await.expect("count"), 0);

    // Dispatched 10 minutes after it was scheduled: its 2-minute timeout
    // counts from dispatch.
    let sent = t0() + Duration::minutes(10);
    let pushed = sent + Duration::minutes(2);
    store
        .mark_dispatched(waiting[0].id, sent)
        .await
        .expect("dispatch");
    let still: Vec<Job> = store
        .waiting_jobs(None, 10)
        .await
        .expect("waiting")
        .into_iter()
        .map(|r| r.job)
        .collect();
    assert_eq!(still, std::slice::from_ref(&job_b));
    assert_eq!(store.dispatched_unfinished(&queue).await.expect("count"), 1);
    assert_eq!(
        store.dispatched_unfinished("notify").await.expect("count"),
        0
    );
    let timeout_id = |case: &Decision| case.state.timers.keys().next().cloned().expect("a timer");
    assert_eq!(
        timer_rows(store, "case-a").await,
        [(timeout_id(&a), pushed)]
    );
    assert_eq!(
        timer_rows(store, "case-b").await,
        [(timeout_id(&b), t0() + Duration::minutes(2))],
        "a job still waiting keeps its timer"
    );

    // A write that leaves the timer alone keeps the pushed due time.
    let stray = written(
        apply(
            store,
            "case-a",
            complete("case-a/verify_identity/1/9", "verified"),
            sent,
        )
        .await
        .expect("a stray completion"),
    );
    assert_eq!(stray.history[0].kind(), "completion_ignored");
    assert_eq!(
        timer_rows(store, "case-a").await,
        [(timeout_id(&a), pushed)]
    );

    // The transport lost its contents: the job comes back.
    assert_eq!(store.requeue_unfinished().await.expect("requeue"), 1);
    assert_eq!(store.requeue_unfinished().await.expect("requeue"), 0);
    assert_eq!(store.dispatched_unfinished(&queue).await.expect("count"), 0);
    let waiting = store.waiting_jobs(None, 10).await.expect("waiting");
    let jobs: Vec<&Job> = waiting.iter().map(|r| &r.job).collect();
    assert_eq!(jobs, [&job_a, &job_b]);

    // Dispatched again, earlier than the pushed due: never moved earlier.
    // A second claim of it (another orchestrator) gets nothing; one given
    // back (the transport refused it) waits again.
    assert!(
        store
            .mark_dispatched(waiting[0].id, t0())
            .await
            .expect("dispatch")
    );
    assert!(
        !store
            .mark_dispatched(waiting[0].id, t0())
            .await
            .expect("again")
    );
    store
        .release_dispatch(waiting[1].id)
        .await
        .expect("release");
    assert!(store.mark_dispatched(waiting[1].id, t0()).await.expect("b"));
    store
        .release_dispatch(waiting[1].id)
        .await
        .expect("release");
    assert_eq!(store.dispatched_unfinished(&queue).await.expect("count"), 1);
    assert_eq!(
        store.waiting_jobs(None, 10).await.expect("waiting").len(),
        1
    );
    assert_eq!(
        timer_rows(store, "case-a").await,
        [(timeout_id(&a), pushed)]
    );

    // A finished attempt is neither outstanding nor requeued; a waiting job
    // whose attempt settled is withdrawn.
    let now = t0() + Duration::minutes(11);
    written(
        apply(
            store,
            "case-a",
            complete(&job_a.attempt_id, "verified"),
            now,
        )
        .await
        .expect("complete"),
    );
    written(
        apply(
            store,
            "case-b",
            Command::Cancel {
                reason: "test".into(),
            },
            now,
        )
        .await
        .expect("cancel"),
    );
    assert_eq!(store.dispatched_unfinished(&queue).await.expect("count"), 0);
    assert_eq!(store.requeue_unfinished().await.expect("requeue"), 0);
    assert!(
        store
            .waiting_jobs(None, 10)
            .await
            .expect("waiting")
            .is_empty()
    );
    assert!(
        !store
            .mark_dispatched(waiting[1].id, now)
            .await
            .expect("a withdrawn job")
    );
    assert!(!store.mark_dispatched(-1, now).await.expect("no such job"));
}

pub(crate) async fn jobs_are_claimed_together<S: Tamper>(store: &S) {
    let cases = ["case-a", "case-b", "case-c"];
    let mut decisions = Vec::new();
    for case in cases {
        decisions.push(started(store, case, false, t0()).await);
    }
    let queue = job(&decisions[0]).queue.clone();
    let waiting = store.waiting_jobs(None, 10).await.expect("waiting");
    let ids: Vec<i64> = waiting.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 3);
    // case-c's job is withdrawn (the case cancelled) before the claim, and
    // case-b's is claimed first by another orchestrator.
    written(
        apply(
            store,
            "case-c",
            Command::Cancel {
                reason: "test".into(),
            },
            t0(),
        )
        .await
        .expect("cancel"),
    );
    let sent = t0() + Duration::minutes(10);
    assert!(store.mark_dispatched(ids[1], sent).await.expect("b"));
    assert_eq!(waiting_ids(store).await, [ids[0]]);
    let claimed = store
        .claim_jobs(&[ids[0], ids[1], ids[2], -1], sent)
        .await
        .expect("claim");
    let claimed: Vec<(i64, &Job)> = claimed.iter().map(|r| (r.id, &r.job)).collect();
    assert_eq!(
        claimed,
        [(ids[0], job(&decisions[0]))],
        "only the job still waiting, its parameters opened"
    );
    assert_eq!(store.dispatched_unfinished(&queue).await.expect("count"), 2);
    let timeout = Duration::minutes(2);
    for case in ["case-a", "case-b"] {
        let due: Vec<DateTime<Utc>> = timer_rows(store, case)
            .await
            .into_iter()
            .map(|(_, due)| due)
            .collect();
        assert_eq!(
            due,
            [sent + timeout],
            "{case}'s timeout counts from dispatch"
        );
    }
    assert!(
        store
            .claim_jobs(&ids, sent)
            .await
            .expect("again")
            .is_empty()
    );
    assert!(store.claim_jobs(&[], sent).await.expect("none").is_empty());

    // Given back together, both wait again.
    store.release_jobs(&ids[..2]).await.expect("release");
    assert_eq!(store.dispatched_unfinished(&queue).await.expect("count"), 0);
    let again: Vec<i64> = store
        .waiting_jobs(None, 10)
        .await
        .expect("waiting")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(again, ids[..2]);
}

pub(crate) async fn corrupt_rows_are_reported_not_panicked<S: Tamper>(store: &S) {
    // A state that does not decode.
    started(store, "case-s", false, t0()).await;
    store
        .tamper(
            "UPDATE cases SET state = '{\"id\": 7}' WHERE id = $1",
            "case-s",
        )
        .await
        .expect("tamper");
    let read = store.case("case-s").await;
    assert!(
        matches!(&read, Err(StoreError::Corrupt { what, .. }) if what == "state of case case-s"),
        "{read:?}"
    );
    let update = apply(
        store,
        "case-s",
        Command::Cancel { reason: "x".into() },
        t0(),
    )
    .await;
    assert!(
        matches!(update, Err(StoreError::Corrupt { .. })),
        "{update:?}"
    );

    // A history event that does not decode.
    started(store, "case-h", false, t0()).await;
    store
        .tamper(
            "INSERT INTO history (case_id, seq, at, actor, kind, payload) VALUES \
             ($1, 99, '2026-03-02T01:00:00+00:00', 'test:tamper', 'nonsense', '{\"type\": \"nonsense\"}')",
            "case-h",
        )
        .await
        .expect("tamper");
    let history = store.history("case-h").await;
    assert!(
        matches!(&history, Err(StoreError::Corrupt { what, .. }) if what == "history event case-h#99"),
        "{history:?}"
    );

    // History is append-only.
    let changed = store
        .tamper(
            "UPDATE history SET actor = 'someone else' WHERE case_id = $1",
            "case-h",
        )
        .await;
    assert!(changed.is_err(), "{changed:?}");
    let deleted = store
        .tamper("DELETE FROM history WHERE case_id = $1", "case-h")
        .await;
    assert!(deleted.is_err(), "{deleted:?}");

    // A job that does not decode is skipped, not fatal to the others.
    started(store, "case-j", false, t0()).await;
    let bad = store.waiting_jobs(None, 10).await.expect("waiting");
    let bad = bad
        .iter()
        .find(|r| r.job.case_id == "case-j")
        .expect("the job")
        .id;
    store
        .tamper(
            "UPDATE outbox SET job = '{\"version\": \"one\"}' WHERE attempt_id LIKE $1 || '/%'",
            "case-j",
        )
        .await
        .expect("tamper");
    let waiting = store.waiting_jobs(None, 10).await.expect("waiting");
    let cases: Vec<&str> = waiting.iter().map(|r| r.job.case_id.as_str()).collect();
    assert_eq!(cases, ["case-s", "case-h"]);
    // Nor is it claimed: it stays in the outbox for an operator.
    let claimed = store.claim_jobs(&[bad], t0()).await.expect("claim");
    assert!(claimed.is_empty(), "{claimed:?}");
    let still = waiting_ids(store).await;
    assert!(still.contains(&bad), "{still:?}");
    let attempt = store
        .read_texts("SELECT status FROM attempts WHERE case_id = $1", "case-j")
        .await
        .expect("read");
    assert_eq!(attempt, ["scheduled"], "its attempt is not marked out");
}

pub(crate) async fn cases_are_listed_newest_first<S: Tamper>(store: &S) {
    let mut first = None;
    for (i, case) in ["case-1", "case-2", "case-3"].into_iter().enumerate() {
        let decision = started(store, case, false, t0() + Duration::minutes(i as i64)).await;
        first.get_or_insert(decision);
    }
    let later = t0() + Duration::hours(1);
    let attempt_id = first
        .as_ref()
        .map(|d| job(d).attempt_id.clone())
        .expect("case-1");
    written(
        apply(store, "case-1", complete(&attempt_id, "verified"), later)
            .await
            .expect("complete"),
    );
    written(
        apply(
            store,
            "case-2",
            Command::Cancel {
                reason: "test".into(),
            },
            later,
        )
        .await
        .expect("cancel"),
    );

    let ids =
        |list: Vec<crate::store::CaseSummary>| list.into_iter().map(|c| c.id).collect::<Vec<_>>();
    let all = store.cases(&CaseFilter::default()).await.expect("list");
    assert_eq!(all[1].updated_at, later);
    assert_eq!(all[1].created_at, t0() + Duration::minutes(1));
    assert_eq!(ids(all), ["case-3", "case-2", "case-1"]);
    let filter =
        |status: Option<&str>, step: Option<&str>, workflow: Option<&str>, limit| CaseFilter {
            workflow: workflow.map(str::to_owned),
            status: status.map(str::to_owned),
            step: step.map(str::to_owned),
            limit,
        };
    let list = |f: CaseFilter| async move { ids(store.cases(&f).await.expect("list")) };
    assert_eq!(
        list(filter(Some("active"), None, None, None)).await,
        ["case-3", "case-1"]
    );
    assert_eq!(
        list(filter(Some("cancelled"), None, None, None)).await,
        ["case-2"]
    );
    assert_eq!(
        list(filter(None, Some("await_address"), None, None)).await,
        ["case-1"]
    );
    assert_eq!(
        list(filter(None, Some("verify_identity"), None, None)).await,
        ["case-3", "case-2"]
    );
    assert_eq!(
        list(filter(
            Some("active"),
            Some("verify_identity"),
            Some("residence-permit"),
            None
        ))
        .await,
        ["case-3"]
    );
    assert_eq!(
        list(filter(None, None, Some("residence-permit"), Some(2))).await,
        ["case-3", "case-2"]
    );
    assert!(
        list(filter(None, None, Some("other"), None))
            .await
            .is_empty()
    );
}

pub(crate) async fn concurrent_completions_apply_once<S: Tamper>(store: &S) {
    let first = started(store, "case-1", true, t0()).await;
    let attempt_id = job(&first).attempt_id.clone();
    let now = t0() + Duration::minutes(1);
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let (store, attempt_id) = (store.clone(), attempt_id.clone());
            tokio::spawn(async move {
                apply(&store, "case-1", complete(&attempt_id, "verified"), now).await
            })
        })
        .collect();
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
    assert_eq!(
        store.waiting_jobs(None, 10).await.expect("waiting").len(),
        1,
        "one next job"
    );
}
