//! Recomputing the chains from what the database holds now.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::chain::{Entry, EventContent, GENESIS, checkpoint_hash, event_hash};

/// An event row as read back, untrusted.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub kind: String,
    pub payload: Value,
    pub hash: Option<String>,
}

/// A case's rows and the head its case row records.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseHistory {
    pub case_id: String,
    /// The seq of the case's last event, as the case row records it.
    pub head_seq: i64,
    pub head: Option<String>,
    pub events: Vec<StoredEvent>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredCheckpoint {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub previous: String,
    pub hash: String,
    pub entries: Vec<Entry>,
}

/// What verification found, naming the case and the first event affected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Changed {
        case_id: String,
        seq: i64,
    },
    Moved {
        case_id: String,
        seq: i64,
        from: i64,
    },
    Missing {
        case_id: String,
        seq: i64,
    },
    Truncated {
        case_id: String,
        last: i64,
        head_seq: i64,
    },
    Inserted {
        case_id: String,
        seq: i64,
    },
    Unsealed {
        case_id: String,
        seq: i64,
    },
    HeadRewritten {
        case_id: String,
    },
    CaseDeleted {
        case_id: String,
        checkpoint: i64,
    },
    DiffersFromCheckpoint {
        case_id: String,
        seq: i64,
        checkpoint: i64,
    },
    CheckpointChanged {
        checkpoint: i64,
    },
}

impl Problem {
    pub fn case_id(&self) -> Option<&str> {
        match self {
            Problem::Changed { case_id, .. }
            | Problem::Moved { case_id, .. }
            | Problem::Missing { case_id, .. }
            | Problem::Truncated { case_id, .. }
            | Problem::Inserted { case_id, .. }
            | Problem::Unsealed { case_id, .. }
            | Problem::HeadRewritten { case_id }
            | Problem::CaseDeleted { case_id, .. }
            | Problem::DiffersFromCheckpoint { case_id, .. } => Some(case_id),
            Problem::CheckpointChanged { .. } => None,
        }
    }

    /// The first event affected, when the problem is about one event.
    pub fn seq(&self) -> Option<i64> {
        match self {
            Problem::Changed { seq, .. }
            | Problem::Moved { seq, .. }
            | Problem::Missing { seq, .. }
            | Problem::Inserted { seq, .. }
            | Problem::Unsealed { seq, .. }
            | Problem::DiffersFromCheckpoint { seq, .. } => Some(*seq),
            Problem::Truncated { last, .. } => Some(last + 1),
            Problem::HeadRewritten { .. }
            | Problem::CaseDeleted { .. }
            | Problem::CheckpointChanged { .. } => None,
        }
    }

    /// What was done to the history, as a stable word for machines: the
    /// same word the message ends with.
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::Changed { .. } => "modified",
            Problem::Moved { .. } => "reordered",
            Problem::Missing { .. } | Problem::Truncated { .. } => "deleted",
            Problem::Inserted { .. } | Problem::Unsealed { .. } => "inserted",
            Problem::HeadRewritten { .. } | Problem::DiffersFromCheckpoint { .. } => "rewritten",
            Problem::CaseDeleted { .. } => "case_deleted",
            Problem::CheckpointChanged { .. } => "checkpoint_changed",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Changed { case_id, seq } => write!(
                f,
                "case {case_id}, event {seq}: does not match its hash (modified, or events before it inserted or reordered)"
            ),
            Problem::Moved { case_id, seq, from } => write!(
                f,
                "case {case_id}, event {seq}: holds what was event {from} (reordered)"
            ),
            Problem::Missing { case_id, seq } => {
                write!(f, "case {case_id}, event {seq}: missing (deleted)")
            }
            Problem::Truncated {
                case_id,
                last,
                head_seq,
            } => write!(
                f,
                "case {case_id}, event {}: missing — the history ends at event {last} but the case has {head_seq} (deleted)",
                last + 1
            ),
            Problem::Inserted { case_id, seq } => write!(
                f,
                "case {case_id}, event {seq}: after the case's last event (inserted)"
            ),
            Problem::Unsealed { case_id, seq } => {
                write!(f, "case {case_id}, event {seq}: has no hash (inserted)")
            }
            Problem::HeadRewritten { case_id } => write!(
                f,
                "case {case_id}: its history does not end at the head the case records (rewritten)"
            ),
            Problem::CaseDeleted {
                case_id,
                checkpoint,
            } => write!(
                f,
                "case {case_id}: recorded by checkpoint {checkpoint} but no longer in the database (deleted)"
            ),
            Problem::DiffersFromCheckpoint {
                case_id,
                seq,
                checkpoint,
            } => write!(
                f,
                "case {case_id}, event {seq}: differs from what checkpoint {checkpoint} recorded (history rewritten)"
            ),
            Problem::CheckpointChanged { checkpoint } => write!(
                f,
                "checkpoint {checkpoint}: does not match its hash or the one before it (modified, or a checkpoint deleted)"
            ),
        }
    }
}

/// Checks every case's chain and the checkpoints; `cases` may be a subset
/// (one case verified alone), in which case only checkpoint entries of
/// those cases are checked. Returns every problem, the first per case.
pub fn verify(
    cases: &[CaseHistory],
    checkpoints: &[StoredCheckpoint],
    all_cases: bool,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut recomputed: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for case in cases {
        let (hashes, problem) = verify_case(case);
        problems.extend(problem);
        recomputed.insert(case.case_id.as_str(), hashes);
    }
    let mut previous = GENESIS.to_owned();
    // One problem per case: what follows the first is its consequence.
    let mut reported: BTreeSet<String> = problems
        .iter()
        .filter_map(|p| p.case_id().map(str::to_owned))
        .collect();
    let mut cases_problems = Vec::new();
    for checkpoint in checkpoints {
        if checkpoint.previous != previous
            || checkpoint_hash(&previous, checkpoint.at, &checkpoint.entries) != checkpoint.hash
        {
            problems.push(Problem::CheckpointChanged {
                checkpoint: checkpoint.id,
            });
            // Later checkpoints chain from the stored hash.
        }
        previous.clone_from(&checkpoint.hash);
        for entry in &checkpoint.entries {
            if reported.contains(&entry.case_id) {
                continue;
            }
            let problem = match recomputed.get(entry.case_id.as_str()) {
                None if all_cases => Some(Problem::CaseDeleted {
                    case_id: entry.case_id.clone(),
                    checkpoint: checkpoint.id,
                }),
                None => None,
                Some(hashes) => {
                    let at = usize::try_from(entry.seq - 1)
                        .ok()
                        .and_then(|i| hashes.get(i));
                    (at != Some(&entry.head)).then(|| Problem::DiffersFromCheckpoint {
                        case_id: entry.case_id.clone(),
                        seq: entry.seq,
                        checkpoint: checkpoint.id,
                    })
                }
            };
            if let Some(p) = problem {
                reported.insert(entry.case_id.clone());
                cases_problems.push(p);
            }
        }
    }
    problems.extend(cases_problems);
    problems
}

/// The hashes of a case's events as they should be (by seq, from 1), and
/// the first problem found.
fn verify_case(case: &CaseHistory) -> (Vec<String>, Option<Problem>) {
    let id = case.case_id.clone();
    let mut hashes = Vec::new();
    let mut previous = GENESIS.to_owned();
    for (i, event) in case.events.iter().enumerate() {
        let expected_seq = i as i64 + 1;
        if event.seq > case.head_seq {
            return (
                hashes,
                Some(Problem::Inserted {
                    case_id: id,
                    seq: event.seq,
                }),
            );
        }
        if event.seq != expected_seq {
            return (
                hashes,
                Some(Problem::Missing {
                    case_id: id,
                    seq: expected_seq,
                }),
            );
        }
        let Some(stored) = &event.hash else {
            return (
                hashes,
                Some(Problem::Unsealed {
                    case_id: id,
                    seq: event.seq,
                }),
            );
        };
        let hash = event_hash(&previous, &content(&case.case_id, event, event.seq));
        if &hash != stored {
            let problem = match moved_from(case, event) {
                Some(from) => Problem::Moved {
                    case_id: id,
                    seq: event.seq,
                    from,
                },
                None => Problem::Changed {
                    case_id: id,
                    seq: event.seq,
                },
            };
            return (hashes, Some(problem));
        }
        hashes.push(hash.clone());
        previous = hash;
    }
    let last = case.events.last().map_or(0, |e| e.seq);
    if last < case.head_seq {
        return (
            hashes,
            Some(Problem::Truncated {
                case_id: id,
                last,
                head_seq: case.head_seq,
            }),
        );
    }
    if case.head.as_deref() != Some(previous.as_str()) && last > 0 {
        return (hashes, Some(Problem::HeadRewritten { case_id: id }));
    }
    (hashes, None)
}

fn content<'a>(case_id: &'a str, event: &'a StoredEvent, seq: i64) -> EventContent<'a> {
    EventContent {
        case_id,
        seq,
        at: event.at,
        actor: &event.actor,
        kind: &event.kind,
        payload: &event.payload,
    }
}

/// Whether `event` is intact but was written at another position: its own
/// hash matches its content at seq `from` after some event's hash.
fn moved_from(case: &CaseHistory, event: &StoredEvent) -> Option<i64> {
    // Quadratic; only run on a mismatch, and only for histories of a
    // size a case really has.
    if case.events.len() > 2_000 {
        return None;
    }
    let stored = event.hash.as_deref()?;
    let previous: Vec<&str> = std::iter::once(GENESIS)
        .chain(case.events.iter().filter_map(|e| e.hash.as_deref()))
        .collect();
    (1..=case.head_seq.max(case.events.len() as i64))
        .filter(|from| *from != event.seq)
        .find(|from| {
            previous
                .iter()
                .any(|p| event_hash(p, &content(&case.case_id, event, *from)) == stored)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sealed(case_id: &str, n: i64) -> CaseHistory {
        let mut events = Vec::new();
        let mut previous = GENESIS.to_owned();
        for seq in 1..=n {
            let mut e = StoredEvent {
                seq,
                at: DateTime::from_timestamp(1_780_000_000 + seq, 0).unwrap_or_default(),
                actor: "gateway".into(),
                kind: "signal_received".into(),
                payload: json!({"type": "signal_received", "n": seq}),
                hash: None,
            };
            let h = event_hash(&previous, &content(case_id, &e, seq));
            e.hash = Some(h.clone());
            previous = h;
            events.push(e);
        }
        CaseHistory {
            case_id: case_id.into(),
            head_seq: n,
            head: Some(previous),
            events,
        }
    }

    fn checkpoint(cases: &[&CaseHistory]) -> StoredCheckpoint {
        let entries: Vec<Entry> = cases
            .iter()
            .map(|c| Entry {
                case_id: c.case_id.clone(),
                seq: c.head_seq,
                head: c.head.clone().unwrap_or_default(),
            })
            .collect();
        let at = DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default();
        StoredCheckpoint {
            id: 1,
            at,
            previous: GENESIS.into(),
            hash: checkpoint_hash(GENESIS, at, &entries),
            entries,
        }
    }

    #[test]
    fn an_untouched_history_verifies() {
        let (a, b) = (sealed("a", 5), sealed("b", 3));
        let cp = checkpoint(&[&a, &b]);
        assert_eq!(verify(&[a, b], &[cp], true), vec![]);
    }

    #[test]
    fn each_kind_of_change_names_the_case_and_first_event() {
        let mut modified = sealed("a", 5);
        modified.events[2].payload = json!({"type": "signal_received", "n": 99});
        let mut deleted = sealed("a", 5);
        deleted.events.remove(1);
        let mut cut = sealed("a", 5);
        cut.events.pop();
        let mut reordered = sealed("a", 5);
        reordered.events.swap(1, 2);
        reordered.events[1].seq = 2;
        reordered.events[2].seq = 3;
        let mut inserted = sealed("a", 5);
        let mut extra = inserted.events[4].clone();
        extra.seq = 6;
        inserted.events.push(extra);
        let show = |c: CaseHistory| {
            verify(&[c], &[], true)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            show(modified),
            [
                "case a, event 3: does not match its hash (modified, or events before it inserted or reordered)"
            ]
        );
        assert_eq!(show(deleted), ["case a, event 2: missing (deleted)"]);
        assert_eq!(
            show(cut),
            ["case a, event 5: missing — the history ends at event 4 but the case has 5 (deleted)"]
        );
        assert_eq!(
            show(reordered),
            ["case a, event 2: holds what was event 3 (reordered)"]
        );
        assert_eq!(
            show(inserted),
            ["case a, event 6: after the case's last event (inserted)"]
        );
        let mut cut = sealed("a", 5);
        cut.events.pop();
        let found = verify(&[cut], &[], true);
        assert_eq!(
            found
                .iter()
                .map(|p| (p.case_id(), p.seq(), p.kind()))
                .collect::<Vec<_>>(),
            [(Some("a"), Some(5), "deleted")]
        );
    }

    #[test]
    fn a_rewritten_chain_or_a_deleted_case_is_caught_by_the_checkpoint() {
        let a = sealed("a", 4);
        let b = sealed("b", 2);
        let cp = checkpoint(&[&a, &b]);
        // The whole of `a` recomputed consistently with a changed event:
        // its own chain holds, the checkpoint does not.
        let mut rewritten = sealed("a", 4);
        rewritten.events[0].actor = "someone".into();
        let mut previous = GENESIS.to_owned();
        for e in &mut rewritten.events {
            let h = event_hash(&previous, &content("a", e, e.seq));
            e.hash = Some(h.clone());
            previous = h;
        }
        rewritten.head = Some(previous);
        let found = verify(&[rewritten, b.clone()], std::slice::from_ref(&cp), true);
        assert_eq!(
            found.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["case a, event 4: differs from what checkpoint 1 recorded (history rewritten)"]
        );
        // `a` deleted whole.
        let found = verify(std::slice::from_ref(&b), std::slice::from_ref(&cp), true);
        assert_eq!(
            found,
            [Problem::CaseDeleted {
                case_id: "a".into(),
                checkpoint: 1
            }]
        );
        // Verifying one case alone does not report the others as deleted.
        assert_eq!(verify(&[b], std::slice::from_ref(&cp), false), vec![]);
        // A checkpoint edited.
        let mut edited = cp;
        edited.entries.pop();
        assert_eq!(
            verify(&[a], &[edited], false),
            [Problem::CheckpointChanged { checkpoint: 1 }]
        );
    }
}
