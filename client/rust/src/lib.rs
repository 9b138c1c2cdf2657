//! resilient-circuit: the Rust client of `circuitd`, the daemon that holds the circuit
//! protectors of a whole fleet.
//!
//! A protector is a circuit breaker shared by every process that names it: the daemon
//! decides whether each call may go ahead (Acquire), learns how it went (Report) and
//! announces every status change (Watch), so failures seen by one process protect all
//! of them. A [`Client`] is one connection to the daemon (to any of its replicas, when
//! given several addresses); a [`Protector`] is the handle
//! that acquires, runs and reports a call. When the daemon is down or slow, each Acquire
//! still answers within its deadline (50 ms by default): the protector's declared
//! [`Fallback`] decides (ALLOW, DENY, or LOCAL, an in-process protector running the
//! daemon's own status machine), and the daemon takes over again once it is back.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use resilient_circuit::{CallError, Client, Fallback, PolicySpec, ProtectorPolicy};
//!
//! # async fn charge(order: u64) -> Result<String, std::io::Error> { Ok(format!("receipt {order}")) }
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // Cheap to clone; a daemon that is down does not fail this.
//!     let client = Client::connect("http://127.0.0.1:50051").await?;
//!
//!     // Open when 3 of the last 10 calls failed; let a trial through after 30 s.
//!     let policy = ProtectorPolicy::try_new(PolicySpec {
//!         cooldown: Duration::from_secs(30),
//!         failure_limit: (3, 10),
//!         ..PolicySpec::default()
//!     })?;
//!     let payments = client
//!         .protector_builder("payments")
//!         .policy(policy)
//!         .fallback(Fallback::Local)
//!         .build()
//!         .await?;
//!     payments.on_status_change(|c| eprintln!("{}: {:?} -> {:?}", c.name, c.from, c.to));
//!
//!     // One step: acquire, run, report (every Err counts as a failure).
//!     match payments.call(|| charge(42)).await {
//!         Ok(receipt) => println!("{receipt}"),
//!         Err(CallError::Rejected(r)) => println!("not called; retry after {:?}", r.retry_after),
//!         Err(e) => println!("failed: {e}"),
//!     }
//!
//!     // Two steps: acquire a permit, do the work, resolve the permit.
//!     if let Ok(permit) = payments.acquire().await {
//!         let worked = charge(43).await.is_ok();
//!         if worked { permit.success().await } else { permit.failure().await };
//!     }
//!     Ok(())
//! }
//! ```
//!
//! Layout. The core reads top to bottom, each module using only those below it:
//! - [`client`]: the facade: [`Client`], one cheap-to-clone connection to the daemon,
//!   its options ([`ClientBuilder`]) and counters ([`ClientStats`]).
//! - [`protector`]: [`Protector`], the handle that acquires, runs and reports a call, its
//!   [`ProtectorBuilder`], the two-step [`CallPermit`], its [`Fallback`] when the daemon
//!   is down or slow, and [`StatusChange`] notifications.
//! - `batches` (private): a cached protector's batched reports, and its flusher.
//! - `cached` (private): the local decisions of a cached protector (see
//!   [`ProtectorBuilder::cached`]) and the outcomes waiting for the next batch.
//! - `watcher` (private): the Watch task and the exactly-once notifier.
//! - `transport` (private): every RPC the client makes, to one replica of the daemon
//!   per address given ([`Client::builder_many`]), Acquire and Report on the
//!   [`Transport`] chosen (unary, or pipelined on one `Session` stream, the default).
//! - `link` (private): whether the daemon is worth asking now and which replica, with
//!   the reconnect backoff (the [`backoff::ExponentialDelay`] schedule, fully jittered).
//!
//! Beside the core: [`error`] ([`CallError`], [`Rejection`] and the client's own
//! [`Error`]); the library's other policies, [`backoff`], [`retry`] and [`safety_net`],
//! and the [`policy::Policy`] trait that composes them with protectors; `sync` (private),
//! the one lock helper.

pub mod backoff;
mod batches;
mod cached;
pub mod client;
pub mod error;
mod link;
pub mod policy;
pub mod protector;
pub mod retry;
pub mod safety_net;
mod stripe;
mod sync;
mod transport;
mod watcher;

pub use client::{Client, ClientBuilder, ClientStats, Transport};
pub use error::{CallError, Error, Rejection};
pub use protector::{
    Acquire, CallPermit, Decisions, Fallback, Protector, ProtectorBuilder, Resolve, Resolved, StatusChange,
};
pub use resilient_circuit_breaker::{DecisionReason, TransitionReason};
/// The optional rules of a policy (proto/SEMANTICS.md section 2a): build with
/// [`ProtectorPolicy::try_with`]`(spec, Rules { .. })`.
pub use resilient_circuit_breaker::{InvalidRules, Multiplier, PolicyError, Rules};
pub use resilient_circuit_breaker::{Outcome, Policy as ProtectorPolicy, PolicySpec, Status};
