//! Statutory clocks through whole cases: the worked examples, reminders
//! and expiry, pauses while the case waits on the applicant, extensions,
//! and the yearly follow-up of an issued permit.

use docket_workers::contract::Outcome;
use serde_json::json;

use super::*;

/// A collected permit is endorsed yearly (Art. 10): the holder is reminded
/// when the month before each anniversary of collection opens.
#[test]
fn an_issued_permit_is_followed_up_before_each_anniversary() {
    let mut c = accepted_case(shanghai(2026, 2, 10, 10));
    c.now = shanghai(2026, 2, 20, 10);
    c.signal("permit_ready", json!({}));
    c.succeed("sent");
    c.now = shanghai(2026, 3, 31, 15);
    c.signal("permit_collected", json!({}));
    let jobs_before = c.jobs.len();
    // Anniversary 2027-03-31; its window opens on the last day of February.
    c.advance_to(shanghai(2027, 2, 27, 23));
    assert_eq!(c.jobs.len(), jobs_before, "nothing before the window");
    c.advance_to(shanghai(2027, 2, 28, 0));
    let reminder = c.last_job().clone();
    assert_eq!(reminder.handler, "notify.webhook");
    assert_eq!(reminder.params["to"], "o-applicant");
    let body = reminder.params["body"].as_str().unwrap_or_default();
    assert!(body.contains("endorsed by 2027-03-30"), "{body}");
    // The reminder is a side job of the ended case: its report is recorded.
    c.apply(Command::Complete {
        attempt_id: reminder.attempt_id.clone(),
        outcome: Outcome::succeeded("sent"),
    })
    .expect("report");
    assert_eq!(c.kinds().last(), Some(&"side_job_finished"));
    // And the next year's.
    c.advance_to(shanghai(2028, 3, 1, 0));
    let next = c.last_job();
    assert_ne!(next.attempt_id, reminder.attempt_id);
    let body = next.params["body"].as_str().unwrap_or_default();
    assert!(body.contains("endorsed by 2028-03-30"), "{body}");
    assert!(matches!(
        c.state.status,
        Status::Completed { ref outcome } if outcome == "issued"
    ));
    // A refused case is not followed up: only its retention runs.
    let mut refused = accepted_case(shanghai(2026, 2, 10, 10));
    refused.signal("application_refused", json!({"reason": "not resident"}));
    refused.succeed("sent");
    assert!(
        refused
            .state
            .timers
            .values()
            .all(|t| t.kind == TimerKind::Retention),
        "{:?}",
        refused.state.timers
    );
}

#[test]
fn statutory_clocks_follow_the_published_worked_examples() {
    // Accepted 2026-02-10: 15 calendar days end 2026-02-25; 15 working days end 2026-03-09.
    let c = accepted_case(shanghai(2026, 2, 10, 10));
    assert_eq!(
        c.due("issuance_limit").as_deref(),
        Some("2026-02-26T00:00:00+08:00")
    );
    assert_eq!(
        c.due("notice_promise").as_deref(),
        Some("2026-03-10T00:00:00+08:00")
    );
    // Accepted 2026-09-25: day 15 is a make-up Saturday (a working day); 15 working days end 2026-10-22.
    let c = accepted_case(shanghai(2026, 9, 25, 10));
    assert_eq!(
        c.due("issuance_limit").as_deref(),
        Some("2026-10-11T00:00:00+08:00")
    );
    assert_eq!(
        c.due("notice_promise").as_deref(),
        Some("2026-10-23T00:00:00+08:00")
    );
}

#[test]
fn a_missed_deadline_escalates_and_reminds_first() {
    let mut c = accepted_case(shanghai(2026, 2, 10, 10));
    // 3 working days before the end of 2026-02-25 is the start of 2026-02-20.
    c.advance_to(shanghai(2026, 2, 20, 1));
    let reminder = c.last_job().clone();
    assert!(reminder.attempt_id.contains("/issuance_limit/reminder-0/"));
    assert_eq!(reminder.params["to"], "station@example.test");
    assert_eq!(
        c.state.step, "await_permit",
        "a reminder does not move the case"
    );
    c.apply(Command::Complete {
        attempt_id: reminder.attempt_id,
        outcome: Outcome::succeeded("sent"),
    })
    .expect("reminder sent");
    c.advance_to(shanghai(2026, 2, 26, 0));
    assert!(c.kinds().contains(&"deadline_expired"));
    assert_eq!(c.state.step, "escalate_issuance_overdue");
    assert_eq!(c.last_job().params["to"], "supervisor@example.test");
    c.succeed("sent");
    assert_eq!(c.state.step, "await_permit");
    // The case can still finish normally.
    c.signal("permit_ready", json!({}));
    c.succeed("sent");
    c.signal("permit_collected", json!({}));
    assert_eq!(
        c.state.status,
        Status::Completed {
            outcome: "issued".into()
        }
    );
}

fn extension(to: &str, reason: &str, basis: &str) -> Command {
    Command::ExtendDeadline(Extension {
        deadline: "issuance_limit".into(),
        to: crate::definition::period::Period::parse(to).expect("period"),
        reason: reason.into(),
        legal_basis: basis.into(),
    })
}

#[test]
fn waiting_on_the_applicant_pauses_both_clocks_by_whole_days() {
    let mut c = accepted_case(shanghai(2026, 2, 10, 10));
    c.now = shanghai(2026, 3, 2, 10);
    c.signal("supplement_requested", json!({"missing": "lease contract"}));
    assert_eq!(c.state.step, "notify_supplement_requested");
    assert!(matches!(
        c.state.deadlines["issuance_limit"].status,
        DeadlineStatus::Paused { .. }
    ));
    // The station's reminders and the expiry must not fire while paused.
    let due_timers = c
        .state
        .timers
        .values()
        .filter(|t| matches!(t.kind, TimerKind::DeadlineDue { .. }))
        .count();
    assert_eq!(due_timers, 0);
    c.succeed("sent");
    assert_eq!(c.state.step, "await_supplement");
    // Submitted three days later (Mon 2 Mar → Thu 5 Mar): 3 calendar days
    // and 3 working days do not count.
    c.now = shanghai(2026, 3, 5, 16);
    c.signal("supplement_submitted", materials());
    assert_eq!(c.state.step, "await_permit");
    assert_eq!(
        c.due("issuance_limit").as_deref(),
        Some("2026-03-01T00:00:00+08:00"),
        "2026-02-25 + 3 days, a Saturday, rolls forward to Monday 2026-03-02"
    );
    assert_eq!(
        c.due("notice_promise").as_deref(),
        Some("2026-03-13T00:00:00+08:00"),
        "2026-03-09 + 3 working days"
    );
    let kinds = c.kinds();
    assert_eq!(kinds.iter().filter(|k| **k == "deadline_paused").count(), 2);
    assert_eq!(
        kinds.iter().filter(|k| **k == "deadline_resumed").count(),
        2
    );
}

#[test]
fn an_extension_needs_reason_and_basis_and_stays_within_the_cap() {
    let mut c = accepted_case(shanghai(2026, 2, 10, 10));
    for (to, reason, basis, problem) in [
        (
            "31days",
            "remote area",
            "Art. 9",
            "past the most the workflow allows",
        ),
        (
            "10days",
            "remote area",
            "Art. 9",
            "not longer than the current limit",
        ),
        (
            "20 working days",
            "remote area",
            "Art. 9",
            "not counted like the limit",
        ),
        (
            "30days",
            "",
            "Art. 9",
            "needs both a reason and its legal basis",
        ),
        (
            "30days",
            "remote area",
            " ",
            "needs both a reason and its legal basis",
        ),
    ] {
        let refused = c.apply(extension(to, reason, basis)).expect_err(to);
        assert!(refused.to_string().contains(problem), "{to}: {refused}");
    }
    let before = c.state.clone();
    c.apply(extension(
        "30days",
        "remote area",
        "Art. 9; city rule 2024-7",
    ))
    .expect("extend");
    assert_ne!(c.state, before);
    assert_eq!(
        c.due("issuance_limit").as_deref(),
        Some("2026-03-13T00:00:00+08:00"),
        "30 days after 2026-02-10"
    );
    assert!(matches!(
        c.history.last(),
        Some(HistoryEvent::DeadlineExtended { limit, reason, legal_basis, .. })
            if limit == "30days" && reason == "remote area" && legal_basis.starts_with("Art. 9")
    ));
    // The timers follow the new due date.
    let due_timer = c
        .state
        .timers
        .values()
        .find(|t| matches!(t.kind, TimerKind::DeadlineDue { .. } if t.id.contains("issuance")))
        .expect("due timer");
    assert_eq!(due_timer.due, shanghai(2026, 3, 13, 0));
    // Once at the cap, nothing further is allowed.
    assert!(c.apply(extension("30days", "again", "Art. 9")).is_err());
    // A deadline that was met cannot be extended.
    c.signal("permit_ready", json!({}));
    let refused = c
        .apply(extension("30days", "late", "Art. 9"))
        .expect_err("met");
    assert!(refused.to_string().contains("met"), "{refused}");
}

#[test]
fn an_extended_deadline_reminds_again_for_its_new_due_date() {
    let mut c = accepted_case(shanghai(2026, 2, 10, 10));
    c.advance_to(shanghai(2026, 2, 20, 1));
    let first = c.last_job().attempt_id.clone();
    assert!(first.ends_with("/reminder-0/1"), "{first}");
    c.apply(extension("30days", "special circumstances", "Art. 9"))
        .expect("extend");
    c.advance_to(shanghai(2026, 3, 12, 0));
    let reminders: Vec<&str> = c
        .jobs
        .iter()
        .map(|j| j.attempt_id.as_str())
        .filter(|id| id.contains("/issuance_limit/reminder-0/"))
        .collect();
    assert_eq!(
        reminders,
        [first.as_str(), "case-1/issuance_limit/reminder-0/2"]
    );
    let issuance_expired = |c: &Case| {
        c.history.iter().any(|e| {
            matches!(e, HistoryEvent::DeadlineExpired { deadline, .. } if deadline == "issuance_limit")
        })
    };
    assert!(!issuance_expired(&c));
    c.advance_to(shanghai(2026, 3, 13, 0));
    assert!(issuance_expired(&c));
}
