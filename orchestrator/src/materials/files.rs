//! Uploaded files on disk: each sealed (XChaCha20-Poly1305 under its
//! case's data key, like the case's personal fields) and kept under a
//! generated name, so neither the directory listing nor a copy of the disk
//! shows anything of the photos and scans, nor which case they belong to.
//! Erasing the case's key at the end of its retention leaves its files
//! unreadable; rotating the master keys needs nothing of them.
//!
//! A file is written under a temporary name, flushed, then renamed: a
//! reader never meets a half-written file. The seal is bound to the case
//! and the content hash, so a file moved to another case's row, or swapped
//! with another, fails to open.
//!
//! Layout of a file: one line of JSON, `{"v":2,"nonce":BASE64}`, then the
//! ciphertext as raw bytes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::privacy::{CaseKey, PrivacyError};

/// Why a file could not be kept or read back. Never quotes content.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("the uploads directory could not be used")]
    Io(#[from] std::io::Error),
    #[error("`{0}` is not a file name this store gives out")]
    BadName(String),
    #[error("stored file `{0}` is not a sealed material")]
    Malformed(String),
    #[error("stored file `{name}` could not be opened")]
    Open {
        name: String,
        #[source]
        source: PrivacyError,
    },
}

/// The first line of a stored file.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    v: u32,
    nonce: String,
}

const LAYOUT: u32 = 2;

/// The uploads directory.
#[derive(Debug, Clone)]
pub struct MaterialFiles {
    dir: PathBuf,
}

impl MaterialFiles {
    /// The directory is created (readable by its owner only) with the
    /// first file.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        MaterialFiles { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Seals `content` under its case's key and writes it under a new
    /// name, which it returns.
    pub async fn store(
        &self,
        key: &CaseKey,
        sha256: &str,
        content: &[u8],
    ) -> Result<String, FileError> {
        let mut builder = tokio::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        builder.mode(0o700);
        builder.create(&self.dir).await?;

        let (nonce, ciphertext) = key.seal_bytes(&place(sha256), content);
        let header = Header { v: LAYOUT, nonce };
        let mut bytes = serde_json::to_vec(&header).unwrap_or_default();
        bytes.push(b'\n');
        bytes.extend_from_slice(&ciphertext);

        let name = uuid::Uuid::new_v4().hyphenated().to_string();
        let partial = self.dir.join(format!(".{name}.part"));
        let written = write_new(&partial, &bytes).await;
        let renamed = match written {
            Ok(()) => tokio::fs::rename(&partial, self.dir.join(&name)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = renamed {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e.into());
        }
        // The rename itself survives a crash once the directory is flushed.
        #[cfg(unix)]
        if let Ok(dir) = tokio::fs::File::open(&self.dir).await {
            let _ = dir.sync_all().await;
        }
        Ok(name)
    }

    /// The content of the file `name`, stored under `key` with `sha256`.
    pub async fn read(
        &self,
        key: &CaseKey,
        sha256: &str,
        name: &str,
    ) -> Result<Vec<u8>, FileError> {
        let bytes = tokio::fs::read(self.path(name)?).await?;
        let malformed = || FileError::Malformed(name.to_owned());
        let newline = bytes
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(malformed)?;
        let (header, rest) = bytes.split_at(newline);
        let header: Header = serde_json::from_slice(header).map_err(|_| malformed())?;
        if header.v != LAYOUT {
            return Err(malformed());
        }
        key.open_bytes(
            &place(sha256),
            &header.nonce,
            rest.get(1..).unwrap_or_default(),
        )
        .map_err(|source| FileError::Open {
            name: name.to_owned(),
            source,
        })
    }

    /// Removes the file `name`; one already gone is not an error.
    pub async fn remove(&self, name: &str) -> Result<(), FileError> {
        match tokio::fs::remove_file(self.path(name)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The path of a stored name: only names [`MaterialFiles::store`]
    /// gives out are accepted, so a row can never point outside the
    /// directory.
    fn path(&self, name: &str) -> Result<PathBuf, FileError> {
        match uuid::Uuid::parse_str(name) {
            Ok(id) if id.hyphenated().to_string() == name => Ok(self.dir.join(name)),
            _ => Err(FileError::BadName(name.to_owned())),
        }
    }
}

/// What a file's seal is bound to, besides its case.
fn place(sha256: &str) -> String {
    format!("material/{sha256}")
}

/// Writes a new file (its owner alone may read it) and flushes it.
async fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path).await?;
    file.write_all(bytes).await?;
    file.sync_all().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::DataKeys;

    fn key(case_id: &str) -> CaseKey {
        match DataKeys::ephemeral().new_case_key(case_id) {
            Ok((key, _)) => key,
            Err(e) => panic!("{e}"),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("docket-files-{name}-{}", std::process::id()))
    }

    /// A JPEG's first bytes, then what a photo of an ID card shows.
    const PHOTO: &[u8] = b"\xFF\xD8\xFF\xE0 a photo of Zhang San, ID 11010519491231002X";

    #[tokio::test]
    async fn a_file_is_sealed_under_a_generated_name_and_reads_back() -> Result<(), FileError> {
        let dir = temp_dir("roundtrip");
        let _ = std::fs::remove_dir_all(&dir);
        let files = MaterialFiles::new(dir.join("uploads"));
        let case_1 = key("case-1");
        let name = files.store(&case_1, "abc", PHOTO).await?;
        assert!(uuid::Uuid::parse_str(&name).is_ok(), "{name}");
        let names: Vec<String> = std::fs::read_dir(files.dir())?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![name.clone()], "no temporary file is left");
        let on_disk = std::fs::read(files.dir().join(&name))?;
        for secret in [&b"11010519491231002X"[..], b"Zhang San", b"a photo"] {
            assert!(
                !on_disk.windows(secret.len()).any(|w| w == secret),
                "the file holds plaintext"
            );
        }
        assert_eq!(files.read(&case_1, "abc", &name).await?, PHOTO);

        // Bound to its case's key and its hash.
        assert!(matches!(
            files.read(&key("case-2"), "abc", &name).await,
            Err(FileError::Open { .. })
        ));
        assert!(matches!(
            files.read(&case_1, "abd", &name).await,
            Err(FileError::Open { .. })
        ));
        // Another key of the same case (one erased and made again) does not.
        assert!(files.read(&key("case-1"), "abc", &name).await.is_err());

        files.remove(&name).await?;
        files.remove(&name).await?;
        assert!(matches!(
            files.read(&case_1, "abc", &name).await,
            Err(FileError::Io(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[tokio::test]
    async fn only_generated_names_are_opened() {
        let files = MaterialFiles::new(temp_dir("names"));
        for name in [
            "../etc/passwd",
            "/etc/passwd",
            "photo.jpg",
            "",
            // A UUID, but not written as this store writes them.
            "6F9619FF8B86D011B42D00C04FC964FF",
        ] {
            assert!(
                matches!(
                    files.read(&key("c"), "h", name).await,
                    Err(FileError::BadName(_))
                ),
                "{name}"
            );
            assert!(matches!(
                files.remove(name).await,
                Err(FileError::BadName(_))
            ));
        }
    }

    #[tokio::test]
    async fn a_damaged_file_is_reported() -> Result<(), FileError> {
        let dir = temp_dir("damaged");
        let _ = std::fs::remove_dir_all(&dir);
        let files = MaterialFiles::new(&dir);
        let case_1 = key("case-1");
        let name = files.store(&case_1, "abc", PHOTO).await?;
        let path = dir.join(&name);
        let mut bytes = std::fs::read(&path)?;
        if let Some(last) = bytes.last_mut() {
            *last ^= 1;
        }
        std::fs::write(&path, &bytes)?;
        assert!(matches!(
            files.read(&case_1, "abc", &name).await,
            Err(FileError::Open { .. })
        ));
        std::fs::write(&path, b"not sealed")?;
        assert!(matches!(
            files.read(&case_1, "abc", &name).await,
            Err(FileError::Malformed(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
