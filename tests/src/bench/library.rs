//! Starting cases through the orchestrator's library, straight into the
//! store: how the benchmark parks 100,000 cases in minutes rather than
//! hours of HTTP requests. Each start is the same transaction `POST /cases`
//! and `orchestrator start` write.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use docket::privacy::DataKeys;
use docket::runtime::Orchestrator;
use docket::runtime::clock::{Clock, ManualClock, SystemClock, UuidGen};
use docket::runtime::definitions::Registry;
use docket::store::Store;
use docket::store::audit::AuditStore;
use docket::store::postgres::PgStore;
use docket::store::sqlite::SqliteStore;

use super::services::Db;

/// The orchestrator's library on one of the benchmark's databases.
#[derive(Debug, Clone)]
pub enum Lib {
    Postgres(Arc<Orchestrator<PgStore>>),
    Sqlite(Arc<Orchestrator<SqliteStore>>),
}

/// How [`Lib::start_many`] paces its starts.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// As fast as `tasks` concurrent starts go.
    Flat { tasks: usize },
    /// One start every `every`, whatever the previous ones do (an open
    /// loop, as requests arrive).
    Every(Duration),
}

impl Lib {
    /// Migrates `db`, deploys the benchmark workflows with `clock` and
    /// returns the library on it, sealing personal data (the benchmark
    /// workflows have none) under the master keys `data_keys`, as `serve`
    /// is given them.
    pub async fn open(
        db: &Db,
        workflows: &Path,
        data_keys: &str,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Lib> {
        let keys = DataKeys::parse(data_keys)?;
        Ok(match db {
            Db::Postgres { url, .. } => {
                let store = Arc::new(PgStore::connect(url).await?.with_data_keys(keys));
                Lib::Postgres(Arc::new(orchestrator(store, workflows, clock).await?))
            }
            Db::Sqlite { url, .. } => {
                let store = Arc::new(SqliteStore::open(url).await?.with_data_keys(keys));
                Lib::Sqlite(Arc::new(orchestrator(store, workflows, clock).await?))
            }
        })
    }

    /// The library with every case started at `at`.
    pub async fn at(
        db: &Db,
        workflows: &Path,
        data_keys: &str,
        at: DateTime<Utc>,
    ) -> anyhow::Result<Lib> {
        Lib::open(db, workflows, data_keys, Arc::new(ManualClock::new(at))).await
    }

    pub async fn system(db: &Db, workflows: &Path, data_keys: &str) -> anyhow::Result<Lib> {
        Lib::open(db, workflows, data_keys, Arc::new(SystemClock)).await
    }

    /// Starts `n` cases of `workflow` with an empty input; returns their
    /// ids.
    pub async fn start_many(
        &self,
        workflow: &str,
        n: usize,
        pace: Pace,
    ) -> anyhow::Result<Vec<String>> {
        match self {
            Lib::Postgres(orch) => start_many(orch, workflow, n, pace).await,
            Lib::Sqlite(orch) => start_many(orch, workflow, n, pace).await,
        }
    }

    /// Records the heads of the changed cases in the audit chain, as
    /// `serve` does every minute, so a measurement after it sees a
    /// settled orchestrator.
    pub async fn checkpoint(&self) -> anyhow::Result<()> {
        match self {
            Lib::Postgres(orch) => orch.store.checkpoint(Utc::now()).await?,
            Lib::Sqlite(orch) => orch.store.checkpoint(Utc::now()).await?,
        };
        Ok(())
    }
}

async fn orchestrator<S: Store>(
    store: Arc<S>,
    workflows: &Path,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Orchestrator<S>> {
    store.migrate().await.context("migrating")?;
    let calendars = BTreeMap::new();
    let registry = Registry::new(&calendars);
    registry
        .deploy(&*store, workflows, clock.now())
        .await
        .context("deploying the benchmark workflows")?;
    Ok(Orchestrator {
        store,
        registry,
        calendars,
        contacts: BTreeMap::new(),
        clock,
        ids: Arc::new(UuidGen),
    })
}

async fn start_many<S: Store>(
    orch: &Arc<Orchestrator<S>>,
    workflow: &str,
    n: usize,
    pace: Pace,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(n);
    match pace {
        Pace::Flat { tasks } => {
            let tasks = tasks.max(1);
            let mut running = Vec::new();
            for t in 0..tasks {
                let share = n / tasks + usize::from(t < n % tasks);
                let (orch, workflow) = (Arc::clone(orch), workflow.to_owned());
                running.push(tokio::spawn(async move {
                    let mut ids = Vec::with_capacity(share);
                    for _ in 0..share {
                        let state = orch
                            .start(&workflow, serde_json::Map::new(), "bench:library")
                            .await?;
                        ids.push(state.id);
                    }
                    anyhow::Ok(ids)
                }));
            }
            for task in running {
                ids.extend(task.await??);
            }
        }
        Pace::Every(every) => {
            let begun = Instant::now();
            let mut running = Vec::new();
            for k in 0..n {
                let at = begun + every.mul_f64(k as f64);
                tokio::time::sleep_until(at.into()).await;
                let (orch, workflow) = (Arc::clone(orch), workflow.to_owned());
                running.push(tokio::spawn(async move {
                    orch.start(&workflow, serde_json::Map::new(), "bench:library")
                        .await
                        .map(|s| s.id)
                }));
            }
            for task in running {
                ids.push(task.await??);
            }
        }
    }
    Ok(ids)
}
