//! What writing a decision changes, worked out once for both databases:
//! the history rows and their numbers, the jobs it schedules, the attempts
//! it settles, and how the `timers` table follows the state.

use chrono::{DateTime, TimeDelta, Utc};

use super::rows::CaseRow;
use super::{CaseRecord, StoreError, finished_attempts, status_columns};
use crate::audit::chain::{EventContent, GENESIS, event_hash, stored_time};
use crate::engine::{CaseState, Decision, Effect, HistoryEvent, Job, Rejection, Timer};
use crate::privacy::{CaseKey, DataKeys, marker, seal};

/// The rows one decision writes for one case.
#[derive(Debug)]
pub(super) struct Write<'a> {
    pub(super) case_id: &'a str,
    pub(super) state: &'a CaseState,
    pub(super) status: &'static str,
    pub(super) outcome: Option<&'a str>,
    /// Each event with its seq, continuing the case's numbering.
    pub(super) events: Vec<(i64, &'a HistoryEvent)>,
    /// The seq the event after these will get.
    pub(super) next_seq: i64,
    pub(super) jobs: Vec<&'a Job>,
    pub(super) finished: Vec<&'a str>,
    /// Every timer of the new state. The state is the truth: the case's
    /// rows for timers not listed here are deleted (a fired timer leaves
    /// the state without a `CancelTimer` effect).
    pub(super) timers: Vec<TimerWrite<'a>>,
    /// The case's data key, which seals its personal values; none once
    /// they are erased.
    pub(super) key: Option<&'a CaseKey>,
    /// Whether this decision erases the case's personal data: its key is
    /// then thrown away.
    pub(super) erases: bool,
}

/// Whose job an attempt is: a case's step, or a schedule's firing.
#[derive(Debug, Clone, Copy)]
pub(super) enum JobOwner<'a> {
    Case(&'a str),
    Firing(i64),
}

/// History rows ready to insert, and the case's head after them.
#[derive(Debug)]
pub(super) struct Sealed {
    /// The time every row gets, as the database keeps it.
    pub(super) at: DateTime<Utc>,
    pub(super) rows: Vec<SealedEvent>,
    pub(super) head: String,
}

#[derive(Debug)]
pub(super) struct SealedEvent {
    pub(super) seq: i64,
    pub(super) kind: &'static str,
    pub(super) payload: serde_json::Value,
    pub(super) hash: String,
}

#[derive(Debug)]
pub(super) struct TimerWrite<'a> {
    pub(super) timer: &'a Timer,
    /// Set or moved by this decision. An unchanged timer's row is only
    /// created if missing, so a due time pushed at dispatch survives.
    pub(super) changed: bool,
}

impl<'a> Write<'a> {
    /// `previous` is the state the decision was made against (none for a
    /// new case); `next_seq` is the seq the first event gets.
    pub(super) fn new(
        case_id: &'a str,
        decision: &'a Decision,
        previous: Option<&CaseState>,
        next_seq: i64,
        key: Option<&'a CaseKey>,
    ) -> Self {
        let (status, outcome) = status_columns(&decision.state);
        let events: Vec<(i64, &HistoryEvent)> = (next_seq..).zip(&decision.history).collect();
        let timers = decision
            .state
            .timers
            .values()
            .map(|timer| TimerWrite {
                timer,
                changed: previous.and_then(|p| p.timers.get(&timer.id)) != Some(timer),
            })
            .collect();
        Write {
            case_id,
            state: &decision.state,
            status,
            outcome,
            next_seq: next_seq + events.len() as i64,
            events,
            jobs: decision
                .effects
                .iter()
                .filter_map(|e| match e {
                    Effect::Enqueue(job) => Some(job),
                    _ => None,
                })
                .collect(),
            finished: finished_attempts(decision).collect(),
            timers,
            key,
            erases: decision
                .history
                .iter()
                .any(|e| matches!(e, HistoryEvent::PersonalDataErased { .. })),
        }
    }

    /// The new state as stored: its personal values sealed.
    pub(super) fn stored_state(&self) -> Result<serde_json::Value, StoreError> {
        let mut state = serde_json::to_value(self.state).map_err(|source| StoreError::Corrupt {
            what: format!("state of case {}", self.case_id),
            source,
        })?;
        seal::seal_markers(&mut state, self.key, self.case_id, "state")?;
        Ok(state)
    }

    /// The decision's history rows, each with its hash chained from
    /// `previous` (the case's head; none for a new case), and the new head.
    pub(super) fn sealed(
        &self,
        previous: Option<&str>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Sealed, StoreError> {
        let at = stored_time(now);
        let mut head = previous.unwrap_or(GENESIS).to_owned();
        let mut rows = Vec::with_capacity(self.events.len());
        for (seq, event) in &self.events {
            let mut payload =
                serde_json::to_value(event).map_err(|source| StoreError::Corrupt {
                    what: format!("event {seq} of case {}", self.case_id),
                    source,
                })?;
            // The chain covers the ciphertext, so erasing the key later
            // leaves every hash as it was.
            seal::seal_markers(
                &mut payload,
                self.key,
                self.case_id,
                &format!("history/{seq}"),
            )?;
            let hash = event_hash(
                &head,
                &EventContent {
                    case_id: self.case_id,
                    seq: *seq,
                    at,
                    actor,
                    kind: event.kind(),
                    payload: &payload,
                },
            );
            head.clone_from(&hash);
            rows.push(SealedEvent {
                seq: *seq,
                kind: event.kind(),
                payload,
                hash,
            });
        }
        Ok(Sealed { at, rows, head })
    }

    /// The ids of the timers the case keeps.
    pub(super) fn timer_ids(&self) -> Vec<String> {
        self.timers.iter().map(|t| t.timer.id.clone()).collect()
    }
}

/// A locked case's decision, worked out and sealed, ready to write.
#[derive(Debug)]
pub(super) struct Decided {
    pub(super) case_id: String,
    pub(super) previous: CaseState,
    pub(super) decision: Decision,
    pub(super) key: Option<CaseKey>,
    /// The case's first data key, wrapped: a case begun before the
    /// database kept keys gets one when it first has personal data.
    pub(super) new_key: Option<String>,
    /// The seq of the decision's first event.
    pub(super) first_seq: i64,
    /// The new state as stored.
    pub(super) state: serde_json::Value,
    pub(super) sealed: Sealed,
}

impl Decided {
    pub(super) fn write(&self) -> Write<'_> {
        Write::new(
            &self.case_id,
            &self.decision,
            Some(&self.previous),
            self.first_seq,
            self.key.as_ref(),
        )
    }

    /// The case's chain head after the decision; none when it adds no
    /// event and the head stays as it is.
    pub(super) fn new_head(&self) -> Option<&str> {
        (!self.sealed.rows.is_empty()).then_some(self.sealed.head.as_str())
    }
}

/// Asks `decide` about the case `row`, locked by the caller, and seals
/// what it decided: `None` when the decision changes nothing. A rejection
/// is [`StoreError::Rejected`].
pub(super) fn decide_locked<F>(
    case_id: &str,
    row: CaseRow,
    keys: &DataKeys,
    decide: F,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Option<Decided>, StoreError>
where
    F: FnOnce(&CaseRecord) -> Result<Decision, Rejection>,
{
    let key = row.case_key(case_id, keys)?;
    let record = row.to_record(case_id, key.as_ref())?;
    let decision = decide(&record)?;
    if unchanged(&decision, &record.state) {
        return Ok(None);
    }
    let (key, new_key) = match key {
        None if needs_first_key(&decision, &record.state) => {
            let (key, wrapped) = keys.new_case_key(case_id)?;
            (Some(key), Some(wrapped))
        }
        key => (key, None),
    };
    let w = Write::new(
        case_id,
        &decision,
        Some(&record.state),
        row.next_seq,
        key.as_ref(),
    );
    let state = w.stored_state()?;
    let sealed = w.sealed(row.history_head.as_deref(), actor, now)?;
    Ok(Some(Decided {
        case_id: case_id.to_owned(),
        previous: record.state,
        decision,
        key,
        new_key,
        first_seq: row.next_seq,
        state,
        sealed,
    }))
}

/// Whether a case without a data key needs one for `decision`: it has
/// personal data to store and was never erased — a case begun before its
/// database kept keys.
pub(super) fn needs_first_key(decision: &Decision, previous: &CaseState) -> bool {
    let json = |v: Result<serde_json::Value, serde_json::Error>| v.unwrap_or_default();
    let to_store = marker::any_personal(&json(serde_json::to_value(&decision.state)))
        || marker::any_personal(&json(serde_json::to_value(&decision.history)));
    to_store && !marker::any_erased(&json(serde_json::to_value(previous)))
}

/// Whether writing `decision` would change nothing. A decision without
/// history or effects can still change the state — a stale timer that
/// fires is removed from it — and that change is written.
pub(super) fn unchanged(decision: &Decision, previous: &CaseState) -> bool {
    decision.is_noop() && decision.state == *previous
}

/// A job as the outbox keeps it: a case's job with its parameters sealed
/// under the case's key (they are often personal: names, ID numbers,
/// recipients); a schedule's job, which carries none, as it is.
pub(super) fn stored_job(job: &Job, key: Option<&CaseKey>) -> serde_json::Value {
    // A Job always serializes.
    let mut value = serde_json::to_value(job).unwrap_or_default();
    if let Some(key) = key {
        seal::seal_field(
            &mut value,
            "params",
            key,
            &format!("job/{}", job.attempt_id),
        );
    }
    value
}

/// When a job dispatched at `now` times out: its attempt's timeout timer
/// is pushed to at least this, so time spent waiting in the outbox does
/// not count against the attempt. `None` if it is beyond the calendar.
pub(super) fn timeout_from(job: &Job, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    now.checked_add_signed(TimeDelta::from_std(job.timeout).ok()?)
}
