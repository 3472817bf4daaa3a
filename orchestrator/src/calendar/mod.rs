//! Working-day calendars: which days are working days in a jurisdiction, and
//! deadline arithmetic on them.
//!
//! A calendar is an operator-edited YAML file in `workflows/calendars/`
//! (`cn-mainland.yaml`), because holiday arrangements change every year by
//! government notice, not by release. Each file covers a list of years; for
//! each year it lists the days off and the make-up workdays (weekend days
//! that are working days). A day is a working day when it is a make-up
//! workday, or a Monday to Friday that is not a day off.
//!
//! A calendar only knows the years it lists. Asking about any other year is
//! an error ([`CalendarError::YearNotCovered`]) rather than a guess from
//! weekends alone: a statutory deadline computed without next year's
//! holidays would be silently wrong.
//!
//! - `file`: reading a calendar file, reporting every problem with its
//!   line and column (through the YAML reader workflow files use,
//!   `crate::definition::yaml`).
//! - `arithmetic`: working days, calendar days with roll-forward, and the
//!   instant a day ends, all pure functions of the calendar and a date.

mod arithmetic;
mod file;

pub(crate) use arithmetic::start_of_day;
pub use file::parse_date;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use chrono_tz::Tz;

/// A working-day calendar that passed every check of [`Calendar::parse`]: its years
/// are non-empty, every listed date lies in its year, days off and make-up
/// workdays are disjoint, and make-up workdays are Saturdays or Sundays.
#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    name: String,
    title: Option<String>,
    timezone: Tz,
    /// Never empty.
    years: BTreeMap<i32, Year>,
}

/// One covered year of a calendar, as the government notice arranged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Year {
    source: Source,
    /// Days off with the holiday's name, when the file gives one.
    days_off: BTreeMap<NaiveDate, Option<String>>,
    /// Weekend days that are working days, with the holiday they make up for.
    make_up_workdays: BTreeMap<NaiveDate, Option<String>>,
}

/// Where a year's arrangement comes from, so an operator can check it
/// against the notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The notice's title or description.
    pub notice: String,
    /// The date the notice is dated.
    pub date: NaiveDate,
    /// Where the notice is published, if the file says.
    pub url: Option<String>,
}

/// One problem in a calendar file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Where in the document, e.g. `/years/2025/days_off/2/dates`.
    pub field: String,
    /// What is wrong, quoting the offending value.
    pub message: String,
}

impl fmt::Display for Problem {
    /// `FILE:LINE:COLUMN: MESSAGE [at FIELD]`, the form editors and CI logs
    /// recognise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = if self.field.is_empty() {
            "/"
        } else {
            &self.field
        };
        write!(
            f,
            "{}:{}:{}: {} [at {field}]",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Why a calendar could not be loaded or could not answer.
#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error("cannot read calendar {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Every problem found in the files, not just the first.
    #[error("invalid calendar file:{}", render_problems(problems))]
    Invalid { problems: Vec<Problem> },
    #[error(
        "calendar `{calendar}` does not cover {year}: add {year}'s holiday arrangement to its file"
    )]
    YearNotCovered { calendar: String, year: i32 },
    #[error("counting {days} day(s) from {start} leaves the range of representable dates")]
    OutOfRange { start: NaiveDate, days: u32 },
}

fn render_problems(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("\n  {p}")).collect()
}

impl Calendar {
    /// Reads a calendar from its source text. `path` names the file in
    /// problems, and its stem must equal the calendar's `name`, because
    /// workflows refer to a calendar by its file name.
    pub fn parse(path: &Path, source: &str) -> Result<Calendar, CalendarError> {
        file::parse(path, source).map_err(|problems| CalendarError::Invalid { problems })
    }

    /// Reads and parses one calendar file.
    pub fn load(path: &Path) -> Result<Calendar, CalendarError> {
        let source = read(path)?;
        Calendar::parse(path, &source)
    }

    /// The calendar's name, which is its file's stem.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    /// The time zone whose midnights separate the calendar's days.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The years the calendar has data for, in order.
    pub fn covered_years(&self) -> impl Iterator<Item = i32> + '_ {
        self.years.keys().copied()
    }

    /// The last year the calendar has data for: counting past its end is
    /// refused, so operators watch this to add the next year in time.
    pub fn last_covered_year(&self) -> i32 {
        // `years` is never empty; 0 is never reached.
        self.years.keys().next_back().copied().unwrap_or_default()
    }

    /// The data for one year, if covered.
    pub fn year(&self, year: i32) -> Option<&Year> {
        self.years.get(&year)
    }
}

impl Year {
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Days off, with the holiday's name when the file gives one.
    pub fn days_off(&self) -> &BTreeMap<NaiveDate, Option<String>> {
        &self.days_off
    }

    /// Weekend days that are working days.
    pub fn make_up_workdays(&self) -> &BTreeMap<NaiveDate, Option<String>> {
        &self.make_up_workdays
    }
}

/// Loads every calendar file (`*.yaml`, `*.yml`) directly inside `dir`, in
/// name order. Problems in all files are reported together; two files with
/// the same stem are a problem, since names must be unique.
pub fn load_dir(dir: &Path) -> Result<Vec<Calendar>, CalendarError> {
    let mut calendars = Vec::new();
    let mut problems = Vec::new();
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in calendar_files(dir)? {
        if let Some(stem) = stem(&path) {
            if let Some(first) = seen.get(stem) {
                problems.push(Problem {
                    file: path.clone(),
                    line: 1,
                    column: 1,
                    field: String::new(),
                    message: format!(
                        "calendar `{stem}` is already defined by {}: calendar names must be unique",
                        first.display()
                    ),
                });
                continue;
            }
            seen.insert(stem.to_owned(), path.clone());
        }
        let source = read(&path)?;
        match file::parse(&path, &source) {
            Ok(calendar) => calendars.push(calendar),
            Err(mut found) => problems.append(&mut found),
        }
    }
    if problems.is_empty() {
        Ok(calendars)
    } else {
        Err(CalendarError::Invalid { problems })
    }
}

/// The names of the calendars in `dir` (the stems of its YAML files),
/// without reading them: enough for the workflow validator to check that a
/// named calendar exists. A missing directory holds no calendars.
pub fn names_in(dir: &Path) -> Result<BTreeSet<String>, CalendarError> {
    match calendar_files(dir) {
        Ok(files) => Ok(files
            .iter()
            .filter_map(|p| stem(p).map(str::to_owned))
            .collect()),
        Err(CalendarError::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(BTreeSet::new())
        }
        Err(other) => Err(other),
    }
}

/// The YAML files directly inside `dir`, sorted.
fn calendar_files(dir: &Path) -> Result<Vec<PathBuf>, CalendarError> {
    let read_err = |source| CalendarError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        let yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        if yaml && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn stem(path: &Path) -> Option<&str> {
    path.file_stem().and_then(|s| s.to_str())
}

fn read(path: &Path) -> Result<String, CalendarError> {
    std::fs::read_to_string(path).map_err(|source| CalendarError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real calendar shipped in `workflows/calendars/`.
    pub(crate) const CN_MAINLAND: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../workflows/calendars/cn-mainland.yaml"
    );

    pub(crate) fn cn_mainland() -> Calendar {
        match Calendar::load(Path::new(CN_MAINLAND)) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("docket-calendar-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_shipped_calendar_loads_with_both_years() {
        let cal = cn_mainland();
        assert_eq!(cal.name(), "cn-mainland");
        assert_eq!(cal.timezone(), chrono_tz::Asia::Shanghai);
        assert_eq!(cal.covered_years().collect::<Vec<_>>(), [2025, 2026]);
        assert_eq!(cal.last_covered_year(), 2026);
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let y2025 = cal.year(2025).unwrap();
        assert_eq!(y2025.source().date, d("2024-11-12"));
        assert_eq!(y2025.days_off().len(), 1 + 8 + 3 + 5 + 3 + 8);
        assert_eq!(y2025.make_up_workdays().len(), 5);
        assert_eq!(
            y2025.days_off().get(&d("2025-02-01")),
            Some(&Some("Spring Festival".to_owned()))
        );
        let y2026 = cal.year(2026).unwrap();
        assert_eq!(y2026.source().date, d("2025-11-04"));
        assert_eq!(y2026.days_off().len(), 3 + 9 + 3 + 5 + 3 + 3 + 7);
        assert_eq!(y2026.make_up_workdays().len(), 6);
    }

    #[test]
    fn the_shipped_calendars_directory_loads_and_lists_its_names() {
        let dir = Path::new(CN_MAINLAND).parent().unwrap();
        let all = load_dir(dir).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].name(), "cn-mainland");
        assert_eq!(
            names_in(dir).unwrap().into_iter().collect::<Vec<_>>(),
            ["cn-mainland"]
        );
    }

    #[test]
    fn a_missing_directory_has_no_calendar_names() {
        let dir = std::env::temp_dir().join("docket-calendar-does-not-exist");
        assert!(names_in(&dir).unwrap().is_empty());
        assert!(matches!(load_dir(&dir), Err(CalendarError::Read { .. })));
    }

    #[test]
    fn load_dir_reports_problems_of_every_file_and_duplicate_names() {
        let dir = temp_dir("dir");
        let good = std::fs::read_to_string(CN_MAINLAND).unwrap();
        std::fs::write(dir.join("cn-mainland.yaml"), &good).unwrap();
        std::fs::write(dir.join("cn-mainland.yml"), &good).unwrap();
        std::fs::write(dir.join("other.yaml"), "name: other\n").unwrap();
        std::fs::write(dir.join("notes.txt"), "not a calendar").unwrap();
        let names = names_in(&dir).unwrap();
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["cn-mainland", "other"]
        );
        let Err(CalendarError::Invalid { problems }) = load_dir(&dir) else {
            panic!("expected problems");
        };
        let files: Vec<_> = problems
            .iter()
            .map(|p| p.file.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(files, ["cn-mainland.yml", "other.yaml", "other.yaml"]);
        assert!(problems[0].message.contains("already defined"));
        assert!(problems[1].message.contains("`timezone`"));
        assert!(problems[2].message.contains("`years`"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn invalid_error_lists_each_problem_with_file_line_and_column() {
        let err = Calendar::parse(
            Path::new("calendars/x.yaml"),
            "name: x\ntimezone: Asia/Shanghai\nyears: {}\ncolour: red\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("\n  calendars/x.yaml:4:1: unknown field `colour`"),
            "{text}"
        );
        assert!(text.contains("calendars/x.yaml:3:"), "{text}");
    }

    #[test]
    fn parse_date_takes_only_real_dates_written_in_full() {
        assert_eq!(
            parse_date("2026-02-10"),
            NaiveDate::from_ymd_opt(2026, 2, 10)
        );
        for text in [
            "2026-2-10",
            "2026-02-30",
            "20260210",
            " 2026-02-10",
            "2026/02/10",
            "",
        ] {
            assert_eq!(parse_date(text), None, "{text:?}");
        }
    }

    #[test]
    fn year_not_covered_names_calendar_and_year() {
        let err = CalendarError::YearNotCovered {
            calendar: "cn-mainland".to_owned(),
            year: 2027,
        };
        assert_eq!(
            err.to_string(),
            "calendar `cn-mainland` does not cover 2027: add 2027's holiday arrangement to its file"
        );
    }
}
