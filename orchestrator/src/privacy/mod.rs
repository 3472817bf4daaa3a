//! Personal information: marked where it enters, sealed where it is
//! stored, masked where it is shown.
//!
//! - [`marker`]: a value of a field declared `personal: true` is carried
//!   as `{"$personal": VALUE, "$type": TYPE}` from the moment the engine
//!   accepts it (case input, event data). The engine reads through the
//!   marker; everything else can tell personal data from the rest by it.
//! - [`keys`]: every case has its own data key, stored in the case row
//!   wrapped (encrypted) under a configured master key. Master keys come
//!   from configuration (`DOCKET_DATA_KEYS`), never from the database, and
//!   rotate: the newest wraps, every configured key unwraps, and
//!   `orchestrator keys rewrap` moves every case to the newest.
//! - [`seal`]: at rest, each marked value is replaced by
//!   `{"$sealed": CIPHERTEXT}` under the case's key (XChaCha20-Poly1305,
//!   authenticated with the case, the document and the value's place in
//!   it), in the state, in every history event and in queued job
//!   parameters. The history's hash chain covers the ciphertext.
//! - Erasure (retention) throws the case's key away: every sealed value of
//!   the case then reads `{"$erased": true}`, while the history rows — and
//!   so the hash chain — stay exactly as written.
//! - [`mask`]: what a role without the right to see personal data is shown
//!   (`3505**********1234`, `张*`).

pub mod keys;
pub mod marker;
pub mod mask;
pub mod seal;

pub use keys::{CaseKey, DataKeys};

/// Why personal data could not be sealed or opened. Never quotes a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivacyError {
    #[error("data keys: {0}")]
    Keys(String),
    #[error(
        "no master keys for personal data are configured: set DOCKET_DATA_KEYS or --data-keys-file (make one with `orchestrator keys generate`)"
    )]
    NotConfigured,
    #[error(
        "case {case}'s data key is wrapped with master key `{key}`, which is not configured (DOCKET_DATA_KEYS)"
    )]
    UnknownKey { case: String, key: String },
    #[error(
        "case {case}'s data key could not be unwrapped: it was altered or belongs to another case"
    )]
    BadCaseKey { case: String },
    #[error(
        "sealed value at {place} of case {case} failed authentication: it was altered or moved"
    )]
    Forged { case: String, place: String },
    #[error("sealed value at {place} of case {case} is malformed")]
    Malformed { case: String, place: String },
    #[error("case {case} has personal data to store but its data key was erased")]
    Erased { case: String },
}
