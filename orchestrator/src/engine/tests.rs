//! The engine driven through whole cases of the residence-permit workflow,
//! and property tests of its invariants over random event sequences.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Asia::Shanghai;
use docket_workers::contract::Outcome;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::definition::model::StepKind;
use crate::engine::state::DeadlineStatus;

use crate::testing::{contacts, fixtures, input};

mod clocks;

/// A case being driven by a test, with a clock the test moves.
struct Case {
    state: CaseState,
    now: DateTime<Utc>,
    history: Vec<HistoryEvent>,
    jobs: Vec<Job>,
}

impl Case {
    fn ctx(&self) -> Context<'static> {
        let (workflow, calendars) = fixtures();
        Context {
            workflow,
            calendars,
            contacts: contacts(),
            now: self.now,
        }
    }

    fn start(now: DateTime<Utc>, through_agent: bool) -> Case {
        let (workflow, calendars) = fixtures();
        let ctx = Context {
            workflow,
            calendars,
            contacts: contacts(),
            now,
        };
        let d = start(ctx, "case-1", input(through_agent)).expect("start");
        let mut case = Case {
            state: d.state.clone(),
            now,
            history: Vec::new(),
            jobs: Vec::new(),
        };
        case.absorb(d);
        case
    }

    fn absorb(&mut self, d: Decision) {
        self.state = d.state;
        self.history.extend(d.history);
        self.jobs
            .extend(d.effects.into_iter().filter_map(|e| match e {
                Effect::Enqueue(job) => Some(job),
                _ => None,
            }));
    }

    fn apply(&mut self, command: Command) -> Result<(), Rejection> {
        let d = decide(self.ctx(), &self.state, command)?;
        self.absorb(d);
        Ok(())
    }

    fn last_job(&self) -> &Job {
        self.jobs.last().expect("a job")
    }

    /// Completes the newest job.
    fn complete(&mut self, outcome: Outcome) {
        let attempt_id = self.last_job().attempt_id.clone();
        self.apply(Command::Complete {
            attempt_id,
            outcome,
        })
        .expect("complete");
    }

    fn succeed(&mut self, outcome: &str) {
        self.complete(Outcome::succeeded(outcome));
    }

    fn signal(&mut self, event: &str, data: Value) {
        let data = data.as_object().cloned().unwrap_or_default();
        self.apply(Command::Signal {
            event: event.to_owned(),
            data,
        })
        .expect("signal");
    }

    /// Moves the clock to `at` and fires every timer due by then, in order.
    fn advance_to(&mut self, at: DateTime<Utc>) {
        loop {
            let next = self
                .state
                .timers
                .values()
                .filter(|t| t.due <= at)
                .min_by_key(|t| t.due)
                .cloned();
            let Some(timer) = next else { break };
            self.now = self.now.max(timer.due);
            self.apply(Command::FireTimer { timer_id: timer.id })
                .expect("fire");
        }
        self.now = at;
    }

    fn kinds(&self) -> Vec<&'static str> {
        self.history.iter().map(HistoryEvent::kind).collect()
    }

    fn due(&self, deadline: &str) -> Option<String> {
        self.state
            .deadlines
            .get(deadline)
            .and_then(|d| d.due)
            .map(|due| due.with_timezone(&Shanghai).to_rfc3339())
    }
}

fn shanghai(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Shanghai
        .with_ymd_and_hms(y, m, d, h, 0, 0)
        .single()
        .expect("valid time")
        .with_timezone(&Utc)
}

fn materials() -> Value {
    json!({"materials": ["id_card", "photo", "lease_contract", "labour_contract"]})
}

/// Drives a case to the point where the application was accepted.
fn accepted_case(accepted_at: DateTime<Utc>) -> Case {
    let mut c = Case::start(accepted_at - chrono::Duration::days(3), false);
    c.succeed("verified");
    c.signal("address_bound", json!({"address": "泉州市丰泽区东海街道"}));
    c.succeed("authenticated");
    c.signal("registration_submitted", materials());
    c.succeed("complete");
    c.signal("registration_approved", json!({}));
    c.succeed("sent");
    c.signal("application_submitted", materials());
    c.succeed("complete");
    c.now = accepted_at;
    c.signal("application_accepted", json!({}));
    c
}

#[test]
fn a_whole_application_ends_in_a_collected_permit() {
    let mut c = accepted_case(shanghai(2026, 2, 10, 10));
    assert_eq!(c.state.step, "await_permit");
    c.now = shanghai(2026, 2, 20, 10);
    c.signal("permit_ready", json!({}));
    assert_eq!(c.last_job().handler, "notify.webhook");
    assert_eq!(c.last_job().params["to"], "o-applicant");
    c.succeed("sent");
    c.signal("permit_collected", json!({}));
    assert_eq!(
        c.state.status,
        Status::Completed {
            outcome: "issued".into()
        }
    );
    // Only the endorsement follow-up and the end of retention are left.
    let mut timers: Vec<&TimerKind> = c.state.timers.values().map(|t| &t.kind).collect();
    timers.sort_by_key(|k| matches!(k, TimerKind::Retention));
    assert!(
        matches!(
            timers.as_slice(),
            [TimerKind::FollowUp { n: 1, .. }, TimerKind::Retention]
        ),
        "{timers:?}"
    );
    let kinds = c.kinds();
    assert_eq!(kinds.first(), Some(&"case_started"));
    assert_eq!(
        &kinds[kinds.len() - 3..],
        [
            "case_completed",
            "follow_up_scheduled",
            "retention_scheduled"
        ]
    );
    assert_eq!(kinds.iter().filter(|k| **k == "deadline_met").count(), 2);
    assert_eq!(
        kinds.iter().filter(|k| **k == "attempt_succeeded").count(),
        6
    );
}

#[test]
fn retries_back_off_then_a_failed_step_waits_for_an_operator() {
    let t0 = shanghai(2026, 3, 2, 9);
    let mut c = Case::start(t0, false);
    for attempt in 1..=5u32 {
        assert_eq!(c.last_job().attempt, attempt);
        c.complete(Outcome::retryable("unavailable", "service down"));
        assert_eq!(
            c.state.phase,
            Phase::BackingOff {
                attempt: attempt + 1
            }
        );
        // government_service: 1m, 2m, 4m, 8m, 16m
        let wait = chrono::Duration::minutes(1 << (attempt - 1));
        let retry = c
            .state
            .timers
            .values()
            .find(|t| matches!(t.kind, TimerKind::Retry { .. }))
            .expect("retry timer");
        assert_eq!(retry.due, c.now + wait);
        c.advance_to(c.now + wait);
    }
    assert_eq!(c.last_job().attempt, 6);
    c.complete(Outcome::retryable("unavailable", "still down"));
    assert!(matches!(c.state.phase, Phase::Failed { attempts: 6, .. }));
    assert!(c.state.timers.is_empty());
    assert!(matches!(
        c.apply(Command::Signal {
            event: "address_bound".into(),
            data: Data::new()
        }),
        Err(Rejection::NotWaitingFor { .. })
    ));
    c.apply(Command::RetryStep {
        reason: "service restored".into(),
    })
    .expect("retry");
    assert_eq!(c.last_job().attempt, 1);
    c.succeed("verified");
    assert_eq!(c.state.step, "await_address");
    assert!(matches!(
        c.apply(Command::RetryStep {
            reason: "again".into()
        }),
        Err(Rejection::NotFailed { .. })
    ));
}

#[test]
fn a_service_asking_to_wait_longer_than_the_backoff_is_obeyed() {
    let t0 = shanghai(2026, 3, 2, 9);
    let mut c = Case::start(t0, false);
    c.complete(Outcome::Failed {
        code: "unavailable".into(),
        message: "503".into(),
        retryable: true,
        retry_after_secs: Some(600),
    });
    let retry = |c: &Case| {
        c.state
            .timers
            .values()
            .find(|t| matches!(t.kind, TimerKind::Retry { .. }))
            .map(|t| t.due)
    };
    assert_eq!(retry(&c), Some(t0 + chrono::Duration::minutes(10)));
    // A shorter request than the policy's backoff does not shorten it.
    c.advance_to(t0 + chrono::Duration::minutes(10));
    c.complete(Outcome::Failed {
        code: "unavailable".into(),
        message: "503".into(),
        retryable: true,
        retry_after_secs: Some(1),
    });
    assert_eq!(retry(&c), Some(c.now + chrono::Duration::minutes(2)));
}

#[test]
fn non_retryable_errors_fail_at_once() {
    let mut c = Case::start(shanghai(2026, 3, 2, 9), false);
    c.complete(Outcome::retryable("invalid_request", "bad ID format"));
    assert!(matches!(c.state.phase, Phase::Failed { attempts: 1, .. }));
}

#[test]
fn duplicate_and_late_completions_are_recorded_and_ignored() {
    let mut c = Case::start(shanghai(2026, 3, 2, 9), false);
    let first = c.last_job().attempt_id.clone();
    c.succeed("verified");
    let before = c.state.clone();
    c.apply(Command::Complete {
        attempt_id: first.clone(),
        outcome: Outcome::succeeded("rejected"),
    })
    .expect("duplicate");
    assert_eq!(c.kinds().last(), Some(&"completion_ignored"));
    assert_eq!(c.state.step, before.step);
    assert_eq!(c.state.results, before.results);

    // A completion after its attempt timed out is ignored too.
    c.signal("address_bound", json!({"address": "somewhere"}));
    let slow = c.last_job().attempt_id.clone();
    c.advance_to(c.now + chrono::Duration::minutes(6));
    assert!(c.kinds().contains(&"attempt_timed_out"));
    c.apply(Command::Complete {
        attempt_id: slow,
        outcome: Outcome::succeeded("authenticated"),
    })
    .expect("late");
    assert_eq!(c.kinds().last(), Some(&"completion_ignored"));
    assert_eq!(c.state.step, "authenticate_intranet");
}

#[test]
fn rejection_leads_back_to_resubmission() {
    let mut c = Case::start(shanghai(2026, 3, 2, 9), false);
    c.succeed("verified");
    c.signal("address_bound", json!({"address": "x"}));
    c.succeed("authenticated");
    c.signal("registration_submitted", json!({"materials": ["id_card"]}));
    c.complete(Outcome::Succeeded {
        outcome: "incomplete".into(),
        output: json!({"missing": "Photo; Proof of residence address"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    });
    assert!(
        c.last_job().params["body"]
            .as_str()
            .unwrap_or("")
            .contains("Photo; Proof of residence address")
    );
    c.succeed("sent");
    c.signal("registration_submitted", materials());
    c.succeed("complete");
    c.signal(
        "registration_rejected",
        json!({"reason": "address unclear"}),
    );
    assert!(
        c.last_job().params["body"]
            .as_str()
            .unwrap_or("")
            .contains("address unclear")
    );
    c.succeed("sent");
    assert_eq!(c.state.step, "await_registration");
    c.signal("registration_submitted", materials());
    c.succeed("complete");
    c.signal("registration_approved", json!({}));
    c.succeed("sent");
    assert_eq!(c.state.step, "await_application");
}

#[test]
fn an_agent_filing_verifies_the_agent_too() {
    let mut c = Case::start(shanghai(2026, 3, 2, 9), true);
    c.succeed("verified");
    assert_eq!(c.state.step, "verify_agent");
    assert_eq!(c.last_job().params["id_number"], "440524188001010014");
    c.succeed("verified");
    assert_eq!(c.state.step, "await_address");
}

#[test]
fn bad_input_and_unexpected_events_are_refused_without_change() {
    let (workflow, calendars) = fixtures();
    let ctx = Context {
        workflow,
        calendars,
        contacts: contacts(),
        now: shanghai(2026, 3, 2, 9),
    };
    let mut bad = input(false);
    bad.insert("category".into(), json!("tourism"));
    let err = start(ctx, "c", bad).expect_err("bad category");
    assert_eq!(
        err.to_string(),
        "case input: field `category` must be one of employment, residence, study"
    );
    let mut bad = input(false);
    bad.remove("id_number");
    assert!(
        start(ctx, "c", bad)
            .expect_err("missing")
            .to_string()
            .contains("`id_number` is required")
    );
    let mut bad = input(false);
    bad.insert("id_number".into(), json!("12345"));
    let err = start(ctx, "c", bad).expect_err("bad id").to_string();
    assert!(
        err.contains("18-character") && !err.contains("12345"),
        "{err}"
    );

    let mut c = Case::start(shanghai(2026, 3, 2, 9), false);
    let before = c.state.clone();
    assert!(matches!(
        c.apply(Command::Signal {
            event: "nonsense".into(),
            data: Data::new()
        }),
        Err(Rejection::UnknownEvent { .. })
    ));
    c.succeed("verified");
    let err = c
        .apply(Command::Signal {
            event: "address_bound".into(),
            data: Data::new(),
        })
        .expect_err("missing address");
    assert!(err.to_string().contains("`address` is required"));
    assert_ne!(c.state, before);
    assert_eq!(c.state.step, "await_address");
}

#[test]
fn cancelling_ends_the_case_and_clears_its_timers() {
    let mut c = accepted_case(shanghai(2026, 2, 10, 10));
    assert!(!c.state.timers.is_empty());
    c.apply(Command::Cancel {
        reason: "applicant moved away".into(),
    })
    .expect("cancel");
    // Only the end of the retention is left.
    let kinds: Vec<&TimerKind> = c.state.timers.values().map(|t| &t.kind).collect();
    assert_eq!(kinds, [&TimerKind::Retention]);
    assert_eq!(
        c.state.status,
        Status::Cancelled {
            reason: "applicant moved away".into()
        }
    );
    assert!(matches!(
        c.apply(Command::Signal {
            event: "permit_ready".into(),
            data: Data::new()
        }),
        Err(Rejection::Finished { .. })
    ));
}

#[test]
fn personal_data_is_erased_when_the_retention_of_an_ended_case_ends() {
    let mut c = accepted_case(shanghai(2026, 2, 10, 10));
    c.signal("permit_ready", json!({}));
    c.succeed("sent");
    c.signal("permit_collected", json!({}));
    assert!(!c.state.status.is_active());
    let personal =
        |c: &Case| serde_json::to_string(&(&c.state.input, &c.state.events)).unwrap_or_default();
    assert!(personal(&c).contains("张三"));
    let erase_at = c.history.iter().find_map(|e| match e {
        HistoryEvent::RetentionScheduled { erase_at } => Some(*erase_at),
        _ => None,
    });
    // `5years` in humantime: 5 × 365.25 days after the case ended.
    assert_eq!(
        erase_at,
        Some(c.now + chrono::Duration::days(1826) + chrono::Duration::hours(6))
    );
    assert!(
        c.state
            .timers
            .values()
            .any(|t| matches!(t.kind, TimerKind::FollowUp { .. }))
    );

    c.advance_to(c.now + chrono::Duration::days(5 * 366));
    let erased = c.history.iter().find_map(|e| match e {
        HistoryEvent::PersonalDataErased { values } => Some(*values),
        _ => None,
    });
    // Name, ID number, phone, service account and the bound address.
    assert_eq!(erased, Some(5));
    let after = personal(&c);
    for secret in [
        "张三",
        "11010519491231002X",
        "13800000000",
        "o-applicant",
        "泉州",
    ] {
        assert!(!after.contains(secret), "{secret} kept in {after}");
    }
    assert_eq!(c.state.input["category"], json!("employment"));
    assert!(c.state.timers.is_empty(), "{:?}", c.state.timers);
    // Anything that read them now reads nothing.
    assert_eq!(
        values::lookup(
            &c.state,
            &crate::definition::expr::Reference::Input("applicant_name".into())
        ),
        Value::Null
    );
}

#[test]
fn an_unanswered_wait_times_out() {
    let mut c = Case::start(shanghai(2026, 3, 2, 9), false);
    c.succeed("verified");
    c.advance_to(shanghai(2026, 4, 2, 9));
    assert_eq!(
        c.state.status,
        Status::Completed {
            outcome: "abandoned".into()
        }
    );
    assert!(c.kinds().contains(&"wait_timed_out"));
}

// --- properties ----------------------------------------------------------

#[derive(Debug, Clone)]
enum Action {
    /// Completes the current attempt: 0..n picks an outcome of the handler,
    /// then a retryable failure, then a permanent one.
    Complete(usize),
    /// Completes an earlier attempt again.
    Duplicate(usize),
    /// Fails the current attempt with a retryable error, then fires its
    /// retry timer: drives steps to the end of their retry budget.
    Flaky,
    /// Fires the n-th live timer.
    Fire(usize),
    /// Fires a timer that is no longer set.
    Stale(usize),
    /// Sends the n-th event the current wait accepts (or any event).
    Signal(usize),
    Retry,
    Cancel,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (0..5usize).prop_map(Action::Complete),
        5 => Just(Action::Flaky),
        1 => (0..20usize).prop_map(Action::Duplicate),
        3 => (0..6usize).prop_map(Action::Fire),
        1 => (0..20usize).prop_map(Action::Stale),
        6 => (0..4usize).prop_map(Action::Signal),
        1 => Just(Action::Retry),
        1 => Just(Action::Cancel),
    ]
}

fn event_data(event: &str) -> Data {
    let data = match event {
        "address_bound" => json!({"address": "x"}),
        "registration_submitted" | "application_submitted" => materials(),
        "registration_rejected" | "application_refused" => json!({"reason": "r"}),
        _ => json!({}),
    };
    data.as_object().cloned().unwrap_or_default()
}

fn run(case: &mut Case, action: &Action, fired: &mut Vec<String>) {
    let (workflow, _) = fixtures();
    let command = match action {
        Action::Complete(pick) => {
            let Phase::Attempting { attempt_id, .. } = &case.state.phase else {
                return;
            };
            let step = workflow.step(&case.state.step).expect("step");
            let outcomes: Vec<String> = match &step.kind {
                StepKind::Task(t) => {
                    t.on.keys()
                        .filter(|o| o.as_str() != "failed")
                        .cloned()
                        .collect()
                }
                _ => vec!["sent".into()],
            };
            let outcome = match pick.checked_sub(outcomes.len()) {
                None => Outcome::succeeded(&outcomes[*pick]),
                Some(0) => Outcome::retryable("unavailable", "down"),
                Some(_) => Outcome::permanent("invalid_request", "bad"),
            };
            Command::Complete {
                attempt_id: attempt_id.clone(),
                outcome,
            }
        }
        Action::Flaky => {
            if let Phase::Attempting { attempt_id, .. } = &case.state.phase {
                let attempt_id = attempt_id.clone();
                let _ = case.apply(Command::Complete {
                    attempt_id,
                    outcome: Outcome::retryable("unavailable", "down"),
                });
            }
            let Some(retry) = case
                .state
                .timers
                .values()
                .find(|t| matches!(t.kind, TimerKind::Retry { .. }))
            else {
                return;
            };
            case.now = case.now.max(retry.due);
            Command::FireTimer {
                timer_id: retry.id.clone(),
            }
        }
        Action::Duplicate(n) => {
            if case.jobs.is_empty() {
                return;
            }
            Command::Complete {
                attempt_id: case.jobs[n % case.jobs.len()].attempt_id.clone(),
                outcome: Outcome::succeeded("sent"),
            }
        }
        Action::Fire(n) => {
            let timers: Vec<&Timer> = case.state.timers.values().collect();
            if timers.is_empty() {
                return;
            }
            let timer = timers[n % timers.len()];
            case.now = case.now.max(timer.due);
            fired.push(timer.id.clone());
            Command::FireTimer {
                timer_id: timer.id.clone(),
            }
        }
        Action::Stale(n) => {
            if fired.is_empty() {
                return;
            }
            Command::FireTimer {
                timer_id: fired[n % fired.len()].clone(),
            }
        }
        Action::Signal(n) => {
            let step = workflow.step(&case.state.step).expect("step");
            let events: Vec<String> = match &step.kind {
                StepKind::Wait(w) => w.events.keys().cloned().collect(),
                _ => workflow.events.iter().map(|e| e.name.clone()).collect(),
            };
            let event = events[n % events.len()].clone();
            let data = event_data(&event);
            Command::Signal { event, data }
        }
        Action::Retry => Command::RetryStep {
            reason: "operator".into(),
        },
        Action::Cancel => Command::Cancel {
            reason: "operator".into(),
        },
    };
    case.now += chrono::Duration::minutes(1);
    // Refusals are allowed; they must leave the state alone, which
    // `apply` guarantees by not absorbing anything.
    let before = case.state.clone();
    if case.apply(command).is_err() {
        assert_eq!(case.state, before);
    }
}

fn check_invariants(case: &Case) {
    let (workflow, _) = fixtures();
    let history = &case.history;
    let terminal = history
        .iter()
        .filter(|e| {
            matches!(
                e,
                HistoryEvent::CaseCompleted { .. } | HistoryEvent::CaseCancelled { .. }
            )
        })
        .count();
    assert!(terminal <= 1, "two terminal outcomes");
    if terminal == 1 {
        assert!(
            case.state
                .timers
                .values()
                .all(|t| matches!(t.kind, TimerKind::Retention | TimerKind::FollowUp { .. })),
            "a finished case keeps step timers"
        );
        assert!(!case.state.status.is_active());
    }
    let mut applied = std::collections::BTreeSet::new();
    for e in history {
        if let HistoryEvent::AttemptSucceeded { attempt_id, .. }
        | HistoryEvent::AttemptFailed { attempt_id, .. } = e
        {
            assert!(
                applied.insert(attempt_id.clone()),
                "completion of {attempt_id} applied twice"
            );
        }
        if let HistoryEvent::AttemptScheduled { step, attempt, .. } = e {
            let max = match &workflow.step(step).expect("step").kind {
                StepKind::Task(t) => t.retry.max_attempts,
                _ => 8,
            };
            assert!(*attempt <= max, "attempt {attempt} of {step} exceeds {max}");
        }
    }
    // Every attempt is settled exactly once, unless it is the one out now.
    let mut scheduled = BTreeMap::new();
    for e in history {
        match e {
            HistoryEvent::AttemptScheduled { attempt_id, .. } => {
                scheduled.insert(attempt_id.clone(), 0);
            }
            HistoryEvent::AttemptSucceeded { attempt_id, .. }
            | HistoryEvent::AttemptFailed { attempt_id, .. }
            | HistoryEvent::AttemptTimedOut { attempt_id }
            | HistoryEvent::AttemptAbandoned { attempt_id } => {
                *scheduled.entry(attempt_id.clone()).or_insert(0) += 1;
            }
            _ => {}
        }
    }
    let current = match &case.state.phase {
        Phase::Attempting { attempt_id, .. } => Some(attempt_id.as_str()),
        _ => None,
    };
    for (attempt_id, settled) in &scheduled {
        let expected = usize::from(Some(attempt_id.as_str()) != current);
        assert_eq!(
            *settled, expected,
            "attempt {attempt_id} settled {settled} times"
        );
    }
    if case.state.status.is_active() {
        let step = workflow.step(&case.state.step).expect("step");
        let wait_timers = case
            .state
            .timers
            .values()
            .filter(|t| matches!(t.kind, TimerKind::WaitTimeout { .. }))
            .count();
        let expected = match (&step.kind, &case.state.phase) {
            (StepKind::Wait(w), Phase::Waiting) => usize::from(w.timeout.is_some()),
            _ => 0,
        };
        assert_eq!(wait_timers, expected, "wait timers at {}", case.state.step);
        for (id, d) in &case.state.deadlines {
            let due_timers = case
                .state
                .timers
                .values()
                .filter(
                    |t| matches!(&t.kind, TimerKind::DeadlineDue { deadline } if deadline == id),
                )
                .count();
            let expected = usize::from(d.status == DeadlineStatus::Running);
            assert_eq!(due_timers, expected, "deadline {id} is {:?}", d.status);
        }
        let attempting = matches!(case.state.phase, Phase::Attempting { .. });
        let attempt_timers = case
            .state
            .timers
            .values()
            .filter(|t| matches!(t.kind, TimerKind::AttemptTimeout { .. }))
            .count();
        assert_eq!(attempt_timers, usize::from(attempting));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_event_sequences_keep_the_invariants(actions in proptest::collection::vec(action(), 1..120)) {
        let mut case = Case::start(shanghai(2026, 1, 5, 9), false);
        let mut fired = Vec::new();
        check_invariants(&case);
        for a in &actions {
            run(&mut case, a, &mut fired);
            check_invariants(&case);
        }
    }
}
