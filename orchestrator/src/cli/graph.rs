use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use docket::calendar;
use docket::definition::{self, Environment, graph};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Mermaid,
    Dot,
}

#[derive(Debug, Args)]
pub struct Graph {
    /// The workflow file.
    file: PathBuf,
    #[arg(long, value_enum, default_value = "mermaid")]
    format: Format,
    /// Folder of calendar files; default: `calendars/` beside the workflow.
    #[arg(long)]
    calendars: Option<PathBuf>,
}

impl Graph {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let dir = super::calendars_dir(&self.file, self.calendars.as_ref());
        let env = Environment::new(calendar::names_in(&dir)?);
        let loaded = definition::load_file(&self.file, &env)?;
        let Some(workflow) = loaded.loaded.workflow else {
            for d in &loaded.loaded.diagnostics {
                eprintln!("{}", d.render(&self.file.display().to_string()));
            }
            anyhow::bail!(
                "{} is not valid; run `orchestrator validate` for details",
                self.file.display()
            );
        };
        let text = match self.format {
            Format::Mermaid => graph::mermaid(&workflow),
            Format::Dot => graph::dot(&workflow),
        };
        print!("{text}");
        Ok(ExitCode::SUCCESS)
    }
}
