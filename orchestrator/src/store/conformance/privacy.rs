//! Personal data at rest: sealed in every table that holds it, opened for
//! the engine, erased by throwing the case's key away — with the history,
//! and its hash chain, untouched.

use super::*;
use crate::privacy::marker;
use crate::store::audit::{AuditStore, verify};

/// Every personal value the cases below are given.
const SECRETS: [&str; 5] = [
    "张三",
    "11010519491231002X",
    "13800000000",
    "o-applicant",
    "丰泽区",
];

/// What a DBA reads for `case_id`: state, history, outbox and the key.
const RAW: [&str; 4] = [
    "SELECT CAST(state AS TEXT) FROM cases WHERE id = $1",
    "SELECT CAST(payload AS TEXT) FROM history WHERE case_id = $1",
    "SELECT CAST(o.job AS TEXT) FROM outbox o JOIN attempts a ON a.id = o.attempt_id \
     WHERE a.case_id = $1",
    "SELECT data_key FROM cases WHERE id = $1",
];

async fn with_address<S: Tamper>(store: &S, case_id: &str) {
    let first = started(store, case_id, false, t0()).await;
    written(
        apply(
            store,
            case_id,
            complete(&job(&first).attempt_id, "verified"),
            t0() + Duration::minutes(1),
        )
        .await
        .expect("verified"),
    );
    written(
        apply(
            store,
            case_id,
            Command::Signal {
                event: "address_bound".into(),
                data: json!({"address": "丰泽区东湖街 1 号"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            },
            t0() + Duration::minutes(2),
        )
        .await
        .expect("address"),
    );
}

async fn raw<S: Tamper>(store: &S, case_id: &str) -> String {
    let mut all = String::new();
    for sql in RAW {
        for text in store.read_texts(sql, case_id).await.expect("read") {
            all.push_str(&text);
            all.push('\n');
        }
    }
    all
}

pub(crate) async fn personal_data_is_sealed_at_rest<S: Tamper>(store: &S) {
    with_address(store, "case-1").await;
    let stored = raw(store, "case-1").await;
    assert!(stored.contains("$sealed"), "{stored}");
    for secret in SECRETS {
        assert!(!stored.contains(secret), "`{secret}` stored in clear");
    }
    // Not personal, so left readable (and searchable).
    assert!(stored.contains("employment"));

    let opened = state(store, "case-1").await;
    assert_eq!(
        marker::plain(&opened.input["applicant_name"]),
        json!("张三")
    );
    assert_eq!(
        marker::plain(&opened.events["address_bound"].data["address"]),
        json!("丰泽区东湖街 1 号")
    );
    let history =
        serde_json::to_string(&store.history("case-1").await.expect("history")).unwrap_or_default();
    assert!(history.contains("11010519491231002X") && history.contains("丰泽区"));
    // The worker gets the parameters in clear (sealed again for Redis).
    let jobs = store.waiting_jobs(None, 100).await.expect("jobs");
    let params: Vec<String> = jobs
        .iter()
        .filter(|j| j.job.case_id == "case-1")
        .map(|j| serde_json::to_string(&j.job.params).unwrap_or_default())
        .collect();
    assert!(params.iter().any(|p| p.contains("张三")), "{params:?}");
}

pub(crate) async fn erasing_a_case_keeps_its_history_verifiable<S: Tamper + AuditStore>(store: &S) {
    with_address(store, "case-1").await;
    with_address(store, "case-2").await;
    let before = store.history("case-1").await.expect("history").len();
    written(
        store
            .update_case(
                "case-1",
                Lock::Wait,
                "system:timer",
                t0() + Duration::minutes(3),
                |record| {
                    let mut state = record.state.clone();
                    let mut values = 0;
                    for v in state.input.values_mut() {
                        values += marker::erase(v);
                    }
                    for e in state.events.values_mut() {
                        for v in e.data.values_mut() {
                            values += marker::erase(v);
                        }
                    }
                    Ok(Decision {
                        state,
                        history: vec![engine::HistoryEvent::PersonalDataErased { values }],
                        effects: vec![],
                    })
                },
            )
            .await
            .expect("erase"),
    );
    let key: Vec<Option<String>> = store
        .read_texts(
            "SELECT COALESCE(data_key, '') FROM cases WHERE id = $1",
            "case-1",
        )
        .await
        .expect("key")
        .into_iter()
        .map(|k| Some(k).filter(|k| !k.is_empty()))
        .collect();
    assert_eq!(key, [None]);

    let erased = state(store, "case-1").await;
    assert!(marker::is_erased(&erased.input["applicant_name"]));
    assert_eq!(erased.input["category"], json!("employment"));
    let history = store.history("case-1").await.expect("history");
    assert_eq!(history.len(), before + 1);
    let text = serde_json::to_string(&history).unwrap_or_default();
    for secret in SECRETS {
        assert!(!text.contains(secret), "`{secret}` still readable");
    }
    assert!(text.contains("$erased"));
    // The other case keeps its data; every chain still verifies.
    let other = state(store, "case-2").await;
    assert_eq!(marker::plain(&other.input["applicant_name"]), json!("张三"));
    let problems = verify(store, None).await.expect("verify");
    assert!(problems.is_empty(), "{problems:?}");
}
