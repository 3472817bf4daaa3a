//! Every error the API answers, as JSON with a stable code:
//! `{"error": {"code": "…", "message": "…", "field": "…"}}`.
//!
//! Clients branch on `code`, never on `message`. An internal failure is
//! logged here (its kind and cause, never a request body) and answered
//! with the code `internal` and nothing of its details.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::engine::Rejection;
use crate::runtime::RuntimeError;
use crate::store::StoreError;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable: `invalid_json`, `invalid_field`, `unknown_case`,
    /// `unknown_workflow`, `unknown_event`, `not_waiting`, `not_failed`,
    /// `case_finished`, `extension_refused`, `unauthorized`, `forbidden`,
    /// `idempotency_conflict`, `idempotency_in_flight`,
    /// `payload_too_large`, `timeout`, `no_route`, `method_not_allowed`,
    /// `unavailable`, `internal`; for uploads `empty_body`, `invalid_body`,
    /// `unsupported_media_type`, `unknown_material`, `material_exists`.
    pub code: String,
    /// For people; may change between releases.
    pub message: String,
    /// The request field at fault, when there is one (a body field, a
    /// query parameter or a header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error on its way to becoming a response.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn invalid_field(field: &str, problem: impl std::fmt::Display) -> Self {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("field `{field}` {problem}"),
        )
        .with_field(field)
    }

    pub fn invalid_json(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", message)
    }

    pub fn unauthorized(message: &str) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn unknown_case(id: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_case",
            format!("no case `{id}`"),
        )
    }

    pub fn payload_too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// The database does not answer (down, restarting): nothing was
    /// changed, and the same request may be sent again.
    pub fn unavailable() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the database does not answer; nothing was changed, try again shortly",
        )
    }

    pub fn timeout() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long and was abandoned; nothing was changed unless a retry shows otherwise",
        )
    }

    /// Logs what went wrong and answers without any of it.
    pub fn internal(what: &str, error: &dyn std::error::Error) -> Self {
        // The chain of causes names tables and constraints, never the
        // request's values: bodies are not logged anywhere.
        let mut causes = String::new();
        let mut source = error.source();
        while let Some(cause) = source {
            causes.push_str(": ");
            causes.push_str(&cause.to_string());
            source = cause.source();
        }
        tracing::error!(error = %error, causes = %causes, "{what}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; it has been logged",
        )
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
                field: self.field.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        let message = rejection.to_string();
        let (status, code, field) = match &rejection {
            Rejection::InvalidData { field, .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                Some(field.clone()),
            ),
            Rejection::Finished { .. } => (StatusCode::CONFLICT, "case_finished", None),
            Rejection::UnknownEvent { .. } => (StatusCode::NOT_FOUND, "unknown_event", None),
            Rejection::NotWaitingFor { .. } => (StatusCode::CONFLICT, "not_waiting", None),
            Rejection::NotFailed { .. } => (StatusCode::CONFLICT, "not_failed", None),
            Rejection::ExtensionRefused { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "extension_refused",
                Some("to".to_owned()),
            ),
            Rejection::BrokenDefinition { .. } => {
                return ApiError::internal("a deployed workflow is broken", &rejection);
            }
        };
        ApiError {
            status,
            code,
            message,
            field,
        }
    }
}

impl From<RuntimeError> for ApiError {
    fn from(error: RuntimeError) -> Self {
        match error {
            RuntimeError::Rejected(rejection) => rejection.into(),
            RuntimeError::UnknownCase(id) => ApiError::unknown_case(&id),
            RuntimeError::UnknownWorkflow(name) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_workflow",
                format!("no workflow `{name}` is deployed"),
            )
            .with_field("workflow"),
            RuntimeError::Store(StoreError::Database(e)) if database_unreachable(&e) => {
                tracing::warn!(error = %e, "the database does not answer");
                ApiError::unavailable()
            }
            other => ApiError::internal("a request could not be applied", &other),
        }
    }
}

/// Whether `error` says the database could not be reached (down,
/// restarting, shutting down, out of connections) rather than that the
/// request went wrong: the client may try again, and is told so with a 503.
fn database_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception) and 57P (the server is
        // shutting down or starting up).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        RuntimeError::from(error).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_data_names_its_field() {
        let error = ApiError::from(Rejection::InvalidData {
            what: "event `x`".into(),
            field: "materials".into(),
            problem: "must be a list".into(),
        });
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.code, "invalid_field");
        assert_eq!(error.field.as_deref(), Some("materials"));
    }

    #[test]
    fn an_unreachable_database_is_a_503_not_an_internal_error() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = ApiError::from(StoreError::Database(sqlx::Error::Io(io)));
        assert_eq!(error.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error.code, "unavailable");
        let error = ApiError::from(StoreError::Database(sqlx::Error::PoolTimedOut));
        assert_eq!(error.code, "unavailable");
        let error = ApiError::from(StoreError::Database(sqlx::Error::RowNotFound));
        assert_eq!(error.code, "internal");
    }

    #[test]
    fn an_internal_error_says_nothing_of_its_cause() {
        let error = ApiError::from(StoreError::UnknownCase("c".into()));
        assert_eq!(error.code, "unknown_case");
        let cause = std::io::Error::other("secret detail");
        let error = ApiError::internal("test", &cause);
        assert_eq!(error.code, "internal");
        assert!(!error.message.contains("secret"));
    }
}
