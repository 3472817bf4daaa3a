//! Sealing a document's personal values for storage, and opening them
//! again. A value is sealed for its place: the document (`state`,
//! `history/SEQ`, `job/ATTEMPT`) and its JSON pointer within it, so a
//! ciphertext copied elsewhere does not open.

use serde_json::{Map, Value};

use super::marker::{self, SEALED};
use super::{CaseKey, PrivacyError};

/// Replaces every marked personal value in `doc` by its sealed form. With
/// no key (the case's key was erased) a personal value is an error: there
/// is no way left to store it.
pub fn seal_markers(
    doc: &mut Value,
    key: Option<&CaseKey>,
    case_id: &str,
    document: &str,
) -> Result<(), PrivacyError> {
    walk(doc, &mut String::new(), &mut |value, pointer| {
        if marker::personal(value).is_none() {
            return Ok(false);
        }
        let key = key.ok_or_else(|| PrivacyError::Erased {
            case: case_id.to_owned(),
        })?;
        *value = sealed(key.seal(&place(document, pointer), value));
        Ok(true)
    })
}

/// Seals `doc[field]` whole, whatever it holds (a job's parameters).
pub fn seal_field(doc: &mut Value, field: &str, key: &CaseKey, document: &str) {
    if let Some(value) = doc.get_mut(field) {
        let pointer = format!("/{}", escape(field));
        *value = sealed(key.seal(&place(document, &pointer), value));
    }
}

/// Replaces every sealed value in `doc` by what it holds; by the erased
/// marker when the case has no key any more.
pub fn open_sealed(
    doc: &mut Value,
    key: Option<&CaseKey>,
    document: &str,
) -> Result<(), PrivacyError> {
    walk(doc, &mut String::new(), &mut |value, pointer| {
        let Some(text) = value.as_object().and_then(|o| o.get(SEALED)) else {
            return Ok(false);
        };
        *value = match key {
            Some(key) => match text.as_str() {
                Some(text) => key.open(&place(document, pointer), text)?,
                None => {
                    return Err(PrivacyError::Malformed {
                        case: key.case_id().to_owned(),
                        place: place(document, pointer),
                    });
                }
            },
            None => marker::erased(),
        };
        Ok(true)
    })
}

fn sealed(text: String) -> Value {
    let mut m = Map::new();
    m.insert(SEALED.to_owned(), Value::String(text));
    Value::Object(m)
}

fn place(document: &str, pointer: &str) -> String {
    format!("{document}#{pointer}")
}

/// Calls `visit` on every value, outermost first, with its JSON pointer;
/// does not descend into a value `visit` replaced (returned `true`).
fn walk(
    value: &mut Value,
    pointer: &mut String,
    visit: &mut impl FnMut(&mut Value, &str) -> Result<bool, PrivacyError>,
) -> Result<(), PrivacyError> {
    if visit(value, pointer)? {
        return Ok(());
    }
    let len = pointer.len();
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                pointer.push('/');
                pointer.push_str(&escape(k));
                walk(v, pointer, visit)?;
                pointer.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                pointer.push('/');
                pointer.push_str(&i.to_string());
                walk(v, pointer, visit)?;
                pointer.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

/// RFC 6901 escaping of one pointer segment.
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::DataKeys;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "input": {
                "name": {"$personal": "张三", "$type": "string"},
                "id/number": {"$personal": "350502199001011234", "$type": "id_number"},
                "category": "study"
            },
            "events": {"bound": {"data": {"address": {"$personal": "丰泽区东湖街 1 号", "$type": "string"}}}}
        })
    }

    #[test]
    fn sealed_documents_hold_no_personal_value_and_open_back() {
        let Ok((key, _)) = DataKeys::ephemeral().new_case_key("c1") else {
            panic!("a configured key wraps")
        };
        let mut stored = doc();
        assert_eq!(seal_markers(&mut stored, Some(&key), "c1", "state"), Ok(()));
        let text = stored.to_string();
        for secret in ["张三", "350502199001011234", "东湖"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(stored["input"]["category"], json!("study"));
        let mut opened = stored.clone();
        assert_eq!(open_sealed(&mut opened, Some(&key), "state"), Ok(()));
        assert_eq!(opened, doc());
        // Another document's ciphertext does not open here.
        assert!(open_sealed(&mut stored.clone(), Some(&key), "history/1").is_err());
        // Without the key, each value reads as erased.
        let mut erased = stored;
        assert_eq!(open_sealed(&mut erased, None, "state"), Ok(()));
        assert_eq!(erased["input"]["name"], json!({"$erased": true}));
        assert_eq!(erased["input"]["category"], json!("study"));
    }

    #[test]
    fn a_whole_field_seals_and_opens() {
        let Ok((key, _)) = DataKeys::ephemeral().new_case_key("c1") else {
            panic!("a configured key wraps")
        };
        let mut job = json!({"attempt_id": "c1/a/1/1", "params": {"name": "张三", "n": 1}});
        seal_field(&mut job, "params", &key, "job/c1/a/1/1");
        assert!(!job.to_string().contains("张三"));
        assert_eq!(job["attempt_id"], json!("c1/a/1/1"));
        assert_eq!(open_sealed(&mut job, Some(&key), "job/c1/a/1/1"), Ok(()));
        assert_eq!(job["params"], json!({"name": "张三", "n": 1}));
    }

    #[test]
    fn storing_personal_data_without_a_key_is_refused() {
        assert!(matches!(
            seal_markers(&mut doc(), None, "c1", "state"),
            Err(PrivacyError::Erased { .. })
        ));
        let mut plain = json!({"input": {"category": "study"}});
        assert_eq!(seal_markers(&mut plain, None, "c1", "state"), Ok(()));
    }
}
