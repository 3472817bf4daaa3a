//! The rows of files uploaded for a case ([`crate::api::materials`]): one
//! per content, named by its SHA-256. The files themselves lie sealed on
//! disk ([`crate::materials::files`]) under the generated name a row keeps.
//!
//! Kept out of [`Store`](super::Store): the engine's loops never need it.

use std::future::Future;

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::StoreError;
use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use crate::privacy::CaseKey;

/// An uploaded file, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaterialRecord {
    pub case_id: String,
    /// SHA-256 of the content, hex: with the case, the row's identity.
    pub sha256: String,
    /// One of the workflow's material kinds (`materials.documents`).
    pub kind: String,
    /// Decided from the content, e.g. `image/png`.
    pub media_type: String,
    /// The content's size in bytes (the file on disk is a little larger).
    pub size: u64,
    /// The file's name in the uploads directory: generated, never taken
    /// from the request.
    pub stored_as: String,
    pub uploaded_at: DateTime<Utc>,
    /// Who uploaded it, as history names actors (`token:NAME`).
    pub uploaded_by: String,
}

pub trait MaterialStore: Send + Sync {
    /// Stores a material's row; `false`, storing nothing, when the case
    /// already has this content (its row stays as it was).
    fn insert_material(
        &self,
        material: &MaterialRecord,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// A case's materials, oldest first.
    fn materials(
        &self,
        case_id: &str,
    ) -> impl Future<Output = Result<Vec<MaterialRecord>, StoreError>> + Send;

    /// One material of a case, by content hash.
    fn material(
        &self,
        case_id: &str,
        sha256: &str,
    ) -> impl Future<Output = Result<Option<MaterialRecord>, StoreError>> + Send;

    /// The data key of a case, which seals its uploaded files as it seals
    /// its personal fields; `None` once erased (or for no such case).
    fn material_key(
        &self,
        case_id: &str,
    ) -> impl Future<Output = Result<Option<CaseKey>, StoreError>> + Send;

    /// Deletes every material row of a case and returns their files' names
    /// (`stored_as`), for the caller to remove the files: what erasing a
    /// case's personal data at the end of its retention does.
    fn delete_materials(
        &self,
        case_id: &str,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
}

const INSERT_MATERIAL: &str = "\
    INSERT INTO materials \
    (case_id, sha256, kind, media_type, size, stored_as, uploaded_at, uploaded_by) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
    ON CONFLICT (case_id, sha256) DO NOTHING";

const MATERIALS: &str = "\
    SELECT case_id, sha256, kind, media_type, size, stored_as, uploaded_at, uploaded_by \
    FROM materials WHERE case_id = $1 ORDER BY uploaded_at, sha256";

const MATERIAL: &str = "\
    SELECT case_id, sha256, kind, media_type, size, stored_as, uploaded_at, uploaded_by \
    FROM materials WHERE case_id = $1 AND sha256 = $2";

const DELETE_MATERIALS: &str = "DELETE FROM materials WHERE case_id = $1 RETURNING stored_as";

#[derive(Debug, FromRow)]
struct MaterialRow {
    case_id: String,
    sha256: String,
    kind: String,
    media_type: String,
    size: i64,
    stored_as: String,
    uploaded_at: DateTime<Utc>,
    uploaded_by: String,
}

impl From<MaterialRow> for MaterialRecord {
    fn from(r: MaterialRow) -> Self {
        MaterialRecord {
            case_id: r.case_id,
            sha256: r.sha256,
            kind: r.kind,
            media_type: r.media_type,
            // The table refuses a size below 1.
            size: u64::try_from(r.size).unwrap_or_default(),
            stored_as: r.stored_as,
            uploaded_at: r.uploaded_at,
            uploaded_by: r.uploaded_by,
        }
    }
}

/// Implements the trait for one store; the SQL above is shared.
macro_rules! material_store {
    ($store:ty) => {
        impl MaterialStore for $store {
            async fn insert_material(&self, m: &MaterialRecord) -> Result<bool, StoreError> {
                let done = sqlx::query(INSERT_MATERIAL)
                    .bind(&m.case_id)
                    .bind(&m.sha256)
                    .bind(&m.kind)
                    .bind(&m.media_type)
                    .bind(i64::try_from(m.size).unwrap_or(i64::MAX))
                    .bind(&m.stored_as)
                    .bind(m.uploaded_at)
                    .bind(&m.uploaded_by)
                    .execute(self.pool())
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn materials(&self, case_id: &str) -> Result<Vec<MaterialRecord>, StoreError> {
                let rows: Vec<MaterialRow> = sqlx::query_as(MATERIALS)
                    .bind(case_id)
                    .fetch_all(self.pool())
                    .await?;
                Ok(rows.into_iter().map(MaterialRecord::from).collect())
            }

            async fn material(
                &self,
                case_id: &str,
                sha256: &str,
            ) -> Result<Option<MaterialRecord>, StoreError> {
                let row: Option<MaterialRow> = sqlx::query_as(MATERIAL)
                    .bind(case_id)
                    .bind(sha256)
                    .fetch_optional(self.pool())
                    .await?;
                Ok(row.map(MaterialRecord::from))
            }

            async fn material_key(&self, case_id: &str) -> Result<Option<CaseKey>, StoreError> {
                let wrapped: Option<Option<String>> = sqlx::query_scalar(super::sql::CASE_KEY)
                    .bind(case_id)
                    .fetch_optional(self.pool())
                    .await?;
                super::rows::case_key(case_id, wrapped.flatten().as_deref(), self.data_keys())
            }

            async fn delete_materials(&self, case_id: &str) -> Result<Vec<String>, StoreError> {
                Ok(sqlx::query_scalar(DELETE_MATERIALS)
                    .bind(case_id)
                    .fetch_all(self.pool())
                    .await?)
            }
        }
    };
}

material_store!(PgStore);
material_store!(SqliteStore);
