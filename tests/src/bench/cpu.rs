//! Where a run's CPU went: the CPU time of each process on the path, read
//! from `/proc` before and after, per job or per step. A throughput is
//! bound by CPU when these add up to the machine's cores.

use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use super::services::cpu_ticks;

/// CPU time per unit of work (a job or a step), in microseconds, by
/// process; `None` for a process the run does not have.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuShare {
    pub database_us: Option<f64>,
    pub serve_us: Option<f64>,
    pub worker_us: Option<f64>,
    pub redis_us: Option<f64>,
    /// The benchmark itself: starting and watching the cases.
    pub bench_us: Option<f64>,
    /// Cores kept busy on average by all of the above.
    pub cores: f64,
}

/// The processes whose CPU time is read. `postmaster` stands for a whole
/// PostgreSQL server: it, its live backends and those that have exited.
#[derive(Debug, Clone, Copy, Default)]
pub struct Watched {
    pub postmaster: Option<u32>,
    pub serve: Option<u32>,
    pub worker: Option<u32>,
    pub redis: Option<u32>,
    pub bench: Option<u32>,
}

/// CPU seconds of each watched process, in the order of [`Watched`].
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    at: Instant,
    secs: [Option<f64>; 5],
}

impl Watched {
    pub fn read(&self) -> anyhow::Result<Reading> {
        let hz = super::services::clock_ticks() as f64;
        let one = |pid: Option<u32>| -> anyhow::Result<Option<f64>> {
            pid.map(|pid| Ok(cpu_ticks(pid)?.own as f64 / hz))
                .transpose()
        };
        let database = self
            .postmaster
            .map(|pid| Ok::<_, anyhow::Error>(server_ticks(pid)? as f64 / hz))
            .transpose()?;
        Ok(Reading {
            at: Instant::now(),
            secs: [
                database,
                one(self.serve)?,
                one(self.worker)?,
                one(self.redis)?,
                one(self.bench)?,
            ],
        })
    }
}

impl Reading {
    /// The CPU time per unit of `units` units of work done since `earlier`.
    pub fn per_unit_since(&self, earlier: &Reading, units: usize) -> CpuShare {
        let wall = self.at.duration_since(earlier.at).as_secs_f64();
        let used: Vec<Option<f64>> = self
            .secs
            .iter()
            .zip(earlier.secs)
            .map(|(now, then)| Some(now.as_ref()? - then?))
            .collect();
        let per = |secs: Option<f64>| secs.map(|s| s * 1e6 / units.max(1) as f64);
        CpuShare {
            database_us: per(used[0]),
            serve_us: per(used[1]),
            worker_us: per(used[2]),
            redis_us: per(used[3]),
            bench_us: per(used[4]),
            cores: used.iter().flatten().sum::<f64>() / wall.max(1e-6),
        }
    }
}

impl CpuShare {
    /// `database 250, serve 110, … µs`: the processes the run has.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            ("database", self.database_us),
            ("serve", self.serve_us),
            ("worker", self.worker_us),
            ("Redis", self.redis_us),
            ("bench", self.bench_us),
        ]
        .into_iter()
        .filter_map(|(what, us)| Some(format!("{what} {:.0}", us?)))
        .collect();
        format!("{} µs", parts.join(", "))
    }
}

/// The clock ticks a PostgreSQL server has used: the postmaster's own,
/// those of its children that have exited (it waits for them), and those
/// of its live children.
fn server_ticks(postmaster: u32) -> anyhow::Result<u64> {
    let main = cpu_ticks(postmaster)?;
    let mut ticks = main.own + main.children;
    let entries = std::fs::read_dir("/proc").context("reading /proc")?;
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // A process may end between the listing and the read.
        if let Ok(child) = cpu_ticks(pid)
            && child.parent == postmaster
        {
            ticks += child.own;
        }
    }
    Ok(ticks)
}
