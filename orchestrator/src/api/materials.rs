//! Materials uploaded for a case — photos of the applicant, scans of
//! identity documents and contracts — and read back by officers.
//!
//! The body of an upload is the file's bytes, nothing else. Its type is
//! decided from those bytes alone ([`MediaType::sniff`]): JPEG, PNG and PDF
//! are accepted, anything else is refused whatever its `Content-Type`
//! says. Its size is bounded by [`UploadSettings::limit`], apart from the
//! JSON bodies' limit.
//!
//! An upload is kept in three places, in this order: the file, sealed,
//! under a generated name ([`MaterialFiles`]); the case's history
//! (`material_uploaded`, so the hash chain covers the content hash); its
//! row ([`MaterialStore`](crate::store::materials::MaterialStore)). Once
//! the body is read, these steps run to the end even if the request is
//! abandoned (a timeout, a client gone), so a stored file is never left
//! without its history. Uploading the same content to the same case again
//! finds the row and stores nothing.
//!
//! The content never reaches a log or an error message: errors name the
//! case, the kind and the stored file's generated name at most.

// utoipa's code generated for `params(UploadParams)` names the type by a
// path the lint flags; the lint cannot be silenced on the generated item.
#![allow(unused_qualifications)]

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::{Action, Caller, hex};
use super::error::{ApiError, ErrorBody};
use super::path::Path;
use crate::definition::Workflow;
use crate::engine::{CaseState, Command, Material, Rejection};
use crate::materials::{MaterialFiles, MediaType};
use crate::privacy::CaseKey;
use crate::runtime::{Orchestrator, RuntimeError};
use crate::store::materials::{MaterialRecord, MaterialStore};
use crate::store::{Store, StoreError};

/// Where uploads go and how large they may be; from `orchestrator serve`'s
/// flags.
#[derive(Debug, Clone)]
pub struct UploadSettings {
    /// Largest file accepted, in bytes.
    pub limit: usize,
    /// The directory the sealed files are kept in; created with the first.
    /// Each file is sealed under its case's data key.
    pub dir: PathBuf,
}

impl Default for UploadSettings {
    fn default() -> Self {
        UploadSettings {
            limit: 10 * 1024 * 1024,
            dir: PathBuf::from("docket-uploads"),
        }
    }
}

impl UploadSettings {
    pub fn files(&self) -> MaterialFiles {
        MaterialFiles::new(self.dir.clone())
    }
}

/// A case and the version of its workflow it runs on.
#[derive(Debug, Clone)]
pub struct CaseWithWorkflow {
    pub state: CaseState,
    pub workflow: Arc<Workflow>,
}

/// What the materials endpoints need from the orchestrator and its store,
/// beside the rest of [`super::Backend`] (of which it is a part).
pub trait MaterialBackend: Send + Sync {
    /// A case with the workflow it runs on; `None` when there is no such
    /// case.
    fn case_with_workflow<'a>(
        &'a self,
        case_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CaseWithWorkflow>, RuntimeError>>;

    /// `false`, storing nothing, when the case already has this content.
    fn insert_material<'a>(
        &'a self,
        material: &'a MaterialRecord,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    fn materials<'a>(
        &'a self,
        case_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<MaterialRecord>, StoreError>>;

    fn material<'a>(
        &'a self,
        case_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<MaterialRecord>, StoreError>>;

    /// The case's data key, which seals its files; `None` once erased.
    fn material_key<'a>(
        &'a self,
        case_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CaseKey>, StoreError>>;
}

impl<S: Store + MaterialStore> MaterialBackend for Orchestrator<S> {
    fn case_with_workflow<'a>(
        &'a self,
        case_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CaseWithWorkflow>, RuntimeError>> {
        Box::pin(async move {
            let Some(record) = self.store.case(case_id).await? else {
                return Ok(None);
            };
            let workflow = self
                .registry
                .get(&*self.store, record.definition_id)
                .await?;
            Ok(Some(CaseWithWorkflow {
                state: record.state,
                workflow,
            }))
        })
    }

    fn insert_material<'a>(
        &'a self,
        material: &'a MaterialRecord,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.store.insert_material(material))
    }

    fn materials<'a>(
        &'a self,
        case_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<MaterialRecord>, StoreError>> {
        Box::pin(self.store.materials(case_id))
    }

    fn material<'a>(
        &'a self,
        case_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<MaterialRecord>, StoreError>> {
        Box::pin(self.store.material(case_id, sha256))
    }

    fn material_key<'a>(
        &'a self,
        case_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CaseKey>, StoreError>> {
        Box::pin(self.store.material_key(case_id))
    }
}

/// Files of a case whose personal data was erased are gone for good.
fn erased(case_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "personal_data_erased",
        format!("case `{case_id}`'s personal data was erased at the end of its retention"),
    )
}

/// The parameters of `POST /cases/{id}/materials`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadParams {
    /// What the file is: one of the material kinds (`materials.documents`)
    /// of the case's workflow, e.g. `photo` or `id_card`.
    #[param(required = true)]
    kind: Option<String>,
}

/// A stored material, without its content.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MaterialView {
    /// SHA-256 of the content, hex: the material's name within its case.
    pub sha256: String,
    pub kind: String,
    /// `image/jpeg`, `image/png` or `application/pdf`, from the content.
    pub media_type: String,
    /// In bytes.
    pub size: u64,
    pub uploaded_at: DateTime<Utc>,
}

impl From<&MaterialRecord> for MaterialView {
    fn from(m: &MaterialRecord) -> Self {
        MaterialView {
            sha256: m.sha256.clone(),
            kind: m.kind.clone(),
            media_type: m.media_type.clone(),
            size: m.size,
            uploaded_at: m.uploaded_at,
        }
    }
}

/// A case's materials, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MaterialList {
    pub case_id: String,
    pub materials: Vec<MaterialView>,
}

#[utoipa::path(
    post, path = "/cases/{id}/materials", tag = "materials",
    params(("id" = String, Path, description = "The case id"), UploadParams),
    request_body(
        content = Vec<u8>, content_type = "application/octet-stream",
        description = "The file's bytes, nothing else: a JPEG, PNG or PDF, told from its content whatever `Content-Type` says",
    ),
    responses(
        (status = 201, description = "The file is stored and recorded in the case's history", body = MaterialView),
        (status = 200, description = "The case already has this content, as this kind: nothing was stored again", body = MaterialView),
        (status = 400, description = "`kind` is missing or not a material kind of the case's workflow, or the body is empty", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token's role may not upload materials", body = ErrorBody),
        (status = 404, description = "No such case", body = ErrorBody),
        (status = 409, description = "The case has ended, or has this content already as another kind", body = ErrorBody),
        (status = 413, description = "The file is larger than the upload limit", body = ErrorBody),
        (status = 415, description = "The content is not a JPEG, PNG or PDF", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn upload_material(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    params: Result<Query<UploadParams>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Action::UploadMaterial)?;
    let Query(params) = params.map_err(|e| bad_query(&e.body_text()))?;
    let CaseWithWorkflow {
        state: case,
        workflow,
    } = state
        .backend
        .case_with_workflow(&id)
        .await?
        .ok_or_else(|| ApiError::unknown_case(&id))?;
    let kind = declared_kind(&workflow, params.kind)?;
    if !case.status.is_active() {
        return Err(Rejection::Finished {
            status: case.status.label(),
        }
        .into());
    }
    // Only now, the caller and the request being in order, is the body read.
    let limit = state.settings.uploads.limit;
    let content = read_limited(&headers, body, limit).await?;
    if content.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_body",
            "the request body is empty; send the file's bytes",
        ));
    }
    let media_type = MediaType::sniff(&content).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "the file is not a {}: only those are accepted, and a file's type is read from its content, not from its name or Content-Type",
                MediaType::accepted()
            ),
        )
    })?;
    let sha256 = hex(&Sha256::digest(&content));
    if let Some(existing) = state.backend.material(&id, &sha256).await? {
        return again(&existing, &kind);
    }
    let upload = Upload {
        case_id: id,
        actor: caller.actor(),
        material: Material {
            kind,
            sha256,
            media_type: media_type.as_str().to_owned(),
            size: content.len() as u64,
        },
        content,
    };
    // Run to the end even if this request is abandoned: see the module doc.
    tokio::spawn(store(state, upload))
        .await
        .map_err(|e| ApiError::internal("an upload could not be finished", &e))?
}

/// An upload whose request is in order, on its way to being kept.
struct Upload {
    case_id: String,
    actor: String,
    material: Material,
    content: Bytes,
}

/// Keeps an upload: its file, then its history event, then its row. A
/// step that fails undoes the earlier ones it can: the file goes if the
/// engine refuses the event (the case ended meanwhile); a history event
/// stays, as history does, and a retry records the upload again.
async fn store(state: AppState, upload: Upload) -> Result<Response, ApiError> {
    let Upload {
        case_id,
        actor,
        material,
        content,
    } = upload;
    let files = state.settings.uploads.files();
    let key = state
        .backend
        .material_key(&case_id)
        .await?
        .ok_or_else(|| erased(&case_id))?;
    let stored_as = files
        .store(&key, &material.sha256, &content)
        .await
        .map_err(|e| ApiError::internal("an uploaded file could not be stored", &e))?;
    let record = MaterialRecord {
        case_id: case_id.clone(),
        sha256: material.sha256.clone(),
        kind: material.kind.clone(),
        media_type: material.media_type.clone(),
        size: material.size,
        stored_as: stored_as.clone(),
        uploaded_at: state.backend.now(),
        uploaded_by: actor.clone(),
    };
    let recorded = state
        .backend
        .apply(&case_id, Command::RecordMaterial(material), &actor)
        .await;
    let inserted = match recorded {
        Ok(_) => state.backend.insert_material(&record).await,
        Err(e) => {
            forget(&files, &stored_as).await;
            return Err(e.into());
        }
    };
    match inserted {
        Ok(true) => Ok((StatusCode::CREATED, Json(MaterialView::from(&record))).into_response()),
        // The same content, uploaded at the same moment, was kept first.
        Ok(false) => {
            forget(&files, &stored_as).await;
            let existing = state
                .backend
                .material(&case_id, &record.sha256)
                .await?
                .ok_or_else(|| ApiError::unknown_case(&case_id))?;
            again(&existing, &record.kind)
        }
        Err(e) => {
            forget(&files, &stored_as).await;
            Err(e.into())
        }
    }
}

/// Removes a file no row will point to.
async fn forget(files: &MaterialFiles, stored_as: &str) {
    if let Err(e) = files.remove(stored_as).await {
        tracing::error!(file = %stored_as, error = %e, "an unused uploaded file could not be removed");
    }
}

/// The answer to content the case already has.
fn again(existing: &MaterialRecord, kind: &str) -> Result<Response, ApiError> {
    if existing.kind == kind {
        Ok((StatusCode::OK, Json(MaterialView::from(existing))).into_response())
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "material_exists",
            format!(
                "the case already has this file, uploaded as `{}`",
                existing.kind
            ),
        )
        .with_field("kind"))
    }
}

/// The `kind` parameter, if the workflow declares it.
fn declared_kind(workflow: &Workflow, kind: Option<String>) -> Result<String, ApiError> {
    let kinds = || workflow.material_kinds().collect::<Vec<_>>().join(", ");
    let bad = |message: String| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", message).with_field("kind")
    };
    match kind {
        None => Err(bad(format!(
            "parameter `kind` is required: one of {}",
            kinds()
        ))),
        Some(kind) if workflow.material_kinds().any(|k| k == kind) => Ok(kind),
        Some(kind) => Err(bad(format!(
            "parameter `kind` is `{kind}`, which is not a material kind of workflow `{}` (one of {})",
            workflow.name,
            kinds()
        ))),
    }
}

/// The body, up to `limit` bytes: a larger one is refused as soon as its
/// `Content-Length` or its bytes so far show it.
async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the file is larger than the upload limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut content = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "the request body could not be read to its end",
            )
        })?;
        if content.len() + chunk.len() > limit {
            return Err(too_large());
        }
        content.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(content))
}

#[utoipa::path(
    get, path = "/cases/{id}/materials", tag = "materials",
    params(("id" = String, Path, description = "The case id")),
    responses(
        (status = 200, description = "The case's materials, oldest first, without their content", body = MaterialList),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token's role may not list materials", body = ErrorBody),
        (status = 404, description = "No such case", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn list_materials(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<MaterialList>, ApiError> {
    caller.require(Action::ListMaterials)?;
    if state.backend.case(&id).await?.is_none() {
        return Err(ApiError::unknown_case(&id));
    }
    let materials = state.backend.materials(&id).await?;
    Ok(Json(MaterialList {
        case_id: id,
        materials: materials.iter().map(MaterialView::from).collect(),
    }))
}

#[utoipa::path(
    get, path = "/cases/{id}/materials/{sha256}", tag = "materials",
    params(
        ("id" = String, Path, description = "The case id"),
        ("sha256" = String, Path, description = "The material's SHA-256, hex, as its upload answered"),
    ),
    responses(
        (status = 200, description = "The file as it was uploaded, its `Content-Type` the one read from its content",
            content(
                (Vec<u8> = "image/jpeg"),
                (Vec<u8> = "image/png"),
                (Vec<u8> = "application/pdf"),
            )),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token's role may not read materials", body = ErrorBody),
        (status = 404, description = "No such case, or the case has no such material", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn download_material(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, sha256)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require(Action::ReadMaterial)?;
    if state.backend.case(&id).await?.is_none() {
        return Err(ApiError::unknown_case(&id));
    }
    let sha256 = sha256.to_ascii_lowercase();
    let material = state.backend.material(&id, &sha256).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_material",
            format!("case `{id}` has no material `{sha256}`"),
        )
    })?;
    let key = state
        .backend
        .material_key(&id)
        .await?
        .ok_or_else(|| erased(&id))?;
    let content = state
        .settings
        .uploads
        .files()
        .read(&key, &material.sha256, &material.stored_as)
        .await
        .map_err(|e| ApiError::internal("a stored material could not be read", &e))?;
    if hex(&Sha256::digest(&content)) != material.sha256 {
        return Err(ApiError::internal(
            "a stored material does not match its hash",
            &Mismatch(material.stored_as),
        ));
    }
    // The row's type was read from the content; a row altered by hand
    // gets the type that claims nothing.
    let (media_type, extension) = match MediaType::parse(&material.media_type) {
        Some(m) => (m.as_str(), m.extension()),
        None => ("application/octet-stream", "bin"),
    };
    let disposition = format!("attachment; filename=\"{}.{extension}\"", material.sha256);
    let mut response = (StatusCode::OK, content).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    // Personal data: no cache keeps a copy, no browser second-guesses it.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

#[derive(Debug, thiserror::Error)]
#[error("stored file `{0}` opened to other content than its row names")]
struct Mismatch(String);

/// Names the parameter of a query the deserializer refused.
fn bad_query(text: &str) -> ApiError {
    let field = text
        .split_once("unknown field `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(name, _)| name.to_owned());
    match field {
        Some(name) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("`{name}` is not a parameter of this request"),
        )
        .with_field(name),
        None => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "the query string could not be read",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixtures;

    #[test]
    fn a_kind_must_be_one_the_workflow_declares() {
        let (workflow, _) = fixtures();
        assert_eq!(
            declared_kind(workflow, Some("photo".into()))
                .ok()
                .as_deref(),
            Some("photo")
        );
        for kind in [None, Some("selfie".to_owned()), Some(String::new())] {
            let error = declared_kind(workflow, kind.clone()).err();
            let error = error.as_ref();
            assert_eq!(
                error.map(|e| (e.status, e.code, e.field.as_deref())),
                Some((StatusCode::BAD_REQUEST, "invalid_field", Some("kind"))),
                "{kind:?}"
            );
            assert!(
                error.is_some_and(|e| e.message.contains("id_card, photo")),
                "{error:?}"
            );
        }
        let error = declared_kind(workflow, Some("selfie".into())).err();
        assert!(error.is_some_and(|e| e.message.contains("`selfie`")));
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused() {
        let headers = HeaderMap::new();
        let read = read_limited(&headers, Body::from(vec![1u8; 10]), 10).await;
        assert_eq!(read.ok().map(|b| b.len()), Some(10));
        let read = read_limited(&headers, Body::from(vec![1u8; 11]), 10).await;
        let error = read.err();
        assert_eq!(
            error.as_ref().map(|e| (e.status, e.code)),
            Some((StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"))
        );
        assert!(error.is_some_and(|e| e.message.contains("10 bytes")));
        let mut declared = HeaderMap::new();
        declared.insert(header::CONTENT_LENGTH, HeaderValue::from_static("11"));
        let read = read_limited(&declared, Body::empty(), 10).await;
        assert!(read.is_err());
    }

    #[test]
    fn the_same_content_as_another_kind_is_a_conflict() {
        let record = MaterialRecord {
            case_id: "c".into(),
            sha256: "ab".repeat(32),
            kind: "photo".into(),
            media_type: "image/jpeg".into(),
            size: 3,
            stored_as: uuid::Uuid::new_v4().to_string(),
            uploaded_at: Utc::now(),
            uploaded_by: "token:front".into(),
        };
        assert_eq!(
            again(&record, "photo").ok().map(|r| r.status()),
            Some(StatusCode::OK)
        );
        let error = again(&record, "id_card").err();
        assert_eq!(
            error.map(|e| (e.status, e.code)),
            Some((StatusCode::CONFLICT, "material_exists"))
        );
    }
}
