//! Docket's orchestrator: keeps every case's state durably in SQL and
//! schedules each step of a file-defined workflow as a job for the workers.
//!
//! # Layout
//! - [`definition`]: the workflow language — loading, validation, the
//!   resolved model, graph rendering and the JSON Schema.

pub mod calendar;
pub mod definition;
pub mod demo;
pub mod engine;
pub mod runtime;
pub mod store;

#[cfg(test)]
mod testing;
