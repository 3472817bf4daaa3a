//! The `worker` binary: runs Docket's handlers on the Redis queues. Workers
//! need nothing but Redis and the services their handlers call — no SQL.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use docket_workers::delivery::smtp::{SmtpCredentials, SmtpMessenger, SmtpSettings, SmtpTls};
use docket_workers::delivery::webhook::WebhookMessenger;
use docket_workers::handlers::Handlers;
use docket_workers::handlers::bench::BenchNoop;
use docket_workers::handlers::identity::{IdentityVerify, IntranetAuthenticate};
use docket_workers::handlers::materials::MaterialsCheck;
use docket_workers::handlers::notify::Notify;
use docket_workers::pool::Shared;
use docket_workers::redis::{self as transport, Pool, QueueSlots, RedisReporter, RedisSettings};
use docket_workers::sealing::Keyring;
use docket_workers::services::intranet::HttpIntranet;
use docket_workers::services::realname::HttpRealName;

/// The allocator of `orchestrator` too: glibc's took a quarter of `serve`'s
/// CPU time at saturation (BENCHMARKS.md); mimalloc is a drop-in replacement.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs Docket jobs from Redis.
#[derive(Debug, Parser)]
#[command(name = "worker", version, about)]
struct Args {
    /// The Redis the orchestrator dispatches to.
    #[arg(long, env = "DOCKET_REDIS_URL")]
    redis_url: String,
    /// Prefix of every Redis key (the orchestrator's must match).
    #[arg(long, env = "DOCKET_REDIS_PREFIX", default_value = "docket")]
    prefix: String,
    /// Queues to serve.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "identity,intranet,materials,notify"
    )]
    queues: Vec<String>,
    /// Jobs run at once per queue.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// How often the worker tells Redis it is alive.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// Missed heartbeats after which another worker recovers this one's jobs.
    #[arg(long, default_value_t = 2)]
    missed_heartbeats: usize,
    /// How often this process looks for jobs on an idle queue (its fetchers
    /// take turns).
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    poll: Duration,
    /// Keys that open sealed jobs, `ID:BASE64KEY[,…]` newest first (the
    /// orchestrator's must include the newest); 32-byte keys, e.g. from
    /// `openssl rand -base64 32`.
    #[arg(long, env = "DOCKET_JOB_KEYS", hide_env_values = true)]
    job_keys: String,
    /// The real-name authentication service (`identity.verify`).
    #[arg(long, env = "DOCKET_REALNAME_URL")]
    realname_url: Option<String>,
    /// The police intranet's authentication service (`intranet.authenticate`).
    #[arg(long, env = "DOCKET_INTRANET_URL")]
    intranet_url: Option<String>,
    /// How long a call to an external service may take.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    service_timeout: Duration,
    /// The mail server for `notify.email`.
    #[arg(long, env = "DOCKET_SMTP_HOST")]
    smtp_host: Option<String>,
    /// Its port; default: the usual one for the TLS mode.
    #[arg(long, env = "DOCKET_SMTP_PORT")]
    smtp_port: Option<u16>,
    /// `none`, `starttls` (required) or `tls`.
    #[arg(long, env = "DOCKET_SMTP_TLS", default_value = "starttls")]
    smtp_tls: SmtpTls,
    /// The sender address of Docket's emails.
    #[arg(long, env = "DOCKET_SMTP_FROM", default_value = "docket@localhost")]
    smtp_from: String,
    #[arg(long, env = "DOCKET_SMTP_USER")]
    smtp_user: Option<String>,
    #[arg(long, env = "DOCKET_SMTP_PASSWORD", hide_env_values = true)]
    smtp_password: Option<String>,
    /// The service-account message channel for `notify.webhook`.
    #[arg(long, env = "DOCKET_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// How often finished jobs are swept out of Redis.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    sweep_every: Duration,
    /// On SIGTERM or Ctrl-C, how long running jobs may take to finish.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    grace: Duration,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DOCKET_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
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
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let settings = RedisSettings {
        prefix: args.prefix.clone(),
        heartbeat: args.heartbeat,
        missed_heartbeats: args.missed_heartbeats,
        poll: args.poll,
        wake_url: Some(args.redis_url.clone()),
        ..RedisSettings::default()
    };
    let keyring = Keyring::parse(&args.job_keys).context("--job-keys")?;
    let mut conn = transport::connect(&args.redis_url, &settings)
        .await
        .context("connecting to Redis")?;
    let offset = transport::check_clock(&mut conn, &settings).await?;
    tracing::info!(offset_s = offset, "clock within reach of Redis's");
    // A handler whose service is not configured is not registered: its
    // jobs fail at once with a reason instead of waiting on nothing.
    let mut handlers = Handlers::new()
        .with("materials.check", MaterialsCheck)
        // For benchmarks (ops/bench); it does nothing and calls nothing.
        .with("bench.noop", BenchNoop);
    if let Some(url) = &args.realname_url {
        let service = HttpRealName::new(url, args.service_timeout).context("--realname-url")?;
        handlers = handlers.with("identity.verify", IdentityVerify::new(Arc::new(service)));
    }
    if let Some(url) = &args.intranet_url {
        let service = HttpIntranet::new(url, args.service_timeout).context("--intranet-url")?;
        handlers = handlers.with(
            "intranet.authenticate",
            IntranetAuthenticate::new(Arc::new(service)),
        );
    }
    if let Some(host) = &args.smtp_host {
        let mut smtp = SmtpSettings::new(host.clone(), args.smtp_tls, args.smtp_from.clone());
        if let Some(port) = args.smtp_port {
            smtp.port = port;
        }
        smtp.timeout = args.service_timeout;
        if let (Some(user), Some(password)) = (&args.smtp_user, &args.smtp_password) {
            smtp.credentials = Some(SmtpCredentials {
                user: user.clone(),
                password: password.clone(),
            });
        }
        let mailer = SmtpMessenger::new(smtp).context("--smtp-host")?;
        handlers = handlers.with("notify.email", Notify::email(Arc::new(mailer)));
    }
    if let Some(url) = &args.webhook_url {
        let webhook = WebhookMessenger::new(url, args.service_timeout).context("--webhook-url")?;
        handlers = handlers.with("notify.webhook", Notify::webhook(Arc::new(webhook)));
    }
    tracing::info!(handlers = ?handlers, "handlers registered");
    let shared = Shared {
        handlers: Arc::new(handlers),
        reporter: Arc::new(RedisReporter::new(conn.clone(), &settings)),
    };
    // A fresh id at every start: apalis-redis refuses a name still
    // heartbeating, and a reused one hides a dead worker's jobs from
    // recovery.
    let worker_id = format!(
        "worker-{}-{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    );
    let queues: Vec<QueueSlots> = args
        .queues
        .iter()
        .map(|q| QueueSlots {
            queue: q.trim().to_owned(),
            concurrency: args.concurrency,
        })
        .collect();
    tracing::info!(worker = %worker_id, queues = ?args.queues, "worker started");
    let (stop_sweeping, sweeping_stopped) = tokio::sync::watch::channel(false);
    let sweeper = tokio::spawn(transport::sweep_periodically(
        conn.clone(),
        settings.clone(),
        queues.iter().map(|q| q.queue.clone()).collect(),
        args.sweep_every,
        sweeping_stopped,
    ));
    let pool = Pool {
        worker_id: worker_id.clone(),
        settings,
        queues,
        shared,
        keyring,
        grace: args.grace,
    };
    transport::run_pool(pool, conn, shutdown_signal())
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .context("the worker pool stopped")?;
    let _ = stop_sweeping.send(true);
    let _ = sweeper.await;
    tracing::info!(worker = %worker_id, "worker stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}
