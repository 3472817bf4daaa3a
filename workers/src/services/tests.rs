//! The HTTP clients against the simulator over loopback: real requests,
//! real timeouts, no mocks. Then the identity handlers end to end on them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::intranet::HttpIntranet;
use super::realname::HttpRealName;
use crate::contract::Outcome;
use crate::handlers::Handler;
use crate::handlers::identity::{
    IdentityVerify, IntranetAuthenticate, IntranetService, RealNameService, ServiceError, Verdict,
};
use crate::handlers::tests::job;
use crate::simulator::{
    Answered, Behaviour, RunningSimulator, Service, ServiceBehaviour, Simulator,
};

const NAME: &str = "张三";
/// Valid numbers (GB 11643 examples), so the handlers' own checks pass.
const CONFIRMED_ID: &str = "11010519491231002X";
const REFUSED_ID: &str = "513101198201130014";
const ADDRESS: &str = "泉州市丰泽区东海街道1号";
const PERSONAL: [&str; 3] = [NAME, CONFIRMED_ID, ADDRESS];

/// Long enough for loopback on a loaded CI machine, short enough for a
/// slow-answer test to stay fast.
const SHORT: Duration = Duration::from_millis(200);
const PATIENT: Duration = Duration::from_secs(5);

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn refusing(suffix: &str) -> ServiceBehaviour {
    ServiceBehaviour {
        refuse_id_suffixes: vec![suffix.to_owned()],
        ..ServiceBehaviour::default()
    }
}

async fn simulator(behaviour: Behaviour) -> RunningSimulator {
    match Simulator::start(loopback(), behaviour).await {
        Ok(running) => running,
        Err(e) => panic!("the simulator did not start: {e}"),
    }
}

fn realname(sim: &RunningSimulator, timeout: Duration) -> HttpRealName {
    match HttpRealName::new(&sim.url(), timeout) {
        Ok(client) => client,
        Err(e) => panic!("{e}"),
    }
}

fn intranet(sim: &RunningSimulator, timeout: Duration) -> HttpIntranet {
    match HttpIntranet::new(&sim.url(), timeout) {
        Ok(client) => client,
        Err(e) => panic!("{e}"),
    }
}

fn assert_no_personal_details(text: &str) {
    for detail in PERSONAL {
        assert!(!text.contains(detail), "`{text}` repeats a personal detail");
    }
}

async fn stop(sim: RunningSimulator) {
    let started = Instant::now();
    if let Err(e) = sim.shutdown().await {
        panic!("the simulator did not stop cleanly: {e}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "shutdown was slow"
    );
}

#[tokio::test]
async fn confirms_and_passes_the_attempt_id_as_idempotency_key() {
    let sim = simulator(Behaviour::default()).await;
    let verdict = realname(&sim, PATIENT)
        .verify(NAME, CONFIRMED_ID, "case-9/verify/1")
        .await;
    assert_eq!(verdict, Ok(Verdict::Confirmed));
    let received = sim.control().received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].service, Service::RealName);
    assert_eq!(received[0].key.as_deref(), Some("case-9/verify/1"));
    let person = received[0].person.clone();
    assert_eq!(person.as_ref().map(|p| p.name.as_str()), Some(NAME));
    assert_eq!(
        person.as_ref().map(|p| p.id_number.as_str()),
        Some(CONFIRMED_ID)
    );
    stop(sim).await;
}

#[tokio::test]
async fn a_refusal_carries_the_services_reason_and_no_personal_details() {
    let sim = simulator(Behaviour {
        realname: refusing("002X"),
        ..Behaviour::default()
    })
    .await;
    let verdict = realname(&sim, PATIENT)
        .verify(NAME, CONFIRMED_ID, "k1")
        .await;
    let Ok(Verdict::Refused(reason)) = verdict else {
        panic!("expected a refusal, got {verdict:?}")
    };
    assert!(reason.contains("does not match"), "{reason}");
    assert_no_personal_details(&reason);
    assert_no_personal_details(&format!("{:?}", sim.control().received()));
    stop(sim).await;
}

#[tokio::test]
async fn unavailable_is_retryable_and_names_the_retry_after() {
    let sim = simulator(Behaviour {
        realname: ServiceBehaviour {
            unavailable_next: 1,
            retry_after: Some(Duration::from_secs(7)),
            ..ServiceBehaviour::default()
        },
        ..Behaviour::default()
    })
    .await;
    let client = realname(&sim, PATIENT);
    let first = client.verify(NAME, CONFIRMED_ID, "k1").await;
    let Err(ServiceError::Unavailable {
        message,
        retry_after,
    }) = first
    else {
        panic!("expected unavailable, got {first:?}")
    };
    assert_eq!(retry_after, Some(Duration::from_secs(7)));
    assert!(message.contains("503"), "{message}");
    assert!(message.contains("after 7 s"), "{message}");
    assert_no_personal_details(&message);
    // A 503 is not remembered: the same key, asked again, is answered.
    assert_eq!(
        client.verify(NAME, CONFIRMED_ID, "k1").await,
        Ok(Verdict::Confirmed)
    );
    stop(sim).await;
}

#[tokio::test]
async fn a_slow_service_times_out_at_the_configured_timeout() {
    let sim = simulator(Behaviour {
        intranet: ServiceBehaviour {
            delay: Duration::from_secs(2),
            ..ServiceBehaviour::default()
        },
        ..Behaviour::default()
    })
    .await;
    let started = Instant::now();
    let verdict = intranet(&sim, SHORT)
        .authenticate(NAME, CONFIRMED_ID, ADDRESS, "k1")
        .await;
    assert_eq!(verdict, Err(ServiceError::Timeout));
    let waited = started.elapsed();
    assert!(
        waited >= SHORT && waited < Duration::from_secs(1),
        "{waited:?}"
    );
    stop(sim).await;
}

#[tokio::test]
async fn an_unreadable_answer_or_unexpected_status_is_a_bad_response() {
    let sim = simulator(Behaviour {
        realname: ServiceBehaviour {
            garbled_next: 1,
            ..ServiceBehaviour::default()
        },
        ..Behaviour::default()
    })
    .await;
    let garbled = realname(&sim, PATIENT)
        .verify(NAME, CONFIRMED_ID, "k1")
        .await;
    let Err(ServiceError::BadResponse(message)) = garbled else {
        panic!("expected a bad response, got {garbled:?}")
    };
    assert!(message.contains("not JSON"), "{message}");
    // A base URL with a wrong path: the simulator answers 404.
    let lost = HttpRealName::new(&format!("{}/nowhere", sim.url()), PATIENT);
    let Ok(lost) = lost else { panic!("{lost:?}") };
    let status = lost.verify(NAME, CONFIRMED_ID, "k2").await;
    let Err(ServiceError::BadResponse(message)) = status else {
        panic!("expected a bad response, got {status:?}")
    };
    assert!(message.contains("404"), "{message}");
    assert_no_personal_details(&message);
    stop(sim).await;
}

#[tokio::test]
async fn nobody_listening_is_unavailable() {
    // Bind and release a port so that, for a moment, nothing listens on it.
    let port = match tokio::net::TcpListener::bind(loopback()).await {
        Ok(l) => l.local_addr().map(|a| a.port()).unwrap_or(1),
        Err(e) => panic!("{e}"),
    };
    let client = HttpRealName::new(&format!("http://127.0.0.1:{port}"), PATIENT);
    let Ok(client) = client else {
        panic!("{client:?}")
    };
    let verdict = client.verify(NAME, CONFIRMED_ID, "k1").await;
    let Err(ServiceError::Unavailable { message, .. }) = verdict else {
        panic!("expected unavailable, got {verdict:?}")
    };
    assert!(message.contains("could not connect"), "{message}");
}

#[tokio::test]
async fn a_repeated_key_gets_the_first_answer_without_deciding_again() {
    let sim = simulator(Behaviour::default()).await;
    let client = intranet(&sim, PATIENT);
    let ask = |key: &'static str| client.authenticate(NAME, CONFIRMED_ID, ADDRESS, key);
    assert_eq!(ask("attempt-1").await, Ok(Verdict::Confirmed));
    // The registration changes; the same attempt asked again still gets
    // the answer it was given, a new attempt gets the new one.
    sim.control().set(Behaviour {
        intranet: refusing(CONFIRMED_ID),
        ..Behaviour::default()
    });
    assert_eq!(ask("attempt-1").await, Ok(Verdict::Confirmed));
    assert!(matches!(ask("attempt-2").await, Ok(Verdict::Refused(_))));
    let log: Vec<(Option<String>, Answered, bool)> = sim
        .control()
        .received()
        .into_iter()
        .map(|r| (r.key, r.answered, r.replayed))
        .collect();
    assert_eq!(
        log,
        [
            (Some("attempt-1".to_owned()), Answered::Confirmed, false),
            (Some("attempt-1".to_owned()), Answered::Confirmed, true),
            (Some("attempt-2".to_owned()), Answered::Refused, false),
        ]
    );
    stop(sim).await;
}

#[tokio::test]
async fn identity_verify_end_to_end() {
    let sim = simulator(Behaviour {
        realname: refusing(&REFUSED_ID[14..]),
        ..Behaviour::default()
    })
    .await;
    // Each run is a new attempt, with its own key.
    let run = |id_number: &str, attempt: u32, timeout: Duration| {
        let handler = IdentityVerify::new(Arc::new(realname(&sim, timeout)));
        let mut j = job(
            "identity.verify",
            json!({"name": NAME, "id_number": id_number}),
        );
        j.attempt = attempt;
        j.attempt_id = format!("case-1/step/1/{attempt}");
        async move { handler.run(&j).await }
    };
    assert_eq!(
        run(CONFIRMED_ID, 1, PATIENT).await,
        Outcome::succeeded("verified")
    );
    let refused = run(REFUSED_ID, 2, PATIENT).await;
    let Outcome::Succeeded { outcome, output } = &refused else {
        panic!("{refused:?}")
    };
    assert_eq!(outcome, "rejected");
    assert_no_personal_details(&serde_json::Value::Object(output.clone()).to_string());
    assert!(
        !serde_json::Value::Object(output.clone())
            .to_string()
            .contains(REFUSED_ID)
    );

    sim.control().update(|b| b.realname.unavailable_next = 1);
    assert!(matches!(
        run(CONFIRMED_ID, 3, PATIENT).await,
        Outcome::Failed { retryable: true, code, .. } if code == "unavailable"
    ));
    sim.control()
        .update(|b| b.realname.delay = Duration::from_secs(2));
    assert!(matches!(
        run(CONFIRMED_ID, 4, SHORT).await,
        Outcome::Failed { retryable: true, code, .. } if code == "timeout"
    ));
    // Every call carried its job's attempt id.
    let keys: Vec<Option<String>> = sim
        .control()
        .received()
        .into_iter()
        .map(|r| r.key)
        .collect();
    let expected: Vec<Option<String>> = (1..=4)
        .map(|n| Some(format!("case-1/step/1/{n}")))
        .collect();
    assert_eq!(keys, expected);
    stop(sim).await;
}

#[tokio::test]
async fn intranet_authenticate_end_to_end() {
    let sim = simulator(Behaviour {
        intranet: refusing(&REFUSED_ID[14..]),
        ..Behaviour::default()
    })
    .await;
    let handler = IntranetAuthenticate::new(Arc::new(intranet(&sim, PATIENT)));
    // Each run is a new attempt, with its own key.
    let run = |id_number: &str, attempt: u32| {
        let mut j = job(
            "intranet.authenticate",
            json!({"name": NAME, "id_number": id_number, "address": ADDRESS}),
        );
        j.attempt = attempt;
        j.attempt_id = format!("case-1/step/1/{attempt}");
        let handler = &handler;
        async move { handler.run(&j).await }
    };
    assert_eq!(
        run(CONFIRMED_ID, 1).await,
        Outcome::succeeded("authenticated")
    );
    let mismatch = run(REFUSED_ID, 2).await;
    let Outcome::Succeeded { outcome, output } = &mismatch else {
        panic!("{mismatch:?}")
    };
    assert_eq!(outcome, "mismatch");
    assert!(
        output["reason"]
            .as_str()
            .is_some_and(|r| r.contains("address"))
    );
    assert_no_personal_details(&serde_json::Value::Object(output.clone()).to_string());

    sim.control().update(|b| b.intranet.garbled_next = 1);
    assert!(matches!(
        run(CONFIRMED_ID, 3).await,
        Outcome::Failed { retryable: true, code, message, .. }
            if code == "bad_response" && !message.contains(CONFIRMED_ID)
    ));
    sim.control().update(|b| b.intranet.unavailable_next = 1);
    assert!(matches!(
        run(CONFIRMED_ID, 4).await,
        Outcome::Failed { retryable: true, code, .. } if code == "unavailable"
    ));
    stop(sim).await;
}
