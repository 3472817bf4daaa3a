//! `orchestrator audit` as an auditor runs it: an untouched history
//! verifies; rows changed or a case deleted directly in the database are
//! named; the export carries every event with its hash.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

use std::path::PathBuf;

use docket_tests::{orchestrator, stderr, stdout};
use serde_json::{Value, json};

fn sandbox() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("docket-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs SQL on the database file directly, guards lifted.
fn tamper(db: &str, statements: &[&str]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(db).await.expect("open");
        for sql in statements {
            sqlx::query(sqlx::AssertSqlSafe(*sql))
                .execute(&mut conn)
                .await
                .expect(sql);
        }
    });
}

#[test]
fn verify_names_changed_and_deleted_history_and_export_carries_the_hashes() {
    let dir = sandbox();
    let db = format!("sqlite:{}", dir.join("docket.sqlite").display());
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--database", &db]);
        orchestrator(&all)
    };
    let input = dir.join("input.json");
    let applicant = json!({
        "applicant_name": "陈明",
        "id_number": "11010519491231002X",
        "phone": "13800000001",
        "wechat_openid": "wx-test",
        "category": "employment",
        "through_agent": false
    });
    std::fs::write(&input, applicant.to_string()).expect("input");
    let input = input.display().to_string();
    let mut cases = Vec::new();
    for _ in 0..2 {
        let out = run(&["start", "residence-permit", "--input", &input]);
        assert!(out.status.success(), "{}", stderr(&out));
        cases.push(stdout(&out).trim().to_owned());
    }
    let (kept, deleted) = (&cases[0], &cases[1]);

    let out = run(&["audit", "verify"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("verified"), "{}", stdout(&out));
    let out = run(&["audit", "checkpoint"]);
    assert!(
        stdout(&out).starts_with("checkpoint 1 over 2 case(s): "),
        "{}",
        stdout(&out)
    );

    let export = dir.join("export.jsonl");
    let out = run(&[
        "audit",
        "export",
        "--from",
        "2000-01-01",
        "--to",
        "2100-12-31",
        "--out",
        &export.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("latest checkpoint 1"),
        "{}",
        stderr(&out)
    );
    let lines: Vec<Value> = std::fs::read_to_string(&export)
        .expect("export")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(lines.len() >= 6, "{lines:#?}");
    assert!(
        lines
            .iter()
            .all(|l| l["hash"].as_str().is_some_and(|h| h.len() == 64))
    );
    let out = run(&[
        "audit",
        "export",
        "--from",
        "2026-02-01",
        "--to",
        "2026-01-01",
    ]);
    assert_eq!(out.status.code(), Some(2));

    let path = dir.join("docket.sqlite").display().to_string();
    let url = format!("sqlite:{path}");
    let kept_sql =
        format!("UPDATE history SET actor = 'someone' WHERE case_id = '{kept}' AND seq = 2");
    let deletes: Vec<String> = [
        "DELETE FROM history WHERE case_id = '{}'",
        "DELETE FROM timers WHERE case_id = '{}'",
        "DELETE FROM outbox WHERE attempt_id IN (SELECT id FROM attempts WHERE case_id = '{}')",
        "DELETE FROM attempts WHERE case_id = '{}'",
        "DELETE FROM cases WHERE id = '{}'",
    ]
    .iter()
    .map(|s| s.replace("{}", deleted))
    .collect();
    let mut statements = vec![
        "DROP TRIGGER history_no_update",
        "DROP TRIGGER history_no_delete",
        kept_sql.as_str(),
    ];
    statements.extend(deletes.iter().map(String::as_str));
    tamper(&url, &statements);

    let out = run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("case {kept}, event 2: does not match its hash")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "case {deleted}: recorded by checkpoint 1 but no longer in the database (deleted)"
        )),
        "{text}"
    );
    let out = run(&["audit", "verify", "--case", kept]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
    let _ = std::fs::remove_dir_all(&dir);
}
