//! What requests carry and responses show. Request bodies are read field
//! by field ([`Fields`]) so that every error names the field at fault; the
//! structs here are also the OpenAPI document's schemas.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use crate::engine::state::DeadlineStatus;
use crate::engine::{CaseState, Data, Status};
use crate::privacy::marker;
use crate::store::{CaseSummary, HistoryRecord};

/// A request body that is a JSON object, within the size limit.
#[derive(Debug)]
pub struct JsonObject {
    pub fields: Map<String, Value>,
    /// The body as sent: what an idempotency key's request is compared by.
    pub raw: Bytes,
}

impl FromRequest<AppState> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large(state.settings.body_limit)
            } else {
                ApiError::invalid_json("the request body could not be read")
            }
        })?;
        let fields = parse_object(&bytes)?;
        Ok(JsonObject { fields, raw: bytes })
    }
}

/// The body's fields; parse errors carry a position, never the content.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid_json(
            "the request body is empty; a JSON object is expected",
        ));
    }
    match serde_json::from_slice::<Value>(bytes) {
        // PostgreSQL keeps no NUL in text or JSON: refused here, on every
        // store alike, rather than failing at the database.
        Ok(Value::Object(map)) => {
            match map.iter().find(|(k, v)| k.contains('\0') || holds_nul(v)) {
                Some((field, _)) => Err(ApiError::invalid_field(
                    field,
                    "must not contain a NUL character (\\u0000)",
                )),
                None => Ok(map),
            }
        }
        Ok(_) => Err(ApiError::invalid_json(
            "the request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::invalid_json(format!(
            "the request body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))),
    }
}

fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Takes a body's fields one by one; what is left over is an error.
#[derive(Debug)]
pub struct Fields(Map<String, Value>);

impl Fields {
    pub fn new(body: JsonObject) -> Self {
        Fields(body.fields)
    }

    /// A required, non-empty string.
    pub fn text(&mut self, name: &str) -> Result<String, ApiError> {
        match self.0.remove(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
            Some(Value::String(_)) => Err(ApiError::invalid_field(name, "must not be empty")),
            None | Some(Value::Null) => Err(ApiError::invalid_field(name, "is required")),
            Some(_) => Err(ApiError::invalid_field(name, "must be a string")),
        }
    }

    /// An object; `{}` when absent and not `required`.
    pub fn object(&mut self, name: &str, required: bool) -> Result<Data, ApiError> {
        match self.0.remove(name) {
            Some(Value::Object(map)) => Ok(map),
            None | Some(Value::Null) if !required => Ok(Data::new()),
            None | Some(Value::Null) => Err(ApiError::invalid_field(name, "is required")),
            Some(_) => Err(ApiError::invalid_field(name, "must be a JSON object")),
        }
    }

    pub fn finish(self) -> Result<(), ApiError> {
        match self.0.keys().next() {
            Some(name) => Err(ApiError::invalid_field(
                name,
                "is not a field of this request",
            )),
            None => Ok(()),
        }
    }
}

/// `POST /cases`.
#[derive(Debug, ToSchema)]
pub struct StartCase {
    /// A deployed workflow's name; the case runs its newest version.
    pub workflow: String,
    /// The case input, checked against the workflow's `input` fields.
    #[schema(value_type = Object)]
    pub input: Data,
}

impl StartCase {
    pub fn read(body: JsonObject) -> Result<Self, ApiError> {
        let mut f = Fields::new(body);
        let start = StartCase {
            workflow: f.text("workflow")?,
            input: f.object("input", true)?,
        };
        f.finish()?;
        Ok(start)
    }
}

/// `POST /cases/{id}/events/{event}`.
#[derive(Debug, ToSchema)]
pub struct SendEvent {
    /// The event's data, checked against the workflow's declaration.
    #[schema(value_type = Object)]
    pub data: Data,
}

impl SendEvent {
    pub fn read(body: JsonObject) -> Result<Self, ApiError> {
        let mut f = Fields::new(body);
        let send = SendEvent {
            data: f.object("data", false)?,
        };
        f.finish()?;
        Ok(send)
    }
}

/// `POST /cases/{id}/cancel` and `/retry`.
#[derive(Debug, ToSchema)]
pub struct Reason {
    /// Why, recorded in the history.
    pub reason: String,
}

impl Reason {
    pub fn read(body: JsonObject) -> Result<Self, ApiError> {
        let mut f = Fields::new(body);
        let reason = Reason {
            reason: f.text("reason")?,
        };
        f.finish()?;
        Ok(reason)
    }
}

/// `POST /cases/{id}/deadlines/{deadline}/extend`.
#[derive(Debug, ToSchema)]
pub struct ExtendDeadline {
    /// The new limit in total, counted like the original, e.g. `30days`.
    pub to: String,
    pub reason: String,
    /// The rule that allows it, e.g. `Decree 663 Art. 9`.
    pub legal_basis: String,
}

impl ExtendDeadline {
    pub fn read(body: JsonObject) -> Result<Self, ApiError> {
        let mut f = Fields::new(body);
        let extend = ExtendDeadline {
            to: f.text("to")?,
            reason: f.text("reason")?,
            legal_basis: f.text("legal_basis")?,
        };
        f.finish()?;
        Ok(extend)
    }
}

/// A case as the API shows it. Personal values in its input are masked
/// (`3505**********1234`, `张*`) unless the caller's role may see them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CaseView {
    pub id: String,
    pub workflow: String,
    pub version: u32,
    /// `active`, `completed` or `cancelled`.
    pub status: String,
    /// How a completed case ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Why a cancelled case was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    /// The step the case is in.
    pub step: String,
    /// The case input; personal values masked for roles without the
    /// right to see them, `null` once erased.
    #[schema(value_type = Object)]
    pub input: Value,
    /// What the step is doing: `{"phase": "waiting"}`, `attempting`,
    /// `backing_off`, `failed` or `finished`, with their details.
    #[schema(value_type = Object)]
    pub phase: Value,
    pub deadlines: Vec<DeadlineView>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeadlineView {
    pub name: String,
    /// `running`, `paused`, `met`, `expired` or `uncounted`.
    pub status: String,
    /// `None` when the calendar could not count the limit.
    pub due: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    /// The limit as extended, e.g. `30days`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extended_to: Option<String>,
    /// Running past its due date, or expired while the case goes on.
    pub overdue: bool,
}

impl CaseView {
    /// `reveal`: whether the caller may see personal data in clear.
    pub fn new(state: &CaseState, now: DateTime<Utc>, reveal: bool) -> Self {
        let (status, outcome, cancel_reason) = match &state.status {
            Status::Active => ("active", None, None),
            Status::Completed { outcome } => ("completed", Some(outcome.clone()), None),
            Status::Cancelled { reason } => ("cancelled", None, Some(reason.clone())),
        };
        let deadlines = state
            .deadlines
            .iter()
            .map(|(name, d)| {
                let (label, overdue) = match &d.status {
                    DeadlineStatus::Running => ("running", d.due.is_some_and(|due| due <= now)),
                    DeadlineStatus::Paused { .. } => ("paused", false),
                    DeadlineStatus::Met { .. } => ("met", false),
                    DeadlineStatus::Expired { .. } => ("expired", state.status.is_active()),
                    DeadlineStatus::Uncounted { .. } => ("uncounted", false),
                };
                DeadlineView {
                    name: name.clone(),
                    status: label.to_owned(),
                    due: d.due,
                    started_at: d.started_at,
                    extended_to: d.extended_to.map(|p| p.to_string()),
                    overdue: overdue && state.status.is_active(),
                }
            })
            .collect();
        CaseView {
            id: state.id.clone(),
            workflow: state.workflow.clone(),
            version: state.version,
            status: status.to_owned(),
            outcome,
            cancel_reason,
            step: state.step.clone(),
            input: shown(Value::Object(state.input.clone()), reveal),
            phase: serde_json::to_value(&state.phase).unwrap_or(Value::Null),
            deadlines,
            started_at: state.started_at,
            updated_at: state.updated_at,
        }
    }
}

/// One case of a list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CaseSummaryView {
    pub id: String,
    pub workflow: String,
    pub version: u32,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    pub step: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<CaseSummary> for CaseSummaryView {
    fn from(c: CaseSummary) -> Self {
        CaseSummaryView {
            id: c.id,
            workflow: c.workflow,
            version: c.version,
            status: c.status,
            outcome: c.outcome,
            step: c.step,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// A page of cases, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CaseList {
    pub cases: Vec<CaseSummaryView>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One event of a case's history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HistoryEntry {
    /// Numbered from 1 per case.
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// Who caused it: `token:NAME` for API requests, `system:…` for the
    /// orchestrator's own loops.
    pub actor: String,
    /// The event, tagged by its `type` field.
    #[schema(value_type = Object)]
    pub event: Value,
}

impl HistoryEntry {
    /// `reveal`: whether the caller may see personal data in clear.
    pub fn new(r: HistoryRecord, reveal: bool) -> Self {
        HistoryEntry {
            seq: r.seq,
            at: r.at,
            actor: r.actor,
            event: shown(
                serde_json::to_value(&r.event).unwrap_or(Value::Null),
                reveal,
            ),
        }
    }
}

/// `value` with its personal values in clear or masked.
fn shown(value: Value, reveal: bool) -> Value {
    if reveal {
        marker::revealed(value)
    } else {
        marker::masked(value)
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct History {
    pub case_id: String,
    pub events: Vec<HistoryEntry>,
}

/// `/health` and `/ready`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` when a dependency does not answer.
    pub status: String,
}
