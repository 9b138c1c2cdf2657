//! Requests sent to whichever replica of a cluster answers: the way a client given every
//! replica's address behaves, with raw stubs, for tests that must see each answer.
//!
//! A replica that cannot be reached, or answers UNAVAILABLE (no leader yet, a leader that
//! stepped down, a replica shutting down) or DEADLINE_EXCEEDED, is passed over for the
//! next, round robin, until one gives any other answer or [`DEADLINE`] passes. An
//! UNAVAILABLE answer says the outcome is unknown: the change may still have happened,
//! which is why load loops record only what was acknowledged.

use std::time::Duration;

use resilient_circuit_api::v1;
use tonic::transport::{Channel, Endpoint};

use crate::fixtures::{AdminClient, DEADLINE, POLL_INTERVAL, ProtectorClient};

/// Whether `status` means "try another replica".
pub fn passed_over(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::Unknown
    )
}

/// Round robin over a cluster's replicas.
#[derive(Debug, Clone)]
pub struct Anywhere {
    uris: Vec<String>,
    next: usize,
}

impl Anywhere {
    /// Over the replicas at `uris` (`http://host:port`).
    pub fn new(uris: Vec<String>) -> Anywhere {
        Anywhere { uris, next: 0 }
    }

    async fn channel(&mut self) -> Result<Channel, tonic::Status> {
        let uri = self.uris[self.next % self.uris.len()].clone();
        self.next += 1;
        Endpoint::from_shared(uri)
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(3))
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))
    }

    async fn retry<T, F, Fut>(&mut self, op: F) -> Result<T, tonic::Status>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let until = tokio::time::Instant::now() + DEADLINE;
        loop {
            let answer = match self.channel().await {
                Ok(channel) => op(channel).await,
                Err(e) => Err(e),
            };
            match answer {
                Err(status) if passed_over(&status) && tokio::time::Instant::now() < until => {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                other => return other,
            }
        }
    }

    /// A control-plane call on the first replica that answers it.
    pub async fn admin<T, F, Fut>(&mut self, op: F) -> Result<T, tonic::Status>
    where
        F: Fn(AdminClient) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        self.retry(|channel| op(AdminClient::new(channel))).await
    }

    /// A data-plane call on the first replica that answers it.
    pub async fn data<T, F, Fut>(&mut self, op: F) -> Result<T, tonic::Status>
    where
        F: Fn(ProtectorClient) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        self.retry(|channel| op(ProtectorClient::new(channel))).await
    }

    /// SetStatus on any replica: `name` to `status` (OPEN for `open_for`).
    pub async fn set_status(
        &mut self,
        name: &str,
        status: v1::Status,
        open_for: Option<Duration>,
    ) -> Result<v1::SetStatusResponse, tonic::Status> {
        let request = v1::SetStatusRequest {
            name: name.into(),
            status: status as i32,
            open_for: open_for.map(crate::requests::duration),
        };
        self.admin(|mut admin| {
            let request = request.clone();
            async move { admin.set_status(request).await.map(tonic::Response::into_inner) }
        })
        .await
    }

    /// Creates `name` (every policy default) and opens it for `open_for`; returns the
    /// protector as acknowledged OPEN.
    pub async fn held_open(&mut self, name: &str, open_for: Duration) -> v1::Protector {
        self.ensure(name).await.expect("EnsureProtector");
        self.set_status(name, v1::Status::Open, Some(open_for))
            .await
            .expect("SetStatus OPEN")
            .protector
            .expect("protector")
    }

    /// EnsureProtector on any replica, with every policy default.
    pub async fn ensure(&mut self, name: &str) -> Result<v1::EnsureProtectorResponse, tonic::Status> {
        let request = v1::EnsureProtectorRequest {
            name: name.into(),
            policy: None,
        };
        self.data(|mut data| {
            let request = request.clone();
            async move {
                data.ensure_protector(request)
                    .await
                    .map(tonic::Response::into_inner)
            }
        })
        .await
    }

    /// GetProtector on any replica.
    pub async fn get(&mut self, name: &str) -> Result<v1::GetProtectorResponse, tonic::Status> {
        let request = v1::GetProtectorRequest { name: name.into() };
        self.data(|mut data| {
            let request = request.clone();
            async move { data.get_protector(request).await.map(tonic::Response::into_inner) }
        })
        .await
    }

    /// Acquire on any replica.
    pub async fn acquire(&mut self, name: &str) -> Result<v1::AcquireResponse, tonic::Status> {
        let request = v1::AcquireRequest { name: name.into() };
        self.data(|mut data| {
            let request = request.clone();
            async move { data.acquire(request).await.map(tonic::Response::into_inner) }
        })
        .await
    }
}
