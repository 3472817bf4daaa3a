//! Stand-ins for the government services the handlers call, for the demo
//! and the embedded mode. They answer in-process; the handlers are the
//! real ones.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use docket_workers::handlers::Handlers;
use docket_workers::handlers::identity::{
    IdentityVerify, IntranetAuthenticate, IntranetService, RealNameService, ServiceError, Verdict,
};
use docket_workers::handlers::materials::MaterialsCheck;
use docket_workers::handlers::notify::{DeliveryError, Message, Messenger, Notify};
use futures_util::future::BoxFuture;

/// The real-name authentication service. With `down_at_first`, its first
/// call finds it down, so the demo shows a retry with backoff.
#[derive(Debug, Default)]
pub struct RealName {
    was_down: AtomicBool,
}

impl RealName {
    pub fn new(down_at_first: bool) -> Self {
        RealName {
            was_down: AtomicBool::new(!down_at_first),
        }
    }
}

impl RealNameService for RealName {
    fn verify<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Verdict, ServiceError>> {
        Box::pin(async move {
            if !self.was_down.swap(true, Ordering::SeqCst) {
                return Err(ServiceError::Unavailable("maintenance window".to_owned()));
            }
            Ok(Verdict::Confirmed)
        })
    }
}

/// The police intranet: confirms every identity.
#[derive(Debug, Default)]
pub struct Intranet;

impl IntranetService for Intranet {
    fn authenticate<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Verdict, ServiceError>> {
        Box::pin(async { Ok(Verdict::Confirmed) })
    }
}

/// The handlers of the embedded mode, on the simulated services. `outbox`
/// receives the messages.
pub fn handlers_with(down_at_first: bool, outbox: Arc<Outbox>) -> Handlers {
    Handlers::new()
        .with(
            "identity.verify",
            IdentityVerify::new(Arc::new(RealName::new(down_at_first))),
        )
        .with(
            "intranet.authenticate",
            IntranetAuthenticate::new(Arc::new(Intranet)),
        )
        .with("materials.check", MaterialsCheck)
        .with("notify.email", Notify::email(Arc::clone(&outbox) as _))
        .with("notify.webhook", Notify::webhook(outbox as _))
}

/// [`handlers_with`] keeping the messages in a fresh outbox.
pub fn handlers(down_at_first: bool) -> Handlers {
    handlers_with(down_at_first, Arc::new(Outbox::default()))
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
