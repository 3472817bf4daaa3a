//! Master keys from configuration, and the per-case data keys they wrap.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use docket_workers::sealing::{Keyring, OpenError, SealedBytes};
use serde_json::Value;

use super::PrivacyError;

/// The configured master keys (`ID:BASE64KEY[,…]`, newest first), or
/// none: then only what holds no personal data can be read or written
/// (audit verification, migrations, case lists).
#[derive(Debug, Clone)]
pub struct DataKeys {
    ring: Option<Keyring>,
}

impl DataKeys {
    pub fn parse(text: &str) -> Result<DataKeys, PrivacyError> {
        Keyring::parse(text)
            .map(|ring| DataKeys { ring: Some(ring) })
            .map_err(|e| PrivacyError::Keys(e.to_string()))
    }

    /// Keys that live as long as the process: for a database that does
    /// too (in memory), and for tests.
    pub fn ephemeral() -> DataKeys {
        DataKeys {
            ring: Some(Keyring::ephemeral()),
        }
    }

    /// No keys: anything that needs one fails with
    /// [`PrivacyError::NotConfigured`].
    pub fn unconfigured() -> DataKeys {
        DataKeys { ring: None }
    }

    fn ring(&self) -> Result<&Keyring, PrivacyError> {
        self.ring.as_ref().ok_or(PrivacyError::NotConfigured)
    }

    /// A new key line for configuration: `ID:BASE64KEY`.
    pub fn generate(id: &str) -> String {
        Keyring::generate(id)
    }

    /// The id of the key new case keys are wrapped with.
    pub fn current(&self) -> Option<&str> {
        self.ring.as_ref().map(Keyring::current)
    }

    /// A new case's data key, and its wrapped form for the case row.
    pub fn new_case_key(&self, case_id: &str) -> Result<(CaseKey, String), PrivacyError> {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let wrapped = self.wrap(case_id, &key)?;
        Ok((
            CaseKey {
                case_id: case_id.to_owned(),
                key,
            },
            wrapped,
        ))
    }

    /// Unwraps a case's data key from its case row.
    pub fn open_case_key(&self, case_id: &str, wrapped: &str) -> Result<CaseKey, PrivacyError> {
        let bad = || PrivacyError::BadCaseKey {
            case: case_id.to_owned(),
        };
        let mut parts = wrapped.splitn(4, ':');
        let (Some("v1"), Some(key), Some(nonce), Some(data)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let sealed = SealedBytes {
            key: key.to_owned(),
            nonce: nonce.to_owned(),
            data: data.to_owned(),
        };
        let bytes = self
            .ring()?
            .open_bytes(&wrap_aad(case_id), &sealed)
            .map_err(|e| match e {
                OpenError::UnknownKey(key) => PrivacyError::UnknownKey {
                    case: case_id.to_owned(),
                    key,
                },
                _ => bad(),
            })?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        Ok(CaseKey {
            case_id: case_id.to_owned(),
            key: Key::from(key),
        })
    }

    /// The case key wrapped with the newest master key; `None` when it
    /// already is.
    pub fn rewrap(&self, case_id: &str, wrapped: &str) -> Result<Option<String>, PrivacyError> {
        let current = self.ring()?.current();
        if wrapped.split(':').nth(1) == Some(current) {
            return Ok(None);
        }
        let key = self.open_case_key(case_id, wrapped)?;
        self.wrap(case_id, &key.key).map(Some)
    }

    fn wrap(&self, case_id: &str, key: &Key) -> Result<String, PrivacyError> {
        let bytes: &[u8] = key;
        let sealed = self.ring()?.seal_bytes(&wrap_aad(case_id), bytes);
        Ok(format!(
            "v1:{}:{}:{}",
            sealed.key, sealed.nonce, sealed.data
        ))
    }
}

fn wrap_aad(case_id: &str) -> Vec<u8> {
    format!("docket-case-key\n{case_id}").into_bytes()
}

/// One case's data key, unwrapped.
#[derive(Clone)]
pub struct CaseKey {
    case_id: String,
    key: Key,
}

impl std::fmt::Debug for CaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseKey")
            .field("case_id", &self.case_id)
            .finish_non_exhaustive()
    }
}

impl CaseKey {
    pub fn case_id(&self) -> &str {
        &self.case_id
    }

    /// Seals `value` for `place` (the document and the value's position
    /// in it): `NONCE.CIPHERTEXT`, both base64.
    pub fn seal(&self, place: &str, value: &Value) -> String {
        let (nonce, data) = self.seal_bytes(place, value.to_string().as_bytes());
        format!("{nonce}.{}", STANDARD.encode(data))
    }

    /// Opens what [`CaseKey::seal`] sealed for the same place.
    pub fn open(&self, place: &str, sealed: &str) -> Result<Value, PrivacyError> {
        let malformed = || PrivacyError::Malformed {
            case: self.case_id.clone(),
            place: place.to_owned(),
        };
        let (nonce, data) = sealed.split_once('.').ok_or_else(malformed)?;
        let data = STANDARD.decode(data).map_err(|_| malformed())?;
        let plain = self.open_bytes(place, nonce, &data)?;
        serde_json::from_slice(&plain).map_err(|_| malformed())
    }

    /// Seals bytes for `place` (an uploaded file): the nonce, base64, and
    /// the ciphertext.
    pub fn seal_bytes(&self, place: &str, plain: &[u8]) -> (String, Vec<u8>) {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = self.aad(place);
        // Encryption with a valid key and nonce only fails past 256 GiB.
        let data = XChaCha20Poly1305::new(&self.key)
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        (STANDARD.encode(nonce), data)
    }

    /// Opens what [`CaseKey::seal_bytes`] sealed for the same place.
    pub fn open_bytes(
        &self,
        place: &str,
        nonce: &str,
        data: &[u8],
    ) -> Result<Vec<u8>, PrivacyError> {
        let nonce: [u8; 24] = STANDARD
            .decode(nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| PrivacyError::Malformed {
                case: self.case_id.clone(),
                place: place.to_owned(),
            })?;
        let aad = self.aad(place);
        XChaCha20Poly1305::new(&self.key)
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: data,
                    aad: &aad,
                },
            )
            .map_err(|_| PrivacyError::Forged {
                case: self.case_id.clone(),
                place: place.to_owned(),
            })
    }

    fn aad(&self, place: &str) -> Vec<u8> {
        format!("docket-field\n{}\n{place}", self.case_id).into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_case_key_survives_rotation_of_the_master_key() {
        let k1 = DataKeys::generate("k1");
        let k2 = DataKeys::generate("k2");
        let before = DataKeys::parse(&k1).unwrap_or_else(|_| DataKeys::ephemeral());
        let Ok((key, wrapped)) = before.new_case_key("case-1") else {
            panic!("a configured key wraps")
        };
        let sealed = key.seal("state#/input/name", &json!("张三"));

        let during =
            DataKeys::parse(&format!("{k2},{k1}")).unwrap_or_else(|_| DataKeys::ephemeral());
        let rewrapped = during.rewrap("case-1", &wrapped).ok().flatten();
        assert!(
            rewrapped
                .as_deref()
                .is_some_and(|w| w.starts_with("v1:k2:"))
        );
        let rewrapped = rewrapped.unwrap_or_default();
        assert_eq!(during.rewrap("case-1", &rewrapped), Ok(None));

        let after = DataKeys::parse(&k2).unwrap_or_else(|_| DataKeys::ephemeral());
        let opened = after.open_case_key("case-1", &rewrapped);
        assert_eq!(
            opened.and_then(|k| k.open("state#/input/name", &sealed)),
            Ok(json!("张三"))
        );
        assert!(matches!(
            after.open_case_key("case-1", &wrapped),
            Err(PrivacyError::UnknownKey { key, .. }) if key == "k1"
        ));
    }

    #[test]
    fn keys_and_values_are_bound_to_their_case_and_place() {
        let keys = DataKeys::ephemeral();
        let Ok((key, wrapped)) = keys.new_case_key("case-1") else {
            panic!("a configured key wraps")
        };
        assert_eq!(
            DataKeys::unconfigured()
                .open_case_key("case-1", &wrapped)
                .err(),
            Some(PrivacyError::NotConfigured)
        );
        assert!(matches!(
            keys.open_case_key("case-2", &wrapped),
            Err(PrivacyError::BadCaseKey { .. })
        ));
        let sealed = key.seal("state#/input/name", &json!("张三"));
        assert!(!sealed.contains("张三"));
        assert!(matches!(
            key.open("state#/input/id_number", &sealed),
            Err(PrivacyError::Forged { .. })
        ));
        let mut altered = sealed.clone();
        altered.pop();
        altered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(key.open("state#/input/name", &altered).is_err());
        assert!(matches!(
            key.open("state#/input/name", "no-dot"),
            Err(PrivacyError::Malformed { .. })
        ));
    }
}
