use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use docket::privacy::DataKeys;
use docket::store::sqlite::SqliteStore;

use super::store::KeyArgs;

#[derive(Debug, Args)]
pub struct Demo {
    /// The SQLite database to run on; default: a fresh file that is removed
    /// afterwards.
    #[arg(long)]
    database: Option<String>,
    /// The folder of workflow files (with `calendars/`).
    #[arg(long, default_value = "workflows")]
    workflows: PathBuf,
    #[command(flatten)]
    keys: KeyArgs,
}

impl Demo {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let temp = std::env::temp_dir().join(format!("docket-demo-{}.sqlite", std::process::id()));
        let url = self
            .database
            .clone()
            .unwrap_or_else(|| format!("sqlite:{}", temp.display()));
        // A database of its own lives and dies with this run, and so can
        // its keys; a given one keeps them beside it (or as configured).
        let keys = match &self.database {
            Some(url) => self.keys.resolve(url)?,
            None => DataKeys::ephemeral(),
        };
        let store = Arc::new(
            SqliteStore::open(&url)
                .await
                .with_context(|| format!("opening {url}"))?
                .with_data_keys(keys),
        );
        let mut out = std::io::stdout().lock();
        let report = docket::demo::run(store, &self.workflows, &mut out).await;
        if self.database.is_none() {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", temp.display()));
            }
        }
        Ok(if report?.all_as_expected {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }
}
