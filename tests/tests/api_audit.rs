//! `GET /audit/verify` and `GET /audit/export` as an auditor uses them: a
//! history row changed directly in the database is named by case and seq,
//! and the export is the one `orchestrator audit export` writes.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

use std::time::{Duration, Instant};

use docket_tests::{api_token, applicant_case, orchestrator, serve_api, stderr, stdout};
use reqwest::blocking::Client;
use serde_json::Value;

/// Runs SQL on the database file directly, guards lifted, as a DBA could.
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
fn a_tampered_row_is_named_by_case_and_seq_and_the_export_matches_the_cli() {
    let dir = std::env::temp_dir().join(format!("docket-api-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = format!("sqlite:{}", dir.join("docket.sqlite").display());
    let auditor = api_token(&db, "auditor-1", "auditor");
    let admin = api_token(&db, "admin-1", "admin");
    let officer = api_token(&db, "officer-1", "officer");
    let (_serve, base) = serve_api(&db, &[]);
    let client = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let get = |path: &str, token: &str| {
        let response = client
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .expect("GET");
        let status = response.status().as_u16();
        let kind = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        (status, kind, response.text().expect("body"))
    };
    let json = |text: &str| serde_json::from_str::<Value>(text).expect("a JSON body");

    let mut cases = Vec::new();
    for _ in 0..2 {
        let response = client
            .post(format!("{base}/cases"))
            .bearer_auth(&admin)
            .json(&applicant_case())
            .send()
            .expect("POST /cases");
        assert_eq!(response.status(), 201);
        let case: Value = response.json().expect("case");
        cases.push(case["id"].as_str().expect("id").to_owned());
    }
    // Each waits for the applicant's address: its history stays as it is.
    for id in &cases {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, _, text) = get(&format!("/cases/{id}"), &admin);
            let case = json(&text);
            if case["step"] == "await_address" && case["phase"]["phase"] == "waiting" {
                break;
            }
            assert!(Instant::now() < deadline, "never waited: {case:#}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let (tampered, intact) = (&cases[0], &cases[1]);

    let (status, _, text) = get("/audit/verify", &auditor);
    assert_eq!(status, 200, "{text}");
    let report = json(&text);
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["cases_checked"], 2, "{report:#}");
    assert!(
        report["events_checked"].as_u64().unwrap() >= 4,
        "{report:#}"
    );
    assert_eq!(report["problems"], Value::Array(vec![]));
    let (status, _, text) = get("/audit/verify", &officer);
    assert_eq!(status, 403, "{text}");

    tamper(
        &db,
        &[
            "DROP TRIGGER history_no_update",
            &format!(
                "UPDATE history SET actor = 'someone' WHERE case_id = '{tampered}' AND seq = 2"
            ),
        ],
    );
    let (status, _, text) = get("/audit/verify", &auditor);
    assert_eq!(status, 200, "{text}");
    let report = json(&text);
    assert_eq!(report["ok"], false, "{report:#}");
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report:#}");
    assert_eq!(problems[0]["case_id"], tampered.as_str(), "{report:#}");
    assert_eq!(problems[0]["seq"], 2, "{report:#}");
    assert_eq!(problems[0]["kind"], "modified", "{report:#}");
    assert!(
        problems[0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("case {tampered}, event 2")),
        "{report:#}"
    );
    let (_, _, text) = get(&format!("/audit/verify?case={tampered}"), &admin);
    let report = json(&text);
    assert_eq!(
        (report["ok"].clone(), report["cases_checked"].clone()),
        (Value::Bool(false), Value::from(1)),
        "{report:#}"
    );
    let (_, _, text) = get(&format!("/audit/verify?case={intact}"), &auditor);
    assert_eq!(json(&text)["ok"], true, "{text}");
    let (status, _, text) = get("/audit/verify?case=no-such-case", &auditor);
    assert_eq!(status, 404, "{text}");
    assert_eq!(json(&text)["error"]["code"], "unknown_case");

    // The export: every event of the case, each with its hash, as the CLI
    // writes it.
    let (status, kind, exported) = get("/audit/export?from=2000-01-01&to=2100-12-31", &auditor);
    assert_eq!(status, 200, "{exported}");
    assert_eq!(kind, "application/x-ndjson");
    let lines: Vec<Value> = exported.lines().map(json).collect();
    let (_, _, history) = get(&format!("/cases/{tampered}/history"), &auditor);
    let history = json(&history);
    let seqs: Vec<&Value> = lines
        .iter()
        .filter(|l| l["case_id"] == tampered.as_str())
        .map(|l| &l["seq"])
        .collect();
    let expected: Vec<&Value> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["seq"])
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(seqs, expected, "{exported}");
    assert!(
        lines
            .iter()
            .all(|l| l["hash"].as_str().is_some_and(|h| h.len() == 64)),
        "{exported}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["case_id"] == tampered.as_str() && l["actor"] == "someone"),
        "the export shows the rows as they are: {exported}"
    );
    let cli = orchestrator(&[
        "audit",
        "export",
        "--from",
        "2000-01-01",
        "--to",
        "2100-12-31",
        "--database",
        &db,
    ]);
    assert!(cli.status.success(), "{}", stderr(&cli));
    assert_eq!(stdout(&cli), exported, "the API and the CLI export alike");

    for (query, field) in [
        ("from=2026-2-1&to=2026-03-01", "from"),
        ("from=2026-02-01&to=soon", "to"),
        ("to=2026-03-01", "from"),
        ("from=2026-03-01&to=2026-02-01", "to"),
        ("from=2026-02-01&to=2026-03-01&since=x", "since"),
    ] {
        let (status, _, text) = get(&format!("/audit/export?{query}"), &auditor);
        let body = json(&text);
        assert_eq!(
            (status, &body["error"]["field"]),
            (400, &Value::from(field)),
            "{query}: {body:#}"
        );
    }
    let (status, _, text) = get("/audit/export?from=2000-01-01&to=2100-12-31", &officer);
    assert_eq!(status, 403, "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
