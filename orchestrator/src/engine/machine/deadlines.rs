//! Statutory clocks: starting, meeting, pausing, resuming and extending
//! deadlines, their reminders, and what expiry does to the case.

use chrono::{DateTime, Utc};

use super::{Machine, chrono_duration};
use crate::calendar::Calendar;
use crate::definition::model::{Deadline, StepKind};
use crate::definition::period::Period;
use crate::engine::state::{DeadlineState, DeadlineStatus, Pause, TimerKind};
use crate::engine::{Effect, HistoryEvent, Job, Rejection};
use docket_workers::contract::JOB_VERSION;

/// What an operator asks of a running deadline.
#[derive(Debug, Clone, PartialEq)]
pub struct Extension {
    pub deadline: String,
    /// The new limit in total, counted from the start as the original was.
    pub to: Period,
    pub reason: String,
    pub legal_basis: String,
}

impl<'a> Machine<'a> {
    pub(super) fn start_deadline(&mut self, id: &str, deadline: &Deadline) {
        // The clock runs from the starting event; a case that reaches the
        // step without it (an unusual path) starts the clock now.
        let started_at = self
            .state
            .events
            .get(&deadline.started_by)
            .map_or(self.ctx.now, |e| e.at);
        self.cancel_deadline_timers(id);
        let mut state = DeadlineState {
            started_at,
            due: None,
            status: DeadlineStatus::Running,
            extended_to: None,
            pauses: Vec::new(),
            reminders_sent: 0,
        };
        match self.due_date(deadline, &state) {
            Ok(due) => {
                state.due = Some(due);
                self.state.deadlines.insert(id.to_owned(), state);
                self.record(HistoryEvent::DeadlineStarted {
                    deadline: id.to_owned(),
                    started_at,
                    due,
                });
                self.arm_deadline(id, deadline, due);
            }
            Err(error) => {
                state.status = DeadlineStatus::Uncounted {
                    error: error.clone(),
                };
                self.state.deadlines.insert(id.to_owned(), state);
                self.record(HistoryEvent::DeadlineNotCounted {
                    deadline: id.to_owned(),
                    error,
                });
            }
        }
    }

    /// The instant a deadline falls due: the end of its last day, counted
    /// from the day after it started, with the (possibly extended) limit,
    /// and moved later by its finished pauses.
    fn due_date(
        &self,
        deadline: &Deadline,
        state: &DeadlineState,
    ) -> Result<DateTime<Utc>, String> {
        let limit = state.extended_to.unwrap_or(deadline.limit);
        let calendar = deadline
            .calendar
            .as_deref()
            .map(|c| self.calendar(Some(c)))
            .transpose()?;
        match calendar {
            Some(cal) => {
                let day = |at: DateTime<Utc>| at.with_timezone(&cal.timezone()).date_naive();
                let start = day(state.started_at);
                let last = match limit {
                    Period::WorkingDays(n) => {
                        let paused = paused_days(cal, state, true)?;
                        cal.add_working_days(start, n.saturating_add(paused))
                    }
                    _ => {
                        let days = limit.whole_days().unwrap_or(0);
                        let paused = paused_days(cal, state, false)?;
                        cal.add_days(start, days.saturating_add(paused), deadline.roll_forward)
                    }
                }
                .map_err(|e| e.to_string())?;
                Ok(cal.end_of_day(last))
            }
            None => match limit {
                Period::WorkingDays(_) => Err("a working-day deadline needs a calendar".to_owned()),
                Period::Elapsed(d) => {
                    // Without a calendar the limit counts in days from the
                    // end of the start day (UTC), and pauses in exact time.
                    let start_day_end = state
                        .started_at
                        .date_naive()
                        .succ_opt()
                        .and_then(|d| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()));
                    let paused: chrono::Duration = state.pauses.iter().map(|p| p.to - p.from).sum();
                    Ok(start_day_end.unwrap_or(state.started_at) + chrono_duration(d) + paused)
                }
            },
        }
    }

    fn arm_deadline(&mut self, id: &str, deadline: &Deadline, due: DateTime<Utc>) {
        self.set_timer(
            format!("{}:deadline:{id}", self.state.id),
            due,
            TimerKind::DeadlineDue {
                deadline: id.to_owned(),
            },
        );
        for (index, reminder) in deadline.reminders.iter().enumerate() {
            let at = match reminder.before {
                Period::Elapsed(d) => Some(due - chrono_duration(d)),
                Period::WorkingDays(n) => self
                    .calendar(deadline.calendar.as_deref())
                    .ok()
                    .and_then(|cal| {
                        let due_day = (due - chrono::Duration::seconds(1))
                            .with_timezone(&cal.timezone())
                            .date_naive();
                        let day = cal.sub_working_days(due_day, n).ok()?;
                        // The start of that working day.
                        Some(cal.end_of_day(day.pred_opt()?))
                    }),
            };
            if let Some(at) = at.filter(|at| *at > self.ctx.now) {
                self.set_timer(
                    format!("{}:deadline:{id}:reminder:{index}", self.state.id),
                    at,
                    TimerKind::DeadlineReminder {
                        deadline: id.to_owned(),
                        index,
                    },
                );
            }
        }
    }

    fn deadline_def(&self, id: &str) -> Option<&'a Deadline> {
        match &self.ctx.workflow.step(id)?.kind {
            StepKind::Deadline(d) => Some(d),
            _ => None,
        }
    }

    fn cancel_deadline_timers(&mut self, id: &str) {
        self.cancel_timers(|k| match k {
            TimerKind::DeadlineDue { deadline } | TimerKind::DeadlineReminder { deadline, .. } => {
                deadline == id
            }
            _ => false,
        });
    }

    /// Entering a step may meet or pause running deadlines.
    pub(super) fn touch_deadlines(&mut self, step: &str) {
        let running: Vec<String> = self
            .state
            .deadlines
            .iter()
            .filter(|(_, d)| {
                matches!(
                    d.status,
                    DeadlineStatus::Running | DeadlineStatus::Paused { .. }
                )
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in running {
            let Some(def) = self.deadline_def(&id) else {
                continue;
            };
            if def.met_at.iter().any(|s| s == step) {
                self.cancel_deadline_timers(&id);
                if let Some(d) = self.state.deadlines.get_mut(&id) {
                    d.status = DeadlineStatus::Met { at: self.ctx.now };
                }
                self.record(HistoryEvent::DeadlineMet { deadline: id });
            } else if def.paused_at.iter().any(|s| s == step) {
                let running = self
                    .state
                    .deadlines
                    .get(&id)
                    .is_some_and(|d| d.status == DeadlineStatus::Running);
                if running {
                    self.cancel_deadline_timers(&id);
                    if let Some(d) = self.state.deadlines.get_mut(&id) {
                        d.status = DeadlineStatus::Paused {
                            since: self.ctx.now,
                        };
                    }
                    self.record(HistoryEvent::DeadlinePaused { deadline: id });
                }
            }
        }
    }

    /// Leaving a step where a deadline was paused starts its clock again;
    /// the pause is kept as a fact and the due date derived anew.
    pub(super) fn resume_deadlines_left(&mut self, entering: &str) {
        let paused: Vec<(String, DateTime<Utc>)> = self
            .state
            .deadlines
            .iter()
            .filter_map(|(id, d)| match d.status {
                DeadlineStatus::Paused { since } => Some((id.clone(), since)),
                _ => None,
            })
            .collect();
        for (id, since) in paused {
            let Some(def) = self.deadline_def(&id) else {
                continue;
            };
            if def.paused_at.iter().any(|s| s == entering) {
                continue;
            }
            let Some(mut state) = self.state.deadlines.get(&id).cloned() else {
                continue;
            };
            state.pauses.push(Pause {
                from: since,
                to: self.ctx.now,
            });
            state.status = DeadlineStatus::Running;
            match self.due_date(def, &state) {
                Ok(due) => {
                    state.due = Some(due);
                    self.state.deadlines.insert(id.clone(), state);
                    self.record(HistoryEvent::DeadlineResumed {
                        deadline: id.clone(),
                        due,
                    });
                    self.arm_deadline(&id, def, due);
                }
                Err(error) => {
                    state.status = DeadlineStatus::Uncounted {
                        error: error.clone(),
                    };
                    self.state.deadlines.insert(id.clone(), state);
                    self.record(HistoryEvent::DeadlineNotCounted {
                        deadline: id,
                        error,
                    });
                }
            }
        }
    }

    /// An operator extends a running or paused deadline, with a reason and
    /// the legal basis for it, never past the workflow's cap.
    pub(super) fn extend(&mut self, extension: Extension) -> Result<(), Rejection> {
        let Extension {
            deadline: id,
            to,
            reason,
            legal_basis,
        } = extension;
        let refuse = |problem: String| Rejection::ExtensionRefused {
            deadline: id.clone(),
            problem,
        };
        let def = self
            .deadline_def(&id)
            .ok_or_else(|| refuse("the workflow has no deadline step of that name".to_owned()))?;
        if reason.trim().is_empty() || legal_basis.trim().is_empty() {
            return Err(refuse(
                "an extension needs both a reason and its legal basis".to_owned(),
            ));
        }
        let cap = def.extension_cap.ok_or_else(|| {
            refuse("the workflow does not allow this deadline to be extended".to_owned())
        })?;
        let mut state = self
            .state
            .deadlines
            .get(&id)
            .cloned()
            .ok_or_else(|| refuse("its clock has not started".to_owned()))?;
        match state.status {
            DeadlineStatus::Running | DeadlineStatus::Paused { .. } => {}
            DeadlineStatus::Met { .. } => return Err(refuse("it has been met".to_owned())),
            DeadlineStatus::Expired { .. } => {
                return Err(refuse("it has already expired".to_owned()));
            }
            DeadlineStatus::Uncounted { .. } => {
                return Err(refuse(
                    "its due date could not be counted; fix the calendar first".to_owned(),
                ));
            }
        }
        let current = state.extended_to.unwrap_or(def.limit);
        if to.is_working_days() != current.is_working_days() {
            return Err(refuse(format!(
                "`{to}` is not counted like the limit `{current}`"
            )));
        }
        if to.min_days() <= current.min_days() {
            return Err(refuse(format!(
                "`{to}` is not longer than the current limit `{current}`"
            )));
        }
        if to.min_days() > cap.min_days() {
            return Err(refuse(format!(
                "`{to}` is past the most the workflow allows, `{cap}` in total"
            )));
        }
        state.extended_to = Some(to);
        let due = self.due_date(def, &state).map_err(refuse)?;
        state.due = Some(due);
        let running = state.status == DeadlineStatus::Running;
        self.state.deadlines.insert(id.clone(), state);
        self.record(HistoryEvent::DeadlineExtended {
            deadline: id.clone(),
            limit: to.to_string(),
            due,
            reason,
            legal_basis,
        });
        if running {
            self.cancel_deadline_timers(&id);
            self.arm_deadline(&id, def, due);
        }
        Ok(())
    }

    pub(super) fn expire(&mut self, id: &str) -> Result<(), Rejection> {
        let Some(def) = self.deadline_def(id) else {
            return Ok(());
        };
        self.cancel_deadline_timers(id);
        if let Some(d) = self.state.deadlines.get_mut(id) {
            d.status = DeadlineStatus::Expired { at: self.ctx.now };
        }
        self.record(HistoryEvent::DeadlineExpired {
            deadline: id.to_owned(),
            next: def.on_expiry.clone(),
        });
        // Whatever the case was doing is superseded: an attempt still out
        // will find its completion ignored.
        self.enter(&def.on_expiry)
    }

    /// Sends a deadline reminder: a job beside the step, not an attempt of
    /// it, so it neither moves the case nor is retried.
    pub(super) fn remind(&mut self, id: &str, index: usize) {
        let Some(reminder) = self.deadline_def(id).and_then(|d| d.reminders.get(index)) else {
            return;
        };
        let sent = match self.state.deadlines.get_mut(id) {
            Some(d) => {
                d.reminders_sent += 1;
                d.reminders_sent
            }
            None => return,
        };
        let attempt_id = format!("{}/{id}/reminder-{index}/{sent}", self.state.id);
        let (handler, queue, params, timeout) = self.message_job(&reminder.message);
        self.effects.push(Effect::Enqueue(Job {
            version: JOB_VERSION,
            attempt_id: attempt_id.clone(),
            case_id: self.state.id.clone(),
            step: id.to_owned(),
            attempt: 1,
            handler: handler.to_owned(),
            queue: queue.to_owned(),
            params,
            timeout,
        }));
        self.record(HistoryEvent::ReminderScheduled {
            deadline: id.to_owned(),
            attempt_id: attempt_id.clone(),
        });
        self.state.side_jobs.insert(attempt_id, id.to_owned());
    }
}

/// Days inside finished pauses that do not count: those after the day a
/// pause began up to the day it ended, inclusive — working days for a
/// working-day limit, calendar days otherwise.
fn paused_days(cal: &Calendar, state: &DeadlineState, working: bool) -> Result<u32, String> {
    let day = |at: DateTime<Utc>| at.with_timezone(&cal.timezone()).date_naive();
    let mut total: i64 = 0;
    for pause in &state.pauses {
        let (from, to) = (day(pause.from), day(pause.to));
        total += if working {
            cal.working_days_between(from, to)
                .map_err(|e| e.to_string())?
        } else {
            (to - from).num_days()
        };
    }
    Ok(u32::try_from(total.max(0)).unwrap_or(u32::MAX))
}
