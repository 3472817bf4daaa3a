//! Production mode as deployed: `orchestrator serve` dispatching to Redis,
//! and a separate `worker` process running the jobs and reporting back
//! through Redis.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use docket_tests::{
    Stop, TEST_JOB_KEYS, binary, orchestrator, repo, serve_on_redis, stderr, stdout, suite_env,
};
use serde_json::{Value, json};

/// The test SMTP server (`ops/test`): its address and where mail lands.
fn smtp_server() -> Option<(String, String)> {
    match (
        std::env::var("DOCKET_TEST_SMTP_ADDR"),
        std::env::var("DOCKET_TEST_SMTP_DIR"),
    ) {
        (Ok(addr), Ok(dir)) => Some((addr, dir)),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("DOCKET_TEST_SMTP_ADDR is not set: run the suite with ops/test")
        }
        _ => {
            eprintln!(
                "no test SMTP server: the email is not checked (start one with ops/dev-services)"
            );
            None
        }
    }
}

fn smtp_args(smtp: &Option<(String, String)>) -> Vec<String> {
    let Some((addr, _)) = smtp else {
        return Vec::new();
    };
    let (host, port) = addr.rsplit_once(':').expect("HOST:PORT");
    [
        "--smtp-host",
        host,
        "--smtp-port",
        port,
        "--smtp-tls",
        "none",
        "--smtp-from",
        "docket@test.invalid",
    ]
    .map(str::to_owned)
    .to_vec()
}

#[test]
fn a_worker_process_runs_the_jobs_of_a_serving_orchestrator() {
    let Some(redis) = suite_env("DOCKET_TEST_REDIS_URL") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("docket-production-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let database = format!("sqlite:{}", dir.join("docket.sqlite").display());
    let workflows = repo()
        .join("tests/fixtures/materials-only")
        .display()
        .to_string();
    let prefix = format!("docket-e2e-{}", std::process::id());
    let Some(smtp) = smtp_server() else { return };
    let smtp = Some(smtp);
    let common = ["--database", &database, "--workflows", &workflows];
    // 32 bytes of base64: the key both processes seal and open jobs with.
    let keys = TEST_JOB_KEYS;

    let mut cases = Vec::new();
    for (n, submitted) in [json!(["id_card", "photo"]), json!(["photo"])]
        .iter()
        .enumerate()
    {
        let input = dir.join(format!("input-{n}.json"));
        std::fs::write(
            &input,
            json!({"category": "study", "submitted": submitted}).to_string(),
        )
        .expect("input");
        let input = input.display().to_string();
        let mut args = vec!["start", "materials-check", "--input", &input];
        args.extend(common);
        let out = orchestrator(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        cases.push(stdout(&out).trim().to_owned());
    }

    let mut extra = vec![
        "--redis-prefix",
        prefix.as_str(),
        "--contact",
        "station=desk@station.test",
    ];
    extra.extend(common);
    let mut serve = serve_on_redis(&redis, &extra);
    let mut worker = Stop(
        Command::new(binary("worker"))
            .args(["--redis-url", &redis, "--prefix", &prefix, "--poll", "50ms"])
            .args(["--job-keys", keys])
            .args(["--queues", "materials,notify"])
            .args(smtp_args(&smtp))
            .current_dir(repo())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("worker"),
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut outcomes = Vec::new();
    for case in &cases {
        loop {
            let mut args = vec!["status", case.as_str(), "--json"];
            args.extend(common);
            let out = orchestrator(&args);
            let status: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
            if status["status"]["status"] == "completed" {
                outcomes.push(status["status"]["outcome"].clone());
                break;
            }
            serve.assert_running("orchestrator serve");
            worker.assert_running("worker");
            assert!(
                Instant::now() < deadline,
                "case {case} never finished: {status:#}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(outcomes, [json!("complete"), json!("incomplete")]);
    // The complete case emailed the station through the real SMTP server.
    if let Some((_, maildir)) = &smtp {
        let received: Vec<String> = std::fs::read_dir(std::path::Path::new(maildir).join("new"))
            .expect("maildir")
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter(|m| m.contains(&cases[0]))
            .collect();
        assert_eq!(received.len(), 1, "one email about {}", cases[0]);
        assert!(
            received[0].contains("X-RcptTo: desk@station.test"),
            "{}",
            received[0]
        );
        assert!(
            received[0].contains(&format!("X-Docket-Attempt: {}/tell_station/", cases[0])),
            "{}",
            received[0]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    // The test's Redis keys all carry its prefix; remove them.
    let out = Command::new("redis-cli")
        .args(["-u", &redis, "--scan", "--pattern", &format!("{prefix}:*")])
        .output();
    if let Ok(out) = out {
        for key in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = Command::new("redis-cli")
                .args(["-u", &redis, "DEL", key])
                .output();
        }
    }
}
