use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::Datelike;
use clap::Args;
use docket::calendar::{self, CalendarError};
use docket::definition::{self, Code, Diagnostic, Environment, Pos, Severity};
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
struct Reported {
    file: String,
    #[serde(flatten)]
    diagnostic: Diagnostic,
}

impl Validate {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let mut reported = Vec::new();
        let mut checked = 0;
        let mut valid = 0;
        for path in &self.paths {
            let dir = super::calendars_dir(path, self.calendars.as_ref());
            let (names, problems) = check_calendars(&dir, chrono::Utc::now().year())?;
            reported.extend(problems);
            let env = Environment::new(names);
            for file in definition::workflow_files(path)? {
                let loaded = definition::load_file(&file, &env)?;
                checked += 1;
                valid += usize::from(loaded.loaded.workflow.is_some());
                let name = file.display().to_string();
                reported.extend(
                    loaded
                        .loaded
                        .diagnostics
                        .into_iter()
                        .map(|diagnostic| Reported {
                            file: name.clone(),
                            diagnostic,
                        }),
                );
            }
        }
        if checked == 0 {
            anyhow::bail!("no workflow files (`.yaml`, `.yml`) found in the given paths");
        }
        let errors = reported.iter().filter(|r| r.diagnostic.is_error()).count();
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&reported).context("encoding diagnostics")?
            );
        } else {
            for r in &reported {
                println!("{}", r.diagnostic.render(&r.file));
            }
            eprintln!(
                "{valid} of {checked} workflow file(s) valid; {errors} error(s), {} warning(s)",
                reported.len() - errors
            );
        }
        Ok(if errors == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }
}

/// Loads the calendars in `dir`: their names, and their problems as
/// diagnostics. A calendar whose data ends with `this_year` is a warning:
/// deadlines will soon count into a year it does not cover.
fn check_calendars(dir: &Path, this_year: i32) -> anyhow::Result<(Vec<String>, Vec<Reported>)> {
    let names: Vec<String> = calendar::names_in(dir)?.into_iter().collect();
    let diagnostic = |severity, code, pos, path: &str, message: String| Diagnostic {
        severity,
        code,
        path: path.to_owned(),
        pos,
        message,
    };
    let reported = match calendar::load_dir(dir) {
        Ok(calendars) => calendars
            .iter()
            .filter(|c| c.last_covered_year() <= this_year)
            .map(|c| Reported {
                file: dir.join(format!("{}.yaml", c.name())).display().to_string(),
                diagnostic: diagnostic(
                    Severity::Warning,
                    Code::CalendarEndsSoon,
                    Pos { line: 1, column: 1 },
                    "/years",
                    format!(
                        "calendar `{}` covers years up to {}: add {}'s holiday arrangement before deadlines count into it",
                        c.name(),
                        c.last_covered_year(),
                        c.last_covered_year() + 1
                    ),
                ),
            })
            .collect(),
        Err(CalendarError::Invalid { problems }) => problems
            .into_iter()
            .map(|p| Reported {
                file: p.file.display().to_string(),
                diagnostic: diagnostic(
                    Severity::Error,
                    Code::InvalidCalendar,
                    Pos {
                        line: p.line,
                        column: p.column,
                    },
                    &p.field,
                    p.message,
                ),
            })
            .collect(),
        Err(CalendarError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(other) => return Err(other.into()),
    };
    Ok((names, reported))
}
