//! What each task handler accepts and reports.
//!
//! Handler names are stable strings (`identity.verify`), never Rust type
//! names: renaming a struct must not orphan jobs in flight. A workflow step
//! that names a handler is checked against this catalog when the file is
//! loaded: its parameters, the outcomes it routes and the error codes it marks
//! non-retryable.

use std::time::Duration;

/// The type of a value passed to a handler or declared in a workflow.
///
/// Workflow input fields, event data fields and handler parameters share
/// these types so that a reference such as `input.id_number` can be checked
/// against the parameter it feeds before any case runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// Free text.
    String,
    /// A whole number.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// An email address.
    Email,
    /// A phone number.
    Phone,
    /// An 18-character citizen ID number (GB 11643-1999).
    IdNumber,
    /// One of a fixed list of words declared with the field.
    Enum,
    /// A list of submitted document identifiers (materials).
    Documents,
}

impl ValueType {
    /// Every type, in the order the workflow language documents them.
    pub const ALL: [ValueType; 9] = [
        ValueType::String,
        ValueType::Integer,
        ValueType::Boolean,
        ValueType::Date,
        ValueType::Email,
        ValueType::Phone,
        ValueType::IdNumber,
        ValueType::Enum,
        ValueType::Documents,
    ];

    /// The name used for this type in workflow files.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::Integer => "integer",
            ValueType::Boolean => "boolean",
            ValueType::Date => "date",
            ValueType::Email => "email",
            ValueType::Phone => "phone",
            ValueType::IdNumber => "id_number",
            ValueType::Enum => "enum",
            ValueType::Documents => "documents",
        }
    }

    /// Looks a type up by its workflow-file name.
    pub fn from_name(name: &str) -> Option<ValueType> {
        ValueType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether a value of type `given` may be passed where `self` is expected.
    /// Text parameters take any textual value; everything else must match.
    pub fn accepts(self, given: ValueType) -> bool {
        match self {
            ValueType::String => matches!(
                given,
                ValueType::String
                    | ValueType::Enum
                    | ValueType::Email
                    | ValueType::Phone
                    | ValueType::IdNumber
                    | ValueType::Date
            ),
            other => other == given,
        }
    }
}

/// A parameter a handler takes from the step's `with:` mapping.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: ValueType,
    pub required: bool,
}

/// A value a handler returns on success, readable by later steps as
/// `steps.<step>.<name>`.
#[derive(Debug, Clone, Copy)]
pub struct OutputSpec {
    pub name: &'static str,
    pub ty: ValueType,
}

/// Retry behaviour used when a step does not give its own.
#[derive(Debug, Clone, Copy)]
pub struct DefaultRetry {
    pub max_attempts: u32,
    pub initial: Duration,
    pub multiplier: f64,
    pub max: Duration,
}

/// Everything the orchestrator needs to know about one handler.
#[derive(Debug, Clone, Copy)]
pub struct HandlerSpec {
    /// Stable job kind, e.g. `identity.verify`.
    pub name: &'static str,
    pub summary: &'static str,
    /// The queue a step uses when it names none; lets slow external
    /// services be isolated from the rest by default.
    pub default_queue: &'static str,
    pub default_timeout: Duration,
    pub default_retry: DefaultRetry,
    pub params: &'static [ParamSpec],
    /// Business outcomes of a successful attempt. Every one must be routed
    /// by the step (`on:`); `failed` (retries exhausted or a permanent
    /// failure) may be routed too.
    pub outcomes: &'static [&'static str],
    pub outputs: &'static [OutputSpec],
    /// Error codes a failed attempt may carry; a step may mark some of them
    /// non-retryable.
    pub errors: &'static [&'static str],
    /// Whether jobs carry the workflow's materials rules (as `rules`).
    pub needs_materials: bool,
}

/// The outcome every task has when its retries are exhausted or an attempt
/// fails permanently.
pub const FAILED_OUTCOME: &str = "failed";

const EXTERNAL_SERVICE_RETRY: DefaultRetry = DefaultRetry {
    max_attempts: 5,
    initial: Duration::from_secs(30),
    multiplier: 2.0,
    max: Duration::from_secs(30 * 60),
};

const NOTIFY_RETRY: DefaultRetry = DefaultRetry {
    max_attempts: 8,
    initial: Duration::from_secs(10),
    multiplier: 2.0,
    max: Duration::from_secs(60 * 60),
};

const MATERIALS_RETRY: DefaultRetry = DefaultRetry {
    max_attempts: 3,
    initial: Duration::from_secs(5),
    multiplier: 2.0,
    max: Duration::from_secs(60),
};

const fn param(name: &'static str, ty: ValueType) -> ParamSpec {
    ParamSpec {
        name,
        ty,
        required: true,
    }
}

const fn optional(name: &'static str, ty: ValueType) -> ParamSpec {
    ParamSpec {
        name,
        ty,
        required: false,
    }
}

const SERVICE_ERRORS: &[&str] = &["unavailable", "timeout", "bad_response", "invalid_request"];

/// The handlers this crate registers.
pub const HANDLERS: &[HandlerSpec] = &[
    HandlerSpec {
        name: "identity.verify",
        summary: "Real-name identity verification: checks the citizen ID number and asks the \
                  real-name authentication service",
        default_queue: "identity",
        default_timeout: Duration::from_secs(60),
        default_retry: EXTERNAL_SERVICE_RETRY,
        params: &[
            param("name", ValueType::String),
            param("id_number", ValueType::IdNumber),
        ],
        outcomes: &["verified", "rejected"],
        outputs: &[OutputSpec {
            name: "reason",
            ty: ValueType::String,
        }],
        errors: SERVICE_ERRORS,
        needs_materials: false,
    },
    HandlerSpec {
        name: "intranet.authenticate",
        summary: "Identity authentication by the police intranet for a bound residence address",
        default_queue: "intranet",
        default_timeout: Duration::from_secs(120),
        default_retry: EXTERNAL_SERVICE_RETRY,
        params: &[
            param("name", ValueType::String),
            param("id_number", ValueType::IdNumber),
            param("address", ValueType::String),
        ],
        outcomes: &["authenticated", "mismatch"],
        outputs: &[OutputSpec {
            name: "reason",
            ty: ValueType::String,
        }],
        errors: SERVICE_ERRORS,
        needs_materials: false,
    },
    HandlerSpec {
        name: "materials.check",
        summary: "Compares submitted materials with the workflow's materials rules and lists \
                  every missing item at once",
        default_queue: "materials",
        default_timeout: Duration::from_secs(30),
        default_retry: MATERIALS_RETRY,
        params: &[
            param("category", ValueType::String),
            param("through_agent", ValueType::Boolean),
            param("submitted", ValueType::Documents),
        ],
        outcomes: &["complete", "incomplete"],
        outputs: &[OutputSpec {
            name: "missing",
            ty: ValueType::String,
        }],
        errors: &["invalid_request"],
        needs_materials: true,
    },
    HandlerSpec {
        name: "notify.email",
        summary: "Sends an email over SMTP",
        default_queue: "notify",
        default_timeout: Duration::from_secs(30),
        default_retry: NOTIFY_RETRY,
        params: &[
            param("to", ValueType::Email),
            param("subject", ValueType::String),
            param("body", ValueType::String),
        ],
        outcomes: &["sent"],
        outputs: &[],
        errors: &[
            "unavailable",
            "timeout",
            "rejected_recipient",
            "invalid_request",
        ],
        needs_materials: false,
    },
    HandlerSpec {
        name: "notify.webhook",
        summary: "Posts a message to the service-account message channel over HTTP",
        default_queue: "notify",
        default_timeout: Duration::from_secs(15),
        default_retry: NOTIFY_RETRY,
        params: &[
            param("to", ValueType::String),
            optional("subject", ValueType::String),
            param("body", ValueType::String),
        ],
        outcomes: &["sent"],
        outputs: &[],
        errors: SERVICE_ERRORS,
        needs_materials: false,
    },
    HandlerSpec {
        name: "bench.noop",
        summary: "For benchmarks only: does nothing and succeeds at once, reporting when it \
                  started",
        default_queue: "bench",
        default_timeout: Duration::from_secs(30),
        default_retry: MATERIALS_RETRY,
        params: &[],
        outcomes: &["done"],
        outputs: &[OutputSpec {
            name: "started_at_us",
            ty: ValueType::Integer,
        }],
        errors: &[],
        needs_materials: false,
    },
];

/// Looks a handler up by its stable name.
pub fn handler(name: &str) -> Option<&'static HandlerSpec> {
    HANDLERS.iter().find(|h| h.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_names_are_unique_and_outcomes_do_not_shadow_failed() {
        let mut names: Vec<_> = HANDLERS.iter().map(|h| h.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), HANDLERS.len());
        for h in HANDLERS {
            assert!(!h.outcomes.contains(&FAILED_OUTCOME), "{}", h.name);
            assert!(!h.outcomes.is_empty(), "{}", h.name);
        }
    }

    #[test]
    fn type_names_round_trip() {
        for t in ValueType::ALL {
            assert_eq!(ValueType::from_name(t.name()), Some(t));
        }
        assert_eq!(ValueType::from_name("str"), None);
    }

    #[test]
    fn text_parameters_accept_textual_values_only() {
        assert!(ValueType::String.accepts(ValueType::IdNumber));
        assert!(!ValueType::String.accepts(ValueType::Boolean));
        assert!(!ValueType::IdNumber.accepts(ValueType::String));
    }
}
