//! What auditors ask of the API: the history's hash chains recomputed, and
//! the history of a period exported — the same answers as `orchestrator
//! audit verify` and `orchestrator audit export`, from the same library
//! code ([`crate::store::audit`]).

// utoipa's code generated for `params(VerifyParams)` names the type by a
// path the lint flags; the lint cannot be silenced on the generated item.
#![allow(unused_qualifications)]

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::{Action, Caller};
use super::error::{ApiError, ErrorBody};
use crate::audit::Problem;
use crate::store::audit::{Verification, export_period, write_lines};

/// The media type of an export: JSON Lines, one event a line.
pub const NDJSON: &str = "application/x-ndjson";

/// The parameters of `GET /audit/verify`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VerifyParams {
    /// Only this case's chain (a case deleted whole is found only when
    /// every case is verified).
    case: Option<String>,
}

/// The parameters of `GET /audit/export`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// The first day exported, `YYYY-MM-DD` (UTC), included.
    #[param(required = true)]
    from: Option<String>,
    /// The last day exported, `YYYY-MM-DD` (UTC), included.
    #[param(required = true)]
    to: Option<String>,
}

/// What `GET /audit/verify` found.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditReport {
    /// No problem found: the history is as written.
    pub ok: bool,
    pub cases_checked: usize,
    pub events_checked: usize,
    /// The first problem of each case, and any checkpoint changed.
    pub problems: Vec<AuditProblem>,
    /// The newest checkpoint; compare its hash with the one archived.
    pub latest_checkpoint: Option<CheckpointView>,
}

/// A change found in the stored history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditProblem {
    /// The case affected; absent for a changed checkpoint.
    pub case_id: Option<String>,
    /// The first event affected, numbered from 1; absent when the problem
    /// is about the case or a checkpoint as a whole.
    pub seq: Option<i64>,
    /// `modified`, `deleted`, `inserted`, `reordered`, `rewritten`,
    /// `case_deleted` or `checkpoint_changed`.
    pub kind: String,
    /// For people: what `orchestrator audit verify` prints.
    pub message: String,
}

/// A checkpoint: the heads of the cases changed since the one before.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckpointView {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// SHA-256, hex: what an auditor archives outside the database.
    pub hash: String,
}

impl From<&Problem> for AuditProblem {
    fn from(p: &Problem) -> Self {
        AuditProblem {
            case_id: p.case_id().map(str::to_owned),
            seq: p.seq(),
            kind: p.kind().to_owned(),
            message: p.to_string(),
        }
    }
}

impl From<Verification> for AuditReport {
    fn from(v: Verification) -> Self {
        AuditReport {
            ok: v.problems.is_empty(),
            cases_checked: v.cases_checked,
            events_checked: v.events_checked,
            problems: v.problems.iter().map(AuditProblem::from).collect(),
            latest_checkpoint: v.latest_checkpoint.map(|c| CheckpointView {
                id: c.id,
                at: c.at,
                hash: c.hash,
            }),
        }
    }
}

#[utoipa::path(
    get, path = "/audit/verify", tag = "audit",
    params(VerifyParams),
    responses(
        (status = 200, description = "What was checked and every problem found; `ok` is false when history was changed", body = AuditReport),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token's role may not verify the history", body = ErrorBody),
        (status = 404, description = "No such case", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn verify_history(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<VerifyParams>, QueryRejection>,
) -> Result<Json<AuditReport>, ApiError> {
    caller.require(Action::VerifyAudit)?;
    let Query(params) = params.map_err(|e| bad_query(&e.body_text()))?;
    if let Some(id) = &params.case
        && state.backend.case(id).await?.is_none()
    {
        return Err(ApiError::unknown_case(id));
    }
    let verification = state.backend.verify_history(params.case.as_deref()).await?;
    Ok(Json(verification.into()))
}

#[utoipa::path(
    get, path = "/audit/export", tag = "audit",
    params(ExportParams),
    responses(
        (status = 200, description = "The history written on those days, by case and seq: JSON Lines, one event a line with its hash, as `orchestrator audit export` writes it",
            content_type = "application/x-ndjson", body = String),
        (status = 400, description = "A date is missing or invalid, or `to` is before `from`", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token's role may not export the history", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn export_history(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<ExportParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(Action::ExportAudit)?;
    let Query(params) = params.map_err(|e| bad_query(&e.body_text()))?;
    let from = day("from", params.from.as_deref())?;
    let to = day("to", params.to.as_deref())?;
    let (start, end) = export_period(from, to).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("`to` ({to}) is before `from` ({from})"),
        )
        .with_field("to")
    })?;
    let events = state.backend.history_between(start, end).await?;
    let mut body = Vec::new();
    write_lines(&events, &mut body)
        .map_err(|e| ApiError::internal("an export could not be written", &e))?;
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON))],
        body,
    )
        .into_response())
}

/// A required `YYYY-MM-DD` day, read as the CLI reads it.
fn day(field: &str, text: Option<&str>) -> Result<NaiveDate, ApiError> {
    let bad = |problem: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("parameter `{field}` {problem}"),
        )
        .with_field(field)
    };
    let text = text.ok_or_else(|| bad("is required: a day written YYYY-MM-DD"))?;
    crate::calendar::parse_date(text).ok_or_else(|| bad("must be a day written YYYY-MM-DD"))
}

/// Names the parameter of a query the deserializer refused.
fn bad_query(text: &str) -> ApiError {
    let field = text
        .split_once("unknown field `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(name, _)| name.to_owned());
    match field {
        Some(name) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("`{name}` is not a parameter of this request"),
        )
        .with_field(name),
        None => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "the query string could not be read",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_day_names_its_parameter() {
        let field = |f: &str, t: Option<&str>| day(f, t).err().and_then(|e| e.field);
        assert_eq!(field("from", Some("2026-2-1")).as_deref(), Some("from"));
        assert_eq!(field("to", None).as_deref(), Some("to"));
        assert!(day("from", Some("2026-02-01")).is_ok());
        let error = bad_query("Failed: unknown field `since`, expected `from` or `to`");
        assert_eq!(
            (error.status, error.field.as_deref()),
            (StatusCode::BAD_REQUEST, Some("since"))
        );
    }

    #[test]
    fn a_problem_shows_its_case_seq_and_kind() {
        let p = AuditProblem::from(&Problem::Changed {
            case_id: "c-1".into(),
            seq: 2,
        });
        assert_eq!(
            (p.case_id.as_deref(), p.seq, p.kind.as_str()),
            (Some("c-1"), Some(2), "modified")
        );
        assert!(p.message.contains("event 2"), "{}", p.message);
    }
}
