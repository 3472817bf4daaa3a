//! Sealing jobs for Redis: a job's parameters carry personal information
//! (names, ID numbers, addresses), so what sits in Redis is an envelope
//! encrypted with XChaCha20-Poly1305 under a configured key. The key id
//! travels in the envelope, so keys can rotate: the newest key seals,
//! every configured key opens.
//!
//! Keys come from configuration (`DOCKET_JOB_KEYS`), never from a store:
//! `ID:BASE64KEY[,ID:BASE64KEY…]`, newest first, 32-byte keys.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use crate::contract::Job;

/// What Redis holds for one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// In clear, so a worker that cannot open the envelope can still
    /// report the attempt as failed.
    pub attempt_id: String,
    pub key: String,
    pub nonce: String,
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    #[error("keys must be given as ID:BASE64KEY[,ID:BASE64KEY…]; entry {0} is not")]
    Format(usize),
    #[error("key `{0}` is not 32 bytes of base64")]
    Key(String),
    #[error("key id `{0}` is given twice")]
    Duplicate(String),
    #[error("no key is configured")]
    Empty,
}

/// Why an envelope could not be opened. Never contains the payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("the job is sealed with key `{0}`, which this process does not have")]
    UnknownKey(String),
    #[error("the job's envelope is malformed")]
    Malformed,
    #[error("the job failed authentication: it was altered or sealed with another key")]
    Forged,
    #[error("the job's content is not a job of a known layout")]
    Layout,
}

/// The keys of one process.
#[derive(Clone)]
pub struct Keyring {
    current: String,
    keys: BTreeMap<String, Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key ids only: the keys never reach a log.
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// Parses `ID:BASE64KEY[,…]`, newest first.
    pub fn parse(text: &str) -> Result<Keyring, KeyringError> {
        let mut keys = BTreeMap::new();
        let mut current = None;
        for (i, entry) in text
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let (id, key) = entry.split_once(':').ok_or(KeyringError::Format(i + 1))?;
            let bytes: [u8; 32] = STANDARD
                .decode(key.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .filter(|_| !id.is_empty())
                .ok_or_else(|| KeyringError::Key(id.to_owned()))?;
            if keys.insert(id.to_owned(), Key::from(bytes)).is_some() {
                return Err(KeyringError::Duplicate(id.to_owned()));
            }
            current.get_or_insert_with(|| id.to_owned());
        }
        Ok(Keyring {
            current: current.ok_or(KeyringError::Empty)?,
            keys,
        })
    }

    /// A keyring with one fresh random key, for a process that seals and
    /// opens its own jobs (the embedded mode, tests).
    pub fn ephemeral() -> Keyring {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        Keyring {
            current: "ephemeral".to_owned(),
            keys: [("ephemeral".to_owned(), key)].into(),
        }
    }

    /// Generates a key line for configuration: `ID:BASE64KEY`.
    pub fn generate(id: &str) -> String {
        format!(
            "{id}:{}",
            STANDARD.encode(XChaCha20Poly1305::generate_key(&mut OsRng))
        )
    }

    pub fn seal(&self, job: &Job) -> Sealed {
        // A Job always serializes; an empty payload would fail to open and
        // be reported, never silently lost.
        let plain = serde_json::to_vec(job).unwrap_or_default();
        let sealed = self.seal_bytes(b"", &plain);
        Sealed {
            attempt_id: job.attempt_id.clone(),
            key: sealed.key,
            nonce: sealed.nonce,
            data: sealed.data,
        }
    }

    pub fn open(&self, sealed: &Sealed) -> Result<Job, OpenError> {
        let plain = self.open_bytes(
            b"",
            &SealedBytes {
                key: sealed.key.clone(),
                nonce: sealed.nonce.clone(),
                data: sealed.data.clone(),
            },
        )?;
        let job: Job = serde_json::from_slice(&plain).map_err(|_| OpenError::Layout)?;
        // The clear attempt id must be the sealed one, or a report would go
        // to the wrong attempt.
        if job.attempt_id != sealed.attempt_id {
            return Err(OpenError::Forged);
        }
        Ok(job)
    }

    /// The id of the key that seals.
    pub fn current(&self) -> &str {
        &self.current
    }

    /// Seals any bytes under the newest key. `aad` is authenticated but not
    /// stored: opening needs the same, so a ciphertext moved to another
    /// place (another case, another field) fails to open.
    pub fn seal_bytes(&self, aad: &[u8], plain: &[u8]) -> SealedBytes {
        let key = &self.keys[&self.current];
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption with a valid key and nonce only fails past 256 GiB.
        let data = XChaCha20Poly1305::new(key)
            .encrypt(&nonce, Payload { msg: plain, aad })
            .unwrap_or_default();
        SealedBytes {
            key: self.current.clone(),
            nonce: STANDARD.encode(nonce),
            data: STANDARD.encode(data),
        }
    }

    pub fn open_bytes(&self, aad: &[u8], sealed: &SealedBytes) -> Result<Vec<u8>, OpenError> {
        let key = self
            .keys
            .get(&sealed.key)
            .ok_or_else(|| OpenError::UnknownKey(sealed.key.clone()))?;
        let nonce: [u8; 24] = STANDARD
            .decode(&sealed.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or(OpenError::Malformed)?;
        let data = STANDARD
            .decode(&sealed.data)
            .map_err(|_| OpenError::Malformed)?;
        XChaCha20Poly1305::new(key)
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: data.as_slice(),
                    aad,
                },
            )
            .map_err(|_| OpenError::Forged)
    }
}

/// Bytes sealed under one of a keyring's keys, named by its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedBytes {
    pub key: String,
    pub nonce: String,
    pub data: String,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::contract::JOB_VERSION;

    fn job() -> Job {
        Job {
            version: JOB_VERSION,
            attempt_id: "case-1/verify/1/1".into(),
            case_id: "case-1".into(),
            step: "verify".into(),
            attempt: 1,
            handler: "identity.verify".into(),
            queue: "identity".into(),
            params: json!({"name": "张三", "id_number": "11010519491231002X"})
                .as_object()
                .cloned()
                .unwrap(),
            timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn sealed_jobs_open_and_hide_personal_data() {
        let ring = Keyring::ephemeral();
        let sealed = ring.seal(&job());
        let text = serde_json::to_string(&sealed).unwrap();
        assert!(
            !text.contains("11010519491231002X") && !text.contains("张三"),
            "{text}"
        );
        assert_eq!(ring.open(&sealed), Ok(job()));
    }

    #[test]
    fn keys_rotate_newest_first() {
        let old = Keyring::generate("k1");
        let new = Keyring::generate("k2");
        let before = Keyring::parse(&old).unwrap();
        let after = Keyring::parse(&format!("{new},{old}")).unwrap();
        let sealed_before = before.seal(&job());
        assert_eq!(after.open(&sealed_before), Ok(job()));
        let sealed_after = after.seal(&job());
        assert_eq!(sealed_after.key, "k2");
        assert_eq!(
            before.open(&sealed_after),
            Err(OpenError::UnknownKey("k2".into()))
        );
    }

    #[test]
    fn altered_envelopes_are_refused() {
        let ring = Keyring::ephemeral();
        let mut sealed = ring.seal(&job());
        sealed.attempt_id = "case-2/verify/1/1".into();
        assert_eq!(ring.open(&sealed), Err(OpenError::Forged));
        let mut sealed = ring.seal(&job());
        let mut data = STANDARD.decode(&sealed.data).unwrap();
        data[0] ^= 1;
        sealed.data = STANDARD.encode(data);
        assert_eq!(ring.open(&sealed), Err(OpenError::Forged));
        sealed.nonce = "short".into();
        assert_eq!(ring.open(&sealed), Err(OpenError::Malformed));
    }

    #[test]
    fn bad_key_configuration_is_named() {
        assert_eq!(Keyring::parse("").unwrap_err(), KeyringError::Empty);
        assert_eq!(
            Keyring::parse("nocolon").unwrap_err(),
            KeyringError::Format(1)
        );
        assert_eq!(
            Keyring::parse("k1:c2hvcnQ=").unwrap_err(),
            KeyringError::Key("k1".into())
        );
        let k = Keyring::generate("k1");
        assert_eq!(
            Keyring::parse(&format!("{k},{k}")).unwrap_err(),
            KeyringError::Duplicate("k1".into())
        );
        assert!(
            !format!("{:?}", Keyring::parse(&k).unwrap()).contains(k.split_once(':').unwrap().1)
        );
    }
}
