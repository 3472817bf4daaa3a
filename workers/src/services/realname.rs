//! [`HttpRealName`]: the real-name authentication service over HTTP, the
//! [`RealNameService`] that `identity.verify` calls in production.

use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::Client;

use super::http::{self, ClientError, Endpoint, reason_without};
use super::protocol::{VERIFY_PATH, VerifyAnswer, VerifyRequest};
use crate::handlers::identity::{RealNameService, ServiceError, Verdict};

/// Asks `POST {base}/v1/verify` whether a name belongs to an ID number.
#[derive(Debug, Clone)]
pub struct HttpRealName {
    endpoint: Endpoint,
}

impl HttpRealName {
    /// A client of its own, waiting at most `timeout` for each answer.
    pub fn new(base_url: &str, timeout: Duration) -> Result<HttpRealName, ClientError> {
        HttpRealName::with_client(http::client(timeout)?, base_url, timeout)
    }

    /// Shares `client`'s connection pool (see [`http::client`]); `timeout`
    /// still bounds each request, whatever the client's own.
    pub fn with_client(
        client: Client,
        base_url: &str,
        timeout: Duration,
    ) -> Result<HttpRealName, ClientError> {
        let endpoint = Endpoint::new("real-name", client, base_url, VERIFY_PATH, timeout)?;
        Ok(HttpRealName { endpoint })
    }
}

impl RealNameService for HttpRealName {
    fn verify<'a>(
        &'a self,
        name: &'a str,
        id_number: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Verdict, ServiceError>> {
        Box::pin(async move {
            let request = VerifyRequest {
                name: name.to_owned(),
                id_number: id_number.to_owned(),
            };
            Ok(match self.endpoint.call(key, &request).await? {
                VerifyAnswer::Confirmed => Verdict::Confirmed,
                VerifyAnswer::Refused { reason } => {
                    Verdict::Refused(reason_without(&reason, &[name, id_number]))
                }
            })
        })
    }
}
