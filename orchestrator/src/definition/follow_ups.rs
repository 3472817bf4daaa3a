//! Follow-ups: reminders a case keeps sending after it ended, at each
//! anniversary of an event — the residence permit's annual endorsement.

use chrono::{Months, NaiveDate};
use marked_yaml::Node;

use super::diagnostic::did_you_mean;
use super::diagnostic::{Code, Diagnostics};
use super::load::Declarations;
use super::message::read_message;
use super::model::{FollowUp, Step, StepKind};
use super::yaml::{self, Fields, child};

pub(super) const FOLLOW_UP_FIELDS: &[&str] = &[
    "id",
    "title",
    "when_outcome",
    "anchor",
    "every",
    "remind_before",
    "times",
    "channel",
    "to",
    "subject",
    "message",
];

/// The ids follow-ups declare, so that their messages can name their own
/// due date as `deadline.ID.due`. Problems are reported by [`read`].
pub(super) fn declare(node: &Node) -> Vec<String> {
    let Node::Sequence(items) = node else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match item {
            Node::Mapping(m) => m.get_scalar("id").map(|s| s.as_str().to_owned()),
            _ => None,
        })
        .collect()
}

pub(super) fn read(
    node: &Node,
    steps: &[Step],
    decls: &Declarations<'_>,
    d: &mut Diagnostics,
) -> Vec<FollowUp> {
    let mut out = Vec::new();
    for (i, item) in yaml::items(node, "/follow_ups", "`follow_ups`", d)
        .into_iter()
        .enumerate()
    {
        let path = child("/follow_ups", &i.to_string());
        let Some(f) = Fields::open(item, &path, "a follow-up", FOLLOW_UP_FIELDS, d) else {
            continue;
        };
        f.check_unknown(d);
        if let Some(follow_up) = read_one(&f, steps, decls, d) {
            out.push(follow_up);
        }
    }
    out
}

fn read_one(
    f: &Fields<'_>,
    steps: &[Step],
    decls: &Declarations<'_>,
    d: &mut Diagnostics,
) -> Option<FollowUp> {
    let id = f
        .required("id", d)
        .and_then(|n| yaml::name(n, &f.field_path("id"), d))
        .and_then(|id| {
            if decls.step(&id.value).is_some() {
                d.error(
                    Code::DuplicateStep,
                    &f.field_path("id"),
                    id.pos,
                    format!(
                        "`{}` is already a step; a follow-up needs a name of its own",
                        id.value
                    ),
                );
                None
            } else {
                Some(id)
            }
        });
    let title = f
        .optional("title")
        .and_then(|n| yaml::text(n, &f.field_path("title"), d));
    let outcomes: Vec<&str> = steps
        .iter()
        .filter_map(|s| match &s.kind {
            StepKind::End(end) => Some(end.outcome.as_str()),
            _ => None,
        })
        .collect();
    let when_outcome = f
        .required("when_outcome", d)
        .and_then(|n| yaml::text(n, &f.field_path("when_outcome"), d))
        .and_then(|raw| {
            if outcomes.contains(&raw.value.as_str()) {
                return Some(raw.value);
            }
            let hint = did_you_mean(&raw.value, outcomes.iter().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            d.error(
                Code::UnknownOutcome,
                &f.field_path("when_outcome"),
                raw.pos,
                format!("no end step has outcome `{}`{hint}", raw.value),
            );
            None
        });
    let anchor = f
        .required("anchor", d)
        .and_then(|n| yaml::name(n, &f.field_path("anchor"), d))
        .and_then(|raw| {
            if decls.events.iter().any(|e| e.value.name == raw.value) {
                return Some(raw.value);
            }
            let hint = did_you_mean(
                &raw.value,
                decls.events.iter().map(|e| e.value.name.as_str()),
            )
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
            d.error(
                Code::UnknownEvent,
                &f.field_path("anchor"),
                raw.pos,
                format!("event `{}` is not declared{hint}", raw.value),
            );
            None
        });
    let months = |key: &'static str, d: &mut Diagnostics| {
        let raw = yaml::text(f.required(key, d)?, &f.field_path(key), d)?;
        match parse_months(&raw.value) {
            Ok(n) => Some((n, raw)),
            Err(e) => {
                d.error(Code::BadDuration, &f.field_path(key), raw.pos, e);
                None
            }
        }
    };
    let every = months("every", d);
    let remind_before = months("remind_before", d);
    if let (Some((every, every_raw)), Some((before, raw))) = (&every, &remind_before)
        && before >= every
    {
        d.error(
            Code::InvalidValue,
            &f.field_path("remind_before"),
            raw.pos,
            format!(
                "`remind_before: {}` must be shorter than `every: {}`",
                raw.value, every_raw.value
            ),
        );
    }
    let times = match f.optional("times") {
        Some(n) => Some(
            yaml::integer(n, &f.field_path("times"), 1, 100, d)
                .and_then(|t| u32::try_from(t.value).ok())?,
        ),
        None => None,
    };
    let message = read_message(f, decls, d);
    let (every, _) = every?;
    let (remind_before, _) = remind_before?;
    if remind_before >= every {
        return None;
    }
    Some(FollowUp {
        id: id?.value,
        title: title.map(|t| t.value),
        when_outcome: when_outcome?,
        anchor: anchor?,
        every_months: every,
        remind_before_months: remind_before,
        times,
        message: message?,
    })
}

/// `1 year`, `2 years`, `6 months`: whole calendar months, because an
/// anniversary is a date, not a number of days.
pub fn parse_months(text: &str) -> Result<u32, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let (count, unit) = match words.as_slice() {
        [count, unit] => (*count, *unit),
        _ => {
            return Err(format!(
                "`{text}` is not a number of months or years; write e.g. `1 year` or `1 month`"
            ));
        }
    };
    let n: u32 = count
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{text}`: the count must be a whole number greater than 0"))?;
    match unit {
        "month" | "months" => Ok(n),
        "year" | "years" => n
            .checked_mul(12)
            .ok_or_else(|| format!("`{text}` is too long")),
        _ => Err(format!(
            "`{text}`: the unit must be `months` or `years` (calendar months, not days)"
        )),
    }
}

impl FollowUp {
    /// The `n`th anniversary (from 1) of `anchor`. A 29 February anchor
    /// falls on 28 February in other years.
    pub fn anniversary(&self, anchor: NaiveDate, n: u32) -> Option<NaiveDate> {
        anchor.checked_add_months(Months::new(self.every_months.checked_mul(n)?))
    }

    /// The day the reminder for an anniversary goes out: the start of the
    /// window before it.
    pub fn reminder_day(&self, anniversary: NaiveDate) -> Option<NaiveDate> {
        anniversary.checked_sub_months(Months::new(self.remind_before_months))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::model::{Channel, Message, Recipient};
    use crate::definition::template::Template;

    fn yearly() -> FollowUp {
        FollowUp {
            id: "endorsement".into(),
            title: None,
            when_outcome: "issued".into(),
            anchor: "permit_collected".into(),
            every_months: 12,
            remind_before_months: 1,
            times: None,
            message: Message {
                channel: Channel::Webhook,
                to: Recipient::Input("openid".into()),
                subject: None,
                body: Template::parse("x").unwrap_or(Template { pieces: vec![] }),
            },
        }
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap_or_default()
    }

    #[test]
    fn months_and_years_parse_and_days_do_not() {
        assert_eq!(parse_months("1 year"), Ok(12));
        assert_eq!(parse_months("2 years"), Ok(24));
        assert_eq!(parse_months("1 month"), Ok(1));
        assert!(parse_months("30 days").is_err_and(|e| e.contains("calendar months")));
        assert!(parse_months("0 years").is_err());
        assert!(parse_months("1year").is_err());
    }

    #[test]
    fn anniversaries_are_dates_and_reminders_open_the_month_before() {
        let f = yearly();
        assert_eq!(f.anniversary(d("2026-03-20"), 1), Some(d("2027-03-20")));
        assert_eq!(f.anniversary(d("2026-03-20"), 3), Some(d("2029-03-20")));
        assert_eq!(f.reminder_day(d("2027-03-20")), Some(d("2027-02-20")));
        // Leap day: the anniversary in a common year is 28 February.
        assert_eq!(f.anniversary(d("2028-02-29"), 1), Some(d("2029-02-28")));
        assert_eq!(f.anniversary(d("2028-02-29"), 4), Some(d("2032-02-29")));
        // 31 March: the window opens on the last day of February.
        assert_eq!(f.reminder_day(d("2027-03-31")), Some(d("2027-02-28")));
    }
}
