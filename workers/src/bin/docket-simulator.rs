//! The `docket-simulator` binary: the real-name service and the police
//! intranet, simulated, for the demo and for operators trying Docket
//! without the government's test environment. Point the workers at the
//! URL it prints.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use docket_workers::simulator::{Behaviour, ServiceBehaviour, Simulator};

/// Simulates the government services Docket's identity handlers call.
#[derive(Debug, Parser)]
#[command(name = "docket-simulator", version, about)]
struct Args {
    /// Where to listen. Loopback by default: the simulator confirms
    /// anyone and must not be reachable from other machines by accident.
    #[arg(
        long,
        env = "DOCKET_SIMULATOR_LISTEN",
        default_value = "127.0.0.1:8181"
    )]
    listen: SocketAddr,
    /// The real-name service refuses ID numbers ending in this (repeatable).
    #[arg(long)]
    refuse_id_suffix: Vec<String>,
    /// The intranet reports a mismatch for ID numbers ending in this
    /// (repeatable).
    #[arg(long)]
    mismatch_id_suffix: Vec<String>,
    /// Each service answers 503 to its first N requests, to show retries.
    #[arg(long, default_value_t = 0)]
    unavailable_first: u32,
    /// How long each service takes to answer.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    delay: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DOCKET_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let service = |refuse: Vec<String>| ServiceBehaviour {
        refuse_id_suffixes: refuse,
        unavailable_next: args.unavailable_first,
        delay: args.delay,
        ..ServiceBehaviour::default()
    };
    let behaviour = Behaviour {
        realname: service(args.refuse_id_suffix.clone()),
        intranet: service(args.mismatch_id_suffix.clone()),
    };
    if !args.listen.ip().is_loopback() {
        tracing::warn!(listen = %args.listen, "the simulator confirms anyone; it is reachable beyond this machine");
    }
    let running = Simulator::start(args.listen, behaviour).await?;
    println!("{}", running.url());
    shutdown_signal()
        .await
        .context("could not wait for a shutdown signal")?;
    running.shutdown().await?;
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
