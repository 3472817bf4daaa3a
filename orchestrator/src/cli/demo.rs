use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use docket::store::sqlite::SqliteStore;

#[derive(Debug, Args)]
pub struct Demo {
    /// The SQLite database to run on; default: a fresh file that is removed
    /// afterwards.
    #[arg(long)]
    database: Option<String>,
    /// The folder of workflow files (with `calendars/`).
    #[arg(long, default_value = "workflows")]
    workflows: PathBuf,
}

impl Demo {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let temp = std::env::temp_dir().join(format!("docket-demo-{}.sqlite", std::process::id()));
        let url = self
            .database
            .clone()
            .unwrap_or_else(|| format!("sqlite:{}", temp.display()));
        let store = Arc::new(
            SqliteStore::open(&url)
                .await
                .with_context(|| format!("opening {url}"))?,
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
