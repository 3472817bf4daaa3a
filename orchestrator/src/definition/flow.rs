//! Checks of the workflow as a graph: every step reachable, an end
//! reachable from every step, and no loop that never waits.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::diagnostic::{Code, Diagnostics};
use super::load::{Declarations, FILE_START};
use super::model::StepKind;
use super::steps::ReadStep;

pub(super) fn check(steps: &[ReadStep], decls: &Declarations<'_>, d: &mut Diagnostics) {
    if steps.is_empty() {
        return;
    }
    let edges: BTreeMap<&str, Vec<&str>> = steps
        .iter()
        .map(|s| {
            (
                s.step.id.as_str(),
                s.step.transitions().into_iter().map(|(_, t)| t).collect(),
            )
        })
        .collect();

    let reachable = reach(&edges, [steps[0].step.id.as_str()]);
    for s in steps
        .iter()
        .filter(|s| !reachable.contains(s.step.id.as_str()))
    {
        d.error(
            Code::UnreachableStep,
            &s.path,
            s.pos,
            format!(
                "step `{}` can never be reached from the first step",
                s.step.id
            ),
        );
    }

    let mut reverse: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, tos) in &edges {
        for to in tos {
            reverse.entry(to).or_default().push(from);
        }
    }
    let ends = steps
        .iter()
        .filter(|s| matches!(s.step.kind, StepKind::End(_)))
        .map(|s| s.step.id.as_str());
    let finishing = reach(&reverse, ends);
    if finishing.is_empty() {
        d.error(
            Code::NoPathToEnd,
            "/steps",
            FILE_START,
            "the workflow has no `end` step",
        );
    } else {
        for s in steps
            .iter()
            .filter(|s| reachable.contains(s.step.id.as_str()))
        {
            if !finishing.contains(s.step.id.as_str()) {
                d.error(
                    Code::NoPathToEnd,
                    &s.path,
                    s.pos,
                    format!(
                        "no `end` step can be reached from step `{}`: a case there never finishes",
                        s.step.id
                    ),
                );
            }
        }
    }

    check_loops(steps, d);
    check_events_used(steps, decls, d);
}

fn reach<'a>(
    edges: &BTreeMap<&'a str, Vec<&'a str>>,
    from: impl IntoIterator<Item = &'a str>,
) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<&str> = from.into_iter().collect();
    while let Some(id) = queue.pop_front() {
        if seen.insert(id) {
            queue.extend(edges.get(id).into_iter().flatten().copied());
        }
    }
    seen
}

/// A cycle through steps that never wait for the outside world would spin
/// without end; the deadline expiry edge is driven by time, so it does not
/// count as part of such a cycle.
fn check_loops(steps: &[ReadStep], d: &mut Diagnostics) {
    let busy: BTreeMap<&str, Vec<&str>> = steps
        .iter()
        .filter(|s| !matches!(s.step.kind, StepKind::Wait(_)))
        .map(|s| {
            let next = match &s.step.kind {
                StepKind::Deadline(dl) => vec![dl.next.as_str()],
                _ => s.step.transitions().into_iter().map(|(_, t)| t).collect(),
            };
            (s.step.id.as_str(), next)
        })
        .collect();
    let mut reported = BTreeSet::new();
    for s in steps {
        let id = s.step.id.as_str();
        if !busy.contains_key(id) || reported.contains(id) {
            continue;
        }
        // Does a path of busy steps lead from `id` back to itself?
        let successors: Vec<&str> = busy[id]
            .iter()
            .copied()
            .filter(|t| busy.contains_key(t))
            .collect();
        let mut seen = BTreeSet::new();
        let mut queue: VecDeque<&str> = successors.into_iter().collect();
        while let Some(n) = queue.pop_front() {
            if n == id {
                reported.insert(id);
                d.error(
                    Code::LoopWithoutWait,
                    &s.path,
                    s.pos,
                    format!("step `{id}` is on a loop that never passes through a `wait`: it would repeat without end"),
                );
                break;
            }
            if seen.insert(n) {
                queue.extend(busy[n].iter().copied().filter(|t| busy.contains_key(t)));
            }
        }
    }
}

fn check_events_used(steps: &[ReadStep], decls: &Declarations<'_>, d: &mut Diagnostics) {
    let mut used = BTreeSet::new();
    for s in steps {
        match &s.step.kind {
            StepKind::Wait(w) => used.extend(w.events.keys().map(String::as_str)),
            StepKind::Deadline(dl) => {
                used.insert(dl.started_by.as_str());
            }
            _ => {}
        }
    }
    for e in &decls.events {
        if !used.contains(e.value.name.as_str()) {
            d.warning(
                Code::UnusedEvent,
                &format!("/events/{}", e.value.name),
                e.pos,
                format!(
                    "event `{}` is declared but no step waits for it",
                    e.value.name
                ),
            );
        }
    }
}
