//! Materials: the files (photos, scans) uploaded for a case.
//!
//! - [`media`]: what a file is, decided from its first bytes only (JPEG,
//!   PNG or PDF).
//! - [`files`]: the files on disk, sealed, under generated names.
//!
//! Their rows are in [`crate::store::materials`], their endpoints in
//! [`crate::api::materials`], and each upload is a `material_uploaded`
//! event in the case's history, so the hash chain covers the content hash.

pub mod files;
pub mod media;

pub use files::{FileError, MaterialFiles};
pub use media::MediaType;
