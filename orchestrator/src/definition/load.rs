//! Loading a workflow file: parse the YAML, read the declarations, read
//! and resolve the steps, then check the flow as a whole. Every problem is
//! collected; a [`Workflow`] comes out only when there is no error.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use docket_workers::catalog::{self, HandlerSpec, ValueType};
use marked_yaml::Node;

use super::diagnostic::{Code, Diagnostic, Diagnostics, Pos, did_you_mean, one_of};
use super::expr::{Reference, Scope, Type};
use super::model::{Contact, Document, EventDef, Field, Materials, Requirement, Retry, Workflow};
use super::yaml::{self, Fields, Located, child};
use super::{flow, follow_ups, schedules, steps};

/// What a workflow is checked against besides itself.
#[derive(Debug, Clone)]
pub struct Environment {
    pub handlers: &'static [HandlerSpec],
    /// Names of the calendars that are available.
    pub calendars: BTreeSet<String>,
}

impl Environment {
    /// The handlers the `workers` crate registers, and the given calendars.
    pub fn new(calendars: impl IntoIterator<Item = String>) -> Self {
        Environment {
            handlers: catalog::HANDLERS,
            calendars: calendars.into_iter().collect(),
        }
    }
}

/// The result of loading one file.
#[derive(Debug)]
pub struct Loaded {
    /// Present when the file has no errors (it may have warnings).
    pub workflow: Option<Workflow>,
    pub diagnostics: Vec<Diagnostic>,
}

pub(super) const TOP_FIELDS: &[&str] = &[
    "workflow",
    "version",
    "title",
    "description",
    "calendar",
    "input",
    "events",
    "contacts",
    "retry_policies",
    "materials",
    "schedules",
    "follow_ups",
    "retention",
    "steps",
];
pub(super) const FIELD_FIELDS: &[&str] = &["type", "title", "values", "required", "personal"];
pub(super) const EVENT_FIELDS: &[&str] = &["title", "data"];
pub(super) const CONTACT_FIELDS: &[&str] = &["title"];
pub(super) const RETRY_FIELDS: &[&str] = &["max_attempts", "backoff", "non_retryable"];
pub(super) const BACKOFF_FIELDS: &[&str] = &["initial", "multiplier", "max"];
pub(super) const MATERIALS_FIELDS: &[&str] =
    &["documents", "always", "by_category", "through_agent"];
pub(super) const REQUIREMENT_FIELDS: &[&str] = &["title", "one_of"];

/// Loads a workflow from its source text.
pub fn load(source: &str, env: &Environment) -> Loaded {
    let mut d = Diagnostics::default();
    let workflow =
        yaml::parse(source, "workflow file", &mut d).and_then(|root| read(&root, env, &mut d));
    let workflow = if d.has_errors() { None } else { workflow };
    Loaded {
        workflow,
        diagnostics: d.into_sorted(),
    }
}

fn read(root: &Node, env: &Environment, d: &mut Diagnostics) -> Option<Workflow> {
    let top = Fields::open(root, "", "the workflow", TOP_FIELDS, d)?;
    top.check_unknown(d);

    let name = top
        .required("workflow", d)
        .and_then(|n| workflow_name(n, d));
    let version = top
        .required("version", d)
        .and_then(|n| yaml::integer(n, "/version", 1, i64::from(u32::MAX), d));
    let title = top
        .required("title", d)
        .and_then(|n| yaml::text(n, "/title", d));
    let description = top
        .optional("description")
        .and_then(|n| yaml::text(n, "/description", d));
    // An unknown default calendar is reported once, here; keeping its name
    // spares every working-day period below a second report.
    let calendar = top
        .optional("calendar")
        .and_then(|n| yaml::text(n, "/calendar", d));
    if let Some(c) = &calendar {
        known_calendar(c.clone(), "/calendar", env, d);
    }

    let mut decls = Declarations {
        env,
        calendar,
        ..Declarations::default_for(env)
    };
    if let Some(n) = top.optional("input") {
        decls.input = read_fields(n, "/input", "`input`", d);
    }
    if let Some(n) = top.optional("events") {
        decls.events = read_events(n, d);
    }
    if let Some(n) = top.optional("contacts") {
        decls.contacts = read_contacts(n, d);
    }
    if let Some(n) = top.optional("retry_policies") {
        decls.retry_policies = read_retry_policies(n, d);
    }
    if let Some(n) = top.optional("materials") {
        decls.materials = read_materials(n, d);
    }
    let step_nodes = top
        .required("steps", d)
        .map(|n| yaml::items(n, "/steps", "`steps`", d))
        .unwrap_or_default();
    if step_nodes.is_empty() && top.optional("steps").is_some() {
        d.error(
            Code::MissingField,
            "/steps",
            top.pos(),
            "`steps` must list at least one step",
        );
    }
    decls.steps = steps::declare(&step_nodes, env, d);
    let steps = steps::read_all(&step_nodes, &decls, d);
    let schedules = top
        .optional("schedules")
        .map(|n| schedules::read(n, &decls, d))
        .unwrap_or_default();

    // Graph problems are often consequences of problems already reported
    // (a misspelt target leaves a step unreachable): check the graph once
    // the steps themselves are sound.
    if !d.has_errors() {
        flow::check(&steps, &decls, d);
    }
    let steps_read: Vec<_> = steps.into_iter().map(|s| s.step).collect();
    if let Some(n) = top.optional("follow_ups") {
        decls.follow_ups = follow_ups::declare(n);
    }
    let follow_ups = top
        .optional("follow_ups")
        .map(|n| follow_ups::read(n, &steps_read, &decls, d))
        .unwrap_or_default();

    let retention = top
        .optional("retention")
        .and_then(|n| elapsed(n, "/retention", d));

    let workflow = Workflow {
        name: name?.value,
        version: u32::try_from(version?.value).ok()?,
        title: title?.value,
        description: description.map(|d| d.value),
        calendar: decls.calendar.as_ref().map(|c| c.value.clone()),
        input: decls.input.iter().map(|f| f.value.clone()).collect(),
        events: decls.events.iter().map(|e| e.value.clone()).collect(),
        contacts: decls.contacts.iter().map(|c| c.value.clone()).collect(),
        materials: decls.materials.as_ref().map(|m| m.value.clone()),
        schedules,
        follow_ups,
        retention,
        steps: steps_read,
    };
    Some(workflow)
}

fn workflow_name(node: &Node, d: &mut Diagnostics) -> Option<Located<String>> {
    let name = yaml::text(node, "/workflow", d)?;
    let ok = name.value.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Some(name)
    } else {
        d.error(
            Code::InvalidValue,
            "/workflow",
            name.pos,
            format!(
                "`{}` is not a valid workflow name: use lower-case letters, digits, `-` and `_`",
                name.value
            ),
        );
        None
    }
}

pub(super) fn known_calendar(
    name: Located<String>,
    path: &str,
    env: &Environment,
    d: &mut Diagnostics,
) -> Option<Located<String>> {
    if env.calendars.contains(&name.value) {
        return Some(name);
    }
    let hint = match did_you_mean(&name.value, env.calendars.iter().map(String::as_str)) {
        Some(s) => format!("; did you mean `{s}`?"),
        None => format!(
            "; available: {}",
            one_of(env.calendars.iter().map(String::as_str))
        ),
    };
    d.error(
        Code::UnknownCalendar,
        path,
        name.pos,
        format!("unknown calendar `{}`{hint}", name.value),
    );
    None
}

/// Everything a step may refer to, read before the steps themselves.
#[derive(Debug)]
pub(super) struct Declarations<'e> {
    pub env: &'e Environment,
    pub calendar: Option<Located<String>>,
    pub input: Vec<Located<Field>>,
    pub events: Vec<Located<EventDef>>,
    pub contacts: Vec<Located<Contact>>,
    pub retry_policies: BTreeMap<String, Located<Retry>>,
    pub materials: Option<Located<Materials>>,
    pub steps: Vec<steps::Declared>,
    /// Follow-up ids: their due dates are `deadline.ID.due` in their messages.
    pub follow_ups: Vec<String>,
}

impl<'e> Declarations<'e> {
    fn default_for(env: &'e Environment) -> Self {
        Declarations {
            env,
            calendar: None,
            input: Vec::new(),
            events: Vec::new(),
            contacts: Vec::new(),
            retry_policies: BTreeMap::new(),
            materials: None,
            steps: Vec::new(),
            follow_ups: Vec::new(),
        }
    }

    pub fn step(&self, id: &str) -> Option<&steps::Declared> {
        self.steps.iter().find(|s| s.id == id)
    }

    pub fn event(&self, name: &str) -> Option<&EventDef> {
        self.events
            .iter()
            .map(|e| &e.value)
            .find(|e| e.name == name)
    }

    pub fn input_field(&self, name: &str) -> Option<&Field> {
        self.input.iter().map(|f| &f.value).find(|f| f.name == name)
    }

    /// Reports an event that is not declared, with a suggestion.
    pub fn check_event(&self, name: &Located<String>, path: &str, d: &mut Diagnostics) -> bool {
        if self.event(&name.value).is_some() {
            return true;
        }
        let names = self.events.iter().map(|e| e.value.name.as_str());
        let hint = did_you_mean(&name.value, names)
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_else(|| "; declare it under `events:`".to_owned());
        d.error(
            Code::UnknownEvent,
            path,
            name.pos,
            format!("event `{}` is not declared{hint}", name.value),
        );
        false
    }

    /// The declared type of a referenced value, where it has one.
    pub fn value_type(&self, reference: &Reference) -> Option<ValueType> {
        match reference {
            Reference::Input(f) => self.input_field(f).map(|f| f.ty),
            Reference::Event { event, field } => self
                .event(event)
                .and_then(|e| e.data.iter().find(|f| &f.name == field))
                .map(|f| f.ty),
            Reference::Outcome(_) | Reference::CaseId => Some(ValueType::String),
            Reference::Output { step, field } => self
                .step(step)
                .and_then(|s| s.handler)
                .and_then(|h| h.outputs.iter().find(|o| o.name == field))
                .map(|o| o.ty),
            Reference::Due(_) => Some(ValueType::Date),
        }
    }
}

fn field_type(field: &Field) -> Type {
    match field.ty {
        ValueType::Boolean => Type::Boolean,
        ValueType::Integer => Type::Integer,
        ValueType::Date => Type::Date,
        ValueType::Enum => Type::Enum(field.values.clone()),
        ValueType::Documents => Type::Documents,
        ValueType::String | ValueType::Email | ValueType::Phone | ValueType::IdNumber => Type::Text,
    }
}

fn unknown(kind: &str, name: &str, known: impl IntoIterator<Item = String>) -> String {
    let known: Vec<String> = known.into_iter().collect();
    let hint = match did_you_mean(name, known.iter().map(String::as_str)) {
        Some(s) => format!("; did you mean `{s}`?"),
        None if known.is_empty() => String::new(),
        None => format!("; known: {}", one_of(known.iter().map(String::as_str))),
    };
    format!("{kind} `{name}` is not declared{hint}")
}

impl Scope for Declarations<'_> {
    fn type_of(&self, reference: &Reference) -> Result<Type, String> {
        match reference {
            Reference::Input(name) => self.input_field(name).map(field_type).ok_or_else(|| {
                unknown(
                    "input field",
                    name,
                    self.input.iter().map(|f| f.value.name.clone()),
                )
            }),
            Reference::Event { event, field } => {
                let e = self.event(event).ok_or_else(|| {
                    unknown(
                        "event",
                        event,
                        self.events.iter().map(|e| e.value.name.clone()),
                    )
                })?;
                e.data
                    .iter()
                    .find(|f| &f.name == field)
                    .map(field_type)
                    .ok_or_else(|| {
                        unknown(
                            &format!("data field of event `{event}`:"),
                            field,
                            e.data.iter().map(|f| f.name.clone()),
                        )
                    })
            }
            Reference::Outcome(step) => {
                let s = self.known_step(step)?;
                let outcomes = s.outcomes();
                if outcomes.is_empty() {
                    return Err(format!(
                        "step `{step}` is a {} step and has no outcome",
                        s.kind
                    ));
                }
                Ok(Type::Enum(outcomes))
            }
            Reference::Output { step, field } => {
                let s = self.known_step(step)?;
                let handler = s
                    .handler
                    .ok_or_else(|| format!("step `{step}` is not a task and has no outputs"))?;
                handler
                    .outputs
                    .iter()
                    .find(|o| o.name == field)
                    .map(|o| match o.ty {
                        ValueType::Boolean => Type::Boolean,
                        ValueType::Integer => Type::Integer,
                        ValueType::Documents => Type::Documents,
                        _ => Type::Text,
                    })
                    .ok_or_else(|| {
                        let mut names: Vec<String> =
                            handler.outputs.iter().map(|o| o.name.to_owned()).collect();
                        names.push("outcome".to_owned());
                        unknown(&format!("output of `{}`:", handler.name), field, names)
                    })
            }
            Reference::Due(id) if self.follow_ups.contains(id) => Ok(Type::Date),
            Reference::Due(step) => {
                let s = self.known_step(step)?;
                if s.kind == "deadline" {
                    Ok(Type::Date)
                } else {
                    Err(format!("step `{step}` is not a deadline"))
                }
            }
            Reference::CaseId => Ok(Type::Text),
        }
    }
}

impl Declarations<'_> {
    fn known_step(&self, id: &str) -> Result<&steps::Declared, String> {
        self.step(id)
            .ok_or_else(|| unknown("step", id, self.steps.iter().map(|s| s.id.clone())))
    }
}

fn read_fields(node: &Node, path: &str, what: &str, d: &mut Diagnostics) -> Vec<Located<Field>> {
    let mut out: Vec<Located<Field>> = Vec::new();
    for (key, value) in yaml::entries(node, path, what, d) {
        let field_path = child(path, &key.value);
        if !yaml::check_name(&key.value) {
            d.error(
                Code::InvalidValue,
                &field_path,
                key.pos,
                format!(
                    "`{}` is not a valid field name: use lower-case letters, digits and `_`",
                    key.value
                ),
            );
            continue;
        }
        let what = if path == "/input" {
            "an input field"
        } else {
            "a data field"
        };
        let Some(f) = Fields::open(value, &field_path, what, FIELD_FIELDS, d) else {
            continue;
        };
        f.check_unknown(d);
        let ty = f.required("type", d).and_then(|n| {
            let t = yaml::text(n, &f.field_path("type"), d)?;
            let found = ValueType::from_name(&t.value);
            if found.is_none() {
                let names = ValueType::ALL.map(ValueType::name);
                let hint = did_you_mean(&t.value, names)
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| format!("expected {}", one_of(names)));
                d.error(
                    Code::InvalidValue,
                    &f.field_path("type"),
                    t.pos,
                    format!("unknown type `{}`; {hint}", t.value),
                );
            }
            found
        });
        let values: Vec<String> = f
            .optional("values")
            .map(|n| yaml::names(n, &f.field_path("values"), "`values`", d))
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.value)
            .collect();
        match (ty, values.is_empty()) {
            (Some(ValueType::Enum), true) => d.error(
                Code::MissingField,
                &f.field_path("values"),
                f.pos(),
                "a field of type `enum` needs `values`, the words it may take",
            ),
            (Some(t), false) if t != ValueType::Enum => d.error(
                Code::InvalidValue,
                &f.field_path("values"),
                f.pos(),
                format!(
                    "`values` is only for fields of type `enum`, not `{}`",
                    t.name()
                ),
            ),
            _ => {}
        }
        let flag = |key: &'static str, default: bool, d: &mut Diagnostics| {
            f.optional(key)
                .and_then(|n| yaml::boolean(n, &f.field_path(key), d))
                .map_or(default, |b| b.value)
        };
        let required = flag("required", true, d);
        let personal = flag("personal", false, d);
        let title = f
            .optional("title")
            .and_then(|n| yaml::text(n, &f.field_path("title"), d));
        if let Some(ty) = ty {
            out.push(Located::new(
                Field {
                    name: key.value,
                    title: title.map(|t| t.value),
                    ty,
                    values,
                    required,
                    personal,
                },
                key.pos,
            ));
        }
    }
    out
}

fn read_events(node: &Node, d: &mut Diagnostics) -> Vec<Located<EventDef>> {
    let mut out = Vec::new();
    for (key, value) in yaml::entries(node, "/events", "`events`", d) {
        let path = child("/events", &key.value);
        if !yaml::check_name(&key.value) {
            d.error(
                Code::InvalidValue,
                &path,
                key.pos,
                format!(
                    "`{}` is not a valid event name: use lower-case letters, digits and `_`",
                    key.value
                ),
            );
            continue;
        }
        let Some(f) = Fields::open(value, &path, "an event", EVENT_FIELDS, d) else {
            continue;
        };
        f.check_unknown(d);
        let title = f
            .optional("title")
            .and_then(|n| yaml::text(n, &f.field_path("title"), d));
        let data = f
            .optional("data")
            .map(|n| read_fields(n, &f.field_path("data"), "`data`", d))
            .unwrap_or_default();
        out.push(Located::new(
            EventDef {
                name: key.value,
                title: title.map(|t| t.value),
                data: data.into_iter().map(|f| f.value).collect(),
            },
            key.pos,
        ));
    }
    out
}

fn read_contacts(node: &Node, d: &mut Diagnostics) -> Vec<Located<Contact>> {
    let mut out = Vec::new();
    for (key, value) in yaml::entries(node, "/contacts", "`contacts`", d) {
        let path = child("/contacts", &key.value);
        let Some(f) = Fields::open(value, &path, "a contact", CONTACT_FIELDS, d) else {
            continue;
        };
        f.check_unknown(d);
        let title = f
            .optional("title")
            .and_then(|n| yaml::text(n, &f.field_path("title"), d));
        out.push(Located::new(
            Contact {
                name: key.value,
                title: title.map(|t| t.value),
            },
            key.pos,
        ));
    }
    out
}

fn read_retry_policies(node: &Node, d: &mut Diagnostics) -> BTreeMap<String, Located<Retry>> {
    let mut out = BTreeMap::new();
    for (key, value) in yaml::entries(node, "/retry_policies", "`retry_policies`", d) {
        let path = child("/retry_policies", &key.value);
        if let Some(retry) = read_retry(value, &path, None, d) {
            out.insert(key.value, Located::new(retry, key.pos));
        }
    }
    out
}

/// Reads a retry policy; fields it leaves out come from `defaults` (the
/// handler's), or are required when there are none.
pub(super) fn read_retry(
    node: &Node,
    path: &str,
    defaults: Option<&Retry>,
    d: &mut Diagnostics,
) -> Option<Retry> {
    let f = Fields::open(node, path, "a retry policy", RETRY_FIELDS, d)?;
    f.check_unknown(d);
    let get = |key: &'static str, d: &mut Diagnostics| match defaults {
        Some(_) => f.optional(key),
        None => f.required(key, d),
    };
    let max_attempts = get("max_attempts", d)
        .and_then(|n| yaml::integer(n, &f.field_path("max_attempts"), 1, 100, d))
        .map(|n| u32::try_from(n.value).unwrap_or(1))
        .or(defaults.map(|r| r.max_attempts));
    let mut initial = defaults.map(|r| r.initial);
    let mut multiplier = defaults.map(|r| r.multiplier);
    let mut max = defaults.map(|r| r.max);
    if let Some(b) = get("backoff", d) {
        let bpath = f.field_path("backoff");
        if let Some(bf) = Fields::open(b, &bpath, "`backoff`", BACKOFF_FIELDS, d) {
            bf.check_unknown(d);
            let dur = |key: &'static str, d: &mut Diagnostics| {
                let node = if defaults.is_some() {
                    bf.optional(key)
                } else {
                    bf.required(key, d)
                };
                node.and_then(|n| elapsed(n, &bf.field_path(key), d))
            };
            initial = dur("initial", d).or(initial);
            max = dur("max", d).or(max);
            let m = if defaults.is_some() {
                bf.optional("multiplier")
            } else {
                bf.required("multiplier", d)
            };
            multiplier = m
                .and_then(|n| yaml::positive_number(n, &bf.field_path("multiplier"), d))
                .map(|m| m.value)
                .or(multiplier);
            if let (Some(i), Some(m)) = (initial, max)
                && m < i
            {
                d.error(
                    Code::InvalidValue,
                    &bf.field_path("max"),
                    bf.pos(),
                    format!(
                        "backoff `max` ({}) is shorter than `initial` ({})",
                        humantime::format_duration(m),
                        humantime::format_duration(i)
                    ),
                );
            }
        }
    }
    let non_retryable = f
        .optional("non_retryable")
        .map(|n| yaml::names(n, &f.field_path("non_retryable"), "`non_retryable`", d))
        .map(|v| v.into_iter().map(|l| l.value).collect())
        .or_else(|| defaults.map(|r| r.non_retryable.clone()))
        .unwrap_or_default();
    Some(Retry {
        max_attempts: max_attempts?,
        initial: initial?,
        multiplier: multiplier?,
        max: max?,
        non_retryable,
    })
}

/// An elapsed duration (no working days), e.g. a timeout.
pub(super) fn elapsed(node: &Node, path: &str, d: &mut Diagnostics) -> Option<Duration> {
    use super::period::Period;
    let raw = yaml::text(node, path, d)?;
    match Period::parse(&raw.value) {
        Ok(Period::Elapsed(dur)) => Some(dur),
        Ok(Period::WorkingDays(_)) => {
            d.error(
                Code::BadDuration,
                path,
                raw.pos,
                format!("`{}`: working days are only for waits and deadlines; give a duration such as `2h`", raw.value),
            );
            None
        }
        Err(e) => {
            d.error(Code::BadDuration, path, raw.pos, e);
            None
        }
    }
}

fn read_materials(node: &Node, d: &mut Diagnostics) -> Option<Located<Materials>> {
    let f = Fields::open(node, "/materials", "`materials`", MATERIALS_FIELDS, d)?;
    f.check_unknown(d);
    let mut documents = Vec::new();
    if let Some(n) = f.required("documents", d) {
        for (key, value) in yaml::entries(n, "/materials/documents", "`documents`", d) {
            let path = child("/materials/documents", &key.value);
            if !yaml::check_name(&key.value) {
                d.error(
                    Code::InvalidValue,
                    &path,
                    key.pos,
                    format!("`{}` is not a valid document id", key.value),
                );
                continue;
            }
            if let Some(title) = yaml::text(value, &path, d) {
                documents.push(Document {
                    id: key.value,
                    title: title.value,
                });
            }
        }
    }
    let known: BTreeSet<&str> = documents.iter().map(|doc| doc.id.as_str()).collect();
    let requirements =
        |node: Option<&Node>, path: String, d: &mut Diagnostics| -> Vec<Requirement> {
            let Some(node) = node else { return Vec::new() };
            let mut out = Vec::new();
            for (i, item) in yaml::items(node, &path, "a list of requirements", d)
                .into_iter()
                .enumerate()
            {
                let rpath = child(&path, &i.to_string());
                let Some(rf) = Fields::open(item, &rpath, "a requirement", REQUIREMENT_FIELDS, d)
                else {
                    continue;
                };
                rf.check_unknown(d);
                let title = rf
                    .required("title", d)
                    .and_then(|n| yaml::text(n, &rf.field_path("title"), d));
                let one_of_docs = rf
                    .required("one_of", d)
                    .map(|n| yaml::names(n, &rf.field_path("one_of"), "`one_of`", d))
                    .unwrap_or_default();
                for doc in &one_of_docs {
                    if !known.contains(doc.value.as_str()) {
                        let hint = did_you_mean(&doc.value, known.iter().copied())
                            .map(|s| format!("; did you mean `{s}`?"))
                            .unwrap_or_else(|| "; list it under `materials.documents`".to_owned());
                        d.error(
                            Code::UnknownDocument,
                            &rf.field_path("one_of"),
                            doc.pos,
                            format!("document `{}` is not declared{hint}", doc.value),
                        );
                    }
                }
                if let Some(title) = title
                    && !one_of_docs.is_empty()
                {
                    out.push(Requirement {
                        title: title.value,
                        one_of: one_of_docs.into_iter().map(|l| l.value).collect(),
                    });
                }
            }
            out
        };
    let always = requirements(f.optional("always"), "/materials/always".to_owned(), d);
    let through_agent = requirements(
        f.optional("through_agent"),
        "/materials/through_agent".to_owned(),
        d,
    );
    let mut by_category = BTreeMap::new();
    if let Some(n) = f.optional("by_category") {
        for (key, value) in yaml::entries(n, "/materials/by_category", "`by_category`", d) {
            let path = child("/materials/by_category", &key.value);
            let reqs = requirements(Some(value), path, d);
            by_category.insert(key.value, reqs);
        }
    }
    Some(Located::new(
        Materials {
            documents,
            always,
            by_category,
            through_agent,
        },
        f.pos(),
    ))
}

/// The position and path of the first line of a file, for problems that
/// concern it as a whole.
pub(super) const FILE_START: Pos = Pos { line: 1, column: 1 };
