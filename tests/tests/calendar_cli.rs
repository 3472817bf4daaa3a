//! `orchestrator calendar due` and `show`, run as an operator would, on the
//! shipped `cn-mainland` calendar.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

use std::process::Output;

use docket_tests::{orchestrator, stderr, stdout};

/// Runs `orchestrator calendar ARGS…` and returns its output, failing the
/// test unless it succeeded.
fn calendar_ok(args: &[&str]) -> String {
    let mut all = vec!["calendar"];
    all.extend_from_slice(args);
    let out = orchestrator(&all);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{all:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// The date `calendar due` prints first on its line.
fn due(args: &[&str]) -> String {
    let mut all = vec!["due", "--calendar", "cn-mainland"];
    all.extend_from_slice(args);
    let text = calendar_ok(&all);
    assert_eq!(text.lines().count(), 1, "{text}");
    text.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// A refused command: exit code 2, nothing on stdout, and one line on
/// stderr, which is returned.
fn refused(args: &[&str]) -> String {
    let mut all = vec!["calendar"];
    all.extend_from_slice(args);
    let out: Output = orchestrator(&all);
    assert_eq!(out.status.code(), Some(2), "{all:?}: {}", stdout(&out));
    assert_eq!(stdout(&out), "", "{all:?}");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{all:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn due_matches_the_worked_examples_of_the_domain_readme() {
    for (accepted, calendar_days, working_days) in [
        ("2026-02-10", "2026-02-25", "2026-03-09"),
        ("2025-09-26", "2025-10-11", "2025-10-23"),
        ("2026-09-25", "2026-10-10", "2026-10-22"),
    ] {
        assert_eq!(
            due(&["--from", accepted, "--days", "15"]),
            calendar_days,
            "{accepted} + 15 calendar days"
        );
        // 2025-10-11 and 2026-10-10 are make-up Saturdays: working days, so
        // rolling forward must leave them where they are.
        assert_eq!(
            due(&["--from", accepted, "--days", "15", "--roll-forward"]),
            calendar_days,
            "{accepted} + 15 calendar days, rolled forward"
        );
        assert_eq!(
            due(&["--from", accepted, "--working-days", "15"]),
            working_days,
            "{accepted} + 15 working days"
        );
    }
}

#[test]
fn due_explains_its_answer_on_the_same_line() {
    let text = calendar_ok(&[
        "due",
        "--calendar",
        "cn-mainland",
        "--from",
        "2026-02-10",
        "--working-days",
        "15",
    ]);
    assert_eq!(
        text,
        "2026-03-09  (Mon; 15 working days after 2026-02-10 on cn-mainland)\n"
    );
}

#[test]
fn roll_forward_moves_a_period_ending_on_a_holiday_to_the_next_working_day() {
    // 2026-09-20 + 11 days is 2026-10-01, the first day of the National Day
    // holiday (October 1–7).
    assert_eq!(due(&["--from", "2026-09-20", "--days", "11"]), "2026-10-01");
    assert_eq!(
        due(&["--from", "2026-09-20", "--days", "11", "--roll-forward"]),
        "2026-10-08"
    );
}

#[test]
fn show_lists_the_days_off_and_make_up_workdays_of_a_year() {
    let text = calendar_ok(&["show", "cn-mainland", "--year", "2026"]);
    assert!(text.contains("Asia/Shanghai"), "{text}");
    assert!(
        text.contains("State Council General Office notice on the 2026 holiday arrangement"),
        "{text}"
    );
    assert!(text.contains("ordinary days off"), "{text}");
    let line = |date: &str| {
        text.lines()
            .find(|l| l.contains(date))
            .unwrap_or_else(|| panic!("{date} not listed:\n{text}"))
    };
    assert!(
        line("2026-02-14").contains("Sat  make-up workday"),
        "{text}"
    );
    assert!(line("2026-10-01").contains("Thu  day off"), "{text}");
    assert!(line("2026-10-01").contains("National Day"), "{text}");
    // An ordinary weekend is not listed.
    assert!(!text.contains("2026-03-07"), "{text}");
}

#[test]
fn a_year_the_calendar_does_not_cover_is_refused() {
    let err = refused(&["show", "cn-mainland", "--year", "2027"]);
    assert!(err.contains("cn-mainland") && err.contains("2027"), "{err}");
    // 15 working days from mid-December reach into 2027.
    let err = refused(&[
        "due",
        "--calendar",
        "cn-mainland",
        "--from",
        "2026-12-20",
        "--working-days",
        "15",
    ]);
    assert!(err.contains("`cn-mainland` does not cover 2027"), "{err}");
}

#[test]
fn an_unknown_calendar_is_refused_with_the_known_ones() {
    let err = refused(&[
        "due",
        "--calendar",
        "cn-mainlnd",
        "--from",
        "2026-02-10",
        "--days",
        "15",
    ]);
    assert!(err.contains("unknown calendar `cn-mainlnd`"), "{err}");
    assert!(err.contains("did you mean `cn-mainland`?"), "{err}");
    let err = refused(&["show", "tokyo", "--year", "2026"]);
    assert!(
        err.contains("`tokyo`") && err.contains("`cn-mainland`"),
        "{err}"
    );
}

#[test]
fn a_malformed_date_is_refused_naming_the_flag() {
    for bad in ["2026-02-30", "2026-2-10", "tomorrow"] {
        let err = refused(&[
            "due",
            "--calendar",
            "cn-mainland",
            "--from",
            bad,
            "--working-days",
            "15",
        ]);
        assert!(err.contains("--from") && err.contains(bad), "{err}");
    }
}

#[test]
fn roll_forward_is_refused_with_working_days() {
    let err = refused(&[
        "due",
        "--calendar",
        "cn-mainland",
        "--from",
        "2026-02-10",
        "--working-days",
        "15",
        "--roll-forward",
    ]);
    assert!(
        err.contains("--roll-forward") && err.contains("--days"),
        "{err}"
    );
}

#[test]
fn exactly_one_count_is_required() {
    for extra in [&["--days", "3", "--working-days", "3"][..], &[][..]] {
        let mut args = vec![
            "calendar",
            "due",
            "--calendar",
            "cn-mainland",
            "--from",
            "2026-02-10",
        ];
        args.extend_from_slice(extra);
        let out = orchestrator(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains("--working-days"), "{}", stderr(&out));
    }
}

#[test]
fn calendars_can_come_from_another_folder() {
    let dir = std::env::temp_dir().join(format!("docket-calendar-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::copy(
        docket_tests::repo().join("workflows/calendars/cn-mainland.yaml"),
        dir.join("cn-mainland.yaml"),
    )
    .expect("copy calendar");
    let folder = dir.display().to_string();
    let found = calendar_ok(&[
        "show",
        "cn-mainland",
        "--year",
        "2025",
        "--calendars",
        &folder,
    ]);
    let missing = orchestrator(&[
        "calendar",
        "show",
        "cn-mainland",
        "--year",
        "2025",
        "--calendars",
        &format!("{folder}/nothing-here"),
    ]);
    std::fs::remove_dir_all(&dir).expect("clean up");
    assert!(
        found.contains("2025-10-11  Sat  make-up workday"),
        "{found}"
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("nothing-here"),
        "{}",
        stderr(&missing)
    );
}
