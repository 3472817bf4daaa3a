//! Liveness, readiness and the API's own description. None needs a token:
//! load balancers and client generators call them.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::views::Health;

/// How long readiness waits for the database.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

#[utoipa::path(
    get, path = "/health", tag = "health",
    responses((status = 200, description = "The process is up", body = Health)),
)]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}

#[utoipa::path(
    get, path = "/ready", tag = "health",
    responses(
        (status = 200, description = "The database answers", body = Health),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    ),
)]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let unavailable = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the database does not answer",
        )
    };
    match tokio::time::timeout(READY_TIMEOUT, state.backend.ping()).await {
        Ok(Ok(())) => Ok(Json(Health {
            status: "ok".to_owned(),
        })),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the database does not answer");
            Err(unavailable())
        }
        Err(_) => Err(unavailable()),
    }
}

#[utoipa::path(
    get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "This document, OpenAPI 3.1", content_type = "application/json", body = Object)),
)]
pub async fn openapi_json(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        state.openapi.as_str().to_owned(),
    )
        .into_response()
}
