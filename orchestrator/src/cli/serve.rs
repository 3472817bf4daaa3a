use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use docket::runtime::clock::SystemClock;
use docket::runtime::dispatcher::Transport;
use docket::runtime::embedded;
use docket::runtime::fault::AbortBeforeDispatch;
use docket::runtime::redis::{RedisTransport, consume_completions};
use docket::runtime::service::{self, Settings};
use docket::store::Store;
use docket::store::api::ApiStore;
use docket::store::audit::AuditStore;
use docket::store::materials::MaterialStore;
use docket_workers::redis::RedisSettings;
use docket_workers::sealing::Keyring;
use tokio::sync::{Notify, mpsc, watch};

use super::api::ApiArgs;
use super::cases::Setup;
use super::store::{Backend, with_store};

#[derive(Debug, Args)]
pub struct Serve {
    #[command(flatten)]
    setup: Setup,
    #[command(flatten)]
    api: ApiArgs,
    /// Worker tasks in embedded mode.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Jobs each queue may have on the transport at once.
    #[arg(long, default_value_t = 200)]
    window: u64,
    /// How often to look for due timers and waiting jobs when idle.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    poll: Duration,
    /// Production mode: dispatch to the Redis worker pool instead of
    /// running workers in this process.
    #[arg(long, env = "DOCKET_REDIS_URL")]
    redis_url: Option<String>,
    /// Prefix of every Redis key (the workers' must match).
    #[arg(long, env = "DOCKET_REDIS_PREFIX", default_value = "docket")]
    redis_prefix: String,
    /// Keys that seal jobs for Redis, `ID:BASE64KEY[,…]`, newest first;
    /// required with `--redis-url`.
    #[arg(long, env = "DOCKET_JOB_KEYS", hide_env_values = true)]
    job_keys: Option<String>,
    /// How often the heads of changed cases are checkpointed into the
    /// audit chain.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    checkpoint_every: Duration,
}

impl Serve {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let backend = self.setup.db.open().await?;
        if let Backend::Postgres(store) = &backend
            && let Some(setting) = store.lossy_commits().await
        {
            tracing::warn!(
                synchronous_commit = %setting,
                "the database confirms commits before they are durable: a crash of the \
                 database server will lose the last of them (a case whose start was \
                 confirmed may vanish); set synchronous_commit to on"
            );
        }
        with_store!(backend, store => self.run_on(store).await)
    }

    async fn run_on<S: Store + AuditStore + ApiStore + MaterialStore + 'static>(
        &self,
        store: Arc<S>,
    ) -> anyhow::Result<ExitCode> {
        let orch = Arc::new(
            self.setup
                .orchestrator(store, Arc::new(SystemClock))
                .await?,
        );
        let settings = Settings {
            poll: self.poll,
            window: self.window,
            ..Settings::default()
        };
        let (stop, stopped) = watch::channel(false);
        // Completions applied outside the loops wake them.
        let wake = Arc::new(Notify::new());
        let api = self.api.start(Arc::clone(&orch), stopped.clone()).await?;
        let mut background = Vec::new();
        let mut simulator = None;
        let (transport, completions): (Arc<dyn Transport>, _) = match &self.redis_url {
            Some(url) => {
                let keys = self
                    .job_keys
                    .as_deref()
                    .context("production mode needs --job-keys (DOCKET_JOB_KEYS)")?;
                let keyring = Keyring::parse(keys).context("--job-keys")?;
                let redis = RedisSettings {
                    prefix: self.redis_prefix.clone(),
                    wake_url: Some(url.clone()),
                    ..RedisSettings::default()
                };
                let mut conn = docket_workers::redis::connect(url, &redis).await?;
                // The jobs it pushes carry its clock: one whose promotion
                // fails waits until the fetching worker's clock passes it.
                docket_workers::redis::check_clock(&mut conn, &redis).await?;
                let name = format!(
                    "orchestrator-{}-{}",
                    std::process::id(),
                    uuid::Uuid::now_v7().simple()
                );
                background.push(tokio::spawn({
                    let (orch, conn, redis) = (Arc::clone(&orch), conn.clone(), redis.clone());
                    let (stopped, wake, url) = (stopped.clone(), Arc::clone(&wake), url.clone());
                    async move {
                        if let Err(e) =
                            consume_completions(orch, &url, conn, redis, name, stopped, wake).await
                        {
                            tracing::error!(error = %e, "the completions consumer stopped");
                        }
                    }
                }));
                background.push(tokio::spawn(docket_workers::redis::sweep_periodically(
                    conn.clone(),
                    redis.clone(),
                    vec![docket_workers::redis::COMPLETIONS.to_owned()],
                    Duration::from_secs(60),
                    stopped.clone(),
                )));
                tracing::info!("production mode: dispatching to the Redis worker pool");
                // Reports arrive through Redis; this channel stays empty.
                let (_unused, completions) = mpsc::unbounded_channel();
                (
                    Arc::new(RedisTransport::new(conn, redis, keyring)) as Arc<dyn Transport>,
                    completions,
                )
            }
            None => {
                // The in-process queue of a previous run is gone: its jobs
                // go back to the outbox.
                let requeued = orch.store.requeue_unfinished().await?;
                tracing::info!(requeued, "embedded mode: workers run in this process");
                let outbox = Arc::new(docket::demo::services::Outbox::default());
                let services = docket::demo::services::start(false, outbox).await?;
                tracing::warn!(
                    url = %services.simulator.url(),
                    "embedded mode uses the simulated government services and keeps messages instead of sending them"
                );
                let workers = embedded::start(services.handlers, self.concurrency);
                simulator = Some(services.simulator);
                background.push(workers.worker);
                (workers.transport as Arc<dyn Transport>, workers.completions)
            }
        };
        background.push(tokio::spawn(service::checkpoint_periodically(
            Arc::clone(&orch.store),
            Arc::clone(&orch.clock),
            self.checkpoint_every,
            stopped.clone(),
        )));
        let transport = AbortBeforeDispatch::from_env(transport);
        let loops = tokio::spawn(service::run(
            Arc::clone(&orch),
            transport,
            completions,
            stopped,
            settings,
            wake,
        ));
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), loops).await;
        if let Some(api) = api {
            // Requests under way finish within their own timeout.
            let _ = tokio::time::timeout(Duration::from_secs(30), api).await;
        }
        for task in background {
            task.abort();
        }
        if let Some(simulator) = simulator {
            let _ = simulator.shutdown().await;
        }
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
