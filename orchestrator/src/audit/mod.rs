//! The tamper-evident history: what makes a change to stored history
//! visible to an auditor.
//!
//! - Each case's history is a hash chain: every event's hash covers the
//!   previous event's hash and a canonical encoding of the event as stored
//!   (case, seq, time, actor, kind, payload). The case row keeps the head.
//! - Checkpoints chain the cases together: each lists the heads of the
//!   cases that changed since the one before and covers that one's hash, so
//!   a case deleted whole — rows, head and all — is still missed by the
//!   checkpoint that recorded it.
//! - [`verify`] recomputes both chains from rows read back and names the
//!   first event of each case that was modified, deleted, inserted or
//!   reordered.
//!
//! Anyone who can write the database can also recompute SHA-256, so the
//! chain proves what it proves only up to the latest checkpoint hash an
//! auditor holds outside the database: `orchestrator audit export` prints
//! it for archiving.

pub mod chain;
pub mod verify;

pub use chain::{GENESIS, checkpoint_hash, event_hash};
pub use verify::{CaseHistory, Problem, verify};
