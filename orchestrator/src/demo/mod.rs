//! `orchestrator demo`: three residence-permit cases from application to
//! collection, in one process on one SQLite file, with the real engine,
//! store, dispatcher and handlers. Simulated applicants and police act at
//! realistic moments, Docket's HTTP simulator of the government services
//! answers the handlers, and a manual
//! clock jumps to the next scheduled moment, so weeks pass in seconds.
//!
//! - `actors`: the scripts of the applicants and the police.
//! - [`services`]: the services' simulator over HTTP, and the kept messages.
//! - [`timeline`]: printing a case's history for people.

mod actors;
pub mod services;
pub mod timeline;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use crate::calendar::{self, Calendar};
use crate::engine::{Phase, Status};
use crate::runtime::clock::{Clock, ManualClock, SequentialIds};
use crate::runtime::definitions::Registry;
use crate::runtime::service::{Settings, round};
use crate::runtime::{Orchestrator, RuntimeError, embedded};
use crate::store::{Store, StoreError};
use actors::{Act, Scenario};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Calendar(#[from] calendar::CalendarError),
    #[error(transparent)]
    Deploy(#[from] crate::runtime::definitions::DeployError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Definition(#[from] crate::runtime::definitions::DefinitionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Services(#[from] services::ServicesError),
    #[error("writing the report failed")]
    Output(#[from] std::io::Error),
}

/// The cases' results: `true` when every case ended as expected.
#[derive(Debug)]
pub struct Report {
    pub all_as_expected: bool,
}

/// Runs the demo on `store` with the workflows in `workflows`, writing the
/// timelines to `out`.
pub async fn run<S: Store>(
    store: Arc<S>,
    workflows: &Path,
    out: &mut dyn Write,
) -> Result<Report, DemoError> {
    let calendars: BTreeMap<String, Calendar> = calendar::load_dir(&workflows.join("calendars"))?
        .into_iter()
        .map(|c| (c.name().to_owned(), c))
        .collect();
    let start = chrono_tz::Asia::Shanghai
        .with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
        .single()
        .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
    let clock = Arc::new(ManualClock::new(start));
    store.migrate().await?;
    let registry = Registry::new(&calendars);
    registry.deploy(&*store, workflows, clock.now()).await?;
    let orch = Orchestrator {
        store: Arc::clone(&store),
        registry,
        calendars,
        contacts: [
            ("station", "residence-desk@station.example"),
            ("supervisor", "duty-supervisor@station.example"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        clock: Arc::clone(&clock) as Arc<dyn Clock>,
        ids: Arc::new(SequentialIds::new("demo")),
    };
    let outbox = Arc::new(services::Outbox::default());
    let services = services::start(true, Arc::clone(&outbox)).await?;
    let mut embedded = embedded::start(services.handlers, 8);

    writeln!(
        out,
        "Docket demo: three Quanzhou residence-permit applications, run by the real engine on a SQLite file.\n\
         Simulated time: the clock jumps to the next scheduled moment, so weeks pass in seconds.\n\
         Times are Asia/Shanghai.\n"
    )?;
    let settings = Settings {
        poll: Duration::from_millis(5),
        ..Settings::default()
    };
    let scenarios = actors::scenarios();
    let mut cases = Vec::new();
    for (i, scenario) in scenarios.iter().enumerate() {
        clock.advance_to(start + chrono::Duration::minutes(10 * i as i64));
        let state = orch
            .start("residence-permit", scenario.input.clone(), "applicant")
            .await?;
        settle(&orch, &mut embedded, settings).await?;
        cases.push(Driven {
            id: state.id,
            scenario: scenario.clone(),
            next_act: 0,
            pending: None,
        });
    }

    loop {
        settle(&orch, &mut embedded, settings).await?;
        let now = clock.now();
        let mut next: Option<DateTime<Utc>> = orch.store.next_timer().await?;
        let mut any_active = false;
        for case in &mut cases {
            let state = orch.store.case(&case.id).await?.map(|r| r.state);
            let Some(state) = state.filter(|s| s.status.is_active()) else {
                continue;
            };
            any_active = true;
            if case.pending.is_none()
                && state.phase == Phase::Waiting
                && let Some(act) = case
                    .scenario
                    .acts
                    .get(case.next_act)
                    .filter(|a| a.step == state.step)
            {
                case.pending = Some((now + act.after, act.clone()));
                case.next_act += 1;
            }
            if let Some((at, _)) = &case.pending {
                next = Some(next.map_or(*at, |n| n.min(*at)));
            }
        }
        // Ended cases keep follow-up timers for years: the story is over
        // when every case has ended.
        let Some(next) = next.filter(|_| any_active) else {
            break;
        };
        clock.advance_to(next);
        for case in &mut cases {
            if let Some((at, act)) = case.pending.take() {
                if at <= clock.now() {
                    let data = act.data.as_object().cloned().unwrap_or_default();
                    orch.signal(&case.id, act.event, data, act.actor).await?;
                } else {
                    case.pending = Some((at, act));
                }
            }
        }
    }

    let mut all_as_expected = true;
    for case in &cases {
        let history = orch.store.history(&case.id).await?;
        let state = orch.store.case(&case.id).await?.map(|r| r.state);
        let outcome = match state.as_ref().map(|s| &s.status) {
            Some(Status::Completed { outcome }) => outcome.clone(),
            Some(other) => other.label(),
            None => "missing".to_owned(),
        };
        let ok = outcome == case.scenario.expected;
        all_as_expected &= ok;
        writeln!(out, "Case {} — {}", case.id, case.scenario.label)?;
        let workflow = orch
            .registry
            .get(
                &*orch.store,
                orch.store
                    .case(&case.id)
                    .await?
                    .map_or(0, |r| r.definition_id),
            )
            .await?;
        timeline::write(out, &workflow, &history)?;
        let sent = outbox
            .sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for message in sent
            .iter()
            .filter(|m| m.key.starts_with(&format!("{}/", case.id)))
        {
            let to = if message.channel == "email" {
                "station"
            } else {
                "applicant"
            };
            writeln!(
                out,
                "  message to the {to} ({}): {}",
                message.channel,
                message.body.trim()
            )?;
        }
        drop(sent);
        writeln!(
            out,
            "Case {}: {} — expected {}: {}\n",
            case.id,
            outcome,
            case.scenario.expected,
            if ok { "as expected" } else { "NOT AS EXPECTED" }
        )?;
    }
    let messages = outbox.sent.lock().map(|m| m.len()).unwrap_or(0);
    writeln!(
        out,
        "{} case(s), {} as expected; {messages} message(s) delivered to applicants and stations.",
        cases.len(),
        cases.len() - usize::from(!all_as_expected)
    )?;
    embedded.worker.abort();
    // The demo is over either way; a slow stop of the simulator changes nothing.
    let _ = services.simulator.shutdown().await;
    Ok(Report { all_as_expected })
}

/// A demo case and where its script has got to.
#[derive(Debug)]
struct Driven {
    id: String,
    scenario: Scenario,
    next_act: usize,
    pending: Option<(DateTime<Utc>, Act)>,
}

/// Runs the loops until no job is waiting or out with the workers and no
/// timer is due: the moment to let time pass.
async fn settle<S: Store>(
    orch: &Orchestrator<S>,
    embedded: &mut embedded::Embedded,
    settings: Settings,
) -> Result<(), DemoError> {
    let queues = ["identity", "intranet", "materials", "notify"];
    loop {
        let done = round(
            orch,
            &*embedded.transport,
            &mut embedded.completions,
            settings,
            true,
        )
        .await?;
        if !done.is_idle() {
            continue;
        }
        let mut out = 0;
        for q in queues {
            out += orch.store.dispatched_unfinished(q).await?;
        }
        if out == 0 && orch.store.waiting_jobs(None, 1).await?.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(settings.poll).await;
    }
}
