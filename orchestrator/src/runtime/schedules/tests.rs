use std::path::Path;
use std::sync::OnceLock;

use chrono::TimeZone;
use chrono_tz::Asia::Shanghai;
use serde_json::json;

use super::*;
use crate::definition::{self, Environment};
use crate::testing::fixtures;

/// The fixture workflow the schedule tests share.
fn due_list() -> &'static Workflow {
    static WORKFLOW: OnceLock<Workflow> = OnceLock::new();
    WORKFLOW.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid/due-list.yaml");
        let env = Environment::new(calendars().keys().cloned());
        definition::load_file(&path, &env)
            .expect("read the fixture")
            .loaded
            .workflow
            .expect("a valid workflow")
    })
}

fn calendars() -> &'static BTreeMap<String, Calendar> {
    &fixtures().1
}

fn schedule() -> &'static Schedule {
    &due_list().schedules[0]
}

fn contacts() -> BTreeMap<String, String> {
    BTreeMap::from([("desk".to_owned(), "desk@station.example".to_owned())])
}

/// A time in Shanghai.
fn sh(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Shanghai
        .with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .expect("a valid Shanghai time")
        .with_timezone(&Utc)
}

fn cron() -> cron::Schedule {
    parse(&schedule().cron, schedule().timezone.name())
        .expect("the fixture's cron")
        .0
}

fn choose(next_at: DateTime<Utc>, now: DateTime<Utc>) -> Choice {
    let calendar = calendars().get("cn-mainland");
    choose_tick(&cron(), Shanghai, calendar, next_at, now)
}

#[test]
fn attempt_ids_name_the_schedule_and_the_tick() {
    let id = attempt_id("due-list", "morning_due_list", sh(2026, 3, 2, 9, 0), 2);
    assert_eq!(
        id,
        "schedule:due-list:morning_due_list/2026-03-02T01:00:00Z/2"
    );
    assert!(crate::store::schedules::is_firing_attempt(&id));
    assert!(!crate::store::schedules::is_firing_attempt(
        "0192f0c4-7d1e-7000-8000-000000000000/verify/1/1"
    ));
}

#[test]
fn ticks_are_counted_from_the_instant_given() {
    let tick = sh(2026, 3, 2, 9, 0);
    assert_eq!(
        first_after(&cron(), Shanghai, tick),
        Some(sh(2026, 3, 3, 9, 0)),
        "strictly after"
    );
    assert_eq!(
        first_after(&cron(), Shanghai, tick - TimeDelta::nanoseconds(1)),
        Some(tick)
    );
    let back: Vec<_> = ticks_back(&cron(), Shanghai, tick)
        .take(2)
        .map(|t| t.with_timezone(&Utc))
        .collect();
    assert_eq!(
        back,
        [tick, sh(2026, 3, 1, 9, 0)],
        "a tick at `at` included"
    );
    let just_before = tick - TimeDelta::nanoseconds(1);
    assert_eq!(
        ticks_back(&cron(), Shanghai, just_before)
            .next()
            .map(|t| t.with_timezone(&Utc)),
        Some(sh(2026, 3, 1, 9, 0))
    );
}

#[test]
fn a_tick_on_time_fires() {
    let tick = sh(2026, 3, 2, 9, 0);
    assert_eq!(choose(tick, tick), Choice::Fire(tick));
    assert_eq!(
        choose(tick, tick + TimeDelta::minutes(5)),
        Choice::Fire(tick)
    );
}

#[test]
fn missed_ticks_fire_once_for_the_latest() {
    // Down from Monday 08:00 to Thursday 10:00: Mon, Tue, Wed and Thu
    // ticks missed; only Thursday's is fired.
    assert_eq!(
        choose(sh(2026, 3, 2, 9, 0), sh(2026, 3, 5, 10, 0)),
        Choice::Fire(sh(2026, 3, 5, 9, 0))
    );
    // Down over a weekend: Friday's tick, then Saturday's and Sunday's.
    assert_eq!(
        choose(sh(2026, 3, 6, 9, 0), sh(2026, 3, 8, 10, 0)),
        Choice::Fire(sh(2026, 3, 6, 9, 0)),
        "the latest working-day tick"
    );
}

#[test]
fn days_off_are_passed_over() {
    // A Saturday.
    assert_eq!(
        choose(sh(2026, 3, 7, 9, 0), sh(2026, 3, 7, 9, 0)),
        Choice::None
    );
    // Qingming: Saturday 4 April to Monday 6 April 2026.
    assert_eq!(
        choose(sh(2026, 4, 4, 9, 0), sh(2026, 4, 6, 12, 0)),
        Choice::None
    );
    // A make-up workday (Saturday 28 February 2026) is a working day.
    assert_eq!(
        choose(sh(2026, 2, 28, 9, 0), sh(2026, 2, 28, 9, 0)),
        Choice::Fire(sh(2026, 2, 28, 9, 0))
    );
}

#[test]
fn a_year_the_calendar_does_not_cover_is_an_error_not_a_guess() {
    let tick = sh(2027, 1, 4, 9, 0);
    match choose(tick, tick) {
        Choice::Unclassified { tick: t, error } => {
            assert_eq!(t, tick);
            assert!(error.contains("2027"), "{error}");
        }
        other => panic!("{other:?}"),
    }
}

fn case(id: &str, due: Option<DateTime<Utc>>, status: Value) -> CaseState {
    let mut state: CaseState = serde_json::from_value(json!({
        "id": id,
        "workflow": "due-list",
        "version": 1,
        "status": {"status": "active"},
        "step": "await_issue",
        "entry": 2,
        "phase": {"phase": "waiting"},
        "input": {"applicant_name": "张三"},
        "events": {},
        "results": {},
        "deadlines": {},
        "timers": {},
        "side_jobs": {},
        "started_at": "2026-02-20T01:00:00Z",
        "updated_at": "2026-02-20T01:00:00Z",
    }))
    .expect("a case state");
    let deadline = serde_json::from_value(json!({
        "started_at": "2026-02-24T01:00:00Z",
        "due": due,
        "status": status,
    }))
    .expect("a deadline state");
    state.deadlines.insert("issuance".to_owned(), deadline);
    state
}

fn running() -> Value {
    json!({"status": "running"})
}

fn sweep<'a>(schedule: &'a Schedule, contacts: &'a BTreeMap<String, String>) -> Sweep<'a> {
    Sweep {
        workflow: due_list(),
        schedule,
        calendars: calendars(),
        contacts,
    }
}

#[test]
fn a_firing_lists_the_running_deadlines_due_within_the_window() {
    // Monday 2 March 09:00: "2 working days" reaches the end of Wednesday 4
    // March in Shanghai, 16:00 UTC.
    let tick = sh(2026, 3, 2, 9, 0);
    let end_of_wednesday = sh(2026, 3, 5, 0, 0);
    let cases = ActiveCases {
        states: vec![
            case("case-b", Some(end_of_wednesday), running()),
            case("case-late", Some(sh(2026, 3, 6, 0, 0)), running()),
            case("case-a", Some(sh(2026, 3, 3, 0, 0)), running()),
            case(
                "case-paused",
                Some(sh(2026, 3, 3, 0, 0)),
                json!({"status": "paused", "since": "2026-02-27T01:00:00Z"}),
            ),
            case(
                "case-met",
                Some(sh(2026, 3, 3, 0, 0)),
                json!({"status": "met", "at": "2026-02-27T01:00:00Z"}),
            ),
            case(
                "case-uncounted",
                None,
                json!({"status": "uncounted", "error": "x"}),
            ),
        ],
        unreadable: Vec::new(),
    };
    let now = tick + TimeDelta::seconds(3);
    let contacts = contacts();
    let firing = sweep(schedule(), &contacts).plan(tick, &cases, now);
    assert_eq!(firing.status, FiringStatus::Sending);
    assert_eq!((firing.tick_at, firing.cases), (tick, 2));
    let job = firing.job.expect("a message");
    assert_eq!(
        job.attempt_id,
        "schedule:due-list:morning_due_list/2026-03-02T01:00:00Z/1"
    );
    assert_eq!(
        (job.handler.as_str(), job.queue.as_str()),
        ("notify.email", "notify")
    );
    assert_eq!(
        (job.step.as_str(), job.case_id.as_str(), job.attempt),
        ("morning_due_list", "", 1)
    );
    assert_eq!(firing.due_at, Some(now + delta(job.timeout)));
    assert_eq!(job.params["to"], "desk@station.example");
    assert_eq!(job.params["subject"], "Permits due soon");
    assert_eq!(
        job.params["body"],
        "Case case-a must be issued by 2026-03-02.\n\
         Case case-b must be issued by 2026-03-04."
    );
}

#[test]
fn a_sweep_never_carries_personal_data() {
    let mut schedule = schedule().clone();
    schedule.message.body =
        Template::parse("{{ case.id }} {{ input.applicant_name }} {{ deadline.issuance.due }}")
            .expect("a template");
    schedule.message.subject =
        Some(Template::parse("Due: {{ case.id }} {{ input.applicant_name }}").expect("a template"));
    let tick = sh(2026, 3, 2, 9, 0);
    let cases = ActiveCases {
        states: vec![case("case-a", Some(sh(2026, 3, 3, 0, 0)), running())],
        unreadable: Vec::new(),
    };
    let contacts = contacts();
    let job = sweep(&schedule, &contacts)
        .plan(tick, &cases, tick)
        .job
        .expect("a message");
    let text = serde_json::to_string(&job).expect("json");
    assert!(!text.contains("张三"), "{text}");
    assert_eq!(job.params["body"], "case-a  2026-03-02");
    assert_eq!(job.params["subject"], "Due:  ");
}

#[test]
fn no_case_due_sends_nothing_and_says_so() {
    let tick = sh(2026, 3, 2, 9, 0);
    let cases = ActiveCases {
        states: vec![case("case-late", Some(sh(2026, 3, 20, 0, 0)), running())],
        unreadable: vec!["case-bad".to_owned()],
    };
    let contacts = contacts();
    let firing = sweep(schedule(), &contacts).plan(tick, &cases, tick);
    assert_eq!(firing.status, FiringStatus::NothingDue);
    assert_eq!((firing.cases, firing.job.as_ref()), (0, None));
    let outcome = firing.outcome.expect("why");
    assert!(
        outcome.contains("2 working days") && outcome.contains("nothing sent"),
        "{outcome}"
    );
    assert!(outcome.contains("case-bad"), "{outcome}");
}

#[test]
fn what_cannot_be_sent_is_recorded_as_failed() {
    let tick = sh(2026, 3, 2, 9, 0);
    let cases = ActiveCases {
        states: vec![case("case-a", Some(sh(2026, 3, 3, 0, 0)), running())],
        unreadable: Vec::new(),
    };
    let none = BTreeMap::new();
    let firing = sweep(schedule(), &none).plan(tick, &cases, tick);
    assert_eq!((firing.status, firing.cases), (FiringStatus::Failed, 1));
    assert_eq!(
        firing.outcome.as_deref(),
        Some("contact `desk` has no address configured")
    );

    // The window reaches into a year the calendar does not cover.
    let contacts = contacts();
    let late = sweep(schedule(), &contacts).plan(sh(2026, 12, 31, 9, 0), &cases, tick);
    assert_eq!(late.status, FiringStatus::Failed);
    assert!(
        late.outcome.as_deref().is_some_and(|e| e.contains("2027")),
        "{late:?}"
    );
}

fn sending(attempt: u32) -> Firing {
    let tick = sh(2026, 3, 2, 9, 0);
    let contacts = contacts();
    let cases = ActiveCases {
        states: vec![case("case-a", Some(sh(2026, 3, 3, 0, 0)), running())],
        unreadable: Vec::new(),
    };
    let planned = sweep(schedule(), &contacts).plan(tick, &cases, tick);
    let mut job = planned.job.expect("a job");
    job.attempt = attempt;
    job.attempt_id = attempt_id("due-list", "morning_due_list", tick, attempt);
    Firing {
        id: 7,
        workflow: "due-list".to_owned(),
        schedule: "morning_due_list".to_owned(),
        tick_at: tick,
        fired_at: tick,
        cases: 1,
        status: FiringStatus::Sending,
        outcome: None,
        attempt,
        attempt_id: Some(job.attempt_id.clone()),
        job: Some(job),
        due_at: Some(tick + TimeDelta::seconds(30)),
        finished_at: None,
    }
}

#[test]
fn a_delivered_message_settles_the_firing() {
    let firing = sending(1);
    let id = firing.attempt_id.clone().expect("an attempt");
    let now = sh(2026, 3, 2, 9, 1);
    let change = after_report(&firing, &id, &Outcome::succeeded("sent"), now);
    assert_eq!(
        (
            change.status,
            change.outcome.as_deref(),
            change.finish_attempt.as_deref()
        ),
        (FiringStatus::Sent, Some("sent"), Some(id.as_str()))
    );
    assert_eq!(
        (change.expected_status, change.expected_attempt),
        (FiringStatus::Sending, 1)
    );
    assert_eq!((change.due_at, change.enqueue.as_ref()), (None, None));
}

#[test]
fn a_failed_delivery_is_retried_with_backoff_then_given_up() {
    let now = sh(2026, 3, 2, 9, 1);
    let firing = sending(1);
    let id = firing.attempt_id.clone().expect("an attempt");
    let change = after_report(
        &firing,
        &id,
        &Outcome::retryable("unavailable", "smtp down"),
        now,
    );
    assert_eq!(change.status, FiringStatus::Retrying);
    assert_eq!(
        change.due_at,
        Some(now + TimeDelta::seconds(10)),
        "notify's first backoff"
    );
    assert_eq!(change.finish_attempt.as_deref(), Some(id.as_str()));

    // Its next attempt starts when due, under a new attempt id.
    let retrying = Firing {
        status: FiringStatus::Retrying,
        due_at: change.due_at,
        ..firing.clone()
    };
    let later = now + TimeDelta::seconds(10);
    let next = when_due(&retrying, later);
    assert_eq!(next.status, FiringStatus::Sending);
    let job = next.enqueue.expect("the next attempt");
    assert_eq!(job.attempt, 2);
    assert_eq!(
        job.attempt_id,
        "schedule:due-list:morning_due_list/2026-03-02T01:00:00Z/2"
    );
    assert_eq!(job.params, firing.job.as_ref().expect("a job").params);
    assert_eq!(next.due_at, Some(later + delta(job.timeout)));

    let permanent = after_report(
        &firing,
        &id,
        &Outcome::permanent("rejected_recipient", "no such mailbox"),
        now,
    );
    assert_eq!(permanent.status, FiringStatus::Failed);
    assert_eq!(
        permanent.outcome.as_deref(),
        Some("attempt 1 failed: rejected_recipient: no such mailbox")
    );

    let last = sending(8);
    let id = last.attempt_id.clone().expect("an attempt");
    let spent = after_report(
        &last,
        &id,
        &Outcome::retryable("unavailable", "smtp down"),
        now,
    );
    assert_eq!(spent.status, FiringStatus::Failed, "8 attempts spent");
}

#[test]
fn an_attempt_without_a_report_times_out() {
    let firing = sending(1);
    let now = sh(2026, 3, 2, 9, 5);
    let change = when_due(&firing, now);
    assert_eq!(change.status, FiringStatus::Retrying);
    assert_eq!(change.finish_attempt, firing.attempt_id);
    assert_eq!(change.outcome.as_deref(), Some("attempt 1 failed: timeout"));
}
