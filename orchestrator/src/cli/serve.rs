use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use docket::runtime::clock::SystemClock;
use docket::runtime::embedded;
use docket::runtime::fault::AbortBeforeDispatch;
use docket::runtime::service::{self, Settings};
use docket::store::Store;
use tokio::sync::watch;

use super::cases::Setup;
use super::store::with_store;

#[derive(Debug, Args)]
pub struct Serve {
    #[command(flatten)]
    setup: Setup,
    /// Worker tasks in embedded mode.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Jobs each queue may have on the transport at once.
    #[arg(long, default_value_t = 200)]
    window: u64,
    /// How often to look for due timers and waiting jobs when idle.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    poll: Duration,
}

impl Serve {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let backend = self.setup.db.open().await?;
        with_store!(backend, store => self.run_on(store).await)
    }

    async fn run_on<S: Store>(&self, store: Arc<S>) -> anyhow::Result<ExitCode> {
        let orch = Arc::new(
            self.setup
                .orchestrator(store, Arc::new(SystemClock))
                .await?,
        );
        // The in-process queue of a previous run is gone: its jobs go back
        // to the outbox.
        let requeued = orch.store.requeue_unfinished().await?;
        tracing::info!(requeued, "embedded mode: workers run in this process");
        let workers = embedded::start(docket::demo::services::handlers(false), self.concurrency);
        let (stop, stopped) = watch::channel(false);
        let settings = Settings {
            poll: self.poll,
            window: self.window,
            ..Settings::default()
        };
        let transport = AbortBeforeDispatch::from_env(workers.transport.clone());
        let loops = tokio::spawn(service::run(
            Arc::clone(&orch),
            transport,
            workers.completions,
            stopped,
            settings,
        ));
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), loops).await;
        workers.worker.abort();
        Ok(ExitCode::SUCCESS)
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
