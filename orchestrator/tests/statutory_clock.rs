//! A residence-permit case under a clock the test moves: acceptance starts
//! both statutory clocks, a request for supplementary materials pauses
//! them, an operator extends the issuance limit, the station is reminded
//! and both clocks expire. Runs the real engine, store and timer loop on
//! SQLite, and checks every deadline event with the time it was recorded.
#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Asia::Shanghai;
use docket::calendar::{self, Calendar};
use docket::definition::period::Period;
use docket::engine::{Command, Data, Extension, HistoryEvent};
use docket::runtime::Orchestrator;
use docket::runtime::clock::{Clock, ManualClock, SequentialIds};
use docket::runtime::definitions::Registry;
use docket::store::sqlite::SqliteStore;
use docket::store::{Lock, Store};
use docket_workers::contract::Outcome;
use serde_json::json;

fn workflows() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows")
}

fn at(m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Shanghai
        .with_ymd_and_hms(2026, m, d, h, min, 0)
        .single()
        .expect("a valid Shanghai time")
        .with_timezone(&Utc)
}

fn data(value: serde_json::Value) -> Data {
    value.as_object().cloned().unwrap_or_default()
}

struct Harness {
    orch: Orchestrator<SqliteStore>,
    clock: Arc<ManualClock>,
}

impl Harness {
    async fn new(start: DateTime<Utc>) -> Harness {
        let calendars: BTreeMap<String, Calendar> =
            calendar::load_dir(&workflows().join("calendars"))
                .expect("calendars")
                .into_iter()
                .map(|c| (c.name().to_owned(), c))
                .collect();
        let store = Arc::new(SqliteStore::in_memory().await.expect("sqlite"));
        store.migrate().await.expect("migrate");
        let clock = Arc::new(ManualClock::new(start));
        let registry = Registry::new(&calendars);
        registry
            .deploy(&*store, &workflows(), start)
            .await
            .expect("deploy");
        let contacts = [
            ("station", "desk@station.example"),
            ("supervisor", "duty@station.example"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let orch = Orchestrator {
            store,
            registry,
            calendars,
            contacts,
            clock: Arc::clone(&clock) as Arc<dyn Clock>,
            ids: Arc::new(SequentialIds::new("clock")),
        };
        Harness { orch, clock }
    }

    /// Plays the workers: every waiting job succeeds with the outcome its
    /// handler gives on the happy path.
    async fn work(&self) {
        loop {
            let jobs = self.orch.store.waiting_jobs(None, 100).await.expect("jobs");
            if jobs.is_empty() {
                return;
            }
            for record in jobs {
                let now = self.clock.now();
                self.orch
                    .store
                    .mark_dispatched(record.id, now)
                    .await
                    .expect("dispatched");
                let outcome = match record.job.handler.as_str() {
                    "identity.verify" => "verified",
                    "intranet.authenticate" => "authenticated",
                    "materials.check" => "complete",
                    _ => "sent",
                };
                self.orch
                    .complete(&record.job.attempt_id, Outcome::succeeded(outcome))
                    .await
                    .expect("complete");
            }
        }
    }

    /// Moves the clock to `to`, firing each timer at its own time.
    async fn advance_to(&self, to: DateTime<Utc>) {
        while let Some(next) = self.orch.store.next_timer().await.expect("next")
            && next <= to
        {
            self.clock.advance_to(next.max(self.clock.now()));
            self.orch.fire_due_timers(100).await.expect("fire");
            self.work().await;
        }
        self.clock.advance_to(to);
    }

    async fn signal(&self, case: &str, when: DateTime<Utc>, event: &str, value: serde_json::Value) {
        self.advance_to(when).await;
        self.orch
            .signal(case, event, data(value), "gateway")
            .await
            .expect(event);
        self.work().await;
    }
}

fn materials() -> serde_json::Value {
    json!({"materials": ["id_card", "photo", "lease_contract", "labour_contract"]})
}

/// The deadline events of a history, as `time (Shanghai)  event  detail`.
fn deadline_lines(history: &[docket::store::HistoryRecord]) -> Vec<String> {
    let local = |t: &DateTime<Utc>| t.with_timezone(&Shanghai).format("%m-%d %H:%M").to_string();
    history
        .iter()
        .filter_map(|r| {
            let detail = match &r.event {
                HistoryEvent::DeadlineStarted { deadline, due, .. } => {
                    format!("started {deadline} due {}", local(due))
                }
                HistoryEvent::DeadlinePaused { deadline } => format!("paused {deadline}"),
                HistoryEvent::DeadlineResumed { deadline, due } => {
                    format!("resumed {deadline} due {}", local(due))
                }
                HistoryEvent::DeadlineExtended {
                    deadline,
                    limit,
                    due,
                    reason,
                    legal_basis,
                } => format!(
                    "extended {deadline} to {limit} due {} ({reason}; {legal_basis})",
                    local(due)
                ),
                HistoryEvent::ReminderScheduled { deadline, .. } => {
                    format!("reminder {deadline}")
                }
                HistoryEvent::DeadlineExpired { deadline, next } => {
                    format!("expired {deadline} -> {next}")
                }
                HistoryEvent::DeadlineMet { deadline } => format!("met {deadline}"),
                _ => return None,
            };
            Some(format!("{}  {}  {detail}", local(&r.at), r.actor))
        })
        .collect()
}

#[tokio::test]
async fn acceptance_pause_extension_reminder_and_expiry_are_recorded_at_their_times() {
    let h = Harness::new(at(2, 5, 9, 0)).await;
    let input = data(json!({
        "applicant_name": "林小明",
        "id_number": "11010519491231002X",
        "phone": "13800000000",
        "wechat_openid": "o-applicant",
        "category": "employment",
        "through_agent": false,
    }));
    let case = h
        .orch
        .start("residence-permit", input, "gateway")
        .await
        .expect("start")
        .id;
    h.work().await;
    h.signal(
        &case,
        at(2, 5, 10, 0),
        "address_bound",
        json!({"address": "泉州市丰泽区"}),
    )
    .await;
    h.signal(&case, at(2, 6, 9, 0), "registration_submitted", materials())
        .await;
    h.signal(&case, at(2, 6, 15, 0), "registration_approved", json!({}))
        .await;
    h.signal(&case, at(2, 9, 9, 0), "application_submitted", materials())
        .await;
    // Accepted Tue 10 Feb: 15 days end 25 Feb; 15 working days end 9 Mar.
    h.signal(&case, at(2, 10, 10, 0), "application_accepted", json!({}))
        .await;
    // The station needs more on Thu 12 Feb; it arrives on Fri 13 Feb, so one
    // calendar day and one working day do not count.
    h.signal(
        &case,
        at(2, 12, 10, 0),
        "supplement_requested",
        json!({"missing": "lease contract"}),
    )
    .await;
    h.signal(&case, at(2, 13, 15, 0), "supplement_submitted", materials())
        .await;
    // A reminder falls due on 14 Feb (a make-up Saturday, three working
    // days before 26 Feb across the Spring Festival); the extension comes on
    // 16 Feb.
    h.advance_to(at(2, 16, 10, 0)).await;
    let extend = Command::ExtendDeadline(Extension {
        deadline: "issuance_limit".to_owned(),
        to: Period::parse("30days").expect("period"),
        reason: "remote township, transport suspended".to_owned(),
        legal_basis: "Decree 663 Art. 9; Quanzhou notice on extensions".to_owned(),
    });
    h.orch
        .apply(&case, extend, "officer:chen", Lock::Wait)
        .await
        .expect("extend");
    // Past both due dates.
    h.advance_to(at(3, 20, 0, 0)).await;

    let history = h.orch.store.history(&case).await.expect("history");
    assert_eq!(
        deadline_lines(&history),
        [
            "02-10 10:00  gateway  started issuance_limit due 02-26 00:00",
            "02-10 10:00  gateway  started notice_promise due 03-10 00:00",
            "02-12 10:00  gateway  paused issuance_limit",
            "02-12 10:00  gateway  paused notice_promise",
            "02-13 15:00  gateway  resumed issuance_limit due 02-27 00:00",
            "02-13 15:00  gateway  resumed notice_promise due 03-11 00:00",
            "02-14 00:00  system:timer  reminder issuance_limit",
            "02-16 10:00  officer:chen  extended issuance_limit to 30days due 03-14 00:00 \
             (remote township, transport suspended; Decree 663 Art. 9; Quanzhou notice on extensions)",
            "03-10 00:00  system:timer  reminder issuance_limit",
            "03-11 00:00  system:timer  expired notice_promise -> escalate_notice_overdue",
            "03-14 00:00  system:timer  expired issuance_limit -> escalate_issuance_overdue",
        ]
    );
    let state = h
        .orch
        .store
        .case(&case)
        .await
        .expect("case")
        .expect("exists");
    assert_eq!(state.state.step, "await_permit");
    // Each reminder and escalation was a job for the right contact.
    let sent: Vec<(String, String)> = h
        .orch
        .store
        .history(&case)
        .await
        .expect("history")
        .iter()
        .filter_map(|r| match &r.event {
            HistoryEvent::ReminderScheduled { attempt_id, .. } => {
                Some((attempt_id.clone(), r.at.to_rfc3339()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 2);
    assert_ne!(
        sent[0].0, sent[1].0,
        "a reminder after an extension is a new job"
    );
}
