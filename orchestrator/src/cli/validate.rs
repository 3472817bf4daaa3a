use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use docket::definition::{self, Diagnostic, Environment};
use serde::Serialize;

#[derive(Debug, Args)]
pub struct Validate {
    /// Workflow files, or directories of them.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Folder of calendar files; default: `calendars/` beside the workflows.
    #[arg(long)]
    calendars: Option<PathBuf>,
    /// Print the problems as JSON for tools.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct JsonDiagnostic<'a> {
    file: String,
    #[serde(flatten)]
    diagnostic: &'a Diagnostic,
}

impl Validate {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let mut files = Vec::new();
        for path in &self.paths {
            let env = Environment::new(super::calendar_names(&super::calendars_dir(
                path,
                self.calendars.as_ref(),
            )));
            for file in definition::workflow_files(path)? {
                files.push(definition::load_file(&file, &env)?);
            }
        }
        if files.is_empty() {
            anyhow::bail!("no workflow files (`.yaml`, `.yml`) found in the given paths");
        }
        let all: Vec<(String, &Diagnostic)> = files
            .iter()
            .flat_map(|f| {
                let name = f.path.display().to_string();
                f.loaded.diagnostics.iter().map(move |d| (name.clone(), d))
            })
            .collect();
        let errors = all.iter().filter(|(_, d)| d.is_error()).count();
        if self.json {
            let out: Vec<JsonDiagnostic<'_>> = all
                .iter()
                .map(|(file, diagnostic)| JsonDiagnostic {
                    file: file.clone(),
                    diagnostic,
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&out).context("encoding diagnostics")?
            );
        } else {
            for (file, d) in &all {
                println!("{}", d.render(file));
            }
            let valid = files.iter().filter(|f| f.loaded.workflow.is_some()).count();
            eprintln!(
                "{valid} of {} workflow file(s) valid; {errors} error(s), {} warning(s)",
                files.len(),
                all.len() - errors
            );
        }
        Ok(if errors == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }
}
