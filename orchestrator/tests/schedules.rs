//! A workflow schedule under a clock the test moves: each working morning
//! at 09:00 in Shanghai the desk gets one list of the permits due within
//! two working days. Runs the real engine, store, dispatcher loop and
//! schedule claims on SQLite, with the fixture `due-list` workflow.
#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Asia::Shanghai;
use docket::calendar::{self, Calendar};
use docket::engine::{Data, Job};
use docket::runtime::Orchestrator;
use docket::runtime::clock::{Clock, ManualClock, SequentialIds};
use docket::runtime::definitions::Registry;
use docket::runtime::dispatcher::{Transport, TransportError};
use docket::runtime::service::{Completion, Round, Settings, round};
use docket::store::sqlite::SqliteStore;
use docket::store::{Firing, FiringStatus, Store};
use docket_workers::contract::Outcome;
use futures_util::future::BoxFuture;
use serde_json::json;
use tokio::sync::mpsc;

const WORKFLOW: &str = "due-list";
const SCHEDULE: &str = "morning_due_list";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture() -> PathBuf {
    repo().join("orchestrator/tests/fixtures/valid/due-list.yaml")
}

/// A time in Shanghai.
fn sh(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Shanghai
        .with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .expect("a valid Shanghai time")
        .with_timezone(&Utc)
}

fn data(value: serde_json::Value) -> Data {
    value.as_object().cloned().unwrap_or_default()
}

/// Keeps what the dispatcher hands over, as a worker pool would receive it.
#[derive(Debug, Default)]
struct Recorder {
    jobs: Mutex<Vec<Job>>,
}

impl Recorder {
    fn take(&self) -> Vec<Job> {
        std::mem::take(&mut *self.jobs.lock().unwrap())
    }
}

impl Transport for Recorder {
    fn push(&self, job: Job) -> BoxFuture<'_, Result<(), TransportError>> {
        self.jobs.lock().unwrap().push(job);
        Box::pin(async { Ok(()) })
    }
}

/// One orchestrator process: its own connection to the shared database,
/// the shared clock, its own transport.
struct Node {
    orch: Orchestrator<SqliteStore>,
    transport: Recorder,
    completions: mpsc::UnboundedReceiver<Completion>,
    _reports: mpsc::UnboundedSender<Completion>,
}

impl Node {
    async fn open(db: &Path, clock: &Arc<ManualClock>) -> Node {
        let calendars: BTreeMap<String, Calendar> =
            calendar::load_dir(&repo().join("workflows/calendars"))
                .expect("calendars")
                .into_iter()
                .map(|c| (c.name().to_owned(), c))
                .collect();
        let store = Arc::new(
            SqliteStore::open(&db.to_string_lossy())
                .await
                .expect("sqlite")
                .with_data_keys(
                    // Every node of the test reads what the others wrote.
                    docket::privacy::DataKeys::parse(
                        "test:ZG9ja2V0LWRhdGEta2V5LTAxMjM0NTY3ODlhYmNkZWY=",
                    )
                    .expect("keys"),
                ),
        );
        store.migrate().await.expect("migrate");
        let registry = Registry::new(&calendars);
        registry
            .deploy(&*store, &fixture(), clock.now())
            .await
            .expect("deploy");
        let orch = Orchestrator {
            store,
            registry,
            calendars,
            contacts: BTreeMap::from([("desk".to_owned(), "desk@station.example".to_owned())]),
            clock: Arc::clone(clock) as Arc<dyn Clock>,
            ids: Arc::new(SequentialIds::new("DL")),
        };
        orch.sync_schedules().await.expect("sync");
        let (reports, completions) = mpsc::unbounded_channel();
        Node {
            orch,
            transport: Recorder::default(),
            completions,
            _reports: reports,
        }
    }

    async fn round(&mut self) -> Round {
        round(
            &self.orch,
            &self.transport,
            &mut self.completions,
            Settings::default(),
            true,
        )
        .await
        .expect("a round")
    }

    /// Rounds until there is nothing left to do at this moment.
    async fn settle(&mut self) {
        while !self.round().await.is_idle() {}
    }

    async fn firings(&self) -> Vec<Firing> {
        self.orch
            .store
            .firings(WORKFLOW, SCHEDULE, 100)
            .await
            .expect("firings")
    }

    /// Plays the worker: every message the transport got is delivered.
    async fn deliver(&self) -> Vec<Job> {
        let jobs = self.transport.take();
        for job in &jobs {
            self.orch
                .complete(&job.attempt_id, Outcome::succeeded("sent"))
                .await
                .expect("complete");
        }
        jobs
    }
}

/// A database file of its own for each test.
fn database(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("docket-schedules-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir.join("docket.sqlite")
}

fn ticks(firings: &[Firing]) -> Vec<DateTime<Utc>> {
    firings.iter().map(|f| f.tick_at).collect()
}

#[tokio::test]
async fn missed_ticks_fire_once_days_off_are_passed_over() {
    let db = database("catch-up");
    // Friday 27 February 2026: case DL-1 is accepted; its 5 working days
    // (Saturday 28 February is a make-up workday) end with Thursday 5 March.
    let clock = Arc::new(ManualClock::new(sh(2026, 2, 27, 10, 0)));
    let mut node = Node::open(&db, &clock).await;
    let rows = node.orch.store.schedules().await.expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].next_at,
        Some(sh(2026, 2, 27, 9, 0) + chrono::Duration::days(1))
    );
    let input = data(json!({"applicant_name": "张三"}));
    let first = node
        .orch
        .start(WORKFLOW, input.clone(), "test")
        .await
        .expect("start");
    node.orch
        .signal(&first.id, "accepted", Data::new(), "test")
        .await
        .expect("accept");
    node.settle().await;
    // Saturday 28 February, a make-up workday: the morning list goes out.
    clock.advance_to(sh(2026, 2, 28, 9, 0));
    node.settle().await;
    assert_eq!(ticks(&node.firings().await), [sh(2026, 2, 28, 9, 0)]);
    assert_eq!(
        node.firings().await[0].status,
        FiringStatus::NothingDue,
        "due after Tuesday's end: not yet within 2 working days"
    );

    // Monday 2 March 08:00: DL-2 is accepted (due with Monday 9 March); then
    // every orchestrator is down until Wednesday 10:00, across the ticks of
    // Monday, Tuesday and Wednesday (and Sunday's, a day off).
    clock.advance_to(sh(2026, 3, 2, 8, 0));
    let second = node
        .orch
        .start(WORKFLOW, input, "test")
        .await
        .expect("start");
    node.orch
        .signal(&second.id, "accepted", Data::new(), "test")
        .await
        .expect("accept");
    node.transport.take();
    clock.advance_to(sh(2026, 3, 4, 10, 0));
    node.settle().await;
    let firings = node.firings().await;
    assert_eq!(
        ticks(&firings),
        [sh(2026, 3, 4, 9, 0), sh(2026, 2, 28, 9, 0)],
        "one firing for the latest missed tick"
    );
    let wednesday = &firings[0];
    assert_eq!(wednesday.status, FiringStatus::Sending);
    assert_eq!(wednesday.cases, 1);
    assert_eq!(wednesday.fired_at, clock.now());
    let rows = node.orch.store.schedules().await.expect("rows");
    assert_eq!(rows[0].next_at, Some(sh(2026, 3, 5, 9, 0)));

    // The message went to the transport like any job, and lists only ids
    // and due dates.
    let sent = node.deliver().await;
    assert_eq!(sent.len(), 1);
    let message = &sent[0];
    assert_eq!(message.attempt_id, wednesday.attempt_id.clone().unwrap());
    assert_eq!(message.params["to"], "desk@station.example");
    assert_eq!(
        message.params["body"],
        format!("Case {} must be issued by 2026-03-05.", first.id)
    );
    assert!(!serde_json::to_string(message).unwrap().contains("张三"));
    node.settle().await;
    let wednesday = &node.firings().await[0];
    assert_eq!(wednesday.status, FiringStatus::Sent);
    assert_eq!(wednesday.finished_at, Some(clock.now()));
    // A duplicate report changes nothing.
    node.orch
        .complete(&message.attempt_id, Outcome::succeeded("sent"))
        .await
        .expect("a duplicate");
    assert_eq!(node.firings().await[0].status, FiringStatus::Sent);

    // Thursday lists both; DL-1's deadline expires at its end, so Friday
    // lists DL-2 alone. Saturday's and Sunday's ticks pass without a
    // firing; Monday's goes out.
    for (day, listed) in [(5, 2), (6, 1), (7, 0), (8, 0), (9, 1)] {
        clock.advance_to(sh(2026, 3, day, 9, 0));
        node.settle().await;
        let sent = node.deliver().await;
        assert_eq!(sent.len(), usize::from(listed > 0), "3-{day}");
        if let Some(message) = sent.first() {
            let body = message.params["body"].as_str().unwrap();
            assert_eq!(body.lines().count(), listed, "3-{day}: {body}");
        }
        node.settle().await;
    }
    let firings = node.firings().await;
    assert_eq!(
        ticks(&firings[..3]),
        [
            sh(2026, 3, 9, 9, 0),
            sh(2026, 3, 6, 9, 0),
            sh(2026, 3, 5, 9, 0)
        ],
        "no firing on Saturday or Sunday"
    );
    assert!(firings[..3].iter().all(|f| f.status == FiringStatus::Sent));

    // A tick in a year the calendar does not cover is recorded as failed,
    // naming the calendar's error: never fired or skipped on a guess.
    clock.advance_to(sh(2027, 1, 4, 9, 30));
    node.settle().await;
    let failed = &node.firings().await[0];
    assert_eq!(failed.tick_at, sh(2027, 1, 4, 9, 0));
    assert_eq!(failed.status, FiringStatus::Failed);
    let error = failed.outcome.clone().unwrap();
    assert!(
        error.contains("cn-mainland") && error.contains("2027"),
        "{error}"
    );
    assert!(node.transport.take().is_empty());
    let _ = std::fs::remove_dir_all(db.parent().unwrap());
}

#[tokio::test]
async fn a_failed_message_is_retried_and_a_lost_report_times_out() {
    let db = database("retry");
    let clock = Arc::new(ManualClock::new(sh(2026, 3, 2, 8, 0)));
    let mut node = Node::open(&db, &clock).await;
    let case = node
        .orch
        .start(WORKFLOW, data(json!({"applicant_name": "张三"})), "test")
        .await
        .expect("start");
    node.orch
        .signal(&case.id, "accepted", Data::new(), "test")
        .await
        .expect("accept");
    // Thursday 5 March: DL-1 is due with Monday 9 March, 2 working days on.
    clock.advance_to(sh(2026, 3, 5, 9, 0));
    node.settle().await;
    let first = node.transport.take();
    assert_eq!(first.len(), 1);
    node.orch
        .complete(
            &first[0].attempt_id,
            Outcome::retryable("unavailable", "the mail server is away"),
        )
        .await
        .expect("report");
    let firing = &node.firings().await[0];
    assert_eq!(firing.status, FiringStatus::Retrying);

    // Ten seconds on, the second attempt goes out; its report is lost, so
    // it times out and a third goes out after the backoff.
    clock.advance_to(sh(2026, 3, 5, 9, 0) + chrono::Duration::seconds(10));
    node.settle().await;
    let second = node.transport.take();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].attempt, 2);
    assert_eq!(second[0].params, first[0].params);
    clock.advance_to(clock.now() + chrono::Duration::minutes(1));
    node.settle().await;
    assert_eq!(node.firings().await[0].status, FiringStatus::Retrying);
    clock.advance_to(clock.now() + chrono::Duration::minutes(1));
    node.settle().await;
    let third = node.deliver().await;
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].attempt, 3);
    // The lost report of attempt 2 turns up late: ignored.
    node.orch
        .complete(&second[0].attempt_id, Outcome::succeeded("sent"))
        .await
        .expect("late report");
    let firing = &node.firings().await[0];
    assert_eq!((firing.status, firing.attempt), (FiringStatus::Sent, 3));
    let _ = std::fs::remove_dir_all(db.parent().unwrap());
}

#[tokio::test]
async fn two_orchestrators_fire_each_tick_once() {
    let db = database("replicas");
    let clock = Arc::new(ManualClock::new(sh(2026, 3, 2, 8, 0)));
    let mut a = Node::open(&db, &clock).await;
    let mut b = Node::open(&db, &clock).await;
    let case = a
        .orch
        .start(WORKFLOW, data(json!({"applicant_name": "张三"})), "test")
        .await
        .expect("start");
    a.orch
        .signal(&case.id, "accepted", Data::new(), "test")
        .await
        .expect("accept");
    let mut messages = 0;
    for day in 2..=9 {
        clock.advance_to(sh(2026, 3, day, 9, 0));
        tokio::join!(a.settle(), b.settle());
        messages += a.deliver().await.len() + b.deliver().await.len();
        tokio::join!(a.settle(), b.settle());
    }
    let firings = a.firings().await;
    let days: Vec<u32> = firings
        .iter()
        .map(|f| {
            use chrono::Datelike;
            f.tick_at.with_timezone(&Shanghai).day()
        })
        .rev()
        .collect();
    assert_eq!(days, [2, 3, 4, 5, 6, 9], "each working day once");
    let sent = firings
        .iter()
        .filter(|f| f.status == FiringStatus::Sent)
        .count();
    assert_eq!(messages, sent, "one message per firing that listed a case");
    assert!(sent >= 2, "{firings:?}");
    let _ = std::fs::remove_dir_all(db.parent().unwrap());
}
