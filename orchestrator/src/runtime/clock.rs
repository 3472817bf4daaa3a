//! Time and identifiers, injected so every rule can be tested and a demo
//! can make days pass in seconds.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};

pub trait Clock: std::fmt::Debug + Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to: simulations jump it to the next
/// moment something is scheduled.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward to `at`; never backwards.
    pub fn advance_to(&self, at: DateTime<Utc>) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if at > *now {
            *now = at;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Makes case identifiers.
pub trait IdGen: std::fmt::Debug + Send + Sync + 'static {
    fn case_id(&self) -> String;
}

/// Time-ordered UUIDs (version 7): unique across orchestrator replicas and
/// sortable by creation.
#[derive(Debug, Default, Clone, Copy)]
pub struct UuidGen;

impl IdGen for UuidGen {
    fn case_id(&self) -> String {
        uuid::Uuid::now_v7().to_string()
    }
}

/// `PREFIX-1`, `PREFIX-2`, …: readable ids for demos and tests.
#[derive(Debug)]
pub struct SequentialIds {
    prefix: String,
    next: AtomicU64,
}

impl SequentialIds {
    pub fn new(prefix: &str) -> Self {
        SequentialIds {
            prefix: prefix.to_owned(),
            next: AtomicU64::new(1),
        }
    }
}

impl IdGen for SequentialIds {
    fn case_id(&self) -> String {
        format!(
            "{}-{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}
