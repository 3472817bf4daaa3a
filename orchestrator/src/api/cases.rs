//! Starting, reading, searching and steering cases.

// utoipa's code generated for `params(ListParams)` names the type by a path
// the lint flags; the lint cannot be silenced on the generated item alone.
#![allow(unused_qualifications)]

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::auth::{Action, Caller, hex};
use super::error::{ApiError, ErrorBody};
use super::path::Path;
use super::views::{
    CaseList, CaseSummaryView, CaseView, ExtendDeadline, History, HistoryEntry, JsonObject, Reason,
    StartCase,
};
use crate::definition::period::Period;
use crate::engine::{Command, Extension};
use crate::store::api::CaseSearch;

/// Cases per page unless `limit` says otherwise, and at most.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

#[utoipa::path(
    post, path = "/cases", tag = "cases",
    request_body = StartCase,
    responses(
        (status = 201, description = "The case has started", body = CaseView),
        (status = 400, description = "The body is not a JSON object", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token's role may not start cases", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 422, description = "A field is invalid or the workflow is unknown", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn start_case(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonObject, ApiError>,
) -> Result<(StatusCode, Json<CaseView>), ApiError> {
    caller.require(Action::StartCase)?;
    let start = StartCase::read(body?)?;
    let case = state
        .backend
        .start(&start.workflow, start.input, &caller.actor())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CaseView::new(
            &case,
            state.backend.now(),
            caller.sees_personal_data(),
        )),
    ))
}

#[utoipa::path(
    get, path = "/cases/{id}", tag = "cases",
    params(("id" = String, Path, description = "The case id")),
    responses(
        (status = 200, description = "The case", body = CaseView),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token's role may not read cases", body = ErrorBody),
        (status = 404, description = "No such case", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn get_case(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CaseView>, ApiError> {
    caller.require(Action::ReadCase)?;
    let case = state
        .backend
        .case(&id)
        .await?
        .ok_or_else(|| ApiError::unknown_case(&id))?;
    Ok(Json(CaseView::new(
        &case,
        state.backend.now(),
        caller.sees_personal_data(),
    )))
}

/// The filters of `GET /cases`, as sent; each is checked by name.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// A workflow's name.
    workflow: Option<String>,
    /// `active`, `completed` or `cancelled`.
    status: Option<String>,
    /// Cases at this step.
    step: Option<String>,
    /// Cases created at or after this instant (RFC 3339) or day (UTC).
    created_from: Option<String>,
    /// Cases created before this instant (RFC 3339) or day (UTC).
    created_to: Option<String>,
    /// `true`: only active cases with a deadline past due.
    overdue: Option<String>,
    /// Cases per page, 1 to 500 (50 unless given).
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[utoipa::path(
    get, path = "/cases", tag = "cases",
    params(ListParams),
    responses(
        (status = 200, description = "A page of cases, newest first", body = CaseList),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token's role may not search cases", body = ErrorBody),
        (status = 422, description = "A parameter is invalid", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn list_cases(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<CaseList>, ApiError> {
    caller.require(Action::ListCases)?;
    let Query(params) = params.map_err(|e| query_error(&e.body_text()))?;
    let now = state.backend.now();
    let search = search(params, now)?;
    let cases = state.backend.search(&search).await?;
    let next_cursor = (cases.len() == search.limit as usize)
        .then(|| cases.last().map(|c| cursor(c.created_at, &c.id)))
        .flatten();
    Ok(Json(CaseList {
        cases: cases.into_iter().map(CaseSummaryView::from).collect(),
        next_cursor,
    }))
}

/// Names the parameter of a query the deserializer refused.
fn query_error(text: &str) -> ApiError {
    let field = text
        .split_once("unknown field `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(name, _)| name.to_owned());
    match field {
        Some(name) => ApiError::invalid_field(&name, "is not a parameter of this request"),
        None => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "the query string could not be read",
        ),
    }
}

fn search(p: ListParams, now: DateTime<Utc>) -> Result<CaseSearch, ApiError> {
    if let Some(status) = &p.status
        && !["active", "completed", "cancelled"].contains(&status.as_str())
    {
        return Err(ApiError::invalid_field(
            "status",
            "must be `active`, `completed` or `cancelled`",
        ));
    }
    let overdue = match p.overdue.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::invalid_field(
                "overdue",
                "must be `true` or `false`",
            ));
        }
    };
    let limit = match p.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::invalid_field("limit", format!("must be a number from 1 to {MAX_LIMIT}"))
            })?,
    };
    Ok(CaseSearch {
        workflow: p.workflow,
        status: p.status,
        step: p.step,
        created_from: p
            .created_from
            .as_deref()
            .map(|t| instant("created_from", t))
            .transpose()?,
        created_to: p
            .created_to
            .as_deref()
            .map(|t| instant("created_to", t))
            .transpose()?,
        overdue_at: overdue.then_some(now),
        after: p.cursor.as_deref().map(parse_cursor).transpose()?,
        limit,
    })
}

/// An RFC 3339 instant, or a day meaning its start in UTC.
fn instant(field: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            ApiError::invalid_field(field, "must be an RFC 3339 time or a YYYY-MM-DD date")
        })
}

/// Opaque to clients: the last case's creation time and id, hex.
fn cursor(created_at: DateTime<Utc>, id: &str) -> String {
    let text = format!(
        "{}|{id}",
        created_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    );
    hex(text.as_bytes())
}

fn parse_cursor(text: &str) -> Result<(DateTime<Utc>, String), ApiError> {
    let bad = || ApiError::invalid_field("cursor", "is not a cursor this server gave out");
    if !text.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes = (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (at, id) = text.split_once('|').ok_or_else(bad)?;
    let at = DateTime::parse_from_rfc3339(at).map_err(|_| bad())?;
    Ok((at.with_timezone(&Utc), id.to_owned()))
}

#[utoipa::path(
    get, path = "/cases/{id}/history", tag = "cases",
    params(("id" = String, Path, description = "The case id")),
    responses(
        (status = 200, description = "The case's history, oldest first", body = History),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token's role may not read history", body = ErrorBody),
        (status = 404, description = "No such case", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn case_history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<History>, ApiError> {
    caller.require(Action::ReadHistory)?;
    if state.backend.case(&id).await?.is_none() {
        return Err(ApiError::unknown_case(&id));
    }
    let events = state.backend.history(&id).await?;
    Ok(Json(History {
        case_id: id,
        events: events
            .into_iter()
            .map(|e| HistoryEntry::new(e, caller.sees_personal_data()))
            .collect(),
    }))
}

#[utoipa::path(
    post, path = "/cases/{id}/cancel", tag = "cases",
    params(("id" = String, Path, description = "The case id")),
    request_body = Reason,
    responses(
        (status = 200, description = "The case, cancelled", body = CaseView),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token's role may not cancel", body = ErrorBody),
        (status = 404, description = "No such case", body = ErrorBody),
        (status = 409, description = "The case has ended", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn cancel_case(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<JsonObject, ApiError>,
) -> Result<Json<CaseView>, ApiError> {
    caller.require(Action::Cancel)?;
    let Reason { reason } = Reason::read(body?)?;
    let case = state
        .backend
        .apply(&id, Command::Cancel { reason }, &caller.actor())
        .await?;
    Ok(Json(CaseView::new(
        &case,
        state.backend.now(),
        caller.sees_personal_data(),
    )))
}

#[utoipa::path(
    post, path = "/cases/{id}/retry", tag = "cases",
    params(("id" = String, Path, description = "The case id")),
    request_body = Reason,
    responses(
        (status = 200, description = "The case, its failed step started again", body = CaseView),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token's role may not retry", body = ErrorBody),
        (status = 404, description = "No such case", body = ErrorBody),
        (status = 409, description = "The step has not failed, or the case has ended", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn retry_step(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<JsonObject, ApiError>,
) -> Result<Json<CaseView>, ApiError> {
    caller.require(Action::Retry)?;
    let Reason { reason } = Reason::read(body?)?;
    let case = state
        .backend
        .apply(&id, Command::RetryStep { reason }, &caller.actor())
        .await?;
    Ok(Json(CaseView::new(
        &case,
        state.backend.now(),
        caller.sees_personal_data(),
    )))
}

#[utoipa::path(
    post, path = "/cases/{id}/deadlines/{deadline}/extend", tag = "cases",
    params(
        ("id" = String, Path, description = "The case id"),
        ("deadline" = String, Path, description = "The deadline step, e.g. `issuance_limit`"),
    ),
    request_body = ExtendDeadline,
    responses(
        (status = 200, description = "The case, its deadline extended", body = CaseView),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token's role may not extend deadlines", body = ErrorBody),
        (status = 404, description = "No such case", body = ErrorBody),
        (status = 409, description = "The case has ended", body = ErrorBody),
        (status = 422, description = "A field is invalid or the extension is refused", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn extend_deadline(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, deadline)): Path<(String, String)>,
    body: Result<JsonObject, ApiError>,
) -> Result<Json<CaseView>, ApiError> {
    caller.require(Action::ExtendDeadline)?;
    let extend = ExtendDeadline::read(body?)?;
    let to = Period::parse(&extend.to).map_err(|problem| ApiError::invalid_field("to", problem))?;
    let command = Command::ExtendDeadline(Extension {
        deadline,
        to,
        reason: extend.reason,
        legal_basis: extend.legal_basis,
    });
    let case = state.backend.apply(&id, command, &caller.actor()).await?;
    Ok(Json(CaseView::new(
        &case,
        state.backend.now(),
        caller.sees_personal_data(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_as_written() {
        let at = Utc::now();
        let text = cursor(at, "case-1|x");
        assert_eq!(parse_cursor(&text).ok(), Some((at, "case-1|x".to_owned())));
        assert!(parse_cursor("zz").is_err());
        assert!(parse_cursor("abc").is_err());
    }

    #[test]
    fn filters_are_checked_by_name() {
        let now = Utc::now();
        let bad = |p: ListParams| search(p, now).err().and_then(|e| e.field);
        let limit = ListParams {
            limit: Some("0".into()),
            ..ListParams::default()
        };
        assert_eq!(bad(limit).as_deref(), Some("limit"));
        let from = ListParams {
            created_from: Some("yesterday".into()),
            ..ListParams::default()
        };
        assert_eq!(bad(from).as_deref(), Some("created_from"));
        let day = ListParams {
            created_from: Some("2026-03-01".into()),
            overdue: Some("true".into()),
            ..ListParams::default()
        };
        let s = search(day, now).ok();
        assert_eq!(s.as_ref().and_then(|s| s.overdue_at), Some(now));
        assert_eq!(
            query_error("Failed: unknown field `sort`, expected one of")
                .field
                .as_deref(),
            Some("sort")
        );
    }
}
