//! Helpers shared by the end-to-end tests: they run Docket's real binaries
//! as a user would.

// Test support: failing to run a binary must fail the test that asked.
#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::OnceLock;

pub mod chaos;

/// The repository's top folder.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The path of a workspace binary, built (once per test process) with the
/// same profile as the tests so it is never stale.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args([
            "build",
            "--quiet",
            "--bin",
            "orchestrator",
            "--bin",
            "worker",
            "--bin",
            "docket-simulator",
        ]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let status = cmd.current_dir(repo()).status().expect("run cargo build");
        assert!(status.success(), "cargo build failed");
    });
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo().join("target"), PathBuf::from);
    target.join(profile).join(name)
}

/// Runs `orchestrator` with the given arguments from the repository's top
/// folder.
pub fn orchestrator(args: &[&str]) -> Output {
    let mut command = Command::new(binary("orchestrator"));
    data_keys_for(&mut command, args);
    command
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run orchestrator")
}

/// The master keys for personal data that every process of a test on
/// PostgreSQL shares; on SQLite each database keeps its own beside it.
pub const TEST_DATA_KEYS: &str = "test:ZG9ja2V0LWRhdGEta2V5LTAxMjM0NTY3ODlhYmNkZWY=";

/// Gives `command` [`TEST_DATA_KEYS`] when its arguments name a PostgreSQL
/// database.
pub fn data_keys_for(command: &mut Command, args: &[&str]) {
    if args.iter().any(|a| a.starts_with("postgres")) {
        command.env("DOCKET_DATA_KEYS", TEST_DATA_KEYS);
    }
}

/// Standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A child process that is killed when dropped, so a failing test leaves
/// nothing running.
#[derive(Debug)]
pub struct Stop(pub Child);

impl Stop {
    /// Fails the test if the process has exited: it was meant to keep
    /// running. Shows what it wrote to a piped stderr.
    pub fn assert_running(&mut self, what: &str) {
        if let Ok(Some(status)) = self.0.try_wait() {
            let mut err = String::new();
            if let Some(mut stderr) = self.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
            }
            panic!("{what} exited ({status}): {err}");
        }
    }

    /// How the process ended, once it has, or `None` if it is still
    /// running after `within`.
    pub fn exit_within(&mut self, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A setting the test suite provides (`ops/test`, `ops/dev-services`).
/// Missing in CI is a failure; by hand, the test is skipped with a notice.
pub fn suite_env(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) => Some(value),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{name} is not set: run the suite with ops/test")
        }
        Err(_) => {
            eprintln!("skipped: {name} is not set (start the servers with ops/dev-services)");
            None
        }
    }
}

/// A Redis server of the test's own, in `dir`, with its URL; `None` when
/// this machine has no redis-server (the suite installs it; by hand it
/// may be missing).
pub fn private_redis(dir: &Path) -> Option<(Stop, String)> {
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .spawn();
    let child = match child {
        Ok(c) => Stop(c),
        Err(_) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipped: no redis-server on this machine");
            return None;
        }
        Err(e) => panic!("cannot start redis-server: {e}"),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let ping = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "ping"])
            .output();
        if ping.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG") {
            return Some((child, format!("redis://127.0.0.1:{port}")));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("redis-server did not answer on port {port}");
}

/// Docket's simulator of the government services on a free loopback port,
/// answering after `delay` (e.g. `"0s"`), with its base URL.
pub fn simulator(delay: &str) -> (Stop, String) {
    let port = free_port();
    let child = Command::new(binary("docket-simulator"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--delay", delay])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start docket-simulator");
    let child = Stop(child);
    // Wait until it listens: a first call refused would be retried only
    // after the retry policy's backoff.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "docket-simulator did not listen on {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (child, format!("http://127.0.0.1:{port}"))
}

/// The key both `serve` and `worker` seal jobs with in tests.
pub const TEST_JOB_KEYS: &str = "test:ZG9ja2V0LXRlc3Qta2V5LTAxMjM0NTY3ODlhYmNkZWY=";

/// `orchestrator serve` in production mode on `redis`, sealing jobs with
/// [`TEST_JOB_KEYS`]; `extra` adds flags (database, workflows, contacts …).
pub fn serve_on_redis(redis: &str, extra: &[&str]) -> Stop {
    let mut command = Command::new(binary("orchestrator"));
    data_keys_for(&mut command, extra);
    let child = command
        .args([
            "serve",
            "--poll",
            "50ms",
            "--redis-url",
            redis,
            "--job-keys",
            TEST_JOB_KEYS,
        ])
        .args(extra)
        .current_dir(repo())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start orchestrator serve");
    Stop(child)
}

/// `orchestrator serve` in embedded mode on `database`, with its HTTP API on
/// a free loopback port; `extra` adds flags. Returns once `/health` answers.
pub fn serve_api(database: &str, extra: &[&str]) -> (Stop, String) {
    serve_api_to(database, extra, std::process::Stdio::null())
}

/// [`serve_api`], its log (standard error) written to the file `log`.
pub fn serve_api_logged(database: &str, extra: &[&str], log: &Path) -> (Stop, String) {
    let file = std::fs::File::create(log).expect("create the log file");
    serve_api_to(database, extra, std::process::Stdio::from(file))
}

fn serve_api_to(database: &str, extra: &[&str], log: std::process::Stdio) -> (Stop, String) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut command = Command::new(binary("orchestrator"));
    data_keys_for(&mut command, &[database]);
    let child = command
        .args(["serve", "--database", database, "--poll", "20ms"])
        .args(["--api-listen", &listen])
        .args(extra)
        .current_dir(repo())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start orchestrator serve");
    let mut serve = Stop(child);
    let base = format!("http://{listen}");
    let client = reqwest::blocking::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        serve.assert_running("orchestrator serve");
        let up = client
            .get(format!("{base}/health"))
            .timeout(std::time::Duration::from_secs(2))
            .send();
        if up.is_ok_and(|r| r.status().is_success()) {
            return (serve, base);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the API did not answer on {listen}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A new API token of `role` named `name`, created with `orchestrator token`.
pub fn api_token(database: &str, name: &str, role: &str) -> String {
    let out = orchestrator(&[
        "token",
        "create",
        "--name",
        name,
        "--role",
        role,
        "--database",
        database,
    ]);
    assert!(out.status.success(), "token create: {}", stderr(&out));
    stdout(&out).trim().to_owned()
}

/// The body of `POST /cases` for a valid residence-permit application:
/// the case then waits for the applicant's address (`await_address`).
pub fn applicant_case() -> serde_json::Value {
    serde_json::json!({
        "workflow": "residence-permit",
        "input": {
            "applicant_name": "陈明",
            "id_number": "11010519491231002X",
            "phone": "13800000001",
            "wechat_openid": "wx-test",
            "category": "employment",
            "through_agent": false
        }
    })
}
