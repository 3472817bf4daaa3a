//! `notify.email` and `notify.webhook` over real connections.
//!
//! Email goes to the SMTP server the test suite starts (`ops/test`,
//! `ops/dev-services`: aiosmtpd on loopback, which stores each message it
//! accepts in a Maildir before answering, headed by the envelope). Without
//! `DOCKET_TEST_SMTP_ADDR` those tests fail under `CI=true` and are skipped
//! with a notice otherwise, like the Redis tests. Failures that need no mail
//! server (nothing listening, a server that never answers) and every
//! webhook test run on loopback listeners started here.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use docket_workers::contract::{JOB_VERSION, Job, Outcome};
use docket_workers::delivery::smtp::{ATTEMPT_HEADER, SmtpMessenger, SmtpSettings, SmtpTls};
use docket_workers::delivery::webhook::WebhookMessenger;
use docket_workers::handlers::Handler;
use docket_workers::handlers::notify::{DeliveryError, Message, Messenger, Notify};
use mail_parser::MessageParser;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const FROM: &str = "Docket <noreply@docket.test>";
/// Long enough for loopback on a loaded CI machine, short enough for the
/// timeout tests to stay fast.
const SHORT: Duration = Duration::from_millis(300);
const PATIENT: Duration = Duration::from_secs(5);

/// The SMTP server the test suite started, and the Maildir it writes.
fn smtp_server() -> Option<(SocketAddr, PathBuf)> {
    match (
        std::env::var("DOCKET_TEST_SMTP_ADDR"),
        std::env::var("DOCKET_TEST_SMTP_DIR"),
    ) {
        (Ok(addr), Ok(dir)) => Some((addr.parse().expect("DOCKET_TEST_SMTP_ADDR"), dir.into())),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "DOCKET_TEST_SMTP_ADDR or DOCKET_TEST_SMTP_DIR is not set: run the suite with ops/test"
            )
        }
        _ => {
            eprintln!(
                "skipped: DOCKET_TEST_SMTP_ADDR is not set (start the SMTP server with ops/dev-services)"
            );
            None
        }
    }
}

/// An attempt id no other test, nor an earlier run against the same
/// server, has used.
fn attempt_id(step: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "case-{}-{nanos}/{step}/{}/1",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn job(handler: &str, attempt_id: &str, params: Value) -> Job {
    Job {
        version: JOB_VERSION,
        attempt_id: attempt_id.to_owned(),
        case_id: "case-1".to_owned(),
        step: "notify".to_owned(),
        attempt: 1,
        handler: handler.to_owned(),
        queue: "notify".to_owned(),
        params: params.as_object().cloned().unwrap_or_default(),
        timeout: PATIENT,
    }
}

fn smtp(addr: SocketAddr, timeout: Duration) -> SmtpMessenger {
    let settings = SmtpSettings {
        port: addr.port(),
        timeout,
        ..SmtpSettings::new(addr.ip().to_string(), SmtpTls::None, FROM)
    };
    SmtpMessenger::new(settings).expect("SMTP settings")
}

/// A loopback port nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

/// What the test server stored for the message with `key` in its attempt
/// header. It writes a message before it answers 250, so a message that
/// was sent is already there.
fn received(dir: &std::path::Path, key: &str) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir.join("new")).expect("the Maildir's new/") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read a message");
        let parsed = MessageParser::default()
            .parse(&bytes)
            .expect("a parsable message");
        if parsed.header(ATTEMPT_HEADER).and_then(|v| v.as_text()) == Some(key) {
            found.push(bytes.clone());
        }
    }
    found
}

fn header(raw: &[u8], name: &str) -> String {
    let parsed = MessageParser::default()
        .parse(raw)
        .expect("a parsable message");
    parsed
        .header(name)
        .and_then(|v| v.as_text())
        .unwrap_or_default()
        .to_owned()
}

fn assert_failed(outcome: &Outcome, want_code: &str, want_retryable: bool, secrets: &[&str]) {
    match outcome {
        Outcome::Failed {
            code,
            message,
            retryable,
            ..
        } => {
            assert_eq!(
                (code.as_str(), *retryable),
                (want_code, want_retryable),
                "{message}"
            );
            for secret in secrets {
                assert!(!message.contains(secret), "`{message}` repeats `{secret}`");
            }
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn an_email_arrives_with_its_recipient_subject_text_and_attempt_id() {
    let Some((addr, dir)) = smtp_server() else {
        return;
    };
    let notify = Notify::email(Arc::new(smtp(addr, PATIENT)));
    let key = attempt_id("notify");
    let subject = "居留许可：材料已收到";
    let body = "您好，\n您的居留许可申请已受理，请于五个工作日内领取。\nYour application has been received.";
    let outcome = notify
        .run(&job(
            "notify.email",
            &key,
            json!({"to": "申请人 <applicant@example.org>", "subject": subject, "body": body}),
        ))
        .await;
    assert_eq!(outcome, Outcome::succeeded("sent"));

    let messages = received(&dir, &key);
    assert_eq!(messages.len(), 1, "one message with the attempt id arrived");
    let raw = &messages[0];
    let email = MessageParser::default().parse(raw).expect("parsable");
    assert_eq!(header(raw, "X-RcptTo"), "applicant@example.org");
    assert_eq!(header(raw, "X-MailFrom"), "noreply@docket.test");
    let to = email.to().and_then(|a| a.first()).expect("a To address");
    assert_eq!(
        (to.name(), to.address()),
        (Some("申请人"), Some("applicant@example.org"))
    );
    assert_eq!(email.subject(), Some(subject));
    let text = email
        .body_text(0)
        .expect("a text body")
        .replace("\r\n", "\n");
    assert_eq!(text.trim_end(), body);
    assert_eq!(
        email.message_id(),
        Some(format!("{key}@docket.test").as_str())
    );
    assert_eq!(header(raw, ATTEMPT_HEADER), key);
}

#[tokio::test]
async fn a_repeated_delivery_is_the_same_message_on_one_pooled_connection() {
    let Some((addr, dir)) = smtp_server() else {
        return;
    };
    let messenger = smtp(addr, PATIENT);
    let key = attempt_id("notify");
    let message = Message {
        channel: "email",
        to: "applicant@example.org".to_owned(),
        subject: None,
        body: "sent twice".to_owned(),
        key: key.clone(),
    };
    for _ in 0..2 {
        messenger.send(message.clone()).await.expect("delivered");
        // lettre hands a connection back to its pool in a task of its own;
        // on this single-threaded runtime it runs when this test yields.
        tokio::task::yield_now().await;
    }
    let messages = received(&dir, &key);
    assert_eq!(messages.len(), 2, "the test server keeps repeats");
    let ids: Vec<String> = messages.iter().map(|m| header(m, "Message-ID")).collect();
    assert_eq!(ids[0], ids[1], "a repeat has the same Message-ID");
    let peers: Vec<String> = messages.iter().map(|m| header(m, "X-Peer")).collect();
    assert_eq!(
        peers[0], peers[1],
        "the second send reused the first's connection"
    );
}

#[tokio::test]
async fn a_refused_recipient_fails_permanently_and_a_deferred_one_retryably() {
    let Some((addr, _)) = smtp_server() else {
        return;
    };
    // The test server refuses refused.invalid (550 5.1.1) and defers
    // busy.invalid (451 4.3.2).
    let notify = Notify::email(Arc::new(smtp(addr, PATIENT)));
    let send = |to: &str| {
        job(
            "notify.email",
            &attempt_id("notify"),
            json!({"to": to, "subject": "s", "body": "b"}),
        )
    };
    let refused = notify.run(&send("wang.fang@refused.invalid")).await;
    assert_failed(&refused, "rejected_recipient", false, &["wang.fang"]);
    let deferred = notify.run(&send("wang.fang@busy.invalid")).await;
    assert_failed(&deferred, "unavailable", true, &["wang.fang"]);
}

#[tokio::test]
async fn an_unreachable_mail_server_is_a_retryable_failure() {
    let notify = Notify::email(Arc::new(smtp(closed_port().await, PATIENT)));
    let started = Instant::now();
    let outcome = notify
        .run(&job(
            "notify.email",
            &attempt_id("notify"),
            json!({"to": "applicant@example.org", "body": "private text"}),
        ))
        .await;
    assert_failed(
        &outcome,
        "unavailable",
        true,
        &["applicant", "private text"],
    );
    assert!(started.elapsed() < PATIENT);
}

#[tokio::test]
async fn a_mail_server_that_never_answers_is_retryable_within_the_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Accepts connections and keeps them open without a word.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let notify = Notify::email(Arc::new(smtp(addr, SHORT)));
    let started = Instant::now();
    let outcome = notify
        .run(&job(
            "notify.email",
            &attempt_id("notify"),
            json!({"to": "applicant@example.org", "body": "b"}),
        ))
        .await;
    assert_failed(&outcome, "unavailable", true, &["applicant"]);
    assert!(
        started.elapsed() < SHORT * 5,
        "took {:?}",
        started.elapsed()
    );
    silent.abort();
}

#[tokio::test]
async fn an_invalid_address_is_rejected_without_being_repeated() {
    let notify = Notify::email(Arc::new(smtp(closed_port().await, PATIENT)));
    let outcome = notify
        .run(&job(
            "notify.email",
            &attempt_id("notify"),
            json!({"to": "wang fang at example", "body": "b"}),
        ))
        .await;
    assert_failed(&outcome, "rejected_recipient", false, &["wang fang"]);
}

/// What the test webhook received: headers and JSON body.
type Posts = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

/// A webhook on loopback: `POST /status/{code}` answers `code` (with
/// `Retry-After: 7` on 503); `POST /slow` answers after a minute.
async fn webhook_server() -> (String, Posts) {
    async fn status(
        State(posts): State<Posts>,
        Path(code): Path<u16>,
        headers: HeaderMap,
        axum::Json(body): axum::Json<Value>,
    ) -> (StatusCode, [(&'static str, &'static str); 1]) {
        posts.lock().unwrap().push((headers, body));
        let code = StatusCode::from_u16(code).unwrap();
        (
            code,
            [(
                "retry-after",
                if code == StatusCode::SERVICE_UNAVAILABLE {
                    "7"
                } else {
                    "0"
                },
            )],
        )
    }
    async fn slow() -> StatusCode {
        tokio::time::sleep(Duration::from_secs(60)).await;
        StatusCode::OK
    }
    let posts = Posts::default();
    let app = Router::new()
        .route("/status/{code}", post(status))
        .route("/slow", post(slow))
        .with_state(posts.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), posts)
}

fn webhook(url: &str, timeout: Duration) -> Notify {
    Notify::webhook(Arc::new(
        WebhookMessenger::new(url, timeout).expect("webhook URL"),
    ))
}

#[tokio::test]
async fn a_webhook_post_carries_the_message_and_the_idempotency_key() {
    let (base, posts) = webhook_server().await;
    let key = attempt_id("notify");
    let outcome = webhook(&format!("{base}/status/202"), PATIENT)
        .run(&job(
            "notify.webhook",
            &key,
            json!({"to": "svc-account-7", "subject": "材料齐全", "body": "请携带原件办理。"}),
        ))
        .await;
    assert_eq!(outcome, Outcome::succeeded("sent"));
    let posts = posts.lock().unwrap();
    assert_eq!(posts.len(), 1);
    let (headers, body) = &posts[0];
    assert_eq!(
        headers.get("idempotency-key").and_then(|v| v.to_str().ok()),
        Some(key.as_str())
    );
    assert_eq!(
        body,
        &json!({"to": "svc-account-7", "subject": "材料齐全", "body": "请携带原件办理。"})
    );
}

#[tokio::test]
async fn webhook_answers_sort_into_sent_refused_and_retryable() {
    let (base, _) = webhook_server().await;
    let run = |code: u16| {
        let base = base.clone();
        async move {
            webhook(&format!("{base}/status/{code}"), PATIENT)
                .run(&job(
                    "notify.webhook",
                    &attempt_id("notify"),
                    json!({"to": "svc-account-7", "body": "private text"}),
                ))
                .await
        }
    };
    assert_eq!(run(200).await, Outcome::succeeded("sent"));
    assert_eq!(run(204).await, Outcome::succeeded("sent"));
    for refused in [400, 404, 410, 422] {
        assert_failed(
            &run(refused).await,
            "rejected_recipient",
            false,
            &["svc-account-7", "private text"],
        );
    }
    for retryable in [408, 429, 500, 502, 503] {
        assert_failed(
            &run(retryable).await,
            "unavailable",
            true,
            &["svc-account-7", "private text"],
        );
    }
    match run(503).await {
        Outcome::Failed {
            message,
            retry_after_secs,
            ..
        } => {
            assert!(message.contains("after 7 s"), "{message}");
            assert_eq!(
                retry_after_secs,
                Some(7),
                "the orchestrator is told to wait"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_slow_webhook_is_retryable_within_the_timeout() {
    let (base, _) = webhook_server().await;
    let started = Instant::now();
    let outcome = webhook(&format!("{base}/slow"), SHORT)
        .run(&job(
            "notify.webhook",
            &attempt_id("notify"),
            json!({"to": "svc-account-7", "body": "b"}),
        ))
        .await;
    assert_failed(&outcome, "unavailable", true, &["svc-account-7"]);
    assert!(
        started.elapsed() < SHORT * 5,
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_unreachable_webhook_is_retryable() {
    let url = format!("http://{}/hook", closed_port().await);
    let messenger = WebhookMessenger::new(&url, PATIENT).expect("webhook URL");
    let sent = messenger
        .send(Message {
            channel: "webhook",
            to: "svc-account-7".to_owned(),
            subject: None,
            body: "b".to_owned(),
            key: attempt_id("notify"),
        })
        .await;
    assert!(matches!(sent, Err(DeliveryError::Temporary(_))), "{sent:?}");
}
