//! `orchestrator serve`'s HTTP API flags, and starting the API beside the
//! loops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use docket::api::{self, ApiSettings, Backend};
use docket::runtime::Orchestrator;
use docket::store::Store;
use docket::store::api::ApiStore;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Serve the HTTP API on this address (e.g. `127.0.0.1:8080`); no API
    /// without it.
    #[arg(long, env = "DOCKET_API_LISTEN")]
    api_listen: Option<SocketAddr>,
    /// Largest request body the API accepts, in KiB.
    #[arg(long, env = "DOCKET_API_MAX_BODY_KIB", default_value_t = 256)]
    api_max_body_kib: usize,
    /// Longest an API request may run before it is answered `timeout`.
    #[arg(long, env = "DOCKET_API_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    api_timeout: Duration,
    /// An event a `gateway` token may send (the applicant's own, e.g.
    /// `supplement_submitted`); repeat for each. Other roles' rights are
    /// fixed (see the README's "HTTP API").
    #[arg(
        long = "gateway-event",
        env = "DOCKET_API_GATEWAY_EVENTS",
        value_delimiter = ','
    )]
    gateway_events: Vec<String>,
}

impl ApiArgs {
    /// Binds the API's address and serves it until `stopped`; `None` when
    /// no address is given. Binding happens here, before anything else
    /// runs, so a taken port fails the start.
    pub async fn start<S: Store + ApiStore>(
        &self,
        orch: Arc<Orchestrator<S>>,
        stopped: watch::Receiver<bool>,
    ) -> anyhow::Result<Option<JoinHandle<()>>> {
        let Some(addr) = self.api_listen else {
            return Ok(None);
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the API to {addr}"))?;
        let settings = ApiSettings {
            body_limit: self.api_max_body_kib.saturating_mul(1024),
            timeout: self.api_timeout,
            gateway_events: self.gateway_events.clone(),
        };
        let backend: Arc<dyn Backend> = orch;
        let app = api::router(backend, settings);
        tracing::info!(%addr, "HTTP API listening");
        Ok(Some(tokio::spawn(async move {
            if let Err(e) = api::serve(listener, app, stopped).await {
                tracing::error!(error = %e, "the HTTP API stopped");
            }
        })))
    }
}
