//! The servers a rig runs on: a database of the test's own, a private
//! PostgreSQL cluster the test may crash, and a private Redis.

// Test support: a rig that cannot be set up must fail the test that asked.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Stop, free_port, stderr, stdout, suite_env};

/// A database of the test's own on the suite's PostgreSQL, dropped at the
/// end.
#[derive(Debug)]
pub struct Database {
    admin: String,
    name: String,
    pub url: String,
    /// Left in place for a look afterwards (`DOCKET_CHAOS_KEEP`).
    pub(super) keep: bool,
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
