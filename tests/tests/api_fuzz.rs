//! An API fuzzing run against the real `orchestrator serve --api-listen`:
//! for every operation its own `/openapi.json` documents, proptest
//! generates requests — path parameters, query parameters, bodies and
//! headers shaped by the document's schemas, mostly good ones with one part
//! broken on purpose (see [`Broken`]) — and every answer must be below 500,
//! an error must be JSON with a stable `error.code`, a success must be JSON
//! unless the document says otherwise, and at the end the server must still
//! run and answer `/health`, with no panic in its log.
//!
//! The seed is fixed, so a run repeats; `DOCKET_FUZZ_SEED` (a number)
//! changes it and `DOCKET_FUZZ_CASES` sets the requests per operation
//! (default [`DEFAULT_CASES`]) for longer runs by hand. A failure prints the
//! smallest failing request proptest found. The run is made on SQLite, and
//! on PostgreSQL too when the suite provides one.
//!
//! A last test checks by hand what the fuzzing can only sample: bad input
//! gets a clear error and changes nothing in the case's history.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use docket_tests::{
    Stop, api_token, applicant_case, orchestrator, serve_api_logged, stderr, suite_env,
};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use reqwest::Method;
use reqwest::blocking::Client;
use serde_json::{Map, Value, json};

/// Requests per operation unless `DOCKET_FUZZ_CASES` says otherwise: the
/// whole run stays within about a minute and a half on two cores in a debug
/// build.
const DEFAULT_CASES: u32 = 512;
const DEFAULT_SEED: u64 = 0x0d0c_7e75_f022_2026;

const ROLES: [&str; 5] = ["gateway", "officer", "operator", "auditor", "admin"];

/// The applicant events the gateway may send.
const GATEWAY_EVENTS: &str =
    "address_bound,registration_submitted,application_submitted,supplement_submitted,withdrawn";

/// The residence-permit workflow's events, and one it does not declare.
const EVENTS: [&str; 15] = [
    "address_bound",
    "registration_submitted",
    "registration_approved",
    "registration_rejected",
    "application_submitted",
    "application_accepted",
    "application_refused",
    "supplement_requested",
    "supplement_submitted",
    "permit_ready",
    "permit_collected",
    "information_mismatch",
    "withdrawn",
    "no_such_event",
    "__proto__",
];

const DEADLINES: [&str; 3] = ["issuance_limit", "collection_notice", "no_such_deadline"];

/// Path segments sent as they are: traversal, bad and odd escapes.
const RAW_SEGMENTS: [&str; 16] = [
    "..",
    ".",
    "%2e%2e",
    "%2E",
    "%2F",
    "a%2Fb",
    "%00",
    "%ff",
    "%fe%ff",
    "%c0%af",
    "%",
    "%zz",
    "%E9%99%88",
    "~",
    "%20",
    "%0a",
];

/// Values of query parameters: numbers of every size, dates and times good
/// and bad, cursors good and bad, the words the API knows.
const QUERY_VALUES: [&str; 46] = [
    "",
    "0",
    "1",
    "-1",
    "50",
    "500",
    "501",
    "4294967296",
    "-9223372036854775809",
    "99999999999999999999999999",
    "1e3",
    "0x10",
    " 1",
    "NaN",
    "true",
    "false",
    "TRUE",
    "yes",
    "active",
    "completed",
    "cancelled",
    "residence-permit",
    "await_address",
    "2026-01-01",
    "2026-02-30",
    "2026-2-1",
    "0000-01-01",
    "9999-12-31",
    "+275760-09-13",
    "2026-01-01T00:00:00Z",
    "2026-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-23:59",
    "0000-01-01T00:00:00+23:59",
    "2026-13-01T00:00:00Z",
    "not-a-date",
    "zz",
    "abc",
    "00",
    "7c",
    // "2026-01-01T00:00:00Z|x", "|", "9999-12-31T23:59:59Z|", non-UTF-8
    "323032362d30312d30315430303a30303a30305a7c78",
    "7c",
    "393939392d31322d33315432333a35393a35395a7c",
    "fffe",
    "陈明",
    "%",
    "%zz",
];

/// Whole query strings that are not `name=value` pairs.
const RAW_QUERIES: [&str; 10] = [
    "%",
    "%zz",
    "%ff=%ff",
    "&&",
    "=",
    "a",
    "limit[]=1",
    "+++",
    "%00=%00",
    "case",
];

/// Strings for string fields: good values, escapes and oddities.
const STRINGS: [&str; 34] = [
    "",
    " ",
    "x",
    "test",
    "residence-permit",
    "30days",
    "31days",
    "0days",
    "-1days",
    "99999999999999999999days",
    "15 working days",
    "Decree 663 Art. 9",
    "remote township",
    "陈明",
    "泉州市丰泽区东海街道 1 号",
    "🦀",
    "\u{0}",
    "\u{202e}",
    "a\nb",
    "\"",
    "\\",
    "{{ input.applicant_name }}",
    "'; DROP TABLE cases; --",
    "%s%n",
    "NaN",
    "null",
    "true",
    "-1",
    "2026-01-01",
    "2026-01-01T00:00:00Z",
    "id_card",
    "photo",
    "employment",
    "11010519491231002X",
];

/// Field names for free-form objects (case input, event data).
const KEYS: [&str; 17] = [
    "address",
    "materials",
    "reason",
    "missing",
    "applicant_name",
    "id_number",
    "phone",
    "wechat_openid",
    "category",
    "through_agent",
    "agent_name",
    "agent_id_number",
    "note",
    "",
    "type",
    "__proto__",
    "陈",
];

/// Bodies that are JSON but not an object, or not quite JSON.
const ODD_BODIES: [&str; 16] = [
    "null",
    "[]",
    "\"x\"",
    "1",
    "true",
    "{",
    "}",
    "{\"reason\": }",
    "{\"reason\": \"a\", \"reason\": \"b\"}",
    "{\"reason\": \"\\ud800\"}",
    "{\"reason\": \"\\u0000\"}",
    "{\"data\": {\"address\": 1e400}}",
    "{\"data\": {\"address\": -0}}",
    "{'reason': 'x'}",
    "reason=x",
    "\u{feff}{}",
];

/// `Idempotency-Key` values: fresh, reused, empty, too long, not ASCII.
const KEY_VALUES: [&[u8]; 9] = [
    b"k-1",
    b"",
    b" ",
    b"\t",
    b"key with spaces",
    b"\xff\xfe",
    "陈明".as_bytes(),
    b"k-1 ",
    b"\"quoted\"",
];

const CONTENT_TYPES: [&[u8]; 7] = [
    b"application/json",
    b"application/json; charset=utf-16",
    b"text/plain",
    b"application/x-www-form-urlencoded",
    b"multipart/form-data; boundary=zz",
    b"\xff\xfe",
    b"",
];

/// What the generator draws from besides the document: real case ids and
/// every role's token.
#[derive(Debug, Clone)]
struct Pools {
    case_ids: Vec<String>,
    /// `Authorization` values with what they are, for the report.
    tokens: Vec<(String, Vec<u8>)>,
    garbage_auth: Vec<(String, Vec<u8>)>,
}

/// One operation of the document, as the generator needs it.
#[derive(Debug, Clone)]
struct Operation {
    method: Method,
    path: String,
    path_params: Vec<String>,
    query_params: Vec<(String, Value, bool)>,
    header_params: Vec<String>,
    /// The body's media type and schema.
    body: Option<(String, Value)>,
    /// The media types documented for success answers other than JSON.
    other_success_types: BTreeSet<String>,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// A generated request.
#[derive(Clone)]
struct FuzzRequest {
    method: Method,
    /// Path and query, encoded as sent.
    target: String,
    /// The `Authorization` value, with what it is.
    auth: Option<(String, Vec<u8>)>,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Option<Vec<u8>>,
}

impl fmt::Debug for FuzzRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} {}", self.method, shorten(self.target.as_bytes()))?;
        match &self.auth {
            Some((what, _)) => writeln!(f, "  Authorization: <{what}>")?,
            None => writeln!(f, "  (no Authorization)")?,
        }
        for (name, value) in &self.headers {
            writeln!(f, "  {name}: {}", shorten(value))?;
        }
        match &self.body {
            Some(body) => write!(f, "  body ({} bytes): {}", body.len(), shorten(body)),
            None => write!(f, "  (no body)"),
        }
    }
}

/// Bytes for a report: lossy text, long ones cut.
fn shorten(bytes: &[u8]) -> String {
    const SHOWN: usize = 400;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(SHOWN)]).into_owned();
    let text = format!("{text:?}");
    if bytes.len() > SHOWN {
        format!("{text}… ({} bytes)", bytes.len())
    } else {
        text
    }
}

/// Percent-encodes everything but the unreserved characters.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The document's schema for `schema`, following `$ref`s.
fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    for _ in 0..16 {
        let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
            return schema;
        };
        let pointer = reference.trim_start_matches('#');
        match doc.pointer(pointer) {
            Some(target) => schema = target,
            None => panic!("the document's $ref {reference} points nowhere"),
        }
    }
    panic!("the document's $refs loop")
}

/// Every operation of the document.
fn operations(doc: &Value) -> Vec<Operation> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
            let mut operation = Operation {
                method,
                path: path.clone(),
                path_params: Vec::new(),
                query_params: Vec::new(),
                header_params: Vec::new(),
                body: None,
                other_success_types: BTreeSet::new(),
            };
            for param in op["parameters"].as_array().into_iter().flatten() {
                let param = resolve(doc, param);
                let name = param["name"]
                    .as_str()
                    .expect("a parameter's name")
                    .to_owned();
                match param["in"].as_str() {
                    Some("path") => operation.path_params.push(name),
                    Some("query") => operation.query_params.push((
                        name,
                        param["schema"].clone(),
                        param["required"] == true,
                    )),
                    Some("header") => operation.header_params.push(name),
                    other => panic!("parameter {name} in {other:?}"),
                }
            }
            if let Some(content) = op["requestBody"]["content"].as_object()
                && let Some((media, body)) = content.iter().next()
            {
                operation.body = Some((media.clone(), body["schema"].clone()));
            }
            for (status, response) in op["responses"].as_object().expect("responses") {
                if status.starts_with('2') {
                    for media in response["content"].as_object().into_iter().flatten() {
                        if media.0 != "application/json" {
                            operation.other_success_types.insert(media.0.clone());
                        }
                    }
                }
            }
            ops.push(operation);
        }
    }
    ops
}

fn string_value(pools: &Pools) -> BoxedStrategy<String> {
    let ids = pools.case_ids.clone();
    prop_oneof![
        4 => select(STRINGS.to_vec()).prop_map(str::to_owned),
        1 => select(ids),
        1 => select(EVENTS.to_vec()).prop_map(str::to_owned),
        3 => "\\PC{0,30}",
        1 => "[\\x00-\\x7f]{0,12}",
        1 => (1usize..20_000).prop_map(|n| "x".repeat(n)),
    ]
    .boxed()
}

/// Any JSON value, a few levels deep.
fn any_json(pools: &Pools) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        string_value(pools).prop_map(Value::String),
    ];
    let keys = key_name();
    leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

fn key_name() -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(KEYS.to_vec()).prop_map(str::to_owned),
        1 => "[a-z_]{1,10}",
        1 => "\\PC{0,8}",
    ]
    .boxed()
}

/// Objects the workflow accepts somewhere: a start's input, events' data.
fn good_objects() -> Vec<Value> {
    let address = json!({"address": "泉州市丰泽区东海街道 1 号"});
    let materials = json!({"materials": ["id_card", "photo", "lease_contract", "labour_contract"]});
    vec![
        applicant_case()["input"].clone(),
        // What the cases wait for first, more often.
        address.clone(),
        address.clone(),
        address,
        materials.clone(),
        materials,
        json!({"reason": "incomplete"}),
        json!({"missing": "photo"}),
        json!({}),
    ]
}

/// Values the server accepts for a body field of this name, so that a
/// good share of the requests get past validation and change cases.
fn good_values(name: &str) -> Vec<Value> {
    match name {
        "workflow" => vec![json!("residence-permit")],
        "input" => vec![applicant_case()["input"].clone()],
        "data" => good_objects(),
        "reason" => vec![json!("test"), json!("withdrawn by phone")],
        "to" => vec![json!("30days"), json!("20days"), json!("15 working days")],
        "legal_basis" => vec![json!("Decree 663 Art. 9")],
        _ => Vec::new(),
    }
}

/// A value shaped by `schema`.
fn schema_value(doc: &Value, schema: &Value, depth: u32, pools: &Pools) -> BoxedStrategy<Value> {
    let schema = resolve(doc, schema);
    if depth > 5 {
        return Just(Value::Null).boxed();
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = schema[combinator].as_array()
            && !options.is_empty()
        {
            let choices: Vec<BoxedStrategy<Value>> = options
                .iter()
                .map(|s| schema_value(doc, s, depth + 1, pools))
                .collect();
            return proptest::strategy::Union::new(choices).boxed();
        }
    }
    if let Some(values) = schema["enum"].as_array()
        && !values.is_empty()
    {
        return select(values.clone()).boxed();
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ if schema.get("properties").is_some() => vec!["object"],
        _ => vec![],
    };
    if types.is_empty() {
        return any_json(pools);
    }
    let choices: Vec<BoxedStrategy<Value>> = types
        .into_iter()
        .map(|t| match t {
            "string" => string_value(pools).prop_map(Value::String).boxed(),
            "integer" => prop_oneof![
                (0i64..100).prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
            ]
            .boxed(),
            "number" => any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number))
                .boxed(),
            "boolean" => any::<bool>().prop_map(Value::Bool).boxed(),
            "null" => Just(Value::Null).boxed(),
            "array" => {
                let items = schema_value(doc, &schema["items"], depth + 1, pools);
                prop::collection::vec(items, 0..4)
                    .prop_map(Value::Array)
                    .boxed()
            }
            _ => object_value(doc, schema, depth, pools),
        })
        .collect();
    proptest::strategy::Union::new(choices).boxed()
}

fn object_value(doc: &Value, schema: &Value, depth: u32, pools: &Pools) -> BoxedStrategy<Value> {
    let Some(properties) = schema["properties"].as_object().filter(|p| !p.is_empty()) else {
        // Free-form: something the workflow knows, or anything.
        return prop_oneof![
            1 => select(good_objects()),
            2 => prop::collection::btree_map(key_name(), any_json(pools), 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
        .boxed();
    };
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = properties
        .iter()
        .map(|(name, property)| {
            let is_required = required.contains(name.as_str());
            let name = name.clone();
            let shaped = schema_value(doc, property, depth + 1, pools);
            let good = good_values(&name);
            let value = if good.is_empty() {
                shaped
            } else {
                prop_oneof![2 => select(good), 1 => shaped].boxed()
            };
            let present = value.prop_map(move |v| Some((name.clone(), v)));
            if is_required {
                present.boxed()
            } else {
                prop_oneof![3 => present, 1 => Just(None)].boxed()
            }
        })
        .collect();
    fields
        .prop_map(|fields| Value::Object(fields.into_iter().flatten().collect::<Map<_, _>>()))
        .boxed()
}

/// `value` with one of its fields (or itself, when it has none) changed by
/// `change`.
fn change_field(
    value: Value,
    at: &Index,
    change: impl FnOnce(Option<Value>) -> Option<Value>,
) -> Value {
    match value {
        Value::Object(mut map) if !map.is_empty() => {
            let key = map.keys().nth(at.index(map.len())).cloned().unwrap();
            let old = map.remove(&key);
            if let Some(new) = change(old) {
                map.insert(key, new);
            }
            Value::Object(map)
        }
        other => change(Some(other)).unwrap_or(Value::Null),
    }
}

/// Arrays nested `depth` deep.
fn nested(depth: usize) -> Value {
    let mut value = Value::from("bottom");
    for _ in 0..depth {
        value = Value::Array(vec![value]);
    }
    value
}

/// Which parts of a request are drawn from anything rather than from what
/// the server accepts. A good request with one part broken reaches further
/// than one broken everywhere, which the first check refuses.
#[derive(Debug, Clone, Copy)]
struct Broken {
    auth: bool,
    path: bool,
    query: bool,
    headers: bool,
    body: bool,
}

impl Broken {
    const NOTHING: Broken = Broken {
        auth: false,
        path: false,
        query: false,
        headers: false,
        body: false,
    };
    const EVERYTHING: Broken = Broken {
        auth: true,
        path: true,
        query: true,
        headers: true,
        body: true,
    };
}

/// A JSON body shaped by the schema; when `broken`, changed in one of many
/// ways.
fn json_body(doc: &Value, schema: &Value, pools: &Pools, broken: bool) -> BoxedStrategy<Vec<u8>> {
    let valid = schema_value(doc, schema, 0, pools);
    let bytes = |v: &Value| serde_json::to_vec(v).unwrap();
    if !broken {
        return valid.prop_map(move |v| bytes(&v)).boxed();
    }
    prop_oneof![
        // A field of the wrong type, or null.
        3 => (valid.clone(), any::<Index>(), any_json(pools))
            .prop_map(move |(v, at, other)| bytes(&change_field(v, &at, |_| Some(other)))),
        // A field missing.
        2 => (valid.clone(), any::<Index>())
            .prop_map(move |(v, at)| bytes(&change_field(v, &at, |_| None))),
        // A field too many.
        1 => (valid.clone(), key_name(), any_json(pools)).prop_map(move |(v, key, extra)| {
            let mut v = v;
            if let Some(map) = v.as_object_mut() {
                map.insert(key, extra);
            }
            bytes(&v)
        }),
        // A field nested around the parser's depth limit, or far past it.
        1 => (valid.clone(), any::<Index>(), 100usize..=140)
            .prop_map(move |(v, at, depth)| bytes(&change_field(v, &at, |_| Some(nested(depth))))),
        1 => (200usize..=20_000)
            .prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()),
        1 => (0usize..=3).prop_map(|n| {
            let mut text = "{\"data\": ".repeat(n);
            text.push_str(&"{\"a\": ".repeat(1000));
            text.push('1');
            text.push_str(&"}".repeat(1000 + n));
            text.into_bytes()
        }),
        // A huge string: under the body limit and over it.
        1 => (valid.clone(), any::<Index>(), select(vec![60_000usize, 250_000, 300_000, 2_000_000]))
            .prop_map(move |(v, at, n)| {
                bytes(&change_field(v, &at, |_| Some(Value::String("長".repeat(n / 3)))))
            }),
        1 => select(ODD_BODIES.to_vec()).prop_map(|b| b.as_bytes().to_vec()),
        1 => select(vec!["", " ", "\n\t "]).prop_map(|b| b.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..300),
        // Invalid UTF-8 inside the last string of the body.
        1 => (valid.clone(), select(vec![&b"\xff"[..], b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]))
            .prop_map(move |(v, bad)| {
                let mut b = bytes(&v);
                let at = b.iter().rposition(|c| *c == b'"').unwrap_or(0);
                b.splice(at..at, bad.iter().copied());
                b
            }),
        // Cut short.
        1 => (valid, any::<Index>()).prop_map(move |(v, at)| {
            let mut b = bytes(&v);
            b.truncate(at.index(b.len().max(1)));
            b
        }),
    ]
    .boxed()
}

/// A file's bytes for a body that is not JSON (an upload): a JPEG, PNG or
/// PDF by its first bytes; when `broken`, anything, empty or too large.
fn file_body(broken: bool) -> BoxedStrategy<Vec<u8>> {
    let magic: Vec<&'static [u8]> = vec![
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
        b"\x89PNG\r\n\x1a\n",
        b"%PDF-1.7\n",
    ];
    let valid =
        (select(magic), prop::collection::vec(any::<u8>(), 0..4_000)).prop_map(|(magic, rest)| {
            let mut bytes = magic.to_vec();
            bytes.extend(rest);
            bytes
        });
    if !broken {
        return valid.boxed();
    }
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..2_000),
        1 => Just(Vec::new()),
        1 => select(vec![&b"\xff\xd8"[..], b"%PDF", b"\x89PNG"]).prop_map(<[u8]>::to_vec),
        1 => select(vec![70_000usize, 300_000]).prop_map(|n| {
            let mut bytes = b"%PDF-1.7\n".to_vec();
            bytes.resize(n, b'x');
            bytes
        }),
    ]
    .boxed()
}

/// A path segment for the parameter `name`, encoded as sent.
fn path_value(name: &str, pools: &Pools, broken: bool) -> BoxedStrategy<String> {
    let known: Vec<String> = match name {
        "id" => pools.case_ids.clone(),
        // What the cases wait for first, more often.
        "event" => ["address_bound"; 4]
            .iter()
            .chain(&["registration_submitted"; 2])
            .chain(&EVENTS)
            .map(|e| (*e).to_owned())
            .collect(),
        "deadline" => DEADLINES.iter().map(|d| (*d).to_owned()).collect(),
        _ => vec!["x".to_owned()],
    };
    let known = select(known).prop_map(|v| encode(&v));
    if !broken {
        return known.boxed();
    }
    prop_oneof![
        2 => known,
        2 => select(RAW_SEGMENTS.to_vec()).prop_map(str::to_owned),
        1 => Just(encode("case-does-not-exist")),
        2 => string_value(pools).prop_map(|v| encode(&v)),
        1 => select(vec![5_000usize, 60_000]).prop_map(|n| "y".repeat(n)),
    ]
    .boxed()
}

/// Values a query parameter of this name is meant to take.
fn good_query_values(name: &str, pools: &Pools) -> Vec<String> {
    let words: &[&str] = match name {
        "workflow" => &["residence-permit", "no-such-workflow"],
        "status" => &["active", "completed", "cancelled"],
        "step" => &["await_address", "await_registration", "no_such_step"],
        "created_from" | "from" => &["2000-01-01", "2026-01-01", "2000-01-01T00:00:00Z"],
        "created_to" | "to" => &["2100-12-31", "2026-12-31", "2100-01-01T00:00:00+08:00"],
        "overdue" => &["true", "false"],
        "limit" => &["1", "2", "50", "500"],
        "kind" => &["id_card", "photo", "lease_contract", "labour_contract"],
        "case" => return pools.case_ids.clone(),
        _ => &[],
    };
    words.iter().map(|w| (*w).to_owned()).collect()
}

/// A query string for the operation's parameters; when `broken`, with
/// garbage of every kind.
fn query(op: &Operation, pools: &Pools, broken: bool) -> BoxedStrategy<String> {
    let ids = pools.case_ids.clone();
    let pairs: Vec<BoxedStrategy<Option<String>>> = op
        .query_params
        .iter()
        .map(|(name, schema, required)| {
            let encoded_name = encode(name);
            let good = good_query_values(name, pools);
            let value = match (broken, schema["type"].as_str()) {
                (false, _) if !good.is_empty() => select(good).prop_map(|v| encode(&v)).boxed(),
                (false, _) => string_value(pools).prop_map(|v| encode(&v)).boxed(),
                (true, Some("integer" | "number")) => prop_oneof![
                    any::<i64>().prop_map(|n| n.to_string()),
                    select(QUERY_VALUES.to_vec()).prop_map(encode),
                ]
                .boxed(),
                (true, _) => prop_oneof![
                    6 => select(QUERY_VALUES.to_vec()).prop_map(encode),
                    1 => select(ids.clone()).prop_map(|v| encode(&v)),
                    2 => "\\PC{0,20}".prop_map(|v| encode(&v)),
                    1 => select(vec!["%ff", "%", "%zz", "+", "a+b", "%00"]).prop_map(str::to_owned),
                ]
                .boxed(),
            };
            let pair = value.prop_map(move |v| Some(format!("{encoded_name}={v}")));
            match (required, broken) {
                (true, false) => pair.boxed(),
                (true, true) => prop_oneof![6 => pair, 1 => Just(None)].boxed(),
                (false, _) => prop_oneof![1 => pair, 1 => Just(None)].boxed(),
            }
        })
        .collect();
    if !broken {
        return pairs
            .prop_map(|pairs| {
                let all: Vec<String> = pairs.into_iter().flatten().collect();
                if all.is_empty() {
                    String::new()
                } else {
                    format!("?{}", all.join("&"))
                }
            })
            .boxed();
    }
    let extra = prop_oneof![
        3 => Just(Vec::<String>::new()),
        1 => prop::collection::vec(
            (key_name(), "\\PC{0,8}").prop_map(|(k, v)| format!("{}={}", encode(&k), encode(&v))),
            1..3,
        ),
        1 => select(RAW_QUERIES.to_vec()).prop_map(|q| vec![q.to_owned()]),
    ];
    (pairs, extra, any::<bool>(), any::<bool>())
        .prop_map(|(pairs, extra, repeat, bare)| {
            let mut all: Vec<String> = pairs.into_iter().flatten().collect();
            if repeat && let Some(first) = all.first().cloned() {
                all.push(first);
            }
            all.extend(extra);
            match (all.is_empty(), bare) {
                (true, false) => String::new(),
                _ => format!("?{}", all.join("&")),
            }
        })
        .boxed()
}

fn auth(pools: &Pools, broken: bool) -> BoxedStrategy<Option<(String, Vec<u8>)>> {
    let token = select(pools.tokens.clone()).prop_map(Some);
    if !broken {
        return token.boxed();
    }
    prop_oneof![
        1 => token,
        1 => Just(None),
        3 => select(pools.garbage_auth.clone()).prop_map(Some),
    ]
    .boxed()
}

fn idempotency_key(broken: bool) -> BoxedStrategy<Option<Vec<u8>>> {
    let fresh = "[a-z0-9]{16,32}".prop_map(|k| Some(k.into_bytes()));
    if !broken {
        return fresh.boxed();
    }
    prop_oneof![
        3 => select(KEY_VALUES.to_vec()).prop_map(|k| Some(k.to_vec())),
        1 => select(vec![200usize, 201, 8_000]).prop_map(|n| Some(vec![b'k'; n])),
        1 => Just(None),
    ]
    .boxed()
}

fn content_type(media: &str, broken: bool) -> BoxedStrategy<Option<Vec<u8>>> {
    let documented = Just(Some(media.as_bytes().to_vec()));
    if !broken {
        return documented.boxed();
    }
    prop_oneof![
        1 => Just(None),
        3 => select(CONTENT_TYPES.to_vec()).prop_map(|c| Some(c.to_vec())),
    ]
    .boxed()
}

/// Requests for `op`: mostly good ones with one part broken.
fn requests(doc: &Value, op: &Operation, pools: &Pools) -> BoxedStrategy<FuzzRequest> {
    let only = |change: fn(&mut Broken)| {
        let mut broken = Broken::NOTHING;
        change(&mut broken);
        request(doc, op, pools, broken)
    };
    prop_oneof![
        4 => request(doc, op, pools, Broken::NOTHING),
        1 => only(|b| b.auth = true),
        1 => only(|b| b.path = true),
        1 => only(|b| b.query = true),
        1 => only(|b| b.headers = true),
        3 => only(|b| b.body = true),
        2 => request(doc, op, pools, Broken::EVERYTHING),
    ]
    .boxed()
}

fn request(
    doc: &Value,
    op: &Operation,
    pools: &Pools,
    broken: Broken,
) -> BoxedStrategy<FuzzRequest> {
    let segments: Vec<BoxedStrategy<(String, String)>> = op
        .path_params
        .iter()
        .map(|name| {
            let name = name.clone();
            path_value(&name, pools, broken.path)
                .prop_map(move |v| (name.clone(), v))
                .boxed()
        })
        .collect();
    let key = if op.header_params.iter().any(|h| h == "Idempotency-Key") {
        idempotency_key(broken.headers)
    } else {
        Just(None).boxed()
    };
    let (body, kind) = match &op.body {
        Some((media, schema)) if media.contains("json") => (
            if broken.body {
                prop_oneof![
                    12 => json_body(doc, schema, pools, true).prop_map(Some),
                    1 => Just(None),
                ]
                .boxed()
            } else {
                json_body(doc, schema, pools, false).prop_map(Some).boxed()
            },
            content_type(media, broken.headers),
        ),
        Some((media, _)) => (
            file_body(broken.body).prop_map(Some).boxed(),
            content_type(media, broken.headers),
        ),
        None => (Just(None).boxed(), Just(None).boxed()),
    };
    let template = op.path.clone();
    let method = op.method.clone();
    (
        segments,
        query(op, pools, broken.query),
        auth(pools, broken.auth),
        key,
        kind,
        body,
    )
        .prop_map(move |(segments, query, auth, key, kind, body)| {
            let mut target = template.clone();
            for (name, value) in segments {
                target = target.replace(&format!("{{{name}}}"), &value);
            }
            target.push_str(&query);
            let mut headers = Vec::new();
            if let Some(key) = key {
                headers.push(("Idempotency-Key", key));
            }
            if let Some(kind) = kind {
                headers.push(("Content-Type", kind));
            }
            FuzzRequest {
                method: method.clone(),
                target,
                auth,
                headers,
                body,
            }
        })
        .boxed()
}

/// What sending a request came to.
enum Outcome {
    /// The status, and the error's code when there is one.
    Answered(u16, Option<String>),
    /// The client could not form the request (a URL it refuses); nothing
    /// reached the server.
    Unsendable,
}

/// Sends `request` and checks the answer. A server may answer a request
/// (401, 413 …) before reading its body and close the connection, which
/// HTTP allows; a client still writing the body then sees its write fail
/// instead of the answer. Such a request is sent once more, on a fresh
/// connection; the server not answering twice is a failure.
fn exchange(
    client: &Client,
    base: &str,
    op: &Operation,
    request: &FuzzRequest,
) -> Result<Outcome, String> {
    match exchange_once(client, base, op, request) {
        Err(e) if e.starts_with("no answer") && closed_while_writing(&e) => {
            exchange_once(client, base, op, request)
        }
        other => other,
    }
}

fn closed_while_writing(error: &str) -> bool {
    [
        "Broken pipe",
        "Connection reset",
        "connection closed before message completed",
    ]
    .iter()
    .any(|e| error.contains(e))
}

fn exchange_once(
    client: &Client,
    base: &str,
    op: &Operation,
    request: &FuzzRequest,
) -> Result<Outcome, String> {
    let mut builder = client.request(request.method.clone(), format!("{base}{}", request.target));
    if let Some((_, value)) = &request.auth {
        match reqwest::header::HeaderValue::from_bytes(value) {
            Ok(v) => builder = builder.header(reqwest::header::AUTHORIZATION, v),
            Err(_) => return Ok(Outcome::Unsendable),
        }
    }
    for (name, value) in &request.headers {
        match reqwest::header::HeaderValue::from_bytes(value) {
            Ok(v) => builder = builder.header(*name, v),
            Err(_) => return Ok(Outcome::Unsendable),
        }
    }
    if let Some(body) = &request.body {
        builder = builder.body(body.clone());
    }
    let response = match builder.send() {
        Ok(r) => r,
        Err(e) if e.is_builder() => return Ok(Outcome::Unsendable),
        Err(e) => {
            let mut causes = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                causes.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            return Err(format!("no answer: {causes}"));
        }
    };
    let status = response.status().as_u16();
    let media = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response
        .bytes()
        .map_err(|e| format!("the answer's body could not be read: {e}"))?;
    let text = || shorten(&body);
    if status >= 500 {
        return Err(format!("answered {status}: {}", text()));
    }
    if status >= 400 {
        let value: Value = serde_json::from_slice(&body).map_err(|_| {
            format!(
                "answered {status} with a body that is not JSON ({media}): {}",
                text()
            )
        })?;
        let has_code = value["error"]["code"]
            .as_str()
            .is_some_and(|c| !c.is_empty());
        if !has_code || !value["error"]["message"].is_string() {
            return Err(format!(
                "answered {status} without error.code and message: {}",
                text()
            ));
        }
        if !media.starts_with("application/json") {
            return Err(format!(
                "answered {status} as {media}, not application/json"
            ));
        }
        let code = value["error"]["code"].as_str().map(str::to_owned);
        return Ok(Outcome::Answered(status, code));
    }
    let documented_other = op
        .other_success_types
        .iter()
        .any(|t| media.starts_with(t.as_str()));
    if documented_other {
        if media.starts_with("application/x-ndjson")
            && let Some(line) = String::from_utf8_lossy(&body)
                .lines()
                .find(|l| serde_json::from_str::<Value>(l).is_err())
        {
            return Err(format!(
                "answered {status} with a line that is not JSON: {line:?}"
            ));
        }
        return Ok(Outcome::Answered(status, None));
    }
    if !media.starts_with("application/json") || serde_json::from_slice::<Value>(&body).is_err() {
        return Err(format!(
            "answered {status} ({media}) with a body that is not JSON: {}",
            text()
        ));
    }
    Ok(Outcome::Answered(status, None))
}

/// A server of the test's own on a fresh database, its log kept.
struct Server {
    serve: Stop,
    base: String,
    client: Client,
    tokens: BTreeMap<&'static str, String>,
    log: PathBuf,
    dir: PathBuf,
    /// The PostgreSQL server's URL and the database made for the test.
    postgres: Option<(String, String)>,
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("docket-fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn psql(server: &str, sql: &str) {
    let out = std::process::Command::new("psql")
        .args([server, "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Server {
    fn on_sqlite(name: &str) -> Server {
        let dir = temp_dir(name);
        let database = format!("sqlite:{}", dir.join("docket.sqlite").display());
        Server::on(&database, dir, None)
    }

    /// A database of its own on the suite's PostgreSQL server.
    fn on_postgres(name: &str, server: &str) -> Server {
        let db_name = format!("docket_fuzz_{name}_{}", std::process::id());
        psql(server, &format!("CREATE DATABASE {db_name}"));
        let database = match server.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{db_name}"),
            None => panic!("unexpected database URL"),
        };
        Server::on(
            &database,
            temp_dir(name),
            Some((server.to_owned(), db_name)),
        )
    }

    fn on(database: &str, dir: PathBuf, postgres: Option<(String, String)>) -> Server {
        let database = database.to_owned();
        let mut tokens = BTreeMap::new();
        for role in ROLES {
            tokens.insert(role, api_token(&database, &format!("{role}-1"), role));
        }
        let revoked = api_token(&database, "gone", "admin");
        let out = orchestrator(&["token", "revoke", "--name", "gone", "--database", &database]);
        assert!(out.status.success(), "{}", stderr(&out));
        tokens.insert("revoked", revoked);
        let log = dir.join("serve.log");
        let uploads = dir.join("uploads").display().to_string();
        let flags = [
            "--gateway-event",
            GATEWAY_EVENTS,
            "--uploads-dir",
            &uploads,
            "--upload-limit",
            "64KiB",
        ];
        let (serve, base) = serve_api_logged(&database, &flags, &log);
        let client = Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Server {
            serve,
            base,
            client,
            tokens,
            log,
            dir,
            postgres,
        }
    }

    fn send(&self, method: Method, path: &str, who: &str, body: Option<&[u8]>) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("Idempotency-Key", fresh_key());
        if let Some(token) = self.tokens.get(who) {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_vec());
        }
        let response = request.send().expect("an answer");
        let status = response.status().as_u16();
        let text = response.text().expect("a body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn get(&self, path: &str, who: &str) -> (u16, Value) {
        self.send(Method::GET, path, who, None)
    }

    fn post(&self, path: &str, who: &str, body: &Value) -> (u16, Value) {
        self.send(
            Method::POST,
            path,
            who,
            Some(&serde_json::to_vec(body).unwrap()),
        )
    }

    /// A new case, waiting for the applicant's address.
    fn waiting_case(&self) -> String {
        let (status, case) = self.post("/cases", "admin", &applicant_case());
        assert_eq!(status, 201, "{case:#}");
        let id = case["id"].as_str().expect("an id").to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, case) = self.get(&format!("/cases/{id}"), "admin");
            if case["step"] == "await_address" && case["phase"]["phase"] == "waiting" {
                return id;
            }
            assert!(Instant::now() < deadline, "never waited: {case:#}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails the test if the server stopped, no longer answers `/health`
    /// or logged a panic.
    fn assert_healthy(&mut self) {
        self.serve.assert_running("orchestrator serve");
        let (status, body) = self.get("/health", "none");
        assert_eq!(status, 200, "{body:#}");
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(
            !log.contains("panicked"),
            "the server's log shows a panic:\n{log}"
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.serve.0.kill();
        let _ = self.serve.0.wait();
        if let Some((server, db_name)) = &self.postgres {
            psql(server, &format!("DROP DATABASE {db_name} WITH (FORCE)"));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fresh_key() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "fuzz-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn setting(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {text:?}")),
    )
}

/// A seed of its own per operation, so adding one leaves the others'
/// requests as they were.
fn seed_for(seed: u64, op: &Operation) -> [u8; 32] {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in op.to_string().bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&hash.to_le_bytes());
    bytes
}

#[test]
fn generated_requests_get_no_5xx_and_the_server_stays_up() {
    fuzz(&mut Server::on_sqlite("run"), DEFAULT_CASES);
}

/// The same run on PostgreSQL, which refuses some text SQLite takes (a NUL
/// character): a quarter of the requests unless `DOCKET_FUZZ_CASES` says.
#[test]
fn generated_requests_on_postgres_get_no_5xx() {
    let Some(pg) = suite_env("DOCKET_TEST_DATABASE_URL") else {
        return;
    };
    fuzz(&mut Server::on_postgres("pg", &pg), DEFAULT_CASES / 4);
}

/// Fuzzes every operation of `server`'s document with `cases` requests
/// each (or `DOCKET_FUZZ_CASES`).
fn fuzz(server: &mut Server, cases: u32) {
    let cases =
        setting("DOCKET_FUZZ_CASES").map_or(cases, |n| u32::try_from(n).unwrap_or(u32::MAX));
    let seed = setting("DOCKET_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    eprintln!("fuzzing with {cases} requests per operation, seed {seed}");
    // A case that has ended; each operation gets fresh waiting ones too.
    let finished = server.waiting_case();
    let (status, body) = server.post(
        &format!("/cases/{finished}/cancel"),
        "operator",
        &json!({"reason": "ended before the run"}),
    );
    assert_eq!(status, 200, "{body:#}");
    let admin = server.tokens["admin"].clone();
    let mut pools = Pools {
        case_ids: Vec::new(),
        tokens: ROLES
            .iter()
            .map(|role| {
                let token = &server.tokens[role];
                ((*role).to_owned(), format!("Bearer {token}").into_bytes())
            })
            .collect(),
        garbage_auth: vec![
            (
                "revoked".into(),
                format!("Bearer {}", server.tokens["revoked"]).into_bytes(),
            ),
            ("Bearer".into(), b"Bearer".to_vec()),
            ("Bearer and a space".into(), b"Bearer ".to_vec()),
            ("Basic".into(), b"Basic dXNlcjpwYXNz".to_vec()),
            (
                "lower-case scheme".into(),
                format!("bearer {admin}").into_bytes(),
            ),
            (
                "unknown token".into(),
                b"Bearer docket_not-a-token".to_vec(),
            ),
            (
                "long token".into(),
                format!("Bearer {}", "t".repeat(10_000)).into_bytes(),
            ),
            ("not ASCII".into(), b"Bearer \xff\xfe".to_vec()),
            (
                "token twice".into(),
                format!("Bearer {admin} {admin}").into_bytes(),
            ),
        ],
    };

    let (status, doc) = server.get("/openapi.json", "none");
    assert_eq!(status, 200, "{doc:#}");
    let ops = operations(&doc);
    assert!(
        ops.len() >= 10,
        "the document lists {} operations",
        ops.len()
    );

    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        max_shrink_time: 30_000,
        ..Config::default()
    };
    let started = Instant::now();
    let mut failures = Vec::new();
    let previous = RefCell::new(None::<FuzzRequest>);
    for op in &ops {
        // Cases waiting for their applicant's address: an earlier
        // operation may have cancelled or moved on the ones before.
        pools.case_ids = vec![
            server.waiting_case(),
            server.waiting_case(),
            finished.clone(),
        ];
        let strategy = requests(&doc, op, &pools);
        let mut runner = TestRunner::new_with_rng(
            config.clone(),
            TestRng::from_seed(RngAlgorithm::ChaCha, &seed_for(seed, op)),
        );
        // What the server answered, by status and code: printed, and
        // checked to reach past the token check.
        let answers = RefCell::new(BTreeMap::<String, u32>::new());
        let unsendable = Cell::new(0u32);
        let op_started = Instant::now();
        let result = runner.run(&strategy, |request| {
            let outcome = exchange(&server.client, &server.base, op, &request);
            // A connection the server closed fails the request after it.
            let before = previous.replace(Some(request));
            match outcome {
                Ok(Outcome::Answered(status, code)) => {
                    let key = match code {
                        Some(code) => format!("{status} {code}"),
                        None => status.to_string(),
                    };
                    *answers.borrow_mut().entry(key).or_default() += 1;
                }
                Ok(Outcome::Unsendable) => unsendable.set(unsendable.get() + 1),
                Err(problem) => {
                    let problem = match before {
                        Some(before) if problem.starts_with("no answer") => {
                            format!("{problem}\n  the request before it: {before:?}")
                        }
                        _ => problem,
                    };
                    return Err(TestCaseError::fail(problem));
                }
            }
            Ok(())
        });
        let answers = answers.into_inner();
        let sent: u32 = answers.values().sum();
        eprintln!(
            "{op}: {sent} answered, {} not sendable, {:.1?}: {answers:?}",
            unsendable.get(),
            op_started.elapsed()
        );
        let passed = result.is_ok();
        match result {
            Ok(()) => {}
            Err(TestError::Fail(reason, request)) => {
                failures.push(format!(
                    "{op}: {reason}\n  smallest failing request: {request:?}"
                ));
            }
            Err(TestError::Abort(reason)) => failures.push(format!("{op}: aborted: {reason}")),
        }
        assert!(
            sent > unsendable.get(),
            "{op}: most requests could not be sent"
        );
        if passed {
            let past_tokens: u32 = answers
                .iter()
                .filter(|(k, _)| !k.starts_with("401") && !k.starts_with("403"))
                .map(|(_, n)| n)
                .sum();
            assert!(
                past_tokens * 10 >= sent,
                "{op}: too few answers came from past the token check: {answers:?}"
            );
        }
    }
    eprintln!(
        "{} operations fuzzed in {:.1?}",
        ops.len(),
        started.elapsed()
    );
    server.assert_healthy();
    assert!(
        failures.is_empty(),
        "{} operation(s) failed (seed {seed}):\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_no_state() {
    let mut server = Server::on_sqlite("state");
    let id = server.waiting_case();
    let finished = server.waiting_case();
    let (status, body) = server.post(
        &format!("/cases/{finished}/cancel"),
        "operator",
        &json!({"reason": "ended"}),
    );
    assert_eq!(status, 200, "{body:#}");
    let before = |case: &str| {
        let (status, history) = server.get(&format!("/cases/{case}/history"), "auditor");
        assert_eq!(status, 200, "{history:#}");
        let (_, view) = server.get(&format!("/cases/{case}"), "auditor");
        (history, view)
    };
    let (history, view) = before(&id);
    let (finished_history, finished_view) = before(&finished);
    let event = format!("/cases/{id}/events/address_bound");
    let expect = |(status, body): (u16, Value), want: u16, code: &str| {
        assert_eq!(
            (status, body["error"]["code"].as_str().unwrap_or("")),
            (want, code),
            "{body:#}"
        );
        body["error"]["message"].as_str().unwrap_or("").to_owned()
    };

    // Oversized: 300 KiB against the 256 KiB limit.
    let huge = json!({"data": {"address": "長".repeat(100 * 1024)}});
    expect(
        server.post(&event, "gateway", &huge),
        413,
        "payload_too_large",
    );
    // Malformed JSON: the message says where.
    let message = expect(
        server.send(
            Method::POST,
            &event,
            "gateway",
            Some(b"{\"data\": {\"address\": "),
        ),
        400,
        "invalid_json",
    );
    assert!(message.contains("line 1, column"), "{message}");
    let message = expect(
        server.send(
            Method::POST,
            &event,
            "gateway",
            Some(b"{\"data\": \"\xff\"}"),
        ),
        400,
        "invalid_json",
    );
    assert!(message.contains("not valid JSON"), "{message}");
    let message = expect(
        server.send(Method::POST, &event, "gateway", Some(b"[]")),
        400,
        "invalid_json",
    );
    assert!(message.contains("JSON object"), "{message}");
    // A field of the wrong type: named.
    let (status, body) = server.post(&event, "gateway", &json!({"data": {"address": 5}}));
    assert_eq!(
        (status, &body["error"]["field"]),
        (422, &json!("address")),
        "{body:#}"
    );
    // An unknown case, a finished case, a role that may not.
    expect(
        server.post(
            "/cases/no-such-case/events/address_bound",
            "gateway",
            &json!({"data": {}}),
        ),
        404,
        "unknown_case",
    );
    expect(
        server.post(
            &format!("/cases/{finished}/events/address_bound"),
            "gateway",
            &json!({"data": {"address": "泉州市丰泽区东海街道 1 号"}}),
        ),
        409,
        "case_finished",
    );
    expect(
        server.post(
            &event,
            "auditor",
            &json!({"data": {"address": "泉州市丰泽区东海街道 1 号"}}),
        ),
        403,
        "forbidden",
    );
    expect(
        server.post(
            &format!("/cases/{id}/cancel"),
            "officer",
            &json!({"reason": "not mine"}),
        ),
        403,
        "forbidden",
    );
    expect(
        server.post(
            &format!("/cases/{finished}/cancel"),
            "operator",
            &json!({"reason": "again"}),
        ),
        409,
        "case_finished",
    );

    // A NUL character, which PostgreSQL keeps in no text: refused alike on
    // every store, in a body field or in the URL.
    let (status, body) = server.post(
        &format!("/cases/{id}/cancel"),
        "operator",
        &json!({"reason": "a\u{0}b"}),
    );
    assert_eq!(
        (status, &body["error"]["field"]),
        (422, &json!("reason")),
        "{body:#}"
    );
    expect(server.get("/cases/%00", "auditor"), 400, "invalid_field");
    // A path segment that is not UTF-8 once decoded: named, as JSON.
    let (status, body) = server.get("/cases/%ff/history", "auditor");
    assert_eq!(
        (status, &body["error"]["field"]),
        (400, &json!("id")),
        "{body:#}"
    );

    assert_eq!(before(&id), (history, view), "bad input changed the case");
    assert_eq!(
        before(&finished),
        (finished_history, finished_view),
        "bad input changed the finished case"
    );
    server.assert_healthy();
}
