//! The simulator over loopback with a plain HTTP client: the wire format
//! byte for byte (the clients share its types, so only these tests would
//! see the protocol drift), its refusals of bad requests, and shutdown.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};

use super::*;

const VERIFY_BODY: &str = r#"{"name":"张三","id_number":"11010519491231002X"}"#;
const AUTHENTICATE_BODY: &str =
    r#"{"name":"张三","id_number":"11010519491231002X","address":"泉州市丰泽区东海街道1号"}"#;

async fn simulator(behaviour: Behaviour) -> RunningSimulator {
    match Simulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), behaviour).await {
        Ok(running) => running,
        Err(e) => panic!("the simulator did not start: {e}"),
    }
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default()
}

/// POSTs `body` to `path` and returns the status, headers and body text.
async fn post(
    sim: &RunningSimulator,
    path: &str,
    key: Option<&str>,
    body: &'static str,
) -> (StatusCode, HeaderMap, String) {
    let mut request = client()
        .post(format!("{}/{path}", sim.url()))
        .header(CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(key) = key {
        request = request.header(IDEMPOTENCY_KEY, key);
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn the_wire_format_is_as_documented() {
    let sim = simulator(Behaviour {
        intranet: ServiceBehaviour {
            refuse_id_suffixes: vec!["002X".to_owned()],
            ..ServiceBehaviour::default()
        },
        ..Behaviour::default()
    })
    .await;
    let (status, _, body) = post(&sim, "v1/verify", Some("a"), VERIFY_BODY).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"result":"confirmed"}"#)
    );
    let (status, _, body) = post(&sim, "v1/authenticate", Some("a"), AUTHENTICATE_BODY).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        r#"{"result":"mismatch","reason":"the declared residence address does not match the police registration"}"#
    );

    sim.control().update(|b| {
        b.realname.unavailable_next = 1;
        b.realname.retry_after = Some(Duration::from_millis(2_500));
    });
    let (status, headers, body) = post(&sim, "v1/verify", Some("b"), VERIFY_BODY).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()),
        Some("3")
    );
    assert_eq!(
        body,
        r#"{"error":"the service is temporarily unavailable"}"#
    );
    assert_eq!(sim.control().behaviour().realname.unavailable_next, 0);
    let _ = sim.shutdown().await;
}

#[tokio::test]
async fn requests_without_a_key_or_fields_are_refused() {
    let sim = simulator(Behaviour::default()).await;
    let (status, _, body) = post(&sim, "v1/verify", None, VERIFY_BODY).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("Idempotency-Key"), "{body}");
    // The real-name body lacks the intranet's `address`.
    let (status, _, _) = post(&sim, "v1/authenticate", Some("a"), VERIFY_BODY).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = post(&sim, "v1/verify", Some("b"), "not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let answered: Vec<Answered> = sim
        .control()
        .received()
        .iter()
        .map(|r| r.answered)
        .collect();
    assert_eq!(answered, [Answered::Invalid; 3]);
    let _ = sim.shutdown().await;
}

#[tokio::test]
async fn a_replay_is_marked_and_a_key_reused_for_someone_else_is_a_conflict() {
    let sim = simulator(Behaviour::default()).await;
    let (_, first, _) = post(&sim, "v1/verify", Some("k"), VERIFY_BODY).await;
    assert!(first.get(REPLAYED).is_none());
    let (status, again, body) = post(&sim, "v1/verify", Some("k"), VERIFY_BODY).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"result":"confirmed"}"#)
    );
    assert_eq!(
        again.get(REPLAYED).and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let other = r#"{"name":"李四","id_number":"440524188001010014"}"#;
    let (status, _, _) = post(&sim, "v1/verify", Some("k"), other).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // The same key on the other service is another request.
    let (status, _, _) = post(&sim, "v1/authenticate", Some("k"), AUTHENTICATE_BODY).await;
    assert_eq!(status, StatusCode::OK);
    let _ = sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_cuts_short_a_delayed_answer() {
    let sim = simulator(Behaviour {
        realname: ServiceBehaviour {
            delay: Duration::from_secs(30),
            ..ServiceBehaviour::default()
        },
        ..Behaviour::default()
    })
    .await;
    let url = format!("{}/v1/verify", sim.url());
    let in_flight = tokio::spawn(async move {
        client()
            .post(url)
            .header(IDEMPOTENCY_KEY, "k")
            .header(CONTENT_TYPE, "application/json")
            .body(VERIFY_BODY)
            .send()
            .await
            .map(|r| r.status())
    });
    let control = sim.control();
    for _ in 0..200 {
        if !control.received().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(control.received().len(), 1, "the request never arrived");
    let started = Instant::now();
    assert!(sim.shutdown().await.is_ok());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // The delayed answer was sent at once rather than dropped.
    let answered = tokio::time::timeout(Duration::from_secs(1), in_flight).await;
    assert!(
        matches!(answered, Ok(Ok(Ok(StatusCode::OK)))),
        "{answered:?}"
    );
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let sim = simulator(Behaviour::default()).await;
    let addr = sim.addr();
    drop(sim);
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        refused,
        "still listening on {addr} after the handle was dropped"
    );
}
