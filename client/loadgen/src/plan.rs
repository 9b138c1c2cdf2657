//! One run: connect, prepare the protectors, open the streams, then measure.
//!
//! Everything that costs time before the first decision (connecting, EnsureProtector,
//! opening streams) happens before the window opens, so a short run measures only
//! decisions. Transitions are counted from the daemon itself: the sum of the protectors'
//! generations (each transition adds one) when the window opens and when it closes, in
//! runs that report failures (without them nothing can leave CLOSED).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use resilient_circuit_api::v1;
use resilient_circuit_api::v1::admin_service_client::AdminServiceClient;
use resilient_circuit_api::v1::protector_service_client::ProtectorServiceClient;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::ClientTlsConfig;

use crate::args::{Args, Mode};
use crate::baseline::EchoServer;
use crate::daemon::{Credentials, Transport, connect_with, within};
use crate::echo::echo_service_client::EchoServiceClient;
use crate::echo::{EchoRequest, EchoResponse};
use crate::error::Error;
use crate::library;
use crate::pipeline::{self, EchoStream, Session};
use crate::tally::{self, Tally, Window, Workload};
use crate::unary::{self, Target};

/// Setup calls in flight at once while preparing many protectors.
const SETUP_CONCURRENCY: usize = 32;

/// What one run measured.
#[derive(Debug)]
pub struct Measured {
    /// The decisions completed in the window.
    pub tally: Tally,
    /// The window's length.
    pub duration: Duration,
    /// Transitions the daemon made in the window (none for the echo baseline).
    pub transitions: Option<u64>,
    /// Counters of the client library (cached and library modes) and the timer's floor.
    pub extra: Vec<(&'static str, u64)>,
}

/// The extra figure that is the clock's own cost, not a count.
const TIMER_FLOOR: &str = "timer_floor_p50_ns";

impl Measured {
    /// `other`, a later slice of the same shape, added to this one: decisions, latencies,
    /// the window's length, transitions and the library's counters sum; of the timer's
    /// floor, the lower reading stays.
    pub fn add(&mut self, other: Measured) {
        self.tally.merge(&other.tally);
        self.duration += other.duration;
        self.transitions = match (self.transitions, other.transitions) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        for (key, value) in other.extra {
            match self.extra.iter_mut().find(|(k, _)| *k == key) {
                Some((_, mine)) if key == TIMER_FLOOR => *mine = (*mine).min(value),
                Some((_, mine)) => *mine += value,
                None => self.extra.push((key, value)),
            }
        }
    }

    /// Decisions per second of the window.
    pub fn rate(&self) -> f64 {
        self.tally.decisions() as f64 / self.duration.as_secs_f64()
    }
}

/// The settings every run of one invocation shares.
#[derive(Debug)]
pub struct Plan {
    workload: Workload,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    timeout: Duration,
    policy: v1::Policy,
    /// TLS to the daemon (never to the echo baseline, which serves plaintext).
    pub(crate) tls: Option<ClientTlsConfig>,
    /// The token sent to the daemon (never to the echo baseline).
    pub(crate) credentials: Credentials,
}

/// Which server a stream goes to.
#[derive(Debug, Clone, Copy)]
enum Server {
    /// circuitd.
    Daemon,
    /// The echo baseline.
    Echo,
}

/// A stream opened on one connection, with the workers it carries.
enum Opened {
    Session(
        mpsc::Sender<v1::SessionRequest>,
        tonic::Streaming<v1::SessionResponse>,
    ),
    Echo(mpsc::Sender<EchoRequest>, tonic::Streaming<EchoResponse>),
}

impl Plan {
    /// The plan for `args`.
    pub fn new(args: &Args, timeout: Duration) -> Plan {
        let concurrency = args.concurrency as usize;
        let fraction = |numerator, denominator| {
            Some(v1::Fraction {
                numerator,
                denominator,
            })
        };
        let mut policy = if args.trip {
            v1::Policy {
                cooldown: Some(prost_types::Duration::default()),
                failure_limit: fraction(1, 1),
                success_limit: fraction(1, 1),
                trial_permits: Some(1),
                ..v1::Policy::default()
            }
        } else {
            v1::Policy {
                cooldown: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
                failure_limit: fraction(1000, 1000),
                ..v1::Policy::default()
            }
        };
        policy.history_size = args.history_size;
        if args.rules {
            let seconds = |seconds| Some(prost_types::Duration { seconds, nanos: 0 });
            policy.window_duration = seconds(60);
            policy.slow_call_duration = seconds(1);
            policy.slow_call_limit = fraction(1, 2);
            policy.consecutive_failures = 100;
        }
        Plan {
            workload: Workload {
                names: (0..args.protectors).map(|i| format!("bench-{i}")).collect(),
                concurrency,
                failure_rate: args.failure_rate,
                seed: args.seed,
                acquire_only: args.acquire_only,
                report_duration: args.report_duration.map(resilient_circuit_api::convert::duration),
            },
            connections: (args.connections.unwrap_or(1) as usize).min(concurrency),
            warmup: args.warmup,
            // One slice of `--rounds` (the whole window without it).
            duration: args.duration / args.rounds.max(1),
            timeout,
            policy,
            tls: None,
            credentials: Credentials::default(),
        }
    }

    /// Connections actually used.
    pub fn connections(&self) -> usize {
        self.connections
    }

    /// The echo baseline in the shape of `mode`, on a server of its own.
    pub async fn against_echo(&self, mode: Mode) -> Result<Measured, Error> {
        let server = EchoServer::start()?;
        let uri = server.uri();
        let result = async {
            let channels = self.connect(&uri, None, &Credentials::default()).await?;
            // The library's default transport is one Session stream.
            let tally = if matches!(mode, Mode::Session | Mode::Library) {
                let opened = self.open_streams(&uri, &channels, Server::Echo).await?;
                self.pipelined(opened).await
            } else {
                let targets: Vec<Target> = channels
                    .iter()
                    .map(|c| Target::Echo(EchoServiceClient::new(c.clone())))
                    .collect();
                unary::run(&targets, &self.workload, self.window()).await
            };
            Ok::<_, Error>(tally)
        }
        .await;
        server.stop().await?;
        Ok(Measured {
            tally: result?,
            duration: self.duration,
            transitions: None,
            extra: Vec::new(),
        })
    }

    /// The daemon at `addr`, in unary, session, cached or library mode.
    pub async fn against_daemon(&self, mode: Mode, addr: &str) -> Result<Measured, Error> {
        let channels = self.connect(addr, self.tls.as_ref(), &self.credentials).await?;
        self.ensure(addr, &channels[0]).await?;
        let library = if matches!(mode, Mode::Cached | Mode::Library) {
            let cached = mode == Mode::Cached;
            Some(library::prepare(addr, &self.workload, &self.policy, self.timeout, cached).await?)
        } else {
            None
        };
        let opened = if mode == Mode::Session {
            self.open_streams(addr, &channels, Server::Daemon).await?
        } else {
            Vec::new()
        };
        let window = self.window();
        // Only reported failures can move a protector from the CLOSED it starts in, so a
        // run without them skips the count: listing every protector (100,000 of them at
        // scale) would load the daemon during the window it measures.
        let counting = self.workload.failure_rate > 0.0 && !self.workload.acquire_only;
        let before = counting.then(|| {
            let channel = channels[0].clone();
            let names = self.workload.names.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(window.warm_end.into()).await;
                generations(channel, &names).await
            })
        });
        let tally = if let Some((_, protectors)) = &library {
            library::run(protectors, &self.workload, window).await
        } else if mode == Mode::Session {
            self.pipelined_in(opened, window).await
        } else {
            let targets: Vec<Target> = channels
                .iter()
                .map(|c| Target::Daemon(ProtectorServiceClient::new(c.clone())))
                .collect();
            unary::run(&targets, &self.workload, window).await
        };
        let transitions = match before {
            None => None,
            Some(before) => {
                let after = generations(channels[0].clone(), &self.workload.names).await;
                let before = before
                    .await
                    .map_err(|e| Error::other(format!("counting generations failed: {e}")))?;
                match (before, after) {
                    (Ok(before), Ok(after)) => Some(after.saturating_sub(before)),
                    (Err(status), _) | (_, Err(status)) => {
                        return Err(Error::from_status(addr, status));
                    }
                }
            }
        };
        let extra = match library {
            Some((client, _)) => {
                let stats = client.stats();
                vec![
                    ("batched_accepted", stats.batched_accepted),
                    ("batched_stale", stats.batched_stale),
                    ("batched_lost", stats.batched_lost),
                    ("fallback_decisions", stats.fallback_decisions),
                    (TIMER_FLOOR, tally::timer_floor_ns()),
                ]
            }
            None => Vec::new(),
        };
        Ok(Measured {
            tally,
            duration: self.duration,
            transitions,
            extra,
        })
    }

    fn window(&self) -> Window {
        Window::starting_now(self.warmup, self.duration, self.timeout)
    }

    async fn connect(
        &self,
        addr: &str,
        tls: Option<&ClientTlsConfig>,
        credentials: &Credentials,
    ) -> Result<Vec<Transport>, Error> {
        let mut channels = Vec::with_capacity(self.connections);
        for _ in 0..self.connections {
            let channel = connect_with(addr, self.timeout, tls).await?;
            channels.push(InterceptedService::new(channel, credentials.clone()));
        }
        Ok(channels)
    }

    /// One stream on each of `channels` to `addr`: Session streams of the daemon, or
    /// EchoStreams of the baseline.
    async fn open_streams(
        &self,
        addr: &str,
        channels: &[Transport],
        to: Server,
    ) -> Result<Vec<Opened>, Error> {
        let depth = self.workload.concurrency;
        let mut opened = Vec::with_capacity(channels.len());
        for channel in channels {
            opened.push(match to {
                Server::Daemon => {
                    let (tx, rx) = mpsc::channel(depth);
                    let mut client = ProtectorServiceClient::new(channel.clone());
                    let call = client.session(ReceiverStream::new(rx));
                    Opened::Session(tx, self.call(addr, call).await?)
                }
                Server::Echo => {
                    let (tx, rx) = mpsc::channel(depth);
                    let mut client = EchoServiceClient::new(channel.clone());
                    let call = client.echo_stream(ReceiverStream::new(rx));
                    Opened::Echo(tx, self.call(addr, call).await?)
                }
            });
        }
        Ok(opened)
    }

    /// Awaits a setup call for at most `--timeout`.
    async fn call<T>(
        &self,
        addr: &str,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, Error> {
        within(addr, self.timeout, call).await?.ok_or_else(|| {
            Error::Status(tonic::Status::deadline_exceeded(format!(
                "no answer from {addr} within {:?}",
                self.timeout
            )))
        })
    }

    /// Creates the protectors, or brings existing ones to the bench policy and CLOSED, so
    /// a run never starts from what an earlier run left behind.
    async fn ensure(&self, addr: &str, channel: &Transport) -> Result<(), Error> {
        let names = self.workload.names.iter().cloned();
        futures_util::stream::iter(names)
            .map(|name| self.ensure_one(addr, channel, name))
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect::<()>()
            .await
    }

    async fn ensure_one(&self, addr: &str, channel: &Transport, name: String) -> Result<(), Error> {
        let req = v1::EnsureProtectorRequest {
            name: name.clone(),
            policy: Some(self.policy),
        };
        let mut client = ProtectorServiceClient::new(channel.clone());
        let ensured = self.call(addr, client.ensure_protector(req)).await?;
        let mut admin = AdminServiceClient::new(channel.clone());
        if !ensured.policy_matches {
            let req = v1::UpdatePolicyRequest {
                name: name.clone(),
                policy: Some(self.policy),
            };
            self.call(addr, admin.update_policy(req)).await?;
        }
        let status = ensured.protector.map(|p| p.status);
        if status != Some(v1::Status::Closed as i32) {
            let req = v1::SetStatusRequest {
                name,
                status: v1::Status::Closed as i32,
                open_for: None,
            };
            self.call(addr, admin.set_status(req)).await?;
        }
        Ok(())
    }

    async fn pipelined(&self, opened: Vec<Opened>) -> Tally {
        self.pipelined_in(opened, self.window()).await
    }

    /// Spreads the workers over the opened streams and drives them all in `window`.
    async fn pipelined_in(&self, opened: Vec<Opened>, window: Window) -> Tally {
        let streams = opened.len().max(1);
        let mut drivers = JoinSet::new();
        let mut first = 0;
        for (i, stream) in opened.into_iter().enumerate() {
            let slots =
                self.workload.concurrency / streams + usize::from(i < self.workload.concurrency % streams);
            let workload = self.workload.clone();
            match stream {
                Opened::Session(tx, rx) => {
                    drivers.spawn(pipeline::drive::<Session>(tx, rx, workload, first, slots, window))
                }
                Opened::Echo(tx, rx) => drivers.spawn(pipeline::drive::<EchoStream>(
                    tx, rx, workload, first, slots, window,
                )),
            };
            first += slots;
        }
        Tally::gather(drivers, &window, "a stream driver").await
    }
}

/// The sum of the generations of the protectors called `names`.
async fn generations(channel: Transport, names: &Arc<[String]>) -> Result<u64, tonic::Status> {
    let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
    let mut client = ProtectorServiceClient::new(channel);
    let mut sum = 0u64;
    let mut page_token = String::new();
    loop {
        let req = v1::ListProtectorsRequest {
            prefix: "bench-".to_owned(),
            page_size: 1000,
            page_token,
        };
        let page = client.list_protectors(req).await?.into_inner();
        sum += page
            .protectors
            .iter()
            .filter(|p| wanted.contains(p.name.as_str()))
            .map(|p| p.generation)
            .sum::<u64>();
        if page.next_page_token.is_empty() {
            return Ok(sum);
        }
        page_token = page.next_page_token;
    }
}
