//! [`HttpIntranet`]: the police intranet's identity authentication over
//! HTTP, the [`IntranetService`] that `intranet.authenticate` calls in
//! production.

use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::Client;

use super::http::{self, ClientError, Endpoint, reason_without};
use super::protocol::{AUTHENTICATE_PATH, AuthenticateAnswer, AuthenticateRequest};
use crate::handlers::identity::{IntranetService, ServiceError, Verdict};

/// Asks `POST {base}/v1/authenticate` whether a person is registered at a
/// residence address. A mismatch is [`Verdict::Refused`], which the handler
/// reports as its permanent `mismatch` outcome.
#[derive(Debug, Clone)]
pub struct HttpIntranet {
    endpoint: Endpoint,
}

impl HttpIntranet {
    /// A client of its own, waiting at most `timeout` for each answer.
    pub fn new(base_url: &str, timeout: Duration) -> Result<HttpIntranet, ClientError> {
        HttpIntranet::with_client(http::client(timeout)?, base_url, timeout)
    }

    /// Shares `client`'s connection pool (see [`http::client`]); `timeout`
    /// still bounds each request, whatever the client's own.
    pub fn with_client(
        client: Client,
        base_url: &str,
        timeout: Duration,
    ) -> Result<HttpIntranet, ClientError> {
        let endpoint = Endpoint::new("intranet", client, base_url, AUTHENTICATE_PATH, timeout)?;
        Ok(HttpIntranet { endpoint })
    }
}

impl IntranetService for HttpIntranet {
    fn authenticate<'a>(
        &'a self,
        name: &'a str,
        id_number: &'a str,
        address: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Verdict, ServiceError>> {
        Box::pin(async move {
            let request = AuthenticateRequest {
                name: name.to_owned(),
                id_number: id_number.to_owned(),
                address: address.to_owned(),
            };
            Ok(match self.endpoint.call(key, &request).await? {
                AuthenticateAnswer::Authenticated => Verdict::Confirmed,
                AuthenticateAnswer::Mismatch { reason } => {
                    Verdict::Refused(reason_without(&reason, &[name, id_number, address]))
                }
            })
        })
    }
}
