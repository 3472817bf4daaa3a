//! Reading case data: evaluating conditions and values, rendering message
//! templates, and checking data given from outside against its declared
//! fields.

use chrono::NaiveDate;
use docket_workers::catalog::ValueType;
use serde_json::Value;

use super::Rejection;
use super::state::{CaseState, Data};
use crate::definition::expr::{Compare, Expr, Literal, Reference};
use crate::definition::model::Field;
use crate::definition::template::{Piece, Template};
use crate::privacy::marker;

/// The value a reference reads from a case; `Null` when it has none yet
/// (an optional field left out, an event not received) or no longer (its
/// personal data erased). A personal value reads as itself.
pub fn lookup(state: &CaseState, reference: &Reference) -> Value {
    match reference {
        Reference::Input(field) => state.input.get(field).map_or(Value::Null, marker::plain),
        Reference::Event { event, field } => state
            .events
            .get(event)
            .and_then(|e| e.data.get(field))
            .map_or(Value::Null, marker::plain),
        Reference::Outcome(step) => state
            .results
            .get(step)
            .map_or(Value::Null, |r| Value::String(r.outcome.clone())),
        Reference::Output { step, field } => state
            .results
            .get(step)
            .and_then(|r| r.output.get(field))
            .cloned()
            .unwrap_or(Value::Null),
        Reference::Due(deadline) => state
            .deadlines
            .get(deadline)
            .and_then(|d| d.due)
            .map_or(Value::Null, |due| Value::String(due.to_rfc3339())),
        Reference::CaseId => Value::String(state.id.clone()),
    }
}

/// Evaluates a value expression.
pub fn eval(state: &CaseState, expr: &Expr) -> Value {
    match expr {
        Expr::Ref(r) => lookup(state, r),
        Expr::Lit(l) => literal(l),
        Expr::Not(e) => Value::Bool(!truthy(&eval(state, e))),
        Expr::And(a, b) => Value::Bool(truthy(&eval(state, a)) && truthy(&eval(state, b))),
        Expr::Or(a, b) => Value::Bool(truthy(&eval(state, a)) || truthy(&eval(state, b))),
        Expr::Cmp(op, a, b) => Value::Bool(compare(*op, &eval(state, a), &eval(state, b))),
        Expr::In(a, list) => {
            let v = eval(state, a);
            Value::Bool(list.iter().any(|l| literal(l) == v))
        }
    }
}

/// Evaluates a condition; a missing value is false.
pub fn holds(state: &CaseState, expr: &Expr) -> bool {
    truthy(&eval(state, expr))
}

fn literal(l: &Literal) -> Value {
    match l {
        Literal::Text(s) => Value::String(s.clone()),
        Literal::Integer(n) => Value::from(*n),
        Literal::Boolean(b) => Value::Bool(*b),
    }
}

fn truthy(v: &Value) -> bool {
    matches!(v, Value::Bool(true))
}

/// Comparisons involving a missing value are false, except `!=`.
fn compare(op: Compare, a: &Value, b: &Value) -> bool {
    if a.is_null() || b.is_null() {
        return matches!(op, Compare::Ne) && a != b;
    }
    let ordering = match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .zip(y.as_f64())
            .and_then(|(x, y)| x.partial_cmp(&y)),
        // Dates are ISO strings, which order as text.
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    };
    match op {
        Compare::Eq => a == b,
        Compare::Ne => a != b,
        Compare::Lt => ordering.is_some_and(|o| o.is_lt()),
        Compare::Le => ordering.is_some_and(|o| o.is_le()),
        Compare::Gt => ordering.is_some_and(|o| o.is_gt()),
        Compare::Ge => ordering.is_some_and(|o| o.is_ge()),
    }
}

/// Renders a message template with the case's values, due dates in UTC.
pub fn render(state: &CaseState, template: &Template) -> String {
    render_in(state, template, chrono_tz::Tz::UTC)
}

/// Renders a message template for people in `tz`: a due date is the last
/// day it covers (`2026-02-25` for the end of that day), or a local time
/// when it falls inside a day.
pub fn render_in(state: &CaseState, template: &Template, tz: chrono_tz::Tz) -> String {
    template
        .pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => t.clone(),
            Piece::Value(Reference::Due(deadline)) => state
                .deadlines
                .get(deadline)
                .and_then(|d| d.due)
                .map(|due| local_due(due, tz))
                .unwrap_or_default(),
            Piece::Value(r) => match lookup(state, r) {
                Value::Null => String::new(),
                Value::String(s) => s,
                Value::Array(items) => items
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            },
        })
        .collect()
}

/// A due instant as people read it in `tz`: the last day it covers, or a
/// local time when it falls inside a day.
pub fn local_due(due: chrono::DateTime<chrono::Utc>, tz: chrono_tz::Tz) -> String {
    let local = due.with_timezone(&tz);
    if local.time() == chrono::NaiveTime::MIN {
        let last = local.date_naive().pred_opt().unwrap_or(local.date_naive());
        last.format("%Y-%m-%d").to_string()
    } else {
        local.format("%Y-%m-%d %H:%M").to_string()
    }
}

/// Checks data given from outside (a case's input, an event's data)
/// against the declared fields: every required field present, every value
/// of its type, no undeclared field. Names the first problem.
pub fn check(fields: &[Field], data: &Data, what: &str) -> Result<(), Rejection> {
    let invalid = |field: &str, problem: String| Rejection::InvalidData {
        what: what.to_owned(),
        field: field.to_owned(),
        problem,
    };
    for name in data.keys() {
        if !fields.iter().any(|f| &f.name == name) {
            let known: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
            return Err(invalid(
                name,
                format!("is not a declared field (declared: {})", known.join(", ")),
            ));
        }
    }
    for field in fields {
        match data.get(&field.name) {
            None | Some(Value::Null) if field.required => {
                return Err(invalid(
                    &field.name,
                    format!("is required ({})", field.ty.name()),
                ));
            }
            None | Some(Value::Null) => {}
            Some(value) => {
                if let Err(problem) = check_value(field, value) {
                    return Err(invalid(&field.name, problem));
                }
            }
        }
    }
    Ok(())
}

/// Never quotes the value itself: it may be personal information.
fn check_value(field: &Field, value: &Value) -> Result<(), String> {
    let expected = field.ty.name();
    let ok = match (field.ty, value) {
        (ValueType::String, Value::String(s)) => !s.trim().is_empty(),
        (ValueType::Integer, Value::Number(n)) => n.is_i64(),
        (ValueType::Boolean, Value::Bool(_)) => true,
        (ValueType::Date, Value::String(s)) => NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        (ValueType::Email, Value::String(s)) => s
            .split_once('@')
            .is_some_and(|(user, host)| !user.is_empty() && host.contains('.')),
        (ValueType::Phone, Value::String(s)) => {
            let digits = s.trim_start_matches('+');
            (5..=20).contains(&digits.len())
                && digits
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '-' || c == ' ')
        }
        (ValueType::IdNumber, Value::String(s)) => {
            s.len() == 18
                && s[..17].chars().all(|c| c.is_ascii_digit())
                && s[17..].chars().all(|c| c.is_ascii_digit() || c == 'X')
        }
        (ValueType::Enum, Value::String(s)) => {
            if field.values.contains(s) {
                true
            } else {
                return Err(format!("must be one of {}", field.values.join(", ")));
            }
        }
        (ValueType::Documents, Value::Array(items)) => items.iter().all(Value::is_string),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("must be {}", describe(field.ty, expected)))
    }
}

fn describe(ty: ValueType, name: &str) -> String {
    match ty {
        ValueType::String => "non-empty text".to_owned(),
        ValueType::Integer => "a whole number".to_owned(),
        ValueType::Boolean => "true or false".to_owned(),
        ValueType::Date => "a date written YYYY-MM-DD".to_owned(),
        ValueType::Email => "an email address".to_owned(),
        ValueType::Phone => "a phone number".to_owned(),
        ValueType::IdNumber => {
            "an 18-character citizen ID number (17 digits and a digit or X)".to_owned()
        }
        ValueType::Documents => "a list of document ids".to_owned(),
        ValueType::Enum => format!("a value of type {name}"),
    }
}
