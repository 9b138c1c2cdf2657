//! Tokens files for daemons started with `--tokens`, and the interceptor that sends a
//! token with raw stubs.

use tonic::metadata::AsciiMetadataValue;

/// A tokens file of `tokens`, each (name, token, role): the `[[token]]` tables the
/// daemon reads, each holding the token's SHA-256.
pub fn tokens_file(tokens: &[(&str, &str, &str)]) -> String {
    tokens
        .iter()
        .map(|(name, token, role)| {
            format!(
                "[[token]]\nname = \"{name}\"\nsha256 = \"{}\"\nrole = \"{role}\"\n",
                circuitd::auth::sha256_hex(token.as_bytes())
            )
        })
        .collect()
}

/// An interceptor sending `authorization: Bearer <token>`, for
/// `ProtectorClient::with_interceptor` and the like.
pub fn with_token(token: &str) -> WithToken {
    WithToken(format!("Bearer {token}").parse().expect("a header value"))
}

/// See [`with_token`].
#[derive(Debug, Clone)]
pub struct WithToken(AsciiMetadataValue);

impl tonic::service::Interceptor for WithToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}
