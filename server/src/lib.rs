//! circuitd: the daemon that holds every named circuit protector for a fleet.
//!
//! Many processes ask it whether a call may go ahead (Acquire), tell it how the call went
//! (Report) and stream every change (Watch). The status machine itself is the pure
//! `resilient_circuit_breaker`; this crate gives it a home, a clock, a revision and
//! a network face.
//!
//! Layout. Dependencies point one way and no module imports one that imports it back:
//! `service -> registry -> {sequencer, watch, scheduler, store}`, `watch -> sequencer ->
//! store`, `service -> validate -> error -> {store, watch}`, `scheduler -> clock`,
//! `service -> auth -> connections` (the identity a call carries), `service -> limits ->
//! auth`, `{auth, connections} -> subject`, `service -> cluster
//! -> {registry, fence}`, `registry -> fence`, `replica -> {cluster, registry,
//! sequencer, store}`, `connections -> tls -> config`, `http -> {metrics, cluster, auth,
//! connections, service}` (the dashboard calls the gRPC services in process), `metrics ->
//! {registry, auth, latency}`, `store -> latency`;
//! [`server`] wires them all; [`store`] imports no other module of the crate but the
//! leaf [`latency`], and [`config`] only the store's fault seam (`store::faults`, which
//! tests hand in).
//! - [`auth`]: bearer tokens, certificate roles and identities (`--tokens`): the layer
//!   every call passes, the one table of the role each RPC needs, the tokens file, the
//!   cache of recently found tokens, the rate-limited refusal log.
//! - [`subject`]: a client certificate's subject, and how a `[[certificate]]` table
//!   matches it.
//! - [`limits`]: Watch and Session streams open per identity (the protectors an identity
//!   created are counted by the registry, `registry/creators.rs`).
//! - [`cluster`]: this replica's role and the registry it serves now (swapped when the
//!   role changes).
//! - [`config`]: every setting, its default, and the TOML file.
//! - [`fence`]: a replicated leader's right to decide, bounded by its lease.
//! - [`error`]: the daemon's error types, their one mapping to `tonic::Status`, and every
//!   conversion between errors.
//! - [`validate`]: requests into typed values (a name into a `ProtectorName`), or
//!   INVALID_ARGUMENT naming the field.
//! - [`clock`]: tokio's (pausable) clock anchored to the wall clock.
//! - [`connections`]: the cap on open client connections, the handshake and idle
//!   timeouts that free the places of silent peers, and TCP keepalive
//!   (`connections/streams.rs`: the layer that counts each connection's calls;
//!   `connections/threads.rs`: the connection threads, each serving its connections
//!   to their end).
//! - [`registry`]: the map of protectors, and what services call: runs the machine,
//!   commits its changes, answers with the revision, opens Watch streams
//!   (`registry/admin.rs`: creation, the operator's changes, deletion;
//!   `registry/persist.rs`: what it journals, the batch flush, snapshots, recovery;
//!   `registry/read.rs`: reads, pages and watches; `registry/answers.rs`: its answers;
//!   `registry/batch.rs`: ReportBatch in bounded chunks; `registry/release.rs`: the
//!   trial permits of calls dropped before their answer).
//! - [`sequencer`]: the daemon-wide revision, the bounded history, and delivery of
//!   changes in revision order once their journal record is durable.
//! - [`watch`]: the Watch streams: snapshot, ordered changes, resync.
//! - [`store`]: the fsync'd journal, snapshots and recovery of the data directory, and
//!   the fault seam its tests use.
//! - [`scheduler`]: the queue of deadlines and the task that applies expiries at their
//!   instants.
//! - `replica` (feature `etcd`): replicated mode: the election, the leader's etcd log
//!   (`replica/sink.rs`), a follower's replay (`replica/follow.rs`), the replica's life
//!   (`replica/lead.rs`), its keys (`replica/keys.rs`).
//! - [`tls`]: TLS and mTLS for both listeners, terminated in the accept path, and the
//!   rustls configuration a SIGHUP swaps.
//! - [`service`]: the thin gRPC layer (unary calls, `service/session.rs` for Session and
//!   ReportBatch, `service/admin.rs` for the control plane and its audit log,
//!   `service/forward.rs` for what a follower hands to its leader).
//! - [`latency`]: a lock-free latency histogram (RPCs, journal commits).
//! - [`metrics`]: what `/metrics` shows: the RPC latency layer, and the scrape that
//!   reads the registry (`registry/stats.rs`) and encodes it with `prometheus-client`.
//! - [`http`]: the HTTP listener (`--http-listen`): `/metrics`, the dashboard, `/healthz`,
//!   behind the same TLS and tokens as gRPC.
//! - `fuzzing` (hidden): the entry points of the fuzz targets in `fuzz/`, over
//!   `service`, `registry`, `store` and `auth`; nothing imports it.
//! - [`reload`]: SIGHUP applies the `[[protectors]]` of `--config` again (the leader's
//!   alone in a cluster).
//! - [`server`]: [`prepare`] (recover, or join the cluster; load tokens and TLS; the one
//!   SIGHUP task) and [`serve`], which wire it all to its listeners and shut it down, on
//!   request or when the journal fails.

pub mod auth;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod connections;
pub mod error;
pub mod fence;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod latency;
pub mod limits;
pub mod metrics;
pub mod registry;
pub mod reload;
#[cfg(feature = "etcd")]
pub mod replica;
pub mod scheduler;
pub mod sequencer;
pub mod server;
pub mod service;
pub mod store;
pub mod subject;
pub mod tls;
pub mod validate;
pub mod watch;

pub use config::Config;
pub use server::{Prepared, ServeError, prepare, serve};
