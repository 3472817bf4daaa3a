//! The HTTP plumbing both service clients share: a pooled client with
//! connect and request timeouts, one call with an idempotency key, and the
//! one place where what came back becomes a [`ServiceError`].
//!
//! Nothing here sees which person a call is about: request bodies are
//! opaque, and errors name the service, the status and the cause only.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Client, Response, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::protocol::{IDEMPOTENCY_KEY, REPLAYED};
use crate::handlers::identity::ServiceError;

/// The longest a TCP and TLS handshake may take, whatever the request
/// timeout: a service that does not accept connections is down, not slow.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest answer read. Real answers are a few dozen bytes; a larger
/// one is an error page or a misrouted request, and must not fill memory.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The longest refusal reason passed on into a case's history.
const MAX_REASON_CHARS: usize = 500;

/// Why a service client could not be built. Configuration mistakes, found
/// when a worker starts, never during an attempt.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the {service} service URL is not valid")]
    Url {
        service: &'static str,
        #[source]
        source: UrlError,
    },
    #[error("the {service} service URL must start with http:// or https://")]
    Scheme { service: &'static str },
    #[error("the {service} service timeout must be longer than zero")]
    ZeroTimeout { service: &'static str },
    #[error("could not build the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// The `url` crate's parse error, which `reqwest` does not re-export.
pub type UrlError = <Url as std::str::FromStr>::Err;

/// A client for the government services: no redirects (a redirected POST
/// silently becomes a GET), a connect timeout of at most
/// [`CONNECT_TIMEOUT`] and `request_timeout` for each whole request.
/// Clone it to share its connection pool between services.
pub fn client(request_timeout: Duration) -> Result<Client, ClientError> {
    Client::builder()
        .connect_timeout(request_timeout.min(CONNECT_TIMEOUT))
        .timeout(request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(concat!("docket-worker/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(ClientError::Client)
}

/// One operation of one service: where it is and how long to wait for it.
#[derive(Clone)]
pub(crate) struct Endpoint {
    /// The service's name for messages, e.g. `real-name`.
    service: &'static str,
    client: Client,
    url: Url,
    timeout: Duration,
}

impl fmt::Debug for Endpoint {
    /// Without any user name or password the configured URL may carry.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        f.debug_struct("Endpoint")
            .field("service", &self.service)
            .field("url", &shown.as_str())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Endpoint {
    /// `path` is relative to `base_url`, which may have a path of its own
    /// (`https://gateway/realname` reaches `https://gateway/realname/v1/verify`).
    pub(crate) fn new(
        service: &'static str,
        client: Client,
        base_url: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<Endpoint, ClientError> {
        if timeout.is_zero() {
            return Err(ClientError::ZeroTimeout { service });
        }
        let mut base: Url = base_url
            .trim()
            .parse()
            .map_err(|source| ClientError::Url { service, source })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ClientError::Scheme { service });
        }
        if !base.path().ends_with('/') {
            let directory = format!("{}/", base.path());
            base.set_path(&directory);
        }
        let url = base
            .join(path)
            .map_err(|source| ClientError::Url { service, source })?;
        Ok(Endpoint {
            service,
            client,
            url,
            timeout,
        })
    }

    /// POSTs `body` as JSON with `key` as its idempotency key and reads a
    /// 2xx answer as `A`.
    ///
    /// 429 and 5xx are [`ServiceError::Unavailable`], carrying any
    /// `Retry-After`;
    /// no answer within the timeout is [`ServiceError::Timeout`]; any other
    /// status, or an answer that is not `A`, is [`ServiceError::BadResponse`].
    pub(crate) async fn call<A: DeserializeOwned>(
        &self,
        key: &str,
        body: &impl Serialize,
    ) -> Result<A, ServiceError> {
        let service = self.service;
        let key_header = HeaderValue::from_str(key).map_err(|_| {
            ServiceError::BadResponse(format!(
                "the attempt id cannot be sent to the {service} service as an idempotency key"
            ))
        })?;
        let response = self
            .client
            .post(self.url.clone())
            .timeout(self.timeout)
            .header(IDEMPOTENCY_KEY, key_header)
            .json(body)
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let replayed = response.headers().contains_key(REPLAYED);
        tracing::debug!(
            service,
            key,
            status = status.as_u16(),
            replayed,
            "service answered"
        );
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            let asked = retry_after(response.headers(), Utc::now());
            let wait = asked
                .map(|d| format!("; it asked to be retried after {} s", d.as_secs()))
                .unwrap_or_default();
            return Err(ServiceError::Unavailable {
                message: format!("the {service} service answered {status}{wait}"),
                retry_after: asked,
            });
        }
        if !status.is_success() {
            return Err(ServiceError::BadResponse(format!(
                "unexpected status {status} from the {service} service"
            )));
        }
        let bytes = self.read_bounded(response).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            // serde's own message may quote the body; the body is the
            // service's and may repeat personal details, so say only where.
            let what = match e.classify() {
                serde_json::error::Category::Data => "JSON of an unexpected shape",
                _ => "not JSON",
            };
            ServiceError::BadResponse(format!(
                "the {service} service's answer is {what} (line {}, column {})",
                e.line(),
                e.column()
            ))
        })
    }

    /// The body, refusing one larger than [`MAX_ANSWER_BYTES`].
    async fn read_bounded(&self, mut response: Response) -> Result<Vec<u8>, ServiceError> {
        let too_large = || {
            ServiceError::BadResponse(format!(
                "the {} service's answer is larger than {MAX_ANSWER_BYTES} bytes",
                self.service
            ))
        };
        if response
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(&e))?
        {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    /// A request that got no (complete) answer. The message is reqwest's
    /// innermost cause, e.g. "Connection refused (os error 111)": the outer
    /// layers only repeat it, and its URL is configuration, not news.
    fn transport_error(&self, e: &reqwest::Error) -> ServiceError {
        if e.is_timeout() {
            return ServiceError::Timeout;
        }
        let mut cause: &dyn std::error::Error = e;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        let what = if e.is_connect() {
            "could not connect to"
        } else {
            "lost the connection to"
        };
        ServiceError::Unavailable {
            message: format!("{what} the {} service: {cause}", self.service),
            retry_after: None,
        }
    }
}

/// How long a `Retry-After` header asks a client to wait: whole seconds or
/// an HTTP date (a date in the past means now). `None` if absent or
/// unreadable.
pub fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// A service's refusal reason, fit for a case's history: any of the
/// person's details it repeats is withheld, and it is cut to a few hundred
/// characters. The reason is the service's text, and histories are read by
/// roles that see personal information masked.
pub(crate) fn reason_without(reason: &str, personal: &[&str]) -> String {
    let mut reason = reason.trim().to_owned();
    for detail in personal {
        let detail = detail.trim();
        if detail.chars().count() >= 2 {
            reason = reason.replace(detail, "[withheld]");
        }
    }
    match reason.char_indices().nth(MAX_REASON_CHARS) {
        Some((cut, _)) => format!("{}…", &reason[..cut]),
        None => reason,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = Utc
            .with_ymd_and_hms(2026, 11, 26, 8, 0, 0)
            .single()
            .unwrap_or_default();
        let header = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_static(v));
            h
        };
        assert_eq!(
            retry_after(&header("120"), now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            retry_after(&header("Thu, 26 Nov 2026 08:01:30 GMT"), now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            retry_after(&header("Thu, 26 Nov 2026 07:00:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&header("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn reasons_never_repeat_the_persons_details() {
        let reason = reason_without(
            "张三 (11010519491231002X) is not registered at 泉州市丰泽区东海街道1号",
            &["张三", "11010519491231002X", "泉州市丰泽区东海街道1号"],
        );
        assert_eq!(
            reason,
            "[withheld] ([withheld]) is not registered at [withheld]"
        );
        let long = reason_without(&"很".repeat(2_000), &[]);
        assert_eq!(long.chars().count(), MAX_REASON_CHARS + 1);
    }

    #[test]
    fn base_urls_with_and_without_a_path_reach_the_operation() {
        let client = Client::new();
        let url = |base: &str| {
            Endpoint::new(
                "test",
                client.clone(),
                base,
                "v1/verify",
                Duration::from_secs(1),
            )
            .map(|e| e.url.to_string())
            .map_err(|e| e.to_string())
        };
        assert_eq!(
            url("http://127.0.0.1:8181"),
            Ok("http://127.0.0.1:8181/v1/verify".to_owned())
        );
        assert_eq!(
            url("https://gateway.example/realname"),
            Ok("https://gateway.example/realname/v1/verify".to_owned())
        );
        assert_eq!(
            url("https://gateway.example/realname/"),
            Ok("https://gateway.example/realname/v1/verify".to_owned())
        );
        assert!(url("not a url").is_err());
        assert_eq!(
            url("ftp://gateway.example/"),
            Err("the test service URL must start with http:// or https://".to_owned())
        );
        assert!(Endpoint::new("test", client.clone(), "http://a/", "v1", Duration::ZERO).is_err());
    }
}
