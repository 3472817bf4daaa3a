//! Clients of the government services the identity handlers call, over
//! HTTP: [`realname::HttpRealName`] and [`intranet::HttpIntranet`].
//!
//! # The protocol
//! Both services take a JSON `POST` with the attempt id in an
//! `Idempotency-Key` header, relative to a configured base URL
//! ([`protocol`] has the types):
//!
//! | request | 200 answers |
//! | --- | --- |
//! | `POST {base}/v1/verify` `{"name","id_number"}` | `{"result":"confirmed"}`, `{"result":"refused","reason":"…"}` |
//! | `POST {base}/v1/authenticate` `{"name","id_number","address"}` | `{"result":"authenticated"}`, `{"result":"mismatch","reason":"…"}` |
//!
//! A repeated key gets the first answer again, marked
//! `Idempotent-Replayed: true`; a key reused for another person is `422`. A
//! missing key or unreadable body is `400`; `429` and `5xx` (optionally with
//! `Retry-After`) mean "not now". Non-200 bodies are `{"error":"…"}`, for
//! people only.
//!
//! How the clients read answers, in one place ([`http`]): 200 with a
//! readable body is a verdict; `429`/`5xx` or a dropped connection is
//! [`ServiceError::Unavailable`](crate::handlers::identity::ServiceError);
//! no answer within the configured timeout is `Timeout`; anything else is
//! `BadResponse`. Every one is retryable. No message names the person.
//!
//! [`crate::simulator`] serves this protocol for tests and the demo.

pub mod http;
pub mod intranet;
pub mod protocol;
pub mod realname;

#[cfg(test)]
mod tests;
