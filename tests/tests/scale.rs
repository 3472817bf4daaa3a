//! Production as deployed, at a scale: `orchestrator serve` on PostgreSQL
//! and Redis, two `worker` processes and the services' simulator, fifty
//! residence-permit cases run to a collected permit; one worker is killed
//! with SIGKILL in the middle, and no step is completed twice.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use docket_tests::{
    Stop, TEST_JOB_KEYS, binary, orchestrator, private_redis, serve_on_redis, simulator, stderr,
    stdout, suite_env,
};
use serde_json::{Value, json};

const CASES: usize = 50;

/// A webhook receiver that accepts every message (the service-account
/// channel stand-in).
fn webhook_sink() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let mut seen = Vec::new();
                // Read the head and the body the Content-Length announces.
                loop {
                    let Ok(n) = stream.read(&mut buf) else { return };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen).to_string();
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let length = text[..head_end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if seen.len() >= head_end + 4 + length {
                            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
                            return;
                        }
                    }
                }
            });
        }
    });
    format!("http://{addr}/messages")
}

fn run(args: &[&str], common: &[&str]) -> std::process::Output {
    let mut all = args.to_vec();
    all.extend(common);
    let out = orchestrator(&all);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    out
}

/// Waits until every case is waiting at `step` (or has ended, for `None`).
fn wait_all(common: &[&str], step: Option<&str>, within: Duration) {
    let start = Instant::now();
    loop {
        let filter = match step {
            Some(step) => vec![
                "cases", "--json", "--limit", "1000", "--status", "active", "--step", step,
            ],
            None => vec![
                "cases",
                "--json",
                "--limit",
                "1000",
                "--status",
                "completed",
            ],
        };
        let out = run(&filter, common);
        let cases: Vec<Value> = serde_json::from_slice(&out.stdout).expect("cases JSON");
        if cases.len() == CASES {
            return;
        }
        assert!(
            start.elapsed() < within,
            "{} of {CASES} cases reached {step:?}",
            cases.len()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn worker(redis: &str, keys: &str, sim: &str, webhook: &str, log: &std::path::Path) -> Stop {
    Stop(
        Command::new(binary("worker"))
            .args([
                "--redis-url",
                redis,
                "--job-keys",
                keys,
                "--realname-url",
                sim,
                "--intranet-url",
                sim,
            ])
            .args([
                "--webhook-url",
                webhook,
                "--poll",
                "50ms",
                "--heartbeat",
                "1s",
                "--concurrency",
                "4",
            ])
            .env("DOCKET_LOG", "docket_workers::pool=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("worker"),
    )
}

#[test]
fn fifty_cases_run_on_postgres_redis_and_two_workers_one_of_them_killed() {
    let Some(pg) = suite_env("DOCKET_TEST_DATABASE_URL") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("docket-scale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");

    // Our own database on the suite's PostgreSQL, dropped at the end.
    let db_name = format!("docket_scale_{}", std::process::id());
    let psql = |sql: &str| {
        let out = Command::new("psql")
            .args([pg.as_str(), "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    psql(&format!("CREATE DATABASE {db_name}"));
    let database = match pg.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db_name}"),
        None => panic!("unexpected database URL"),
    };
    let common = ["--database", database.as_str()];

    // Our own Redis, so the kill cannot disturb other tests.
    let Some((_redis, redis)) = private_redis(&dir) else {
        return;
    };
    let (_simulator, sim) = simulator("200ms");
    let webhook = webhook_sink();
    let keys = TEST_JOB_KEYS;

    let mut extra = vec![
        "--contact",
        "station=desk@station.test",
        "--contact",
        "supervisor=duty@station.test",
    ];
    extra.extend(common);
    let serve = serve_on_redis(&redis, &extra);
    let (log_a, log_b) = (dir.join("worker-a.log"), dir.join("worker-b.log"));
    let mut a = Some(worker(&redis, keys, &sim, &webhook, &log_a));
    let _b = worker(&redis, keys, &sim, &webhook, &log_b);

    let input = dir.join("input.json");
    std::fs::write(
        &input,
        json!({
            "applicant_name": "陈明", "id_number": "11010519491231002X", "phone": "13800000001",
            "wechat_openid": "wx-test", "category": "employment", "through_agent": false
        })
        .to_string(),
    )
    .expect("input");
    let input = input.display().to_string();
    let mut cases = Vec::new();
    for _ in 0..CASES {
        let out = run(&["start", "residence-permit", "--input", &input], &common);
        cases.push(stdout(&out).trim().to_owned());
    }

    let materials = json!({"materials": ["id_card", "photo", "lease_contract", "labour_contract"]});
    let stages: [(&str, &str, Value); 8] = [
        (
            "await_address",
            "address_bound",
            json!({"address": "泉州市丰泽区东海街道 1 号"}),
        ),
        (
            "await_registration",
            "registration_submitted",
            materials.clone(),
        ),
        (
            "await_registration_review",
            "registration_approved",
            json!({}),
        ),
        ("await_application", "application_submitted", materials),
        ("await_acceptance", "application_accepted", json!({})),
        ("await_permit", "permit_ready", json!({})),
        ("await_collection", "permit_collected", json!({})),
        ("", "", json!({})),
    ];
    for (i, (step, event, data)) in stages.iter().enumerate() {
        if step.is_empty() {
            break;
        }
        wait_all(&common, Some(step), Duration::from_secs(120));
        let file = dir.join(format!("{event}.json"));
        std::fs::write(&file, data.to_string()).expect("data");
        let file = file.display().to_string();
        for (n, case) in cases.iter().enumerate() {
            run(&["signal", case, event, "--data", &file], &common);
            // Kill one worker while the intranet checks of this stage run.
            if i == 0 && n == CASES / 2 {
                drop(a.take());
            }
        }
    }
    wait_all(&common, None, Duration::from_secs(120));

    let mut outcomes = BTreeMap::new();
    for case in &cases {
        let out = run(&["history", case, "--json"], &common);
        let history: Vec<Value> = serde_json::from_slice(&out.stdout).expect("history");
        let mut entries = BTreeMap::new();
        for r in &history {
            match r["event"]["type"].as_str() {
                Some("attempt_succeeded") => {
                    let id = r["event"]["attempt_id"].as_str().unwrap_or_default();
                    let entry = id.rsplit_once('/').map_or(id, |(e, _)| e).to_owned();
                    *entries.entry(entry).or_insert(0) += 1;
                }
                Some("case_completed") => {
                    *outcomes
                        .entry(
                            r["event"]["outcome"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                        )
                        .or_insert(0) += 1;
                }
                _ => {}
            }
        }
        assert!(
            entries.values().all(|n| *n == 1),
            "a step of {case} completed twice: {entries:?}"
        );
    }
    assert_eq!(outcomes, BTreeMap::from([("issued".to_owned(), CASES)]));
    let count = |log: &std::path::Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches("attempt finished")
            .count()
    };
    let (by_a, by_b) = (count(&log_a), count(&log_b));
    eprintln!("attempts run: worker a {by_a} (killed), worker b {by_b}");
    assert!(
        by_a > 0 && by_b > 0,
        "both workers did work: {by_a} and {by_b}"
    );

    // The database can only be dropped once the orchestrator has let go.
    drop(serve);
    psql(&format!("DROP DATABASE {db_name} WITH (FORCE)"));
    let _ = std::fs::remove_dir_all(&dir);
}
