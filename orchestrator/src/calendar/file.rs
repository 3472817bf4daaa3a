//! Reading a calendar file: the YAML is parsed with positions kept, then
//! read field by field into a [`Calendar`]. Every problem is collected with
//! its line and column, so an operator fixing next year's dates sees all
//! mistakes at once; a calendar comes out only when there are none.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{Datelike, NaiveDate, Weekday};
use chrono_tz::Tz;
use marked_yaml::Node;

use super::{Calendar, Problem, Source, Year};
use crate::definition::diagnostic::{Code, Diagnostic, Diagnostics, Pos, did_you_mean};
use crate::definition::yaml::{self, Fields, Located, child};

const TOP_FIELDS: &[&str] = &["name", "title", "timezone", "years"];
const YEAR_FIELDS: &[&str] = &["source", "days_off", "make_up_workdays"];
const SOURCE_FIELDS: &[&str] = &["notice", "date", "url"];
const ENTRY_FIELDS: &[&str] = &["dates", "name"];

/// The longest range one entry may span. No public holiday lasts a month,
/// so a longer range is almost surely a mistyped month or year
/// (`2025-01-28..2025-12-04`) that would silently remove working days.
const MAX_RANGE_DAYS: i64 = 31;

/// Reads `source` as the calendar file at `path`.
pub(super) fn parse(path: &Path, source: &str) -> Result<Calendar, Vec<Problem>> {
    let mut d = Diagnostics::default();
    match calendar(path, source, &mut d) {
        Some(calendar) if !d.has_errors() => Ok(calendar),
        _ => Err(d
            .into_sorted()
            .into_iter()
            .map(|diag| problem(path, diag))
            .collect()),
    }
}

/// One collected diagnostic as a problem in the calendar file at `file`.
fn problem(file: &Path, diag: Diagnostic) -> Problem {
    Problem {
        file: file.to_owned(),
        line: diag.pos.line,
        column: diag.pos.column,
        field: diag.path,
        message: diag.message,
    }
}

/// One entry of `days_off` or `make_up_workdays`: a date or an inclusive
/// range, already checked to be in order and inside its year.
#[derive(Debug)]
struct Entry {
    first: NaiveDate,
    last: NaiveDate,
    name: Option<String>,
    pos: Pos,
    field: String,
}

impl Entry {
    fn days(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.first.iter_days().take_while(|d| *d <= self.last)
    }
}

fn calendar(file: &Path, source: &str, d: &mut Diagnostics) -> Option<Calendar> {
    let root = yaml::parse(source, "calendar file", d)?;
    let f = Fields::open(&root, "", "the calendar", TOP_FIELDS, d)?;
    f.check_unknown(d);
    let name = f
        .required("name", d)
        .and_then(|n| yaml::text(n, &f.field_path("name"), d));
    if let Some(name) = &name {
        check_stem(file, name, d);
    }
    let title = f
        .optional("title")
        .and_then(|n| yaml::text(n, &f.field_path("title"), d))
        .map(|t| t.value);
    let timezone = f
        .required("timezone", d)
        .and_then(|n| timezone(n, &f.field_path("timezone"), d));
    let years = f
        .required("years", d)
        .and_then(|n| years(n, &f.field_path("years"), d));
    Some(Calendar {
        name: name?.value,
        title,
        timezone: timezone?,
        years: years?,
    })
}

/// Workflows name a calendar by its file, so the name inside must match.
fn check_stem(file: &Path, name: &Located<String>, d: &mut Diagnostics) {
    if file.file_stem().and_then(|s| s.to_str()) != Some(name.value.as_str()) {
        let file = file
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        d.error(
            Code::InvalidValue,
            "/name",
            name.pos,
            format!(
                "`name` is `{}` but the file is `{file}`: they must match, because workflows name a calendar by its file",
                name.value
            ),
        );
    }
}

fn timezone(node: &Node, path: &str, d: &mut Diagnostics) -> Option<Tz> {
    let raw = yaml::text(node, path, d)?;
    match raw.value.parse::<Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            let hint = did_you_mean(
                &raw.value,
                chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()),
            )
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
            d.error(
                Code::InvalidValue,
                path,
                raw.pos,
                format!(
                    "`{}` is not an IANA time zone such as `Asia/Shanghai`{hint}",
                    raw.value
                ),
            );
            None
        }
    }
}

fn years(node: &Node, path: &str, d: &mut Diagnostics) -> Option<BTreeMap<i32, Year>> {
    let entries = yaml::entries(node, path, "`years`", d);
    if entries.is_empty() {
        // `entries` has reported a value that is not a mapping.
        if let Node::Mapping(_) = node {
            d.error(
                Code::InvalidValue,
                path,
                yaml::pos(node),
                "`years` lists no year: a calendar must cover at least one year",
            );
        }
        return None;
    }
    let mut years = BTreeMap::new();
    for (key, value) in entries {
        let year_path = child(path, &key.value);
        let Some(year) = parse_year(&key.value) else {
            d.error(
                Code::InvalidValue,
                &year_path,
                key.pos,
                format!(
                    "`{}` is not a year: the keys of `years` are years such as `2026`",
                    key.value
                ),
            );
            continue;
        };
        if let Some(data) = read_year(year, value, &year_path, d) {
            years.insert(year, data);
        }
    }
    Some(years)
}

fn read_year(year: i32, node: &Node, path: &str, d: &mut Diagnostics) -> Option<Year> {
    let f = Fields::open(node, path, &format!("year {year}"), YEAR_FIELDS, d)?;
    f.check_unknown(d);
    let source = f
        .required("source", d)
        .and_then(|n| source(n, &f.field_path("source"), d));
    let days_off = match f.required("days_off", d) {
        Some(n) => entries(n, year, &f.field_path("days_off"), "`days_off`", d),
        None => Vec::new(),
    };
    let make_up = match f.optional("make_up_workdays") {
        Some(n) => entries(
            n,
            year,
            &f.field_path("make_up_workdays"),
            "`make_up_workdays`",
            d,
        ),
        None => Vec::new(),
    };
    let days_off = merge_days_off(&days_off, d);
    let make_up_workdays = make_up_workdays(&make_up, &days_off, d);
    Some(Year {
        source: source?,
        days_off: days_off
            .into_iter()
            .map(|(day, (name, _))| (day, name))
            .collect(),
        make_up_workdays,
    })
}

fn source(node: &Node, path: &str, d: &mut Diagnostics) -> Option<Source> {
    let f = Fields::open(node, path, "`source`", SOURCE_FIELDS, d)?;
    f.check_unknown(d);
    let notice = f
        .required("notice", d)
        .and_then(|n| yaml::text(n, &f.field_path("notice"), d));
    let date = f
        .required("date", d)
        .and_then(|n| date(n, &f.field_path("date"), d));
    let url = f
        .optional("url")
        .and_then(|n| yaml::text(n, &f.field_path("url"), d))
        .map(|u| u.value);
    Some(Source {
        notice: notice?.value,
        date: date?,
        url,
    })
}

fn date(node: &Node, path: &str, d: &mut Diagnostics) -> Option<NaiveDate> {
    let raw = yaml::text(node, path, d)?;
    let date = parse_date(&raw.value);
    if date.is_none() {
        d.error(
            Code::InvalidValue,
            path,
            raw.pos,
            format!("`{}` is not a date: write it as YYYY-MM-DD", raw.value),
        );
    }
    date
}

/// The entries of a `days_off` or `make_up_workdays` list, each checked on
/// its own; entries with a problem are left out.
fn entries(node: &Node, year: i32, path: &str, what: &str, d: &mut Diagnostics) -> Vec<Entry> {
    yaml::items(node, path, what, d)
        .into_iter()
        .enumerate()
        .filter_map(|(i, item)| entry(item, year, child(path, &i.to_string()), d))
        .collect()
}

fn entry(node: &Node, year: i32, path: String, d: &mut Diagnostics) -> Option<Entry> {
    let (dates, name, path) = if let Node::Mapping(_) = node {
        let f = Fields::open(node, &path, "a list entry", ENTRY_FIELDS, d)?;
        f.check_unknown(d);
        let name = f
            .optional("name")
            .and_then(|n| yaml::text(n, &f.field_path("name"), d))
            .map(|n| n.value);
        let dates_path = f.field_path("dates");
        let dates = f
            .required("dates", d)
            .and_then(|n| yaml::text(n, &dates_path, d))?;
        (dates, name, dates_path)
    } else {
        (yaml::text(node, &path, d)?, None, path)
    };
    let (first, last) = match parse_dates(&dates.value) {
        Ok(pair) => pair,
        Err(message) => {
            d.error(Code::InvalidValue, &path, dates.pos, message);
            return None;
        }
    };
    if let Some(date) = [first, last].into_iter().find(|date| date.year() != year) {
        d.error(
            Code::InvalidValue,
            &path,
            dates.pos,
            format!("{date} is not in {year}, the year it is listed under"),
        );
        return None;
    }
    Some(Entry {
        first,
        last,
        name,
        pos: dates.pos,
        field: path,
    })
}

/// Merges the day-off entries, reporting a day listed twice once per entry.
/// Each day keeps the line of the entry that listed it.
fn merge_days_off(
    entries: &[Entry],
    d: &mut Diagnostics,
) -> BTreeMap<NaiveDate, (Option<String>, usize)> {
    let mut off = BTreeMap::new();
    for e in entries {
        let mut reported = false;
        for day in e.days() {
            if let Some((_, line)) = off.get(&day) {
                if !reported {
                    d.error(
                        Code::InvalidValue,
                        &e.field,
                        e.pos,
                        format!(
                            "{day} is already a day off (line {line}): list each day only once"
                        ),
                    );
                    reported = true;
                }
                continue;
            }
            off.insert(day, (e.name.clone(), e.pos.line));
        }
    }
    off
}

/// Checks the make-up workday entries against the weekends and the days
/// off, reporting at most one problem per entry.
fn make_up_workdays(
    entries: &[Entry],
    days_off: &BTreeMap<NaiveDate, (Option<String>, usize)>,
    d: &mut Diagnostics,
) -> BTreeMap<NaiveDate, Option<String>> {
    let mut lines: BTreeMap<NaiveDate, usize> = BTreeMap::new();
    let mut make_up = BTreeMap::new();
    for e in entries {
        let problem = e.days().find_map(|day| {
            if !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
                Some(format!(
                    "{day} is a {}: make-up workdays are Saturdays or Sundays (weekdays are working days anyway)",
                    weekday_name(day.weekday())
                ))
            } else if let Some((_, line)) = days_off.get(&day) {
                Some(format!(
                    "{day} is also a day off (line {line}): a day cannot be both"
                ))
            } else {
                lines.get(&day).map(|line| {
                    format!(
                        "{day} is already a make-up workday (line {line}): list each day only once"
                    )
                })
            }
        });
        if let Some(message) = problem {
            d.error(Code::InvalidValue, &e.field, e.pos, message);
            continue;
        }
        for day in e.days() {
            lines.insert(day, e.pos.line);
            make_up.insert(day, e.name.clone());
        }
    }
    make_up
}

/// A date written strictly as `YYYY-MM-DD`: chrono alone would also take
/// `2026-2-1`, and a date given on the command line should be written the
/// way calendar files must write it.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shaped {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// `DATE` or the inclusive range `FIRST..LAST`, in order and not longer
/// than [`MAX_RANGE_DAYS`].
fn parse_dates(text: &str) -> Result<(NaiveDate, NaiveDate), String> {
    let not_a_date = |part: &str| {
        format!(
            "`{part}` is not a date: write a date as YYYY-MM-DD, or an inclusive range as FIRST..LAST"
        )
    };
    let Some((a, b)) = text.split_once("..") else {
        let date = parse_date(text.trim()).ok_or_else(|| not_a_date(text))?;
        return Ok((date, date));
    };
    let first = parse_date(a.trim()).ok_or_else(|| not_a_date(a.trim()))?;
    let last = parse_date(b.trim()).ok_or_else(|| not_a_date(b.trim()))?;
    if last < first {
        return Err(format!("`{text}` ends before it starts"));
    }
    let days = (last - first).num_days() + 1;
    if days > MAX_RANGE_DAYS {
        return Err(format!(
            "`{text}` spans {days} days: no holiday lasts more than {MAX_RANGE_DAYS}; check the months and years"
        ));
    }
    Ok((first, last))
}

/// A year key: four digits.
fn parse_year(text: &str) -> Option<i32> {
    if text.len() == 4 && text.bytes().all(|c| c.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

fn weekday_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::CalendarError;

    const HEAD: &str = "name: test\ntimezone: Asia/Shanghai\nyears:\n";
    const SOURCE: &str =
        "    source: {notice: State Council General Office notice, date: 2024-11-12}\n";

    fn problems_in(path: &str, src: &str) -> Vec<Problem> {
        match Calendar::parse(Path::new(path), src) {
            Ok(c) => panic!("expected problems, got {c:?}"),
            Err(CalendarError::Invalid { problems }) => problems,
            Err(other) => panic!("expected problems, got {other}"),
        }
    }

    /// The problems of a file `test.yaml` holding one year 2025 with the
    /// given lines after its `source` (lines 6 onwards).
    fn problems_2025(body: &str) -> Vec<Problem> {
        problems_in("test.yaml", &format!("{HEAD}  2025:\n{SOURCE}{body}"))
    }

    /// The one problem found, as `(line, column, field, message)`.
    fn only(problems: Vec<Problem>) -> (usize, usize, String, String) {
        assert_eq!(problems.len(), 1, "{problems:#?}");
        let p = problems.into_iter().next().unwrap();
        (p.line, p.column, p.field, p.message)
    }

    #[test]
    fn a_small_calendar_parses() {
        let src = format!(
            "{HEAD}  2025:\n{SOURCE}    days_off:\n      - 2025-01-01\n      - {{dates: 2025-01-28..2025-02-04, name: Spring Festival}}\n    make_up_workdays: [2025-01-26, {{dates: 2025-02-08, name: Spring Festival}}]\n"
        );
        let cal = Calendar::parse(Path::new("dir/test.yaml"), &src).unwrap();
        let year = cal.year(2025).unwrap();
        assert_eq!(year.days_off().len(), 9);
        assert_eq!(year.make_up_workdays().len(), 2);
        assert_eq!(year.source().notice, "State Council General Office notice");
        assert_eq!(cal.title(), None);
    }

    #[test]
    fn malformed_dates_are_rejected_with_their_position() {
        let (line, column, field, message) =
            only(problems_2025("    days_off:\n      - 2025-02-30\n"));
        assert_eq!((line, column), (7, 9));
        assert_eq!(field, "/years/2025/days_off/0");
        assert!(message.contains("`2025-02-30` is not a date"), "{message}");

        let (line, _, field, message) = only(problems_2025(
            "    days_off:\n      - 2025-01-01\n      - {dates: 2025-5-1..2025-05-05}\n",
        ));
        assert_eq!(line, 8);
        assert_eq!(field, "/years/2025/days_off/1/dates");
        assert!(message.contains("`2025-5-1` is not a date"), "{message}");
    }

    #[test]
    fn a_range_ending_before_it_starts_is_rejected() {
        let (line, _, _, message) = only(problems_2025(
            "    days_off:\n      - 2025-02-04..2025-01-28\n",
        ));
        assert_eq!(line, 7);
        assert!(message.contains("ends before it starts"), "{message}");
    }

    #[test]
    fn an_overlong_range_is_rejected_as_a_likely_typo() {
        let (line, _, _, message) = only(problems_2025(
            "    days_off:\n      - 2025-01-28..2025-12-04\n",
        ));
        assert_eq!(line, 7);
        assert!(message.contains("spans 311 days"), "{message}");
    }

    #[test]
    fn a_date_outside_its_year_is_rejected() {
        let (line, column, _, message) = only(problems_2025(
            "    days_off:\n      - 2025-01-01\n    make_up_workdays:\n      - 2026-01-04\n",
        ));
        assert_eq!((line, column), (9, 9));
        assert_eq!(
            message,
            "2026-01-04 is not in 2025, the year it is listed under"
        );
    }

    #[test]
    fn a_day_listed_twice_or_in_overlapping_ranges_is_rejected() {
        let problems = problems_2025(
            "    days_off:\n      - 2025-05-01..2025-05-05\n      - 2025-05-03\n      - 2025-05-05..2025-05-06\n",
        );
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert_eq!(problems[0].line, 8);
        assert!(
            problems[0]
                .message
                .contains("2025-05-03 is already a day off (line 7)")
        );
        assert_eq!(problems[1].line, 9);
        assert!(
            problems[1]
                .message
                .contains("2025-05-05 is already a day off (line 7)")
        );

        let (line, _, _, message) = only(problems_2025(
            "    days_off: [2025-01-01]\n    make_up_workdays:\n      - 2025-01-26\n      - 2025-01-26\n",
        ));
        assert_eq!(line, 9);
        assert!(
            message.contains("already a make-up workday (line 8)"),
            "{message}"
        );
    }

    #[test]
    fn a_make_up_workday_on_a_weekday_is_rejected() {
        let (line, column, field, message) = only(problems_2025(
            "    days_off: [2025-01-01]\n    make_up_workdays:\n      - 2025-01-27\n",
        ));
        assert_eq!((line, column), (8, 9));
        assert_eq!(field, "/years/2025/make_up_workdays/0");
        assert!(message.starts_with("2025-01-27 is a Monday"), "{message}");
    }

    #[test]
    fn a_make_up_workday_that_is_also_a_day_off_is_rejected() {
        let (line, _, _, message) = only(problems_2025(
            "    days_off:\n      - 2025-01-28..2025-02-04\n    make_up_workdays:\n      - 2025-02-01\n",
        ));
        assert_eq!(line, 9);
        assert_eq!(
            message,
            "2025-02-01 is also a day off (line 7): a day cannot be both"
        );
    }

    #[test]
    fn unknown_fields_are_rejected_with_a_suggestion() {
        let problems = problems_in(
            "test.yaml",
            &format!(
                "{HEAD}  2025:\n{SOURCE}    days_off:\n      - {{dates: 2025-01-01, nme: New Year}}\n    make_up_workday: [2025-01-26]\ncolour: red\n"
            ),
        );
        let found: Vec<_> = problems
            .iter()
            .map(|p| (p.line, p.field.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    7,
                    "/years/2025/days_off/0/nme",
                    "unknown field `nme` in a list entry; did you mean `name`?"
                ),
                (
                    8,
                    "/years/2025/make_up_workday",
                    "unknown field `make_up_workday` in year 2025; did you mean `make_up_workdays`?"
                ),
                (
                    9,
                    "/colour",
                    "unknown field `colour` in the calendar; expected `name`, `title`, `timezone` or `years`"
                ),
            ]
        );
    }

    #[test]
    fn missing_required_fields_are_all_reported() {
        let problems = problems_in("test.yaml", "title: Nothing else\n");
        let messages: Vec<_> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "the calendar is missing required field `name`",
                "the calendar is missing required field `timezone`",
                "the calendar is missing required field `years`",
            ]
        );
        assert!(problems.iter().all(|p| p.line == 1));

        let (line, _, field, message) = only(problems_in(
            "test.yaml",
            &format!("{HEAD}  2025:\n    days_off: [2025-01-01]\n"),
        ));
        assert_eq!(line, 5);
        assert_eq!(field, "/years/2025/source");
        assert_eq!(message, "year 2025 is missing required field `source`");
    }

    #[test]
    fn a_name_that_differs_from_the_file_is_rejected() {
        let (line, column, field, message) = only(problems_in(
            "calendars/cn-mainland.yaml",
            &format!("{HEAD}  2025:\n{SOURCE}    days_off: [2025-01-01]\n"),
        ));
        assert_eq!((line, column, field.as_str()), (1, 7, "/name"));
        assert!(
            message.starts_with("`name` is `test` but the file is `cn-mainland.yaml`"),
            "{message}"
        );
    }

    #[test]
    fn an_unknown_time_zone_is_rejected_with_a_suggestion() {
        let (line, column, _, message) = only(problems_in(
            "test.yaml",
            "name: test\ntimezone: Asia/Shangai\nyears:\n  2025:\n    source: {notice: n, date: 2024-11-12}\n    days_off: [2025-01-01]\n",
        ));
        assert_eq!((line, column), (2, 11));
        assert!(
            message.contains("did you mean `Asia/Shanghai`?"),
            "{message}"
        );
    }

    #[test]
    fn bad_years_are_rejected() {
        let (line, _, _, message) = only(problems_in(
            "test.yaml",
            "name: test\ntimezone: UTC\nyears: {}\n",
        ));
        assert_eq!(line, 3);
        assert!(message.contains("lists no year"), "{message}");

        let (line, _, _, message) = only(problems_in(
            "test.yaml",
            "name: test\ntimezone: UTC\nyears:\n  twenty:\n    source: {notice: n, date: 2024-11-12}\n    days_off: []\n",
        ));
        assert_eq!(line, 4);
        assert!(message.contains("`twenty` is not a year"), "{message}");
    }

    #[test]
    fn duplicate_keys_and_syntax_errors_have_a_position() {
        let (line, _, _, message) = only(problems_in(
            "test.yaml",
            &format!(
                "{HEAD}  2025:\n{SOURCE}    days_off: [2025-01-01]\n  2025:\n{SOURCE}    days_off: [2025-01-02]\n"
            ),
        ));
        assert_eq!(line, 7);
        assert_eq!(message, "field `2025` is given twice (first on line 4)");

        let (line, _, _, message) = only(problems_in("test.yaml", "name: [test\n"));
        assert_eq!(line, 2);
        assert!(message.starts_with("YAML syntax"), "{message}");
    }

    #[test]
    fn all_problems_are_collected_in_file_order() {
        let problems = problems_in(
            "test.yaml",
            &format!(
                "{HEAD}  2025:\n{SOURCE}    days_off:\n      - 2025-13-01\n      - 2026-01-01\n    make_up_workdays: [2025-01-27]\n  2026:\n    source: {{notice: n, date: yesterday}}\n    days_off: [2026-02-23..2026-02-15]\n"
            ),
        );
        let lines: Vec<_> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [7, 8, 9, 11, 12], "{problems:#?}");
    }
}
