//! The workflow language against its fixtures: every invalid fixture lists,
//! at its end, exactly the diagnostics it must produce; every valid file and
//! every workflow shipped in `workflows/` must load cleanly.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use docket::definition::{self, Code, Environment, Severity, Workflow, model::StepKind};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn env() -> Environment {
    Environment::new(["cn-mainland".to_owned()])
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let files = definition::workflow_files(dir).expect("fixture folder");
    assert!(!files.is_empty(), "no files in {}", dir.display());
    files
}

/// `# expect: LINE:COLUMN SEVERITY CODE` lines.
fn expectations(source: &str) -> BTreeSet<(usize, usize, String, String)> {
    source
        .lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(|rest| {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            let (line, column) = parts[0].split_once(':').expect("LINE:COLUMN");
            (
                line.parse().expect("line"),
                column.parse().expect("column"),
                parts[1].to_owned(),
                parts[2].to_owned(),
            )
        })
        .collect()
}

#[test]
fn every_invalid_fixture_reports_exactly_its_expected_diagnostics() {
    let mut codes_seen = BTreeSet::new();
    for path in yaml_files(&repo().join("orchestrator/tests/fixtures/invalid")) {
        let source = std::fs::read_to_string(&path).expect("read fixture");
        let expected = expectations(&source);
        assert!(
            !expected.is_empty(),
            "{} lists no expectations",
            path.display()
        );
        let loaded = definition::load(&source, &env());
        let actual: BTreeSet<_> = loaded
            .diagnostics
            .iter()
            .map(|d| {
                (
                    d.pos.line,
                    d.pos.column,
                    d.severity.to_string(),
                    d.code.to_string(),
                )
            })
            .collect();
        assert_eq!(
            actual,
            expected,
            "{}: {:#?}",
            path.display(),
            loaded.diagnostics
        );
        assert!(
            loaded.workflow.is_none(),
            "{} loaded despite errors",
            path.display()
        );
        for d in &loaded.diagnostics {
            assert!(!d.message.is_empty() && !d.message.contains('\n'));
            codes_seen.insert(d.code);
        }
    }
    // The classes of error an operator must be told about, each with a fixture.
    for code in [
        Code::YamlSyntax,
        Code::UnknownField,
        Code::MissingField,
        Code::DuplicateStep,
        Code::UnknownStep,
        Code::UnreachableStep,
        Code::NoPathToEnd,
        Code::UnknownHandler,
        Code::BadDuration,
        Code::BadCron,
        Code::UnknownCalendar,
        Code::ExtensionBelowLimit,
        Code::UnknownEvent,
        Code::BadCondition,
        Code::BadTemplate,
        Code::TypeMismatch,
        Code::LoopWithoutWait,
        Code::WaitsForever,
        Code::CronNeverOnWorkingDay,
    ] {
        assert!(codes_seen.contains(&code), "no fixture produces {code}");
    }
}

#[test]
fn misspellings_come_with_a_suggestion() {
    let source = std::fs::read_to_string(
        repo().join("orchestrator/tests/fixtures/invalid/unknown-field.yaml"),
    )
    .expect("fixture");
    let loaded = definition::load(&source, &env());
    let messages: Vec<&str> = loaded
        .diagnostics
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("`titel`") && m.contains("did you mean `title`?"))
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("`timout`") && m.contains("did you mean `timeout`?"))
    );
    let paths: Vec<&str> = loaded.diagnostics.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["/titel", "/steps/verify/timout"]);
}

fn load_clean(path: &Path) -> Workflow {
    let calendars = definition::workflow_files(&repo().join("workflows/calendars"))
        .expect("calendars")
        .iter()
        .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(str::to_owned))
        .collect::<Vec<_>>();
    let file = definition::load_file(path, &Environment::new(calendars)).expect("read");
    assert_eq!(file.loaded.diagnostics, [], "{}", path.display());
    file.loaded.workflow.expect("valid workflow")
}

#[test]
fn valid_fixtures_and_shipped_workflows_load_without_any_diagnostic() {
    for path in yaml_files(&repo().join("orchestrator/tests/fixtures/valid"))
        .into_iter()
        .chain(yaml_files(&repo().join("workflows")))
    {
        load_clean(&path);
    }
}

#[test]
fn the_residence_permit_workflow_models_the_published_process() {
    let wf = load_clean(&repo().join("workflows/residence-permit.yaml"));
    let handlers: Vec<&str> = wf
        .steps
        .iter()
        .filter_map(|s| match &s.kind {
            StepKind::Task(t) => Some(t.handler.as_str()),
            _ => None,
        })
        .collect();
    // 1. identity verification (applicant and agent), 3. intranet, 4.–5. materials.
    assert_eq!(
        handlers,
        [
            "identity.verify",
            "identity.verify",
            "intranet.authenticate",
            "materials.check",
            "materials.check"
        ]
    );
    // 2. address, 4. registration and review, 5. application and acceptance, 6. collection.
    for event in [
        "address_bound",
        "registration_submitted",
        "registration_approved",
        "registration_rejected",
        "application_submitted",
        "application_accepted",
        "permit_collected",
    ] {
        assert!(
            wf.steps
                .iter()
                .any(|s| matches!(&s.kind, StepKind::Wait(w) if w.events.contains_key(event))),
            "no step waits for {event}"
        );
    }
    // Rejected registrations go back to resubmission.
    let rejected = wf.step("notify_registration_rejected").expect("step");
    assert!(matches!(&rejected.kind, StepKind::Notify(n) if n.next == "await_registration"));
    // The statutory clocks: 15 days extendable to 30 in total; 15 working days.
    let StepKind::Deadline(issuance) = &wf.step("issuance_limit").expect("step").kind else {
        panic!("issuance_limit is not a deadline");
    };
    assert_eq!(issuance.limit.whole_days(), Some(15));
    assert_eq!(
        issuance.extension_cap.and_then(|c| c.whole_days()),
        Some(30)
    );
    assert!(issuance.roll_forward);
    let StepKind::Deadline(notice) = &wf.step("notice_promise").expect("step").kind else {
        panic!("notice_promise is not a deadline");
    };
    assert_eq!(notice.limit, definition::period::Period::WorkingDays(15));
    // Agents: extra materials and the agent's own identity check.
    let materials = wf.materials.as_ref().expect("materials");
    assert_eq!(materials.through_agent.len(), 2);
    assert_eq!(
        materials
            .by_category
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["employment", "residence", "study"]
    );
    let outcomes: BTreeSet<&str> = wf
        .steps
        .iter()
        .filter_map(|s| match &s.kind {
            StepKind::End(e) => Some(e.outcome.as_str()),
            _ => None,
        })
        .collect();
    for outcome in ["issued", "rejected", "withdrawn", "expired"] {
        assert!(outcomes.contains(outcome), "no end with outcome {outcome}");
    }
    assert!(wf.personal_fields().any(|f| f == "id_number"));
}

#[test]
fn graphs_show_every_step_and_edge() {
    let wf = load_clean(&repo().join("workflows/residence-permit.yaml"));
    let mermaid = definition::graph::mermaid(&wf);
    let dot = definition::graph::dot(&wf);
    assert!(mermaid.starts_with("flowchart TD\n"));
    assert!(dot.starts_with("digraph \"residence-permit\" {"));
    for step in &wf.steps {
        assert!(
            mermaid.contains(&format!("\n    {}", step.id)),
            "{}",
            step.id
        );
        assert!(
            dot.contains(&format!("\"{}\" [shape=", step.id)),
            "{}",
            step.id
        );
        for (_, target) in step.transitions() {
            assert!(
                mermaid.contains(&format!("| {target}\n")),
                "{} -> {target}",
                step.id
            );
        }
    }
    assert!(mermaid.contains("issuance_limit -.->|\"expired\"| escalate_issuance_overdue"));
    assert_eq!(
        wf.steps
            .iter()
            .filter(|s| matches!(s.kind, StepKind::End(_)))
            .count(),
        7
    );
    assert!(Severity::Error < Severity::Warning);
}
