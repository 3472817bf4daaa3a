//! The Redis worker pool under faults, on a Redis server this test starts
//! and owns: a worker killed in the middle of a job has the job recovered
//! by another worker within seconds.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use docket_tests::{
    Stop, TEST_JOB_KEYS, binary, orchestrator, private_redis, serve_on_redis, simulator, stderr,
    stdout,
};
use serde_json::{Value, json};

fn status(common: &[&str], case: &str) -> Value {
    let mut args = vec!["status", case, "--json"];
    args.extend(common);
    let out = orchestrator(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

#[test]
fn a_job_of_a_killed_worker_is_recovered_by_another_within_seconds() {
    let dir = std::env::temp_dir().join(format!("docket-pool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let Some((_redis, redis)) = private_redis(&dir) else {
        return;
    };
    let database = format!("sqlite:{}", dir.join("docket.sqlite").display());
    let common = ["--database", database.as_str()];
    let keys = TEST_JOB_KEYS;

    // The real-name service answers after 4 s: long enough to kill a
    // worker in the middle of the job.
    let (_simulator, sim) = simulator("4s");

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
    let mut args = vec!["start", "residence-permit", "--input", &input];
    args.extend(common);
    let out = orchestrator(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let case = stdout(&out).trim().to_owned();

    let _serve = serve_on_redis(&redis, &common);
    let worker = |name: &str| {
        Stop(
            Command::new(binary("worker"))
                .args([
                    "--redis-url",
                    &redis,
                    "--job-keys",
                    keys,
                    "--realname-url",
                    &sim,
                ])
                .args([
                    "--queues",
                    "identity",
                    "--poll",
                    "50ms",
                    "--heartbeat",
                    "1s",
                    "--missed-heartbeats",
                    "2",
                ])
                .env("DOCKET_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{name}: {e}")),
        )
    };

    let first = worker("first");
    // Wait until the first worker holds the job, then kill it mid-call.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(&common, &case);
        assert_eq!(s["step"], "verify_identity", "{s:#}");
        let out = Command::new("redis-cli")
            .args([
                "-u",
                &redis,
                "--scan",
                "--pattern",
                "docket:jobs:identity:inflight:*",
            ])
            .output()
            .expect("redis-cli");
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no worker took the job");
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed_at = Instant::now();
    drop(first);

    let _second = worker("second");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(&common, &case);
        if s["step"] == "await_address" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job was never recovered: {s:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let recovered = killed_at.elapsed();
    eprintln!("recovered {:.1} s after the kill", recovered.as_secs_f64());
    // Far below the attempt's 2-minute timeout: orphan recovery, not the timer.
    assert!(recovered < Duration::from_secs(60));
    let mut args = vec!["history", case.as_str(), "--json"];
    args.extend(common);
    let history: Vec<Value> = serde_json::from_slice(&orchestrator(&args).stdout).expect("history");
    let succeeded = history
        .iter()
        .filter(|r| r["event"]["type"] == "attempt_succeeded")
        .count();
    assert_eq!(succeeded, 1, "the step completed exactly once");
    let _ = std::fs::remove_dir_all(&dir);
}

fn start_case(common: &[&str], dir: &std::path::Path, n: u32) -> String {
    let input = dir.join(format!("input-{n}.json"));
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
    let mut args = vec!["start", "residence-permit", "--input", &input];
    args.extend(common);
    let out = orchestrator(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_owned()
}

fn wait_for_step(common: &[&str], case: &str, step: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let s = status(common, case);
        if s["step"] == step {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "case never reached {step}: {s:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_pool_keeps_working_after_redis_stalls_longer_than_its_timeouts() {
    let dir = std::env::temp_dir().join(format!("docket-stall-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let Some((redis_process, redis)) = private_redis(&dir) else {
        return;
    };
    let database = format!("sqlite:{}", dir.join("docket.sqlite").display());
    let common = ["--database", database.as_str()];
    let keys = TEST_JOB_KEYS;
    let (_simulator, sim) = simulator("0s");
    let _serve = serve_on_redis(&redis, &common);
    let _worker = Stop(
        Command::new(binary("worker"))
            .args([
                "--redis-url",
                &redis,
                "--job-keys",
                keys,
                "--realname-url",
                &sim,
            ])
            .args([
                "--queues",
                "identity",
                "--poll",
                "50ms",
                "--heartbeat",
                "1s",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("worker"),
    );

    let before = start_case(&common, &dir, 1);
    wait_for_step(&common, &before, "await_address", Duration::from_secs(30));

    // Redis stops answering for 8 s: longer than the 5 s response timeout
    // of every client.
    let pid = redis_process.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    std::thread::sleep(Duration::from_secs(8));
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .expect("kill")
            .success()
    );

    let after = start_case(&common, &dir, 2);
    let took = wait_for_step(&common, &after, "await_address", Duration::from_secs(60));
    eprintln!(
        "a case started after the stall finished its first step in {:.1} s",
        took.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
