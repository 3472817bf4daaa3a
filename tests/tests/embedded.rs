//! The embedded mode as an operator runs it: `orchestrator start` and
//! `signal` against a SQLite file, `orchestrator serve` doing the work,
//! and the orchestrator killed at the worst moments.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use docket_tests::{binary, orchestrator, repo, stderr, stdout};
use serde_json::{Value, json};

struct Sandbox {
    dir: PathBuf,
}

impl Sandbox {
    fn new(name: &str) -> Sandbox {
        let dir = std::env::temp_dir().join(format!("docket-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Sandbox { dir }
    }

    fn database(&self) -> String {
        format!("sqlite:{}", self.dir.join("docket.sqlite").display())
    }

    fn file(&self, name: &str, value: &Value) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, value.to_string()).expect("write json");
        path.display().to_string()
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let db = self.database();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--database", &db]);
        orchestrator(&all)
    }

    fn serve(&self, fault: Option<&str>) -> Child {
        let mut cmd = Command::new(binary("orchestrator"));
        cmd.args(["serve", "--database", &self.database(), "--poll", "20ms"])
            .current_dir(repo())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(n) = fault {
            cmd.env("DOCKET_FAULT_ABORT_BEFORE_DISPATCH", n);
        }
        cmd.spawn().expect("spawn serve")
    }

    fn status(&self, case: &str) -> Value {
        let out = self.run(&["status", case, "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }

    /// Waits until the case waits at `step` (or has ended, for `None`).
    fn wait_for(&self, case: &str, step: Option<&str>) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.status(case);
            let done = match step {
                Some(step) => s["step"] == step && s["phase"]["phase"] == "waiting",
                None => s["status"]["status"] != "active",
            };
            if done {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "case never reached {step:?}: {s:#}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn signal(&self, case: &str, event: &str, data: Value) {
        let file = self.file(&format!("{event}.json"), &data);
        let out = self.run(&["signal", case, event, "--data", &file]);
        assert!(out.status.success(), "signal {event}: {}", stderr(&out));
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn input() -> Value {
    json!({
        "applicant_name": "陈明",
        "id_number": "11010519491231002X",
        "phone": "13800000001",
        "wechat_openid": "wx-test",
        "category": "employment",
        "through_agent": false
    })
}

fn materials_again() -> Value {
    json!({"materials": ["lease_contract"]})
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_case_completes_after_the_orchestrator_is_killed_between_commit_and_dispatch() {
    let sandbox = Sandbox::new("kill");
    let input = sandbox.file("input.json", &input());
    // `start` commits the case and its first job to the outbox and exits:
    // nothing has been dispatched yet.
    let out = sandbox.run(&["start", "residence-permit", "--input", &input]);
    assert!(out.status.success(), "{}", stderr(&out));
    let case = stdout(&out).trim().to_owned();

    // An orchestrator that dies just before handing that job to a worker.
    let mut crashing = sandbox.serve(Some("1"));
    let status = crashing.wait().expect("wait");
    assert!(!status.success(), "the fault did not fire");
    let s = sandbox.status(&case);
    assert_eq!(s["step"], "verify_identity");
    assert_eq!(s["phase"]["phase"], "attempting");

    // A fresh orchestrator picks the job up from the outbox.
    let mut serve = sandbox.serve(None);
    sandbox.wait_for(&case, Some("await_address"));
    sandbox.signal(
        &case,
        "address_bound",
        json!({"address": "泉州市丰泽区东海街道 1 号"}),
    );
    sandbox.wait_for(&case, Some("await_registration"));
    let materials = json!({"materials": ["id_card", "photo", "lease_contract", "labour_contract"]});
    sandbox.signal(&case, "registration_submitted", materials.clone());
    // Killed again while the materials check may be anywhere between
    // dispatch and completion; the restart re-dispatches what is unfinished.
    kill(&mut serve);
    let mut serve = sandbox.serve(None);
    sandbox.wait_for(&case, Some("await_registration_review"));
    sandbox.signal(&case, "registration_approved", json!({}));
    sandbox.wait_for(&case, Some("await_application"));
    sandbox.signal(&case, "application_submitted", materials);
    sandbox.wait_for(&case, Some("await_acceptance"));
    sandbox.signal(&case, "application_accepted", json!({}));
    sandbox.wait_for(&case, Some("await_permit"));

    // An officer extends the issuance limit: past the workflow's cap is
    // refused and changes nothing; within it, it is recorded.
    let extend = |to: &str| {
        sandbox.run(&[
            "extend",
            &case,
            "issuance_limit",
            "--to",
            to,
            "--reason",
            "remote township",
            "--legal-basis",
            "Decree 663 Art. 9",
            "--actor",
            "officer:lin",
        ])
    };
    let out = extend("31days");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`31days` is past the most the workflow allows, `30days` in total"),
        "{}",
        stderr(&out)
    );
    let out = extend("30days");
    assert!(out.status.success(), "{}", stderr(&out));
    // Waiting on the applicant pauses both clocks; the submission resumes them.
    sandbox.signal(
        &case,
        "supplement_requested",
        json!({"missing": "lease contract"}),
    );
    let s = sandbox.wait_for(&case, Some("await_supplement"));
    assert_eq!(
        s["deadlines"]["issuance_limit"]["status"]["status"],
        "paused"
    );
    assert_eq!(
        s["deadlines"]["notice_promise"]["status"]["status"],
        "paused"
    );
    sandbox.signal(&case, "supplement_submitted", materials_again());
    let s = sandbox.wait_for(&case, Some("await_permit"));
    let issuance = &s["deadlines"]["issuance_limit"];
    assert_eq!(issuance["status"]["status"], "running");
    assert_eq!(issuance["extended_to"], "30days");
    assert_eq!(issuance["pauses"].as_array().map(Vec::len), Some(1));

    sandbox.signal(&case, "permit_ready", json!({}));
    sandbox.wait_for(&case, Some("await_collection"));
    sandbox.signal(&case, "permit_collected", json!({}));
    let s = sandbox.wait_for(&case, None);
    kill(&mut serve);
    assert_eq!(
        s["status"],
        json!({"status": "completed", "outcome": "issued"})
    );
    // What is left is the yearly endorsement reminder and the end of the
    // case's retention.
    let timers = s["timers"].as_array().cloned().unwrap_or_default();
    let mut kinds: Vec<&str> = timers
        .iter()
        .filter_map(|t| t["kind"]["kind"].as_str())
        .collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["follow_up", "retention"], "{timers:#?}");

    // No step was completed twice: one success per step entry.
    let out = sandbox.run(&["history", &case, "--json"]);
    let history: Vec<Value> = serde_json::from_slice(&out.stdout).expect("history JSON");
    let mut successes: BTreeMap<String, usize> = BTreeMap::new();
    for record in &history {
        if record["event"]["type"] == "attempt_succeeded" {
            let attempt = record["event"]["attempt_id"].as_str().unwrap_or_default();
            let entry = attempt.rsplit_once('/').map_or(attempt, |(entry, _)| entry);
            *successes.entry(entry.to_owned()).or_default() += 1;
        }
    }
    assert_eq!(successes.len(), 7, "{successes:#?}");
    assert!(successes.values().all(|n| *n == 1), "{successes:#?}");
    let extended: Vec<&Value> = history
        .iter()
        .filter(|r| r["event"]["type"] == "deadline_extended")
        .collect();
    assert_eq!(extended.len(), 1, "the refused extension left no trace");
    assert_eq!(extended[0]["actor"], "officer:lin");
    assert_eq!(extended[0]["event"]["legal_basis"], "Decree 663 Art. 9");
    let seqs: Vec<i64> = history.iter().filter_map(|r| r["seq"].as_i64()).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
}

#[test]
fn bad_input_is_refused_without_changing_anything() {
    let sandbox = Sandbox::new("refuse");
    let mut bad = input();
    bad["category"] = json!("tourism");
    let bad = sandbox.file("bad.json", &bad);
    let out = sandbox.run(&["start", "residence-permit", "--input", &bad]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("field `category` must be one of employment, residence, study"),
        "{}",
        stderr(&out)
    );
    let out = sandbox.run(&["start", "no-such-workflow", "--input", &bad]);
    assert!(stderr(&out).contains("no workflow `no-such-workflow` is deployed"));
    let out = sandbox.run(&["signal", "no-such-case", "permit_ready"]);
    assert!(stderr(&out).contains("no case `no-such-case`"));

    let good = sandbox.file("good.json", &input());
    let case = stdout(&sandbox.run(&["start", "residence-permit", "--input", &good]))
        .trim()
        .to_owned();
    let before = sandbox.run(&["history", &case, "--json"]).stdout;
    let out = sandbox.run(&["signal", &case, "permit_collected"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not waiting for `permit_collected`"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sandbox.run(&["history", &case, "--json"]).stdout, before);
    assert!(Path::new(&sandbox.dir).exists());
}
