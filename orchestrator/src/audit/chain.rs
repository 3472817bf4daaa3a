//! The hashes: a canonical encoding of what is stored, and SHA-256 over
//! it chained to the previous hash.

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The "previous hash" of a case's first event and of the first checkpoint.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// History times are kept to the microsecond, as PostgreSQL stores them,
/// so that a time read back hashes as it was written.
pub fn stored_time(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

fn time_text(at: DateTime<Utc>) -> String {
    stored_time(at).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// One event as stored, hashed.
#[derive(Debug, Clone, PartialEq)]
pub struct EventContent<'a> {
    pub case_id: &'a str,
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: &'a str,
    pub kind: &'a str,
    pub payload: &'a Value,
}

/// The hash of an event, chained to the hash of the one before it.
pub fn event_hash(previous: &str, event: &EventContent<'_>) -> String {
    let content = Value::Array(vec![
        Value::from(event.case_id),
        Value::from(event.seq),
        Value::from(time_text(event.at)),
        Value::from(event.actor),
        Value::from(event.kind),
        event.payload.clone(),
    ]);
    digest("docket-history-v1", previous, &canonical(&content))
}

/// One line of a checkpoint: a case's head when it was taken.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub case_id: String,
    pub seq: i64,
    pub head: String,
}

/// The hash of a checkpoint, chained to the one before it. Entries are
/// hashed in case order, whatever order they are given in.
pub fn checkpoint_hash(previous: &str, at: DateTime<Utc>, entries: &[Entry]) -> String {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.case_id.cmp(&b.case_id));
    let content = Value::Array(vec![
        Value::from(time_text(at)),
        Value::Array(
            sorted
                .iter()
                .map(|e| {
                    Value::Array(vec![
                        Value::from(e.case_id.as_str()),
                        Value::from(e.seq),
                        Value::from(e.head.as_str()),
                    ])
                })
                .collect(),
        ),
    ]);
    digest("docket-checkpoint-v1", previous, &canonical(&content))
}

fn digest(domain: &str, previous: &str, content: &str) -> String {
    let mut h = Sha256::new();
    h.update(domain.as_bytes());
    h.update(b"\n");
    h.update(previous.as_bytes());
    h.update(b"\n");
    h.update(content.as_bytes());
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// JSON with object keys sorted at every level and no insignificant
/// whitespace: the same value always encodes to the same text, whichever
/// database stored it and however it ordered the keys.
pub fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event<'a>(payload: &'a Value, seq: i64) -> EventContent<'a> {
        EventContent {
            case_id: "case-1",
            seq,
            at: DateTime::parse_from_rfc3339("2026-03-02T01:00:00.123456789Z")
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default(),
            actor: "gateway",
            kind: "signal_received",
            payload,
        }
    }

    #[test]
    fn key_order_and_whitespace_do_not_change_the_encoding() {
        let a: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": [1, 2], "x": "张"}}"#).unwrap_or_default();
        let b: Value =
            serde_json::from_str(r#"{"a":{"x":"张","y":[1,2]},"b":1}"#).unwrap_or_default();
        assert_eq!(canonical(&a), canonical(&b));
        assert_eq!(canonical(&a), r#"{"a":{"x":"张","y":[1,2]},"b":1}"#);
    }

    #[test]
    fn every_stored_column_and_the_previous_hash_count() {
        let payload = json!({"type": "signal_received", "event": "permit_ready"});
        let base = event_hash(GENESIS, &event(&payload, 1));
        assert_eq!(base.len(), 64);
        assert_ne!(base, event_hash(GENESIS, &event(&payload, 2)));
        assert_ne!(base, event_hash(&base, &event(&payload, 1)));
        let other = json!({"type": "signal_received", "event": "permit_collected"});
        assert_ne!(base, event_hash(GENESIS, &event(&other, 1)));
        let mut by = event(&payload, 1);
        by.actor = "officer";
        assert_ne!(base, event_hash(GENESIS, &by));
        // Nanoseconds a database does not keep do not count.
        let mut later = event(&payload, 1);
        later.at += chrono::Duration::nanoseconds(200);
        assert_eq!(base, event_hash(GENESIS, &later));
    }

    #[test]
    fn checkpoints_hash_entries_in_case_order() {
        let at = Utc::now();
        let e = |c: &str| Entry {
            case_id: c.into(),
            seq: 3,
            head: "ab".into(),
        };
        assert_eq!(
            checkpoint_hash(GENESIS, at, &[e("a"), e("b")]),
            checkpoint_hash(GENESIS, at, &[e("b"), e("a")])
        );
        assert_ne!(
            checkpoint_hash(GENESIS, at, &[e("a")]),
            checkpoint_hash(GENESIS, at, &[e("a"), e("b")])
        );
    }
}
