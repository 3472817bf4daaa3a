//! Recurring sweeps driven by cron expressions.

use std::str::FromStr;

use chrono::{Datelike, Utc, Weekday};
use marked_yaml::Node;

use super::diagnostic::{Code, Diagnostics};
use super::expr::Reference;
use super::load::{Declarations, known_calendar};
use super::message::read_message;
use super::model::{Message, Recipient, Schedule};
use super::period::Period;
use super::yaml::{self, Fields, child};

pub(super) const SCHEDULE_FIELDS: &[&str] = &[
    "id",
    "title",
    "cron",
    "timezone",
    "working_days_only",
    "calendar",
    "deadline",
    "due_within",
    "channel",
    "to",
    "subject",
    "message",
];

pub(super) fn read(node: &Node, decls: &Declarations<'_>, d: &mut Diagnostics) -> Vec<Schedule> {
    let mut out = Vec::new();
    for (i, item) in yaml::items(node, "/schedules", "`schedules`", d)
        .into_iter()
        .enumerate()
    {
        let path = child("/schedules", &i.to_string());
        let Some(f) = Fields::open(item, &path, "a schedule", SCHEDULE_FIELDS, d) else {
            continue;
        };
        f.check_unknown(d);
        if let Some(s) = read_one(&f, decls, d) {
            out.push(s);
        }
    }
    out
}

fn read_one(f: &Fields<'_>, decls: &Declarations<'_>, d: &mut Diagnostics) -> Option<Schedule> {
    let id = f
        .required("id", d)
        .and_then(|n| yaml::name(n, &f.field_path("id"), d));
    let title = f
        .optional("title")
        .and_then(|n| yaml::text(n, &f.field_path("title"), d));
    let timezone = match f.optional("timezone") {
        None => Some(chrono_tz::Tz::UTC),
        Some(n) => yaml::text(n, &f.field_path("timezone"), d).and_then(|raw| match raw
            .value
            .parse::<chrono_tz::Tz>(
        ) {
            Ok(tz) => Some(tz),
            Err(_) => {
                d.error(
                    Code::InvalidValue,
                    &f.field_path("timezone"),
                    raw.pos,
                    format!(
                        "`{}` is not a time zone name such as `Asia/Shanghai`",
                        raw.value
                    ),
                );
                None
            }
        }),
    };
    let working_days_only = f
        .optional("working_days_only")
        .and_then(|n| yaml::boolean(n, &f.field_path("working_days_only"), d))
        .is_some_and(|b| b.value);
    let calendar = match f.optional("calendar") {
        Some(n) => yaml::text(n, &f.field_path("calendar"), d)
            .and_then(|c| known_calendar(c, &f.field_path("calendar"), decls.env, d)),
        None => decls.calendar.clone(),
    };
    if working_days_only && calendar.is_none() {
        d.error(
            Code::UnknownCalendar,
            &f.field_path("working_days_only"),
            f.pos(),
            "`working_days_only` needs a calendar: add `calendar:` to the schedule or the workflow",
        );
    }
    let cron = f
        .required("cron", d)
        .and_then(|n| yaml::text(n, &f.field_path("cron"), d));
    let parsed = cron.as_ref().and_then(|raw| match cron::Schedule::from_str(&raw.value) {
        Ok(s) => Some(s),
        Err(e) => {
            // The cron crate's message repeats the expression over several
            // lines with a caret; its last line is the reason.
            let e = e.to_string();
            let e = e.lines().last().unwrap_or_default().trim();
            d.error(
                Code::BadCron,
                &f.field_path("cron"),
                raw.pos,
                format!(
                    "`{}` is not a cron expression ({e}); write six or seven fields: \
                     second minute hour day-of-month month day-of-week [year], e.g. `0 0 9 * * Mon-Fri`",
                    raw.value
                ),
            );
            None
        }
    });
    if let (Some(schedule), Some(raw), Some(tz)) = (&parsed, &cron, timezone)
        && working_days_only
        && never_on_weekdays(schedule, tz)
    {
        d.warning(
            Code::CronNeverOnWorkingDay,
            &f.field_path("cron"),
            raw.pos,
            format!("`{}` only fires on weekends, so with `working_days_only` it will rarely or never run", raw.value),
        );
    }
    let deadline = f
        .required("deadline", d)
        .and_then(|n| yaml::name(n, &f.field_path("deadline"), d));
    let deadline = deadline.and_then(|name| {
        if decls
            .step(&name.value)
            .is_some_and(|s| s.kind == "deadline")
        {
            Some(name.value)
        } else {
            d.error(
                Code::UnknownDeadline,
                &f.field_path("deadline"),
                name.pos,
                format!("there is no deadline step `{}`", name.value),
            );
            None
        }
    });
    let due_within = f
        .required("due_within", d)
        .and_then(|n| yaml::text(n, &f.field_path("due_within"), d))
        .and_then(|raw| match Period::parse(&raw.value) {
            Ok(p) => Some(p),
            Err(e) => {
                d.error(Code::BadDuration, &f.field_path("due_within"), raw.pos, e);
                None
            }
        });
    let message = read_message(f, decls, d).and_then(|m| sweep_message(m, f, d));
    if let Some(Period::WorkingDays(_)) = due_within
        && calendar.is_none()
    {
        d.error(
            Code::UnknownCalendar,
            &f.field_path("due_within"),
            f.optional("due_within").map_or(f.pos(), yaml::pos),
            "`due_within` in working days needs a calendar: add `calendar:` to the schedule or the workflow",
        );
    }
    Some(Schedule {
        id: id?.value,
        title: title.map(|t| t.value),
        cron: cron?.value,
        timezone: timezone?,
        working_days_of: if working_days_only {
            Some(calendar?.value)
        } else {
            None
        },
        deadline: deadline?,
        due_within: due_within?,
        message: message?,
    })
}

/// A sweep's message lists many cases: it goes to a contact, never to an
/// address from one case's input, and may name only case ids and due
/// dates, so that no person's data reaches the list.
fn sweep_message(message: Message, f: &Fields<'_>, d: &mut Diagnostics) -> Option<Message> {
    let mut ok = true;
    let at = |key: &'static str| f.optional(key).map_or(f.pos(), yaml::pos);
    if let Recipient::Input(field) = &message.to {
        d.error(
            Code::InvalidValue,
            &f.field_path("to"),
            at("to"),
            format!(
                "a schedule's message lists many cases, so it goes to a contact (`contacts.NAME`), not to `input.{field}`"
            ),
        );
        ok = false;
    }
    for (key, template) in [
        ("subject", message.subject.as_ref()),
        ("message", Some(&message.body)),
    ] {
        for reference in template.into_iter().flat_map(|t| t.references()) {
            if !matches!(reference, Reference::CaseId | Reference::Due(_)) {
                d.error(
                    Code::BadTemplate,
                    &f.field_path(key),
                    at(key),
                    format!(
                        "`{{{{ {reference} }}}}` cannot be used in a schedule's message: it lists many cases and may name only `case.id` and `deadline.NAME.due`"
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(message)
}

/// Whether none of the next firings (up to a year's worth) falls on a
/// weekday: a cron meant for working days that can only fire on weekends.
fn never_on_weekdays(schedule: &cron::Schedule, tz: chrono_tz::Tz) -> bool {
    let now = Utc::now().with_timezone(&tz);
    let horizon = now + chrono::Duration::days(366);
    let mut any = false;
    for t in schedule.after(&now).take(400) {
        if t > horizon {
            break;
        }
        any = true;
        if !matches!(t.weekday(), Weekday::Sat | Weekday::Sun) {
            return false;
        }
    }
    any
}
