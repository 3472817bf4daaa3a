//! Timers that fall due together: cases of `tests/bench/timer.yaml` wait
//! one hour for an event that never comes. They are started through the
//! library with its clock set so that every one of their timers falls due
//! at the same instant, a few seconds after the last is written, while a
//! real `orchestrator serve` runs. The figure is the time from that
//! instant to the last case changed by its timer (the database's own
//! `updated_at`).

use std::time::{Duration, Instant};

use anyhow::bail;
use chrono::{TimeDelta, Utc};

use super::library::{Lib, Pace};
use super::services::{Binaries, Db, Redis};

pub const WORKFLOW: &str = "bench-timer";
/// The wait's timeout in `timer.yaml`.
const TIMEOUT: TimeDelta = TimeDelta::hours(1);

#[derive(Debug, Clone, Copy)]
pub struct TimerFigures {
    pub timers: usize,
    /// From the instant they fell due to the last one fired.
    pub fire_secs: f64,
    pub fired_per_s: f64,
    /// Whether the last timer was written after they fell due (the
    /// estimate of the writing time was short): the figure then counts
    /// from the last write instead.
    pub written_late: bool,
}

pub async fn run(
    bins: &Binaries,
    redis: &Redis,
    db: &Db,
    timers: usize,
    parked_per_s: Option<f64>,
    margin: Duration,
) -> anyhow::Result<TimerFigures> {
    let workflows = bins.repo.join("tests/bench");
    let probe = Lib::system(db, &workflows, &bins.data_keys).await?;
    // How fast cases are written here, to set the instant they fall due.
    let rate = match parked_per_s {
        Some(rate) => rate,
        None => {
            let n = 200.min(timers).max(1);
            let begun = Instant::now();
            probe
                .start_many(super::waiting::WORKFLOW, n, Pace::Flat { tasks: 8 })
                .await?;
            n as f64 / begun.elapsed().as_secs_f64().max(1e-6)
        }
    };
    redis.flush()?;
    let mut serve = bins.serve(db, &redis.url, "timers").await?;
    let writing = Duration::from_secs_f64(timers as f64 / rate * 1.5) + margin;
    let due = Utc::now() + TimeDelta::from_std(writing)?;
    let lib = Lib::at(db, &workflows, &bins.data_keys, due - TIMEOUT).await?;
    lib.start_many(WORKFLOW, timers, Pace::Flat { tasks: 8 })
        .await?;
    let written = Utc::now();
    let deadline = Instant::now() + Duration::from_secs(1800) + writing;
    loop {
        serve.proc.check()?;
        let ended = db.ended(WORKFLOW).await?;
        if usize::try_from(ended).unwrap_or(0) >= timers {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {ended} of {timers} timers fired within 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    serve.proc.stop(Duration::from_secs(10)).await;
    let last = db.last_update(WORKFLOW).await?.unwrap_or(written);
    let from = due.max(written);
    let fire_secs = (last - from).to_std().unwrap_or_default().as_secs_f64();
    Ok(TimerFigures {
        timers,
        fire_secs,
        fired_per_s: timers as f64 / fire_secs.max(1e-6),
        written_late: written > due,
    })
}
