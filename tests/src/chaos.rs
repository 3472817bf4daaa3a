//! The fault-injection suite's shared parts (`tests/tests/chaos.rs`,
//! `ops/chaos`): a rig of real processes on a database of the test's own
//! — `orchestrator serve`, `worker`s, a Redis server and the services'
//! simulator, each of which a test can kill, stall, flush or restart — and
//! the checker every scenario ends with.
//!
//! The checker reads the database, not the processes' word:
//! - the number of cases equals the number the test started, and each
//!   ended as the test expected;
//! - no attempt had more than one completion applied (`attempt_succeeded`
//!   or `attempt_failed`); duplicates show as `completion_ignored`;
//! - every retry is explained: attempt *n* > 1 of a step entry follows the
//!   failure or timeout of attempt *n − 1* of that entry;
//! - `orchestrator audit verify` accepts every hash chain;
//! - the recovery time is from the fault to the first progress after it
//!   (a step succeeded, a step entered, a case completed), as the history
//!   records it.
//!
//! Each scenario's figures are printed and, when `DOCKET_CHAOS_REPORT`
//! names a file, appended to it as a JSON line; `ops/chaos` prints them as
//! a table. With `DOCKET_CHAOS_KEEP` set, a scenario's logs and database
//! are kept for a look afterwards.

// Test support: a rig that cannot be set up must fail the test that asked.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use docket_workers::contract::Outcome;
use docket_workers::pool::Reporter;
use docket_workers::redis::{RedisReporter, RedisSettings};
use serde_json::{Value, json};

use crate::{
    Stop, TEST_DATA_KEYS, TEST_JOB_KEYS, binary, free_port, orchestrator, repo, stderr, stdout,
    suite_env,
};

/// Where the suite's workflows are, relative to the repository.
pub const WORKFLOWS: &str = "tests/chaos";

/// History events that show a case moving on.
const PROGRESS: &[&str] = &["attempt_succeeded", "step_entered", "case_completed"];

/// How a case must end for its scenario to pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Completed with this outcome.
    Completed(String),
    /// Still active, its step failed and waiting for an operator.
    StepFailed,
}

/// What the checker found, for the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    pub cases: usize,
    pub completed: usize,
    /// Attempts with more than one completion applied (must be 0).
    pub applied_twice: usize,
    /// Completions recorded and ignored: duplicates and late arrivals.
    pub ignored: usize,
    /// Attempts after the first of their step entry.
    pub retries: usize,
    /// Attempts that timed out (the orchestrator's timer, or the worker's
    /// own timeout reported as a failure).
    pub timeouts: usize,
    /// From the fault to the first progress after it.
    pub recovery: Option<Duration>,
}

/// One line of the suite's table.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub started: usize,
    pub findings: Findings,
}

impl Row {
    pub fn json(&self) -> Value {
        let f = &self.findings;
        json!({
            "scenario": self.scenario,
            "started": self.started,
            "completed": f.completed,
            "duplicates": f.applied_twice,
            "ignored": f.ignored,
            "retries": f.retries,
            "timeouts": f.timeouts,
            "recovery_ms": f.recovery.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        })
    }

    /// Prints the row and appends it to `DOCKET_CHAOS_REPORT`, if set.
    pub fn record(&self) {
        let line = self.json().to_string();
        eprintln!("chaos: {line}");
        if let Some(path) = std::env::var_os("DOCKET_CHAOS_REPORT") {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .expect("open DOCKET_CHAOS_REPORT");
            // One write per line: tests run in parallel processes.
            file.write_all(format!("{line}\n").as_bytes())
                .expect("write DOCKET_CHAOS_REPORT");
        }
    }
}

/// A database of the test's own on the suite's PostgreSQL, dropped at the
/// end.
#[derive(Debug)]
pub struct Database {
    admin: String,
    name: String,
    pub url: String,
    /// Left in place for a look afterwards (`DOCKET_CHAOS_KEEP`).
    keep: bool,
}

impl Database {
    /// The `postgres` database of a private cluster, which the test may
    /// stop and start; it goes with the cluster.
    pub fn on_cluster(cluster: &Cluster) -> Database {
        Database {
            admin: String::new(),
            name: String::new(),
            url: cluster.url.clone(),
            keep: true,
        }
    }

    /// `None` (the test is skipped) when the suite's PostgreSQL is not set.
    pub fn create(tag: &str) -> Option<Database> {
        let admin = suite_env("DOCKET_TEST_DATABASE_URL")?;
        let name = format!("docket_chaos_{tag}_{}", std::process::id());
        psql(
            &admin,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let url = match admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("unexpected database URL {admin}"),
        };
        Some(Database {
            admin,
            name,
            url,
            keep: false,
        })
    }
}

impl Database {
    /// Sets a server setting for every new session on this database.
    pub fn set(&self, setting: &str, value: &str) {
        psql(
            &self.admin,
            &format!("ALTER DATABASE {} SET {setting} TO {value}", self.name),
        );
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let _ = Command::new("psql")
            .args([self.admin.as_str(), "-q", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .output();
    }
}

fn psql(url: &str, sql: &str) {
    let out = Command::new("psql")
        .args([url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("run psql");
    assert!(out.status.success(), "{sql}: {}", stderr(&out));
}

/// A PostgreSQL cluster of the test's own (initdb in its folder, trust
/// auth, loopback only), which it can stop and start: the suite's shared
/// server must not go down under other tests. Stopped when dropped.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    pub url: String,
}

impl Cluster {
    /// `None` (skipped, outside CI) when PostgreSQL's programs are not
    /// installed under /usr/lib/postgresql.
    pub fn start(dir: &Path) -> Option<Cluster> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
            .max();
        let Some(bin) = bin else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "no PostgreSQL under /usr/lib/postgresql"
            );
            eprintln!("skipped: no initdb under /usr/lib/postgresql/*/bin");
            return None;
        };
        let data = dir.join("pg");
        if as_root() {
            // PostgreSQL refuses to run as root: its files are postgres's.
            std::fs::create_dir_all(&data).expect("cluster dir");
            let status = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&data)
                .status()
                .expect("chown");
            assert!(status.success(), "chown the cluster's folder to postgres");
        }
        let port = free_port();
        let cluster = Cluster {
            bin,
            data,
            port,
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        };
        let out = cluster
            .as_pg("initdb")
            .arg("-D")
            .arg(&cluster.data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
            .args(["--no-sync", "--no-instructions"])
            .output()
            .expect("initdb");
        assert!(out.status.success(), "initdb: {}", stderr(&out));
        cluster.resume();
        Some(cluster)
    }

    fn as_pg(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command.current_dir("/");
            command
        } else {
            Command::new(program)
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> std::process::Output {
        let options = format!(
            // fsync off is safe here (the server crashes, not the machine);
            // synchronous_commit must stay on: with it off, the last commits
            // die with the server, a case started among them.
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.data.display()
        );
        self.as_pg("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.data.join("postgres.log"))
            .args(["-o", &options, "-w", "-t", "30"])
            .args(args)
            .output()
            .expect("pg_ctl")
    }

    /// Starts the server (again).
    pub fn resume(&self) {
        let out = self.pg_ctl(&["start"]);
        assert!(out.status.success(), "pg_ctl start: {}", stderr(&out));
    }

    /// Stops the server as a crash would (`immediate`: no shutdown
    /// checkpoint, every connection cut).
    pub fn halt(&self) {
        let out = self.pg_ctl(&["stop", "-m", "immediate"]);
        assert!(out.status.success(), "pg_ctl stop: {}", stderr(&out));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate"]);
    }
}

fn as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| stdout(&o).trim() == "0")
}

/// A Redis server on a fixed port that a test can kill and start again
/// (empty: no persistence), stall and resume.
#[derive(Debug)]
pub struct Redis {
    pub port: u16,
    pub url: String,
    dir: PathBuf,
    process: Option<Stop>,
}

impl Redis {
    /// `None` when this machine has no redis-server (outside CI).
    pub fn start(dir: &Path) -> Option<Redis> {
        let port = free_port();
        let mut redis = Redis {
            port,
            url: format!("redis://127.0.0.1:{port}"),
            dir: dir.to_owned(),
            process: None,
        };
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "no redis-server"
            );
            eprintln!("skipped: no redis-server on this machine");
            return None;
        }
        redis.restart();
        Some(redis)
    }

    /// Kills the server (SIGKILL) if it runs, then starts an empty one on
    /// the same port.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.process = Some(Stop(child));
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["ping"]) != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        drop(self.process.take());
    }

    /// Sends a signal (`STOP`, `CONT`) to the server.
    pub fn signal(&self, signal: &str) {
        let pid = self.process.as_ref().expect("redis runs").0.id();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Runs `redis-cli` against the server; its trimmed output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        stdout(&out).trim().to_owned()
    }

    /// Whether a worker holds a job of `queue` right now.
    pub fn job_in_flight(&self, queue: &str) -> bool {
        !self
            .cli(&[
                "--scan",
                "--pattern",
                &format!("docket:jobs:{queue}:inflight:*"),
            ])
            .is_empty()
    }
}

/// The whole system for one scenario.
#[derive(Debug)]
pub struct Rig {
    pub scenario: String,
    pub dir: PathBuf,
    pub db: Database,
    pub redis: Redis,
    sim_port: u16,
    simulator: Option<Stop>,
    serves: Vec<Stop>,
    workers: Vec<Stop>,
    started: BTreeMap<String, Expected>,
    runtime: tokio::runtime::Runtime,
    pool: Option<sqlx::PgPool>,
    cluster: Option<Cluster>,
}

impl Rig {
    /// A database, a Redis and a simulator answering after `delay`; no
    /// orchestrator or worker yet. `None`: skipped (no servers).
    pub fn new(scenario: &str, delay: &str) -> Option<Rig> {
        let dir = Rig::folder(scenario);
        let tag: String = scenario
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(20)
            .collect();
        let db = Database::create(&tag.to_ascii_lowercase())?;
        Rig::on(scenario, delay, dir, db)
    }

    /// [`Rig::new`] on a private PostgreSQL cluster ([`Rig::cluster`]).
    pub fn on_cluster(scenario: &str, delay: &str) -> Option<Rig> {
        let dir = Rig::folder(scenario);
        let cluster = Cluster::start(&dir)?;
        let db = Database::on_cluster(&cluster);
        let mut rig = Rig::on(scenario, delay, dir, db)?;
        rig.cluster = Some(cluster);
        Some(rig)
    }

    /// The private cluster of a rig made by [`Rig::on_cluster`].
    pub fn cluster(&self) -> &Cluster {
        self.cluster.as_ref().expect("a rig on its own cluster")
    }

    fn folder(scenario: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("docket-chaos-{scenario}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn on(scenario: &str, delay: &str, dir: PathBuf, db: Database) -> Option<Rig> {
        let redis = Redis::start(&dir)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let mut rig = Rig {
            scenario: scenario.to_owned(),
            dir,
            db,
            redis,
            sim_port: free_port(),
            simulator: None,
            serves: Vec::new(),
            workers: Vec::new(),
            started: BTreeMap::new(),
            runtime,
            pool: None,
            cluster: None,
        };
        rig.simulator(delay, &[]);
        Some(rig)
    }

    /// (Re)starts the simulator on its port, answering after `delay`,
    /// with `extra` flags (e.g. `--unavailable-first`).
    pub fn simulator(&mut self, delay: &str, extra: &[&str]) {
        drop(self.simulator.take());
        let listen = format!("127.0.0.1:{}", self.sim_port);
        let child = Command::new(binary("docket-simulator"))
            .args(["--listen", &listen, "--delay", delay])
            .args(extra)
            .env("DOCKET_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docket-simulator");
        self.simulator = Some(Stop(child));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.sim_port)).is_err() {
            assert!(Instant::now() < deadline, "the simulator did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self, name: &str) -> Stdio {
        let n = std::fs::read_dir(&self.dir).map_or(0, Iterator::count);
        Stdio::from(
            std::fs::File::create(self.dir.join(format!("{n:02}-{name}.log"))).expect("log"),
        )
    }

    /// `orchestrator serve` in production mode on the rig's database and
    /// Redis, with the suite's workflows; `env` adds variables (faults).
    pub fn serve_with(&self, env: &[(&str, &str)], extra: &[&str]) -> Stop {
        let mut command = Command::new(binary("orchestrator"));
        command
            .args(["serve", "--poll", "50ms", "--redis-url", &self.redis.url])
            .args(["--job-keys", TEST_JOB_KEYS, "--database", &self.db.url])
            .args(["--workflows", WORKFLOWS])
            .args(extra)
            .env("DOCKET_DATA_KEYS", TEST_DATA_KEYS)
            .env("DOCKET_LOG", "info")
            .envs(env.iter().copied())
            .current_dir(repo())
            .stdout(Stdio::null())
            .stderr(self.log("serve"));
        Stop(command.spawn().expect("start orchestrator serve"))
    }

    /// Starts an orchestrator that the rig keeps running.
    pub fn serve(&mut self) {
        self.serve_extra(&[]);
    }

    /// [`Rig::serve`] with more flags (`--api-listen`).
    pub fn serve_extra(&mut self, extra: &[&str]) {
        let serve = self.serve_with(&[], extra);
        self.serves.push(serve);
    }

    /// Kills (SIGKILL) the orchestrator started `n`-th by [`Rig::serve`].
    pub fn kill_serve(&mut self, n: usize) {
        drop(self.serves.remove(n));
    }

    /// A `worker` on the identity and bench queues, heartbeating every
    /// second, calling the simulator.
    pub fn spawn_worker(&self) -> Stop {
        self.spawn_worker_to(&[], self.log("worker"))
    }

    /// Runs a worker whose wall clock is `offset` off the machine's
    /// (libfaketime's syntax: `-3m`, `+90`), as a machine whose clock has
    /// drifted would be: its monotonic clock is left alone. Returns how it
    /// ended (it is expected to refuse to start) and what it logged, or
    /// `None` (the scenario is skipped) outside CI when libfaketime is not
    /// installed.
    pub fn worker_with_clock(&self, offset: &str) -> Option<(ExitStatus, String)> {
        let Some(lib) = libfaketime() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "libfaketime is not installed (ops/test installs it)"
            );
            eprintln!("skipped: libfaketime is not installed (apt-get install libfaketime)");
            return None;
        };
        let lib = lib.display().to_string();
        let log = self.dir.join(format!("worker-clock{offset}.log"));
        let mut worker = self.spawn_worker_to(
            &[
                ("LD_PRELOAD", lib.as_str()),
                ("FAKETIME", offset),
                ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ],
            Stdio::from(std::fs::File::create(&log).expect("log")),
        );
        let status = worker
            .exit_within(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("a worker with its clock {offset} did not refuse to start"));
        Some((status, std::fs::read_to_string(&log).unwrap_or_default()))
    }

    fn spawn_worker_to(&self, env: &[(&str, &str)], log: Stdio) -> Stop {
        let sim = format!("http://127.0.0.1:{}", self.sim_port);
        let child = Command::new(binary("worker"))
            .envs(env.iter().copied())
            .args(["--redis-url", &self.redis.url, "--job-keys", TEST_JOB_KEYS])
            .args(["--realname-url", &sim, "--queues", "identity,bench"])
            .args([
                "--poll",
                "50ms",
                "--heartbeat",
                "1s",
                "--missed-heartbeats",
                "2",
            ])
            .args(["--concurrency", "4", "--grace", "1s"])
            .env("DOCKET_LOG", "info,docket_workers::pool=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start worker");
        Stop(child)
    }

    /// Starts a worker that the rig keeps running.
    pub fn worker(&mut self) {
        let worker = self.spawn_worker();
        self.workers.push(worker);
    }

    /// Kills (SIGKILL) the worker started `n`-th by [`Rig::worker`].
    pub fn kill_worker(&mut self, n: usize) {
        drop(self.workers.remove(n));
    }

    /// Runs an `orchestrator` case command on the rig's database.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend(["--database", &self.db.url, "--workflows", WORKFLOWS]);
        let out = orchestrator(&all);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    }

    /// Starts a case of the `chaos` workflow (a service call, two quick
    /// steps) that must complete `done`; its id.
    pub fn start(&mut self) -> String {
        let input = self.dir.join("input.json");
        let person = json!({"name": "陈明", "id_number": "11010519491231002X"});
        std::fs::write(&input, person.to_string()).expect("input");
        let case = self.start_case("chaos", &input);
        self.expect(&case, Expected::Completed("done".to_owned()));
        case
    }

    /// Starts a case of the `chaos-timer` workflow (a two-second wait that
    /// ends by its timer, then a quick step) that must complete `done`.
    pub fn start_timer(&mut self) -> String {
        let input = self.dir.join("empty.json");
        std::fs::write(&input, "{}").expect("input");
        let case = self.start_case("chaos-timer", &input);
        self.expect(&case, Expected::Completed("done".to_owned()));
        case
    }

    fn start_case(&self, workflow: &str, input: &Path) -> String {
        let input = input.display().to_string();
        self.cli(&["start", workflow, "--input", &input])
            .trim()
            .to_owned()
    }

    /// Changes how `case` must end.
    pub fn expect(&mut self, case: &str, expected: Expected) {
        self.started.insert(case.to_owned(), expected);
    }

    /// Runs a read-only query with one text column and one number per row;
    /// `None` while the database does not answer.
    fn query<T>(&mut self, run: impl AsyncFnOnce(&sqlx::PgPool) -> sqlx::Result<T>) -> Option<T> {
        let url = self.db.url.clone();
        let pool = &mut self.pool;
        self.runtime.block_on(async move {
            if pool.is_none() {
                let options = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(2));
                *pool = options.connect(&url).await.ok();
            }
            run(pool.as_ref()?).await.ok()
        })
    }

    /// How many cases are completed.
    pub fn completed(&mut self) -> usize {
        self.query(async |pool| {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM cases WHERE status = 'completed'")
                .fetch_one(pool)
                .await
        })
        .map_or(0, |n| usize::try_from(n).unwrap_or(0))
    }

    /// How many history events of `kind` the database holds.
    pub fn events(&mut self, kind: &str) -> usize {
        let kind = kind.to_owned();
        self.query(async move |pool| {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM history WHERE kind = $1")
                .bind(kind)
                .fetch_one(pool)
                .await
        })
        .map_or(0, |n| usize::try_from(n).unwrap_or(0))
    }

    /// The phase of `case` (`attempting`, `failed`, …).
    pub fn phase(&mut self, case: &str) -> Option<String> {
        let case = case.to_owned();
        self.query(async move |pool| {
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT state->'phase'->>'phase' FROM cases WHERE id = $1",
            )
            .bind(case)
            .fetch_one(pool)
            .await
        })
        .flatten()
    }

    /// The attempt ids of `kind` events (e.g. `attempt_succeeded`) of
    /// `case`, in history order.
    pub fn attempts(&mut self, case: &str, kind: &str) -> Vec<String> {
        let (case, kind) = (case.to_owned(), kind.to_owned());
        self.query(async move |pool| {
            sqlx::query_scalar::<_, String>(
                "SELECT payload->>'attempt_id' FROM history \
                 WHERE case_id = $1 AND kind = $2 ORDER BY seq",
            )
            .bind(case)
            .bind(kind)
            .fetch_all(pool)
            .await
        })
        .unwrap_or_default()
    }

    /// Waits until `done` holds, failing after `within` with `what`.
    pub fn wait_until(
        &mut self,
        what: &str,
        within: Duration,
        mut done: impl FnMut(&mut Rig) -> bool,
    ) {
        let deadline = Instant::now() + within;
        while !done(self) {
            for serve in &mut self.serves {
                serve.assert_running("orchestrator serve");
            }
            if Instant::now() >= deadline {
                let cases = self.snapshot();
                panic!(
                    "{}: {what} not within {within:?}; logs in {}; cases:\n{cases}",
                    self.scenario,
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Each case's status, step, phase, timers and outbox rows, for a
    /// failure's message.
    fn snapshot(&mut self) -> String {
        let rows = self.query(async |pool| {
            sqlx::query_scalar::<_, String>(
                "SELECT concat_ws(' ', c.id, c.status, c.current_step, c.state->>'phase', \
                     'timers:', (SELECT string_agg(t.id || '@' || t.due_at, ',') \
                                 FROM timers t WHERE t.case_id = c.id), \
                     'outbox:', (SELECT string_agg(o.attempt_id || '=' || \
                                        coalesce(o.dispatched_at::text, 'waiting') || '/' || a.status, ',') \
                                 FROM outbox o JOIN attempts a ON a.id = o.attempt_id \
                                 WHERE a.case_id = c.id)) \
                 FROM cases c ORDER BY c.created_at",
            )
            .fetch_all(pool)
            .await
        });
        rows.map_or_else(
            || "(the database does not answer)".to_owned(),
            |r| r.join("\n"),
        )
    }

    /// Waits until every case the test expects to complete has.
    pub fn wait_all_completed(&mut self, within: Duration) {
        let want = self
            .started
            .values()
            .filter(|e| matches!(e, Expected::Completed(_)))
            .count();
        self.wait_until("every case completed", within, |rig| {
            rig.completed() >= want
        });
    }

    /// Pushes a report for `attempt_id` onto the completions queue, as a
    /// worker would: a duplicate, or a late one.
    pub fn inject_completion(&self, attempt_id: &str, outcome: Outcome) {
        let settings = RedisSettings::default();
        let url = self.redis.url.clone();
        let attempt_id = attempt_id.to_owned();
        self.runtime.block_on(async move {
            let conn = docket_workers::redis::connect(&url, &settings)
                .await
                .expect("connect to Redis");
            RedisReporter::new(settings.completions(conn))
                .report(attempt_id, outcome)
                .await;
        });
    }

    /// Stops every process but the database's server, runs the checker
    /// and records the scenario's row.
    pub fn finish(mut self, fault_at: Option<DateTime<Utc>>) -> Findings {
        self.serves.clear();
        self.workers.clear();
        let findings = check(&self.db.url, &self.started, fault_at);
        Row {
            scenario: self.scenario.clone(),
            started: self.started.len(),
            findings: findings.clone(),
        }
        .record();
        if let Some(pool) = self.pool.take() {
            self.runtime.block_on(pool.close());
        }
        // A private cluster's data is in the folder: it is stopped either way.
        drop(self.cluster.take());
        if std::env::var_os("DOCKET_CHAOS_KEEP").is_some() {
            eprintln!(
                "kept: logs in {}, database {}",
                self.dir.display(),
                self.db.url
            );
            self.db.keep = true;
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        findings
    }
}

/// Debian's libfaketime, which shifts the clocks of a process it is
/// preloaded into.
fn libfaketime() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("faketime/libfaketime.so.1"))
        .chain([PathBuf::from("/usr/lib/faketime/libfaketime.so.1")])
        .find(|p| p.exists())
}

/// One history row, as the checker reads it.
#[derive(Debug, sqlx::FromRow)]
struct Event {
    case_id: String,
    at: DateTime<Utc>,
    kind: String,
    attempt_id: Option<String>,
    attempt: Option<i64>,
    code: Option<String>,
}

/// The checks every scenario ends with (see the module's documentation),
/// on the PostgreSQL database at `url`; panics naming the first broken
/// guarantee.
pub fn check(
    url: &str,
    expected: &BTreeMap<String, Expected>,
    fault_at: Option<DateTime<Utc>>,
) -> Findings {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (cases, events) = runtime.block_on(async {
        let pool = sqlx::PgPool::connect(url)
            .await
            .expect("connect to the database");
        let cases: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT id, status, outcome, state->'phase'->>'phase' FROM cases ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .expect("read cases");
        let events: Vec<Event> = sqlx::query_as(
            "SELECT case_id, at, kind, payload->>'attempt_id' AS attempt_id, \
                    (payload->>'attempt')::bigint AS attempt, payload->>'code' AS code \
             FROM history ORDER BY case_id, seq",
        )
        .fetch_all(&pool)
        .await
        .expect("read history");
        pool.close().await;
        (cases, events)
    });

    let mut found = Findings {
        cases: cases.len(),
        ..Findings::default()
    };
    assert_eq!(
        cases.len(),
        expected.len(),
        "the database holds {} cases, {} were started",
        cases.len(),
        expected.len()
    );
    for (id, status, outcome, phase) in &cases {
        let want = expected
            .get(id)
            .unwrap_or_else(|| panic!("case {id} was never started by the test"));
        match want {
            Expected::Completed(want) => assert!(
                status == "completed" && outcome.as_deref() == Some(want.as_str()),
                "case {id}: {status} {outcome:?}, expected completed {want}"
            ),
            Expected::StepFailed => assert!(
                status == "active" && phase.as_deref() == Some("failed"),
                "case {id}: {status} in phase {phase:?}, expected its step failed"
            ),
        }
        if status == "completed" {
            found.completed += 1;
        }
    }

    // Completions applied per attempt; attempts that ended badly.
    let mut applied: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ended_badly: BTreeMap<&str, ()> = BTreeMap::new();
    for e in &events {
        let Some(attempt_id) = e.attempt_id.as_deref() else {
            continue;
        };
        match e.kind.as_str() {
            "attempt_succeeded" | "attempt_failed" => {
                *applied.entry(attempt_id).or_default() += 1;
            }
            "completion_ignored" => found.ignored += 1,
            _ => {}
        }
        if e.kind == "attempt_timed_out" || e.code.as_deref() == Some("timeout") {
            found.timeouts += 1;
        }
        if e.kind == "attempt_scheduled" {
            let attempt = e.attempt.unwrap_or(1);
            if attempt > 1 {
                found.retries += 1;
                let previous = match attempt_id.rsplit_once('/') {
                    Some((entry, _)) => format!("{entry}/{}", attempt - 1),
                    None => panic!("attempt id {attempt_id} has no attempt number"),
                };
                assert!(
                    ended_badly.contains_key(previous.as_str()),
                    "case {}: attempt {attempt_id} was scheduled, but nothing in the \
                     history says why {previous} needed a retry",
                    e.case_id
                );
            }
        }
        if matches!(e.kind.as_str(), "attempt_failed" | "attempt_timed_out") {
            ended_badly.insert(attempt_id, ());
        }
    }
    let twice: Vec<_> = applied.iter().filter(|(_, n)| **n > 1).collect();
    found.applied_twice = twice.len();
    assert!(
        twice.is_empty(),
        "completions applied more than once: {twice:?}"
    );

    let out = orchestrator(&["audit", "verify", "--database", url]);
    assert!(
        out.status.success(),
        "audit verify failed: {}{}",
        stdout(&out),
        stderr(&out)
    );

    found.recovery = fault_at.and_then(|fault| {
        events
            .iter()
            .filter(|e| e.at > fault && PROGRESS.contains(&e.kind.as_str()))
            .map(|e| e.at)
            .min()
            .and_then(|at| (at - fault).to_std().ok())
    });
    found
}
