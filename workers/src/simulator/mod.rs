//! A simulator of the government services Docket calls — the real-name
//! authentication service and the police intranet — serving the protocol in
//! [`crate::services`] over real HTTP, for tests and the demo. The handlers
//! talk to it exactly as they would to the real services.
//!
//! Its [`Behaviour`] is set at start and can be changed while it runs
//! through [`Control`]: refuse some ID numbers, answer `503` or an
//! unreadable body to the next requests, answer slowly. It implements
//! idempotency as the real services must (a repeated key gets the first
//! answer, without deciding again) and logs every request with its key, so
//! tests can check what reached it.
//!
//! [`Simulator::start`] binds, serves on a task, and returns a
//! [`RunningSimulator`]; its [`shutdown`](RunningSimulator::shutdown), or
//! dropping it, stops the server and cuts short any delayed answer.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};

use crate::services::protocol::{AUTHENTICATE_PATH, IDEMPOTENCY_KEY, REPLAYED, VERIFY_PATH};

mod answer;

pub use answer::Person;
use answer::State;

/// How long [`RunningSimulator::shutdown`] waits for open connections to
/// close before it stops the server regardless.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Which service a request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    RealName,
    Intranet,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::RealName => "real-name",
            Service::Intranet => "intranet",
        })
    }
}

/// How both services behave. The default confirms everyone at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Behaviour {
    pub realname: ServiceBehaviour,
    pub intranet: ServiceBehaviour,
}

impl Behaviour {
    pub fn of(&self, service: Service) -> &ServiceBehaviour {
        match service {
            Service::RealName => &self.realname,
            Service::Intranet => &self.intranet,
        }
    }

    pub fn of_mut(&mut self, service: Service) -> &mut ServiceBehaviour {
        match service {
            Service::RealName => &mut self.realname,
            Service::Intranet => &mut self.intranet,
        }
    }
}

/// How one service behaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceBehaviour {
    /// An ID number ending in any of these is refused (real-name) or does
    /// not match (intranet). A whole ID number is a suffix of itself.
    pub refuse_id_suffixes: Vec<String>,
    /// Answer `503` to this many of the next new requests; counts down.
    pub unavailable_next: u32,
    /// Sent as `Retry-After` (whole seconds) with each `503`.
    pub retry_after: Option<Duration>,
    /// Answer this many of the next new requests with `200` and an HTML
    /// page instead of JSON; counts down.
    pub garbled_next: u32,
    /// Wait this long before sending every answer, replays included.
    pub delay: Duration,
}

/// What the simulator answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// `confirmed` (real-name) or `authenticated` (intranet).
    Confirmed,
    /// `refused` (real-name) or `mismatch` (intranet).
    Refused,
    /// `503`.
    Unavailable,
    /// `200` with a body that is not JSON.
    Garbled,
    /// `400`: no idempotency key, or a body without the operation's fields.
    Invalid,
    /// `422`: an idempotency key already used for another person.
    KeyReused,
}

/// One request the simulator received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub service: Service,
    /// The `Idempotency-Key` header, if there was one.
    pub key: Option<String>,
    /// Who it was about, if the body was readable.
    pub person: Option<Person>,
    pub answered: Answered,
    /// Whether the answer was one given before to the same key.
    pub replayed: bool,
}

/// Why the simulator could not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    #[error("could not listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the simulator's server failed")]
    Serve(#[source] std::io::Error),
    #[error("the simulator's server task failed")]
    Task(#[source] JoinError),
    #[error("the simulator did not stop within {0:?}; it was aborted")]
    ShutdownTimedOut(Duration),
}

/// The simulator of both services.
#[derive(Debug)]
pub struct Simulator;

impl Simulator {
    /// Listens on `addr` (port 0 picks a free port; see
    /// [`RunningSimulator::addr`]) and serves on a new task until shut down.
    pub async fn start(
        addr: SocketAddr,
        behaviour: Behaviour,
    ) -> Result<RunningSimulator, SimulatorError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SimulatorError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SimulatorError::Bind { addr, source })?;
        let (stop, stopping) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(behaviour)),
            stopping: stopping.clone(),
        });
        let app = Router::new()
            .route(&format!("/{VERIFY_PATH}"), post(verify))
            .route(&format!("/{AUTHENTICATE_PATH}"), post(authenticate))
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped(stopping))
                .await
        });
        tracing::info!(%addr, "service simulator listening");
        Ok(RunningSimulator {
            addr,
            control: Control { shared },
            stop,
            server,
        })
    }
}

/// A simulator serving on a task. Dropping it stops the server too, without
/// waiting; [`shutdown`](RunningSimulator::shutdown) waits.
#[derive(Debug)]
pub struct RunningSimulator {
    addr: SocketAddr,
    control: Control,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
}

impl RunningSimulator {
    /// The address it listens on, with the port it was given.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to configure a client with, e.g. `http://127.0.0.1:8181`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A handle to change its behaviour and read its log.
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Stops accepting, cuts short delayed answers, and waits up to
    /// [`SHUTDOWN_GRACE`] for open connections to close.
    pub async fn shutdown(mut self) -> Result<(), SimulatorError> {
        self.stop.send_replace(true);
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut self.server).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(SimulatorError::Serve(e)),
            Ok(Err(e)) => Err(SimulatorError::Task(e)),
            Err(_) => {
                self.server.abort();
                Err(SimulatorError::ShutdownTimedOut(SHUTDOWN_GRACE))
            }
        }
    }
}

/// Changes a running simulator's behaviour and reads what it received.
#[derive(Debug, Clone)]
pub struct Control {
    shared: Arc<Shared>,
}

impl Control {
    pub fn set(&self, behaviour: Behaviour) {
        self.shared.state().behaviour = behaviour;
    }

    /// Changes the behaviour in place, e.g. to make the next request fail
    /// without forgetting the refusals.
    pub fn update(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.shared.state().behaviour);
    }

    /// The behaviour now, with the counters as far as they have counted down.
    pub fn behaviour(&self) -> Behaviour {
        self.shared.state().behaviour.clone()
    }

    /// Every request received, oldest first (the last few thousand).
    pub fn received(&self) -> Vec<Received> {
        self.shared.state().received.iter().cloned().collect()
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Becomes `true` (or closes) when the simulator stops.
    stopping: watch::Receiver<bool>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind, still
        // good to serve from.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Resolves when the simulator is asked to stop or its handle is dropped.
async fn stopped(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

async fn verify(
    Extract(shared): Extract<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(&shared, Service::RealName, &headers, &body).await
}

async fn authenticate(
    Extract(shared): Extract<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(&shared, Service::Intranet, &headers, &body).await
}

async fn respond(shared: &Shared, service: Service, headers: &HeaderMap, body: &[u8]) -> Response {
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty());
    let reply = shared.state().answer(service, key, body);
    tracing::info!(
        %service,
        key,
        answered = ?reply.answered,
        replayed = reply.replayed,
        "simulated service answered"
    );
    if !reply.delay.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(reply.delay) => {}
            () = stopped(shared.stopping.clone()) => {}
        }
    }
    let content_type = if reply.json {
        "application/json"
    } else {
        "text/html; charset=utf-8"
    };
    let mut response = (reply.status, [(CONTENT_TYPE, content_type)], reply.body).into_response();
    if let Some(wait) = reply.retry_after {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    if reply.replayed {
        response
            .headers_mut()
            .insert(REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

#[cfg(test)]
mod tests;
