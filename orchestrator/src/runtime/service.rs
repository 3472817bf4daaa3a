//! The long-running loops of an orchestrator process: applying worker
//! completions, dispatching jobs, firing timers and schedules, until
//! shutdown.

use std::sync::Arc;
use std::time::Duration;

use docket_workers::contract::Outcome;
use docket_workers::pool::Reporter;
use futures_util::future::BoxFuture;
use tokio::sync::{Notify, mpsc, watch};

use super::clock::Clock;
use super::dispatcher::{Transport, dispatch_once};
use super::{Orchestrator, RuntimeError};
use crate::store::audit::AuditStore;
use crate::store::{Store, Updated};

/// A worker's report on its way to the orchestrator.
pub type Completion = (String, Outcome);

/// Tuning of the loops.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How often the outbox and the timers are checked when nothing wakes
    /// the loop earlier.
    pub poll: Duration,
    /// Jobs each queue may have on the transport at once.
    pub window: u64,
    /// Timers fired per round; also schedules and their messages.
    pub timer_batch: u32,
    /// How often the stored schedules are brought in line with the latest
    /// deployed versions (another orchestrator may have deployed one).
    pub schedule_sync: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            poll: Duration::from_millis(200),
            window: 200,
            timer_batch: 500,
            schedule_sync: Duration::from_secs(60),
        }
    }
}

/// Sends in-process workers' reports to the orchestrator's loop.
#[derive(Debug, Clone)]
pub struct ChannelReporter(pub mpsc::UnboundedSender<Completion>);

impl Reporter for ChannelReporter {
    fn report(&self, attempt_id: String, outcome: Outcome) -> BoxFuture<'_, ()> {
        // The receiver is gone only during shutdown; the attempt's timer
        // covers a report lost then.
        let _ = self.0.send((attempt_id, outcome));
        Box::pin(async {})
    }
}

/// What one round of the loops did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub completions: usize,
    pub dispatched: usize,
    pub timers: usize,
    /// Schedule ticks claimed and their messages moved on.
    pub schedules: usize,
}

impl Round {
    pub fn is_idle(&self) -> bool {
        *self == Round::default()
    }
}

/// One round: apply the reports that arrived, dispatch waiting jobs, and
/// when `sweep` is set fire due timers and due schedules.
pub async fn round<S: Store>(
    orch: &Orchestrator<S>,
    transport: &dyn Transport,
    completions: &mut mpsc::UnboundedReceiver<Completion>,
    settings: Settings,
    sweep: bool,
) -> Result<Round, RuntimeError> {
    let mut done = Round::default();
    let mut reports = Vec::new();
    while let Ok(report) = completions.try_recv() {
        reports.push(report);
    }
    if !reports.is_empty() {
        done.completions = reports.len();
        let attempts: Vec<String> = reports.iter().map(|(a, _)| a.clone()).collect();
        for (attempt_id, result) in attempts.iter().zip(apply_reports(orch, reports).await) {
            if let Err(e) = result {
                tracing::error!(attempt = %attempt_id, error = %e, "completion could not be applied now; its attempt timer will retry it");
            }
        }
    }
    let now = orch.clock.now();
    done.dispatched = dispatch_once(&*orch.store, transport, settings.window, now)
        .await
        .map_err(|e| match e {
            super::dispatcher::DispatchError::Store(s) => RuntimeError::from(s),
            super::dispatcher::DispatchError::Transport(t) => RuntimeError::Transport(t),
        })?;
    if sweep {
        done.timers = orch.fire_due_timers(settings.timer_batch).await?;
        done.schedules = orch.fire_due_schedules(settings.timer_batch).await?;
    }
    Ok(done)
}

/// Applies reports that arrived together ([`Orchestrator::complete_all`]),
/// with a result each, in their order: an error only for a report that may
/// apply later; one that never will is logged and dropped.
pub(super) async fn apply_reports<S: Store>(
    orch: &Orchestrator<S>,
    reports: Vec<Completion>,
) -> Vec<Result<(), RuntimeError>> {
    let attempts: Vec<String> = reports.iter().map(|(a, _)| a.clone()).collect();
    let results = orch.complete_all(reports).await;
    attempts
        .iter()
        .zip(results)
        .map(|(attempt_id, result)| settled(attempt_id, result))
        .collect()
}

/// What became of a report: an error only when it may apply later.
fn settled(attempt_id: &str, result: Result<Updated, RuntimeError>) -> Result<(), RuntimeError> {
    match result {
        Ok(_) => Ok(()),
        // A report for a case or attempt we cannot place is logged and
        // dropped: it must not stop the loop for every other case.
        Err(
            e @ (RuntimeError::UnknownCase(_)
            | RuntimeError::BadAttemptId(_)
            | RuntimeError::Rejected(_)),
        ) => {
            tracing::warn!(attempt = %attempt_id, error = %e, "completion dropped");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Runs the loops until `shutdown` turns true. A failing round (the
/// database away for a moment) is logged and retried after `poll`.
/// `wake` cuts an idle wait short: whoever changes a case outside the
/// loop (the Redis completions consumer) notifies it, so the job the
/// change scheduled is dispatched at once rather than at the next poll.
pub async fn run<S: Store>(
    orch: Arc<Orchestrator<S>>,
    transport: Arc<dyn Transport>,
    mut completions: mpsc::UnboundedReceiver<Completion>,
    mut shutdown: watch::Receiver<bool>,
    settings: Settings,
    wake: Arc<Notify>,
) {
    let mut synced: Option<tokio::time::Instant> = None;
    // While completions keep the loop busy, timers and schedules are still
    // looked at once per poll, not on every round: a busy loop would
    // otherwise spend as many statements asking as applying (BENCHMARKS.md).
    // A sweep that found work is followed by another at once.
    let mut swept: Option<tokio::time::Instant> = None;
    let mut found = false;
    loop {
        if *shutdown.borrow() {
            return;
        }
        if synced.is_none_or(|at| at.elapsed() >= settings.schedule_sync) {
            match orch.sync_schedules().await {
                Ok(active) if synced.is_none() => tracing::info!(active, "schedules synced"),
                Ok(_) => {}
                // Tried again at the next sync; the schedules already
                // stored keep firing meanwhile.
                Err(e) => tracing::error!(error = %e, "schedules could not be synced"),
            }
            synced = Some(tokio::time::Instant::now());
        }
        let sweep = found || swept.is_none_or(|at| at.elapsed() >= settings.poll);
        if sweep {
            swept = Some(tokio::time::Instant::now());
        }
        let idle = match round(&orch, &*transport, &mut completions, settings, sweep).await {
            Ok(done) => {
                found = done.timers > 0 || done.schedules > 0;
                done.is_idle()
            }
            Err(e) => {
                tracing::error!(error = %e, "orchestrator round failed; retrying");
                true
            }
        };
        if idle {
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(settings.poll) => {}
                _ = wake.notified() => {}
                Some((attempt_id, outcome)) = completions.recv() => {
                    let result = orch.complete(&attempt_id, outcome).await;
                    if let Err(e) = settled(&attempt_id, result) {
                        tracing::error!(attempt = %attempt_id, error = %e, "completion could not be applied now; its attempt timer will retry it");
                    }
                }
            }
        }
    }
}

/// Checkpoints the audit chain every `every` until shutdown. A failed
/// checkpoint is logged and tried again at the next one: the chains of
/// the cases themselves are written with every decision.
pub async fn checkpoint_periodically<S: AuditStore>(
    store: Arc<S>,
    clock: Arc<dyn Clock>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if *shutdown.borrow() {
            return;
        }
        match store.checkpoint(clock.now()).await {
            Ok(Some(c)) => tracing::info!(checkpoint = c.id, cases = c.cases, "audit checkpoint"),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "audit checkpoint failed; retrying later"),
        }
    }
}
