//! The wire format of the two government services, shared by the clients
//! and the simulator so the two can only disagree where a test sees it
//! (the simulator's tests pin the raw JSON).
//!
//! The request types hold personal information, so their `Debug` prints
//! none of it: a stray `{:?}` in a log line must not leak a person.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Path of the real-name check, relative to the service's base URL.
pub const VERIFY_PATH: &str = "v1/verify";
/// Path of the intranet check, relative to the service's base URL.
pub const AUTHENTICATE_PATH: &str = "v1/authenticate";
/// The header carrying the attempt id. A service answers a repeated key with
/// the answer it gave the first time, without checking again.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set to `true` on an answer replayed for a repeated idempotency key.
pub const REPLAYED: &str = "idempotent-replayed";

/// `POST {base}/v1/verify`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRequest {
    pub name: String,
    pub id_number: String,
}

/// `POST {base}/v1/authenticate`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthenticateRequest {
    pub name: String,
    pub id_number: String,
    /// The declared residence address.
    pub address: String,
}

impl fmt::Debug for VerifyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyRequest").finish_non_exhaustive()
    }
}

impl fmt::Debug for AuthenticateRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticateRequest")
            .finish_non_exhaustive()
    }
}

/// The real-name service's answer, with status 200:
/// `{"result":"confirmed"}` or `{"result":"refused","reason":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum VerifyAnswer {
    Confirmed,
    Refused { reason: String },
}

/// The intranet's answer, with status 200: `{"result":"authenticated"}` or
/// `{"result":"mismatch","reason":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum AuthenticateAnswer {
    Authenticated,
    Mismatch { reason: String },
}

/// The body of every non-200 answer: `{"error":"..."}`. Clients do not
/// rely on it (a proxy in between answers with its own body); it is for
/// people reading traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    pub error: String,
}
