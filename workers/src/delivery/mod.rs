//! How `notify.*` messages leave the worker: the production
//! [`Messenger`](crate::handlers::notify::Messenger)s.
//!
//! | channel | messenger | the attempt id travels as |
//! | --- | --- | --- |
//! | `email` | [`smtp::SmtpMessenger`]: SMTP through a pooled lettre transport, TLS when configured | `Message-ID: <{attempt id}@{sender's domain}>` and `X-Docket-Attempt` |
//! | `webhook` | [`webhook::WebhookMessenger`]: `POST {url}` with `{"to","subject","body"}` | `Idempotency-Key` |
//!
//! A retried attempt of a step gets a new attempt id, but one attempt whose
//! delivery is repeated (a lost answer, a worker killed mid-send) sends the
//! same key, so the receiving side can drop the repeat.
//!
//! Both sort what went wrong the same way: the recipient refused for good
//! ([`DeliveryError::Rejected`](crate::handlers::notify::DeliveryError),
//! a permanent `rejected_recipient`) or anything else worth trying again
//! (`Temporary`, a retryable `unavailable`). Neither ever puts the recipient
//! or the text of a message into an error or a log line: both are personal
//! information, and errors end up in a case's history.

pub mod smtp;
pub mod webhook;
