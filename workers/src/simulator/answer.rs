//! What the simulated services answer, decided without I/O: the configured
//! behaviour, the idempotency store and the log of requests. The server in
//! `mod.rs` only moves bytes in and out of [`State::answer`].

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::Duration;

use axum::http::StatusCode;

use super::{Answered, Behaviour, Received, Service, ServiceBehaviour};
use crate::services::protocol::{
    AuthenticateAnswer, AuthenticateRequest, ErrorAnswer, VerifyAnswer, VerifyRequest,
};

/// How many requests the log and the idempotency store keep, oldest
/// forgotten first, so a simulator left running for a long demo stays small.
pub(super) const REMEMBERED: usize = 10_000;

/// A body the clients must not be able to read: what a portal in
/// maintenance serves instead of the API.
pub(super) const GARBLED: &str = "<html><body>系统维护中 / Under maintenance</body></html>";

/// Who a request is about. Kept in memory for tests; its `Debug` and every
/// log line leave it out.
#[derive(Clone, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub id_number: String,
    /// Only the intranet is asked about an address.
    pub address: Option<String>,
}

impl fmt::Debug for Person {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Person").finish_non_exhaustive()
    }
}

/// One answer, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reply {
    pub status: StatusCode,
    pub body: String,
    /// Whether `body` is JSON (otherwise it is [`GARBLED`] HTML).
    pub json: bool,
    pub retry_after: Option<Duration>,
    pub replayed: bool,
    /// How long to wait before sending it.
    pub delay: Duration,
    pub answered: Answered,
}

/// An answer given to a key, replayed when the key comes again.
#[derive(Debug, Clone)]
struct Given {
    person: Person,
    answered: Answered,
    body: String,
}

/// Everything a simulator knows, behind one lock so that deciding an
/// answer and remembering it is one step: two requests with the same key
/// racing each other get one decision.
#[derive(Debug, Default)]
pub(super) struct State {
    pub behaviour: Behaviour,
    pub received: VecDeque<Received>,
    given: HashMap<(Service, String), Given>,
    given_order: VecDeque<(Service, String)>,
}

impl State {
    pub(super) fn new(behaviour: Behaviour) -> State {
        State {
            behaviour,
            ..State::default()
        }
    }

    /// Answers one request and logs it.
    ///
    /// In order: a request without a key or with an unreadable body is
    /// `400`; a key seen before replays its answer (`422` if it was for
    /// another person); then the configured `503`s and garbled answers are
    /// used up; then the person is confirmed unless their ID number ends in
    /// a refused suffix. Only confirmations and refusals are remembered: a
    /// `503` is "not now", and asking again with the same key may succeed.
    pub(super) fn answer(&mut self, service: Service, key: Option<&str>, body: &[u8]) -> Reply {
        let person = read_person(service, body);
        let behaviour = self.behaviour.of(service).clone();
        let reply = match (key, &person) {
            (None, _) => error(
                StatusCode::BAD_REQUEST,
                "the Idempotency-Key header is required",
                Answered::Invalid,
            ),
            (Some(_), None) => error(
                StatusCode::BAD_REQUEST,
                "the body must be a JSON object with the fields of this operation",
                Answered::Invalid,
            ),
            (Some(key), Some(person)) => self.decide(service, key, person, &behaviour),
        };
        let reply = Reply {
            delay: behaviour.delay,
            ..reply
        };
        self.log(Received {
            service,
            key: key.map(str::to_owned),
            person,
            answered: reply.answered,
            replayed: reply.replayed,
        });
        reply
    }

    fn decide(
        &mut self,
        service: Service,
        key: &str,
        person: &Person,
        behaviour: &ServiceBehaviour,
    ) -> Reply {
        let remembered = (service, key.to_owned());
        if let Some(given) = self.given.get(&remembered) {
            if &given.person != person {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "this Idempotency-Key was used for a different request",
                    Answered::KeyReused,
                );
            }
            return Reply {
                replayed: true,
                ..ok(given.answered, given.body.clone())
            };
        }
        let counters = self.behaviour.of_mut(service);
        if counters.unavailable_next > 0 {
            counters.unavailable_next -= 1;
            return Reply {
                retry_after: behaviour.retry_after,
                ..error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the service is temporarily unavailable",
                    Answered::Unavailable,
                )
            };
        }
        if counters.garbled_next > 0 {
            counters.garbled_next -= 1;
            return Reply {
                json: false,
                ..ok(Answered::Garbled, GARBLED.to_owned())
            };
        }
        let refused = behaviour
            .refuse_id_suffixes
            .iter()
            .any(|suffix| !suffix.is_empty() && person.id_number.ends_with(suffix.as_str()));
        let (answered, body) = verdict(service, refused);
        self.remember(
            remembered,
            Given {
                person: person.clone(),
                answered,
                body: body.clone(),
            },
        );
        ok(answered, body)
    }

    fn remember(&mut self, key: (Service, String), given: Given) {
        if self.given_order.len() >= REMEMBERED
            && let Some(oldest) = self.given_order.pop_front()
        {
            self.given.remove(&oldest);
        }
        self.given_order.push_back(key.clone());
        self.given.insert(key, given);
    }

    fn log(&mut self, received: Received) {
        if self.received.len() >= REMEMBERED {
            self.received.pop_front();
        }
        self.received.push_back(received);
    }
}

fn read_person(service: Service, body: &[u8]) -> Option<Person> {
    match service {
        Service::RealName => serde_json::from_slice::<VerifyRequest>(body)
            .ok()
            .map(|r| Person {
                name: r.name,
                id_number: r.id_number,
                address: None,
            }),
        Service::Intranet => serde_json::from_slice::<AuthenticateRequest>(body)
            .ok()
            .map(|r| Person {
                name: r.name,
                id_number: r.id_number,
                address: Some(r.address),
            }),
    }
}

/// The JSON of a confirmation or refusal. The reasons never repeat the
/// person's details, as a real service's must not either.
fn verdict(service: Service, refused: bool) -> (Answered, String) {
    let body = match (service, refused) {
        (Service::RealName, false) => serde_json::to_string(&VerifyAnswer::Confirmed),
        (Service::RealName, true) => serde_json::to_string(&VerifyAnswer::Refused {
            reason: "the name does not match the registered holder of this ID number".to_owned(),
        }),
        (Service::Intranet, false) => serde_json::to_string(&AuthenticateAnswer::Authenticated),
        (Service::Intranet, true) => serde_json::to_string(&AuthenticateAnswer::Mismatch {
            reason: "the declared residence address does not match the police registration"
                .to_owned(),
        }),
    };
    let answered = if refused {
        Answered::Refused
    } else {
        Answered::Confirmed
    };
    // Serialising these enums cannot fail; an empty body would still be
    // caught by every client as unreadable.
    (answered, body.unwrap_or_default())
}

fn ok(answered: Answered, body: String) -> Reply {
    Reply {
        status: StatusCode::OK,
        body,
        json: true,
        retry_after: None,
        replayed: false,
        delay: Duration::ZERO,
        answered,
    }
}

fn error(status: StatusCode, message: &str, answered: Answered) -> Reply {
    let body = serde_json::to_string(&ErrorAnswer {
        error: message.to_owned(),
    })
    .unwrap_or_default();
    Reply {
        status,
        ..ok(answered, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(id_number: &str) -> Vec<u8> {
        serde_json::to_vec(&VerifyRequest {
            name: "张三".to_owned(),
            id_number: id_number.to_owned(),
        })
        .unwrap_or_default()
    }

    #[test]
    fn counters_are_used_up_in_order_and_replays_do_not_use_them() {
        let mut state = State::new(Behaviour {
            realname: ServiceBehaviour {
                unavailable_next: 1,
                garbled_next: 1,
                ..ServiceBehaviour::default()
            },
            ..Behaviour::default()
        });
        let body = verify("11010519491231002X");
        let answers: Vec<Answered> = ["a", "b", "c", "c", "d"]
            .into_iter()
            .map(|key| state.answer(Service::RealName, Some(key), &body).answered)
            .collect();
        assert_eq!(
            answers,
            [
                Answered::Unavailable,
                Answered::Garbled,
                Answered::Confirmed,
                Answered::Confirmed,
                Answered::Confirmed
            ]
        );
        let replayed: Vec<bool> = state.received.iter().map(|r| r.replayed).collect();
        assert_eq!(replayed, [false, false, false, true, false]);
        // A 503 is not remembered: the same key may succeed later.
        assert_eq!(
            state.answer(Service::RealName, Some("a"), &body).answered,
            Answered::Confirmed
        );
    }

    #[test]
    fn keys_are_per_service_and_the_store_is_bounded() {
        let mut state = State::default();
        let body = verify("11010519491231002X");
        for n in 0..REMEMBERED + 5 {
            state.answer(Service::RealName, Some(&n.to_string()), &body);
        }
        assert_eq!(state.given.len(), REMEMBERED);
        assert_eq!(state.received.len(), REMEMBERED);
        assert!(
            !state
                .given
                .contains_key(&(Service::RealName, "0".to_owned()))
        );
        let intranet = state.answer(Service::Intranet, Some("7"), &body);
        // The real-name body lacks `address`: unreadable for the intranet.
        assert_eq!(intranet.status, StatusCode::BAD_REQUEST);
    }
}
