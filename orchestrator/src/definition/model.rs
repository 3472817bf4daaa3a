//! The validated workflow: what the engine runs. Every reference in it has
//! been resolved and checked, so the engine never meets an unknown step,
//! event, handler or calendar.

use std::collections::BTreeMap;
use std::time::Duration;

use docket_workers::catalog::ValueType;

use super::expr::Expr;
use super::period::Period;
use super::template::Template;

/// A workflow definition, ready to run.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: String,
    pub version: u32,
    pub title: String,
    pub description: Option<String>,
    /// Calendar used by working-day periods that name none.
    pub calendar: Option<String>,
    pub input: Vec<Field>,
    pub events: Vec<EventDef>,
    pub contacts: Vec<Contact>,
    pub materials: Option<Materials>,
    pub schedules: Vec<Schedule>,
    /// Reminders sent after the case ended, at anniversaries.
    pub follow_ups: Vec<FollowUp>,
    /// How long after a case ends its personal data is kept; erased then.
    pub retention: Option<Duration>,
    /// Steps in file order; execution starts at the first.
    pub steps: Vec<Step>,
}

impl Workflow {
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    pub fn start(&self) -> &Step {
        // Validation refuses a workflow without steps.
        &self.steps[0]
    }

    pub fn event(&self, name: &str) -> Option<&EventDef> {
        self.events.iter().find(|e| e.name == name)
    }

    pub fn input_field(&self, name: &str) -> Option<&Field> {
        self.input.iter().find(|f| f.name == name)
    }

    /// The kinds of material (documents) applicants may upload: the ids
    /// under `materials.documents`; none when the workflow has no materials.
    pub fn material_kinds(&self) -> impl Iterator<Item = &str> {
        self.materials
            .iter()
            .flat_map(|m| m.documents.iter().map(|d| d.id.as_str()))
    }

    /// Names of the input fields that hold personal information.
    pub fn personal_fields(&self) -> impl Iterator<Item = &str> {
        self.input
            .iter()
            .filter(|f| f.personal)
            .map(|f| f.name.as_str())
    }
}

/// A typed field of the case input or of an event's data.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub title: Option<String>,
    pub ty: ValueType,
    /// Allowed words when `ty` is `Enum`.
    pub values: Vec<String>,
    pub required: bool,
    /// Personal information: encrypted at rest and masked in logs and for
    /// roles without the right to see it.
    pub personal: bool,
}

/// An external event a case can receive.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDef {
    pub name: String,
    pub title: Option<String>,
    pub data: Vec<Field>,
}

/// A named recipient whose address comes from deployment configuration
/// (a police station's inbox, a supervisor).
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    pub name: String,
    pub title: Option<String>,
}

/// Retry behaviour of a task, owned by the orchestrator.
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    pub initial: Duration,
    pub multiplier: f64,
    pub max: Duration,
    /// Error codes that end the task at once instead of retrying.
    pub non_retryable: Vec<String>,
}

impl Retry {
    /// The delay before attempt `attempt + 1`, where `attempt` (1-based) has
    /// just failed.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(exponent);
        if secs.is_finite() && secs < self.max.as_secs_f64() {
            Duration::from_secs_f64(secs)
        } else {
            self.max
        }
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub title: Option<String>,
    pub kind: StepKind,
}

#[derive(Debug, Clone)]
pub enum StepKind {
    Task(Task),
    Wait(Wait),
    Notify(Notify),
    Deadline(Deadline),
    Branch(Branch),
    End(End),
}

impl StepKind {
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Task(_) => "task",
            StepKind::Wait(_) => "wait",
            StepKind::Notify(_) => "notify",
            StepKind::Deadline(_) => "deadline",
            StepKind::Branch(_) => "branch",
            StepKind::End(_) => "end",
        }
    }
}

/// A job for the worker pool.
#[derive(Debug, Clone)]
pub struct Task {
    pub handler: String,
    pub queue: String,
    /// Parameters passed to the handler, by name.
    pub with: BTreeMap<String, Expr>,
    /// How long one attempt may run before the orchestrator counts it as
    /// timed out.
    pub timeout: Duration,
    pub retry: Retry,
    /// Next step for each outcome; `failed` is absent when the workflow lets
    /// a failed task wait for an operator.
    pub on: BTreeMap<String, String>,
}

/// Waiting for one of several external events.
#[derive(Debug, Clone)]
pub struct Wait {
    pub events: BTreeMap<String, String>,
    /// `None` only where the workflow says `timeout: forever`.
    pub timeout: Option<Timeout>,
}

#[derive(Debug, Clone)]
pub struct Timeout {
    pub after: Period,
    /// Calendar for working-day periods.
    pub calendar: Option<String>,
    pub next: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email,
    Webhook,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }

    /// The worker handler that delivers on this channel.
    pub fn handler(self) -> &'static str {
        match self {
            Channel::Email => "notify.email",
            Channel::Webhook => "notify.webhook",
        }
    }
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// An address held in the case input (the applicant's).
    Input(String),
    /// A contact configured for the deployment.
    Contact(String),
}

/// A message to send; also used for deadline reminders and schedules.
#[derive(Debug, Clone)]
pub struct Message {
    pub channel: Channel,
    pub to: Recipient,
    pub subject: Option<Template>,
    pub body: Template,
}

#[derive(Debug, Clone)]
pub struct Notify {
    pub message: Message,
    pub next: String,
    /// Where to go when delivery finally fails; absent means the case waits
    /// for an operator.
    pub on_failure: Option<String>,
}

/// A statutory clock. It starts at the time of `started_by` (the latest
/// occurrence of that event), runs alongside the following steps, and is
/// met when the case enters one of `met_at`.
#[derive(Debug, Clone)]
pub struct Deadline {
    pub started_by: String,
    pub limit: Period,
    pub calendar: Option<String>,
    /// A calendar-day deadline landing on a day off moves to the next
    /// working day.
    pub roll_forward: bool,
    /// The most the limit may be extended to, in total.
    pub extension_cap: Option<Period>,
    pub paused_at: Vec<String>,
    pub met_at: Vec<String>,
    pub reminders: Vec<Reminder>,
    /// Where the case goes when the clock runs out, whatever it is doing.
    pub on_expiry: String,
    pub next: String,
}

#[derive(Debug, Clone)]
pub struct Reminder {
    pub before: Period,
    pub message: Message,
}

#[derive(Debug, Clone)]
pub struct Branch {
    pub cases: Vec<(Expr, String)>,
    pub otherwise: String,
}

#[derive(Debug, Clone)]
pub struct End {
    pub outcome: String,
}

impl Step {
    /// Every step this one can lead to, with the label of the edge.
    pub fn transitions(&self) -> Vec<(String, &str)> {
        match &self.kind {
            StepKind::Task(t) => t.on.iter().map(|(o, s)| (o.clone(), s.as_str())).collect(),
            StepKind::Wait(w) => {
                let mut out: Vec<_> = w
                    .events
                    .iter()
                    .map(|(e, s)| (e.clone(), s.as_str()))
                    .collect();
                if let Some(t) = &w.timeout {
                    out.push((format!("after {}", t.after), t.next.as_str()));
                }
                out
            }
            StepKind::Notify(n) => {
                let mut out = vec![("sent".to_owned(), n.next.as_str())];
                if let Some(f) = &n.on_failure {
                    out.push(("failed".to_owned(), f.as_str()));
                }
                out
            }
            StepKind::Deadline(d) => vec![
                ("started".to_owned(), d.next.as_str()),
                ("expired".to_owned(), d.on_expiry.as_str()),
            ],
            StepKind::Branch(b) => {
                let mut out: Vec<_> = b
                    .cases
                    .iter()
                    .map(|(c, s)| (c.to_string(), s.as_str()))
                    .collect();
                out.push(("otherwise".to_owned(), b.otherwise.as_str()));
                out
            }
            StepKind::End(_) => Vec::new(),
        }
    }
}

/// What a materials check compares submissions against; the same type
/// travels to the workers with each check.
pub use docket_workers::contract::{Document, Materials, Requirement};

/// Reminders an ended case keeps sending, one before each anniversary of
/// an event (the permit's yearly endorsement).
#[derive(Debug, Clone)]
pub struct FollowUp {
    pub id: String,
    pub title: Option<String>,
    /// Only cases that ended with this outcome are followed up.
    pub when_outcome: String,
    /// The event whose date the anniversaries count from.
    pub anchor: String,
    pub every_months: u32,
    pub remind_before_months: u32,
    /// How many anniversaries; every one while the case is kept if none.
    pub times: Option<u32>,
    pub message: Message,
}

/// A recurring sweep: at each cron tick, notify about every case whose
/// deadline falls within `due_within`.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub id: String,
    pub title: Option<String>,
    pub cron: String,
    pub timezone: chrono_tz::Tz,
    /// Skip ticks on days off of this calendar.
    pub working_days_of: Option<String>,
    pub deadline: String,
    pub due_within: Period,
    pub message: Message,
}
