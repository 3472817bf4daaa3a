//! Statutory clocks: starting, meeting, pausing and resuming deadlines, their
//! reminders, and what expiry does to the case.

use chrono::{DateTime, NaiveDate, Utc};

use super::{Machine, chrono_duration};
use crate::definition::model::{Deadline, StepKind};
use crate::definition::period::Period;
use crate::engine::state::{DeadlineState, DeadlineStatus, TimerKind};
use crate::engine::{Effect, HistoryEvent, Job, Rejection};
use docket_workers::contract::JOB_VERSION;

impl<'a> Machine<'a> {
    pub(super) fn start_deadline(&mut self, id: &str, deadline: &Deadline) {
        // The clock runs from the starting event; a case that reaches the
        // step without it (an unusual path) starts the clock now.
        let started_at = self
            .state
            .events
            .get(&deadline.started_by)
            .map_or(self.ctx.now, |e| e.at);
        self.cancel_timers(|k| match k {
            TimerKind::DeadlineDue { deadline: d }
            | TimerKind::DeadlineReminder { deadline: d, .. } => d == id,
            _ => false,
        });
        match self.due_date(deadline, started_at) {
            Ok(due) => {
                self.state.deadlines.insert(
                    id.to_owned(),
                    DeadlineState {
                        started_at,
                        due: Some(due),
                        status: DeadlineStatus::Running,
                    },
                );
                self.record(HistoryEvent::DeadlineStarted {
                    deadline: id.to_owned(),
                    started_at,
                    due,
                });
                self.arm_deadline(id, deadline, due);
            }
            Err(error) => {
                self.state.deadlines.insert(
                    id.to_owned(),
                    DeadlineState {
                        started_at,
                        due: None,
                        status: DeadlineStatus::Uncounted {
                            error: error.clone(),
                        },
                    },
                );
                self.record(HistoryEvent::DeadlineNotCounted {
                    deadline: id.to_owned(),
                    error,
                });
            }
        }
    }

    /// The instant a deadline falls due: the end of its last day, counted
    /// from the day after it started.
    fn due_date(
        &self,
        deadline: &Deadline,
        started_at: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, String> {
        let calendar = deadline
            .calendar
            .as_deref()
            .map(|c| self.calendar(Some(c)))
            .transpose()?;
        let start_day = |tz: chrono_tz::Tz| started_at.with_timezone(&tz).date_naive();
        match (deadline.limit, calendar) {
            (Period::WorkingDays(n), Some(cal)) => {
                let last = cal
                    .add_working_days(start_day(cal.timezone()), n)
                    .map_err(|e| e.to_string())?;
                Ok(cal.end_of_day(last))
            }
            (limit, Some(cal)) => {
                let days = limit.whole_days().unwrap_or(0);
                let last = cal
                    .add_days(start_day(cal.timezone()), days, deadline.roll_forward)
                    .map_err(|e| e.to_string())?;
                Ok(cal.end_of_day(last))
            }
            (Period::WorkingDays(_), None) => {
                Err("a working-day deadline needs a calendar".to_owned())
            }
            (limit, None) => {
                let days = i64::from(limit.whole_days().unwrap_or(0));
                let last: NaiveDate = started_at.date_naive() + chrono::Duration::days(days);
                let next = last.succ_opt().unwrap_or(last);
                Ok(next
                    .and_hms_opt(0, 0, 0)
                    .map_or(started_at, |t| t.and_utc()))
            }
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

    /// Leaving a step where a deadline was paused starts its clock again,
    /// with the time it had left.
    pub(super) fn resume_deadlines_left(&mut self, entering: &str) {
        let paused: Vec<(String, DateTime<Utc>, DateTime<Utc>)> = self
            .state
            .deadlines
            .iter()
            .filter_map(|(id, d)| match (&d.status, d.due) {
                (DeadlineStatus::Paused { since }, Some(due)) => Some((id.clone(), *since, due)),
                _ => None,
            })
            .collect();
        for (id, since, due) in paused {
            let Some(def) = self.deadline_def(&id) else {
                continue;
            };
            if def.paused_at.iter().any(|s| s == entering) {
                continue;
            }
            let new_due = due + (self.ctx.now - since);
            if let Some(d) = self.state.deadlines.get_mut(&id) {
                d.status = DeadlineStatus::Running;
                d.due = Some(new_due);
            }
            self.record(HistoryEvent::DeadlineResumed {
                deadline: id.clone(),
                due: new_due,
            });
            self.arm_deadline(&id, def, new_due);
        }
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
        let attempt_id = format!("{}/{id}/reminder-{index}/1", self.state.id);
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
