//! Uploaded materials' rows: one per content and case, recorded in the
//! case's history, all of a case deleted at once for its erasure.

use super::*;
use crate::engine::{HistoryEvent, Material};
use crate::store::audit::{AuditStore, verify};
use crate::store::materials::{MaterialRecord, MaterialStore};

fn material(case_id: &str, sha256: &str, kind: &str, at: DateTime<Utc>) -> MaterialRecord {
    MaterialRecord {
        case_id: case_id.to_owned(),
        sha256: sha256.to_owned(),
        kind: kind.to_owned(),
        media_type: "image/jpeg".to_owned(),
        size: 70_000,
        stored_as: uuid::Uuid::new_v4().to_string(),
        uploaded_at: at,
        uploaded_by: "token:front".to_owned(),
    }
}

pub(super) async fn materials_are_kept_once_per_content<S: Store + MaterialStore + AuditStore>(
    store: &S,
) {
    started(store, "case-1", false, t0()).await;
    started(store, "case-2", false, t0()).await;
    let (a, b) = ("a".repeat(64), "b".repeat(64));
    let photo = material("case-1", &a, "photo", t0() + Duration::minutes(1));
    assert!(store.insert_material(&photo).await.expect("insert"));
    // The same content again, even as another kind under another name,
    // leaves the first row as it was.
    let again = material("case-1", &a, "id_card", t0() + Duration::minutes(2));
    assert!(!store.insert_material(&again).await.expect("insert again"));
    let card = material("case-1", &b, "id_card", t0() + Duration::minutes(3));
    assert!(store.insert_material(&card).await.expect("insert another"));
    // Other cases may have the same content.
    let other = material("case-2", &a, "photo", t0() + Duration::minutes(4));
    assert!(store.insert_material(&other).await.expect("another case"));
    // Only a case's own materials: the case must exist.
    let orphan = material("no-such-case", &a, "photo", t0());
    assert!(store.insert_material(&orphan).await.is_err());

    assert_eq!(
        store.materials("case-1").await.expect("list"),
        vec![photo.clone(), card.clone()]
    );
    assert_eq!(
        store.material("case-1", &a).await.expect("one"),
        Some(photo.clone())
    );
    assert_eq!(
        store
            .material("case-1", &"c".repeat(64))
            .await
            .expect("none"),
        None
    );

    let mut removed = store.delete_materials("case-1").await.expect("delete");
    removed.sort();
    let mut expected = vec![photo.stored_as.clone(), card.stored_as.clone()];
    expected.sort();
    assert_eq!(removed, expected);
    assert_eq!(store.materials("case-1").await.expect("list"), vec![]);
    assert_eq!(
        store.delete_materials("case-1").await.expect("again"),
        Vec::<String>::new()
    );
    assert_eq!(store.materials("case-2").await.expect("list"), vec![other]);
}

pub(super) async fn an_upload_is_in_the_verified_history<S: Store + MaterialStore + AuditStore>(
    store: &S,
) {
    started(store, "case-1", false, t0()).await;
    let upload = Material {
        kind: "photo".into(),
        sha256: "d".repeat(64),
        media_type: "image/png".into(),
        size: 70_000,
    };
    let at = t0() + Duration::minutes(1);
    written(
        apply(store, "case-1", Command::RecordMaterial(upload), at)
            .await
            .expect("record"),
    );
    let history = store.history("case-1").await.expect("history");
    let last = history.last().map(|r| r.event.clone());
    assert_eq!(
        last,
        Some(HistoryEvent::MaterialUploaded {
            kind: "photo".into(),
            sha256: "d".repeat(64),
            media_type: "image/png".into(),
            size: 70_000,
        })
    );
    assert_eq!(verify(store, Some("case-1")).await.expect("verify"), vec![]);
}
