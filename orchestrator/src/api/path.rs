//! Path parameters, read like axum's [`axum::extract::Path`] but refused
//! like every other bad input: a JSON error naming the parameter, never
//! axum's plain-text rejection. A segment such as `%ff` decodes to bytes
//! that are not UTF-8, so no case, event or deadline can have it as a name.

use axum::extract::FromRequestParts;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The route's parameters, deserialized into `T` (a `String`, or a tuple
/// of them in the route's order).
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(refused(rejection)),
        }
    }
}

fn refused(rejection: PathRejection) -> ApiError {
    if rejection.status().is_server_error() {
        // The route and the handler's type disagree: a programming error.
        return ApiError::internal("a route's path parameters could not be read", &rejection);
    }
    let key = match &rejection {
        PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
            ErrorKind::InvalidUtf8InPathParam { key }
            | ErrorKind::ParseErrorAtKey { key, .. }
            | ErrorKind::DeserializeError { key, .. } => Some(key.clone()),
            _ => None,
        },
        _ => None,
    };
    match key {
        Some(key) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("path parameter `{key}` is not UTF-8 text once percent-decoded"),
        )
        .with_field(key),
        None => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "a path parameter could not be read",
        ),
    }
}
