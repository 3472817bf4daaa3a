//! Sending an event to a case, applied once per idempotency key.
//!
//! The key is claimed in SQL before the event is applied and settled with
//! the answer after, so a retry of the same request — same case, key, event
//! and body — gets the first answer back without applying anything, and
//! the same key with another request is refused. An answer that says
//! nothing happened for a passing reason (an internal error, an unknown
//! case) releases the key instead, so a retry applies it afresh. If the
//! process dies between applying and settling, the claim goes stale and a
//! retry applies again: the engine then refuses an event the case no longer
//! waits for, so the event is still applied at most once.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::AppState;
use super::auth::{Caller, hex};
use super::error::{ApiError, ErrorBody};
use super::path::Path;
use super::views::{CaseView, JsonObject, SendEvent};
use crate::engine::Command;
use crate::store::api::KeyClaim;

pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// Set on an answer that repeats the first one for its key.
pub const REPLAYED: &str = "Idempotent-Replayed";
const MAX_KEY_LEN: usize = 200;

#[utoipa::path(
    post, path = "/cases/{id}/events/{event}", tag = "cases",
    params(
        ("id" = String, Path, description = "The case id"),
        ("event" = String, Path, description = "An event the case's workflow declares"),
        ("Idempotency-Key" = String, Header,
            description = "Chosen by the client, unique per request; a retry sends the same key and body"),
    ),
    request_body = SendEvent,
    responses(
        (status = 200, description = "The case after the event", body = CaseView),
        (status = 400, description = "The body is not a JSON object", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token's role may not send this event", body = ErrorBody),
        (status = 404, description = "No such case, or the workflow declares no such event", body = ErrorBody),
        (status = 409, description = "The case is not waiting for the event or has ended; or the key was used for another request, or its first request is still being applied", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn send_event(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, event)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<JsonObject, ApiError>,
) -> Result<Response, ApiError> {
    caller.may_send(&event, &state.settings.gateway_events)?;
    let key = idempotency_key(&headers)?;
    let body = body?;
    let fingerprint = fingerprint(&event, &body.raw);
    let SendEvent { data } = SendEvent::read(body)?;

    let backend = &state.backend;
    let stale_before = backend.now() - state.settings.stale_claim();
    match backend
        .claim_key(&id, &key, &fingerprint, stale_before)
        .await?
    {
        KeyClaim::Fresh => {}
        KeyClaim::Answered { status, body } => return Ok(replay(status, body)),
        KeyClaim::Conflict => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_conflict",
                "this Idempotency-Key was used for a different request",
            )
            .with_field(IDEMPOTENCY_KEY));
        }
        KeyClaim::InFlight => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_in_flight",
                "the first request with this Idempotency-Key is still being applied; retry later",
            )
            .with_field(IDEMPOTENCY_KEY));
        }
    }

    let command = Command::Signal { event, data };
    let answer = match backend.apply(&id, command, &caller.actor()).await {
        // The answer is kept for replays: personal data in it is masked
        // whoever asks.
        Ok(case) => (
            StatusCode::OK,
            json(&CaseView::new(&case, backend.now(), false)),
        ),
        Err(e) => {
            let error = ApiError::from(e);
            if error.status.is_server_error() || error.code == "unknown_case" {
                if let Err(e) = backend.release_key(&id, &key).await {
                    tracing::error!(case = %id, error = %e, "an idempotency key could not be released");
                }
                return Err(error);
            }
            (error.status, json(&error.body()))
        }
    };
    if let Err(e) = backend
        .settle_key(&id, &key, answer.0.as_u16(), &answer.1)
        .await
    {
        // The event is applied: answer it. A retry finds the claim in
        // flight until it goes stale (see the module's doc).
        tracing::error!(case = %id, error = %e, "an idempotency key could not be settled");
    }
    Ok(respond(answer.0, answer.1, false))
}

fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let missing = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("the `{IDEMPOTENCY_KEY}` header is required: a unique value per request, repeated on a retry"),
        )
        .with_field(IDEMPOTENCY_KEY)
    };
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .ok_or_else(missing)?
        .to_str()
        .map_err(|_| missing())?
        .trim();
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("the `{IDEMPOTENCY_KEY}` header must have 1 to {MAX_KEY_LEN} characters"),
        )
        .with_field(IDEMPOTENCY_KEY));
    }
    Ok(key.to_owned())
}

/// The request as its key is bound to: the event and the body's bytes.
fn fingerprint(event: &str, raw: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(event.as_bytes());
    hasher.update([0]);
    hasher.update(raw);
    hex(&hasher.finalize())
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

fn replay(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    respond(status, body, true)
}

fn respond(status: StatusCode, body: String, replayed: bool) -> Response {
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if replayed {
        response
            .headers_mut()
            .insert(REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_bound_to_the_event_and_the_body() {
        assert_eq!(fingerprint("a", b"{}"), fingerprint("a", b"{}"));
        assert_ne!(fingerprint("a", b"{}"), fingerprint("b", b"{}"));
        assert_ne!(fingerprint("a", b"{}"), fingerprint("a", b"{ }"));
    }

    #[test]
    fn the_key_header_is_required() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            idempotency_key(&headers)
                .err()
                .and_then(|e| e.field)
                .as_deref(),
            Some(IDEMPOTENCY_KEY)
        );
        headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("k-1"));
        assert_eq!(idempotency_key(&headers).ok().as_deref(), Some("k-1"));
    }
}
