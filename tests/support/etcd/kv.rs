//! The etcd's keys as a test reads and writes them, and which member leads: requests
//! retried across an etcd leader's failure (see [`REQUEST_TIMEOUT`]).

use std::time::Duration;

use etcd_client::{Client, GetOptions};

use super::{Etcd, PROBE_TIMEOUT, options};
use crate::fixtures::{DEADLINE, eventually};

/// How long one request of the key helpers may take before it is sent again. etcd
/// forwards a proposal to the leader it knows; if that leader just died, the proposal
/// is lost and etcd answers only after its request timeout (5 s plus two election
/// timeouts, 7 s by default), although a new leader is elected within about a second.
/// Measured with the etcd leader killed: a put retried every 2 s succeeded after
/// 2.06 s, one retried every 0.5 s after 1.1 to 1.7 s.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

impl Etcd {
    /// A client of the live members; each request fails after [`DEADLINE`].
    pub async fn client(&self) -> Client {
        Client::connect(self.live_endpoints(), Some(options(DEADLINE)))
            .await
            .expect("connect to etcd")
    }

    /// A client of member `i` alone.
    pub async fn member_client(&self, i: usize) -> Client {
        Client::connect([self.endpoint(i)], Some(options(DEADLINE)))
            .await
            .expect("connect to the etcd member")
    }

    /// Runs `request` on a new client of `endpoints` until it succeeds, for at most
    /// [`DEADLINE`]: right after the etcd leader died, a request can be lost with it
    /// (see [`REQUEST_TIMEOUT`]) or refused until the next leader is elected, and
    /// etcd-client (unlike etcd's Go client) does not retry. Fails the test with the
    /// last error and the members' logs.
    async fn retry<T>(
        &self,
        endpoints: &[String],
        what: &str,
        mut request: impl AsyncFnMut(&mut Client) -> Result<T, etcd_client::Error>,
    ) -> T {
        eventually(
            async || {
                let mut client = Client::connect(endpoints, Some(options(REQUEST_TIMEOUT))).await?;
                request(&mut client).await
            },
            |error| format!("etcd {what}: {error}\n{}", self.logs()),
        )
        .await
    }

    /// The index of the member etcd's raft elected leader, once a live member reports
    /// itself leader (waits up to [`DEADLINE`] for an election).
    pub async fn leader(&self) -> usize {
        eventually(
            async || {
                for i in 0..self.members.len() {
                    if self.members[i].child.is_none() || self.members[i].frozen {
                        continue;
                    }
                    let status = async {
                        let mut client = Client::connect([self.endpoint(i)], Some(options(PROBE_TIMEOUT)))
                            .await
                            .ok()?;
                        client.status().await.ok()
                    };
                    if let Ok(Some(status)) = tokio::time::timeout(PROBE_TIMEOUT, status).await
                        && status.header().is_some_and(|h| h.member_id() == status.leader())
                    {
                        return Ok(i);
                    }
                }
                Err(())
            },
            |()| format!("no etcd member leads:\n{}", self.logs()),
        )
        .await
    }

    /// Writes `value` at `key` (through any live member).
    pub async fn put(&self, key: &str, value: impl Into<Vec<u8>>) {
        let value = value.into();
        self.retry(&self.live_endpoints(), &format!("put {key}"), async |c| {
            c.put(key, value.clone(), None).await.map(drop)
        })
        .await;
    }

    /// The value at `key`, if any (a linearizable read through any live member).
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.get_through(&self.live_endpoints(), key).await
    }

    /// The value at `key` read through member `i` (a linearizable read: it answers once
    /// it has caught up with the leader).
    pub async fn get_from(&self, i: usize, key: &str) -> Option<Vec<u8>> {
        self.get_through(&[self.endpoint(i)], key).await
    }

    async fn get_through(&self, endpoints: &[String], key: &str) -> Option<Vec<u8>> {
        let response = self
            .retry(endpoints, &format!("get {key}"), async |c| c.get(key, None).await)
            .await;
        response.kvs().first().map(|kv| kv.value().to_vec())
    }

    /// Every key under `prefix` with its value, in key order.
    pub async fn entries(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let response = self
            .retry(
                &self.live_endpoints(),
                &format!("get --prefix {prefix}"),
                async |c| c.get(prefix, Some(GetOptions::new().with_prefix())).await,
            )
            .await;
        response
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.value().to_vec(),
                )
            })
            .collect()
    }

    /// Every key under `prefix`, in order.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        self.entries(prefix)
            .await
            .into_iter()
            .map(|(key, _)| key)
            .collect()
    }
}
