//! Opening the store a command names: `sqlite:` (the embedded default) or
//! `postgres:`.

use std::sync::Arc;

use anyhow::Context;
use docket::store::postgres::PgStore;
use docket::store::sqlite::SqliteStore;

/// The database shared by the commands that touch cases.
#[derive(Debug, clap::Args)]
pub struct DatabaseArgs {
    /// `sqlite:PATH` (created if missing) or `postgres://…`.
    #[arg(
        long,
        env = "DOCKET_DATABASE_URL",
        default_value = "sqlite:docket.sqlite"
    )]
    pub database: String,
}

#[derive(Debug)]
pub enum Backend {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PgStore>),
}

impl DatabaseArgs {
    pub async fn open(&self) -> anyhow::Result<Backend> {
        let url = self.database.as_str();
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let store = PgStore::connect(url)
                .await
                .context("connecting to PostgreSQL")?;
            Ok(Backend::Postgres(Arc::new(store)))
        } else if url.starts_with("sqlite:") {
            let store = SqliteStore::open(url)
                .await
                .with_context(|| format!("opening {url}"))?;
            Ok(Backend::Sqlite(Arc::new(store)))
        } else {
            anyhow::bail!("--database must start with `sqlite:` or `postgres://`, not `{url}`")
        }
    }
}

/// Runs `$body` with `$store` bound to whichever store was opened.
macro_rules! with_store {
    ($backend:expr, $store:ident => $body:expr) => {
        match $backend {
            $crate::cli::store::Backend::Sqlite($store) => $body,
            $crate::cli::store::Backend::Postgres($store) => $body,
        }
    };
}
pub(crate) use with_store;
