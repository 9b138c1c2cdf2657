//! [`Bearer`]: the credential a client sends on every call to a daemon started with
//! `--tokens`, as `authorization: Bearer <token>`. One interceptor for the Rust client,
//! circuitctl and the load generator, so they all send it the same way.

use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;

/// The metadata key of the credential.
pub const AUTHORIZATION: &str = "authorization";

/// Adds `authorization: Bearer <token>` to every call (nothing without a token). Cloning
/// is cheap; the value is built once.
#[derive(Clone, Default)]
pub struct Bearer(Option<AsciiMetadataValue>);

/// A token that cannot travel in a header (a control character, a non-ASCII byte).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the token is not a valid header value: use the printable ASCII token `circuitctl token new` prints")]
pub struct InvalidToken;

impl Bearer {
    /// Sends `token`, or nothing with `None`.
    pub fn new(token: Option<&str>) -> Result<Bearer, InvalidToken> {
        match token {
            None => Ok(Bearer(None)),
            Some(token) if token.is_empty() || token.trim() != token => Err(InvalidToken),
            Some(token) => format!("Bearer {token}")
                .parse::<AsciiMetadataValue>()
                .map(|mut value| {
                    value.set_sensitive(true);
                    Bearer(Some(value))
                })
                .map_err(|_| InvalidToken),
        }
    }

    /// Whether a token is sent.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// Adds the credential to `metadata` (for requests not made through an interceptor).
    pub fn apply(&self, metadata: &mut tonic::metadata::MetadataMap) {
        if let Some(value) = &self.0 {
            metadata.insert(AUTHORIZATION, value.clone());
        }
    }
}

impl std::fmt::Debug for Bearer {
    // Never the token itself: a Debug print ends up in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Bearer")
            .field(&self.0.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        self.apply(request.metadata_mut());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_bearer_and_the_token_never_printed() {
        let mut bearer = Bearer::new(Some("s3cret")).expect("valid");
        let request = bearer.call(tonic::Request::new(())).expect("intercepted");
        assert_eq!(
            request
                .metadata()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
            Some("Bearer s3cret")
        );
        assert!(!format!("{bearer:?}").contains("s3cret"));
        let mut none = Bearer::new(None).expect("none");
        assert!(
            none.call(tonic::Request::new(()))
                .expect("ok")
                .metadata()
                .is_empty()
        );
        assert_eq!(Bearer::new(Some("a\nb")).map(|_| ()), Err(InvalidToken));
        assert_eq!(Bearer::new(Some("")).map(|_| ()), Err(InvalidToken));
    }
}
