//! `orchestrator validate`, `graph`, `schema` and `schedules`, run as an operator would.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

use docket_tests::{orchestrator, stderr, stdout};

#[test]
fn validate_accepts_the_shipped_workflows() {
    let out = orchestrator(&["validate", "workflows/"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    // The only warning allowed is the calendar's reminder to add next year.
    for line in stdout(&out).lines() {
        assert!(
            line.contains(": warning: ") && line.ends_with("[calendar-ends-soon at /years]"),
            "{line}"
        );
    }
    assert!(stderr(&out).contains("1 of 1 workflow file(s) valid; 0 error(s)"));
}

#[test]
fn validate_reports_calendar_problems() {
    let dir = std::env::temp_dir().join(format!("docket-calendars-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::copy(
        docket_tests::repo().join("workflows/calendars/cn-mainland.yaml"),
        dir.join("cn-mainland.yaml"),
    )
    .expect("copy calendar");
    std::fs::write(
        dir.join("hk.yaml"),
        "name: hk\ntimezone: Asia/Hong_Kong\nyears: {}\ncolour: red\n",
    )
    .expect("write calendar");
    let calendars = dir.display().to_string();
    let out = orchestrator(&[
        "validate",
        "--calendars",
        &calendars,
        "workflows/residence-permit.yaml",
    ]);
    std::fs::remove_dir_all(&dir).expect("clean up");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("hk.yaml:4:1: error: unknown field `colour`"),
        "{text}"
    );
    assert!(text.contains("[invalid-calendar at /colour]"), "{text}");
}

#[test]
fn validate_reports_every_problem_with_file_line_and_column() {
    let fixture = "orchestrator/tests/fixtures/invalid/conditions-and-types.yaml";
    let out = orchestrator(&["validate", "--calendars", "workflows/calendars", fixture]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("[calendar-ends-soon"))
        .collect();
    assert_eq!(lines.len(), 7, "{text}");
    assert!(lines.iter().all(|l| l.starts_with(&format!("{fixture}:"))));
    assert!(lines[0].starts_with(&format!(
        "{fixture}:13:15: error: \"employmnet\" is never a value"
    )));
    assert!(lines[0].ends_with("[bad-condition at /steps/route/branches/0/when]"));
    assert!(text.contains(
        ":22:26: error: `identity.verify` has no outcome `rejectd`; did you mean `rejected`?"
    ));
}

#[test]
fn validate_json_is_machine_readable() {
    let fixture = "orchestrator/tests/fixtures/invalid/unknown-field.yaml";
    let out = orchestrator(&["validate", "--json", fixture]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    let first = &json[0];
    assert_eq!(first["file"], fixture);
    assert_eq!(first["severity"], "error");
    assert_eq!(first["code"], "unknown-field");
    assert_eq!(first["path"], "/titel");
    assert_eq!(
        (first["line"].as_u64(), first["column"].as_u64()),
        (Some(4), Some(1))
    );
    assert_eq!(json.as_array().map(Vec::len), Some(2));
}

#[test]
fn validate_names_a_missing_file_and_exits_2() {
    let out = orchestrator(&["validate", "workflows/no-such-file.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("workflows/no-such-file.yaml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn graph_prints_every_step_as_mermaid_and_dot() {
    let out = orchestrator(&["graph", "workflows/residence-permit.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mermaid = stdout(&out);
    assert!(mermaid.starts_with("flowchart TD\n"));
    let source =
        std::fs::read_to_string(docket_tests::repo().join("workflows/residence-permit.yaml"))
            .expect("read");
    let steps = source
        .split_once("\nsteps:\n")
        .map_or("", |(_, steps)| steps);
    let ids: Vec<&str> = steps
        .lines()
        .filter_map(|l| l.strip_prefix("  - id: "))
        .collect();
    assert!(ids.len() > 30);
    for id in &ids {
        assert!(
            mermaid.contains(&format!("\n    {id}")),
            "{id} missing from the flowchart"
        );
    }
    let out = orchestrator(&[
        "graph",
        "--format",
        "dot",
        "workflows/residence-permit.yaml",
    ]);
    let dot = stdout(&out);
    assert!(dot.starts_with("digraph"));
    for id in &ids {
        assert!(
            dot.contains(&format!("\"{id}\" [shape=")),
            "{id} missing from the digraph"
        );
    }
}

#[test]
fn graph_refuses_an_invalid_workflow() {
    let out = orchestrator(&[
        "graph",
        "orchestrator/tests/fixtures/invalid/unknown-step.yaml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown-step.yaml:12:17: error: there is no step `finsh`"));
}

#[test]
fn schema_is_draft_7_json_with_every_step_kind() {
    let out = orchestrator(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON schema");
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    let kinds: Vec<&str> = schema["definitions"]["StepFile"]["oneOf"]
        .as_array()
        .expect("step kinds")
        .iter()
        .filter_map(|v| v["properties"]["kind"]["const"].as_str())
        .collect();
    assert_eq!(
        kinds,
        ["task", "wait", "notify", "deadline", "branch", "end"]
    );
    assert_eq!(schema["additionalProperties"], false);
}

#[test]
fn the_readme_shows_the_current_residence_permit_flowchart() {
    let out = orchestrator(&["graph", "workflows/residence-permit.yaml"]);
    let readme = std::fs::read_to_string(docket_tests::repo().join("README.md")).expect("README");
    let shown = readme
        .split_once("```mermaid\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(chart, _)| chart)
        .expect("a mermaid block in the README");
    assert_eq!(
        shown,
        stdout(&out),
        "regenerate it with `orchestrator graph workflows/residence-permit.yaml`"
    );
}

#[test]
fn schedules_lists_each_sweep_with_its_next_tick() {
    let dir = std::env::temp_dir().join(format!("docket-schedules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = format!("sqlite:{}", dir.join("docket.sqlite").display());
    let out = orchestrator(&["schedules", "--database", &db]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("residence-permit morning_due_list  `0 0 9 * * *`  next ")
            && text.contains(" 09:00 Asia/Shanghai"),
        "{text}"
    );
    let out = orchestrator(&["schedules", "--database", &db, "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(listed[0]["schedule"]["schedule"], "morning_due_list");
    assert_eq!(listed[0]["firings"], serde_json::json!([]));
    let _ = std::fs::remove_dir_all(&dir);
}
