//! `orchestrator keys generate|rewrap`: the master keys that protect
//! personal data at rest.
//!
//! Rotation: put a new key first in `DOCKET_DATA_KEYS` (keeping the old
//! ones after it), run `keys rewrap`, then drop the old keys.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use docket::privacy::DataKeys;
use docket::store::Store;
use docket::store::keys::KeyStore;

use super::store::{DatabaseArgs, with_store};

#[derive(Debug, Subcommand)]
pub enum Keys {
    /// Print a new master key line, `ID:BASE64KEY`, for DOCKET_DATA_KEYS.
    Generate {
        /// Its id, recorded with every case key it wraps.
        #[arg(long, default_value = "k1")]
        id: String,
    },
    /// Wrap every case's data key under the newest master key, so that
    /// older master keys can be removed from the configuration.
    Rewrap {
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

impl Keys {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Keys::Generate { id } => {
                anyhow::ensure!(
                    !id.is_empty() && !id.contains([':', ',']) && !id.contains(char::is_whitespace),
                    "a key id must be non-empty, without `:`, `,` or spaces"
                );
                println!("{}", DataKeys::generate(&id));
                Ok(ExitCode::SUCCESS)
            }
            Keys::Rewrap { db } => {
                let backend = db.open().await?;
                with_store!(backend, store => rewrap(store).await)
            }
        }
    }
}

async fn rewrap<S: Store + KeyStore>(store: Arc<S>) -> anyhow::Result<ExitCode> {
    store.migrate().await.context("migrating the database")?;
    let done = store
        .rewrap_case_keys()
        .await
        .context("rewrapping the case keys")?;
    println!(
        "{} case keys rewrapped, {} already current, {} cases erased",
        done.rewrapped, done.current, done.erased
    );
    Ok(ExitCode::SUCCESS)
}
