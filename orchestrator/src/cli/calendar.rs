use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use chrono::{Datelike, NaiveDate};
use clap::{ArgGroup, Args, Subcommand};
use docket::calendar::{self, Calendar, CalendarError};
use docket::definition::diagnostic::did_you_mean;

#[derive(Debug, Args)]
pub struct CalendarCommand {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Print the date a period ends: N working days, or N calendar days,
    /// after a start day (which is not counted).
    Due(Due),
    /// List a year's days off and make-up workdays, with the notice they
    /// come from.
    Show(Show),
}

/// Where the calendar files are.
#[derive(Debug, Args)]
struct Location {
    /// Folder of calendar files; default: `calendars/` in the workflows
    /// folder.
    #[arg(long, value_name = "DIR")]
    calendars: Option<PathBuf>,
    /// The folder of workflow files, whose `calendars/` is used unless
    /// `--calendars` is given; the same setting the case commands use.
    #[arg(long, env = "DOCKET_WORKFLOWS", default_value = "workflows")]
    workflows: PathBuf,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("count").required(true).args(["working_days", "days"])))]
struct Due {
    /// The calendar, by its file name without `.yaml`, e.g. `cn-mainland`.
    #[arg(long, value_name = "NAME")]
    calendar: String,
    /// The start day; it is not counted (Civil Code Art. 201).
    #[arg(long, value_name = "YYYY-MM-DD")]
    from: String,
    /// Count working days on the calendar.
    #[arg(long, value_name = "N")]
    working_days: Option<u32>,
    /// Count calendar days.
    #[arg(long, value_name = "N")]
    days: Option<u32>,
    /// With --days: a period ending on a day off ends on the next working
    /// day instead (Civil Code Art. 203).
    #[arg(long)]
    roll_forward: bool,
    #[command(flatten)]
    location: Location,
}

#[derive(Debug, Args)]
struct Show {
    /// The calendar, by its file name without `.yaml`, e.g. `cn-mainland`.
    #[arg(value_name = "NAME")]
    calendar: String,
    /// The year to list.
    #[arg(long, value_name = "YYYY")]
    year: i32,
    #[command(flatten)]
    location: Location,
}

impl CalendarCommand {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let text = match self.command {
            Sub::Due(cmd) => cmd.run()?,
            Sub::Show(cmd) => cmd.run()?,
        };
        // Written in one go and checked, so that a closed pipe (`| head`)
        // is an error message rather than a panic in `println!`.
        std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .context("writing to standard output")?;
        Ok(ExitCode::SUCCESS)
    }
}

impl Due {
    fn run(self) -> anyhow::Result<String> {
        // The arguments are checked before any file is read, so a typo is
        // reported as such even when the calendars are broken too.
        let from = calendar::parse_date(&self.from).ok_or_else(|| {
            anyhow!(
                "--from: `{}` is not a date; write it as YYYY-MM-DD, e.g. 2026-02-10",
                self.from
            )
        })?;
        if self.roll_forward && self.working_days.is_some() {
            bail!(
                "--roll-forward applies to --days only: a count of working days always ends on a working day"
            );
        }
        let cal = load(&self.location, &self.calendar)?;
        let name = cal.name();
        let line = match (self.working_days, self.days) {
            (Some(n), _) => {
                let period = days(n, "working day");
                let due = cal
                    .add_working_days(from, n)
                    .map_err(|e| explain(&cal, e, &format!("counting {period} after {from}")))?;
                format!(
                    "{due}  ({}; {period} after {from} on {name})",
                    due.format("%a")
                )
            }
            (None, Some(n)) => {
                let period = days(n, "calendar day");
                let doing = format!("counting {period} after {from}");
                let landed = cal
                    .add_days(from, n, false)
                    .map_err(|e| explain(&cal, e, &doing))?;
                let due = cal
                    .add_days(from, n, self.roll_forward)
                    .map_err(|e| explain(&cal, e, &doing))?;
                // Without --roll-forward the answer does not depend on the
                // calendar, so a year it does not cover only loses the hint.
                let note = if due != landed {
                    format!(
                        " is {landed}, a day off on {name}, rolled forward to the next working day"
                    )
                } else if self.roll_forward {
                    format!(", a working day on {name}")
                } else {
                    match cal.is_working_day(landed) {
                        Ok(true) => String::new(),
                        Ok(false) => format!(
                            ", a day off on {name}; --roll-forward moves it to the next working day"
                        ),
                        Err(_) => format!(
                            "; {name} does not cover {}, so whether it is a working day is unknown",
                            landed.year()
                        ),
                    }
                };
                format!("{due}  ({}; {period} after {from}{note})", due.format("%a"))
            }
            // The required argument group guarantees one of the two.
            (None, None) => bail!("give --working-days N or --days N"),
        };
        Ok(format!("{line}\n"))
    }
}

impl Show {
    fn run(self) -> anyhow::Result<String> {
        let cal = load(&self.location, &self.calendar)?;
        let year = cal.year(self.year).ok_or_else(|| {
            explain(
                &cal,
                CalendarError::YearNotCovered {
                    calendar: cal.name().to_owned(),
                    year: self.year,
                },
                &format!("listing {}", self.year),
            )
        })?;
        let mut out = String::new();
        let source = year.source();
        // `write!` to a String cannot fail; the results are ignored.
        let _ = writeln!(out, "calendar:   {}", cal.name());
        if let Some(title) = cal.title() {
            let _ = writeln!(out, "title:      {title}");
        }
        let _ = writeln!(out, "time zone:  {}", cal.timezone());
        let _ = writeln!(out, "covers:     {}", years(&cal));
        let _ = writeln!(out, "source:     {}, dated {}", source.notice, source.date);
        if let Some(url) = &source.url {
            let _ = writeln!(out, "            {url}");
        }
        let _ = writeln!(
            out,
            "\nDays off in {} (holidays; Saturdays and Sundays not listed here are ordinary days off):",
            self.year
        );
        for (date, label) in year.days_off() {
            let _ = writeln!(out, "{}", entry(*date, "day off", label.as_deref()));
        }
        let _ = writeln!(
            out,
            "\nMake-up workdays in {} (weekend days that are working days):",
            self.year
        );
        if year.make_up_workdays().is_empty() {
            let _ = writeln!(out, "  none");
        }
        for (date, label) in year.make_up_workdays() {
            let _ = writeln!(out, "{}", entry(*date, "make-up workday", label.as_deref()));
        }
        Ok(out)
    }
}

/// One listed day: its kind on every line, so a line read alone (or found
/// with grep) still says what the day is.
fn entry(date: NaiveDate, kind: &str, label: Option<&str>) -> String {
    let line = format!(
        "  {date}  {}  {kind:<15}  {}",
        date.format("%a"),
        label.unwrap_or("")
    );
    line.trim_end().to_owned()
}

impl Location {
    fn dir(&self) -> PathBuf {
        self.calendars
            .clone()
            .unwrap_or_else(|| self.workflows.join("calendars"))
    }
}

/// The calendar `name` from the folder. The whole folder is loaded, as the
/// orchestrator loads it, so a broken file is reported here as it would
/// stop the orchestrator.
fn load(location: &Location, name: &str) -> anyhow::Result<Calendar> {
    let dir = location.dir();
    if !dir.is_dir() {
        bail!(
            "no calendar folder at {}: give one with --calendars DIR",
            dir.display()
        );
    }
    let names = calendar::names_in(&dir)?;
    if !names.contains(name) {
        bail!("{}", unknown(name, &names, &dir));
    }
    calendar::load_dir(&dir)?
        .into_iter()
        .find(|c| c.name() == name)
        .ok_or_else(|| anyhow!("{}", unknown(name, &names, &dir)))
}

fn unknown(name: &str, names: &BTreeSet<String>, dir: &Path) -> String {
    if names.is_empty() {
        return format!(
            "unknown calendar `{name}`: there are no calendar files in {}",
            dir.display()
        );
    }
    let hint = did_you_mean(name, names.iter().map(String::as_str))
        .map(|n| format!("did you mean `{n}`? "))
        .unwrap_or_default();
    let known: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    format!(
        "unknown calendar `{name}`; {hint}known calendars in {}: {}",
        dir.display(),
        known.join(", ")
    )
}

/// A calendar error as one line, saying what was being done and, for a
/// year the calendar lacks, which years it has.
fn explain(cal: &Calendar, err: CalendarError, doing: &str) -> anyhow::Error {
    match err {
        CalendarError::YearNotCovered { .. } => {
            anyhow!("{doing}: {err} (it covers {})", years(cal))
        }
        other => anyhow::Error::new(other).context(doing.to_owned()),
    }
}

/// `1 working day`, `15 working days`.
fn days(n: u32, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

fn years(cal: &Calendar) -> String {
    cal.covered_years()
        .map(|y| y.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_list_the_known_ones_and_suggest_a_close_one() {
        let names: BTreeSet<String> = ["cn-mainland", "hk"].map(str::to_owned).into();
        let dir = Path::new("workflows/calendars");
        assert_eq!(
            unknown("cn-mainlnd", &names, dir),
            "unknown calendar `cn-mainlnd`; did you mean `cn-mainland`? known calendars in workflows/calendars: `cn-mainland`, `hk`"
        );
        assert_eq!(
            unknown("tokyo", &names, dir),
            "unknown calendar `tokyo`; known calendars in workflows/calendars: `cn-mainland`, `hk`"
        );
        assert!(unknown("x", &BTreeSet::new(), dir).contains("no calendar files"));
    }

    #[test]
    fn entries_carry_weekday_kind_and_label() {
        let date = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
        assert_eq!(
            entry(date, "day off", Some("National Day")),
            "  2026-10-01  Thu  day off          National Day"
        );
        assert_eq!(
            entry(date, "make-up workday", None),
            "  2026-10-01  Thu  make-up workday"
        );
    }
}
