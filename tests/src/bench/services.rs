//! What the benchmark runs on: a private Redis, databases of its own on
//! the PostgreSQL it is given (or SQLite files), and the real
//! `orchestrator serve` and `worker` processes, with their resident memory
//! and CPU time read from `/proc`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

/// A child process killed when dropped, so a failed run leaves nothing
/// behind.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    pub what: &'static str,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has exited, quoting the end of its log.
    pub fn check(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!("{} exited ({status}):\n{}", self.what, tail.join("\n"));
        }
        Ok(())
    }

    /// Asks the process to stop (SIGTERM), and kills it after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A Redis server of the benchmark's own: no persistence, loopback only.
#[derive(Debug)]
pub struct Redis {
    pub port: u16,
    pub url: String,
    proc: Proc,
}

impl Redis {
    pub fn start(dir: &Path) -> anyhow::Result<Redis> {
        let port = free_port()?;
        let log = dir.join("redis.log");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(&log)
            .stdout(Stdio::null())
            .spawn()
            .context("starting redis-server (install it, or run ops/bench)")?;
        let proc = Proc {
            child,
            what: "redis-server",
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if redis_cli(port, &["ping"]).is_ok_and(|o| o.trim() == "PONG") {
                return Ok(Redis {
                    port,
                    url: format!("redis://127.0.0.1:{port}"),
                    proc,
                });
            }
            if Instant::now() > deadline {
                bail!("redis-server did not answer on port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Empties it between phases.
    pub fn flush(&self) -> anyhow::Result<()> {
        redis_cli(self.port, &["flushall"])?;
        Ok(())
    }
}

fn redis_cli(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .context("running redis-cli")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `redis-benchmark` LPUSH and RPOP on `port`: requests per second, the
/// floor every queue on this Redis stands on.
pub fn redis_floor(port: u16, requests: u64) -> anyhow::Result<(f64, f64)> {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-n", &requests.to_string(), "-t", "lpush,rpop", "-q"])
        .output()
        .context("running redis-benchmark")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // `-q` prints `LPUSH: 91324.20 requests per second, p50=…`, after
    // progress lines ending in carriage returns.
    let rate = |name: &str| -> anyhow::Result<f64> {
        let line = text
            .split(['\n', '\r'])
            .rfind(|l| l.starts_with(&format!("{name}: ")) && l.contains("requests per second"))
            .with_context(|| format!("redis-benchmark printed no {name} figure: {text}"))?;
        let figure = line[name.len() + 2..]
            .split_whitespace()
            .next()
            .unwrap_or_default();
        figure
            .parse()
            .with_context(|| format!("redis-benchmark: `{line}`"))
    };
    Ok((rate("LPUSH")?, rate("RPOP")?))
}

/// A database of the benchmark's own: a PostgreSQL database created on the
/// server it was given (and dropped at the end), or a SQLite file.
#[derive(Debug)]
pub enum Db {
    Postgres {
        admin: String,
        name: String,
        url: String,
        pool: sqlx::PgPool,
    },
    Sqlite {
        path: PathBuf,
        url: String,
        pool: sqlx::SqlitePool,
    },
}

/// One attempt as the `attempts` table has it.
#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub case_id: String,
    pub step: String,
    pub scheduled_at: DateTime<Utc>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Db {
    /// Creates `docket_bench_<pid>_<tag>` on the server at `admin_url`.
    pub async fn postgres(admin_url: &str, tag: &str) -> anyhow::Result<Db> {
        let name = format!("docket_bench_{}_{tag}", std::process::id());
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(admin_url)
            .await
            .context("connecting to PostgreSQL (DATABASE_URL)")?;
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&admin)
                .await?;
        }
        admin.close().await;
        let url = match admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => bail!("DATABASE_URL `{admin_url}` names no database"),
        };
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await?;
        Ok(Db::Postgres {
            admin: admin_url.to_owned(),
            name,
            url,
            pool,
        })
    }

    /// A fresh SQLite file in `dir`.
    pub async fn sqlite(dir: &Path, tag: &str) -> anyhow::Result<Db> {
        let path = dir.join(format!("bench-{tag}.sqlite"));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let url = format!("sqlite:{}", path.display());
        // Created by the orchestrator's store; this pool only reads, and
        // waits for the writer when it must.
        docket::store::sqlite::SqliteStore::open(&url).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(&path)
                    .busy_timeout(Duration::from_secs(30)),
            )
            .await?;
        Ok(Db::Sqlite { path, url, pool })
    }

    pub fn url(&self) -> &str {
        match self {
            Db::Postgres { url, .. } | Db::Sqlite { url, .. } => url,
        }
    }

    /// The PostgreSQL server's postmaster, when it runs on this machine
    /// (the parent of this connection's backend); `None` for SQLite.
    pub async fn postmaster(&self) -> anyhow::Result<Option<u32>> {
        let Db::Postgres { pool, .. } = self else {
            return Ok(None);
        };
        let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(pool)
            .await?;
        let backend = u32::try_from(backend)?;
        Ok(cpu_ticks(backend).ok().map(|t| t.parent))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Db::Postgres { .. } => "postgres",
            Db::Sqlite { .. } => "sqlite",
        }
    }

    /// Cases of `workflow` that have ended.
    pub async fn ended(&self, workflow: &str) -> anyhow::Result<i64> {
        let sql = "SELECT COUNT(*) FROM cases c JOIN definitions d ON d.id = c.definition_id \
                   WHERE d.name = $1 AND c.status <> 'active'";
        Ok(match self {
            Db::Postgres { pool, .. } => {
                sqlx::query_scalar(sql)
                    .bind(workflow)
                    .fetch_one(pool)
                    .await?
            }
            Db::Sqlite { pool, .. } => {
                sqlx::query_scalar(sql)
                    .bind(workflow)
                    .fetch_one(pool)
                    .await?
            }
        })
    }

    /// Every case.
    pub async fn cases(&self) -> anyhow::Result<i64> {
        let sql = "SELECT COUNT(*) FROM cases";
        Ok(match self {
            Db::Postgres { pool, .. } => sqlx::query_scalar(sql).fetch_one(pool).await?,
            Db::Sqlite { pool, .. } => sqlx::query_scalar(sql).fetch_one(pool).await?,
        })
    }

    /// The latest change to a case of `workflow`.
    pub async fn last_update(&self, workflow: &str) -> anyhow::Result<Option<DateTime<Utc>>> {
        let sql = "SELECT MAX(c.updated_at) FROM cases c \
                   JOIN definitions d ON d.id = c.definition_id WHERE d.name = $1";
        Ok(match self {
            Db::Postgres { pool, .. } => {
                sqlx::query_scalar(sql)
                    .bind(workflow)
                    .fetch_one(pool)
                    .await?
            }
            Db::Sqlite { pool, .. } => {
                let text: Option<String> = sqlx::query_scalar(sql)
                    .bind(workflow)
                    .fetch_one(pool)
                    .await?;
                text.as_deref().map(parse_time).transpose()?
            }
        })
    }

    /// The attempts of the cases whose ids are at least `from_id`
    /// (case ids are time-ordered UUIDs), with each case's state.
    pub async fn attempts(&self, workflow: &str) -> anyhow::Result<Vec<AttemptRow>> {
        let sql = "SELECT a.case_id, a.step, a.scheduled_at, a.dispatched_at, a.finished_at \
                   FROM attempts a JOIN cases c ON c.id = a.case_id \
                   JOIN definitions d ON d.id = c.definition_id WHERE d.name = $1";
        let mut out = Vec::new();
        match self {
            Db::Postgres { pool, .. } => {
                for row in sqlx::query(sql).bind(workflow).fetch_all(pool).await? {
                    out.push(AttemptRow {
                        case_id: row.try_get(0)?,
                        step: row.try_get(1)?,
                        scheduled_at: row.try_get(2)?,
                        dispatched_at: row.try_get(3)?,
                        finished_at: row.try_get(4)?,
                    });
                }
            }
            Db::Sqlite { pool, .. } => {
                for row in sqlx::query(sql).bind(workflow).fetch_all(pool).await? {
                    let time = |i: usize| -> anyhow::Result<Option<DateTime<Utc>>> {
                        let text: Option<String> = row.try_get(i)?;
                        text.as_deref().map(parse_time).transpose()
                    };
                    out.push(AttemptRow {
                        case_id: row.try_get(0)?,
                        step: row.try_get(1)?,
                        scheduled_at: time(2)?.context("attempt without scheduled_at")?,
                        dispatched_at: time(3)?,
                        finished_at: time(4)?,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Each case of `workflow` with its stored state (JSON).
    pub async fn states(&self, workflow: &str) -> anyhow::Result<Vec<(String, serde_json::Value)>> {
        let mut out = Vec::new();
        match self {
            Db::Postgres { pool, .. } => {
                let sql = "SELECT c.id, CAST(c.state AS TEXT) FROM cases c \
                           JOIN definitions d ON d.id = c.definition_id WHERE d.name = $1";
                for row in sqlx::query(sql).bind(workflow).fetch_all(pool).await? {
                    let text: String = row.try_get(1)?;
                    out.push((row.try_get(0)?, serde_json::from_str(&text)?));
                }
            }
            Db::Sqlite { pool, .. } => {
                let sql = "SELECT c.id, c.state FROM cases c \
                           JOIN definitions d ON d.id = c.definition_id WHERE d.name = $1";
                for row in sqlx::query(sql).bind(workflow).fetch_all(pool).await? {
                    let text: String = row.try_get(1)?;
                    out.push((row.try_get(0)?, serde_json::from_str(&text)?));
                }
            }
        }
        Ok(out)
    }

    /// Bytes the database holds for cases: the tables a case writes to
    /// (with their indexes), or the SQLite file and its write-ahead log.
    pub async fn case_bytes(&self) -> anyhow::Result<i64> {
        match self {
            Db::Postgres { pool, .. } => {
                let sql = "SELECT CAST(SUM(pg_total_relation_size(CAST(t AS regclass))) AS BIGINT) \
                           FROM unnest(ARRAY['cases', 'history', 'timers', 'attempts', 'outbox']) AS t";
                Ok(sqlx::query_scalar::<_, Option<i64>>(sql)
                    .fetch_one(pool)
                    .await?
                    .unwrap_or(0))
            }
            Db::Sqlite { path, pool, .. } => {
                // Everything written is in the main file after a checkpoint.
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(pool)
                    .await?;
                let size = |suffix: &str| {
                    std::fs::metadata(format!("{}{suffix}", path.display())).map_or(0, |m| m.len())
                };
                Ok(i64::try_from(size("") + size("-wal")).unwrap_or(i64::MAX))
            }
        }
    }

    /// Drops the PostgreSQL database (every process using it must have
    /// stopped); removes the SQLite file.
    pub async fn drop_db(self) -> anyhow::Result<()> {
        match self {
            Db::Postgres {
                admin, name, pool, ..
            } => {
                pool.close().await;
                let admin = PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&admin)
                    .await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&admin)
                .await?;
                admin.close().await;
            }
            Db::Sqlite { path, pool, .. } => {
                pool.close().await;
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
        }
        Ok(())
    }
}

/// A time as SQLite holds it (RFC 3339 text).
fn parse_time(text: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    // sqlx writes `2026-01-01 10:00:00.123456+00:00`.
    Ok(DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%:z")
        .with_context(|| format!("a time in SQLite: `{text}`"))?
        .with_timezone(&Utc))
}

/// Where the real binaries are, and what every process of one run shares.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub dir: PathBuf,
    pub repo: PathBuf,
    /// The job keys `serve` and `worker` seal and open jobs with.
    pub job_keys: String,
    /// The master keys of personal data at rest (`DOCKET_DATA_KEYS`) of
    /// every `orchestrator` command and of the library.
    pub data_keys: String,
    pub logs: PathBuf,
}

/// `orchestrator serve` in production mode (Redis), with its HTTP API.
#[derive(Debug)]
pub struct Serve {
    pub proc: Proc,
    pub api: String,
}

impl Binaries {
    pub fn orchestrator(&self) -> Command {
        let mut cmd = Command::new(self.dir.join("orchestrator"));
        cmd.current_dir(&self.repo)
            .env("DOCKET_DATA_KEYS", &self.data_keys);
        cmd
    }

    /// Starts `serve` on `db` with the benchmark workflows, with every
    /// other setting at its default, and waits for its API to answer.
    pub async fn serve(&self, db: &Db, redis: &str, tag: &str) -> anyhow::Result<Serve> {
        let port = free_port()?;
        let listen = format!("127.0.0.1:{port}");
        let log = self.logs.join(format!("serve-{tag}.log"));
        let child = self
            .orchestrator()
            .args(["serve", "--database", db.url(), "--redis-url", redis])
            .args(["--job-keys", &self.job_keys, "--api-listen", &listen])
            .arg("--workflows")
            .arg(self.repo.join("tests/bench"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting orchestrator serve")?;
        let mut proc = Proc {
            child,
            what: "orchestrator serve",
            log,
        };
        let api = format!("http://{listen}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            proc.check()?;
            let health = client
                .get(format!("{api}/health"))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return Ok(Serve { proc, api });
            }
            if Instant::now() > deadline {
                bail!("orchestrator serve did not answer on {listen}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Starts a `worker` on the benchmark queue with `concurrency` slots
    /// and every other setting at its default.
    pub fn worker(&self, redis: &str, concurrency: usize, tag: &str) -> anyhow::Result<Proc> {
        let log = self.logs.join(format!("worker-{tag}.log"));
        let child = Command::new(self.dir.join("worker"))
            .args(["--redis-url", redis, "--job-keys", &self.job_keys])
            .args([
                "--queues",
                "bench",
                "--concurrency",
                &concurrency.to_string(),
            ])
            .current_dir(&self.repo)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting worker")?;
        Ok(Proc {
            child,
            what: "worker",
            log,
        })
    }

    /// A new API token for the gateway role.
    pub fn token(&self, db: &Db) -> anyhow::Result<String> {
        let out = self
            .orchestrator()
            .args(["token", "create", "--name", "bench", "--role", "gateway"])
            .args(["--database", db.url()])
            .output()?;
        if !out.status.success() {
            bail!(
                "orchestrator token create: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

/// Resident memory of a process, in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS in /proc/PID/status")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .context("VmRSS without a figure")?
        .parse()?;
    Ok(kib * 1024)
}

/// CPU time a process has used so far (user + system).
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let ticks = cpu_ticks(pid)?.own;
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
}

/// What `/proc/PID/stat` says of a process's CPU time, in clock ticks.
#[derive(Debug, Clone, Copy)]
pub struct Ticks {
    pub parent: u32,
    /// User + system time of the process itself.
    pub own: u64,
    /// User + system time of its children it has waited for.
    pub children: u64,
}

pub fn cpu_ticks(pid: u32) -> anyhow::Result<Ticks> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may hold spaces.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unreadable /proc/PID/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, ppid 4, utime 14, stime 15,
    // cutime 16 and cstime 17.
    let field = |n: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(n - 3)
            .context("short /proc/PID/stat")?
            .parse::<u64>()?)
    };
    Ok(Ticks {
        parent: u32::try_from(field(4)?)?,
        own: field(14)? + field(15)?,
        children: field(16)? + field(17)?,
    })
}

/// Clock ticks per second of `/proc/PID/stat`, asked of `getconf` once:
/// not a process started inside every window it measures.
pub fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}
