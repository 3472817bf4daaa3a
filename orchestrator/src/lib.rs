//! Docket's orchestrator: keeps every case's state durably in SQL and
//! schedules each step of a file-defined workflow as a job for the workers.
//!
//! # Layout
//! - [`definition`]: the workflow language — loading, validation, the
//!   resolved model, graph rendering and the JSON Schema.
//! - [`calendar`]: working-day calendars and deadline arithmetic.
//! - [`engine`]: the pure state machine — `(definition, state, command,
//!   now) → (state, history, effects)`.
//! - [`store`]: cases, history, attempts, timers and the outbox in SQL
//!   (PostgreSQL or SQLite), one transaction per decision.
//! - [`runtime`]: the async shell — deploying definitions, applying
//!   commands, dispatching jobs, firing timers, embedded workers.
//! - [`api`]: the HTTP API, its bearer tokens and roles, its OpenAPI
//!   document.
//! - [`audit`]: the hash chains that make changed history visible.
//! - [`privacy`]: personal fields marked, sealed at rest with per-case
//!   keys, masked for roles without the right to see them, erased.
//! - [`materials`]: files uploaded for a case — their type told from
//!   their content, sealed on disk under generated names.
//! - [`demo`]: the demo's simulated people and services, and timelines.

pub mod api;
pub mod audit;
pub mod calendar;
pub mod definition;
pub mod demo;
pub mod engine;
pub mod materials;
pub mod privacy;
pub mod runtime;
pub mod store;

#[cfg(test)]
mod testing;
