//! `orchestrator serve`'s HTTP API flags, and starting the API beside the
//! loops.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use docket::api::{self, ApiSettings, Backend, UploadSettings};
use docket::runtime::Orchestrator;
use docket::store::Store;
use docket::store::api::ApiStore;
use docket::store::audit::AuditStore;
use docket::store::materials::MaterialStore;
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
    /// Largest file an upload (`POST /cases/{id}/materials`) may be:
    /// `10MiB`, `512KiB` or a number of bytes. Apart from the JSON bodies'
    /// limit.
    #[arg(long, env = "DOCKET_UPLOAD_LIMIT", default_value = "10MiB", value_parser = parse_size)]
    upload_limit: usize,
    /// The directory uploaded files are kept in, sealed under the data
    /// keys (`--data-keys`); created with the first upload.
    #[arg(long, env = "DOCKET_UPLOADS_DIR", default_value = "docket-uploads")]
    uploads_dir: PathBuf,
}

impl ApiArgs {
    /// Binds the API's address and serves it until `stopped`; `None` when
    /// no address is given. Binding happens here, before anything else
    /// runs, so a taken port fails the start.
    pub async fn start<S: Store + ApiStore + AuditStore + MaterialStore>(
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
            uploads: UploadSettings {
                limit: self.upload_limit,
                dir: self.uploads_dir.clone(),
            },
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

/// A size in bytes: a number, or one with `B`, `KiB`, `MiB` or `GiB`.
fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as 10MiB, 512KiB or 65536"))?;
    let unit = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => return Err(format!("unknown unit `{other}`: use B, KiB, MiB or GiB")),
    };
    number
        .checked_mul(unit)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{text}` is not a size above zero that this machine can hold"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_read_with_their_unit() {
        assert_eq!(parse_size("10MiB"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("64 KiB"), Ok(64 * 1024));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        for bad in ["", "MiB", "10MB", "ten", "0", "-1KiB", "1.5MiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
