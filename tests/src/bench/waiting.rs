//! Start latency through the HTTP API, and the cost of waiting: cases
//! parked in a 30-day wait (`tests/bench/wait.yaml`) and what the real
//! `orchestrator serve` costs while they wait.
//!
//! For each size the cases are topped up through the library, the audit
//! chain is checkpointed (as `serve` does every minute), and a fresh
//! `serve` is started on the database; after it settles, its CPU time is
//! read over the sampling window and its resident memory at the end. SQL
//! bytes per case are what the tables a case writes to grew by, divided by
//! the cases.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::library::{Lib, Pace};
use super::report::{Latency, latency};
use super::services::{Binaries, Db, Redis, cpu_time, rss_bytes};

pub const WORKFLOW: &str = "bench-wait";

#[derive(Debug, Clone, Copy)]
pub struct WaitFigures {
    pub cases: usize,
    pub rss_bytes: u64,
    /// CPU time over wall time in the sampling window, in % of one core.
    pub cpu_percent: f64,
    pub sample_secs: f64,
    pub sql_bytes_per_case: f64,
    /// How fast the library parked them.
    pub parked_per_s: f64,
}

#[derive(Debug, Clone)]
pub struct Waiting {
    pub start_latency: Latency,
    pub starts: usize,
    pub sizes: Vec<WaitFigures>,
}

/// Windows of the measurement.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    /// After `serve` answers, before sampling.
    pub settle: Duration,
    pub sample: Duration,
}

pub async fn run(
    bins: &Binaries,
    redis: &Redis,
    db: &Db,
    starts: usize,
    sizes: &[usize],
    windows: Windows,
) -> anyhow::Result<Waiting> {
    let workflows = bins.repo.join("tests/bench");
    let lib = Lib::system(db, &workflows, &bins.data_keys).await?;
    let empty = db.case_bytes().await?;

    // Start latency: one request after another on a keep-alive connection.
    let token = bins.token(db)?;
    redis.flush()?;
    let serve = bins.serve(db, &redis.url, "api").await?;
    let client = reqwest::Client::new();
    let body = serde_json::json!({"workflow": WORKFLOW, "input": {}});
    let mut samples = Vec::with_capacity(starts);
    for _ in 0..starts {
        let begun = Instant::now();
        let response = client
            .post(format!("{}/cases", serve.api))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        samples.push(begun.elapsed().as_secs_f64() * 1000.0);
        if !status.is_success() {
            bail!("POST /cases answered {status}: {text}");
        }
    }
    serve.proc.stop(Duration::from_secs(10)).await;

    let mut figures = Vec::new();
    let mut sizes = sizes.to_vec();
    sizes.sort_unstable();
    for size in sizes {
        let have = usize::try_from(db.cases().await?).unwrap_or(0);
        let parking = Instant::now();
        let more = size.saturating_sub(have);
        lib.start_many(WORKFLOW, more, Pace::Flat { tasks: 8 })
            .await?;
        let parked_per_s = more as f64 / parking.elapsed().as_secs_f64().max(1e-6);
        lib.checkpoint().await?;
        redis.flush()?;
        let mut serve = bins.serve(db, &redis.url, &format!("wait-{size}")).await?;
        let pid = serve.proc.pid();
        tokio::time::sleep(windows.settle).await;
        let (cpu0, wall0) = (cpu_time(pid)?, Instant::now());
        tokio::time::sleep(windows.sample).await;
        serve.proc.check()?;
        let (cpu1, wall) = (cpu_time(pid)?, wall0.elapsed());
        let rss = rss_bytes(pid)?;
        serve.proc.stop(Duration::from_secs(10)).await;
        let cases = usize::try_from(db.cases().await?).context("case count")?;
        let bytes = db.case_bytes().await?;
        figures.push(WaitFigures {
            cases,
            rss_bytes: rss,
            cpu_percent: 100.0 * (cpu1 - cpu0).as_secs_f64() / wall.as_secs_f64(),
            sample_secs: wall.as_secs_f64(),
            sql_bytes_per_case: (bytes - empty) as f64 / cases.max(1) as f64,
            parked_per_s,
        });
    }
    Ok(Waiting {
        start_latency: latency(samples),
        starts,
        sizes: figures,
    })
}
