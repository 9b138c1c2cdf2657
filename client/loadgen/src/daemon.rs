//! Reaching the daemon: an eager connection, and setup calls bounded by the timeout.
//!
//! The connection is made before anything else, so a daemon that cannot be reached is
//! told apart from an error it answers ([`Error::Unreachable`] against
//! [`Error::Status`]). circuitctl connects the same way for its other commands, so every
//! command says "cannot reach" in the same words.

use std::future::Future;
use std::time::Duration;

use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::error::Error;

/// Sends `authorization: Bearer TOKEN` with every call when a token is set (a daemon
/// started with `--tokens`), nothing otherwise. The header value is built once, so each
/// call pays what any client that sends a token pays: one header inserted.
#[derive(Debug, Clone, Default)]
pub struct Credentials(Option<AsciiMetadataValue>);

impl Credentials {
    /// Credentials carrying `token`, or none; a token that cannot travel in a header is
    /// an error naming the flag.
    pub fn bearer(token: Option<&str>) -> Result<Credentials, Error> {
        match token {
            None => Ok(Credentials(None)),
            Some(token) => format!("Bearer {token}")
                .parse()
                .map(|value| Credentials(Some(value)))
                .map_err(|_| Error::other("--token holds a character a header cannot carry")),
        }
    }

    /// Whether a token is sent.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }
}

impl Interceptor for Credentials {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A connection with its [`Credentials`]: what every client of a run is built on.
pub type Transport = InterceptedService<Channel, Credentials>;

/// Connects to `addr` within `timeout`.
pub async fn connect(addr: &str, timeout: Duration) -> Result<Channel, Error> {
    connect_with(addr, timeout, None).await
}

/// Connects to `addr` within `timeout`, over TLS with `tls` when given (the address must
/// then be `https://`).
pub async fn connect_with(
    addr: &str,
    timeout: Duration,
    tls: Option<&ClientTlsConfig>,
) -> Result<Channel, Error> {
    let mut endpoint = Endpoint::from_shared(addr.to_owned())
        .map_err(|e| Error::other(format!("invalid --addr {addr:?}: {e}")))?
        .connect_timeout(timeout);
    if let Some(tls) = tls {
        if endpoint.uri().scheme_str() != Some("https") {
            return Err(Error::other(format!(
                "--addr {addr:?}: TLS is configured (--tls-ca), so the address must be https://"
            )));
        }
        endpoint = endpoint
            .tls_config(tls.clone())
            .map_err(|e| Error::other(format!("--addr {addr:?}: TLS: {e}")))?;
    }
    match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(Error::Unreachable {
            addr: addr.to_owned(),
            cause: causes(&e),
        }),
        Err(_) => Err(Error::Unreachable {
            addr: addr.to_owned(),
            cause: format!("no connection within {}", human(timeout)),
        }),
    }
}

/// Awaits one call to `addr` for at most `timeout`: `None` when no answer came in time,
/// an error status classified as [`Error::from_status`] does.
pub(crate) async fn within<T>(
    addr: &str,
    timeout: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<Option<T>, Error> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(response)) => Ok(Some(response.into_inner())),
        Ok(Err(status)) => Err(Error::from_status(addr, status)),
        Err(_) => Ok(None),
    }
}

/// An error and its sources joined by `: `, skipping a source whose text a previous level
/// already repeats (the transport's errors often embed their cause).
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}

/// A duration for people, to the millisecond.
fn human(d: Duration) -> String {
    let millis = Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    humantime::format_duration(millis).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Layer(&'static str, #[source] Option<Box<Layer>>);

    #[test]
    fn causes_skip_what_the_level_above_repeats() {
        let inner = Layer("refused", None);
        let middle = Layer("tcp connect error: refused", Some(Box::new(inner)));
        let outer = Layer("transport error", Some(Box::new(middle)));
        assert_eq!(causes(&outer), "transport error: tcp connect error: refused");
    }

    #[test]
    fn durations_are_shown_to_the_millisecond() {
        assert_eq!(human(Duration::from_nanos(1_250_999_999)), "1s 250ms");
    }
}
