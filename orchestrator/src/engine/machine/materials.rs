//! Uploaded materials: a file given for the case (a photo, a scan) enters
//! its history by content hash. The file and its row are the store's; the
//! engine only checks that the case may still take one and records it.

use super::Machine;
use crate::engine::{HistoryEvent, Rejection};

/// A stored upload, as the history records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    /// One of the workflow's `materials.documents`.
    pub kind: String,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// Decided from the content, e.g. `image/jpeg`.
    pub media_type: String,
    /// In bytes.
    pub size: u64,
}

impl Machine<'_> {
    /// Records an upload while the case is active; changes nothing else.
    pub(super) fn record_material(&mut self, material: Material) -> Result<(), Rejection> {
        self.ensure_active()?;
        let workflow = self.ctx.workflow;
        if !workflow.material_kinds().any(|k| k == material.kind) {
            return Err(Rejection::InvalidData {
                what: "material".to_owned(),
                field: "kind".to_owned(),
                problem: format!(
                    "`{}` is not a material kind of workflow `{}`",
                    material.kind, workflow.name
                ),
            });
        }
        let Material {
            kind,
            sha256,
            media_type,
            size,
        } = material;
        self.record(HistoryEvent::MaterialUploaded {
            kind,
            sha256,
            media_type,
            size,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::engine::{Command, decide, start};
    use crate::testing::{ctx, input};

    fn photo(kind: &str) -> Command {
        Command::RecordMaterial(Material {
            kind: kind.to_owned(),
            sha256: "ab".repeat(32),
            media_type: "image/jpeg".to_owned(),
            size: 1234,
        })
    }

    #[test]
    fn an_upload_is_recorded_and_changes_nothing_else() -> Result<(), Rejection> {
        let now = Utc
            .with_ymd_and_hms(2026, 3, 2, 1, 0, 0)
            .single()
            .unwrap_or_default();
        let started = start(ctx(now), "case-1", input(false))?;
        let later = now + chrono::Duration::minutes(5);
        let decision = decide(ctx(later), &started.state, photo("photo"))?;
        assert_eq!(
            decision.history,
            vec![HistoryEvent::MaterialUploaded {
                kind: "photo".into(),
                sha256: "ab".repeat(32),
                media_type: "image/jpeg".into(),
                size: 1234,
            }]
        );
        assert!(decision.effects.is_empty());
        let mut expected = started.state.clone();
        expected.updated_at = later;
        assert_eq!(decision.state, expected);
        Ok(())
    }

    #[test]
    fn an_undeclared_kind_or_an_ended_case_is_refused() -> Result<(), Rejection> {
        let now = Utc
            .with_ymd_and_hms(2026, 3, 2, 1, 0, 0)
            .single()
            .unwrap_or_default();
        let started = start(ctx(now), "case-1", input(false))?;
        let refused = decide(ctx(now), &started.state, photo("selfie"));
        assert!(
            matches!(&refused, Err(Rejection::InvalidData { field, problem, .. })
                if field == "kind" && problem.contains("`selfie`")),
            "{refused:?}"
        );
        let cancel = Command::Cancel {
            reason: "test".into(),
        };
        let cancelled = decide(ctx(now), &started.state, cancel)?;
        let refused = decide(ctx(now), &cancelled.state, photo("photo"));
        assert!(
            matches!(refused, Err(Rejection::Finished { .. })),
            "{refused:?}"
        );
        Ok(())
    }
}
