//! The hash chains as stored: an untouched history verifies, and each way
//! of changing rows directly in SQL is named with its case and event.

use super::*;
use crate::audit::Problem;
use crate::store::audit::{AuditStore, verify};

/// Four cases with a few events each, and a checkpoint over them.
async fn four_cases<S: Tamper + AuditStore>(store: &S) {
    for case in ["case-1", "case-2", "case-3", "case-4"] {
        let first = started(store, case, false, t0()).await;
        written(
            apply(
                store,
                case,
                complete(&job(&first).attempt_id, "verified"),
                t0() + Duration::minutes(1),
            )
            .await
            .expect("verified"),
        );
        written(
            apply(
                store,
                case,
                Command::Signal {
                    event: "address_bound".into(),
                    data: json!({"address": "泉州市"})
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
}

pub(crate) async fn history_verifies_and_each_tampering_is_named<S: Tamper + AuditStore>(
    store: &S,
) {
    four_cases(store).await;
    assert_eq!(verify(store, None).await.expect("verify"), vec![]);
    let first = store.checkpoint(t0()).await.expect("checkpoint");
    assert_eq!(first.as_ref().map(|c| (c.id, c.cases)), Some((1, 4)));
    assert_eq!(
        store.checkpoint(t0()).await.expect("again"),
        None,
        "nothing changed"
    );
    assert_eq!(verify(store, None).await.expect("verify"), vec![]);
    let events = |case: &'static str| async move {
        store.history(case).await.expect("history").len() as i64
    };
    assert!(events("case-1").await >= 4);

    store.allow_tampering().await.expect("lift the guards");
    // Modified: an event's data changed.
    store
        .tamper(
            "UPDATE history SET actor = 'someone else' WHERE case_id = $1 AND seq = 2",
            "case-1",
        )
        .await
        .expect("modify");
    // Deleted: one event removed.
    store
        .tamper(
            "DELETE FROM history WHERE case_id = $1 AND seq = 3",
            "case-2",
        )
        .await
        .expect("delete");
    // Reordered: events 2 and 3 swap places.
    for sql in [
        "UPDATE history SET seq = 1000 WHERE case_id = $1 AND seq = 2",
        "UPDATE history SET seq = 2 WHERE case_id = $1 AND seq = 3",
        "UPDATE history SET seq = 3 WHERE case_id = $1 AND seq = 1000",
    ] {
        store.tamper(sql, "case-3").await.expect("reorder");
    }
    // A whole case deleted, rows, jobs and all.
    for sql in [
        "DELETE FROM history WHERE case_id = $1",
        "DELETE FROM timers WHERE case_id = $1",
        "DELETE FROM outbox WHERE attempt_id IN (SELECT id FROM attempts WHERE case_id = $1)",
        "DELETE FROM attempts WHERE case_id = $1",
        "DELETE FROM cases WHERE id = $1",
    ] {
        store.tamper(sql, "case-4").await.expect("delete the case");
    }

    let found = verify(store, None).await.expect("verify");
    assert_eq!(
        found,
        vec![
            Problem::Changed {
                case_id: "case-1".into(),
                seq: 2
            },
            Problem::Missing {
                case_id: "case-2".into(),
                seq: 3
            },
            Problem::Moved {
                case_id: "case-3".into(),
                seq: 2,
                from: 3
            },
            Problem::CaseDeleted {
                case_id: "case-4".into(),
                checkpoint: 1
            },
        ],
        "{}",
        found
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    // One case alone.
    assert_eq!(
        verify(store, Some("case-2")).await.expect("verify"),
        vec![Problem::Missing {
            case_id: "case-2".into(),
            seq: 3
        }]
    );
}
