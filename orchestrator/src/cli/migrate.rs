use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use docket::store::Store;

use super::store::{DatabaseArgs, with_store};

#[derive(Debug, Args)]
pub struct Migrate {
    #[command(flatten)]
    db: DatabaseArgs,
}

impl Migrate {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let backend = self.db.open().await?;
        with_store!(backend, store => store.migrate().await.context("migrating the database")?);
        println!("migrations applied");
        Ok(ExitCode::SUCCESS)
    }
}
