//! Command-line interface: one module per command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod graph;
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
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Validate(cmd) => cmd.run(),
        Command::Graph(cmd) => cmd.run(),
        Command::Schema => {
            println!("{}", docket::definition::schema::json_schema());
            Ok(ExitCode::SUCCESS)
        }
    }
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
