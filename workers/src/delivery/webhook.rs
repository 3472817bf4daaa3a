//! [`WebhookMessenger`]: `notify.webhook`, the service-account message
//! channel, as one JSON `POST` per message.
//!
//! `POST {url}` with `{"to": …, "subject": … or null, "body": …}` and the
//! attempt id in `Idempotency-Key`. The answer's body is never read:
//!
//! | answer | delivery |
//! | --- | --- |
//! | 2xx | sent |
//! | 4xx but 408 and 429 | `Rejected`: the message or its recipient was refused |
//! | 408, 429, 5xx, no answer within the timeout, no connection | `Temporary` (`Throttled` with a `Retry-After`) |
//! | anything else (3xx: redirects are not followed) | `Temporary`: a misconfigured URL an operator can fix within the step's retries |

use std::fmt;
use std::time::Duration;

use chrono::Utc;
use futures_util::future::BoxFuture;
use reqwest::header::HeaderValue;
use reqwest::{Client, StatusCode, Url};
use serde::Serialize;

use crate::handlers::notify::{DeliveryError, Message, Messenger};
use crate::services::http::{self, ClientError, retry_after};
use crate::services::protocol::IDEMPOTENCY_KEY;

/// The service name in configuration errors.
const SERVICE: &str = "webhook";

/// What is posted.
#[derive(Debug, Serialize)]
struct Payload<'a> {
    to: &'a str,
    subject: Option<&'a str>,
    body: &'a str,
}

/// Delivers `webhook` messages to one URL.
#[derive(Clone)]
pub struct WebhookMessenger {
    client: Client,
    url: Url,
    timeout: Duration,
}

impl fmt::Debug for WebhookMessenger {
    /// Without any user name, password or query the URL may carry: webhook
    /// URLs often hold their token there.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        shown.set_query(None);
        f.debug_struct("WebhookMessenger")
            .field("url", &shown.as_str())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl WebhookMessenger {
    /// A client of its own (see [`http::client`]), waiting at most
    /// `timeout` for each delivery.
    pub fn new(url: &str, timeout: Duration) -> Result<WebhookMessenger, ClientError> {
        WebhookMessenger::with_client(http::client(timeout)?, url, timeout)
    }

    /// Shares `client`'s connection pool; `timeout` still bounds each
    /// delivery, whatever the client's own.
    pub fn with_client(
        client: Client,
        url: &str,
        timeout: Duration,
    ) -> Result<WebhookMessenger, ClientError> {
        if timeout.is_zero() {
            return Err(ClientError::ZeroTimeout { service: SERVICE });
        }
        let url: Url = url.trim().parse().map_err(|source| ClientError::Url {
            service: SERVICE,
            source,
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ClientError::Scheme { service: SERVICE });
        }
        Ok(WebhookMessenger {
            client,
            url,
            timeout,
        })
    }

    async fn deliver(&self, message: Message) -> Result<(), DeliveryError> {
        let result = self.post(&message).await;
        match &result {
            Ok(()) => tracing::debug!(key = %message.key, "the webhook took the message"),
            Err(e) => {
                tracing::warn!(key = %message.key, error = %e, "webhook message not delivered")
            }
        }
        result
    }

    async fn post(&self, message: &Message) -> Result<(), DeliveryError> {
        // An attempt id is ASCII without control characters; one that is
        // not cannot become a header, and will not on a retry either.
        let key = HeaderValue::from_str(&message.key).map_err(|_| {
            DeliveryError::Rejected(
                "the attempt id cannot be sent as an idempotency key".to_owned(),
            )
        })?;
        let payload = Payload {
            to: &message.to,
            subject: message.subject.as_deref(),
            body: &message.body,
        };
        let response = self
            .client
            .post(self.url.clone())
            .timeout(self.timeout)
            .header(IDEMPOTENCY_KEY, key)
            .json(&payload)
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if matches!(
            status,
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS
        ) || status.is_server_error()
        {
            return Err(match retry_after(response.headers(), Utc::now()) {
                Some(wait) => DeliveryError::Throttled {
                    message: format!(
                        "the webhook answered {status}; it asked to be retried after {} s",
                        wait.as_secs()
                    ),
                    retry_after: wait,
                },
                None => DeliveryError::Temporary(format!("the webhook answered {status}")),
            });
        }
        if status.is_client_error() {
            return Err(DeliveryError::Rejected(format!(
                "the webhook refused the message: {status}"
            )));
        }
        Err(DeliveryError::Temporary(format!(
            "unexpected status {status} from the webhook"
        )))
    }

    /// A request that got no answer. The message is reqwest's innermost
    /// cause, e.g. "Connection refused (os error 111)": the outer layers
    /// only repeat it, and its URL is configuration, not news.
    fn transport_error(&self, e: &reqwest::Error) -> DeliveryError {
        if e.is_timeout() {
            return DeliveryError::Temporary(format!(
                "the webhook did not answer within {}",
                humantime::format_duration(self.timeout)
            ));
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
        DeliveryError::Temporary(format!("{what} the webhook: {cause}"))
    }
}

impl Messenger for WebhookMessenger {
    fn send<'a>(&'a self, message: Message) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(self.deliver(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_never_shown_with_their_secrets() {
        let second = Duration::from_secs(1);
        let shown = WebhookMessenger::new("https://user:pw@hooks.example/in?token=s3cret", second)
            .map(|m| format!("{m:?}"));
        assert!(
            shown.as_ref().is_ok_and(|s| s.contains("hooks.example/in")
                && !s.contains("s3cret")
                && !s.contains("pw")),
            "{shown:?}"
        );
        assert!(WebhookMessenger::new("ftp://hooks.example/", second).is_err());
        assert!(WebhookMessenger::new("not a url", second).is_err());
        assert!(WebhookMessenger::new("http://127.0.0.1:1/", Duration::ZERO).is_err());
    }
}
