//! Commands an operator runs against cases: start, signal, status,
//! history, cancel, retry, extend. Each applies its change directly to the
//! database in one transaction; a running `orchestrator serve` dispatches
//! the jobs it schedules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use docket::calendar::{self, Calendar};
use docket::definition::period::Period;
use docket::engine::{Command, Data, Extension};
use docket::privacy::marker;
use docket::runtime::Orchestrator;
use docket::runtime::clock::{Clock, SystemClock, UuidGen};
use docket::runtime::definitions::Registry;
use docket::store::{CaseFilter, Lock, Store, Updated};

use super::store::{DatabaseArgs, with_store};

/// Where the workflows are and how to reach the database and contacts.
#[derive(Debug, Args)]
pub struct Setup {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// The folder of workflow files (with `calendars/`), deployed on start.
    #[arg(long, env = "DOCKET_WORKFLOWS", default_value = "workflows")]
    pub workflows: PathBuf,
    /// A contact's address, `NAME=ADDRESS`; repeat for each contact.
    #[arg(long = "contact", env = "DOCKET_CONTACTS", value_delimiter = ',')]
    pub contacts: Vec<String>,
}

impl Setup {
    pub fn contacts(&self) -> anyhow::Result<BTreeMap<String, String>> {
        self.contacts
            .iter()
            .map(|c| match c.split_once('=') {
                Some((name, address)) if !name.is_empty() && !address.is_empty() => {
                    Ok((name.trim().to_owned(), address.trim().to_owned()))
                }
                _ => bail!("--contact takes NAME=ADDRESS, not `{c}`"),
            })
            .collect()
    }

    /// Migrates the store, deploys the workflow files and returns the
    /// orchestrator.
    pub async fn orchestrator<S: Store>(
        &self,
        store: Arc<S>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Orchestrator<S>> {
        store.migrate().await.context("migrating the database")?;
        let calendars = load_calendars(&self.workflows)?;
        let registry = Registry::new(&calendars);
        registry
            .deploy(&*store, &self.workflows, clock.now())
            .await?;
        Ok(Orchestrator {
            store,
            registry,
            calendars,
            contacts: self.contacts()?,
            clock,
            ids: Arc::new(UuidGen),
        })
    }
}

/// The calendars in `calendars/` beside the workflows; none when there is
/// no such folder.
pub fn load_calendars(workflows: &Path) -> anyhow::Result<BTreeMap<String, Calendar>> {
    let dir = workflows.join("calendars");
    if !dir.exists() {
        return Ok(BTreeMap::new());
    }
    Ok(calendar::load_dir(&dir)?
        .into_iter()
        .map(|c| (c.name().to_owned(), c))
        .collect())
}

fn read_json(path: &Path) -> anyhow::Result<Data> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => bail!("{}: expected a JSON object of fields", path.display()),
        Err(e) => bail!("{}:{}:{}: {e}", path.display(), e.line(), e.column()),
    }
}

/// What every case command needs.
#[derive(Debug, Args)]
pub struct Common {
    #[command(flatten)]
    setup: Setup,
    /// Who is acting, recorded in the history.
    #[arg(long, env = "DOCKET_ACTOR", default_value = "operator:cli")]
    actor: String,
}

#[derive(Debug, Subcommand)]
pub enum CaseCommand {
    /// Start a case of the newest deployed version of a workflow; prints its id.
    Start {
        workflow: String,
        /// The case input, a JSON object.
        #[arg(long)]
        input: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Send an event to a case.
    Signal {
        case: String,
        event: String,
        /// The event's data, a JSON object.
        #[arg(long)]
        data: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Show a case's step, status, deadlines and timers.
    Status {
        case: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// List cases, newest first.
    Cases {
        #[arg(long)]
        workflow: Option<String>,
        /// `active`, `completed` or `cancelled`.
        #[arg(long)]
        status: Option<String>,
        /// Cases at this step.
        #[arg(long)]
        step: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Show a case's history.
    History {
        case: String,
        #[arg(long)]
        json: bool,
        /// Show personal data in clear in `--json` (masked otherwise).
        #[arg(long, requires = "json")]
        reveal: bool,
        #[command(flatten)]
        common: Common,
    },
    /// End a case.
    Cancel {
        case: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        common: Common,
    },
    /// Run a failed step again with a fresh retry budget.
    Retry {
        case: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        common: Common,
    },
    /// List the workflows' schedules, their next tick and latest firings.
    Schedules {
        /// Firings shown per schedule, latest first.
        #[arg(long, default_value_t = 5)]
        firings: u32,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Extend a running deadline to a new total limit, within the
    /// workflow's `extendable_to`.
    Extend {
        case: String,
        /// The deadline step, e.g. `issuance_limit`.
        deadline: String,
        /// The new limit in total, counted like the original (`30days`).
        #[arg(long, value_parser = parse_period)]
        to: Period,
        #[arg(long)]
        reason: String,
        /// The rule that allows it, e.g. `Decree 663 Art. 9; city notice 2024-7`.
        #[arg(long)]
        legal_basis: String,
        #[command(flatten)]
        common: Common,
    },
}

fn parse_period(text: &str) -> Result<Period, String> {
    Period::parse(text)
}

impl CaseCommand {
    fn common(&self) -> &Common {
        match self {
            CaseCommand::Start { common, .. }
            | CaseCommand::Signal { common, .. }
            | CaseCommand::Status { common, .. }
            | CaseCommand::History { common, .. }
            | CaseCommand::Cases { common, .. }
            | CaseCommand::Cancel { common, .. }
            | CaseCommand::Retry { common, .. }
            | CaseCommand::Extend { common, .. }
            | CaseCommand::Schedules { common, .. } => common,
        }
    }

    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let backend = self.common().setup.db.open().await?;
        with_store!(backend, store => self.run_on(store).await)
    }

    async fn run_on<S: Store>(&self, store: Arc<S>) -> anyhow::Result<ExitCode> {
        let common = self.common();
        let orch = common
            .setup
            .orchestrator(store, Arc::new(SystemClock))
            .await?;
        let actor = common.actor.as_str();
        let applied = match self {
            CaseCommand::Start {
                workflow, input, ..
            } => {
                let state = orch.start(workflow, read_json(input)?, actor).await?;
                println!("{}", state.id);
                return Ok(ExitCode::SUCCESS);
            }
            CaseCommand::Signal {
                case, event, data, ..
            } => {
                let data = data
                    .as_deref()
                    .map(read_json)
                    .transpose()?
                    .unwrap_or_default();
                orch.signal(case, event, data, actor).await?
            }
            CaseCommand::Cancel { case, reason, .. } => {
                let command = Command::Cancel {
                    reason: reason.clone(),
                };
                orch.apply(case, command, actor, Lock::Wait).await?
            }
            CaseCommand::Retry { case, reason, .. } => {
                let command = Command::RetryStep {
                    reason: reason.clone(),
                };
                orch.apply(case, command, actor, Lock::Wait).await?
            }
            CaseCommand::Extend {
                case,
                deadline,
                to,
                reason,
                legal_basis,
                ..
            } => {
                let command = Command::ExtendDeadline(Extension {
                    deadline: deadline.clone(),
                    to: *to,
                    reason: reason.clone(),
                    legal_basis: legal_basis.clone(),
                });
                orch.apply(case, command, actor, Lock::Wait).await?
            }
            CaseCommand::Schedules { firings, json, .. } => {
                return schedules(&orch, *firings, *json).await;
            }
            CaseCommand::Status { case, json, .. } => return status(&orch, case, *json).await,
            CaseCommand::History {
                case, json, reveal, ..
            } => return history(&orch, case, *json, *reveal).await,
            CaseCommand::Cases {
                workflow,
                status,
                step,
                limit,
                json,
                ..
            } => {
                let filter = CaseFilter {
                    workflow: workflow.clone(),
                    status: status.clone(),
                    step: step.clone(),
                    limit: Some(*limit),
                };
                let cases = orch.store.cases(&filter).await?;
                if *json {
                    println!("{}", serde_json::to_string_pretty(&cases)?);
                } else {
                    for c in &cases {
                        let outcome = c.outcome.as_deref().unwrap_or("");
                        println!(
                            "{}  {} v{}  {:<10} {:<28} {outcome}",
                            c.id, c.workflow, c.version, c.status, c.step
                        );
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
        };
        if let Updated::Written(decision) = applied {
            println!(
                "{}: {} at step {}",
                decision.state.id,
                decision.state.status.label(),
                decision.state.step
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

async fn schedules<S: Store>(
    orch: &Orchestrator<S>,
    limit: u32,
    json: bool,
) -> anyhow::Result<ExitCode> {
    // The workflows were deployed on start: show their schedules' next
    // ticks even before a `serve` has run.
    orch.sync_schedules().await?;
    let mut listed = Vec::new();
    for schedule in orch.store.schedules().await? {
        let firings = orch
            .store
            .firings(&schedule.workflow, &schedule.schedule, limit)
            .await?;
        listed.push((schedule, firings));
    }
    if json {
        let value: Vec<_> = listed
            .iter()
            .map(|(s, f)| serde_json::json!({"schedule": s, "firings": f}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    for (s, firings) in &listed {
        let tz: chrono_tz::Tz = s.timezone.parse().unwrap_or(chrono_tz::Tz::UTC);
        let local = |t: chrono::DateTime<chrono::Utc>| {
            t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
        };
        let next = match (s.retired_at, s.next_at) {
            (Some(_), _) => "retired".to_owned(),
            (None, Some(at)) => format!("next {} {}", local(at), s.timezone),
            (None, None) => "no tick left".to_owned(),
        };
        println!("{} {}  `{}`  {next}", s.workflow, s.schedule, s.cron);
        for f in firings {
            println!(
                "  {}  {:<11} {} case(s)  {}",
                local(f.tick_at),
                f.status.as_str(),
                f.cases,
                f.outcome.as_deref().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn status<S: Store>(
    orch: &Orchestrator<S>,
    case: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let Some(record) = orch.store.case(case).await? else {
        bail!("no case `{case}`");
    };
    let s = &record.state;
    if json {
        let value = serde_json::json!({
            "id": s.id,
            "workflow": s.workflow,
            "version": s.version,
            "status": s.status,
            "step": s.step,
            "phase": s.phase,
            "deadlines": s.deadlines,
            "timers": s.timers.values().collect::<Vec<_>>(),
            "started_at": s.started_at,
            "updated_at": s.updated_at,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("case      {}", s.id);
    println!("workflow  {} v{}", s.workflow, s.version);
    println!("status    {}", s.status.label());
    println!("step      {} ({:?})", s.step, s.phase);
    for (name, d) in &s.deadlines {
        let due = d
            .due
            .map_or_else(|| "not counted".to_owned(), |d| d.to_rfc3339());
        let extended = d
            .extended_to
            .map(|to| format!(", extended to {to}"))
            .unwrap_or_default();
        let paused = match d.pauses.len() {
            0 => String::new(),
            n => format!(", paused {n} time(s)"),
        };
        println!(
            "deadline  {name}: due {due}, {:?}{extended}{paused}",
            d.status
        );
    }
    for t in s.timers.values() {
        println!("timer     {} at {}", t.id, t.due.to_rfc3339());
    }
    Ok(ExitCode::SUCCESS)
}

async fn history<S: Store>(
    orch: &Orchestrator<S>,
    case: &str,
    json: bool,
    reveal: bool,
) -> anyhow::Result<ExitCode> {
    let Some(record) = orch.store.case(case).await? else {
        bail!("no case `{case}`");
    };
    let events = orch.store.history(case).await?;
    if json {
        let events = serde_json::to_value(&events)?;
        let events = if reveal {
            marker::revealed(events)
        } else {
            marker::masked(events)
        };
        println!("{}", serde_json::to_string_pretty(&events)?);
        return Ok(ExitCode::SUCCESS);
    }
    let workflow = orch
        .registry
        .get(&*orch.store, record.definition_id)
        .await?;
    docket::demo::timeline::write(&mut std::io::stdout().lock(), &workflow, &events)?;
    Ok(ExitCode::SUCCESS)
}
