//! The JSON Schema of workflow files, generated from the Rust types below.
//!
//! These types describe the file as written (the loader reads the YAML tree
//! directly, to report every problem with its position); a unit test keeps
//! their fields identical to the fields the loader accepts. Draft 7 is used
//! because the common YAML language server handles draft 7 and older.

use std::collections::BTreeMap;

use schemars::JsonSchema;

/// A Docket workflow file.
#[derive(Debug, JsonSchema)]
#[schemars(deny_unknown_fields, title = "Docket workflow")]
pub struct WorkflowFile {
    /// The workflow's name, e.g. `residence-permit`: lower-case letters, digits, `-` and `_`.
    pub workflow: String,
    /// Version number, at least 1. Running cases stay on the version they started on.
    #[schemars(range(min = 1))]
    pub version: u32,
    /// A title for people.
    pub title: String,
    pub description: Option<String>,
    /// Default calendar for working-day periods, e.g. `cn-mainland`.
    pub calendar: Option<String>,
    /// The case input, by field name.
    pub input: Option<BTreeMap<String, FieldFile>>,
    /// The external events cases can receive, by event name.
    pub events: Option<BTreeMap<String, EventFile>>,
    /// Recipients whose addresses come from deployment configuration.
    pub contacts: Option<BTreeMap<String, ContactFile>>,
    /// Named retry policies that tasks can refer to.
    pub retry_policies: Option<BTreeMap<String, RetryFile>>,
    /// Which documents each applicant must submit.
    pub materials: Option<MaterialsFile>,
    /// Recurring sweeps over cases with a deadline coming up.
    pub schedules: Option<Vec<ScheduleFile>>,
    /// Reminders sent after a case ended, at each anniversary of an event.
    pub follow_ups: Option<Vec<FollowUpFile>>,
    /// How long personal data is kept after a case ends, e.g. `5years`;
    /// then it is erased (the history stays, and verifiable). Kept for good
    /// when absent.
    pub retention: Option<String>,
    /// The steps; a case starts at the first.
    pub steps: Vec<StepFile>,
}

/// The value types of input and event fields.
#[derive(Debug, JsonSchema)]
#[schemars(rename_all = "snake_case")]
pub enum FieldType {
    String,
    Integer,
    Boolean,
    Date,
    Email,
    Phone,
    IdNumber,
    Enum,
    Documents,
}

/// A typed field.
#[derive(Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct FieldFile {
    pub r#type: FieldType,
    pub title: Option<String>,
    /// The words an `enum` field may take.
    pub values: Option<Vec<String>>,
    /// Whether the field must be given (default `true`).
    pub required: Option<bool>,
    /// Personal information (names, ID numbers, phones, addresses): encrypted
    /// at rest and masked for roles without the right to see it.
    pub personal: Option<bool>,
}

/// An external event.
#[derive(Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EventFile {
    pub title: Option<String>,
    /// The data the event carries, by field name.
    pub data: Option<BTreeMap<String, FieldFile>>,
}

/// A configured recipient.
#[derive(Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ContactFile {
    pub title: Option<String>,
}

/// A retry policy.
#[derive(Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RetryFile {
    /// Attempts in total, the first included (1–100).
    #[schemars(range(min = 1, max = 100))]
    pub max_attempts: u32,
    pub backoff: BackoffFile,
    /// Error codes that end the task at once instead of retrying.
    pub non_retryable: Option<Vec<String>>,
}

/// Exponential backoff between attempts.
#[derive(Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct BackoffFile {
    /// Delay before the second attempt, e.g. `30s`.
    pub initial: String,
    /// Factor applied to the delay after each failed attempt.
    pub multiplier: f64,
    /// Longest delay, e.g. `30m`.
    pub max: String,
}

/// A task's retry: the name of a policy, or a policy written in place
/// (fields left out come from the handler's defaults).
#[derive(Debug, JsonSchema)]
#[schemars(untagged)]
pub enum RetryRef {
    Named(String),
    Inline(RetryOverride),
}

#[derive(Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RetryOverride {
    pub max_attempts: Option<u32>,
    pub backoff: Option<BackoffOverride>,
    pub non_retryable: Option<Vec<String>>,
}

#[derive(Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct BackoffOverride {
    pub initial: Option<String>,
    pub multiplier: Option<f64>,
    pub max: Option<String>,
}

/// Materials rules: each requirement is met by any one of its documents.
#[derive(Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct MaterialsFile {
    /// Document ids and their titles.
    pub documents: BTreeMap<String, String>,
    /// Required of every applicant.
    pub always: Option<Vec<RequirementFile>>,
    /// Required by applicant category (employment, residence, study …).
    pub by_category: Option<BTreeMap<String, Vec<RequirementFile>>>,
    /// Required in addition when applying through an agent.
    pub through_agent: Option<Vec<RequirementFile>>,
}

#[derive(Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RequirementFile {
    pub title: String,
    /// Any one of these documents meets the requirement.
    pub one_of: Vec<String>,
}

/// A recurring sweep.
#[derive(Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ScheduleFile {
    pub id: String,
    pub title: Option<String>,
    /// Six or seven fields: second minute hour day-of-month month day-of-week, optionally year.
    pub cron: String,
    /// e.g. `Asia/Shanghai`; default UTC.
    pub timezone: Option<String>,
    /// Skip ticks on days off of the calendar.
    pub working_days_only: Option<bool>,
    pub calendar: Option<String>,
    /// The deadline step whose cases are swept.
    pub deadline: String,
    /// Cases whose deadline falls within this period, e.g. `2 working days`.
    pub due_within: String,
    pub channel: ChannelName,
    pub to: String,
    pub subject: Option<String>,
    pub message: String,
}

/// A reminder at each anniversary of an event, after the case ended.
#[derive(Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct FollowUpFile {
    /// Also names its due date in messages: `deadline.ID.due`.
    pub id: String,
    pub title: Option<String>,
    /// Only cases that ended with this outcome, e.g. `issued`.
    pub when_outcome: String,
    /// The event whose date anniversaries count from.
    pub anchor: String,
    /// Calendar months or years, e.g. `1 year`.
    pub every: String,
    /// How long before each anniversary the reminder goes out, e.g. `1 month`.
    pub remind_before: String,
    /// How many anniversaries; unlimited if absent.
    pub times: Option<u32>,
    pub channel: ChannelName,
    pub to: String,
    pub subject: Option<String>,
    pub message: String,
}

#[derive(Debug, JsonSchema)]
#[schemars(rename_all = "snake_case")]
pub enum ChannelName {
    Email,
    Webhook,
}

/// A step; `kind` says which.
#[derive(Debug, JsonSchema)]
#[schemars(tag = "kind", rename_all = "snake_case")]
pub enum StepFile {
    Task(TaskFile),
    Wait(WaitFile),
    Notify(NotifyFile),
    Deadline(DeadlineFile),
    Branch(BranchFile),
    End(EndFile),
}

/// A job for the worker pool.
#[derive(Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct TaskFile {
    pub id: String,
    pub title: Option<String>,
    /// A handler the workers register, e.g. `identity.verify`.
    pub handler: String,
    /// Queue name; defaults to the handler's.
    pub queue: Option<String>,
    /// Handler parameters: references such as `input.id_number` or literals.
    pub with: Option<BTreeMap<String, String>>,
    /// How long one attempt may run, e.g. `2m`; defaults to the handler's.
    pub timeout: Option<String>,
    pub retry: Option<RetryRef>,
    /// Next step for each outcome; `failed` is optional.
    pub on: BTreeMap<String, String>,
}

/// Waiting for one of several events.
#[derive(Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct WaitFile {
    pub id: String,
    pub title: Option<String>,
    /// Next step for each event.
    pub events: BTreeMap<String, String>,
    /// e.g. `30days`, `10 working days`, or `forever`.
    pub timeout: String,
    pub calendar: Option<String>,
    pub on_timeout: Option<String>,
}

/// Sending a message.
#[derive(Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct NotifyFile {
    pub id: String,
    pub title: Option<String>,
    pub channel: ChannelName,
    /// `input.FIELD` or `contacts.NAME`.
    pub to: String,
    pub subject: Option<String>,
    /// Text with `{{ reference }}` placeholders.
    pub message: String,
    pub next: String,
    pub on_failure: Option<String>,
}

/// A statutory clock.
#[derive(Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct DeadlineFile {
    pub id: String,
    pub title: Option<String>,
    /// The event whose time starts the clock.
    pub started_by: String,
    /// e.g. `15days` or `15 working days`.
    pub limit: String,
    pub calendar: Option<String>,
    /// A calendar-day deadline landing on a day off moves to the next working day.
    pub roll_forward: Option<bool>,
    /// The most the limit may be extended to, in total.
    pub extendable_to: Option<String>,
    /// Steps during which the clock stops.
    pub paused_at: Option<Vec<String>>,
    /// Steps whose reaching meets the deadline.
    pub met_at: Vec<String>,
    pub reminders: Option<Vec<ReminderFile>>,
    /// Where the case goes when the clock runs out.
    pub on_expiry: String,
    pub next: String,
}

#[derive(Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ReminderFile {
    /// e.g. `3 working days`.
    pub before: String,
    pub channel: ChannelName,
    pub to: String,
    pub subject: Option<String>,
    pub message: String,
}

/// Choosing the next step by condition.
#[derive(Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct BranchFile {
    pub id: String,
    pub title: Option<String>,
    /// Tried in order; the first whose condition holds is taken.
    pub branches: Vec<CaseFile>,
    pub otherwise: String,
}

#[derive(Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct CaseFile {
    /// A condition, e.g. `input.through_agent and input.category == "study"`.
    pub when: String,
    pub next: String,
}

/// The end of a case.
#[derive(Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EndFile {
    pub id: String,
    pub title: Option<String>,
    /// e.g. `issued`, `rejected`, `withdrawn`, `expired`.
    pub outcome: String,
}

/// The JSON Schema of workflow files, as pretty-printed JSON.
pub fn json_schema() -> String {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let schema = generator.into_root_schema_for::<WorkflowFile>();
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::super::{follow_ups, load, schedules, steps};
    use super::*;

    fn properties(schema: &Value, definition: &str) -> BTreeSet<String> {
        let def = if definition.is_empty() {
            schema
        } else {
            &schema["definitions"][definition]
        };
        def["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn set(fields: &[&str]) -> BTreeSet<String> {
        fields.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn schema_fields_match_what_the_loader_accepts() {
        let schema: Value = serde_json::from_str(&json_schema()).unwrap_or(Value::Null);
        assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
        let with_kind = |f: &[&str]| set(f);
        let cases: &[(&str, BTreeSet<String>)] = &[
            ("", set(load::TOP_FIELDS)),
            ("FieldFile", set(load::FIELD_FIELDS)),
            ("EventFile", set(load::EVENT_FIELDS)),
            ("ContactFile", set(load::CONTACT_FIELDS)),
            ("RetryFile", set(load::RETRY_FIELDS)),
            ("RetryOverride", set(load::RETRY_FIELDS)),
            ("BackoffFile", set(load::BACKOFF_FIELDS)),
            ("BackoffOverride", set(load::BACKOFF_FIELDS)),
            ("MaterialsFile", set(load::MATERIALS_FIELDS)),
            ("RequirementFile", set(load::REQUIREMENT_FIELDS)),
            ("ScheduleFile", set(schedules::SCHEDULE_FIELDS)),
            ("FollowUpFile", set(follow_ups::FOLLOW_UP_FIELDS)),
            ("ReminderFile", set(steps::REMINDER_FIELDS)),
            ("CaseFile", set(steps::CASE_FIELDS)),
        ];
        for (definition, expected) in cases {
            assert_eq!(&properties(&schema, definition), expected, "{definition}");
        }
        let step_variants = schema["definitions"]["StepFile"]["oneOf"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let kinds: &[(&str, &[&str])] = &[
            ("task", steps::TASK_FIELDS),
            ("wait", steps::WAIT_FIELDS),
            ("notify", steps::NOTIFY_FIELDS),
            ("deadline", steps::DEADLINE_FIELDS),
            ("branch", steps::BRANCH_FIELDS),
            ("end", steps::END_FIELDS),
        ];
        assert_eq!(step_variants.len(), kinds.len());
        for (variant, (kind, fields)) in step_variants.iter().zip(kinds) {
            assert_eq!(&properties(variant, ""), &with_kind(fields), "{kind}");
        }
    }
}
