//! `notify.email` and `notify.webhook`: delivering a message. Delivery sits
//! behind [`Messenger`] so workers use SMTP or HTTP and the embedded demo
//! records the messages.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{Handler, text_param};
use crate::contract::{Job, Outcome};

/// A message ready to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `email` or `webhook`.
    pub channel: &'static str,
    pub to: String,
    pub subject: Option<String>,
    pub body: String,
    /// The attempt id, so the receiving side can drop a repeated delivery.
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth trying again later.
    #[error("delivery failed for now: {0}")]
    Temporary(String),
    /// The receiver asked to be called again no sooner than `retry_after`.
    #[error("delivery failed for now: {message}")]
    Throttled {
        message: String,
        retry_after: std::time::Duration,
    },
    /// The recipient was refused; trying again will not help.
    #[error("the recipient was refused: {0}")]
    Rejected(String),
}

pub trait Messenger: std::fmt::Debug + Send + Sync + 'static {
    fn send<'a>(&'a self, message: Message) -> BoxFuture<'a, Result<(), DeliveryError>>;
}

/// `notify.email` or `notify.webhook`, by channel.
#[derive(Debug, Clone)]
pub struct Notify {
    channel: &'static str,
    messenger: Arc<dyn Messenger>,
}

impl Notify {
    pub fn email(messenger: Arc<dyn Messenger>) -> Self {
        Notify {
            channel: "email",
            messenger,
        }
    }

    pub fn webhook(messenger: Arc<dyn Messenger>) -> Self {
        Notify {
            channel: "webhook",
            messenger,
        }
    }
}

impl Handler for Notify {
    fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let (to, body) = match (text_param(job, "to"), text_param(job, "body")) {
                (Ok(to), Ok(body)) => (to, body),
                (Err(o), _) | (_, Err(o)) => return o,
            };
            if to.trim().is_empty() {
                return Outcome::permanent(
                    "invalid_request",
                    "the message has no recipient address",
                );
            }
            let subject = text_param(job, "subject").ok().map(str::to_owned);
            let message = Message {
                channel: self.channel,
                to: to.to_owned(),
                subject,
                body: body.to_owned(),
                key: job.attempt_id.clone(),
            };
            match self.messenger.send(message).await {
                Ok(()) => Outcome::succeeded("sent"),
                Err(DeliveryError::Temporary(e)) => Outcome::retryable("unavailable", e),
                Err(DeliveryError::Throttled {
                    message,
                    retry_after,
                }) => Outcome::Failed {
                    code: "unavailable".to_owned(),
                    message,
                    retryable: true,
                    retry_after_secs: Some(
                        retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0),
                    ),
                },
                Err(DeliveryError::Rejected(e)) => Outcome::permanent("rejected_recipient", e),
            }
        })
    }
}
