//! Materials (photos, scans) uploaded through the HTTP API of a real
//! `orchestrator serve` on a SQLite file: their type read from their
//! content, their size bounded, the files sealed on disk under generated
//! names, their hashes in the case's verified history, their content for
//! officers only.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use docket_tests::{Stop, api_token, applicant_case, orchestrator, serve_api_logged, stderr};
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Small enough for a test to go over quickly.
const LIMIT: &str = "64KiB";
const LIMIT_BYTES: usize = 64 * 1024;
/// The JSON bodies' limit, in KiB: below the upload limit, which must not
/// cut uploads at it.
const JSON_LIMIT_KIB: &str = "16";

/// What the test JPEG's comment says: it must never be found on disk or
/// in the log.
const PLAINTEXT: &[u8] = b"docket-test plaintext: Zhang San 11010519491231002X";

// --- the files ---------------------------------------------------------

/// A JPEG segment: marker, length, payload.
fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0xFF, marker];
    out.extend_from_slice(&u16::try_from(payload.len() + 2).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A valid baseline JPEG of one grey pixel, `comment` in a COM segment:
/// one Huffman code each for the DC difference 0 and the end of block.
fn jpeg(comment: &[u8]) -> Vec<u8> {
    let mut one_code = vec![0u8; 17];
    one_code[0] = 1; // one code of length 1…
    one_code.push(0); // …for the symbol 0
    let mut out = vec![0xFF, 0xD8];
    out.extend(segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
    out.extend(segment(0xFE, comment));
    out.extend(segment(0xDB, &[&[0u8][..], &[1u8; 64][..]].concat()));
    out.extend(segment(0xC0, &[8, 0, 1, 0, 1, 1, 1, 0x11, 0]));
    out.extend(segment(0xC4, &[&[0x00][..], &one_code[..]].concat()));
    out.extend(segment(0xC4, &[&[0x10][..], &one_code[..]].concat()));
    out.extend(segment(0xDA, &[1, 1, 0x00, 0, 63, 0]));
    out.extend([0x3F, 0xFF, 0xD9]);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for byte in bytes {
        a = (a + u32::from(*byte)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(data.len()).unwrap().to_be_bytes().to_vec();
    let body = [&kind[..], data].concat();
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out
}

/// A valid PNG of one grey pixel, its pixels in a stored deflate block.
fn png() -> Vec<u8> {
    let row = [0u8, 0x80]; // filter 0, one pixel
    let mut zlib = vec![0x78, 0x01, 0x01, 0x02, 0x00, 0xFD, 0xFF];
    zlib.extend_from_slice(&row);
    zlib.extend_from_slice(&adler32(&row).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(png_chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]));
    out.extend(png_chunk(b"IDAT", &zlib));
    out.extend(png_chunk(b"IEND", b""));
    out
}

/// A valid one-page PDF, its cross-reference table counted.
fn pdf() -> Vec<u8> {
    let objects = [
        "<</Type/Catalog/Pages 2 0 R>>",
        "<</Type/Pages/Kids[3 0 R]/Count 1>>",
        "<</Type/Page/Parent 2 0 R/MediaBox[0 0 72 72]>>",
    ];
    let mut out = String::from("%PDF-1.4\n");
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.push_str(&format!("{} 0 obj\n{object}\nendobj\n", i + 1));
    }
    let xref = out.len();
    out.push_str(&format!(
        "xref\n0 {}\n0000000000 65535 f \n",
        objects.len() + 1
    ));
    for offset in offsets {
        out.push_str(&format!("{offset:010} 00000 n \n"));
    }
    out.push_str(&format!(
        "trailer\n<</Size {}/Root 1 0 R>>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    ));
    out.into_bytes()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Written as UUIDs are, version 4.
fn is_uuid_v4(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && parts.iter().all(|p| {
            p.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        })
        && parts[2].starts_with('4')
}

// --- the server --------------------------------------------------------

struct Server {
    serve: Option<Stop>,
    base: String,
    client: Client,
    tokens: BTreeMap<&'static str, String>,
    dir: PathBuf,
    database: String,
}

impl Server {
    fn new(name: &str) -> Server {
        let dir =
            std::env::temp_dir().join(format!("docket-uploads-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let database = format!("sqlite:{}", dir.join("docket.sqlite").display());
        let mut tokens = BTreeMap::new();
        for role in ["gateway", "officer", "operator", "auditor", "admin"] {
            tokens.insert(role, api_token(&database, &format!("{role}-1"), role));
        }
        let mut server = Server {
            serve: None,
            base: String::new(),
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            tokens,
            dir,
            database,
        };
        server.restart();
        server
    }

    fn uploads(&self) -> PathBuf {
        self.dir.join("uploads")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("serve.log")
    }

    /// Stops the server (if running) and starts it again on the same
    /// database and uploads directory.
    fn restart(&mut self) {
        drop(self.serve.take());
        let uploads = self.uploads().display().to_string();
        // Each run's log is kept: the last is checked for personal data.
        let (serve, base) = serve_api_logged(
            &self.database,
            &[
                "--uploads-dir",
                &uploads,
                "--upload-limit",
                LIMIT,
                "--api-max-body-kib",
                JSON_LIMIT_KIB,
            ],
            &self.log(),
        );
        self.serve = Some(serve);
        self.base = base;
    }

    fn start_case(&self) -> String {
        let answer = self
            .client
            .post(format!("{}/cases", self.base))
            .bearer_auth(&self.tokens["admin"])
            .json(&applicant_case())
            .send()
            .expect("POST /cases");
        let (status, case) = read(answer);
        assert_eq!(status, 201, "{case:#}");
        case["id"].as_str().expect("case id").to_owned()
    }

    /// Uploads `body` as `kind`, claiming `content_type`.
    fn upload(
        &self,
        case: &str,
        kind: &str,
        who: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("{}/cases/{case}/materials?kind={kind}", self.base))
            .header("content-type", content_type)
            .body(body);
        if let Some(token) = self.tokens.get(who) {
            request = request.bearer_auth(token);
        }
        read(request.send().expect("POST materials"))
    }

    fn get(&self, path: &str, who: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.tokens[who])
            .send()
            .expect("GET")
    }

    fn get_json(&self, path: &str, who: &str) -> (u16, Value) {
        read(self.get(path, who))
    }

    /// The names in the uploads directory.
    fn stored_files(&self) -> Vec<String> {
        let mut names: Vec<String> = match std::fs::read_dir(self.uploads()) {
            Ok(entries) => entries
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.serve.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

// --- the tests ---------------------------------------------------------

#[test]
fn jpeg_png_and_pdf_are_kept_sealed_in_history_and_read_back_by_officers() {
    let mut server = Server::new("kept");
    let case = server.start_case();
    let files = [
        ("photo", jpeg(PLAINTEXT), "image/jpeg"),
        ("lease_contract", pdf(), "application/pdf"),
        ("id_card", png(), "image/png"),
    ];
    for (kind, content, media_type) in &files {
        // Whatever the client claims: the type is read from the content.
        let (status, answer) = server.upload(
            &case,
            kind,
            "gateway",
            "application/octet-stream",
            content.clone(),
        );
        assert_eq!(status, 201, "{kind}: {answer:#}");
        assert_eq!(
            answer,
            json!({
                "sha256": sha256(content),
                "kind": kind,
                "media_type": media_type,
                "size": content.len(),
                "uploaded_at": answer["uploaded_at"],
            })
        );
        assert!(answer["uploaded_at"].is_string(), "{answer:#}");
    }

    // The same content again: the same material, nothing stored twice.
    let (status, again) = server.upload(&case, "photo", "officer", "image/jpeg", jpeg(PLAINTEXT));
    assert_eq!(status, 200, "{again:#}");
    assert_eq!(again["sha256"], sha256(&jpeg(PLAINTEXT)));
    // …but not as something else.
    let (status, answer) = server.upload(&case, "id_card", "admin", "image/jpeg", jpeg(PLAINTEXT));
    assert_eq!(
        (status, code(&answer)),
        (409, "material_exists"),
        "{answer:#}"
    );

    // On disk: one file per material, under a generated name, sealed.
    let stored = server.stored_files();
    assert_eq!(stored.len(), files.len(), "{stored:?}");
    for name in &stored {
        assert!(is_uuid_v4(name), "{name} is not a generated name");
        let bytes = std::fs::read(server.uploads().join(name)).expect("read a stored file");
        assert!(!contains(&bytes, PLAINTEXT), "{name} holds the plaintext");
        for (_, content, _) in &files {
            assert!(
                !contains(&bytes, content),
                "{name} holds a file as uploaded"
            );
        }
    }

    // Listed for every role that reads cases, content aside.
    for who in ["gateway", "officer", "operator", "auditor", "admin"] {
        let (status, list) = server.get_json(&format!("/cases/{case}/materials"), who);
        assert_eq!(status, 200, "{who}: {list:#}");
        let kinds: Vec<&str> = list["materials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["photo", "lease_contract", "id_card"], "{list:#}");
    }

    // Each upload is in the case's history, under the hash chain.
    let (status, history) = server.get_json(&format!("/cases/{case}/history"), "auditor");
    assert_eq!(status, 200, "{history:#}");
    let uploaded: Vec<(String, String)> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"]["type"] == "material_uploaded")
        .map(|e| {
            assert_eq!(e["actor"], "token:gateway-1", "{e:#}");
            (
                e["event"]["kind"].as_str().unwrap().to_owned(),
                e["event"]["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = files
        .iter()
        .map(|(kind, content, _)| ((*kind).to_owned(), sha256(content)))
        .collect();
    assert_eq!(uploaded, expected, "{history:#}");
    let out = orchestrator(&["audit", "verify", "--database", &server.database]);
    assert!(out.status.success(), "audit verify: {}", stderr(&out));

    // The content, for officers and admins only; the same after a restart
    // (the files are sealed under the database's data keys, not the
    // process's).
    for round in ["before", "after"] {
        if round == "after" {
            server.restart();
        }
        for (_, content, media_type) in &files {
            let path = format!("/cases/{case}/materials/{}", sha256(content));
            for who in ["officer", "admin"] {
                let answer = server.get(&path, who);
                assert_eq!(answer.status(), 200, "{round} restart, {who}");
                assert_eq!(answer.headers()["content-type"], *media_type);
                assert_eq!(answer.headers()["cache-control"], "no-store");
                let body = answer.bytes().expect("body");
                assert_eq!(sha256(&body), sha256(content));
                assert_eq!(&body[..], &content[..]);
            }
            for who in ["gateway", "auditor", "operator"] {
                let (status, answer) = server.get_json(&path, who);
                assert_eq!(
                    (status, code(&answer)),
                    (403, "forbidden"),
                    "{who}: {answer:#}"
                );
            }
        }
    }
    let (status, answer) = server.get_json(
        &format!("/cases/{case}/materials/{}", "0".repeat(64)),
        "officer",
    );
    assert_eq!(
        (status, code(&answer)),
        (404, "unknown_material"),
        "{answer:#}"
    );

    let log = std::fs::read(server.log()).expect("the log");
    assert!(!contains(&log, PLAINTEXT), "the log holds the plaintext");
}

#[test]
fn what_is_not_a_jpeg_png_or_pdf_of_a_declared_kind_within_the_limit_is_refused() {
    let server = Server::new("refused");
    let case = server.start_case();
    let expect = |(status, body): (u16, Value), want: u16, want_code: &str| {
        assert_eq!((status, code(&body)), (want, want_code), "{body:#}");
        body
    };

    // Claiming to be a JPEG does not make one.
    let impostors: [(&str, Vec<u8>); 3] = [
        (
            "HTML",
            b"<!DOCTYPE html><html><body>photo</body></html>".to_vec(),
        ),
        ("ELF", b"\x7FELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".to_vec()),
        ("ZIP", b"PK\x03\x04\x14\0\0\0\x08\0photo.jpg".to_vec()),
    ];
    for (what, content) in impostors {
        let body = expect(
            server.upload(&case, "photo", "gateway", "image/jpeg", content),
            415,
            "unsupported_media_type",
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("JPEG, PNG or PDF"), "{what}: {message}");
        assert!(
            !message.contains("photo</body>") && !message.contains("ELF"),
            "{message}"
        );
    }

    // Over the limit, named in the answer.
    let mut large = jpeg(b"large");
    large.resize(LIMIT_BYTES + 1, 0);
    let body = expect(
        server.upload(&case, "photo", "gateway", "image/jpeg", large),
        413,
        "payload_too_large",
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&LIMIT_BYTES.to_string()),
        "{body:#}"
    );
    // Exactly the limit is accepted, four times the JSON bodies' limit.
    let mut full = jpeg(b"full");
    full.resize(LIMIT_BYTES, 0);
    expect(
        server.upload(&case, "photo", "gateway", "image/jpeg", full),
        201,
        "",
    );

    expect(
        server.upload(&case, "photo", "gateway", "image/jpeg", Vec::new()),
        400,
        "empty_body",
    );
    let body = expect(
        server.upload(&case, "selfie", "gateway", "image/jpeg", jpeg(b"x")),
        400,
        "invalid_field",
    );
    assert_eq!(body["error"]["field"], "kind", "{body:#}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("selfie"),
        "{body:#}"
    );
    let answer = server
        .client
        .post(format!("{}/cases/{case}/materials", server.base))
        .bearer_auth(&server.tokens["gateway"])
        .body(jpeg(b"x"))
        .send()
        .unwrap();
    let body = expect(read(answer), 400, "invalid_field");
    assert_eq!(body["error"]["field"], "kind", "{body:#}");
    expect(
        server.upload("no-such-case", "photo", "admin", "image/jpeg", jpeg(b"x")),
        404,
        "unknown_case",
    );
    expect(
        server.upload(&case, "photo", "auditor", "image/jpeg", jpeg(b"x")),
        403,
        "forbidden",
    );
    expect(
        server.upload(&case, "photo", "operator", "image/jpeg", jpeg(b"x")),
        403,
        "forbidden",
    );
    expect(
        server.upload(&case, "photo", "nobody", "image/jpeg", jpeg(b"x")),
        401,
        "unauthorized",
    );

    // A case that has ended takes no more.
    let answer = server
        .client
        .post(format!("{}/cases/{case}/cancel", server.base))
        .bearer_auth(&server.tokens["admin"])
        .json(&json!({"reason": "withdrawn by phone"}))
        .send()
        .unwrap();
    assert_eq!(answer.status(), 200);
    expect(
        server.upload(&case, "photo", "gateway", "image/jpeg", jpeg(b"late")),
        409,
        "case_finished",
    );

    // Only the one accepted file was kept.
    assert_eq!(
        server.stored_files().len(),
        1,
        "{:?}",
        server.stored_files()
    );
    let (_, list) = server.get_json(&format!("/cases/{case}/materials"), "officer");
    assert_eq!(
        list["materials"].as_array().map(Vec::len),
        Some(1),
        "{list:#}"
    );
    let out = orchestrator(&["audit", "verify", "--database", &server.database]);
    assert!(out.status.success(), "audit verify: {}", stderr(&out));
}
