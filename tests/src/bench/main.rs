//! `docket-bench`: Docket measured against the floor it stands on, in one
//! run on one machine (issue 8; `ops/bench`, `BENCHMARKS.md`).
//!
//! It starts a private Redis, creates (and drops) databases of its own on
//! the PostgreSQL at `DATABASE_URL`, and runs the real `orchestrator serve`
//! and `worker` binaries found beside it. Phases:
//!
//! - [`services::redis_floor`]: `redis-benchmark` LPUSH / RPOP;
//! - [`raw`]: apalis-redis no-op jobs with our worker pool's configuration;
//! - [`flows`]: orchestrated steps per second and dispatch latency, on
//!   PostgreSQL and on SQLite;
//! - [`waiting`]: start latency through the HTTP API, then memory, CPU and
//!   SQL bytes with many cases parked in a wait;
//! - [`timers`]: many timers falling due at once.
//!
//! It prints one table and writes the same figures as JSON (`--json`).

mod cpu;
mod flows;
mod library;
mod raw;
mod report;
mod services;
mod timers;
mod waiting;

/// The allocator of the `worker` binary, whose pool the raw phase runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::json;

use report::Report;
use services::{Binaries, Db, Redis};

/// Jobs each worker runs at once: the `worker` binary's default
/// (`--concurrency`), used for the raw pool and the worker process alike.
const WORKER_CONCURRENCY: usize = 8;

/// Benchmarks Docket against raw apalis-redis and Redis, in one run.
#[derive(Debug, Parser)]
#[command(name = "docket-bench", about)]
struct Args {
    /// Where to write the figures as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A seconds-long run with tiny sizes: checks that every phase runs and
    /// reports, measures nothing worth quoting.
    #[arg(long)]
    smoke: bool,
    /// The PostgreSQL server to create the benchmark's databases on (a
    /// role that may create databases).
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Phases to run, of `floor,raw,flows,waiting,timers`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "floor,raw,flows,waiting,timers"
    )]
    phases: Vec<String>,
    /// Databases of the throughput phase, of `postgres,sqlite`.
    #[arg(long, value_delimiter = ',', default_value = "postgres,sqlite")]
    databases: Vec<String>,
    /// Cases of ten no-op steps started at once (saturating load).
    #[arg(long)]
    cases: Option<usize>,
    /// No-op jobs pushed and drained by the raw apalis-redis pool (apalis-redis
    /// 1.0.0 fails at 8,000 due jobs in one queue).
    #[arg(long)]
    raw_jobs: Option<usize>,
    /// How long cases are offered at half the saturating load.
    #[arg(long, value_parser = humantime_secs)]
    half_load_for: Option<Duration>,
    /// Also offer cases at this many steps per second, for as long as at
    /// half load: a load that is the same whatever the throughput of the
    /// binaries measured.
    #[arg(long)]
    fixed_load: Option<f64>,
    /// Numbers of cases parked in a wait at which to measure `serve`.
    #[arg(long, value_delimiter = ',')]
    waiting: Option<Vec<usize>>,
    /// Cases started one after another through `POST /cases`.
    #[arg(long)]
    starts: Option<usize>,
    /// Timers falling due together.
    #[arg(long)]
    timers: Option<usize>,
    /// Requests per `redis-benchmark` test.
    #[arg(long)]
    redis_requests: Option<u64>,
    /// Seconds of `serve`'s CPU time sampled while cases wait.
    #[arg(long, value_parser = humantime_secs)]
    sample: Option<Duration>,
    /// Where `orchestrator` and `worker` are; default: beside this binary.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The repository (for `tests/bench/*.yaml`).
    #[arg(long)]
    repo: Option<PathBuf>,
    /// Keep the processes' logs (in a folder under the temp dir, named on
    /// stderr) instead of deleting them.
    #[arg(long)]
    keep_logs: bool,
}

fn humantime_secs(text: &str) -> Result<Duration, String> {
    text.trim_end_matches('s')
        .parse::<f64>()
        .map(Duration::from_secs_f64)
        .map_err(|e| format!("seconds, e.g. 10 or 2.5s: {e}"))
}

/// The sizes of one run.
#[derive(Debug, Clone)]
struct Sizes {
    cases: usize,
    raw_jobs: usize,
    half_load_for: Duration,
    waiting: Vec<usize>,
    starts: usize,
    timers: usize,
    redis_requests: u64,
    settle: Duration,
    sample: Duration,
    /// Between the last timer written and the instant they fall due.
    timer_margin: Duration,
}

impl Sizes {
    fn of(args: &Args) -> Sizes {
        let base = if args.smoke {
            Sizes {
                cases: 20,
                raw_jobs: 200,
                half_load_for: Duration::from_secs(1),
                waiting: vec![100, 300],
                starts: 20,
                timers: 200,
                redis_requests: 2_000,
                settle: Duration::from_millis(300),
                sample: Duration::from_millis(500),
                timer_margin: Duration::from_secs(1),
            }
        } else {
            Sizes {
                cases: 300,
                raw_jobs: 5_000,
                half_load_for: Duration::from_secs(15),
                waiting: vec![10_000, 100_000],
                starts: 500,
                timers: 10_000,
                redis_requests: 100_000,
                settle: Duration::from_secs(5),
                sample: Duration::from_secs(10),
                timer_margin: Duration::from_secs(3),
            }
        };
        Sizes {
            cases: args.cases.unwrap_or(base.cases),
            raw_jobs: args.raw_jobs.unwrap_or(base.raw_jobs),
            half_load_for: args.half_load_for.unwrap_or(base.half_load_for),
            waiting: args.waiting.clone().unwrap_or(base.waiting),
            starts: args.starts.unwrap_or(base.starts),
            timers: args.timers.unwrap_or(base.timers),
            redis_requests: args.redis_requests.unwrap_or(base.redis_requests),
            settle: base.settle,
            sample: args.sample.unwrap_or(base.sample),
            timer_margin: base.timer_margin,
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let sizes = Sizes::of(&args);
    if let Some(rate) = args.fixed_load
        && !(rate.is_finite() && rate > 0.0)
    {
        bail!("--fixed-load takes a number of steps per second above 0, not {rate}");
    }
    let phase = |name: &str| args.phases.iter().any(|p| p == name);
    let repo = match &args.repo {
        Some(repo) => repo.clone(),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."),
    };
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this binary's folder")?
            .to_path_buf(),
    };
    for name in ["orchestrator", "worker"] {
        if !bin_dir.join(name).exists() {
            bail!(
                "no `{name}` in {} (build it with the same profile, or pass --bin-dir)",
                bin_dir.display()
            );
        }
    }
    let work = std::env::temp_dir().join(format!("docket-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let bins = Binaries {
        dir: bin_dir,
        repo: repo.clone(),
        job_keys: docket_workers::sealing::Keyring::generate("bench"),
        data_keys: docket::privacy::DataKeys::generate("bench"),
        logs: work.clone(),
    };
    let needs_pg = phase("waiting")
        || phase("timers")
        || (phase("flows") && args.databases.iter().any(|d| d == "postgres"));
    let pg = match (&args.database_url, needs_pg) {
        (Some(url), _) => Some(url.clone()),
        (None, false) => None,
        (None, true) => {
            bail!("DATABASE_URL is not set: PostgreSQL phases need a server (ops/bench starts one)")
        }
    };

    let redis = Redis::start(&work)?;
    let mut report = Report {
        machine: machine(pg.as_deref()).await,
        settings: json!({
            "smoke": args.smoke,
            "worker_concurrency": WORKER_CONCURRENCY,
            "cases": sizes.cases,
            "steps_per_case": flows::STEPS,
            "raw_jobs": sizes.raw_jobs,
            "half_load_for_secs": sizes.half_load_for.as_secs_f64(),
            "waiting": sizes.waiting,
            "starts": sizes.starts,
            "timers": sizes.timers,
            "redis_requests": sizes.redis_requests,
        }),
        ..Report::default()
    };

    if phase("floor") {
        eprintln!("bench: redis-benchmark LPUSH/RPOP");
        report.redis_floor = Some(services::redis_floor(redis.port, sizes.redis_requests)?);
    }
    if phase("raw") {
        eprintln!("bench: raw apalis-redis, {} jobs", sizes.raw_jobs);
        redis.flush()?;
        report.raw = Some(raw::run(&redis, sizes.raw_jobs, WORKER_CONCURRENCY).await?);
    }
    if phase("flows") {
        for database in &args.databases {
            eprintln!("bench: orchestrated throughput and latency on {database}");
            let db = match (database.as_str(), &pg) {
                ("postgres", Some(url)) => Db::postgres(url, "flows").await?,
                ("sqlite", _) => Db::sqlite(&work, "flows").await?,
                (other, _) => bail!("--databases takes postgres and sqlite, not `{other}`"),
            };
            let result = flows::run(
                &bins,
                &redis,
                &db,
                sizes.cases,
                sizes.half_load_for,
                args.fixed_load,
                WORKER_CONCURRENCY,
            )
            .await;
            db.drop_db().await?;
            report.flows.push(result?);
        }
    }
    if let (true, Some(url)) = (phase("waiting"), &pg) {
        eprintln!(
            "bench: start latency and the cost of waiting ({:?} cases)",
            sizes.waiting
        );
        let db = Db::postgres(url, "waiting").await?;
        let windows = waiting::Windows {
            settle: sizes.settle,
            sample: sizes.sample,
        };
        let result = waiting::run(&bins, &redis, &db, sizes.starts, &sizes.waiting, windows).await;
        db.drop_db().await?;
        report.waiting = Some(result?);
    }
    if let (true, Some(url)) = (phase("timers"), &pg) {
        eprintln!("bench: {} timers falling due together", sizes.timers);
        let db = Db::postgres(url, "timers").await?;
        let rate = report
            .waiting
            .as_ref()
            .and_then(|w| w.sizes.first())
            .map(|s| s.parked_per_s);
        let result = timers::run(&bins, &redis, &db, sizes.timers, rate, sizes.timer_margin).await;
        db.drop_db().await?;
        report.timers = Some(result?);
    }

    print!("{}", report.table());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.json())?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("bench: figures written to {}", path.display());
    }
    drop(redis);
    if args.keep_logs {
        eprintln!("bench: logs kept in {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(())
}

/// What the figures were measured on.
async fn machine(pg: Option<&str>) -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: Option<u64> = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok());
    let version = |cmd: &str| {
        std::process::Command::new(cmd)
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let postgres = match pg {
        Some(url) => match sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
        {
            Ok(pool) => {
                let v: Option<String> = sqlx::query_scalar("SHOW server_version")
                    .fetch_one(&pool)
                    .await
                    .ok();
                let fsync: Option<String> =
                    sqlx::query_scalar("SHOW fsync").fetch_one(&pool).await.ok();
                let sync: Option<String> = sqlx::query_scalar("SHOW synchronous_commit")
                    .fetch_one(&pool)
                    .await
                    .ok();
                pool.close().await;
                json!({"version": v, "fsync": fsync, "synchronous_commit": sync})
            }
            Err(_) => serde_json::Value::Null,
        },
        None => serde_json::Value::Null,
    };
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "cpu_model": model,
        "memory_bytes": mem_kib.map(|k| k * 1024),
        "redis": version("redis-server"),
        "postgres": postgres,
    })
}
