//! The transitions. A [`Machine`] holds the state being changed and
//! collects history and effects; each command is one method.

use std::time::Duration;

use chrono::{DateTime, Utc};
use docket_workers::catalog::FAILED_OUTCOME;
use docket_workers::contract::{JOB_VERSION, Outcome};
use serde_json::Value;

use super::state::{CaseState, Data, Phase, Received, Status, StepResult, Timer, TimerKind};
use super::values::{check, eval, holds, render_in};
use super::{Command, Context, Decision, Effect, HistoryEvent, Job, Rejection};
use crate::definition::model::{Message, Recipient, Retry, Step, StepKind, Task};
use crate::definition::period::Period;
use crate::privacy::marker;

mod deadlines;
mod follow_ups;
mod materials;

pub use deadlines::Extension;
pub use materials::Material;

/// Guards against a definition that loops without waiting (validation
/// refuses those; this keeps a bad stored definition from hanging a worker
/// thread).
const MAX_STEPS_PER_DECISION: usize = 1_000;

/// Starts a case: checks its input and runs it up to its first wait or job.
pub fn start(ctx: Context<'_>, case_id: &str, mut input: Data) -> Result<Decision, Rejection> {
    check(&ctx.workflow.input, &input, "case input")?;
    marker::mark(&ctx.workflow.input, &mut input);
    let state = CaseState {
        id: case_id.to_owned(),
        workflow: ctx.workflow.name.clone(),
        version: ctx.workflow.version,
        status: Status::Active,
        step: ctx.workflow.start().id.clone(),
        entry: 0,
        phase: Phase::Waiting,
        input: input.clone(),
        events: Default::default(),
        results: Default::default(),
        deadlines: Default::default(),
        timers: Default::default(),
        side_jobs: Default::default(),
        started_at: ctx.now,
        updated_at: ctx.now,
    };
    let mut m = Machine::new(ctx, state);
    m.record(HistoryEvent::CaseStarted {
        workflow: ctx.workflow.name.clone(),
        version: ctx.workflow.version,
        input,
    });
    let first = ctx.workflow.start().id.clone();
    m.enter(&first)?;
    Ok(m.finish())
}

/// Applies one command to a case.
pub fn decide(
    ctx: Context<'_>,
    state: &CaseState,
    command: Command,
) -> Result<Decision, Rejection> {
    let mut m = Machine::new(ctx, state.clone());
    match command {
        Command::Signal { event, data } => m.signal(&event, data)?,
        Command::Complete {
            attempt_id,
            outcome,
        } => m.complete(&attempt_id, outcome)?,
        Command::FireTimer { timer_id } => m.fire(&timer_id)?,
        Command::Cancel { reason } => m.cancel(reason)?,
        Command::RetryStep { reason } => m.retry_step(reason)?,
        Command::ExtendDeadline(extension) => {
            m.ensure_active()?;
            m.extend(extension)?
        }
        Command::RecordMaterial(material) => m.record_material(material)?,
    }
    Ok(m.finish())
}

struct Machine<'a> {
    ctx: Context<'a>,
    state: CaseState,
    history: Vec<HistoryEvent>,
    effects: Vec<Effect>,
}

impl<'a> Machine<'a> {
    fn new(ctx: Context<'a>, state: CaseState) -> Self {
        Machine {
            ctx,
            state,
            history: Vec::new(),
            effects: Vec::new(),
        }
    }

    fn finish(mut self) -> Decision {
        if !self.history.is_empty() {
            self.state.updated_at = self.ctx.now;
        }
        Decision {
            state: self.state,
            history: self.history,
            effects: self.effects,
        }
    }

    fn record(&mut self, event: HistoryEvent) {
        self.history.push(event);
    }

    fn step(&self, id: &str) -> Result<&'a Step, Rejection> {
        self.ctx
            .workflow
            .step(id)
            .ok_or_else(|| Rejection::BrokenDefinition {
                step: id.to_owned(),
            })
    }

    fn ensure_active(&self) -> Result<(), Rejection> {
        if self.state.status.is_active() {
            Ok(())
        } else {
            Err(Rejection::Finished {
                status: self.state.status.label(),
            })
        }
    }

    // --- timers -------------------------------------------------------

    fn set_timer(&mut self, id: String, due: DateTime<Utc>, kind: TimerKind) {
        let timer = Timer {
            id: id.clone(),
            case_id: self.state.id.clone(),
            due,
            kind,
        };
        self.state.timers.insert(id, timer.clone());
        self.effects.push(Effect::SetTimer(timer));
    }

    fn cancel_timers(&mut self, which: impl Fn(&TimerKind) -> bool) {
        let ids: Vec<String> = self
            .state
            .timers
            .values()
            .filter(|t| which(&t.kind))
            .map(|t| t.id.clone())
            .collect();
        for id in ids {
            self.state.timers.remove(&id);
            self.effects.push(Effect::CancelTimer { timer_id: id });
        }
    }

    /// Timers that belong to the current step, not to the case.
    fn cancel_step_timers(&mut self) {
        self.cancel_timers(|k| {
            matches!(
                k,
                TimerKind::AttemptTimeout { .. }
                    | TimerKind::Retry { .. }
                    | TimerKind::WaitTimeout { .. }
            )
        });
    }

    /// When a period counted from now ends.
    fn after(&self, period: Period, calendar: Option<&str>) -> Result<DateTime<Utc>, String> {
        match period {
            Period::Elapsed(d) => Ok(self.ctx.now + chrono_duration(d)),
            Period::WorkingDays(n) => {
                let cal = self.calendar(calendar)?;
                let today = self.ctx.now.with_timezone(&cal.timezone()).date_naive();
                let last = cal.add_working_days(today, n).map_err(|e| e.to_string())?;
                Ok(cal.end_of_day(last))
            }
        }
    }

    /// Dates in messages and follow-ups are local to the workflow's calendar.
    fn timezone(&self) -> chrono_tz::Tz {
        self.ctx
            .workflow
            .calendar
            .as_deref()
            .and_then(|c| self.ctx.calendars.get(c))
            .map_or(chrono_tz::Tz::UTC, |c| c.timezone())
    }

    fn calendar(&self, name: Option<&str>) -> Result<&'a crate::calendar::Calendar, String> {
        let name = name.ok_or("no calendar is named for a working-day period")?;
        self.ctx
            .calendars
            .get(name)
            .ok_or_else(|| format!("calendar `{name}` is not loaded"))
    }

    // --- moving between steps ------------------------------------------

    /// Leaves the current step and enters `target`, then keeps going through
    /// steps that complete at once (branches, deadlines, ends) until the
    /// case waits or has a job out.
    fn enter(&mut self, target: &str) -> Result<(), Rejection> {
        let mut next = Some(target.to_owned());
        let mut count = 0;
        while let Some(id) = next.take() {
            count += 1;
            if count > MAX_STEPS_PER_DECISION {
                return Err(Rejection::BrokenDefinition { step: id });
            }
            let step = self.step(&id)?;
            self.abandon_attempt();
            self.cancel_step_timers();
            self.resume_deadlines_left(&id);
            self.state.step = id.clone();
            self.state.entry += 1;
            self.record(HistoryEvent::StepEntered {
                step: id.clone(),
                entry: self.state.entry,
            });
            self.touch_deadlines(&id);
            next = match &step.kind {
                StepKind::Task(task) => {
                    self.schedule_task(task, 1);
                    None
                }
                StepKind::Notify(notify) => {
                    self.schedule_message(&notify.message, 1);
                    None
                }
                StepKind::Wait(wait) => {
                    self.state.phase = Phase::Waiting;
                    if let Some(timeout) = &wait.timeout {
                        match self.after(timeout.after, timeout.calendar.as_deref()) {
                            Ok(due) => {
                                let entry = self.state.entry;
                                let id = format!("{}:{entry}:wait-timeout", self.state.id);
                                self.set_timer(id, due, TimerKind::WaitTimeout { entry });
                            }
                            // Validation makes this unreachable for loaded
                            // calendars; a year not covered is the one
                            // real cause, and then the case waits for its event.
                            Err(error) => self.record(HistoryEvent::DeadlineNotCounted {
                                deadline: format!("{id} timeout"),
                                error,
                            }),
                        }
                    }
                    None
                }
                StepKind::Deadline(deadline) => {
                    self.start_deadline(&id, deadline);
                    Some(deadline.next.clone())
                }
                StepKind::Branch(branch) => {
                    let taken = branch
                        .cases
                        .iter()
                        .find(|(cond, _)| holds(&self.state, cond));
                    let (condition, target) = match taken {
                        Some((cond, target)) => (Some(cond.to_string()), target.clone()),
                        None => (None, branch.otherwise.clone()),
                    };
                    self.record(HistoryEvent::BranchTaken {
                        step: id.clone(),
                        condition,
                        next: target.clone(),
                    });
                    Some(target)
                }
                StepKind::End(end) => {
                    self.close(Status::Completed {
                        outcome: end.outcome.clone(),
                    });
                    self.record(HistoryEvent::CaseCompleted {
                        outcome: end.outcome.clone(),
                    });
                    self.start_follow_ups(&end.outcome);
                    self.start_retention();
                    None
                }
            };
        }
        Ok(())
    }

    /// Records that the attempt in progress, if any, no longer matters.
    fn abandon_attempt(&mut self) {
        if let Phase::Attempting { attempt_id, .. } = &self.state.phase {
            let attempt_id = attempt_id.clone();
            self.state.phase = Phase::Waiting;
            self.record(HistoryEvent::AttemptAbandoned { attempt_id });
        }
    }

    /// Ends the case: no timer survives it.
    fn close(&mut self, status: Status) {
        self.abandon_attempt();
        self.state.status = status;
        self.state.phase = Phase::Finished;
        self.cancel_timers(|_| true);
    }

    fn attempt_id(&self, attempt: u32) -> String {
        format!(
            "{}/{}/{}/{attempt}",
            self.state.id, self.state.step, self.state.entry
        )
    }

    fn schedule_task(&mut self, task: &Task, attempt: u32) {
        let mut params: Data = task
            .with
            .iter()
            .map(|(name, expr)| (name.clone(), eval(&self.state, expr)))
            .collect();
        let needs_materials =
            docket_workers::catalog::handler(&task.handler).is_some_and(|h| h.needs_materials);
        if let (true, Some(rules)) = (needs_materials, &self.ctx.workflow.materials) {
            params.insert(
                "rules".to_owned(),
                serde_json::to_value(rules).unwrap_or(Value::Null),
            );
        }
        self.schedule(&task.handler, &task.queue, params, task.timeout, attempt);
    }

    fn schedule_message(&mut self, message: &Message, attempt: u32) {
        let (handler, queue, params, timeout) = self.message_job(message);
        self.schedule(handler, queue, params, timeout, attempt);
    }

    /// The handler, queue, parameters and timeout of a message's job.
    fn message_job(&self, message: &Message) -> (&'static str, &'static str, Data, Duration) {
        let to = match &message.to {
            Recipient::Input(field) => self
                .state
                .input
                .get(field)
                .map_or(Value::Null, marker::plain),
            Recipient::Contact(name) => self
                .ctx
                .contacts
                .get(name)
                .map_or(Value::Null, |a| Value::String(a.clone())),
        };
        let mut params = Data::new();
        params.insert("to".to_owned(), to);
        if let Some(subject) = &message.subject {
            params.insert(
                "subject".to_owned(),
                Value::String(render_in(&self.state, subject, self.timezone())),
            );
        }
        params.insert(
            "body".to_owned(),
            Value::String(render_in(&self.state, &message.body, self.timezone())),
        );
        let handler = message.channel.handler();
        let spec = docket_workers::catalog::handler(handler);
        let timeout = spec.map_or(Duration::from_secs(30), |h| h.default_timeout);
        let queue = spec.map_or("notify", |h| h.default_queue);
        (handler, queue, params, timeout)
    }

    fn schedule(
        &mut self,
        handler: &str,
        queue: &str,
        params: Data,
        timeout: Duration,
        attempt: u32,
    ) {
        let attempt_id = self.attempt_id(attempt);
        self.record(HistoryEvent::AttemptScheduled {
            step: self.state.step.clone(),
            attempt_id: attempt_id.clone(),
            attempt,
            handler: handler.to_owned(),
            queue: queue.to_owned(),
        });
        self.effects.push(Effect::Enqueue(Job {
            version: JOB_VERSION,
            attempt_id: attempt_id.clone(),
            case_id: self.state.id.clone(),
            step: self.state.step.clone(),
            attempt,
            handler: handler.to_owned(),
            queue: queue.to_owned(),
            params,
            timeout,
        }));
        let due = self.ctx.now + chrono_duration(timeout);
        self.set_timer(
            format!("{attempt_id}:timeout"),
            due,
            TimerKind::AttemptTimeout {
                attempt_id: attempt_id.clone(),
            },
        );
        self.state.phase = Phase::Attempting {
            attempt,
            attempt_id,
        };
    }

    // --- commands -------------------------------------------------------

    fn signal(&mut self, event: &str, data: Data) -> Result<(), Rejection> {
        self.ensure_active()?;
        let Some(declared) = self.ctx.workflow.event(event) else {
            return Err(Rejection::UnknownEvent {
                event: event.to_owned(),
                workflow: self.ctx.workflow.name.clone(),
            });
        };
        let step = self.step(&self.state.step)?;
        let target = match (&step.kind, &self.state.phase) {
            (StepKind::Wait(wait), Phase::Waiting) => wait.events.get(event).cloned(),
            _ => None,
        };
        let Some(target) = target else {
            let expected = match (&step.kind, &self.state.phase) {
                (StepKind::Wait(wait), Phase::Waiting) => wait.events.keys().cloned().collect(),
                _ => Vec::new(),
            };
            return Err(Rejection::NotWaitingFor {
                event: event.to_owned(),
                step: self.state.step.clone(),
                expected,
            });
        };
        check(&declared.data, &data, &format!("event `{event}`"))?;
        let mut data = data;
        marker::mark(&declared.data, &mut data);
        self.state.events.insert(
            event.to_owned(),
            Received {
                at: self.ctx.now,
                data: data.clone(),
            },
        );
        self.record(HistoryEvent::SignalReceived {
            event: event.to_owned(),
            data,
        });
        self.enter(&target)
    }

    fn complete(&mut self, attempt_id: &str, outcome: Outcome) -> Result<(), Rejection> {
        if self.state.side_jobs.remove(attempt_id).is_some() {
            let label = match &outcome {
                Outcome::Succeeded { outcome, .. } => outcome.clone(),
                Outcome::Failed { code, .. } => format!("failed: {code}"),
            };
            self.record(HistoryEvent::SideJobFinished {
                attempt_id: attempt_id.to_owned(),
                outcome: label,
            });
            return Ok(());
        }
        let current = match &self.state.phase {
            Phase::Attempting {
                attempt,
                attempt_id: id,
            } if id == attempt_id && self.state.status.is_active() => Some(*attempt),
            _ => None,
        };
        let Some(attempt) = current else {
            let reason = if self.state.status.is_active() {
                "not the attempt in progress (a duplicate, or it timed out or was superseded)"
            } else {
                "the case has ended"
            };
            self.record(HistoryEvent::CompletionIgnored {
                attempt_id: attempt_id.to_owned(),
                reason: reason.to_owned(),
            });
            return Ok(());
        };
        self.cancel_timers(
            |k| matches!(k, TimerKind::AttemptTimeout { attempt_id: a } if a == attempt_id),
        );
        // The attempt is settled here, whatever comes next.
        self.state.phase = Phase::Waiting;
        let step = self.step(&self.state.step)?;
        match outcome {
            Outcome::Succeeded { outcome, output } => {
                let routed = match &step.kind {
                    StepKind::Task(task) => task
                        .on
                        .get(&outcome)
                        .filter(|_| outcome != FAILED_OUTCOME)
                        .cloned(),
                    StepKind::Notify(notify) if outcome == "sent" => Some(notify.next.clone()),
                    _ => None,
                };
                let Some(next) = routed else {
                    // A handler reporting an outcome it never declared is a
                    // bug in the handler: retrying will not fix it.
                    self.record(HistoryEvent::AttemptFailed {
                        attempt_id: attempt_id.to_owned(),
                        code: "unknown_outcome".to_owned(),
                        message: format!("the handler reported outcome `{outcome}`, which the step does not route"),
                        retryable: false,
                    });
                    return self.exhausted(step, attempt, format!("unknown outcome `{outcome}`"));
                };
                self.record(HistoryEvent::AttemptSucceeded {
                    attempt_id: attempt_id.to_owned(),
                    outcome: outcome.clone(),
                });
                self.state
                    .results
                    .insert(step.id.clone(), StepResult { outcome, output });
                self.enter(&next)
            }
            Outcome::Failed {
                code,
                message,
                retryable,
                retry_after_secs,
            } => {
                self.record(HistoryEvent::AttemptFailed {
                    attempt_id: attempt_id.to_owned(),
                    code: code.clone(),
                    message: message.clone(),
                    retryable,
                });
                self.failed_attempt(
                    step,
                    attempt,
                    &code,
                    retryable,
                    retry_after_secs.map(Duration::from_secs),
                )
            }
        }
    }

    fn retry_policy(step: &Step) -> Retry {
        match &step.kind {
            StepKind::Task(task) => task.retry.clone(),
            _ => {
                let d = docket_workers::catalog::handler("notify.email").map(|h| h.default_retry);
                Retry {
                    max_attempts: d.map_or(5, |d| d.max_attempts),
                    initial: d.map_or(Duration::from_secs(10), |d| d.initial),
                    multiplier: d.map_or(2.0, |d| d.multiplier),
                    max: d.map_or(Duration::from_secs(3600), |d| d.max),
                    non_retryable: Vec::new(),
                }
            }
        }
    }

    fn failed_attempt(
        &mut self,
        step: &'a Step,
        attempt: u32,
        code: &str,
        retryable: bool,
        retry_after: Option<Duration>,
    ) -> Result<(), Rejection> {
        let retry = Self::retry_policy(step);
        let permanent = !retryable || retry.non_retryable.iter().any(|c| c == code);
        if permanent || attempt >= retry.max_attempts {
            let why = if permanent {
                format!("permanent failure `{code}`")
            } else {
                format!("all {attempt} attempts failed, the last with `{code}`")
            };
            return self.exhausted(step, attempt, why);
        }
        let delay = retry.backoff(attempt).max(retry_after.unwrap_or_default());
        let at = self.ctx.now + chrono_duration(delay);
        let next = attempt + 1;
        let id = format!("{}:retry", self.attempt_id(next));
        self.set_timer(id, at, TimerKind::Retry { attempt: next });
        self.state.phase = Phase::BackingOff { attempt: next };
        self.record(HistoryEvent::RetryScheduled {
            step: step.id.clone(),
            attempt: next,
            at,
        });
        Ok(())
    }

    /// No attempt is left: take the `failed` route, or wait for an operator.
    fn exhausted(&mut self, step: &'a Step, attempts: u32, error: String) -> Result<(), Rejection> {
        self.record(HistoryEvent::StepFailed {
            step: step.id.clone(),
            attempts,
            error: error.clone(),
        });
        self.state.results.insert(
            step.id.clone(),
            StepResult {
                outcome: FAILED_OUTCOME.to_owned(),
                output: Data::new(),
            },
        );
        let route = match &step.kind {
            StepKind::Task(task) => task.on.get(FAILED_OUTCOME).cloned(),
            StepKind::Notify(notify) => notify.on_failure.clone(),
            _ => None,
        };
        match route {
            Some(next) => self.enter(&next),
            None => {
                self.state.phase = Phase::Failed { attempts, error };
                Ok(())
            }
        }
    }

    fn fire(&mut self, timer_id: &str) -> Result<(), Rejection> {
        // A timer that is no longer set was cancelled by an earlier
        // decision: firing it changes nothing.
        let Some(timer) = self.state.timers.remove(timer_id) else {
            return Ok(());
        };
        // Follow-ups and erasure are what an ended case still does.
        match &timer.kind {
            TimerKind::FollowUp { follow_up, n } => {
                self.send_follow_up(follow_up, *n);
                return Ok(());
            }
            TimerKind::Retention => {
                self.erase_personal_data();
                return Ok(());
            }
            _ => {}
        }
        if !self.state.status.is_active() {
            return Ok(());
        }
        match timer.kind {
            TimerKind::AttemptTimeout { attempt_id } => {
                let attempt = match &self.state.phase {
                    Phase::Attempting {
                        attempt,
                        attempt_id: id,
                    } if *id == attempt_id => *attempt,
                    _ => return Ok(()),
                };
                self.record(HistoryEvent::AttemptTimedOut {
                    attempt_id: attempt_id.clone(),
                });
                self.state.phase = Phase::Waiting;
                let step = self.step(&self.state.step)?;
                self.failed_attempt(step, attempt, "timeout", true, None)
            }
            TimerKind::Retry { attempt } => {
                let step = self.step(&self.state.step)?;
                match &step.kind {
                    StepKind::Task(task) => self.schedule_task(task, attempt),
                    StepKind::Notify(notify) => self.schedule_message(&notify.message, attempt),
                    _ => {}
                }
                Ok(())
            }
            TimerKind::WaitTimeout { entry } => {
                let step = self.step(&self.state.step)?;
                match (&step.kind, entry == self.state.entry) {
                    (StepKind::Wait(wait), true) => match &wait.timeout {
                        Some(timeout) => {
                            self.record(HistoryEvent::WaitTimedOut {
                                step: step.id.clone(),
                            });
                            self.enter(&timeout.next)
                        }
                        None => Ok(()),
                    },
                    _ => Ok(()),
                }
            }
            TimerKind::DeadlineDue { deadline } => self.expire(&deadline),
            TimerKind::DeadlineReminder { deadline, index } => {
                self.remind(&deadline, index);
                Ok(())
            }
            // Handled above, whatever the case's status.
            TimerKind::FollowUp { .. } | TimerKind::Retention => Ok(()),
        }
    }

    /// Sets the timer that erases an ended case's personal data, if the
    /// workflow keeps it for a limited time.
    fn start_retention(&mut self) {
        let Some(retention) = self.ctx.workflow.retention else {
            return;
        };
        let erase_at = self.ctx.now + chrono_duration(retention);
        self.set_timer(
            format!("{}:retention", self.state.id),
            erase_at,
            TimerKind::Retention,
        );
        self.record(HistoryEvent::RetentionScheduled { erase_at });
    }

    /// Replaces every personal value of the case by the erased marker. The
    /// store throws the case's key away with this decision, which makes the
    /// copies in its history unreadable too. Follow-ups stop: nobody is
    /// left to send them to.
    fn erase_personal_data(&mut self) {
        let mut values = 0;
        for value in self.state.input.values_mut() {
            values += marker::erase(value);
        }
        for received in self.state.events.values_mut() {
            for value in received.data.values_mut() {
                values += marker::erase(value);
            }
        }
        self.cancel_timers(|kind| matches!(kind, TimerKind::FollowUp { .. }));
        self.record(HistoryEvent::PersonalDataErased { values });
    }

    fn cancel(&mut self, reason: String) -> Result<(), Rejection> {
        self.ensure_active()?;
        self.close(Status::Cancelled {
            reason: reason.clone(),
        });
        self.record(HistoryEvent::CaseCancelled { reason });
        self.start_retention();
        Ok(())
    }

    fn retry_step(&mut self, reason: String) -> Result<(), Rejection> {
        self.ensure_active()?;
        if !matches!(self.state.phase, Phase::Failed { .. }) {
            return Err(Rejection::NotFailed {
                step: self.state.step.clone(),
            });
        }
        let step = self.state.step.clone();
        self.record(HistoryEvent::StepRetried {
            step: step.clone(),
            reason,
        });
        self.enter(&step)
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
