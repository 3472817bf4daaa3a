//! The master keys of personal data as an operator handles them: the
//! database never holds a personal value in clear, the CLI masks them
//! unless asked, and a rotated key can be retired after `keys rewrap`.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

use std::process::{Command, Output};

use docket_tests::{binary, repo, stderr, stdout};
use serde_json::json;

fn run(keys: Option<&str>, db: &str, args: &[&str]) -> Output {
    let mut command = Command::new(binary("orchestrator"));
    command
        .args(args)
        .args(["--database", db])
        .current_dir(repo());
    match keys {
        Some(keys) => command.env("DOCKET_DATA_KEYS", keys),
        None => command.env_remove("DOCKET_DATA_KEYS"),
    };
    command.output().expect("run orchestrator")
}

fn generate(id: &str) -> String {
    let out = Command::new(binary("orchestrator"))
        .args(["keys", "generate", "--id", id])
        .output()
        .expect("keys generate");
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_owned()
}

#[test]
fn personal_data_is_sealed_masked_and_survives_a_key_rotation() {
    let dir = std::env::temp_dir().join(format!("docket-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("docket.sqlite");
    let db = format!("sqlite:{}", file.display());
    let input = dir.join("input.json");
    std::fs::write(
        &input,
        json!({
            "applicant_name": "陈明",
            "id_number": "11010519491231002X",
            "phone": "13800000001",
            "wechat_openid": "wx-test",
            "category": "employment",
            "through_agent": false
        })
        .to_string(),
    )
    .expect("input");
    let (k1, k2) = (generate("k1"), generate("k2"));

    let out = run(
        Some(&k1),
        &db,
        &[
            "start",
            "residence-permit",
            "--input",
            &input.display().to_string(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let case = stdout(&out)
        .split_whitespace()
        .find(|w| w.len() > 20)
        .expect("a case id")
        .to_owned();

    // Nothing in the file is in clear.
    let bytes = std::fs::read(&file).expect("database file");
    let wal = std::fs::read(dir.join("docket.sqlite-wal")).unwrap_or_default();
    for secret in ["陈明", "11010519491231002X", "13800000001", "wx-test"] {
        for content in [&bytes, &wal] {
            assert!(
                !content
                    .windows(secret.len())
                    .any(|w| w == secret.as_bytes()),
                "{secret} stored in clear"
            );
        }
    }

    let history = |keys: &str, reveal: bool| {
        let mut args = vec!["history", case.as_str(), "--json"];
        if reveal {
            args.push("--reveal");
        }
        run(Some(keys), &db, &args)
    };
    let masked = stdout(&history(&k1, false));
    assert!(
        masked.contains("陈*") && masked.contains("1101**********002X"),
        "{masked}"
    );
    assert!(!masked.contains("陈明"), "{masked}");
    let clear = stdout(&history(&k1, true));
    assert!(clear.contains("陈明"), "{clear}");

    // Without the key it was wrapped with, a case cannot be read.
    let out = history(&k2, true);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("`k1`"), "{}", stderr(&out));

    // Rotate: the new key first, the old one after it; rewrap; retire k1.
    let both = format!("{k2},{k1}");
    let out = run(Some(&both), &db, &["keys", "rewrap"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("1 case keys rewrapped"),
        "{}",
        stdout(&out)
    );
    let out = run(Some(&both), &db, &["keys", "rewrap"]);
    assert!(stdout(&out).contains("0 case keys rewrapped, 1 already current"));
    let clear = stdout(&history(&k2, true));
    assert!(clear.contains("陈明"), "{clear}");

    // Verification reads no personal value: a key that opens nothing will do.
    let out = run(Some(&generate("auditor")), &db, &["audit", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(&dir);
}
