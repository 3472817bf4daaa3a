//! `orchestrator audit`: what an auditor runs against the database.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::NaiveDate;
use clap::{Args, Subcommand};
use docket::runtime::clock::{Clock, SystemClock};
use docket::store::Store;
use docket::store::audit::{AuditStore, export_period, verify, write_lines};

use super::store::{DatabaseArgs, with_store};

#[derive(Debug, Args)]
pub struct Audit {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Recompute the hash chains; exit 1 naming the first changed event of
    /// each case (modified, deleted, inserted or reordered).
    Verify {
        /// Only this case (a whole-case deletion is found only without it).
        #[arg(long)]
        case: Option<String>,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Record the heads of the cases changed since the last checkpoint
    /// (`serve` does this every minute).
    Checkpoint {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Write the history of a period as JSON Lines, one event a line with
    /// its hash; dates are UTC days, both included.
    Export {
        #[arg(long, value_parser = parse_day)]
        from: NaiveDate,
        #[arg(long, value_parser = parse_day)]
        to: NaiveDate,
        /// A file to write instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

fn parse_day(text: &str) -> Result<NaiveDate, String> {
    docket::calendar::parse_date(text)
        .ok_or_else(|| format!("`{text}` is not a date; write it as YYYY-MM-DD"))
}

impl Audit {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let db = match &self.command {
            AuditCommand::Verify { db, .. }
            | AuditCommand::Checkpoint { db }
            | AuditCommand::Export { db, .. } => db,
        };
        let backend = db.open().await?;
        with_store!(backend, store => self.run_on(&*store).await)
    }

    async fn run_on<S: Store + AuditStore>(&self, store: &S) -> anyhow::Result<ExitCode> {
        store.migrate().await.context("migrating the database")?;
        match &self.command {
            AuditCommand::Verify { case, .. } => {
                if let Some(id) = case
                    && store.case(id).await?.is_none()
                {
                    bail!("no case `{id}`");
                }
                let problems = verify(store, case.as_deref()).await?;
                if problems.is_empty() {
                    let what = case.as_deref().map_or("every case", |_| "the case");
                    println!("verified: the history of {what} is as written");
                    return Ok(ExitCode::SUCCESS);
                }
                for p in &problems {
                    println!("{p}");
                }
                eprintln!("{} problem(s) found", problems.len());
                Ok(ExitCode::from(1))
            }
            AuditCommand::Checkpoint { .. } => {
                match store.checkpoint(SystemClock.now()).await? {
                    Some(c) => println!("checkpoint {} over {} case(s): {}", c.id, c.cases, c.hash),
                    None => println!("no case changed since the last checkpoint"),
                }
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::Export { from, to, out, .. } => {
                let Some((start, end)) = export_period(*from, *to) else {
                    bail!("--to {to} is before --from {from}");
                };
                let events = store.history_between(start, end).await?;
                let mut sink: Box<dyn Write> = match out {
                    Some(path) => Box::new(std::io::BufWriter::new(
                        std::fs::File::create(path)
                            .with_context(|| format!("creating {}", path.display()))?,
                    )),
                    None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
                };
                write_lines(&events, &mut sink)?;
                sink.flush()?;
                // The anchor to archive beside the export: whoever rewrites
                // the database cannot make a later verification match it.
                match store.checkpoints().await?.last() {
                    Some(c) => eprintln!(
                        "{} event(s); latest checkpoint {} ({}): {}",
                        events.len(),
                        c.id,
                        c.at.to_rfc3339(),
                        c.hash
                    ),
                    None => eprintln!("{} event(s); no checkpoint yet", events.len()),
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}
