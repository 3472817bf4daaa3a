//! Workflow schedules (`schedules:` in a workflow file): at each cron tick,
//! one message listing the cases whose deadline falls due soon.
//!
//! Each schedule's next tick is a row in SQL, not a timer in a process, so
//! that any number of orchestrators can share the work and a tick missed
//! while all of them were down is still noticed. A tick is fired by the
//! orchestrator whose compare-and-set moves the row on
//! ([`Store::claim_schedule`]), in the transaction that records the firing
//! and enqueues its message: fired once, and never lost.
//!
//! - **Catch-up.** When several ticks have passed (every orchestrator was
//!   down), the latest of them is fired, once, and the schedule moves to
//!   the first tick after now: a list of what is due *now* is worth
//!   sending; three stale copies of it are not.
//! - **Working days.** With `working_days_only`, a tick on a day off of
//!   the calendar (the local date in the schedule's time zone) is passed
//!   over without a firing. A tick the calendar cannot classify (a year it
//!   does not cover) is recorded as a failed firing naming the error and
//!   logged: never fired or skipped on a guess.
//! - **The message** lists each due case on its own line, the message
//!   template rendered once per case. Only `case.id` and
//!   `deadline.NAME.due` are filled in; any other placeholder is left
//!   empty, so a sweep never carries a person's data.
//! - **Delivery** is an attempt like a case's (id
//!   `schedule:WORKFLOW:SCHEDULE/TICK/ATTEMPT`), carried by the same
//!   outbox, dispatcher and transport, with the handler's default retry
//!   policy and timeout; its reports come back through
//!   [`Orchestrator::complete`] and move the firing, never a case.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use chrono_tz::Tz;
use docket_workers::contract::{JOB_VERSION, Outcome};
use serde_json::Value;

use super::{Orchestrator, RuntimeError};
use crate::calendar::Calendar;
use crate::definition::Workflow;
use crate::definition::expr::Reference;
use crate::definition::model::{Recipient, Retry, Schedule, StepKind};
use crate::definition::period::Period;
use crate::definition::template::{Piece, Template};
use crate::engine::state::DeadlineStatus;
use crate::engine::values::local_due;
use crate::engine::{CaseState, Data, Job};
use crate::store::schedules::FIRING_ATTEMPT_PREFIX;
use crate::store::{
    ActiveCases, Claim, Claimed, Firing, FiringStatus, FiringUpdate, NewFiring, ScheduleRecord,
    ScheduleSpec, Store,
};

/// How many ticks a catch-up looks back for one on a working day. Past
/// it (a per-second expression after a long outage), nothing is fired.
const CATCH_UP_LOOKBACK: usize = 10_000;

/// The attempt id of a firing's notification. The tick is part of it, so
/// the receiver can drop a repeated delivery of one tick's message.
pub fn attempt_id(workflow: &str, schedule: &str, tick: DateTime<Utc>, attempt: u32) -> String {
    format!(
        "{FIRING_ATTEMPT_PREFIX}{workflow}:{schedule}/{}/{attempt}",
        tick.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

impl<S: Store> Orchestrator<S> {
    /// Makes the stored schedules those of each workflow's latest deployed
    /// version; returns how many are active. Run at start and now and then,
    /// since another orchestrator may deploy a new version.
    pub async fn sync_schedules(&self) -> Result<usize, RuntimeError> {
        let now = self.clock.now();
        let mut active = 0;
        for record in self.store.latest_definitions().await? {
            let workflow = match self.registry.get(&*self.store, record.id).await {
                Ok(w) => w,
                // Its rows stay as they are; firing them records the error.
                Err(e) => {
                    tracing::error!(workflow = %record.name, error = %e, "schedules not synced");
                    continue;
                }
            };
            let specs = specs(&workflow, now);
            active += specs.len();
            self.store.sync_schedules(&record.name, &specs, now).await?;
        }
        Ok(active)
    }

    /// Fires the schedules that are due and moves their notifications on
    /// (timeouts, retries); returns how many changed something. Costs one
    /// query when nothing is due.
    pub async fn fire_due_schedules(&self, limit: u32) -> Result<usize, RuntimeError> {
        let now = self.clock.now();
        match self.store.next_schedule_work().await? {
            Some(at) if at <= now => {}
            _ => return Ok(0),
        }
        let mut done = 0;
        for row in self.store.due_schedules(now, limit).await? {
            match self.fire(&row, now).await {
                Ok(true) => done += 1,
                Ok(false) => {}
                // One schedule must not hold up the others; it is due
                // again next round.
                Err(e) => tracing::error!(
                    workflow = %row.workflow, schedule = %row.schedule, error = %e,
                    "schedule could not fire"
                ),
            }
        }
        for firing in self.store.due_firings(now, limit).await? {
            let update = when_due(&firing, now);
            if self.store.update_firing(&update, now).await? {
                log_update(&firing, &update);
                done += 1;
            }
        }
        Ok(done)
    }

    /// Claims a due schedule's tick: fires it, or passes over a day off.
    /// Returns whether this orchestrator won the claim.
    async fn fire(&self, row: &ScheduleRecord, now: DateTime<Utc>) -> Result<bool, RuntimeError> {
        let Some(expected) = row.next_at.filter(|at| *at <= now) else {
            return Ok(false);
        };
        let claim = |next_at, firing| Claim {
            workflow: row.workflow.clone(),
            schedule: row.schedule.clone(),
            expected,
            next_at,
            firing,
        };
        let (cron, tz) = match parse(&row.cron, &row.timezone) {
            Ok(parsed) => parsed,
            // Only a hand-edited row gets here: stop the schedule, saying why.
            Err(e) => {
                tracing::error!(workflow = %row.workflow, schedule = %row.schedule, error = %e, "schedule stopped");
                let firing = failed(expected, e);
                return self.claimed(row, claim(None, Some(firing)), now).await;
            }
        };
        let next_at = first_after(&cron, tz, now);
        let workflow = match self.latest_workflow(&row.workflow).await {
            Ok(w) => w,
            Err(e) => {
                let tick = latest_tick(&cron, tz, expected, now).unwrap_or(expected);
                let firing = failed(tick, format!("the workflow does not load: {e}"));
                return self.claimed(row, claim(next_at, Some(firing)), now).await;
            }
        };
        let Some(schedule) = workflow.schedules.iter().find(|s| s.id == row.schedule) else {
            // Deployed elsewhere since this process last synced.
            self.sync_schedules().await?;
            return Ok(false);
        };
        let calendar = match &schedule.working_days_of {
            None => Ok(None),
            Some(name) => self
                .calendars
                .get(name)
                .map(Some)
                .ok_or_else(|| format!("calendar `{name}` is not loaded")),
        };
        let choice = match calendar {
            Ok(calendar) => choose_tick(&cron, tz, calendar, expected, now),
            Err(e) => Choice::Unclassified {
                tick: latest_tick(&cron, tz, expected, now).unwrap_or(expected),
                error: e,
            },
        };
        let firing = match choice {
            Choice::None => None,
            Choice::Unclassified { tick, error } => Some(failed(tick, error)),
            Choice::Fire(tick) => {
                let cases = self.store.active_cases(&row.workflow).await?;
                let sweep = Sweep {
                    workflow: &workflow,
                    schedule,
                    calendars: &self.calendars,
                    contacts: &self.contacts,
                };
                Some(sweep.plan(tick, &cases, now))
            }
        };
        self.claimed(row, claim(next_at, firing), now).await
    }

    async fn claimed(
        &self,
        row: &ScheduleRecord,
        claim: Claim,
        now: DateTime<Utc>,
    ) -> Result<bool, RuntimeError> {
        let result = self.store.claim_schedule(&claim, now).await?;
        let (workflow, schedule) = (&row.workflow, &row.schedule);
        let next_at = claim.next_at.map(|t| t.to_rfc3339());
        match (result, &claim.firing) {
            (Claimed::Lost, _) => {
                tracing::debug!(%workflow, %schedule, "another orchestrator fired this tick");
                return Ok(false);
            }
            (Claimed::Won { firing: None }, None) => {
                tracing::info!(%workflow, %schedule, next_at, "tick on a day off passed over");
            }
            (Claimed::Won { firing: None }, Some(f)) => {
                tracing::warn!(%workflow, %schedule, tick = %f.tick_at, "tick already fired; moved on");
            }
            (Claimed::Won { firing: Some(id) }, Some(f)) => match f.status {
                FiringStatus::Failed => tracing::error!(
                    %workflow, %schedule, firing = id, tick = %f.tick_at,
                    error = f.outcome.as_deref().unwrap_or_default(),
                    "schedule fired but could not send"
                ),
                _ => tracing::info!(
                    %workflow, %schedule, firing = id, tick = %f.tick_at, cases = f.cases,
                    status = f.status.as_str(), next_at, "schedule fired"
                ),
            },
            (Claimed::Won { firing: Some(_) }, None) => {}
        }
        Ok(true)
    }

    async fn latest_workflow(&self, name: &str) -> Result<std::sync::Arc<Workflow>, RuntimeError> {
        let record = self
            .store
            .latest_definition(name)
            .await?
            .ok_or_else(|| RuntimeError::UnknownWorkflow(name.to_owned()))?;
        Ok(self.registry.get(&*self.store, record.id).await?)
    }

    /// Applies a worker's report on a firing's notification.
    pub(super) async fn complete_firing(
        &self,
        attempt_id: &str,
        outcome: Outcome,
    ) -> Result<(), RuntimeError> {
        let now = self.clock.now();
        let Some(firing) = self.store.firing_of_attempt(attempt_id).await? else {
            tracing::warn!(attempt = %attempt_id, "report for no known firing dropped");
            return Ok(());
        };
        let current = firing.status == FiringStatus::Sending
            && firing.attempt_id.as_deref() == Some(attempt_id);
        if !current {
            tracing::info!(
                attempt = %attempt_id, firing = firing.id,
                "report ignored: not the notification attempt in progress"
            );
            return Ok(());
        }
        let update = after_report(&firing, attempt_id, &outcome, now);
        if self.store.update_firing(&update, now).await? {
            log_update(&firing, &update);
        } else {
            tracing::info!(attempt = %attempt_id, firing = firing.id, "report ignored: the firing moved on meanwhile");
        }
        Ok(())
    }
}

fn log_update(firing: &Firing, update: &FiringUpdate) {
    let (workflow, schedule) = (&firing.workflow, &firing.schedule);
    let status = update.status.as_str();
    let outcome = update.outcome.as_deref().unwrap_or_default();
    if update.status == FiringStatus::Failed {
        tracing::error!(%workflow, %schedule, firing = firing.id, status, outcome, "schedule's message not delivered");
    } else {
        tracing::info!(%workflow, %schedule, firing = firing.id, status, outcome, "schedule's message");
    }
}

// --- ticks ----------------------------------------------------------------

fn parse(cron: &str, timezone: &str) -> Result<(cron::Schedule, Tz), String> {
    let schedule = cron::Schedule::from_str(cron)
        .map_err(|e| format!("`{cron}` is not a cron expression: {e}"))?;
    let tz = Tz::from_str(timezone).map_err(|_| format!("`{timezone}` is not a time zone"))?;
    Ok((schedule, tz))
}

fn specs(workflow: &Workflow, now: DateTime<Utc>) -> Vec<ScheduleSpec> {
    workflow
        .schedules
        .iter()
        .filter_map(|s| match parse(&s.cron, s.timezone.name()) {
            Ok((cron, tz)) => Some(ScheduleSpec {
                id: s.id.clone(),
                cron: s.cron.clone(),
                timezone: s.timezone.name().to_owned(),
                first_at: first_after(&cron, tz, now),
            }),
            // Validation parsed it already; a definition that no longer
            // parses has its schedule retired rather than guessed at.
            Err(e) => {
                tracing::error!(workflow = %workflow.name, schedule = %s.id, error = %e, "schedule left out");
                None
            }
        })
        .collect()
}

/// The first tick strictly after `after`.
fn first_after(cron: &cron::Schedule, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.after(&after.with_timezone(&tz))
        .next()
        .map(|t| t.with_timezone(&Utc))
}

/// Ticks at or before `at`, latest first.
fn ticks_back(
    cron: &cron::Schedule,
    tz: Tz,
    at: DateTime<Utc>,
) -> impl Iterator<Item = DateTime<Tz>> + '_ {
    // Ticks fall on whole seconds; counting back from the second after
    // `at` includes a tick at `at` itself.
    let whole = at - TimeDelta::nanoseconds(i64::from(at.timestamp_subsec_nanos()));
    let from = (whole + TimeDelta::seconds(1)).with_timezone(&tz);
    cron.after_owned(from).rev()
}

/// The latest tick in `[from, to]`, whatever the day.
fn latest_tick(
    cron: &cron::Schedule,
    tz: Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    ticks_back(cron, tz, to)
        .next()
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| *t >= from)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Choice {
    /// Fire for this tick.
    Fire(DateTime<Utc>),
    /// Every tick in the window fell on a day off.
    None,
    /// The calendar cannot say whether this tick is on a working day.
    Unclassified { tick: DateTime<Utc>, error: String },
}

/// The tick to fire for, of those in `[next_at, now]`: the latest one on
/// a working day (any day without a calendar). Ticks after one the
/// calendar cannot classify are never fired on a guess.
fn choose_tick(
    cron: &cron::Schedule,
    tz: Tz,
    calendar: Option<&Calendar>,
    next_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Choice {
    for tick in ticks_back(cron, tz, now).take(CATCH_UP_LOOKBACK) {
        let at = tick.with_timezone(&Utc);
        if at < next_at {
            return Choice::None;
        }
        let Some(calendar) = calendar else {
            return Choice::Fire(at);
        };
        match calendar.is_working_day(tick.date_naive()) {
            Ok(true) => return Choice::Fire(at),
            Ok(false) => {}
            Err(e) => {
                return Choice::Unclassified {
                    tick: at,
                    error: e.to_string(),
                };
            }
        }
    }
    Choice::None
}

// --- what a firing sends ----------------------------------------------------

fn failed(tick: DateTime<Utc>, error: String) -> NewFiring {
    NewFiring {
        tick_at: tick,
        cases: 0,
        status: FiringStatus::Failed,
        outcome: Some(error),
        job: None,
        due_at: None,
    }
}

/// One schedule of a loaded workflow, with what its sweep reads.
struct Sweep<'a> {
    workflow: &'a Workflow,
    schedule: &'a Schedule,
    calendars: &'a BTreeMap<String, Calendar>,
    contacts: &'a BTreeMap<String, String>,
}

impl Sweep<'_> {
    /// The firing of `tick`: the cases due, and the message listing them.
    fn plan(&self, tick: DateTime<Utc>, cases: &ActiveCases, now: DateTime<Utc>) -> NewFiring {
        let horizon = match self.horizon(tick) {
            Ok(h) => h,
            Err(e) => return failed(tick, e),
        };
        let deadline = &self.schedule.deadline;
        let mut due: Vec<(DateTime<Utc>, &CaseState)> = cases
            .states
            .iter()
            .filter(|s| s.status.is_active())
            .filter_map(|s| {
                let d = s.deadlines.get(deadline)?;
                let due = d.due.filter(|_| d.status == DeadlineStatus::Running)?;
                (due <= horizon).then_some((due, s))
            })
            .collect();
        due.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
        let unread = (!cases.unreadable.is_empty()).then(|| {
            format!(
                "{} case(s) could not be read and were not looked at: {}",
                cases.unreadable.len(),
                cases.unreadable.join(", ")
            )
        });
        if due.is_empty() {
            let mut outcome = format!(
                "no case has `{deadline}` running and due within {} of the tick; nothing sent",
                self.schedule.due_within
            );
            if let Some(u) = unread {
                outcome = format!("{outcome}; {u}");
            }
            return NewFiring {
                tick_at: tick,
                cases: 0,
                status: FiringStatus::NothingDue,
                outcome: Some(outcome),
                job: None,
                due_at: None,
            };
        }
        let listed: Vec<&CaseState> = due.iter().map(|(_, s)| *s).collect();
        match self.job(tick, &listed) {
            Ok(job) => NewFiring {
                tick_at: tick,
                cases: listed.len() as u64,
                status: FiringStatus::Sending,
                outcome: unread,
                due_at: Some(now + delta(job.timeout)),
                job: Some(job),
            },
            Err(e) => NewFiring {
                cases: listed.len() as u64,
                ..failed(tick, e)
            },
        }
    }

    /// The latest due date a case may have to be listed at `tick`.
    fn horizon(&self, tick: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
        match self.schedule.due_within {
            Period::Elapsed(d) => Ok(tick + delta(d)),
            Period::WorkingDays(n) => {
                let name = self.working_calendar().ok_or_else(|| {
                    format!(
                        "`due_within: {}` needs a calendar: give the schedule or the workflow one",
                        self.schedule.due_within
                    )
                })?;
                let cal = self
                    .calendars
                    .get(name)
                    .ok_or_else(|| format!("calendar `{name}` is not loaded"))?;
                let today = tick.with_timezone(&cal.timezone()).date_naive();
                let last = cal.add_working_days(today, n).map_err(|e| e.to_string())?;
                Ok(cal.end_of_day(last))
            }
        }
    }

    /// Working days are counted on the schedule's calendar, else the
    /// deadline's, else the workflow's.
    fn working_calendar(&self) -> Option<&str> {
        let deadline = self
            .workflow
            .step(&self.schedule.deadline)
            .and_then(|s| match &s.kind {
                StepKind::Deadline(d) => d.calendar.as_deref(),
                _ => None,
            });
        self.schedule
            .working_days_of
            .as_deref()
            .or(deadline)
            .or(self.workflow.calendar.as_deref())
    }

    fn job(&self, tick: DateTime<Utc>, cases: &[&CaseState]) -> Result<Job, String> {
        let message = &self.schedule.message;
        let to = match &message.to {
            Recipient::Contact(name) => self
                .contacts
                .get(name)
                .filter(|a| !a.trim().is_empty())
                .cloned()
                .ok_or_else(|| format!("contact `{name}` has no address configured"))?,
            Recipient::Input(field) => {
                return Err(format!(
                    "a schedule's message goes to a contact, not to `input.{field}`: it lists many cases"
                ));
            }
        };
        let tz = self.schedule.timezone;
        let mut params = Data::new();
        params.insert("to".to_owned(), Value::String(to));
        if let Some(subject) = &message.subject {
            params.insert(
                "subject".to_owned(),
                Value::String(render(subject, None, tz)),
            );
        }
        let body: Vec<String> = cases
            .iter()
            .map(|case| render(&message.body, Some(case), tz))
            .collect();
        params.insert("body".to_owned(), Value::String(body.join("\n")));
        let handler = message.channel.handler();
        let spec = docket_workers::catalog::handler(handler);
        Ok(Job {
            version: JOB_VERSION,
            attempt_id: attempt_id(&self.workflow.name, &self.schedule.id, tick, 1),
            // A firing's job belongs to no case.
            case_id: String::new(),
            step: self.schedule.id.clone(),
            attempt: 1,
            handler: handler.to_owned(),
            queue: spec.map_or("notify", |h| h.default_queue).to_owned(),
            params,
            timeout: spec.map_or(Duration::from_secs(30), |h| h.default_timeout),
        })
    }
}

/// Renders a template for one listed case (`None`: for none, as the
/// subject is). Only the case's id and its deadlines' due dates (in the
/// schedule's time zone) are filled in: whatever else a placeholder names
/// may be a person's data, and stays out of a message about many cases.
fn render(template: &Template, case: Option<&CaseState>, tz: Tz) -> String {
    template
        .pieces
        .iter()
        .map(|piece| match (piece, case) {
            (Piece::Text(t), _) => t.clone(),
            (Piece::Value(Reference::CaseId), Some(case)) => case.id.clone(),
            (Piece::Value(Reference::Due(deadline)), Some(case)) => case
                .deadlines
                .get(deadline)
                .and_then(|d| d.due)
                .map(|due| local_due(due, tz))
                .unwrap_or_default(),
            (Piece::Value(_), _) => String::new(),
        })
        .collect()
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

// --- delivery -----------------------------------------------------------------

/// The handler's default retry policy: a sweep's message is retried like
/// a notify step's.
fn policy(handler: &str) -> Retry {
    let (max_attempts, initial, multiplier, max) = docket_workers::catalog::handler(handler)
        .map_or((1, Duration::ZERO, 1.0, Duration::ZERO), |h| {
            let r = h.default_retry;
            (r.max_attempts, r.initial, r.multiplier, r.max)
        });
    Retry {
        max_attempts,
        initial,
        multiplier,
        max,
        non_retryable: Vec::new(),
    }
}

fn handler_of(firing: &Firing) -> &str {
    firing.job.as_ref().map_or("", |j| j.handler.as_str())
}

/// A change of `firing` from where it is now, to be completed.
fn update(firing: &Firing, status: FiringStatus, outcome: Option<String>) -> FiringUpdate {
    FiringUpdate {
        id: firing.id,
        expected_status: firing.status,
        expected_attempt: firing.attempt,
        status,
        outcome,
        due_at: None,
        finish_attempt: None,
        enqueue: None,
    }
}

/// The current attempt failed (`code`) or timed out: retried after the
/// policy's backoff, or the firing fails once the attempts are spent.
fn after_failure(
    firing: &Firing,
    code: &str,
    detail: String,
    retryable: bool,
    retry_after: Option<Duration>,
    now: DateTime<Utc>,
) -> FiringUpdate {
    let policy = policy(handler_of(firing));
    let attempt = firing.attempt;
    if retryable && attempt < policy.max_attempts {
        let wait = policy.backoff(attempt).max(retry_after.unwrap_or_default());
        FiringUpdate {
            due_at: Some(now + delta(wait)),
            ..update(
                firing,
                FiringStatus::Retrying,
                Some(format!("attempt {attempt} failed: {code}")),
            )
        }
    } else {
        update(
            firing,
            FiringStatus::Failed,
            Some(format!("attempt {attempt} failed: {detail}")),
        )
    }
}

/// A worker reported on the firing's current attempt.
fn after_report(
    firing: &Firing,
    attempt_id: &str,
    outcome: &Outcome,
    now: DateTime<Utc>,
) -> FiringUpdate {
    let mut change = match outcome {
        Outcome::Succeeded { outcome, .. } => {
            update(firing, FiringStatus::Sent, Some(outcome.clone()))
        }
        Outcome::Failed {
            code,
            message,
            retryable,
            retry_after_secs,
        } => after_failure(
            firing,
            code,
            format!("{code}: {message}"),
            *retryable,
            retry_after_secs.map(Duration::from_secs),
            now,
        ),
    };
    change.finish_attempt = Some(attempt_id.to_owned());
    change
}

/// The firing's `due_at` passed: its attempt timed out, or its next
/// attempt is to start.
fn when_due(firing: &Firing, now: DateTime<Utc>) -> FiringUpdate {
    match firing.status {
        FiringStatus::Retrying => match &firing.job {
            Some(job) => {
                let attempt = firing.attempt + 1;
                let next = Job {
                    attempt,
                    attempt_id: attempt_id(
                        &firing.workflow,
                        &firing.schedule,
                        firing.tick_at,
                        attempt,
                    ),
                    ..job.clone()
                };
                FiringUpdate {
                    due_at: Some(now + delta(next.timeout)),
                    enqueue: Some(next),
                    ..update(firing, FiringStatus::Sending, firing.outcome.clone())
                }
            }
            None => update(
                firing,
                FiringStatus::Failed,
                Some("the message to retry is missing".to_owned()),
            ),
        },
        _ => {
            let mut change = after_failure(
                firing,
                "timeout",
                "timeout: no report in time".to_owned(),
                true,
                None,
                now,
            );
            change.finish_attempt = firing.attempt_id.clone();
            change
        }
    }
}

#[cfg(test)]
mod tests;
