//! Reading steps. Steps are first declared (id, kind, handler) so that any
//! step can refer to any other, then read in full.

use std::collections::{BTreeMap, BTreeSet};

use docket_workers::catalog::{FAILED_OUTCOME, HandlerSpec, ValueType};
use marked_yaml::Node;

use super::diagnostic::{Code, Diagnostics, Pos, did_you_mean, one_of};
use super::expr::{self, Expr, Literal, Scope};
use super::load::{Declarations, Environment, elapsed, known_calendar, read_retry};
use super::message::read_message;
use super::model::{Branch, End, Notify, Retry, Step, StepKind, Task, Timeout, Wait};
use super::period::Period;
use super::yaml::{self, Fields, Located, child};

mod deadline;

pub(super) const KINDS: &[&str] = &["task", "wait", "notify", "deadline", "branch", "end"];
pub(super) const TASK_FIELDS: &[&str] = &[
    "id", "kind", "title", "handler", "queue", "with", "timeout", "retry", "on",
];
pub(super) const WAIT_FIELDS: &[&str] = &[
    "id",
    "kind",
    "title",
    "events",
    "timeout",
    "calendar",
    "on_timeout",
];
pub(super) const NOTIFY_FIELDS: &[&str] = &[
    "id",
    "kind",
    "title",
    "channel",
    "to",
    "subject",
    "message",
    "next",
    "on_failure",
];
pub(super) const DEADLINE_FIELDS: &[&str] = &[
    "id",
    "kind",
    "title",
    "started_by",
    "limit",
    "calendar",
    "roll_forward",
    "extendable_to",
    "paused_at",
    "met_at",
    "reminders",
    "on_expiry",
    "next",
];
pub(super) const BRANCH_FIELDS: &[&str] = &["id", "kind", "title", "branches", "otherwise"];
pub(super) const END_FIELDS: &[&str] = &["id", "kind", "title", "outcome"];
pub(super) const CASE_FIELDS: &[&str] = &["when", "next"];
pub(super) const REMINDER_FIELDS: &[&str] = &["before", "channel", "to", "subject", "message"];

fn fields_of(kind: &str) -> &'static [&'static str] {
    match kind {
        "task" => TASK_FIELDS,
        "wait" => WAIT_FIELDS,
        "notify" => NOTIFY_FIELDS,
        "deadline" => DEADLINE_FIELDS,
        "branch" => BRANCH_FIELDS,
        _ => END_FIELDS,
    }
}

/// A step's identity, known before any step is read in full.
#[derive(Debug, Clone)]
pub(super) struct Declared {
    pub id: String,
    pub kind: &'static str,
    pub pos: Pos,
    pub handler: Option<&'static HandlerSpec>,
}

impl Declared {
    /// The outcomes a condition may test with `steps.ID.outcome`.
    pub fn outcomes(&self) -> Vec<String> {
        match (self.kind, self.handler) {
            ("task", Some(h)) => h
                .outcomes
                .iter()
                .chain([&FAILED_OUTCOME])
                .map(|s| (*s).to_owned())
                .collect(),
            ("notify", _) => vec!["sent".to_owned(), FAILED_OUTCOME.to_owned()],
            _ => Vec::new(),
        }
    }
}

/// A step read in full, with where it was written.
#[derive(Debug)]
pub(super) struct ReadStep {
    pub step: Step,
    pub pos: Pos,
    pub path: String,
}

fn step_path(node: &Node, index: usize) -> String {
    let id = node
        .as_mapping()
        .and_then(|m| m.get_scalar("id"))
        .map(|s| s.as_str())
        .filter(|s| yaml::check_name(s));
    match id {
        Some(id) => format!("/steps/{id}"),
        None => format!("/steps/{index}"),
    }
}

pub(super) fn declare(nodes: &[&Node], env: &Environment, d: &mut Diagnostics) -> Vec<Declared> {
    let mut out: Vec<Declared> = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let path = step_path(node, i);
        let Some(f) = Fields::open(node, &path, "a step", TASK_FIELDS, d) else {
            continue;
        };
        let id = f
            .required("id", d)
            .and_then(|n| yaml::name(n, &f.field_path("id"), d));
        let kind = f.required("kind", d).and_then(|n| {
            let k = yaml::text(n, &f.field_path("kind"), d)?;
            let found = KINDS.iter().copied().find(|known| *known == k.value);
            if found.is_none() {
                let hint = did_you_mean(&k.value, KINDS.iter().copied())
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| format!("expected {}", one_of(KINDS.iter().copied())));
                d.error(
                    Code::InvalidValue,
                    &f.field_path("kind"),
                    k.pos,
                    format!("unknown step kind `{}`; {hint}", k.value),
                );
            }
            found
        });
        let handler = if kind == Some("task") {
            f.required("handler", d)
                .and_then(|n| yaml::text(n, &f.field_path("handler"), d))
                .and_then(|h| {
                    let found = env.handlers.iter().find(|spec| spec.name == h.value);
                    if found.is_none() {
                        let names = env.handlers.iter().map(|s| s.name);
                        let hint = did_you_mean(&h.value, names.clone())
                            .map(|s| format!("did you mean `{s}`?"))
                            .unwrap_or_else(|| format!("workers run {}", one_of(names)));
                        d.error(
                            Code::UnknownHandler,
                            &f.field_path("handler"),
                            h.pos,
                            format!("no worker handles `{}`; {hint}", h.value),
                        );
                    }
                    found
                })
        } else {
            None
        };
        let (Some(id), Some(kind)) = (id, kind) else {
            continue;
        };
        if let Some(first) = out.iter().find(|s| s.id == id.value) {
            d.error(
                Code::DuplicateStep,
                &path,
                id.pos,
                format!(
                    "step id `{}` is already used by the step on line {}",
                    id.value, first.pos.line
                ),
            );
            continue;
        }
        out.push(Declared {
            id: id.value,
            kind,
            pos: id.pos,
            handler,
        });
    }
    out
}

pub(super) fn read_all(
    nodes: &[&Node],
    decls: &Declarations<'_>,
    d: &mut Diagnostics,
) -> Vec<ReadStep> {
    let mut out = Vec::new();
    let mut claimed = BTreeSet::new();
    for (i, node) in nodes.iter().enumerate() {
        let path = step_path(node, i);
        let Some(id) = node
            .as_mapping()
            .and_then(|m| m.get_scalar("id"))
            .map(|s| s.as_str())
        else {
            continue;
        };
        // Only the first step with an id is read; later duplicates were reported.
        let Some(decl) = decls.step(id).filter(|_| claimed.insert(id.to_owned())) else {
            continue;
        };
        let what = format!("step `{}`", decl.id);
        let Some(f) = Fields::open(node, &path, &what, fields_of(decl.kind), d) else {
            continue;
        };
        let mut r = StepReader {
            f: &f,
            decls,
            d: &mut *d,
        };
        r.f.check_unknown(r.d);
        let title = f
            .optional("title")
            .and_then(|n| yaml::text(n, &f.field_path("title"), r.d));
        let kind = match decl.kind {
            "task" => decl.handler.and_then(|h| r.task(h)).map(StepKind::Task),
            "wait" => r.wait().map(StepKind::Wait),
            "notify" => r.notify().map(StepKind::Notify),
            "deadline" => r.deadline().map(StepKind::Deadline),
            "branch" => r.branch().map(StepKind::Branch),
            _ => r.end().map(StepKind::End),
        };
        if let Some(kind) = kind {
            out.push(ReadStep {
                step: Step {
                    id: decl.id.clone(),
                    title: title.map(|t| t.value),
                    kind,
                },
                pos: decl.pos,
                path,
            });
        }
    }
    out
}

struct StepReader<'a, 'n, 'e> {
    f: &'a Fields<'n>,
    decls: &'a Declarations<'e>,
    d: &'a mut Diagnostics,
}

impl StepReader<'_, '_, '_> {
    fn target(&mut self, key: &'static str, required: bool) -> Option<String> {
        let node = if required {
            self.f.required(key, self.d)
        } else {
            self.f.optional(key)
        }?;
        target_of(node, &self.f.field_path(key), self.decls, self.d)
    }

    fn task(&mut self, handler: &'static HandlerSpec) -> Option<Task> {
        let f = self.f;
        let queue = match f.optional("queue") {
            Some(n) => yaml::name(n, &f.field_path("queue"), self.d)?.value,
            None => handler.default_queue.to_owned(),
        };
        let with = self.with(handler);
        let timeout = match f.optional("timeout") {
            Some(n) => elapsed(n, &f.field_path("timeout"), self.d)?,
            None => handler.default_timeout,
        };
        let retry = self.retry(handler);
        let on = self.on(handler);
        Some(Task {
            handler: handler.name.to_owned(),
            queue,
            with: with?,
            timeout,
            retry: retry?,
            on: on?,
        })
    }

    fn with(&mut self, handler: &HandlerSpec) -> Option<BTreeMap<String, Expr>> {
        let path = self.f.field_path("with");
        let entries = self
            .f
            .optional("with")
            .map(|n| yaml::entries(n, &path, "`with`", self.d))
            .unwrap_or_default();
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (key, value) in &entries {
            let vpath = child(&path, &key.value);
            let Some(param) = handler.params.iter().find(|p| p.name == key.value) else {
                let names = handler.params.iter().map(|p| p.name);
                let hint = did_you_mean(&key.value, names.clone())
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| format!("it takes {}", one_of(names)));
                self.d.error(
                    Code::UnknownParam,
                    &vpath,
                    key.pos,
                    format!(
                        "`{}` takes no parameter `{}`; {hint}",
                        handler.name, key.value
                    ),
                );
                ok = false;
                continue;
            };
            let Some(src) = yaml::text(value, &vpath, self.d) else {
                ok = false;
                continue;
            };
            match value_expr(&src.value, self.decls) {
                Ok((expr, given)) if given.is_none_or(|g| param.ty.accepts(g)) => {
                    out.insert(key.value.clone(), expr);
                }
                Ok((_, given)) => {
                    self.d.error(
                        Code::TypeMismatch,
                        &vpath,
                        src.pos,
                        format!(
                            "parameter `{}` of `{}` takes {}, but `{}` is {}",
                            param.name,
                            handler.name,
                            param.ty.name(),
                            src.value,
                            given.map_or("unknown", ValueType::name)
                        ),
                    );
                    ok = false;
                }
                Err(e) => {
                    self.d.error(Code::BadCondition, &vpath, src.pos, e);
                    ok = false;
                }
            }
        }
        for param in handler.params.iter().filter(|p| p.required) {
            if !entries.iter().any(|(k, _)| k.value == param.name) {
                self.d.error(
                    Code::MissingParam,
                    &child(&path, param.name),
                    self.f.pos(),
                    format!(
                        "`{}` needs parameter `{}` ({}) under `with:`",
                        handler.name,
                        param.name,
                        param.ty.name()
                    ),
                );
                ok = false;
            }
        }
        ok.then_some(out)
    }

    fn retry(&mut self, handler: &HandlerSpec) -> Option<Retry> {
        let f = self.f;
        let path = f.field_path("retry");
        let defaults = Retry {
            max_attempts: handler.default_retry.max_attempts,
            initial: handler.default_retry.initial,
            multiplier: handler.default_retry.multiplier,
            max: handler.default_retry.max,
            non_retryable: Vec::new(),
        };
        let retry = match f.optional("retry") {
            None => defaults,
            Some(n @ Node::Scalar(_)) => {
                let name = yaml::text(n, &path, self.d)?;
                match self.decls.retry_policies.get(&name.value) {
                    Some(policy) => policy.value.clone(),
                    None => {
                        let names = self.decls.retry_policies.keys().map(String::as_str);
                        let hint = did_you_mean(&name.value, names)
                            .map(|s| format!("; did you mean `{s}`?"))
                            .unwrap_or_else(|| {
                                "; declare it under `retry_policies:` or write the policy here"
                                    .to_owned()
                            });
                        self.d.error(
                            Code::UnknownRetryPolicy,
                            &path,
                            name.pos,
                            format!("retry policy `{}` is not declared{hint}", name.value),
                        );
                        return None;
                    }
                }
            }
            Some(n) => read_retry(n, &path, Some(&defaults), self.d)?,
        };
        let mut ok = true;
        for code in &retry.non_retryable {
            if !handler.errors.contains(&code.as_str()) {
                self.d.error(
                    Code::UnknownErrorCode,
                    &path,
                    f.optional("retry").map_or(f.pos(), yaml::pos),
                    format!(
                        "`{}` never fails with `{code}`; its error codes are {}",
                        handler.name,
                        one_of(handler.errors.iter().copied())
                    ),
                );
                ok = false;
            }
        }
        ok.then_some(retry)
    }

    fn on(&mut self, handler: &HandlerSpec) -> Option<BTreeMap<String, String>> {
        let path = self.f.field_path("on");
        let node = self.f.required("on", self.d)?;
        let mut out = BTreeMap::new();
        let mut ok = true;
        let outcomes: Vec<&str> = handler
            .outcomes
            .iter()
            .chain([&FAILED_OUTCOME])
            .copied()
            .collect();
        for (key, value) in yaml::entries(node, &path, "`on`", self.d) {
            if !outcomes.contains(&key.value.as_str()) {
                let hint = did_you_mean(&key.value, outcomes.iter().copied())
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| {
                        format!("its outcomes are {}", one_of(outcomes.iter().copied()))
                    });
                self.d.error(
                    Code::UnknownOutcome,
                    &child(&path, &key.value),
                    key.pos,
                    format!("`{}` has no outcome `{}`; {hint}", handler.name, key.value),
                );
                ok = false;
                continue;
            }
            match target_of(value, &child(&path, &key.value), self.decls, self.d) {
                Some(t) => {
                    out.insert(key.value, t);
                }
                None => ok = false,
            }
        }
        for outcome in handler.outcomes {
            if !out.contains_key(*outcome) && ok {
                self.d.error(
                    Code::UnroutedOutcome,
                    &child(&path, outcome),
                    yaml::pos(node),
                    format!(
                        "outcome `{outcome}` of `{}` has no next step under `on:`",
                        handler.name
                    ),
                );
                ok = false;
            }
        }
        ok.then_some(out)
    }

    fn wait(&mut self) -> Option<Wait> {
        let f = self.f;
        let path = f.field_path("events");
        let mut events = BTreeMap::new();
        let mut ok = true;
        if let Some(node) = f.required("events", self.d) {
            let entries = yaml::entries(node, &path, "`events`", self.d);
            if entries.is_empty() {
                self.d.error(
                    Code::MissingField,
                    &path,
                    yaml::pos(node),
                    "a wait needs at least one event",
                );
                ok = false;
            }
            for (key, value) in entries {
                let epath = child(&path, &key.value);
                ok &= self.decls.check_event(&key, &epath, self.d);
                match target_of(value, &epath, self.decls, self.d) {
                    Some(t) => {
                        events.insert(key.value, t);
                    }
                    None => ok = false,
                }
            }
        } else {
            ok = false;
        }
        let timeout = self.timeout();
        (ok && timeout.is_some()).then(|| Wait {
            events,
            timeout: timeout.flatten(),
        })
    }

    /// `Some(None)` for an explicit `timeout: forever`.
    fn timeout(&mut self) -> Option<Option<Timeout>> {
        let f = self.f;
        let Some(node) = f.optional("timeout") else {
            self.d.error(
                Code::MissingField,
                &f.field_path("timeout"),
                f.pos(),
                "a wait needs `timeout` and `on_timeout`, or `timeout: forever` to wait without limit",
            );
            return None;
        };
        let raw = yaml::text(node, &f.field_path("timeout"), self.d)?;
        if raw.value == "forever" {
            if f.optional("on_timeout").is_some() {
                self.d.error(
                    Code::InvalidValue,
                    &f.field_path("on_timeout"),
                    f.pos(),
                    "`on_timeout` is never taken by a wait with `timeout: forever`",
                );
                return None;
            }
            self.d.warning(
                Code::WaitsForever,
                &f.field_path("timeout"),
                raw.pos,
                "this wait has no time limit: a case can stay here forever",
            );
            return Some(None);
        }
        let after = self.period(&raw, "timeout")?;
        let calendar = self.calendar_for(after, "timeout");
        let next = self.target("on_timeout", true);
        Some(Some(Timeout {
            after,
            calendar: calendar?,
            next: next?,
        }))
    }

    fn period(&mut self, raw: &Located<String>, key: &str) -> Option<Period> {
        match Period::parse(&raw.value) {
            Ok(p) => Some(p),
            Err(e) => {
                self.d
                    .error(Code::BadDuration, &self.f.field_path(key), raw.pos, e);
                None
            }
        }
    }

    /// The calendar a period is counted on: the step's, else the
    /// workflow's. `Some(None)` when none is needed.
    fn calendar_for(&mut self, period: Period, key: &str) -> Option<Option<String>> {
        let own = self
            .f
            .optional("calendar")
            .and_then(|n| yaml::text(n, &self.f.field_path("calendar"), self.d));
        let own = match own {
            Some(c) => Some(known_calendar(
                c,
                &self.f.field_path("calendar"),
                self.decls.env,
                self.d,
            )?),
            None => None,
        };
        let calendar = own.or_else(|| self.decls.calendar.clone()).map(|c| c.value);
        if period.is_working_days() && calendar.is_none() {
            self.d.error(
                Code::UnknownCalendar,
                &self.f.field_path(key),
                self.f.pos(),
                format!(
                    "`{period}` needs a calendar: add `calendar:` to this step or to the workflow"
                ),
            );
            return None;
        }
        Some(calendar)
    }

    fn notify(&mut self) -> Option<Notify> {
        let message = read_message(self.f, self.decls, self.d);
        let next = self.target("next", true);
        let on_failure = match self.f.optional("on_failure") {
            Some(_) => Some(self.target("on_failure", false)?),
            None => None,
        };
        Some(Notify {
            message: message?,
            next: next?,
            on_failure,
        })
    }

    fn branch(&mut self) -> Option<Branch> {
        let f = self.f;
        let path = f.field_path("branches");
        let mut cases = Some(Vec::new());
        if let Some(node) = f.required("branches", self.d) {
            for (i, item) in yaml::items(node, &path, "`branches`", self.d)
                .into_iter()
                .enumerate()
            {
                let cpath = child(&path, &i.to_string());
                let Some(cf) = Fields::open(item, &cpath, "a branch", CASE_FIELDS, self.d) else {
                    cases = None;
                    continue;
                };
                cf.check_unknown(self.d);
                let when = cf
                    .required("when", self.d)
                    .and_then(|n| yaml::text(n, &cf.field_path("when"), self.d))
                    .and_then(|src| {
                        let parsed = expr::parse(&src.value)
                            .and_then(|e| expr::check_condition(&e, self.decls).map(|()| e));
                        match parsed {
                            Ok(e) => Some(e),
                            Err(msg) => {
                                self.d.error(
                                    Code::BadCondition,
                                    &cf.field_path("when"),
                                    src.pos,
                                    msg,
                                );
                                None
                            }
                        }
                    });
                let next = cf
                    .required("next", self.d)
                    .and_then(|n| target_of(n, &cf.field_path("next"), self.decls, self.d));
                match (when, next, cases.as_mut()) {
                    (Some(w), Some(n), Some(list)) => list.push((w, n)),
                    _ => cases = None,
                }
            }
        }
        let otherwise = self.target("otherwise", true);
        Some(Branch {
            cases: cases.filter(|c| !c.is_empty())?,
            otherwise: otherwise?,
        })
    }

    fn end(&mut self) -> Option<End> {
        let outcome = self
            .f
            .required("outcome", self.d)
            .and_then(|n| yaml::name(n, &self.f.field_path("outcome"), self.d))?;
        Some(End {
            outcome: outcome.value,
        })
    }
}

/// Parses a `with:` value and returns it with its declared type, if the
/// expression is a plain reference or literal.
fn value_expr(src: &str, decls: &Declarations<'_>) -> Result<(Expr, Option<ValueType>), String> {
    let e = expr::parse(src)?;
    decls.type_of_expr(&e)?;
    let ty = match &e {
        Expr::Ref(r) => decls.value_type(r),
        Expr::Lit(Literal::Text(_)) => Some(ValueType::String),
        Expr::Lit(Literal::Integer(_)) => Some(ValueType::Integer),
        Expr::Lit(Literal::Boolean(_)) => Some(ValueType::Boolean),
        _ => Some(ValueType::Boolean),
    };
    Ok((e, ty))
}

impl Declarations<'_> {
    fn type_of_expr(&self, e: &Expr) -> Result<expr::Type, String> {
        expr::type_check(e, self as &dyn Scope)
    }
}

pub(super) fn target_of(
    node: &Node,
    path: &str,
    decls: &Declarations<'_>,
    d: &mut Diagnostics,
) -> Option<String> {
    let name = yaml::name(node, path, d)?;
    check_target(&name, path, decls, d)
}

fn check_target(
    name: &Located<String>,
    path: &str,
    decls: &Declarations<'_>,
    d: &mut Diagnostics,
) -> Option<String> {
    if decls.step(&name.value).is_some() {
        return Some(name.value.clone());
    }
    let hint = did_you_mean(&name.value, decls.steps.iter().map(|s| s.id.as_str()))
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    d.error(
        Code::UnknownStep,
        path,
        name.pos,
        format!("there is no step `{}`{hint}", name.value),
    );
    None
}
