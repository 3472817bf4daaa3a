//! Schedules in the store: syncing them with the latest definitions,
//! claiming a tick exactly once, and a firing's message going out and
//! coming back through the same outbox as a case's jobs.

use std::time::Duration as StdDuration;

use super::*;
use crate::store::{
    Claim, Claimed, Firing, FiringStatus, FiringUpdate, NewFiring, ScheduleRecord, ScheduleSpec,
};

const WORKFLOW: &str = "residence-permit";
const SCHEDULE: &str = "morning_due_list";

fn spec(id: &str, cron: &str, first_at: DateTime<Utc>) -> ScheduleSpec {
    ScheduleSpec {
        id: id.to_owned(),
        cron: cron.to_owned(),
        timezone: "Asia/Shanghai".to_owned(),
        first_at: Some(first_at),
    }
}

fn morning() -> ScheduleSpec {
    spec(SCHEDULE, "0 0 9 * * *", t0())
}

async fn row<S: Store>(store: &S, id: &str) -> ScheduleRecord {
    store
        .schedules()
        .await
        .expect("schedules")
        .into_iter()
        .find(|r| r.workflow == WORKFLOW && r.schedule == id)
        .expect("the schedule's row")
}

/// The job a firing at `tick` sends, attempt `attempt`.
fn firing_job(tick: DateTime<Utc>, attempt: u32) -> Job {
    let attempt_id = crate::runtime::schedules::attempt_id(WORKFLOW, SCHEDULE, tick, attempt);
    Job {
        version: docket_workers::contract::JOB_VERSION,
        attempt_id,
        case_id: String::new(),
        step: SCHEDULE.to_owned(),
        attempt,
        handler: "notify.email".to_owned(),
        queue: "notify".to_owned(),
        params: json!({"to": "desk@example.test", "subject": "Due", "body": "Case c-1."})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        timeout: StdDuration::from_secs(30),
    }
}

fn sending(tick: DateTime<Utc>) -> NewFiring {
    NewFiring {
        tick_at: tick,
        cases: 1,
        status: FiringStatus::Sending,
        outcome: None,
        job: Some(firing_job(tick, 1)),
        due_at: Some(tick + Duration::seconds(30)),
    }
}

fn claim(expected: DateTime<Utc>, next_at: DateTime<Utc>, firing: Option<NewFiring>) -> Claim {
    Claim {
        workflow: WORKFLOW.to_owned(),
        schedule: SCHEDULE.to_owned(),
        expected,
        next_at: Some(next_at),
        firing,
    }
}

async fn firings<S: Store>(store: &S) -> Vec<Firing> {
    store
        .firings(WORKFLOW, SCHEDULE, 100)
        .await
        .expect("firings")
}

pub(crate) async fn schedules_follow_the_latest_definition<S: Tamper>(store: &S) {
    deployed(store).await;
    store
        .deploy(WORKFLOW, 2, "hash-2", "source v2", t0())
        .await
        .expect("version 2");
    store
        .deploy("other", 1, "hash-o", "other", t0())
        .await
        .expect("another workflow");
    let latest: Vec<(String, u32)> = store
        .latest_definitions()
        .await
        .expect("latest")
        .into_iter()
        .map(|d| (d.name, d.version))
        .collect();
    assert_eq!(latest, [("other".to_owned(), 1), (WORKFLOW.to_owned(), 2)]);

    assert!(store.schedules().await.expect("none yet").is_empty());
    assert_eq!(store.next_schedule_work().await.expect("next"), None);
    let evening = spec("evening", "0 0 18 * * *", t0() + Duration::hours(9));
    store
        .sync_schedules(WORKFLOW, &[morning(), evening.clone()], t0())
        .await
        .expect("sync");
    assert_eq!(row(store, SCHEDULE).await.next_at, Some(t0()));
    assert_eq!(store.next_schedule_work().await.expect("next"), Some(t0()));

    // Synced again later — another start, another replica — an unchanged
    // schedule keeps the tick it was waiting for, even one now past.
    let later = t0() + Duration::days(3);
    let moved = spec(SCHEDULE, "0 0 9 * * *", later);
    store
        .sync_schedules(WORKFLOW, &[moved, evening.clone()], later)
        .await
        .expect("sync");
    assert_eq!(row(store, SCHEDULE).await.next_at, Some(t0()));

    // A changed expression restarts the count.
    let changed = spec(SCHEDULE, "0 30 8 * * *", later + Duration::minutes(30));
    store
        .sync_schedules(WORKFLOW, &[changed, evening.clone()], later)
        .await
        .expect("sync");
    let morning_row = row(store, SCHEDULE).await;
    assert_eq!(morning_row.cron, "0 30 8 * * *");
    assert_eq!(morning_row.next_at, Some(later + Duration::minutes(30)));

    // A schedule the latest version no longer has is retired: never due.
    store
        .sync_schedules(WORKFLOW, std::slice::from_ref(&evening), later)
        .await
        .expect("sync");
    assert_eq!(row(store, SCHEDULE).await.retired_at, Some(later));
    let due = store.due_schedules(far(), 10).await.expect("due");
    let due: Vec<&str> = due.iter().map(|r| r.schedule.as_str()).collect();
    assert_eq!(due, ["evening"]);
    assert_eq!(
        store.next_schedule_work().await.expect("next"),
        evening.first_at
    );
    assert_eq!(
        store
            .claim_schedule(&claim(later + Duration::minutes(30), far(), None), later)
            .await
            .expect("claim"),
        Claimed::Lost,
        "a retired schedule is not claimed"
    );

    // Back in a later version: it starts afresh, not from where it stopped.
    let back = t0() + Duration::days(5);
    store
        .sync_schedules(
            WORKFLOW,
            &[spec(SCHEDULE, "0 30 8 * * *", back), evening],
            back,
        )
        .await
        .expect("sync");
    let morning_row = row(store, SCHEDULE).await;
    assert_eq!(
        (morning_row.next_at, morning_row.retired_at),
        (Some(back), None)
    );
}

pub(crate) async fn a_tick_is_claimed_once<S: Tamper>(store: &S) {
    started(store, "case-1", false, t0()).await;
    store
        .sync_schedules(WORKFLOW, &[morning()], t0())
        .await
        .expect("sync");
    let due = store.due_schedules(t0(), 10).await.expect("due");
    assert_eq!(due.len(), 1, "due exactly at its tick");
    assert!(
        store
            .due_schedules(t0() - Duration::seconds(1), 10)
            .await
            .expect("due")
            .is_empty()
    );

    let now = t0() + Duration::seconds(2);
    let next = t0() + Duration::days(1);
    let won = store
        .claim_schedule(&claim(t0(), next, Some(sending(t0()))), now)
        .await
        .expect("claim");
    let Claimed::Won { firing: Some(id) } = won else {
        panic!("{won:?}")
    };
    assert_eq!(
        store
            .claim_schedule(&claim(t0(), next, Some(sending(t0()))), now)
            .await
            .expect("claim again"),
        Claimed::Lost
    );
    assert_eq!(row(store, SCHEDULE).await.next_at, Some(next));
    assert!(store.due_schedules(now, 10).await.expect("due").is_empty());

    let recorded = firings(store).await;
    assert_eq!(recorded.len(), 1);
    let firing = &recorded[0];
    assert_eq!(firing.id, id);
    assert_eq!((firing.tick_at, firing.fired_at), (t0(), now));
    assert_eq!((firing.cases, firing.status), (1, FiringStatus::Sending));
    assert_eq!(firing.job.as_ref(), Some(&firing_job(t0(), 1)));
    assert_eq!(firing.attempt, 1);
    assert_eq!(firing.finished_at, None);

    // Its message waits in the outbox behind the case's job.
    let waiting = store
        .waiting_jobs(Some("notify"), 10)
        .await
        .expect("waiting");
    let jobs: Vec<&Job> = waiting.iter().map(|r| &r.job).collect();
    assert_eq!(jobs, [&firing_job(t0(), 1)]);
    assert_eq!(
        store
            .firing_of_attempt(&firing_job(t0(), 1).attempt_id)
            .await
            .expect("find"),
        Some(firing.clone())
    );
    assert_eq!(
        store
            .firing_of_attempt("case-1/verify_identity/1/1")
            .await
            .expect("a case's attempt"),
        None
    );

    // A tick on a day off moves the schedule without a firing.
    let after = next + Duration::days(1);
    assert_eq!(
        store
            .claim_schedule(&claim(next, after, None), next)
            .await
            .expect("pass over"),
        Claimed::Won { firing: None }
    );
    // A tick recorded already (the row set back by hand) moves on without
    // a second firing or message.
    store
        .sync_schedules(WORKFLOW, &[spec(SCHEDULE, "0 0 10 * * *", t0())], now)
        .await
        .expect("restart");
    assert_eq!(
        store
            .claim_schedule(&claim(t0(), after, Some(sending(t0()))), now)
            .await
            .expect("claim"),
        Claimed::Won { firing: None }
    );
    assert_eq!(firings(store).await.len(), 1);
    assert_eq!(
        store
            .waiting_jobs(Some("notify"), 10)
            .await
            .expect("waiting")
            .len(),
        1
    );

    // What did nothing is recorded too, finished at once.
    let nothing = NewFiring {
        tick_at: after,
        cases: 0,
        status: FiringStatus::NothingDue,
        outcome: Some("no case due".to_owned()),
        job: None,
        due_at: None,
    };
    let won = store
        .claim_schedule(&claim(after, far(), Some(nothing)), after)
        .await
        .expect("claim");
    assert!(matches!(won, Claimed::Won { firing: Some(_) }), "{won:?}");
    let latest = &firings(store).await[0];
    assert_eq!(
        (latest.status, latest.outcome.as_deref(), latest.attempt),
        (FiringStatus::NothingDue, Some("no case due"), 0)
    );
    assert_eq!(
        (latest.attempt_id.as_deref(), latest.finished_at),
        (None, Some(after))
    );
    assert_eq!(
        store.next_schedule_work().await.expect("next"),
        Some(t0() + Duration::seconds(30)),
        "the first firing's message times out then"
    );
}

pub(crate) async fn concurrent_claims_of_one_tick_fire_once<S: Tamper>(store: &S) {
    store
        .sync_schedules(WORKFLOW, &[morning()], t0())
        .await
        .expect("sync");
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let now = t0() + Duration::milliseconds(i);
                store
                    .claim_schedule(
                        &claim(t0(), t0() + Duration::days(1), Some(sending(t0()))),
                        now,
                    )
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.expect("the task").expect("claim") {
            Claimed::Won { firing: Some(_) } => won += 1,
            Claimed::Lost => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(firings(store).await.len(), 1);
    assert_eq!(
        store.waiting_jobs(None, 10).await.expect("waiting").len(),
        1
    );
}

pub(crate) async fn a_firings_message_goes_out_and_comes_back<S: Tamper>(store: &S) {
    store
        .sync_schedules(WORKFLOW, &[morning()], t0())
        .await
        .expect("sync");
    let won = store
        .claim_schedule(
            &claim(t0(), t0() + Duration::days(1), Some(sending(t0()))),
            t0(),
        )
        .await
        .expect("claim");
    assert!(matches!(won, Claimed::Won { firing: Some(_) }), "{won:?}");
    let first = firing_job(t0(), 1);

    // Dispatched a minute late: its timeout counts from dispatch.
    let waiting = store.waiting_jobs(None, 10).await.expect("waiting");
    let sent = t0() + Duration::minutes(1);
    store
        .mark_dispatched(waiting[0].id, sent)
        .await
        .expect("dispatch");
    assert_eq!(
        store.dispatched_unfinished("notify").await.expect("count"),
        1
    );
    let firing = firings(store).await.remove(0);
    assert_eq!(firing.due_at, Some(sent + Duration::seconds(30)));
    assert!(store.due_firings(sent, 10).await.expect("due").is_empty());
    let due = store
        .due_firings(sent + Duration::seconds(30), 10)
        .await
        .expect("due");
    assert_eq!(due, std::slice::from_ref(&firing));

    // The transport lost it: it comes back like a case's job.
    assert_eq!(store.requeue_unfinished().await.expect("requeue"), 1);
    let waiting = store.waiting_jobs(None, 10).await.expect("waiting");
    store
        .mark_dispatched(waiting[0].id, sent)
        .await
        .expect("dispatch again");

    // It failed; the next attempt is due in 10 seconds.
    let failed_at = sent + Duration::seconds(5);
    let retry = FiringUpdate {
        id: firing.id,
        expected_status: FiringStatus::Sending,
        expected_attempt: 1,
        status: FiringStatus::Retrying,
        outcome: Some("attempt 1 failed: unavailable".to_owned()),
        due_at: Some(failed_at + Duration::seconds(10)),
        finish_attempt: Some(first.attempt_id.clone()),
        enqueue: None,
    };
    assert!(
        store
            .update_firing(&retry, failed_at)
            .await
            .expect("update")
    );
    assert!(
        !store.update_firing(&retry, failed_at).await.expect("again"),
        "a second report of the attempt changes nothing"
    );
    assert_eq!(
        store.dispatched_unfinished("notify").await.expect("count"),
        0
    );
    assert_eq!(store.requeue_unfinished().await.expect("requeue"), 0);

    let second = firing_job(t0(), 2);
    let resend = FiringUpdate {
        id: firing.id,
        expected_status: FiringStatus::Retrying,
        expected_attempt: 1,
        status: FiringStatus::Sending,
        outcome: retry.outcome.clone(),
        due_at: Some(failed_at + Duration::seconds(40)),
        finish_attempt: None,
        enqueue: Some(second.clone()),
    };
    let resent_at = failed_at + Duration::seconds(10);
    assert!(
        store
            .update_firing(&resend, resent_at)
            .await
            .expect("update")
    );
    let firing = firings(store).await.remove(0);
    assert_eq!((firing.attempt, firing.status), (2, FiringStatus::Sending));
    assert_eq!(
        firing.attempt_id.as_deref(),
        Some(second.attempt_id.as_str())
    );
    assert_eq!(firing.job.as_ref(), Some(&second));
    let waiting = store.waiting_jobs(None, 10).await.expect("waiting");
    let jobs: Vec<&Job> = waiting.iter().map(|r| &r.job).collect();
    assert_eq!(jobs, [&second]);
    assert_eq!(
        store
            .firing_of_attempt(&first.attempt_id)
            .await
            .expect("an earlier attempt")
            .map(|f| f.id),
        Some(firing.id)
    );

    // Delivered before it was even dispatched: withdrawn from the outbox.
    let done = FiringUpdate {
        id: firing.id,
        expected_status: FiringStatus::Sending,
        expected_attempt: 2,
        status: FiringStatus::Sent,
        outcome: Some("sent".to_owned()),
        due_at: None,
        finish_attempt: Some(second.attempt_id.clone()),
        enqueue: None,
    };
    let delivered = resent_at + Duration::seconds(1);
    assert!(store.update_firing(&done, delivered).await.expect("update"));
    let firing = firings(store).await.remove(0);
    assert_eq!(
        (firing.status, firing.outcome.as_deref(), firing.finished_at),
        (FiringStatus::Sent, Some("sent"), Some(delivered))
    );
    assert!(
        store
            .waiting_jobs(None, 10)
            .await
            .expect("waiting")
            .is_empty()
    );
    assert!(store.due_firings(far(), 10).await.expect("due").is_empty());
    assert_eq!(
        store.next_schedule_work().await.expect("next"),
        Some(t0() + Duration::days(1))
    );
}

pub(crate) async fn a_sweep_reads_the_active_cases_of_its_workflow<S: Tamper>(store: &S) {
    for case in ["case-1", "case-2", "case-3"] {
        started(store, case, false, t0()).await;
    }
    written(
        apply(
            store,
            "case-2",
            Command::Cancel {
                reason: "test".into(),
            },
            t0(),
        )
        .await
        .expect("cancel"),
    );
    let active = store.active_cases(WORKFLOW).await.expect("active");
    let ids: Vec<&str> = active.states.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["case-1", "case-3"]);
    assert!(active.unreadable.is_empty());
    // As stored: what a sweep reads (ids, deadlines) and no personal value.
    let stored = &active.states[0];
    let opened = state(store, "case-1").await;
    assert_eq!(
        (&stored.step, &stored.deadlines, &stored.status),
        (&opened.step, &opened.deadlines, &opened.status)
    );
    assert_ne!(stored.input, opened.input);
    assert!(
        stored
            .input
            .values()
            .all(|v| crate::privacy::marker::personal(v).is_none())
    );
    assert_eq!(
        store.active_cases("other").await.expect("none"),
        crate::store::ActiveCases::default()
    );

    store
        .tamper(
            "UPDATE cases SET state = '{\"id\": 7}' WHERE id = $1",
            "case-3",
        )
        .await
        .expect("tamper");
    let active = store.active_cases(WORKFLOW).await.expect("active");
    assert_eq!(active.states.len(), 1);
    assert_eq!(active.unreadable, ["case-3"]);
}

/// A case as the first release wrote it (no history hashes yet): the
/// case row, its first attempt and the job waiting in the outbox.
async fn first_release_case<S: Tamper>(store: &S, case_id: &str, through_agent: bool) -> Decision {
    let definition = deployed(store).await;
    let decision = engine::start(ctx(t0()), case_id, input(through_agent)).expect("start");
    let text = |value: String| value.replace('\'', "''");
    let state = text(serde_json::to_string(&decision.state).expect("state"));
    let at = t0().to_rfc3339();
    let first = job(&decision);
    let statements = [
        format!(
            "INSERT INTO cases (id, definition_id, status, current_step, state, next_seq, \
             created_at, updated_at) VALUES ('{case_id}', {}, 'active', '{}', '{state}', 1, \
             '{at}', '{at}')",
            definition.id, decision.state.step
        ),
        format!(
            "INSERT INTO attempts (id, case_id, step, handler, queue, status, scheduled_at) \
             VALUES ('{}', '{case_id}', '{}', '{}', '{}', 'scheduled', '{at}')",
            first.attempt_id, first.step, first.handler, first.queue
        ),
        format!(
            "INSERT INTO outbox (attempt_id, queue, job, created_at) \
             VALUES ('{}', '{}', '{}', '{at}')",
            first.attempt_id,
            first.queue,
            text(serde_json::to_string(first).expect("job"))
        ),
    ];
    for sql in statements {
        store.run_sql(sql).await.expect("first release rows");
    }
    decision
}

/// A database in use before schedules existed: its attempts and outbox
/// are carried over by the migration that lets attempts belong to a
/// firing, and its cases go on.
pub(crate) async fn an_existing_database_is_upgraded_in_place<S: Tamper>(store: &S) {
    store
        .migrate_to(20261126000001)
        .await
        .expect("the first release's schema");
    let first = first_release_case(store, "case-1", true).await;
    first_release_case(store, "case-2", false).await;
    // The first release hands case-1's job to the transport.
    let at = t0().to_rfc3339();
    for sql in [
        format!(
            "UPDATE outbox SET dispatched_at = '{at}' WHERE attempt_id = '{}'",
            job(&first).attempt_id
        ),
        format!(
            "UPDATE attempts SET status = 'dispatched', dispatched_at = '{at}' WHERE id = '{}'",
            job(&first).attempt_id
        ),
    ] {
        assert_eq!(store.run_sql(sql).await.expect("dispatch"), 1);
    }

    store.migrate().await.expect("the upgrade");
    assert_eq!(store.broken_references().await.expect("check"), 0);
    let queue = job(&first).queue.clone();
    assert_eq!(store.dispatched_unfinished(&queue).await.expect("count"), 1);
    let still: Vec<Job> = store
        .waiting_jobs(None, 10)
        .await
        .expect("waiting")
        .into_iter()
        .map(|r| r.job)
        .collect();
    assert_eq!(still.len(), 1);
    assert_eq!(still[0].case_id, "case-2");
    written(
        apply(
            store,
            "case-1",
            complete(&job(&first).attempt_id, "verified"),
            t0() + Duration::minutes(1),
        )
        .await
        .expect("the case goes on"),
    );
    assert_eq!(store.dispatched_unfinished(&queue).await.expect("count"), 0);
    assert_eq!(store.requeue_unfinished().await.expect("requeue"), 0);

    // An attempt must belong to a case or a firing, not neither.
    let orphan = store
        .tamper(
            "INSERT INTO attempts (id, step, handler, queue, status, scheduled_at) \
             VALUES ($1, 's', 'h', 'q', 'scheduled', '2026-03-02T01:00:00+00:00')",
            "orphan",
        )
        .await;
    assert!(orphan.is_err(), "{orphan:?}");
}
