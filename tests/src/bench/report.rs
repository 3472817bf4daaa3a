//! The figures of one run: printed as one table, written as JSON.

use serde::Serialize;
use serde_json::{Value, json};

use super::flows::{Dispatch, FlowFigures};
use super::raw::RawFigures;
use super::timers::TimerFigures;
use super::waiting::Waiting;

/// A latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The distribution of `samples` (milliseconds); nearest-rank percentiles.
pub fn latency(mut samples: Vec<f64>) -> Latency {
    samples.sort_by(f64::total_cmp);
    let rank = |q: f64| {
        if samples.is_empty() {
            return f64::NAN;
        }
        let i = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[i - 1]
    };
    Latency {
        samples: samples.len(),
        p50_ms: rank(0.50),
        p99_ms: rank(0.99),
        max_ms: samples.last().copied().unwrap_or(f64::NAN),
    }
}

/// Everything one run measured; a phase that did not run is `None`.
#[derive(Debug, Default)]
pub struct Report {
    pub machine: Value,
    pub settings: Value,
    pub redis_floor: Option<(f64, f64)>,
    pub raw: Option<RawFigures>,
    pub flows: Vec<FlowFigures>,
    pub waiting: Option<Waiting>,
    pub timers: Option<TimerFigures>,
}

/// One target of the issue and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: &'static str,
    pub wanted: String,
    pub measured: String,
    pub met: bool,
}

impl Report {
    pub fn targets(&self) -> Vec<Target> {
        let mut out = Vec::new();
        if let Some(raw) = &self.raw {
            for f in &self.flows {
                let ratio = f.steps_per_s / raw.drain_per_s;
                out.push(Target {
                    name: "throughput",
                    wanted: format!("{} steps/s >= 0.5 x raw apalis-redis jobs/s", f.database),
                    measured: format!("{:.2} x", ratio),
                    met: ratio >= 0.5,
                });
            }
        }
        for f in &self.flows {
            out.push(Target {
                name: "dispatch latency",
                wanted: format!("{}: p99 <= 20 ms at half the saturating load", f.database),
                measured: format!("{:.1} ms", f.half.total.p99_ms),
                met: f.half.total.p99_ms <= 20.0,
            });
        }
        if let Some(w) = &self.waiting
            && let (Some(small), Some(large)) = (w.sizes.first(), w.sizes.last())
            && w.sizes.len() > 1
        {
            let growth = large.rss_bytes as f64 / small.rss_bytes as f64 - 1.0;
            out.push(Target {
                name: "cost of waiting",
                wanted: format!(
                    "RSS with {} waiting cases within 10% of that with {}",
                    large.cases, small.cases
                ),
                measured: format!("{:+.1}%", growth * 100.0),
                met: growth.abs() <= 0.10,
            });
        }
        if let Some(t) = &self.timers {
            out.push(Target {
                name: "timers",
                wanted: format!("{} due timers fired within 10 s", t.timers),
                measured: format!("{:.2} s", t.fire_secs),
                met: t.fire_secs <= 10.0,
            });
        }
        out
    }

    /// The table, one line per figure.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String, String)> = Vec::new();
        let mut row = |what: String, figure: String, note: &str| {
            rows.push((what, figure, note.to_owned()));
        };
        if let Some((lpush, rpop)) = self.redis_floor {
            row(
                "Redis floor: redis-benchmark LPUSH / RPOP".into(),
                format!("{} / {} req/s", thousands(lpush), thousands(rpop)),
                "50 clients, loopback",
            );
        }
        if let Some(raw) = &self.raw {
            row(
                format!("apalis-redis no-op, our pool config ({} jobs)", raw.jobs),
                format!("{} jobs/s", thousands(raw.drain_per_s)),
                "drain of a pushed backlog",
            );
            row(
                "apalis-redis no-op: CPU per job".into(),
                raw.cpu.describe(),
                &format!(
                    "{:.2} cores busy; the pool runs in the bench",
                    raw.cpu.cores
                ),
            );
            row(
                "apalis-redis push, one after another".into(),
                format!("{} jobs/s", thousands(raw.push_per_s)),
                "sealed jobs",
            );
        }
        for f in &self.flows {
            let db = f.database;
            row(
                format!("Orchestrated throughput, {db} ({} steps)", f.steps),
                format!("{} steps/s", thousands(f.steps_per_s)),
                &match &self.raw {
                    Some(raw) => format!("{:.2} x raw apalis", f.steps_per_s / raw.drain_per_s),
                    None => String::new(),
                },
            );
            row(
                format!("CPU per step, {db}, saturating"),
                f.cpu.describe(),
                &format!("{:.2} cores busy", f.cpu.cores),
            );
            row(
                format!("Dispatch latency, {db}, saturating"),
                ms3(&f.saturated.total),
                &parts(&f.saturated),
            );
            row(
                format!(
                    "Dispatch latency, {db}, half load ({} steps/s)",
                    thousands(f.half_load_steps_per_s)
                ),
                ms3(&f.half.total),
                &parts(&f.half),
            );
            row(
                format!("CPU per step, {db}, half load"),
                f.half_cpu.describe(),
                &format!(
                    "{:.2} cores busy; starting the cases included",
                    f.half_cpu.cores
                ),
            );
            if let Some((rate, fixed)) = &f.fixed {
                row(
                    format!("Dispatch latency, {db}, at {} steps/s", thousands(*rate)),
                    ms3(&fixed.total),
                    &parts(fixed),
                );
            }
        }
        if let Some(w) = &self.waiting {
            row(
                format!("Start latency, POST /cases ({} requests)", w.starts),
                format!(
                    "{:.1} / {:.1} ms",
                    w.start_latency.p50_ms, w.start_latency.p99_ms
                ),
                "p50 / p99, postgres",
            );
            for s in &w.sizes {
                row(
                    format!("{} waiting cases: serve RSS", thousands(s.cases as f64)),
                    format!("{:.1} MiB", s.rss_bytes as f64 / (1024.0 * 1024.0)),
                    "VmRSS after settling",
                );
                row(
                    format!("{} waiting cases: serve CPU", thousands(s.cases as f64)),
                    format!("{:.2}% of a core", s.cpu_percent),
                    &format!("over {:.0} s", s.sample_secs),
                );
                row(
                    format!("{} waiting cases: SQL bytes", thousands(s.cases as f64)),
                    format!("{:.0} B/case", s.sql_bytes_per_case),
                    "tables + indexes, postgres",
                );
            }
        }
        if let Some(t) = &self.timers {
            row(
                format!("{} timers due together", thousands(t.timers as f64)),
                format!("{:.2} s ({} /s)", t.fire_secs, thousands(t.fired_per_s)),
                if t.written_late {
                    "last written after due: from last write"
                } else {
                    "from due to last fired"
                },
            );
        }
        let w0 = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
        let w1 = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
        let mut out = String::new();
        let line = |a: &str, b: &str, c: &str| {
            format!(
                "| {a}{} | {b}{} | {c} |\n",
                " ".repeat(w0.saturating_sub(a.chars().count())),
                " ".repeat(w1.saturating_sub(b.chars().count()))
            )
        };
        out.push_str(&line("what", "figure", "note"));
        out.push_str(&format!(
            "|{}|{}|---|\n",
            "-".repeat(w0 + 2),
            "-".repeat(w1 + 2)
        ));
        for (a, b, c) in &rows {
            out.push_str(&line(a, b, c));
        }
        let targets = self.targets();
        if !targets.is_empty() {
            out.push('\n');
            for t in targets {
                out.push_str(&format!(
                    "{} {}: {} (measured {})\n",
                    if t.met { "MET   " } else { "MISSED" },
                    t.name,
                    t.wanted,
                    t.measured
                ));
            }
        }
        out
    }

    pub fn json(&self) -> Value {
        let flows: Vec<Value> = self
            .flows
            .iter()
            .map(|f| {
                json!({
                    "database": f.database,
                    "cases": f.cases,
                    "steps": f.steps,
                    "steps_per_s": f.steps_per_s,
                    "ratio_to_raw": self.raw.map(|r| f.steps_per_s / r.drain_per_s),
                    "cpu_per_step": f.cpu,
                    "dispatch_latency_saturated": f.saturated,
                    "half_load_steps_per_s": f.half_load_steps_per_s,
                    "dispatch_latency_half_load": f.half,
                    "cpu_per_step_half_load": f.half_cpu,
                    "fixed_load_steps_per_s": f.fixed.as_ref().map(|(rate, _)| rate),
                    "dispatch_latency_fixed_load": f.fixed.as_ref().map(|(_, d)| d),
                })
            })
            .collect();
        json!({
            "machine": self.machine,
            "settings": self.settings,
            "redis_floor": self.redis_floor.map(|(lpush, rpop)| json!({
                "lpush_per_s": lpush, "rpop_per_s": rpop,
            })),
            "raw_apalis": self.raw.map(|r| json!({
                "jobs": r.jobs, "push_per_s": r.push_per_s, "drain_per_s": r.drain_per_s,
                "cpu_per_job": r.cpu,
            })),
            "orchestrated": flows,
            "start_latency": self.waiting.as_ref().map(|w| json!({
                "requests": w.starts, "latency": w.start_latency,
            })),
            "waiting": self.waiting.as_ref().map(|w| w.sizes.iter().map(|s| json!({
                "cases": s.cases,
                "rss_bytes": s.rss_bytes,
                "cpu_percent_of_core": s.cpu_percent,
                "sample_secs": s.sample_secs,
                "sql_bytes_per_case": s.sql_bytes_per_case,
                "parked_per_s": s.parked_per_s,
            })).collect::<Vec<_>>()),
            "timers": self.timers.map(|t| json!({
                "timers": t.timers,
                "fire_secs": t.fire_secs,
                "fired_per_s": t.fired_per_s,
                "written_late": t.written_late,
            })),
            "targets": self.targets(),
        })
    }
}

/// The parts of a dispatch latency, at p50 and p99.
fn parts(d: &Dispatch) -> String {
    format!(
        "p50/p99/max; outbox {:.1}/{:.1}, Redis to worker {:.1}/{:.1}",
        d.outbox.p50_ms, d.outbox.p99_ms, d.pickup.p50_ms, d.pickup.p99_ms
    )
}

fn ms3(l: &Latency) -> String {
    format!("{:.1} / {:.1} / {:.1} ms", l.p50_ms, l.p99_ms, l.max_ms)
}

/// `12,345` for 12345.4.
fn thousands(x: f64) -> String {
    let n = x.round() as i64;
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let l = latency((1..=100).map(f64::from).collect());
        assert_eq!((l.p50_ms, l.p99_ms, l.max_ms), (50.0, 99.0, 100.0));
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
    }
}
