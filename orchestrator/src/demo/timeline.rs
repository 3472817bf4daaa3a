//! A case's history as a timeline people can read: time, step, what
//! happened, attempt, outcome. Personal data in the history (the input,
//! event data) is never printed.

use std::io::{self, Write};

use chrono_tz::Asia::Shanghai;

use crate::definition::Workflow;
use crate::engine::HistoryEvent;
use crate::store::HistoryRecord;

/// Writes one line per history event.
pub fn write(
    out: &mut dyn Write,
    workflow: &Workflow,
    history: &[HistoryRecord],
) -> io::Result<()> {
    writeln!(
        out,
        "  {:<16}  {:<28}  {:<34}  {:>7}  outcome",
        "time", "step", "event", "attempt"
    )?;
    let mut step = String::new();
    for record in history {
        let (what, attempt, outcome) = describe(&record.event, workflow, &mut step);
        let time = record.at.with_timezone(&Shanghai).format("%Y-%m-%d %H:%M");
        let attempt = attempt.map(|a| a.to_string()).unwrap_or_default();
        writeln!(
            out,
            "  {time:<16}  {:<28}  {what:<34}  {attempt:>7}  {outcome}",
            truncate(&step, 28)
        )?;
    }
    Ok(())
}

fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(width - 1).collect();
        t.push('…');
        t
    }
}

/// A deadline falls due at the end of its last day: say which day that is.
fn due_text(due: chrono::DateTime<chrono::Utc>) -> String {
    let local = due.with_timezone(&Shanghai);
    if local.format("%H:%M:%S").to_string() == "00:00:00" {
        let last = local.date_naive().pred_opt().unwrap_or(local.date_naive());
        format!("by the end of {last}")
    } else {
        local.format("%Y-%m-%d %H:%M").to_string()
    }
}

/// The attempt number at the end of an attempt id (`case/step/entry/n`).
fn attempt_of(attempt_id: &str) -> Option<u32> {
    attempt_id.rsplit('/').next().and_then(|n| n.parse().ok())
}

fn describe(
    event: &HistoryEvent,
    workflow: &Workflow,
    step: &mut String,
) -> (String, Option<u32>, String) {
    use HistoryEvent as E;
    match event {
        E::CaseStarted {
            workflow: name,
            version,
            ..
        } => (
            format!("case started ({name} v{version})"),
            None,
            String::new(),
        ),
        E::StepEntered { step: s, .. } => {
            step.clone_from(s);
            let title = workflow
                .step(s)
                .and_then(|st| st.title.clone())
                .unwrap_or_default();
            ("entered".to_owned(), None, title)
        }
        E::AttemptScheduled {
            attempt, handler, ..
        } => (
            format!("job {handler}"),
            Some(*attempt),
            "scheduled".to_owned(),
        ),
        E::AttemptSucceeded {
            attempt_id,
            outcome,
        } => (
            "job done".to_owned(),
            attempt_of(attempt_id),
            outcome.clone(),
        ),
        E::AttemptFailed {
            attempt_id,
            code,
            retryable,
            ..
        } => (
            "job failed".to_owned(),
            attempt_of(attempt_id),
            format!("{code}{}", if *retryable { " (retryable)" } else { "" }),
        ),
        E::AttemptTimedOut { attempt_id } => (
            "job timed out".to_owned(),
            attempt_of(attempt_id),
            String::new(),
        ),
        E::AttemptAbandoned { attempt_id } => (
            "job abandoned".to_owned(),
            attempt_of(attempt_id),
            String::new(),
        ),
        E::RetryScheduled { attempt, at, .. } => (
            "retry scheduled".to_owned(),
            Some(*attempt),
            format!("at {}", at.with_timezone(&Shanghai).format("%H:%M:%S")),
        ),
        E::StepFailed {
            attempts, error, ..
        } => ("step failed".to_owned(), Some(*attempts), error.clone()),
        E::SignalReceived { event, .. } => (format!("event {event}"), None, String::new()),
        E::WaitTimedOut { .. } => ("wait timed out".to_owned(), None, String::new()),
        E::BranchTaken {
            condition, next, ..
        } => (
            "branch".to_owned(),
            None,
            match condition {
                Some(c) => format!("{c} → {next}"),
                None => format!("otherwise → {next}"),
            },
        ),
        E::DeadlineStarted { deadline, due, .. } => (
            format!("deadline {deadline}"),
            None,
            format!("due {}", due_text(*due)),
        ),
        E::DeadlineExtended {
            deadline,
            limit,
            due,
            ..
        } => (
            format!("deadline {deadline}"),
            None,
            format!("extended to {limit}, due {}", due_text(*due)),
        ),
        E::FollowUpScheduled {
            follow_up,
            remind_at,
            due,
            ..
        } => (
            format!("follow-up {follow_up}"),
            None,
            format!(
                "reminder on {}, due {}",
                remind_at.with_timezone(&Shanghai).format("%Y-%m-%d"),
                due_text(*due)
            ),
        ),
        E::RetentionScheduled { erase_at } => (
            "retention".to_owned(),
            None,
            format!(
                "personal data kept until {}",
                erase_at.with_timezone(&Shanghai).format("%Y-%m-%d")
            ),
        ),
        E::PersonalDataErased { values } => (
            "personal data erased".to_owned(),
            None,
            format!("{values} values"),
        ),
        E::MaterialUploaded {
            kind,
            media_type,
            size,
            ..
        } => (
            format!("material {kind}"),
            None,
            format!("uploaded, {media_type}, {size} bytes"),
        ),
        E::FollowUpSent { follow_up, n, .. } => (
            format!("follow-up {follow_up}"),
            Some(*n),
            "reminder sent".to_owned(),
        ),
        E::DeadlineNotCounted { deadline, error } => (
            format!("deadline {deadline}"),
            None,
            format!("not counted: {error}"),
        ),
        E::DeadlinePaused { deadline } => {
            (format!("deadline {deadline}"), None, "paused".to_owned())
        }
        E::DeadlineResumed { deadline, due } => (
            format!("deadline {deadline}"),
            None,
            format!("resumed, due {}", due_text(*due)),
        ),
        E::DeadlineMet { deadline } => (format!("deadline {deadline}"), None, "met".to_owned()),
        E::DeadlineExpired { deadline, next } => (
            format!("deadline {deadline}"),
            None,
            format!("expired → {next}"),
        ),
        E::ReminderScheduled { deadline, .. } => (
            format!("reminder for {deadline}"),
            None,
            "scheduled".to_owned(),
        ),
        E::SideJobFinished { outcome, .. } => ("reminder done".to_owned(), None, outcome.clone()),
        E::CompletionIgnored { attempt_id, reason } => (
            "duplicate report ignored".to_owned(),
            attempt_of(attempt_id),
            reason.clone(),
        ),
        E::StepRetried { reason, .. } => ("operator retried step".to_owned(), None, reason.clone()),
        E::CaseCompleted { outcome } => ("case completed".to_owned(), None, outcome.clone()),
        E::CaseCancelled { reason } => ("case cancelled".to_owned(), None, reason.clone()),
    }
}
