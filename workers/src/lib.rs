//! Docket's workers: the job contract shared with the orchestrator, the task
//! handlers, and the Redis worker pool.
//!
//! # Layout
//! - [`catalog`]: the handlers this crate registers, with the parameters they
//!   take, the outcomes they report and their default timeout and retry
//!   policy. The orchestrator validates workflow files against it, so a
//!   workflow can never name a handler no worker runs.
//! - [`contract`]: what a job carries ([`contract::Job`]) and what an
//!   attempt reports back ([`contract::Outcome`]).
//! - [`redis`]: the Redis transport of jobs and completions (apalis-redis,
//!   with its unsafe defaults replaced).
//! - [`sealing`]: jobs encrypted for Redis, with rotatable keys.
//! - [`handlers`]: the handlers, behind one [`handlers::Handler`] trait, and
//!   the traits of the external services they call.
//! - [`delivery`]: how `notify.*` messages leave: SMTP (pooled, TLS when
//!   configured) and webhook POSTs, each keyed by the attempt id.
//! - [`services`]: HTTP clients of the real-name service and the police
//!   intranet, and their protocol.
//! - [`simulator`]: an HTTP simulator of those services, for tests and the
//!   demo.

pub mod catalog;
pub mod contract;
pub mod delivery;
pub mod handlers;
pub mod pool;
pub mod redis;
pub mod sealing;
pub mod services;
pub mod simulator;
