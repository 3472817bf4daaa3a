//! What an ended case still does: the reminders of its follow-ups, one
//! before each anniversary of the anchoring event.

use super::Machine;
use crate::calendar::start_of_day;
use crate::definition::model::FollowUp;
use crate::engine::state::{DeadlineState, DeadlineStatus, TimerKind};
use crate::engine::{Effect, HistoryEvent, Job};
use docket_workers::contract::JOB_VERSION;

impl<'a> Machine<'a> {
    /// Arms the first reminder of each follow-up for this outcome.
    pub(super) fn start_follow_ups(&mut self, outcome: &str) {
        for follow_up in &self.ctx.workflow.follow_ups {
            if follow_up.when_outcome == outcome {
                self.arm_follow_up(follow_up, 1);
            }
        }
    }

    /// Sets the reminder before anniversary `n`. The anniversary is kept as
    /// the case's deadline of the follow-up's name, so messages can say
    /// `deadline.ID.due`. A case without the anchoring event has nothing to
    /// count from and gets no follow-up.
    fn arm_follow_up(&mut self, follow_up: &'a FollowUp, n: u32) {
        let Some(anchor) = self.state.events.get(&follow_up.anchor).map(|e| e.at) else {
            return;
        };
        let tz = self.timezone();
        let anchor_day = anchor.with_timezone(&tz).date_naive();
        let Some((anniversary, remind_day)) = follow_up
            .anniversary(anchor_day, n)
            .and_then(|a| Some((a, follow_up.reminder_day(a)?)))
        else {
            return;
        };
        let due = start_of_day(tz, anniversary);
        // A case closed late (its first window already open) is reminded now.
        let remind_at = start_of_day(tz, remind_day).max(self.ctx.now);
        self.state.deadlines.insert(
            follow_up.id.clone(),
            DeadlineState {
                started_at: anchor,
                due: Some(due),
                status: DeadlineStatus::Running,
                extended_to: None,
                pauses: Vec::new(),
                reminders_sent: n - 1,
            },
        );
        self.set_timer(
            format!("{}:follow_up:{}", self.state.id, follow_up.id),
            remind_at,
            TimerKind::FollowUp {
                follow_up: follow_up.id.clone(),
                n,
            },
        );
        self.record(HistoryEvent::FollowUpScheduled {
            follow_up: follow_up.id.clone(),
            n,
            remind_at,
            due,
        });
    }

    pub(super) fn send_follow_up(&mut self, id: &str, n: u32) {
        let Some(follow_up) = self.ctx.workflow.follow_ups.iter().find(|f| f.id == id) else {
            return;
        };
        let attempt_id = format!("{}/{id}/{n}/1", self.state.id);
        let (handler, queue, params, timeout) = self.message_job(&follow_up.message);
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
        self.state
            .side_jobs
            .insert(attempt_id.clone(), id.to_owned());
        if let Some(d) = self.state.deadlines.get_mut(id) {
            d.reminders_sent = n;
        }
        self.record(HistoryEvent::FollowUpSent {
            follow_up: id.to_owned(),
            n,
            attempt_id,
        });
        if follow_up.times.is_none_or(|times| n < times) {
            self.arm_follow_up(follow_up, n + 1);
        }
    }
}
