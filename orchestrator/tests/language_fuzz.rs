//! The workflow and calendar loaders against broken input: the shipped
//! files with random edits (lines dropped, doubled, swapped, re-indented,
//! values replaced by hostile ones, bytes inserted, the file cut short)
//! and text made of YAML's punctuation. Whatever the input, loading
//! returns (no panic, no hang), and a file that is refused is refused
//! with at least one error, every error placed on a line and column that
//! exist in the file.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use docket::calendar::{Calendar, CalendarError};
use docket::definition::{self, Environment};
use proptest::prelude::*;

/// Far above what one load takes (milliseconds); only a hang gets there.
const HANG: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).expect("read a shipped file")
}

/// The files the edits start from: every kind of step, schedule and rule
/// the language has is in one of them.
fn workflow_seeds() -> Vec<String> {
    [
        "workflows/residence-permit.yaml",
        "orchestrator/tests/fixtures/valid/due-list.yaml",
        "orchestrator/tests/fixtures/valid/minimal.yaml",
        "orchestrator/tests/fixtures/invalid/conditions-and-types.yaml",
        "tests/chaos/chaos.yaml",
    ]
    .iter()
    .map(|p| read(p))
    .collect()
}

/// Values an operator (or an attacker) might put where any value goes.
const HOSTILE: &[&str] = &[
    "",
    "~",
    "[]",
    "{}",
    "-1",
    "0",
    "18446744073709551616",
    "1e309",
    ".nan",
    "-.inf",
    "0x7fffffff",
    "true",
    "\"\\u0000\"",
    "\"\\uD800\"",
    "'",
    "\"",
    "&anchor x",
    "*anchor",
    "!!binary aGk=",
    "!custom x",
    "<<: *a",
    "? complex",
    "|",
    ">-",
    "- - - -",
    "[[[[[[[[[[",
    "{a: {b: {c: {d:",
    "15 working days",
    "99999999999 working days",
    "0 working days",
    "2562047788015216h",
    "1ns",
    "P1D",
    "* * * * * * *",
    "60 60 25 32 13 8",
    "${{ case.input.name }",
    "{{",
    "}}",
    "input.x == && ||",
    "not not not",
    "\u{202e}evil",
    "名字",
    "\t",
    "a\u{0}b",
    "#",
];

#[derive(Debug, Clone)]
enum Edit {
    DropLine(usize),
    DoubleLine(usize),
    SwapLines(usize, usize),
    Indent(usize, usize),
    Dedent(usize),
    ReplaceValue(usize, usize),
    InsertByte(usize, u8),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::DropLine),
        any::<usize>().prop_map(Edit::DoubleLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (any::<usize>(), 1..9usize).prop_map(|(a, n)| Edit::Indent(a, n)),
        any::<usize>().prop_map(Edit::Dedent),
        (any::<usize>(), any::<usize>()).prop_map(|(a, v)| Edit::ReplaceValue(a, v)),
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Edit::InsertByte(a, b)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

/// Applies `edits` to `source`. Inserted bytes that would make the text
/// invalid UTF-8 are replaced, as reading a file as text would.
fn apply(source: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = source.lines().map(str::to_owned).collect();
    for e in edits {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match *e {
            Edit::DropLine(i) => {
                lines.remove(i % n);
            }
            Edit::DoubleLine(i) => {
                let line = lines[i % n].clone();
                lines.insert(i % n, line);
            }
            Edit::SwapLines(a, b) => lines.swap(a % n, b % n),
            Edit::Indent(i, by) => lines[i % n].insert_str(0, &" ".repeat(by)),
            Edit::Dedent(i) => {
                let line = &mut lines[i % n];
                *line = line.trim_start().to_owned();
            }
            Edit::ReplaceValue(i, v) => {
                let line = &mut lines[i % n];
                let value = HOSTILE[v % HOSTILE.len()];
                *line = match line.split_once(": ") {
                    Some((key, _)) => format!("{key}: {value}"),
                    None => match line.find("- ") {
                        Some(dash) => format!("{}{value}", &line[..dash + 2]),
                        None => value.to_owned(),
                    },
                };
            }
            Edit::InsertByte(i, b) => {
                let line = &mut lines[i % n];
                let mut bytes = std::mem::take(line).into_bytes();
                let at = i % (bytes.len() + 1);
                bytes.insert(at, b);
                *line = String::from_utf8_lossy(&bytes).into_owned();
            }
            Edit::Truncate(i) => lines.truncate(i % n),
        }
    }
    lines.join("\n")
}

/// Runs `f` on its own thread and fails the test if it does not return
/// within [`HANG`]. A panic inside `f` fails the test with its message.
fn returns<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(HANG) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no answer within {HANG:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: the loader panicked"),
    }
}

/// The width of each line of `source`, in characters, as YAML counts
/// lines (a line ends at `\r\n`, `\r` or `\n`).
fn line_widths(source: &str) -> Vec<usize> {
    source
        .split("\r\n")
        .flat_map(|l| l.split(['\r', '\n']))
        .map(|l| l.chars().count())
        .collect()
}

/// The place a diagnostic names exists in the file of `widths`: a line of
/// it (or the one after its last, where a missing ending is reported) and
/// a column within that line, or just after its end.
fn place_exists(widths: &[usize], line: usize, column: usize) -> Result<(), String> {
    if line == 0 || line > widths.len() + 1 {
        return Err(format!("line {line} of {}", widths.len()));
    }
    let width = widths.get(line - 1).copied().unwrap_or(0);
    if column == 0 || column > width + 2 {
        return Err(format!("column {column} of line {line} ({width} wide)"));
    }
    Ok(())
}

fn check_workflow(source: String) -> Result<(), TestCaseError> {
    let text = source.clone();
    let loaded = returns("loading a workflow", move || {
        definition::load(&text, &Environment::new(["cn-mainland".to_owned()]))
    });
    let errors: Vec<_> = loaded.diagnostics.iter().filter(|d| d.is_error()).collect();
    prop_assert!(
        loaded.workflow.is_some() || !errors.is_empty(),
        "refused without an error:\n{source}"
    );
    prop_assert!(
        loaded.workflow.is_none() || errors.is_empty(),
        "accepted with errors: {errors:?}"
    );
    let widths = line_widths(&source);
    for d in &loaded.diagnostics {
        if let Err(why) = place_exists(&widths, d.pos.line, d.pos.column) {
            return Err(TestCaseError::fail(format!(
                "{} names a place that does not exist ({why}):\n{source}",
                d.render("fuzzed.yaml")
            )));
        }
        prop_assert!(!d.message.trim().is_empty(), "{d:?} says nothing");
    }
    Ok(())
}

fn check_calendar(source: String) -> Result<(), TestCaseError> {
    let text = source.clone();
    let parsed = returns("loading a calendar", move || {
        Calendar::parse(Path::new("cn-mainland.yaml"), &text)
    });
    match parsed {
        Ok(_) => {}
        Err(CalendarError::Invalid { problems }) => {
            prop_assert!(!problems.is_empty(), "refused without a problem");
            let widths = line_widths(&source);
            for p in &problems {
                if let Err(why) = place_exists(&widths, p.line, p.column) {
                    return Err(TestCaseError::fail(format!(
                        "{p} names a place that does not exist ({why}):\n{source}"
                    )));
                }
            }
        }
        Err(other) => {
            return Err(TestCaseError::fail(format!(
                "parsing text gave a non-location error: {other}"
            )));
        }
    }
    Ok(())
}

/// Text of YAML's own punctuation, keywords of the language and noise.
fn yamlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just(": ".to_owned()),
        Just("\n".to_owned()),
        Just("\n  ".to_owned()),
        Just("- ".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just(", ".to_owned()),
        Just("\"".to_owned()),
        Just("'".to_owned()),
        Just("#".to_owned()),
        Just("|\n".to_owned()),
        Just("workflow".to_owned()),
        Just("steps".to_owned()),
        Just("kind".to_owned()),
        Just("task".to_owned()),
        Just("next".to_owned()),
        Just("version".to_owned()),
        Just("input".to_owned()),
        Just("years".to_owned()),
        Just("2026".to_owned()),
        proptest::sample::select(HOSTILE).prop_map(str::to_owned),
        "[a-z_]{1,8}",
        any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(token, 0..80).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn edited_workflows_load_or_are_refused_with_located_errors(
        seed in any::<prop::sample::Index>(),
        edits in proptest::collection::vec(edit(), 1..6),
    ) {
        let seeds = workflow_seeds();
        let seed: &String = seed.get(&seeds);
        check_workflow(apply(seed, &edits))?;
    }

    #[test]
    fn yaml_noise_is_refused_with_located_errors(source in yamlish()) {
        check_workflow(source.clone())?;
        check_calendar(source)?;
    }

    #[test]
    fn edited_calendars_load_or_are_refused_with_located_problems(
        edits in proptest::collection::vec(edit(), 1..6),
    ) {
        check_calendar(apply(&read("workflows/calendars/cn-mainland.yaml"), &edits))?;
    }
}

/// Inputs built to exhaust a parser: deep nesting, a very long line, many
/// keys. Each is refused (or loaded) in bounded time without overflowing
/// the stack.
#[test]
fn pathological_inputs_are_refused_without_crashing() {
    let deep_flow = format!("workflow: {}", "[".repeat(100_000));
    let deep_block = (0..5_000)
        .map(|i| format!("{}k{i}:", " ".repeat(i)))
        .collect::<Vec<_>>()
        .join("\n");
    // YAML also ends a line at a lone `\r`.
    let deep_block_cr = deep_block.replace('\n', "\r");
    let long_line = format!("workflow: {}", "x".repeat(2_000_000));
    let many_keys = (0..50_000)
        .map(|i| format!("k{i}: v"))
        .collect::<Vec<_>>()
        .join("\n");
    let many_steps = format!(
        "{}\n{}",
        read("orchestrator/tests/fixtures/valid/minimal.yaml"),
        (0..5_000)
            .map(|i| format!("  - id: s{i}\n    kind: end\n    outcome: x"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for (name, source) in [
        ("deep flow nesting", deep_flow),
        ("deep block nesting", deep_block),
        ("deep block nesting, lines ended by \\r", deep_block_cr),
        ("a 2 MB line", long_line),
        ("50,000 keys", many_keys),
        ("5,000 extra steps", many_steps),
    ] {
        let result = check_workflow(source.clone());
        assert!(result.is_ok(), "{name}: {result:?}");
        let result = check_calendar(source);
        assert!(result.is_ok(), "{name}: {result:?}");
    }
}
