//! Personal information never reaches the logs: a case runs through
//! `orchestrator serve` at debug level with distinctive personal values,
//! and every log line of the orchestrator and the CLI is scanned for them.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use docket_tests::{Stop, binary, repo, stderr, stdout};
use serde_json::{Value, json};

const NAME: &str = "欧阳秀英";
const ID_NUMBER: &str = "11010519491231002X";
const PHONE: &str = "13912345678";
const OPENID: &str = "wx-log-scan-openid-7781";
const ADDRESS: &str = "泉州市鲤城区开元寺路88号";

#[test]
fn a_case_run_at_debug_level_logs_no_personal_information() {
    let dir = std::env::temp_dir().join(format!("docket-log-scan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = format!("sqlite:{}", dir.join("docket.sqlite").display());
    let mut logs = String::new();
    let mut run = |args: &[&str]| {
        let out = Command::new(binary("orchestrator"))
            .args(args)
            .args(["--database", &db])
            .env("DOCKET_LOG", "debug")
            .current_dir(repo())
            .output()
            .expect("run orchestrator");
        logs.push_str(&stderr(&out));
        out
    };
    let write = |name: &str, value: &Value| {
        let path = dir.join(name);
        std::fs::write(&path, value.to_string()).expect("write");
        path.display().to_string()
    };
    let input = write(
        "input.json",
        &json!({
            "applicant_name": NAME,
            "id_number": ID_NUMBER,
            "phone": PHONE,
            "wechat_openid": OPENID,
            "category": "employment",
            "through_agent": false
        }),
    );
    let out = run(&["start", "residence-permit", "--input", &input]);
    assert!(out.status.success(), "{}", stderr(&out));
    let case = stdout(&out).trim().to_owned();

    let serve_log = dir.join("serve.log");
    let serve = Stop(
        Command::new(binary("orchestrator"))
            .args(["serve", "--database", &db, "--poll", "20ms"])
            .env("DOCKET_LOG", "debug")
            .current_dir(repo())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&serve_log).expect("log file"))
            .spawn()
            .expect("start serve"),
    );
    let wait_for = |run: &mut dyn FnMut(&[&str]) -> std::process::Output, step: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = run(&["status", &case, "--json"]);
            let s: Value = serde_json::from_slice(&out.stdout).expect("status");
            if s["step"] == step && s["phase"]["phase"] == "waiting" {
                return;
            }
            assert!(Instant::now() < deadline, "never reached {step}: {s:#}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let materials = json!({"materials": ["id_card", "photo", "lease_contract", "labour_contract"]});
    let steps: [(&str, &str, Value); 4] = [
        (
            "await_address",
            "address_bound",
            json!({"address": ADDRESS}),
        ),
        (
            "await_registration",
            "registration_submitted",
            materials.clone(),
        ),
        (
            "await_registration_review",
            "registration_approved",
            json!({}),
        ),
        ("await_application", "application_submitted", materials),
    ];
    for (step, event, data) in steps {
        wait_for(&mut run, step);
        let file = write(&format!("{event}.json"), &data);
        let out = run(&["signal", &case, event, "--data", &file]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    wait_for(&mut run, "await_acceptance");
    drop(serve);
    logs.push_str(&std::fs::read_to_string(&serve_log).expect("serve log"));

    assert!(
        logs.lines().count() > 20,
        "the debug log is suspiciously short:\n{logs}"
    );
    for (what, value) in [
        ("name", NAME),
        ("ID number", ID_NUMBER),
        ("phone", PHONE),
        ("service-account id", OPENID),
        ("address", ADDRESS),
    ] {
        let leaks: Vec<&str> = logs.lines().filter(|l| l.contains(value)).collect();
        assert!(
            leaks.is_empty(),
            "the {what} is in the logs:\n{}",
            leaks.join("\n")
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
