//! The services the handlers call, for the demo and the embedded mode: the
//! government services are Docket's HTTP simulator on a loopback port, and
//! the handlers talk to it over HTTP exactly as to the real services;
//! messages are kept instead of delivered.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use docket_workers::handlers::Handlers;
use docket_workers::handlers::identity::{IdentityVerify, IntranetAuthenticate};
use docket_workers::handlers::materials::MaterialsCheck;
use docket_workers::handlers::notify::{DeliveryError, Message, Messenger, Notify};
use docket_workers::services::intranet::HttpIntranet;
use docket_workers::services::realname::HttpRealName;
use docket_workers::simulator::{Behaviour, RunningSimulator, Simulator, SimulatorError};
use futures_util::future::BoxFuture;

/// How long a call to the simulated services may take.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    #[error(transparent)]
    Simulator(#[from] SimulatorError),
    #[error(transparent)]
    Client(#[from] docket_workers::services::http::ClientError),
}

/// The handlers and the simulator they talk to; the simulator stops when
/// this is dropped.
#[derive(Debug)]
pub struct Services {
    pub handlers: Handlers,
    pub simulator: RunningSimulator,
}

/// Starts the simulator and the handlers that call it. With
/// `down_at_first`, the real-name service's first answer is `503`, so the
/// demo shows a retry with backoff. `outbox` receives the messages.
pub async fn start(down_at_first: bool, outbox: Arc<Outbox>) -> Result<Services, ServicesError> {
    let mut behaviour = Behaviour::default();
    behaviour.realname.unavailable_next = u32::from(down_at_first);
    let simulator = Simulator::start(([127, 0, 0, 1], 0).into(), behaviour).await?;
    let url = simulator.url();
    let handlers = Handlers::new()
        .with(
            "identity.verify",
            IdentityVerify::new(Arc::new(HttpRealName::new(&url, SERVICE_TIMEOUT)?)),
        )
        .with(
            "intranet.authenticate",
            IntranetAuthenticate::new(Arc::new(HttpIntranet::new(&url, SERVICE_TIMEOUT)?)),
        )
        .with("materials.check", MaterialsCheck)
        .with("notify.email", Notify::email(Arc::clone(&outbox) as _))
        .with("notify.webhook", Notify::webhook(outbox as _));
    Ok(Services {
        handlers,
        simulator,
    })
}

/// Keeps every message instead of delivering it.
#[derive(Debug, Default)]
pub struct Outbox {
    pub sent: Mutex<Vec<Message>>,
}

impl Messenger for Outbox {
    fn send<'a>(&'a self, message: Message) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            self.sent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(message);
            Ok(())
        })
    }
}
