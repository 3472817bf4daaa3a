//! `orchestrator token create|revoke`: the HTTP API's bearer tokens.
//!
//! A new token is printed once; only its SHA-256 is stored.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Subcommand;
use docket::api::auth::{Role, new_token, token_hash};
use docket::store::Store;
use docket::store::api::ApiStore;

use super::store::{DatabaseArgs, with_store};

#[derive(Debug, Subcommand)]
pub enum Token {
    /// Create a token and print it (it cannot be shown again).
    Create {
        /// Who holds it, recorded in history as `token:NAME`; never reused.
        #[arg(long)]
        name: String,
        /// gateway, officer, operator, auditor or admin.
        #[arg(long)]
        role: Role,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Revoke a token by its name; requests with it are refused at once.
    Revoke {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

impl Token {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let db = match &self {
            Token::Create { db, .. } | Token::Revoke { db, .. } => db,
        };
        let backend = db.open().await?;
        with_store!(backend, store => self.run_on(store).await)
    }

    async fn run_on<S: Store + ApiStore>(&self, store: Arc<S>) -> anyhow::Result<ExitCode> {
        store.migrate().await.context("migrating the database")?;
        let now = chrono::Utc::now();
        match self {
            Token::Create { name, role, .. } => {
                check_name(name)?;
                let token = new_token();
                if !store
                    .create_token(name, role.as_str(), &token_hash(&token), now)
                    .await?
                {
                    bail!("a token named `{name}` exists or existed; choose another name");
                }
                println!("{token}");
            }
            Token::Revoke { name, .. } => {
                if !store.revoke_token(name, now).await? {
                    bail!("no token named `{name}` is in use");
                }
                eprintln!("token `{name}` revoked");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Names appear in history as `token:NAME`: keep them plain.
fn check_name(name: &str) -> anyhow::Result<()> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > 64 || !name.chars().all(plain) {
        bail!("--name takes 1 to 64 letters, digits, `-`, `_` or `.`, not `{name}`");
    }
    Ok(())
}
