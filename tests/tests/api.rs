//! The HTTP API as its clients use it: `orchestrator serve --api-listen`
//! on a SQLite file (and PostgreSQL when the suite provides one), tokens
//! made with `orchestrator token`, requests over loopback.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use docket_tests::{Stop, api_token, orchestrator, serve_api, stderr, suite_env};
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{Value, json};

/// The applicant events the gateway may send in these tests.
const GATEWAY_EVENTS: &str =
    "address_bound,registration_submitted,application_submitted,supplement_submitted,withdrawn";

const ROLES: [&str; 5] = ["gateway", "officer", "operator", "auditor", "admin"];

/// A server of the test's own, with one token per role.
struct Api {
    _serve: Stop,
    base: String,
    client: Client,
    tokens: BTreeMap<&'static str, String>,
    dir: PathBuf,
}

impl Api {
    fn on_sqlite(name: &str, extra: &[&str]) -> Api {
        let dir = std::env::temp_dir().join(format!("docket-api-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let database = format!("sqlite:{}", dir.join("docket.sqlite").display());
        Api::on(&database, dir, extra)
    }

    fn on(database: &str, dir: PathBuf, extra: &[&str]) -> Api {
        let mut tokens = BTreeMap::new();
        for role in ROLES {
            tokens.insert(role, api_token(database, &format!("{role}-1"), role));
        }
        let revoked = api_token(database, "gone", "admin");
        let out = orchestrator(&["token", "revoke", "--name", "gone", "--database", database]);
        assert!(out.status.success(), "{}", stderr(&out));
        tokens.insert("revoked", revoked);
        tokens.insert("bad", "docket_not-a-token".to_owned());
        // Uploaded files go to the test's own directory.
        let uploads = dir.join("uploads").display().to_string();
        let mut flags = vec!["--gateway-event", GATEWAY_EVENTS, "--uploads-dir", &uploads];
        flags.extend(extra);
        let (serve, base) = serve_api(database, &flags);
        Api {
            _serve: serve,
            base,
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            tokens,
            dir,
        }
    }

    fn request(&self, method: &str, path: &str, who: &str) -> RequestBuilder {
        let url = format!("{}{path}", self.base);
        let builder = match method {
            "GET" => self.client.get(url),
            "POST" => self.client.post(url),
            "DELETE" => self.client.delete(url),
            other => panic!("method {other}"),
        };
        match self.tokens.get(who) {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    fn get(&self, path: &str, who: &str) -> (u16, Value) {
        read(self.request("GET", path, who).send().expect("GET"))
    }

    fn post(&self, path: &str, who: &str, body: &Value) -> (u16, Value) {
        let key = uuid_like();
        read(
            self.request("POST", path, who)
                .header("Idempotency-Key", key)
                .json(body)
                .send()
                .expect("POST"),
        )
    }

    /// Uploads a small JPEG (distinct at each call) to `case` as a photo.
    fn upload(&self, case: &str, who: &str) -> (u16, Value) {
        let mut jpeg = b"\xFF\xD8\xFF\xFE\x00\x10".to_vec();
        jpeg.extend_from_slice(uuid_like().as_bytes());
        read(
            self.request("POST", &format!("/cases/{case}/materials?kind=photo"), who)
                .header("content-type", "image/jpeg")
                .body(jpeg)
                .send()
                .expect("POST materials"),
        )
    }

    fn start(&self) -> String {
        let (status, case) = self.post("/cases", "admin", &start_body());
        assert_eq!(status, 201, "{case:#}");
        case["id"].as_str().expect("case id").to_owned()
    }

    /// Waits until the case waits at `step`.
    fn wait_for(&self, case: &str, step: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, c) = self.get(&format!("/cases/{case}"), "admin");
            assert_eq!(status, 200, "{c:#}");
            if c["step"] == step && c["phase"]["phase"] == "waiting" {
                return c;
            }
            assert!(Instant::now() < deadline, "never reached {step}: {c:#}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// A fresh idempotency key.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "key-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn start_body() -> Value {
    docket_tests::applicant_case()
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// Every endpoint, with the roles that may call it and what they get. A
/// role not listed gets 403; no token, an unknown or a revoked one 401.
/// `None` for roles: open to anyone, token or not.
struct Endpoint {
    method: &'static str,
    path: &'static str,
    roles: Option<&'static [&'static str]>,
    /// The answer to a permitted call made as below.
    ok: u16,
}

const ENDPOINTS: [Endpoint; 16] = [
    Endpoint {
        method: "POST",
        path: "/cases",
        roles: Some(&["gateway", "admin"]),
        ok: 201,
    },
    Endpoint {
        method: "GET",
        path: "/cases",
        roles: Some(&["officer", "operator", "auditor", "admin"]),
        ok: 200,
    },
    Endpoint {
        method: "GET",
        path: "/cases/{id}",
        roles: Some(&["gateway", "officer", "operator", "auditor", "admin"]),
        ok: 200,
    },
    Endpoint {
        method: "GET",
        path: "/cases/{id}/history",
        roles: Some(&["officer", "operator", "auditor", "admin"]),
        ok: 200,
    },
    Endpoint {
        method: "POST",
        path: "/cases/{id}/events/{event}",
        roles: Some(&["gateway", "officer", "admin"]),
        ok: 200,
    },
    Endpoint {
        method: "POST",
        path: "/cases/{id}/cancel",
        roles: Some(&["operator", "admin"]),
        ok: 200,
    },
    // No step has failed: permitted, and refused by the engine.
    Endpoint {
        method: "POST",
        path: "/cases/{id}/retry",
        roles: Some(&["operator", "admin"]),
        ok: 409,
    },
    // The deadline has not started: permitted, and refused by the engine.
    Endpoint {
        method: "POST",
        path: "/cases/{id}/deadlines/{deadline}/extend",
        roles: Some(&["officer", "admin"]),
        ok: 422,
    },
    Endpoint {
        method: "POST",
        path: "/cases/{id}/materials",
        roles: Some(&["gateway", "officer", "admin"]),
        ok: 201,
    },
    Endpoint {
        method: "GET",
        path: "/cases/{id}/materials",
        roles: Some(&["gateway", "officer", "operator", "auditor", "admin"]),
        ok: 200,
    },
    // The content of a file uploaded by an admin just before.
    Endpoint {
        method: "GET",
        path: "/cases/{id}/materials/{sha256}",
        roles: Some(&["officer", "admin"]),
        ok: 200,
    },
    Endpoint {
        method: "GET",
        path: "/audit/verify",
        roles: Some(&["auditor", "admin"]),
        ok: 200,
    },
    Endpoint {
        method: "GET",
        path: "/audit/export",
        roles: Some(&["auditor", "admin"]),
        ok: 200,
    },
    Endpoint {
        method: "GET",
        path: "/health",
        roles: None,
        ok: 200,
    },
    Endpoint {
        method: "GET",
        path: "/ready",
        roles: None,
        ok: 200,
    },
    Endpoint {
        method: "GET",
        path: "/openapi.json",
        roles: None,
        ok: 200,
    },
];

#[test]
fn every_endpoint_answers_every_role_as_the_table_says() {
    let api = Api::on_sqlite("matrix", &[]);
    let callers = [
        "none", "bad", "revoked", "gateway", "officer", "operator", "auditor", "admin",
    ];
    for endpoint in &ENDPOINTS {
        for who in callers {
            // A case of its own for each call, waiting for the applicant's
            // address, so a permitted change succeeds.
            let case = if endpoint.path.contains("{id}") {
                let case = api.start();
                api.wait_for(&case, "await_address");
                case
            } else {
                String::new()
            };
            let mut path = endpoint
                .path
                .replace("{id}", &case)
                .replace("{event}", "address_bound")
                .replace("{deadline}", "issuance_limit");
            if endpoint.path.contains("{sha256}") {
                let (status, material) = api.upload(&case, "admin");
                assert_eq!(status, 201, "{material:#}");
                path = path.replace("{sha256}", material["sha256"].as_str().unwrap());
            }
            if endpoint.path == "/audit/export" {
                path.push_str("?from=2000-01-01&to=2100-12-31");
            }
            let body = match endpoint.path {
                "/cases" => start_body(),
                p if p.ends_with("{event}") => {
                    json!({"data": {"address": "泉州市丰泽区东海街道 1 号"}})
                }
                p if p.ends_with("extend") => {
                    json!({"to": "30days", "reason": "remote township", "legal_basis": "Decree 663 Art. 9"})
                }
                _ => json!({"reason": "test"}),
            };
            let (status, answer) = match endpoint.method {
                "GET" => api.get(&path, who),
                _ if endpoint.path.ends_with("/materials") => api.upload(&case, who),
                _ => api.post(&path, who, &body),
            };
            let expected = match endpoint.roles {
                None => endpoint.ok,
                Some(_) if ["none", "bad", "revoked"].contains(&who) => 401,
                Some(roles) if roles.contains(&who) => endpoint.ok,
                Some(_) => 403,
            };
            assert_eq!(
                status, expected,
                "{} {} as {who}: {answer:#}",
                endpoint.method, endpoint.path
            );
            match status {
                401 => assert_eq!(code(&answer), "unauthorized"),
                403 => assert_eq!(code(&answer), "forbidden"),
                _ => {}
            }
        }
    }
    // The gateway sends the applicant's events only.
    let case = api.start();
    api.wait_for(&case, "await_address");
    let (status, answer) = api.post(
        &format!("/cases/{case}/events/registration_approved"),
        "gateway",
        &json!({}),
    );
    assert_eq!((status, code(&answer)), (403, "forbidden"), "{answer:#}");
}

#[test]
fn a_case_is_driven_through_the_api_and_its_history_names_the_tokens() {
    let api = Api::on_sqlite("drive", &[]);
    let (status, case) = api.post("/cases", "gateway", &start_body());
    assert_eq!(status, 201, "{case:#}");
    let id = case["id"].as_str().unwrap().to_owned();
    // The gateway sees personal data masked; officers see it in clear.
    assert_eq!(
        case["input"],
        json!({
            "applicant_name": "陈*",
            "id_number": "1101**********002X",
            "phone": "138****0001",
            "wechat_openid": "w******",
            "category": "employment",
            "through_agent": false
        }),
        "{case:#}"
    );
    for (role, name) in [
        ("officer", "陈明"),
        ("admin", "陈明"),
        ("auditor", "陈*"),
        ("operator", "陈*"),
    ] {
        let (_, seen) = api.get(&format!("/cases/{id}"), role);
        assert_eq!(seen["input"]["applicant_name"], name, "{role}");
        let (_, history) = api.get(&format!("/cases/{id}/history"), role);
        let text = history.to_string();
        assert!(text.contains(name), "{role}: {text}");
        if name != "陈明" {
            for secret in ["陈明", "11010519491231002X", "13800000001", "wx-test"] {
                assert!(!text.contains(secret), "{role} sees {secret}");
            }
        }
    }
    let materials =
        json!({"data": {"materials": ["id_card", "photo", "lease_contract", "labour_contract"]}});
    let steps: [(&str, &str, &str, Value); 5] = [
        (
            "await_address",
            "address_bound",
            "gateway",
            json!({"data": {"address": "泉州市丰泽区东海街道 1 号"}}),
        ),
        (
            "await_registration",
            "registration_submitted",
            "gateway",
            materials.clone(),
        ),
        (
            "await_registration_review",
            "registration_approved",
            "officer",
            json!({}),
        ),
        (
            "await_application",
            "application_submitted",
            "gateway",
            materials,
        ),
        (
            "await_acceptance",
            "application_accepted",
            "officer",
            json!({}),
        ),
    ];
    for (step, event, who, data) in steps {
        api.wait_for(&id, step);
        let (status, answer) = api.post(&format!("/cases/{id}/events/{event}"), who, &data);
        assert_eq!(status, 200, "{event}: {answer:#}");
    }
    let c = api.wait_for(&id, "await_permit");
    let issuance = c["deadlines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "issuance_limit")
        .cloned()
        .expect("issuance deadline");
    assert_eq!(issuance["status"], "running");
    assert!(issuance["due"].is_string(), "{issuance:#}");
    assert_eq!(issuance["overdue"], false);

    let extend = |to: &str| {
        api.post(
            &format!("/cases/{id}/deadlines/issuance_limit/extend"),
            "officer",
            &json!({"to": to, "reason": "remote township", "legal_basis": "Decree 663 Art. 9"}),
        )
    };
    let (status, answer) = extend("31days");
    assert_eq!(
        (status, code(&answer)),
        (422, "extension_refused"),
        "{answer:#}"
    );
    let (status, answer) = extend("30days");
    assert_eq!(status, 200, "{answer:#}");

    // Found by its step, not found among the overdue.
    let (_, list) = api.get(
        "/cases?step=await_permit&workflow=residence-permit",
        "auditor",
    );
    assert_eq!(list["cases"][0]["id"], id.as_str(), "{list:#}");
    let (_, overdue) = api.get("/cases?overdue=true", "auditor");
    assert_eq!(overdue["cases"], json!([]), "{overdue:#}");

    let (status, answer) = api.post(
        &format!("/cases/{id}/cancel"),
        "operator",
        &json!({"reason": "withdrawn by phone"}),
    );
    assert_eq!(status, 200, "{answer:#}");
    assert_eq!(answer["status"], "cancelled");
    let (status, answer) = api.post(
        &format!("/cases/{id}/cancel"),
        "operator",
        &json!({"reason": "again"}),
    );
    assert_eq!(
        (status, code(&answer)),
        (409, "case_finished"),
        "{answer:#}"
    );

    let (status, history) = api.get(&format!("/cases/{id}/history"), "auditor");
    assert_eq!(status, 200);
    let actors: BTreeSet<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["actor"].as_str())
        .filter(|a| a.starts_with("token:"))
        .collect();
    assert_eq!(
        actors,
        BTreeSet::from(["token:gateway-1", "token:officer-1", "token:operator-1"]),
        "{history:#}"
    );
}

#[test]
fn an_event_is_applied_once_per_idempotency_key() {
    let api = Api::on_sqlite("idempotent", &[]);
    let id = api.start();
    api.wait_for(&id, "await_address");
    let path = format!("/cases/{id}/events/address_bound");
    let body = json!({"data": {"address": "泉州市丰泽区东海街道 1 号"}});
    let send = |key: Option<&str>, body: &Value| {
        let mut request = api.request("POST", &path, "gateway").json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().expect("POST")
    };
    let first = send(Some("k-1"), &body);
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("Idempotent-Replayed").is_none());
    let first = first.text().unwrap();
    let again = send(Some("k-1"), &body);
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["Idempotent-Replayed"], "true");
    assert_eq!(again.text().unwrap(), first, "the first answer, again");

    let (status, answer) = read(send(
        Some("k-1"),
        &json!({"data": {"address": "elsewhere"}}),
    ));
    assert_eq!(
        (status, code(&answer)),
        (409, "idempotency_conflict"),
        "{answer:#}"
    );
    assert_eq!(answer["error"]["field"], "Idempotency-Key");
    let (status, answer) = read(send(None, &body));
    assert_eq!(
        (status, code(&answer)),
        (400, "invalid_field"),
        "{answer:#}"
    );
    assert_eq!(answer["error"]["field"], "Idempotency-Key");

    let (_, history) = api.get(&format!("/cases/{id}/history"), "auditor");
    let received = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["event"]["type"] == "signal_received" && e["event"]["event"] == "address_bound"
        })
        .count();
    assert_eq!(received, 1, "{history:#}");
}

#[test]
fn errors_are_json_with_a_stable_code_and_the_field() {
    let api = Api::on_sqlite("errors", &[]);
    let expect = |(status, body): (u16, Value), want: u16, want_code: &str, field: Option<&str>| {
        assert_eq!((status, code(&body)), (want, want_code), "{body:#}");
        assert!(body["error"]["message"].is_string(), "{body:#}");
        if let Some(field) = field {
            assert_eq!(body["error"]["field"], field, "{body:#}");
        }
    };
    let mut input = start_body();
    input["input"].as_object_mut().unwrap().remove("id_number");
    expect(
        api.post("/cases", "admin", &input),
        422,
        "invalid_field",
        Some("id_number"),
    );
    expect(
        api.post("/cases", "admin", &json!({"workflow": "residence-permit"})),
        422,
        "invalid_field",
        Some("input"),
    );
    expect(
        api.post("/cases", "admin", &json!({"workflow": "nope", "input": {}})),
        422,
        "unknown_workflow",
        Some("workflow"),
    );
    let mut extra = start_body();
    extra["priority"] = json!(1);
    expect(
        api.post("/cases", "admin", &extra),
        422,
        "invalid_field",
        Some("priority"),
    );
    let broken = api
        .request("POST", "/cases", "admin")
        .header("content-type", "application/json")
        .body("{\"workflow\": ")
        .send()
        .unwrap();
    expect(read(broken), 400, "invalid_json", None);
    let huge = json!({"workflow": "residence-permit", "input": {"note": "x".repeat(300 * 1024)}});
    expect(
        api.post("/cases", "admin", &huge),
        413,
        "payload_too_large",
        None,
    );
    expect(
        api.get("/cases/no-such-case", "admin"),
        404,
        "unknown_case",
        None,
    );
    expect(
        api.post(
            "/cases/no-such-case/events/address_bound",
            "admin",
            &json!({}),
        ),
        404,
        "unknown_case",
        None,
    );
    expect(
        api.get("/cases?limit=0", "admin"),
        422,
        "invalid_field",
        Some("limit"),
    );
    expect(
        api.get("/cases?sort=name", "admin"),
        422,
        "invalid_field",
        Some("sort"),
    );
    expect(
        api.get("/cases?created_from=soon", "admin"),
        422,
        "invalid_field",
        Some("created_from"),
    );
    expect(api.get("/nothing-here", "admin"), 404, "no_route", None);
    expect(
        read(api.request("DELETE", "/cases", "admin").send().unwrap()),
        405,
        "method_not_allowed",
        None,
    );

    let id = api.start();
    api.wait_for(&id, "await_address");
    expect(
        api.post(
            &format!("/cases/{id}/events/no_such_event"),
            "admin",
            &json!({}),
        ),
        404,
        "unknown_event",
        None,
    );
    expect(
        api.post(
            &format!("/cases/{id}/events/permit_ready"),
            "admin",
            &json!({}),
        ),
        409,
        "not_waiting",
        None,
    );
    expect(
        api.post(
            &format!("/cases/{id}/events/address_bound"),
            "admin",
            &json!({"data": {"address": 5}}),
        ),
        422,
        "invalid_field",
        Some("address"),
    );
}

#[test]
fn the_openapi_document_lists_exactly_the_routes_served() {
    let api = Api::on_sqlite("openapi", &[]);
    let (status, doc) = api.get("/openapi.json", "none");
    assert_eq!(status, 200);
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let tested: BTreeSet<(String, String)> = ENDPOINTS
        .iter()
        .map(|e| (e.method.to_owned(), e.path.to_owned()))
        .collect();
    assert_eq!(documented, tested, "the document and the role table differ");
    // Each documented route is served: the router answers it with
    // something other than "no such route".
    for (method, path) in &documented {
        let concrete = path
            .replace("{id}", "x")
            .replace("{event}", "e")
            .replace("{deadline}", "d")
            .replace("{sha256}", "0");
        let (status, body) = match method.as_str() {
            "GET" => api.get(&concrete, "admin"),
            _ => api.post(&concrete, "admin", &json!({})),
        };
        assert!(
            status != 405 && code(&body) != "no_route",
            "{method} {path} is documented but not served: {status} {body:#}"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[test]
fn the_api_runs_on_postgres() {
    let Some(pg) = suite_env("DOCKET_TEST_DATABASE_URL") else {
        return;
    };
    let db_name = format!("docket_api_{}", std::process::id());
    let psql = |sql: &str| {
        let out = std::process::Command::new("psql")
            .args([pg.as_str(), "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    psql(&format!("CREATE DATABASE {db_name}"));
    let database = match pg.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db_name}"),
        None => panic!("unexpected database URL"),
    };
    let dir = std::env::temp_dir().join(format!("docket-api-pg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    {
        let api = Api::on(&database, dir, &[]);
        let id = api.start();
        api.wait_for(&id, "await_address");
        let (status, answer) = api.post(
            &format!("/cases/{id}/events/address_bound"),
            "gateway",
            &json!({"data": {"address": "泉州市丰泽区东海街道 1 号"}}),
        );
        assert_eq!(status, 200, "{answer:#}");
        let (status, list) = api.get("/cases?status=active&overdue=true", "auditor");
        assert_eq!(status, 200, "{list:#}");
        let (status, list) = api.get("/cases?limit=1&created_from=2000-01-01", "auditor");
        assert_eq!(status, 200, "{list:#}");
        assert_eq!(list["cases"][0]["id"], id.as_str());
        let (status, _) = api.get("/ready", "none");
        assert_eq!(status, 200);
    }
    psql(&format!("DROP DATABASE {db_name} WITH (FORCE)"));
}
