//! The HTTP API: what the public front end, officers, operators and
//! auditors use instead of the command line.
//!
//! - [`auth`]: bearer tokens and the role table.
//! - [`cases`]: starting, reading, searching, cancelling, retrying cases
//!   and extending their deadlines.
//! - [`events`]: sending a case an event, once per idempotency key.
//! - [`health`]: liveness, readiness and `/openapi.json`.
//! - [`audit`]: the history verified and exported, for auditors.
//! - [`materials`]: files (photos, scans) uploaded for a case and read
//!   back; their type told from their content, sealed on disk.
//! - [`error`]: the JSON errors and their stable codes.
//! - [`views`]: request bodies and response shapes.
//! - `path`: path parameters, a bad one refused as JSON.
//! - [`openapi`]: the document's fixed parts.
//!
//! Every request is bounded: its body by [`ApiSettings::body_limit`] (an
//! upload's by its own [`UploadSettings::limit`]), its run by
//! [`ApiSettings::timeout`]. A handler that panics answers a JSON
//! `internal` error, never a trace.

pub mod audit;
pub mod auth;
mod backend;
pub mod cases;
pub mod error;
pub mod events;
pub mod health;
pub mod materials;
pub mod openapi;
mod path;
pub mod views;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::router::UtoipaMethodRouterExt;
use utoipa_axum::routes;

pub use backend::Backend;
use error::ApiError;
pub use materials::UploadSettings;

/// How the API behaves; from `orchestrator serve`'s flags.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Longest a request may run before it is answered `timeout`.
    pub timeout: Duration,
    /// The events a `gateway` token may send: the applicant's own (e.g.
    /// materials submitted). Any workflow's event of that name.
    pub gateway_events: Vec<String>,
    /// Uploaded materials: their size limit, directory and keys.
    pub uploads: UploadSettings,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            body_limit: 256 * 1024,
            timeout: Duration::from_secs(10),
            gateway_events: Vec::new(),
            uploads: UploadSettings::default(),
        }
    }
}

impl ApiSettings {
    /// How long an idempotency key's first request may stay unanswered
    /// before a retry takes it over: well past any request's timeout, so a
    /// live request is never taken over.
    pub fn stale_claim(&self) -> chrono::Duration {
        let wait = (self.timeout * 2).max(Duration::from_secs(60));
        chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::minutes(1))
    }
}

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub backend: Arc<dyn Backend>,
    pub settings: Arc<ApiSettings>,
    /// The OpenAPI document, serialized once.
    pub openapi: Arc<String>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Every route with its OpenAPI description: the one list of both.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(cases::list_cases, cases::start_case))
        .routes(routes!(cases::get_case))
        .routes(routes!(cases::case_history))
        .routes(routes!(cases::cancel_case))
        .routes(routes!(cases::retry_step))
        .routes(routes!(cases::extend_deadline))
        .routes(routes!(events::send_event))
        .routes(routes!(audit::verify_history))
        .routes(routes!(audit::export_history))
        // Uploads are bounded by their own limit, read as they stream in
        // (see `materials`): the JSON bodies' limit does not apply.
        .routes(
            routes!(materials::upload_material, materials::list_materials)
                .layer(DefaultBodyLimit::disable()),
        )
        .routes(routes!(materials::download_material))
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(health::openapi_json))
}

/// The API's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().into_openapi()
}

/// The API as a router, ready to serve.
pub fn router(backend: Arc<dyn Backend>, settings: ApiSettings) -> Router {
    let (router, doc) = routes().split_for_parts();
    let openapi = doc.to_json().unwrap_or_else(|e| {
        tracing::error!(error = %e, "the OpenAPI document could not be serialized");
        "{}".to_owned()
    });
    let state = AppState {
        backend,
        settings: Arc::new(settings.clone()),
        openapi: Arc::new(openapi),
    };
    router
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(settings.body_limit))
        .layer(middleware::from_fn_with_state(settings.timeout, time_limit))
        .layer(CatchPanicLayer::custom(panicked))
        .layer(middleware::from_fn(refuse_nul_in_url))
        .layer(middleware::from_fn(close_if_body_unread))
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` turns true; requests under
/// way are finished (each within its timeout) before it returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    // A write that is cut off rolls back with its transaction; an event's
    // idempotency claim is then taken over by a retry once stale.
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::timeout().into_response(),
    }
}

/// Answers `Connection: close` when the request's body was not read to
/// its end: a request refused before its body is read (no token, a wrong
/// method, a body over the limit). The server closes such a connection
/// anyway; without the header a client that pools connections sends its
/// next request down the closing one and gets no answer at all.
async fn close_if_body_unread(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let has_body = headers
        .get(header::CONTENT_LENGTH)
        .is_some_and(|length| length.as_bytes() != b"0")
        || headers.contains_key(header::TRANSFER_ENCODING);
    if !has_body {
        return next.run(request).await;
    }
    let read = Arc::new(AtomicBool::new(false));
    let ended = Arc::clone(&read);
    // Polled only once the body's own stream has ended.
    let end = futures_util::stream::poll_fn(move |_| {
        ended.store(true, Ordering::Release);
        Poll::Ready(None::<Result<Bytes, axum::Error>>)
    });
    let (parts, body) = request.into_parts();
    let body = Body::from_stream(futures_util::StreamExt::chain(body.into_data_stream(), end));
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if !read.load(Ordering::Acquire) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Refuses a URL that decodes to a NUL character (`%00`), in its path or
/// its query: no id, name or parameter may hold one, and PostgreSQL keeps
/// none in text, so it would fail at the database instead.
async fn refuse_nul_in_url(request: Request, next: Next) -> Response {
    let uri = request.uri();
    let nul = |text: &str| {
        text.as_bytes()
            .windows(3)
            .any(|w| w.eq_ignore_ascii_case(b"%00"))
    };
    if nul(uri.path()) || uri.query().is_some_and(nul) {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "the URL holds a NUL character (%00), which no id, name or parameter may contain",
        )
        .into_response();
    }
    next.run(request).await
}

async fn no_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        "no such endpoint; see /openapi.json",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take this method; see /openapi.json",
    )
}

fn panicked(_payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    // The panic's message may quote data: only the fact is logged.
    tracing::error!("a request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "an internal error occurred; it has been logged",
    )
    .into_response()
}
