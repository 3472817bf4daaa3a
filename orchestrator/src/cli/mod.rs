//! Command-line interface: one module per command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod api;
mod audit;
mod calendar;
mod cases;
mod demo;
mod graph;
mod keys;
mod migrate;
mod serve;
mod store;
mod token;
mod validate;

/// Docket: durable, file-defined workflows for public-service casework.
#[derive(Debug, Parser)]
#[command(name = "orchestrator", version, about)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check workflow files and report every problem with its line and column.
    Validate(validate::Validate),
    /// Print a workflow as a Mermaid flowchart or a Graphviz digraph.
    Graph(graph::Graph),
    /// Print the JSON Schema of workflow files, for editors.
    Schema,
    /// Compute due dates on a working-day calendar, or list a year's
    /// holiday arrangement.
    Calendar(calendar::CalendarCommand),
    /// Run three residence-permit cases end to end on an embedded SQLite
    /// file, with simulated applicants, police and services.
    Demo(demo::Demo),
    /// Apply the database migrations.
    Migrate(migrate::Migrate),
    /// Run the orchestrator: dispatch jobs, fire timers, apply completions.
    Serve(serve::Serve),
    /// Verify the tamper-evident history, checkpoint it, export it.
    Audit(audit::Audit),
    /// Create or revoke the HTTP API's bearer tokens.
    #[command(subcommand)]
    Token(token::Token),
    /// Generate and rotate the master keys of personal data at rest.
    #[command(subcommand)]
    Keys(keys::Keys),
    /// Start, signal, inspect, cancel or retry cases.
    #[command(flatten)]
    Case(cases::CaseCommand),
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Validate(cmd) => cmd.run(),
        Command::Graph(cmd) => cmd.run(),
        Command::Schema => {
            println!("{}", docket::definition::schema::json_schema());
            Ok(ExitCode::SUCCESS)
        }
        Command::Calendar(cmd) => cmd.run(),
        Command::Demo(cmd) => runtime()?.block_on(cmd.run()),
        Command::Migrate(cmd) => runtime()?.block_on(cmd.run()),
        Command::Serve(cmd) => runtime()?.block_on(cmd.run()),
        Command::Audit(cmd) => runtime()?.block_on(cmd.run()),
        Command::Token(cmd) => runtime()?.block_on(cmd.run()),
        Command::Keys(cmd) => runtime()?.block_on(cmd.run()),
        Command::Case(cmd) => runtime()?.block_on(cmd.run()),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// The calendars available to workflows at `path`: those in the `calendars`
/// folder beside the workflow files, unless a folder is given.
fn calendars_dir(path: &std::path::Path, given: Option<&PathBuf>) -> PathBuf {
    if let Some(dir) = given {
        return dir.clone();
    }
    let base = if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(std::path::Path::new("."))
    };
    base.join("calendars")
}
