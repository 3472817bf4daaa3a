//! Messages: the channel, recipient and templates shared by notify steps,
//! deadline reminders and schedules.

use docket_workers::catalog::ValueType;

use super::diagnostic::{Code, Diagnostics, did_you_mean};
use super::load::Declarations;
use super::model::{Channel, Message, Recipient};
use super::template::Template;
use super::yaml::{self, Fields};

/// Reads `channel`, `to`, `subject` and `message` from a step, a reminder
/// or a schedule.
pub(super) fn read_message(
    f: &Fields<'_>,
    decls: &Declarations<'_>,
    d: &mut Diagnostics,
) -> Option<Message> {
    let channel = f.required("channel", d).and_then(|n| {
        let raw = yaml::text(n, &f.field_path("channel"), d)?;
        match raw.value.as_str() {
            "email" => Some(Channel::Email),
            "webhook" => Some(Channel::Webhook),
            other => {
                d.error(
                    Code::InvalidValue,
                    &f.field_path("channel"),
                    raw.pos,
                    format!("unknown channel `{other}`; expected `email` or `webhook`"),
                );
                None
            }
        }
    });
    let to = f
        .required("to", d)
        .and_then(|n| yaml::text(n, &f.field_path("to"), d))
        .and_then(|raw| {
            let path = f.field_path("to");
            if let Some(contact) = raw.value.strip_prefix("contacts.") {
                if decls.contacts.iter().any(|c| c.value.name == contact) {
                    return Some(Recipient::Contact(contact.to_owned()));
                }
                let hint = did_you_mean(
                    contact,
                    decls.contacts.iter().map(|c| c.value.name.as_str()),
                )
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_else(|| "; declare it under `contacts:`".to_owned());
                d.error(
                    Code::UnknownContact,
                    &path,
                    raw.pos,
                    format!("contact `{contact}` is not declared{hint}"),
                );
                return None;
            }
            if let Some(field) = raw.value.strip_prefix("input.") {
                let Some(decl) = decls.input_field(field) else {
                    let hint =
                        did_you_mean(field, decls.input.iter().map(|f| f.value.name.as_str()))
                            .map(|s| format!("; did you mean `{s}`?"))
                            .unwrap_or_default();
                    d.error(
                        Code::UnknownInput,
                        &path,
                        raw.pos,
                        format!("input field `{field}` is not declared{hint}"),
                    );
                    return None;
                };
                let fits = match channel {
                    Some(Channel::Email) => decl.ty == ValueType::Email,
                    _ => ValueType::String.accepts(decl.ty),
                };
                if !fits {
                    d.error(
                        Code::TypeMismatch,
                        &path,
                        raw.pos,
                        format!(
                            "input field `{field}` is of type `{}` and cannot receive {} messages",
                            decl.ty.name(),
                            channel.map_or("these", Channel::name)
                        ),
                    );
                    return None;
                }
                return Some(Recipient::Input(field.to_owned()));
            }
            d.error(
                Code::InvalidValue,
                &path,
                raw.pos,
                format!(
                    "`{}` is not a recipient: write `input.FIELD` or `contacts.NAME`",
                    raw.value
                ),
            );
            None
        });
    let template = |key: &'static str, d: &mut Diagnostics| {
        let raw = yaml::text(f.optional(key)?, &f.field_path(key), d)?;
        let checked = Template::parse(&raw.value)
            .map_err(|e| vec![e])
            .and_then(|t| {
                let problems = t.check(decls);
                if problems.is_empty() {
                    Ok(t)
                } else {
                    Err(problems)
                }
            });
        match checked {
            Ok(t) => Some(t),
            Err(problems) => {
                for p in problems {
                    d.error(Code::BadTemplate, &f.field_path(key), raw.pos, p);
                }
                None
            }
        }
    };
    let subject = match f.optional("subject") {
        Some(_) => Some(template("subject", d)?),
        None => None,
    };
    if channel == Some(Channel::Email) && subject.is_none() && f.optional("subject").is_none() {
        d.error(
            Code::MissingField,
            &f.field_path("subject"),
            f.pos(),
            "an email needs a `subject`",
        );
        return None;
    }
    let body = if f.required("message", d).is_some() {
        template("message", d)
    } else {
        None
    };
    Some(Message {
        channel: channel?,
        to: to?,
        subject,
        body: body?,
    })
}
