//! Orchestrated throughput and dispatch latency: cases of ten no-op steps
//! (`tests/bench/noop.yaml`) run by the real `orchestrator serve` and a
//! real `worker` over Redis, on PostgreSQL or SQLite.
//!
//! - **Throughput** (saturating load): every case is started before
//!   `serve` starts, so the outbox always holds more than the workers can
//!   take. Steps per second = attempts / (last finished − first
//!   dispatched), from the database's own timestamps.
//! - **Dispatch latency**: from a step's completion being recorded (the
//!   transaction that finishes step k also schedules step k+1, at the same
//!   `now`) to step k+1's job starting on a worker (`bench.noop` reports
//!   its start time). Steps 2–10 of each case; step 1 follows the start of
//!   the case, not a completion. Measured on the saturating run, on cases
//!   started at an even pace at half of its throughput, and, when asked
//!   for, at a fixed pace: the same load for binaries of different
//!   throughput.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::cpu::{CpuShare, Watched};
use super::library::{Lib, Pace};
use super::report::{Latency, latency};
use super::services::{Binaries, Db, Proc, Redis, Serve};

pub const WORKFLOW: &str = "bench-noop";
/// Steps of [`WORKFLOW`].
pub const STEPS: usize = 10;

#[derive(Debug, Clone)]
pub struct FlowFigures {
    pub database: &'static str,
    pub cases: usize,
    pub steps: usize,
    pub steps_per_s: f64,
    /// CPU per step of the saturating run, from `serve`'s start to the
    /// last case's end.
    pub cpu: CpuShare,
    pub saturated: Dispatch,
    /// Steps per second offered in the half-load run.
    pub half_load_steps_per_s: f64,
    pub half: Dispatch,
    /// CPU per step of the half-load run, its cases' starts included.
    pub half_cpu: CpuShare,
    /// The run at a fixed pace: its steps per second, and its latency.
    pub fixed: Option<(f64, Dispatch)>,
}

/// Runs both measurements on `db`.
pub async fn run(
    bins: &Binaries,
    redis: &Redis,
    db: &Db,
    cases: usize,
    half_load_for: Duration,
    fixed_rate: Option<f64>,
    concurrency: usize,
) -> anyhow::Result<FlowFigures> {
    let workflows = bins.repo.join("tests/bench");
    let lib = Lib::system(db, &workflows, &bins.data_keys).await?;
    redis.flush()?;
    let saturated_ids = lib
        .start_many(WORKFLOW, cases, Pace::Flat { tasks: 4 })
        .await?;
    let tag = db.kind();
    let mut worker = bins.worker(&redis.url, concurrency, tag)?;
    let mut serve = bins.serve(db, &redis.url, tag).await?;
    let watched = Watched {
        postmaster: db.postmaster().await?,
        serve: Some(serve.proc.pid()),
        worker: Some(worker.pid()),
        redis: Some(redis.pid()),
        bench: Some(std::process::id()),
    };
    let before = watched.read()?;
    wait_ended(db, cases, &mut serve, &mut worker).await?;
    let after = watched.read()?;
    let attempts = db.attempts(WORKFLOW).await?;
    let cpu = after.per_unit_since(&before, attempts.len());
    let first = attempts
        .iter()
        .filter_map(|a| a.dispatched_at)
        .min()
        .context("no attempt was dispatched")?;
    let last = attempts
        .iter()
        .filter_map(|a| a.finished_at)
        .max()
        .context("no attempt finished")?;
    let window = (last - first).to_std().unwrap_or_default().as_secs_f64();
    let steps_per_s = attempts.len() as f64 / window.max(1e-6);
    let saturated = dispatch_latency(db, &saturated_ids.into_iter().collect()).await?;

    // Half the saturating load, offered at an even pace.
    let half_rate = steps_per_s / 2.0;
    let mut ended = cases;
    // The CPU of a paced run includes starting its cases (in this process
    // and in the database): one start per `STEPS` steps.
    let mut offer = async |rate: f64| -> anyhow::Result<(Dispatch, CpuShare)> {
        let every = Duration::from_secs_f64(STEPS as f64 / rate);
        let n = ((half_load_for.as_secs_f64() / every.as_secs_f64()).ceil() as usize).max(2);
        let before = watched.read()?;
        let ids = lib.start_many(WORKFLOW, n, Pace::Every(every)).await?;
        ended += n;
        wait_ended(db, ended, &mut serve, &mut worker).await?;
        let cpu = watched.read()?.per_unit_since(&before, n * STEPS);
        Ok((dispatch_latency(db, &ids.into_iter().collect()).await?, cpu))
    };
    let (half, half_cpu) = offer(half_rate).await?;
    let fixed = match fixed_rate {
        Some(rate) => Some((rate, offer(rate).await?.0)),
        None => None,
    };

    serve.proc.stop(Duration::from_secs(10)).await;
    worker.stop(Duration::from_secs(10)).await;
    Ok(FlowFigures {
        database: db.kind(),
        cases,
        steps: attempts.len(),
        steps_per_s,
        cpu,
        saturated,
        half_load_steps_per_s: half_rate,
        half,
        half_cpu,
        fixed,
    })
}

/// Waits until `total` cases of the workflow have ended.
async fn wait_ended(
    db: &Db,
    total: usize,
    serve: &mut Serve,
    worker: &mut Proc,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        serve.proc.check()?;
        worker.check()?;
        let ended = db.ended(WORKFLOW).await?;
        if usize::try_from(ended).unwrap_or(0) >= total {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {ended} of {total} cases ended within 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Dispatch latency of steps 2.. of the cases in `ids`.
async fn dispatch_latency(db: &Db, ids: &HashSet<String>) -> anyhow::Result<Dispatch> {
    let mut started: HashMap<(String, String), i64> = HashMap::new();
    for (case, state) in db.states(WORKFLOW).await? {
        if !ids.contains(&case) {
            continue;
        }
        let Some(results) = state["results"].as_object() else {
            continue;
        };
        for (step, result) in results {
            if let Some(us) = result["output"]["started_at_us"].as_i64() {
                started.insert((case.clone(), step.clone()), us);
            }
        }
    }
    let (mut total, mut outbox, mut pickup) = (Vec::new(), Vec::new(), Vec::new());
    for a in db.attempts(WORKFLOW).await? {
        if a.step == "s1" || !ids.contains(&a.case_id) {
            continue;
        }
        let Some(us) = started.get(&(a.case_id, a.step)) else {
            continue;
        };
        let scheduled = a.scheduled_at.timestamp_micros();
        total.push((us - scheduled) as f64 / 1000.0);
        if let Some(dispatched) = a.dispatched_at.map(|t| t.timestamp_micros()) {
            outbox.push((dispatched - scheduled) as f64 / 1000.0);
            pickup.push((us - dispatched) as f64 / 1000.0);
        }
    }
    if total.is_empty() {
        bail!("no step reported when it started");
    }
    Ok(Dispatch {
        total: latency(total),
        outbox: latency(outbox),
        pickup: latency(pickup),
    })
}

/// Dispatch latency and its two parts: waiting in the outbox (scheduled
/// to handed to Redis) and the transport (handed to Redis to started on a
/// worker).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Dispatch {
    pub total: Latency,
    pub outbox: Latency,
    pub pickup: Latency,
}
