//! `identity.verify` and `intranet.authenticate`: checks that need an
//! external government service. The services sit behind small traits so a
//! worker talks to the real one and the embedded demo to a simulator.

use std::sync::Arc;
use std::time::Duration;

use chrono::{Datelike, NaiveDate};
use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

use super::{Handler, text_param};
use crate::contract::{Job, Outcome};

/// What an identity service answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The person is who they say they are.
    Confirmed,
    /// The service says no, with its reason.
    Refused(String),
}

/// Why a service could not answer; every case is worth retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("the service is unavailable: {message}")]
    Unavailable {
        message: String,
        /// How long the service asked us to wait (`Retry-After`); the
        /// orchestrator waits at least this long before the next attempt.
        retry_after: Option<Duration>,
    },
    #[error("the service did not answer in time")]
    Timeout,
    #[error("the service answered something unreadable: {0}")]
    BadResponse(String),
}

impl ServiceError {
    fn into_outcome(self) -> Outcome {
        let (code, retry_after) = match &self {
            ServiceError::Unavailable { retry_after, .. } => ("unavailable", *retry_after),
            ServiceError::Timeout => ("timeout", None),
            ServiceError::BadResponse(_) => ("bad_response", None),
        };
        let mut outcome = Outcome::retryable(code, self.to_string());
        if let Outcome::Failed {
            retry_after_secs, ..
        } = &mut outcome
        {
            // Rounded up: a service that asks for 1.5 s must not be called at 1 s.
            *retry_after_secs = retry_after.map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
        }
        outcome
    }
}

/// The real-name authentication service.
pub trait RealNameService: std::fmt::Debug + Send + Sync + 'static {
    /// `key` is the attempt id: the service must treat a repeated key as the
    /// same request.
    fn verify<'a>(
        &'a self,
        name: &'a str,
        id_number: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Verdict, ServiceError>>;
}

/// The police intranet's identity authentication for a residence address.
pub trait IntranetService: std::fmt::Debug + Send + Sync + 'static {
    fn authenticate<'a>(
        &'a self,
        name: &'a str,
        id_number: &'a str,
        address: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Verdict, ServiceError>>;
}

/// Why an 18-character citizen ID number (GB 11643-1999) is not valid. The
/// messages never repeat the number: it is personal information.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdNumberError {
    #[error("the ID number must have 18 characters: 17 digits and a check digit or X")]
    Shape,
    #[error("the ID number's region code is not a region of mainland China")]
    Region,
    #[error("the ID number's birth date is not a real date")]
    BirthDate,
    #[error("the ID number's birth date is in the future")]
    FutureBirth,
    #[error("the ID number's check character does not match (a digit was mistyped)")]
    Checksum,
}

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

/// Checks a citizen ID number's structure: region, birth date (real and not
/// after `today`) and the ISO 7064 MOD 11-2 check character.
pub fn check_id_number(id: &str, today: NaiveDate) -> Result<(), IdNumberError> {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() != 18
        || !chars[..17].iter().all(char::is_ascii_digit)
        || !(chars[17].is_ascii_digit() || chars[17] == 'X')
    {
        return Err(IdNumberError::Shape);
    }
    let digits: Vec<u32> = chars[..17].iter().filter_map(|c| c.to_digit(10)).collect();
    // Province codes run from 11 (Beijing) to 65 (Xinjiang); 71, 81 and 82
    // are Taiwan, Hong Kong and Macao residence-permit numbers.
    let province = digits[0] * 10 + digits[1];
    if !matches!(province, 11..=15 | 21..=23 | 31..=37 | 41..=46 | 50..=54 | 61..=65 | 71 | 81 | 82)
    {
        return Err(IdNumberError::Region);
    }
    let number = |range: std::ops::Range<usize>| digits[range].iter().fold(0, |n, d| n * 10 + d);
    let birth = NaiveDate::from_ymd_opt(number(6..10) as i32, number(10..12), number(12..14))
        .filter(|d| d.year() >= 1880)
        .ok_or(IdNumberError::BirthDate)?;
    if birth > today {
        return Err(IdNumberError::FutureBirth);
    }
    let sum: u32 = digits.iter().zip(WEIGHTS).map(|(d, w)| d * w).sum();
    if CHECK[(sum % 11) as usize] != chars[17] {
        return Err(IdNumberError::Checksum);
    }
    Ok(())
}

fn refused(reason: impl Into<String>) -> Outcome {
    let mut output = Map::new();
    output.insert("reason".to_owned(), Value::String(reason.into()));
    Outcome::Succeeded {
        outcome: "rejected".to_owned(),
        output,
    }
}

fn today() -> NaiveDate {
    chrono::Utc::now().date_naive()
}

/// `identity.verify`.
#[derive(Debug, Clone)]
pub struct IdentityVerify {
    service: Arc<dyn RealNameService>,
}

impl IdentityVerify {
    pub fn new(service: Arc<dyn RealNameService>) -> Self {
        IdentityVerify { service }
    }
}

impl Handler for IdentityVerify {
    fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let (name, id_number) = match (text_param(job, "name"), text_param(job, "id_number")) {
                (Ok(n), Ok(i)) => (n.trim(), i.trim()),
                (Err(o), _) | (_, Err(o)) => return o,
            };
            if name.is_empty() {
                return refused("the name is empty");
            }
            if let Err(e) = check_id_number(id_number, today()) {
                return refused(e.to_string());
            }
            match self.service.verify(name, id_number, &job.attempt_id).await {
                Ok(Verdict::Confirmed) => Outcome::succeeded("verified"),
                Ok(Verdict::Refused(reason)) => refused(reason),
                Err(e) => e.into_outcome(),
            }
        })
    }
}

/// `intranet.authenticate`.
#[derive(Debug, Clone)]
pub struct IntranetAuthenticate {
    service: Arc<dyn IntranetService>,
}

impl IntranetAuthenticate {
    pub fn new(service: Arc<dyn IntranetService>) -> Self {
        IntranetAuthenticate { service }
    }
}

impl Handler for IntranetAuthenticate {
    fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let params = (
                text_param(job, "name"),
                text_param(job, "id_number"),
                text_param(job, "address"),
            );
            let (name, id_number, address) = match params {
                (Ok(n), Ok(i), Ok(a)) => (n, i, a),
                (Err(o), _, _) | (_, Err(o), _) | (_, _, Err(o)) => return o,
            };
            match self
                .service
                .authenticate(name, id_number, address, &job.attempt_id)
                .await
            {
                Ok(Verdict::Confirmed) => Outcome::succeeded("authenticated"),
                Ok(Verdict::Refused(reason)) => {
                    let mut output = Map::new();
                    output.insert("reason".to_owned(), Value::String(reason));
                    Outcome::Succeeded {
                        outcome: "mismatch".to_owned(),
                        output,
                    }
                }
                Err(e) => e.into_outcome(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::handlers::tests::job;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
    }

    #[test]
    fn valid_numbers_from_the_standard_pass() {
        for id in [
            "11010519491231002X",
            "440524188001010014",
            "513101198201130014",
        ] {
            assert_eq!(check_id_number(id, day(2026, 11, 26)), Ok(()), "{id}");
        }
    }

    #[test]
    fn each_kind_of_mistake_is_named() {
        let today = day(2026, 11, 26);
        assert_eq!(
            check_id_number("1101051949123100", today),
            Err(IdNumberError::Shape)
        );
        assert_eq!(
            check_id_number("11010519491231002x", today),
            Err(IdNumberError::Shape)
        );
        assert_eq!(
            check_id_number("99010519491231002X", today),
            Err(IdNumberError::Region)
        );
        assert_eq!(
            check_id_number("110105194902300021", today),
            Err(IdNumberError::BirthDate)
        );
        assert_eq!(
            check_id_number("110105203001010015", today),
            Err(IdNumberError::FutureBirth)
        );
        assert_eq!(
            check_id_number("11010519491231003X", today),
            Err(IdNumberError::Checksum)
        );
    }

    #[derive(Debug)]
    struct Fixed(Result<Verdict, ServiceError>);

    impl RealNameService for Fixed {
        fn verify<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Verdict, ServiceError>> {
            Box::pin(async move { self.0.clone() })
        }
    }

    #[tokio::test]
    async fn outcomes_follow_the_local_checks_and_the_service() {
        let params = json!({"name": "张三", "id_number": "11010519491231002X"});
        let run = |answer| {
            let handler = IdentityVerify::new(Arc::new(Fixed(answer)));
            let j = job("identity.verify", params.clone());
            async move { handler.run(&j).await }
        };
        assert_eq!(
            run(Ok(Verdict::Confirmed)).await,
            Outcome::succeeded("verified")
        );
        assert!(
            matches!(run(Ok(Verdict::Refused("no".into()))).await, Outcome::Succeeded { outcome, .. } if outcome == "rejected")
        );
        assert!(
            matches!(run(Err(ServiceError::Timeout)).await, Outcome::Failed { retryable: true, code, .. } if code == "timeout")
        );
        let busy = ServiceError::Unavailable {
            message: "503".into(),
            retry_after: Some(Duration::from_millis(1_500)),
        };
        assert!(
            matches!(
                run(Err(busy)).await,
                Outcome::Failed {
                    retryable: true,
                    retry_after_secs: Some(2),
                    ..
                }
            ),
            "Retry-After reaches the orchestrator, rounded up"
        );
        let handler = IdentityVerify::new(Arc::new(Fixed(Ok(Verdict::Confirmed))));
        let bad = job(
            "identity.verify",
            json!({"name": "张三", "id_number": "11010519491231003X"}),
        );
        let Outcome::Succeeded { outcome, output } = handler.run(&bad).await else {
            panic!()
        };
        assert_eq!(outcome, "rejected");
        assert!(
            !output["reason"]
                .as_str()
                .unwrap_or("")
                .contains("11010519491231003X")
        );
    }
}
