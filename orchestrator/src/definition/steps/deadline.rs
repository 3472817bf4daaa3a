//! Reading `deadline` steps: the limit and its calendar, the extension cap,
//! the steps that meet or pause the clock, and reminders.

use super::{REMINDER_FIELDS, StepReader, check_target};
use crate::definition::diagnostic::{Code, Diagnostics};
use crate::definition::message::read_message;
use crate::definition::model::{Deadline, Reminder};
use crate::definition::period::Period;
use crate::definition::yaml::{self, Fields, child};

impl StepReader<'_, '_, '_> {
    pub(super) fn deadline(&mut self) -> Option<Deadline> {
        let f = self.f;
        let started_by = f
            .required("started_by", self.d)
            .and_then(|n| yaml::name(n, &f.field_path("started_by"), self.d))
            .filter(|e| {
                self.decls
                    .check_event(e, &f.field_path("started_by"), self.d)
            });
        let limit_raw = f
            .required("limit", self.d)
            .and_then(|n| yaml::text(n, &f.field_path("limit"), self.d));
        let limit = limit_raw.as_ref().and_then(|raw| {
            let p = self.period(raw, "limit")?;
            if !p.is_working_days() && p.whole_days().is_none() {
                self.d.error(
                    Code::BadDuration,
                    &f.field_path("limit"),
                    raw.pos,
                    format!(
                        "`{}`: a deadline is counted in whole days or working days",
                        raw.value
                    ),
                );
                return None;
            }
            Some(p)
        });
        let roll_forward = f
            .optional("roll_forward")
            .and_then(|n| yaml::boolean(n, &f.field_path("roll_forward"), self.d))
            .is_some_and(|b| b.value);
        let calendar = limit.and_then(|p| {
            let cal = self.calendar_for(p, "limit")?;
            if roll_forward && cal.is_none() {
                self.d.error(
                    Code::UnknownCalendar,
                    &f.field_path("roll_forward"),
                    f.pos(),
                    "`roll_forward` needs a calendar to know the working days: add `calendar:`",
                );
                return None;
            }
            Some(cal)
        });
        let extension_cap = match (f.optional("extendable_to"), limit) {
            (Some(n), Some(limit)) => {
                let raw = yaml::text(n, &f.field_path("extendable_to"), self.d)?;
                let cap = self.period(&raw, "extendable_to")?;
                if cap.max_days() < limit.min_days()
                    || (cap.is_working_days() == limit.is_working_days()
                        && cap.min_days() < limit.min_days())
                {
                    self.d.error(
                        Code::ExtensionBelowLimit,
                        &f.field_path("extendable_to"),
                        raw.pos,
                        format!("`extendable_to: {cap}` is shorter than the deadline's own `limit: {limit}`"),
                    );
                    return None;
                }
                Some(cap)
            }
            _ => None,
        };
        let step_list = |key: &'static str, d: &mut Diagnostics| -> Option<Vec<String>> {
            let Some(n) = f.optional(key) else {
                return Some(Vec::new());
            };
            let path = f.field_path(key);
            let names = yaml::names(n, &path, &format!("`{key}`"), d);
            let resolved: Vec<Option<String>> = names
                .iter()
                .map(|name| check_target(name, &path, self.decls, d))
                .collect();
            resolved.into_iter().collect()
        };
        let paused_at = step_list("paused_at", self.d);
        let met_at = step_list("met_at", self.d);
        if f.optional("met_at").is_none() {
            self.d.error(
                Code::MissingField,
                &f.field_path("met_at"),
                f.pos(),
                "a deadline needs `met_at`: the steps whose reaching meets it",
            );
        }
        let reminders = self.reminders();
        let on_expiry = self.target("on_expiry", true);
        let next = self.target("next", true);
        Some(Deadline {
            started_by: started_by?.value,
            limit: limit?,
            calendar: calendar?,
            roll_forward,
            extension_cap,
            paused_at: paused_at?,
            met_at: met_at.filter(|m| !m.is_empty())?,
            reminders: reminders?,
            on_expiry: on_expiry?,
            next: next?,
        })
    }

    fn reminders(&mut self) -> Option<Vec<Reminder>> {
        let Some(node) = self.f.optional("reminders") else {
            return Some(Vec::new());
        };
        let path = self.f.field_path("reminders");
        let mut out = Some(Vec::new());
        for (i, item) in yaml::items(node, &path, "`reminders`", self.d)
            .into_iter()
            .enumerate()
        {
            let rpath = child(&path, &i.to_string());
            let Some(rf) = Fields::open(item, &rpath, "a reminder", REMINDER_FIELDS, self.d) else {
                out = None;
                continue;
            };
            rf.check_unknown(self.d);
            let before = rf
                .required("before", self.d)
                .and_then(|n| yaml::text(n, &rf.field_path("before"), self.d))
                .and_then(|raw| match Period::parse(&raw.value) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        self.d
                            .error(Code::BadDuration, &rf.field_path("before"), raw.pos, e);
                        None
                    }
                });
            let message = read_message(&rf, self.decls, self.d);
            match (before, message, out.as_mut()) {
                (Some(before), Some(message), Some(list)) => {
                    list.push(Reminder { before, message })
                }
                _ => out = None,
            }
        }
        out
    }
}
