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

mod check;
mod servers;

pub use check::{Findings, Row, check};
pub use servers::{Cluster, Database, Redis};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use docket_workers::contract::Outcome;
use docket_workers::pool::Reporter;
use docket_workers::redis::{RedisReporter, RedisSettings};
use serde_json::json;

use crate::{
    Stop, TEST_DATA_KEYS, TEST_JOB_KEYS, binary, free_port, orchestrator, repo, stderr, stdout,
};

/// Where the suite's workflows are, relative to the repository.
pub const WORKFLOWS: &str = "tests/chaos";

/// How a case must end for its scenario to pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Completed with this outcome.
    Completed(String),
    /// Still active, its step failed and waiting for an operator.
    StepFailed,
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

    /// Adds a report for `attempt_id` to the reports stream, as a
    /// worker would: a duplicate, or a late one.
    pub fn inject_completion(&self, attempt_id: &str, outcome: Outcome) {
        let settings = RedisSettings::default();
        let url = self.redis.url.clone();
        let attempt_id = attempt_id.to_owned();
        self.runtime.block_on(async move {
            let conn = docket_workers::redis::connect(&url, &settings)
                .await
                .expect("connect to Redis");
            RedisReporter::new(conn, &settings)
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
