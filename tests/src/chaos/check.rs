//! The checker every scenario ends with (its checks are listed in the
//! `chaos` module's documentation) and the row of the table it reports.

// Test support: a rig that cannot be set up must fail the test that asked.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::Expected;
use crate::{orchestrator, stderr, stdout};

/// History events that show a case moving on.
const PROGRESS: &[&str] = &["attempt_succeeded", "step_entered", "case_completed"];

/// What the checker found, for the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    pub cases: usize,
    pub completed: usize,
    /// Attempts with more than one completion applied (must be 0).
    pub applied_twice: usize,
    /// Completions recorded and ignored: duplicates and late arrivals.
    pub ignored: usize,
    /// Attempts after the first of their step entry.
    pub retries: usize,
    /// Attempts that timed out (the orchestrator's timer, or the worker's
    /// own timeout reported as a failure).
    pub timeouts: usize,
    /// From the fault to the first progress after it.
    pub recovery: Option<Duration>,
}

/// One line of the suite's table.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub started: usize,
    pub findings: Findings,
}

impl Row {
    pub fn json(&self) -> Value {
        let f = &self.findings;
        json!({
            "scenario": self.scenario,
            "started": self.started,
            "completed": f.completed,
            "duplicates": f.applied_twice,
            "ignored": f.ignored,
            "retries": f.retries,
            "timeouts": f.timeouts,
            "recovery_ms": f.recovery.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        })
    }

    /// Prints the row and appends it to `DOCKET_CHAOS_REPORT`, if set.
    pub fn record(&self) {
        let line = self.json().to_string();
        eprintln!("chaos: {line}");
        if let Some(path) = std::env::var_os("DOCKET_CHAOS_REPORT") {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .expect("open DOCKET_CHAOS_REPORT");
            // One write per line: tests run in parallel processes.
            file.write_all(format!("{line}\n").as_bytes())
                .expect("write DOCKET_CHAOS_REPORT");
        }
    }
}

/// One history row, as the checker reads it.
#[derive(Debug, sqlx::FromRow)]
struct Event {
    case_id: String,
    at: DateTime<Utc>,
    kind: String,
    attempt_id: Option<String>,
    attempt: Option<i64>,
    code: Option<String>,
}

/// The checks every scenario ends with (see the module's documentation),
/// on the PostgreSQL database at `url`; panics naming the first broken
/// guarantee.
pub fn check(
    url: &str,
    expected: &BTreeMap<String, Expected>,
    fault_at: Option<DateTime<Utc>>,
) -> Findings {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (cases, events) = runtime.block_on(async {
        let pool = sqlx::PgPool::connect(url)
            .await
            .expect("connect to the database");
        let cases: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT id, status, outcome, state->'phase'->>'phase' FROM cases ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .expect("read cases");
        let events: Vec<Event> = sqlx::query_as(
            "SELECT case_id, at, kind, payload->>'attempt_id' AS attempt_id, \
                    (payload->>'attempt')::bigint AS attempt, payload->>'code' AS code \
             FROM history ORDER BY case_id, seq",
        )
        .fetch_all(&pool)
        .await
        .expect("read history");
        pool.close().await;
        (cases, events)
    });

    let mut found = Findings {
        cases: cases.len(),
        ..Findings::default()
    };
    assert_eq!(
        cases.len(),
        expected.len(),
        "the database holds {} cases, {} were started",
        cases.len(),
        expected.len()
    );
    for (id, status, outcome, phase) in &cases {
        let want = expected
            .get(id)
            .unwrap_or_else(|| panic!("case {id} was never started by the test"));
        match want {
            Expected::Completed(want) => assert!(
                status == "completed" && outcome.as_deref() == Some(want.as_str()),
                "case {id}: {status} {outcome:?}, expected completed {want}"
            ),
            Expected::StepFailed => assert!(
                status == "active" && phase.as_deref() == Some("failed"),
                "case {id}: {status} in phase {phase:?}, expected its step failed"
            ),
        }
        if status == "completed" {
            found.completed += 1;
        }
    }

    // Completions applied per attempt; attempts that ended badly.
    let mut applied: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ended_badly: BTreeMap<&str, ()> = BTreeMap::new();
    for e in &events {
        let Some(attempt_id) = e.attempt_id.as_deref() else {
            continue;
        };
        match e.kind.as_str() {
            "attempt_succeeded" | "attempt_failed" => {
                *applied.entry(attempt_id).or_default() += 1;
            }
            "completion_ignored" => found.ignored += 1,
            _ => {}
        }
        if e.kind == "attempt_timed_out" || e.code.as_deref() == Some("timeout") {
            found.timeouts += 1;
        }
        if e.kind == "attempt_scheduled" {
            let attempt = e.attempt.unwrap_or(1);
            if attempt > 1 {
                found.retries += 1;
                let previous = match attempt_id.rsplit_once('/') {
                    Some((entry, _)) => format!("{entry}/{}", attempt - 1),
                    None => panic!("attempt id {attempt_id} has no attempt number"),
                };
                assert!(
                    ended_badly.contains_key(previous.as_str()),
                    "case {}: attempt {attempt_id} was scheduled, but nothing in the \
                     history says why {previous} needed a retry",
                    e.case_id
                );
            }
        }
        if matches!(e.kind.as_str(), "attempt_failed" | "attempt_timed_out") {
            ended_badly.insert(attempt_id, ());
        }
    }
    let twice: Vec<_> = applied.iter().filter(|(_, n)| **n > 1).collect();
    found.applied_twice = twice.len();
    assert!(
        twice.is_empty(),
        "completions applied more than once: {twice:?}"
    );

    let out = orchestrator(&["audit", "verify", "--database", url]);
    assert!(
        out.status.success(),
        "audit verify failed: {}{}",
        stdout(&out),
        stderr(&out)
    );

    found.recovery = fault_at.and_then(|fault| {
        events
            .iter()
            .filter(|e| e.at > fault && PROGRESS.contains(&e.kind.as_str()))
            .map(|e| e.at)
            .min()
            .and_then(|at| (at - fault).to_std().ok())
    });
    found
}
