//! The thin async shell around the engine: it loads a case, asks the engine
//! what changes, and has the store write the decision in one transaction.
//! The loops that move work — dispatching jobs, firing timers, applying
//! completions — live in [`service`].
//!
//! - [`clock`]: injected time and identifiers.
//! - [`definitions`]: deploying workflow files and loading them by id.
//! - [`dispatcher`]: moving jobs from the outbox onto the transport.
//! - [`embedded`]: in-process workers on an in-memory queue.
//! - [`fault`]: fault injection for the reliability tests.
//! - [`redis`]: production mode's transport and completions consumer.
//! - [`schedules`]: workflow schedules, fired once per tick across replicas.
//! - [`service`]: the long-running loops and their shutdown.

pub mod clock;
pub mod definitions;
pub mod dispatcher;
pub mod embedded;
pub mod fault;
pub mod redis;
pub mod schedules;
pub mod service;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use docket_workers::contract::Outcome;

use crate::calendar::Calendar;
use crate::definition::Workflow;
use crate::engine::{self, CaseState, Command, Context, Data};
use crate::store::schedules::is_firing_attempt;
use crate::store::{CaseRecord, Lock, Store, StoreError, Updated};
use clock::{Clock, IdGen};
use definitions::{DefinitionError, Registry};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("no workflow `{0}` is deployed")]
    UnknownWorkflow(String),
    #[error("no case `{0}`")]
    UnknownCase(String),
    #[error("`{0}` is not an attempt id")]
    BadAttemptId(String),
    #[error(transparent)]
    Rejected(#[from] engine::Rejection),
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Transport(#[from] dispatcher::TransportError),
}

impl From<StoreError> for RuntimeError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Rejected(r) => RuntimeError::Rejected(r),
            StoreError::UnknownCase(id) => RuntimeError::UnknownCase(id),
            other => RuntimeError::Store(other),
        }
    }
}

/// Who did something, as recorded in the history.
pub mod actor {
    pub const TIMER: &str = "system:timer";
    pub const WORKER: &str = "system:worker";
}

/// Transactions of due timers [`Orchestrator::fire_due_timers`] runs at
/// once, at most: as with reports, more than twice the store's writers
/// only queue for its connections.
pub const TIMERS_AT_ONCE: usize = 8;

/// Cases changed in one transaction, at most, when several are ready at
/// once (due timers); reports come in batches of the same size.
pub const CASES_TOGETHER: usize = docket_workers::redis::REPORTS_PER_BATCH;

/// Everything a decision needs besides the case, shared by all loops.
#[derive(Debug)]
pub struct Orchestrator<S> {
    pub store: Arc<S>,
    pub registry: Registry,
    pub calendars: BTreeMap<String, Calendar>,
    pub contacts: BTreeMap<String, String>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdGen>,
}

impl<S: Store> Orchestrator<S> {
    /// Starts a case of the newest deployed version of `workflow`.
    pub async fn start(
        &self,
        workflow: &str,
        input: Data,
        actor: &str,
    ) -> Result<CaseState, RuntimeError> {
        let record = self
            .store
            .latest_definition(workflow)
            .await?
            .ok_or_else(|| RuntimeError::UnknownWorkflow(workflow.to_owned()))?;
        let definition = self.registry.get(&*self.store, record.id).await?;
        let now = self.clock.now();
        let decision = engine::start(self.context(&definition, now), &self.ids.case_id(), input)?;
        self.store
            .insert_case(record.id, &decision, actor, now)
            .await?;
        Ok(decision.state)
    }

    /// Applies a command to a case under its row lock.
    pub async fn apply(
        &self,
        case_id: &str,
        command: Command,
        actor: &str,
        lock: Lock,
    ) -> Result<Updated, RuntimeError> {
        let definition = self.definition_of(case_id).await?;
        let now = self.clock.now();
        let decide = |record: &CaseRecord| {
            engine::decide(self.context(&definition, now), &record.state, command)
        };
        Ok(self
            .store
            .update_case(case_id, lock, actor, now, decide)
            .await?)
    }

    pub async fn signal(
        &self,
        case_id: &str,
        event: &str,
        data: Data,
        actor: &str,
    ) -> Result<Updated, RuntimeError> {
        let command = Command::Signal {
            event: event.to_owned(),
            data,
        };
        self.apply(case_id, command, actor, Lock::Wait).await
    }

    /// Applies a worker's report. The case is named by the attempt id. A
    /// report on a schedule's message moves its firing instead and changes
    /// no case: it returns [`Updated::Unchanged`].
    pub async fn complete(
        &self,
        attempt_id: &str,
        outcome: Outcome,
    ) -> Result<Updated, RuntimeError> {
        if is_firing_attempt(attempt_id) {
            self.complete_firing(attempt_id, outcome).await?;
            return Ok(Updated::Unchanged);
        }
        let case_id = case_of(attempt_id)?;
        let command = Command::Complete {
            attempt_id: attempt_id.to_owned(),
            outcome,
        };
        self.apply(case_id, command, actor::WORKER, Lock::Wait)
            .await
    }

    /// Applies workers' reports that arrived together, with a result each,
    /// in their order: those on distinct cases in one go
    /// ([`Orchestrator::apply_together`]), the others (a schedule's
    /// message, a second report on a case) one at a time.
    pub async fn complete_all(
        &self,
        reports: Vec<(String, Outcome)>,
    ) -> Vec<Result<Updated, RuntimeError>> {
        let mut together = Vec::new();
        let mut alone = Vec::new();
        let mut cases = HashSet::new();
        for (index, (attempt_id, outcome)) in reports.into_iter().enumerate() {
            match case_of(&attempt_id) {
                Ok(case_id)
                    if !is_firing_attempt(&attempt_id) && cases.insert(case_id.to_owned()) =>
                {
                    let case_id = case_id.to_owned();
                    let command = Command::Complete {
                        attempt_id,
                        outcome,
                    };
                    together.push((index, case_id, command));
                }
                _ => alone.push((index, attempt_id, outcome)),
            }
        }
        let mut done = self
            .apply_together(together, actor::WORKER, Lock::Wait)
            .await;
        for (index, attempt_id, outcome) in alone {
            done.push((index, self.complete(&attempt_id, outcome).await));
        }
        done.sort_by_key(|(index, _)| *index);
        done.into_iter().map(|(_, result)| result).collect()
    }

    /// Applies commands to distinct cases in one go
    /// ([`Store::update_cases`]: one transaction on PostgreSQL); each
    /// result keeps the index it was given with. Should the batch fail as a
    /// whole (a deadlock, a lost connection), each command is applied on
    /// its own instead, so one case cannot hold up the others.
    async fn apply_together(
        &self,
        commands: Vec<(usize, String, Command)>,
        actor: &str,
        lock: Lock,
    ) -> Vec<(usize, Result<Updated, RuntimeError>)> {
        let mut done = Vec::with_capacity(commands.len());
        let mut known = Vec::with_capacity(commands.len());
        for (index, case_id, command) in commands {
            match self.definition_of(&case_id).await {
                Ok(definition) => known.push((index, case_id, definition, command)),
                Err(e) => done.push((index, Err(e))),
            }
        }
        let now = self.clock.now();
        let decides = known
            .iter()
            .map(|(_, case_id, definition, command)| {
                let decide = move |record: &CaseRecord| {
                    engine::decide(
                        self.context(definition, now),
                        &record.state,
                        command.clone(),
                    )
                };
                (case_id.clone(), decide)
            })
            .collect();
        match self.store.update_cases(decides, lock, actor, now).await {
            Ok(results) => done.extend(
                known
                    .iter()
                    .zip(results)
                    .map(|((index, ..), result)| (*index, result.map_err(RuntimeError::from))),
            ),
            Err(e) => {
                tracing::warn!(error = %e, cases = known.len(), "cases could not be changed together; changing them one at a time");
                for (index, case_id, _, command) in known {
                    done.push((index, self.apply(&case_id, command, actor, lock).await));
                }
            }
        }
        done
    }

    /// What a decision on `workflow` at `now` is made with.
    fn context<'a>(&'a self, workflow: &'a Workflow, now: DateTime<Utc>) -> Context<'a> {
        Context {
            workflow,
            calendars: &self.calendars,
            contacts: &self.contacts,
            now,
        }
    }

    /// The workflow a case runs on.
    async fn definition_of(&self, case_id: &str) -> Result<Arc<Workflow>, RuntimeError> {
        let definition_id = self
            .registry
            .case_definition(&*self.store, case_id)
            .await?
            .ok_or_else(|| RuntimeError::UnknownCase(case_id.to_owned()))?;
        Ok(self.registry.get(&*self.store, definition_id).await?)
    }

    /// Fires the timers that are due; returns how many changed a case.
    /// A case another orchestrator is working on is skipped this round.
    ///
    /// Cases are taken [`CASES_TOGETHER`] to a transaction
    /// ([`Orchestrator::apply_together`]), a few transactions at a time
    /// ([`TIMERS_AT_ONCE`]), so while one waits on the database another is
    /// decided (10,000 timers falling due together: BENCHMARKS.md). The
    /// timers of one case fire one after the other, earliest first: the
    /// first due of every case, then the second, and so on.
    pub async fn fire_due_timers(&self, limit: u32) -> Result<usize, RuntimeError> {
        use futures_util::StreamExt;
        let due = self.store.due_timers(self.clock.now(), limit).await?;
        let cases: Vec<String> = due.iter().map(|t| t.case_id.clone()).collect();
        let mut rounds: Vec<Vec<(usize, String, Command)>> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (index, timer) in due.into_iter().enumerate() {
            let nth = seen.entry(timer.case_id.clone()).or_default();
            if rounds.len() <= *nth {
                rounds.push(Vec::new());
            }
            let command = Command::FireTimer { timer_id: timer.id };
            rounds[*nth].push((index, timer.case_id, command));
            *nth += 1;
        }
        let at_once = TIMERS_AT_ONCE.min(self.store.writers().saturating_mul(2));
        let cases = &cases;
        let mut fired = 0;
        for round in rounds {
            fired += futures_util::stream::iter(round)
                .chunks(CASES_TOGETHER)
                .map(|batch| async move {
                    let results = self
                        .apply_together(batch, actor::TIMER, Lock::SkipLocked)
                        .await;
                    let mut fired = 0;
                    for (index, result) in results {
                        match result {
                            Ok(Updated::Written(_)) => fired += 1,
                            Ok(Updated::Unchanged | Updated::Busy) => {}
                            // A timer of a case that no longer loads must
                            // not stop the others from firing.
                            Err(e) => {
                                let case = cases.get(index).map(String::as_str).unwrap_or("?");
                                tracing::error!(case, error = %e, "timer could not fire")
                            }
                        }
                    }
                    fired
                })
                .buffer_unordered(at_once)
                .fold(0, |n, fired| async move { n + fired })
                .await;
        }
        Ok(fired)
    }
}

/// The case an attempt belongs to: the part of its id before the first `/`.
fn case_of(attempt_id: &str) -> Result<&str, RuntimeError> {
    attempt_id
        .split_once('/')
        .map(|(case, _)| case)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| RuntimeError::BadAttemptId(attempt_id.to_owned()))
}
