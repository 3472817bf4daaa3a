//! Problems found in a workflow file, reported all at once.

use std::fmt;

use serde::Serialize;

/// A position in a source file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// Stable identifiers for every kind of problem, so tools and tests can
/// match on them while messages stay free to improve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    YamlSyntax,
    UnknownField,
    MissingField,
    InvalidValue,
    BadDuration,
    BadCron,
    BadCondition,
    BadTemplate,
    DuplicateStep,
    UnknownStep,
    UnreachableStep,
    NoPathToEnd,
    LoopWithoutWait,
    UnknownHandler,
    UnknownParam,
    MissingParam,
    TypeMismatch,
    UnknownOutcome,
    UnroutedOutcome,
    UnknownErrorCode,
    UnknownEvent,
    UnusedEvent,
    UnknownCalendar,
    UnknownInput,
    UnknownContact,
    UnknownDocument,
    UnknownDeadline,
    UnknownRetryPolicy,
    ExtensionBelowLimit,
    WaitsForever,
    CronNeverOnWorkingDay,
    InvalidCalendar,
    CalendarEndsSoon,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::YamlSyntax => "yaml-syntax",
            Code::UnknownField => "unknown-field",
            Code::MissingField => "missing-field",
            Code::InvalidValue => "invalid-value",
            Code::BadDuration => "bad-duration",
            Code::BadCron => "bad-cron",
            Code::BadCondition => "bad-condition",
            Code::BadTemplate => "bad-template",
            Code::DuplicateStep => "duplicate-step",
            Code::UnknownStep => "unknown-step",
            Code::UnreachableStep => "unreachable-step",
            Code::NoPathToEnd => "no-path-to-end",
            Code::LoopWithoutWait => "loop-without-wait",
            Code::UnknownHandler => "unknown-handler",
            Code::UnknownParam => "unknown-param",
            Code::MissingParam => "missing-param",
            Code::TypeMismatch => "type-mismatch",
            Code::UnknownOutcome => "unknown-outcome",
            Code::UnroutedOutcome => "unrouted-outcome",
            Code::UnknownErrorCode => "unknown-error-code",
            Code::UnknownEvent => "unknown-event",
            Code::UnusedEvent => "unused-event",
            Code::UnknownCalendar => "unknown-calendar",
            Code::UnknownInput => "unknown-input",
            Code::UnknownContact => "unknown-contact",
            Code::UnknownDocument => "unknown-document",
            Code::UnknownDeadline => "unknown-deadline",
            Code::UnknownRetryPolicy => "unknown-retry-policy",
            Code::ExtensionBelowLimit => "extension-below-limit",
            Code::WaitsForever => "waits-forever",
            Code::CronNeverOnWorkingDay => "cron-never-on-working-day",
            Code::InvalidCalendar => "invalid-calendar",
            Code::CalendarEndsSoon => "calendar-ends-soon",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem: where it is (line, column and the field's path in the
/// document, e.g. `/steps/verify_identity/timeout`), how bad, and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: Code,
    pub path: String,
    #[serde(flatten)]
    pub pos: Pos,
    pub message: String,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders the diagnostic as `FILE:LINE:COLUMN: error: MESSAGE [code at path]`,
    /// the form editors and CI logs recognise.
    pub fn render(&self, file: &str) -> String {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        format!(
            "{file}:{}:{}: {}: {} [{} at {path}]",
            self.pos.line, self.pos.column, self.severity, self.message, self.code
        )
    }
}

/// Collects diagnostics while a file is read and checked.
#[derive(Debug, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn error(&mut self, code: Code, path: &str, pos: Pos, message: impl Into<String>) {
        self.push(Severity::Error, code, path, pos, message.into());
    }

    pub fn warning(&mut self, code: Code, path: &str, pos: Pos, message: impl Into<String>) {
        self.push(Severity::Warning, code, path, pos, message.into());
    }

    fn push(&mut self, severity: Severity, code: Code, path: &str, pos: Pos, message: String) {
        // One diagnostic, one line: values quoted from the file may hold
        // line breaks.
        let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
        self.items.push(Diagnostic {
            severity,
            code,
            path: path.to_owned(),
            pos,
            message,
        });
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    /// The diagnostics in file order, errors before warnings on the same spot.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items
            .sort_by(|a, b| (a.pos, a.severity, &a.path).cmp(&(b.pos, b.severity, &b.path)));
        self.items.dedup();
        self.items
    }
}

/// Suggests the closest candidate to a misspelt word, if one is close enough
/// to be a plausible typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Formats a list of names for a message: `` `a`, `b` or `c` ``.
pub fn one_of<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<String> = names.into_iter().map(|n| format!("`{n}`")).collect();
    match names.len() {
        0 => "nothing".to_owned(),
        1 => names[0].clone(),
        n => format!("{} or {}", names[..n - 1].join(", "), names[n - 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let keys = ["timeout", "retry", "handler"];
        assert_eq!(did_you_mean("timout", keys), Some("timeout"));
        assert_eq!(did_you_mean("handlr", keys), Some("handler"));
        assert_eq!(did_you_mean("colour", keys), None);
    }

    #[test]
    fn lists_names_readably() {
        assert_eq!(one_of(["a"]), "`a`");
        assert_eq!(one_of(["a", "b", "c"]), "`a`, `b` or `c`");
    }
}
