//! circuitd: the daemon that holds every named circuit protector for a fleet.
//!
//! Many processes ask it whether a call may go ahead (Acquire), tell it how the call went
//! (Report) and stream every change (Watch). The status machine itself is the pure
//! `resilient_circuit_breaker`; this crate gives it a home, a clock, a revision and
//! a network face.
//!
//! Layout (dependencies point one way: `service -> registry -> breaker`,
//! `service -> watch`, `registry -> watch`, `registry -> store`):
//! - [`config`]: every setting, its default, and the TOML file.
//! - [`error`]: the daemon's error type and its one mapping to `tonic::Status`.
//! - [`validate`]: requests into typed values, or INVALID_ARGUMENT naming the field.
//! - [`clock`]: tokio's (pausable) clock anchored to the wall clock.
//! - [`connections`]: the cap on open client connections.
//! - [`registry`]: the map of protectors; runs the machine and publishes changes
//!   (`registry/persist.rs`: what it journals, the batch flush, snapshots, recovery).
//! - [`store`]: the fsync'd journal, snapshots and recovery of the data directory.
//! - [`watch`]: the revision, the bounded history and the watch streams.
//! - [`scheduler`]: one task that applies expiries at their instants.
//! - [`service`]: the thin gRPC layer (unary calls, `service/session.rs` for Session and
//!   ReportBatch, `service/admin.rs` for the control plane and its audit log).
//! - [`server`]: [`prepare`] (recover) and [`serve`], which wire it all to a listener and
//!   shut it down.

pub mod clock;
pub mod config;
pub mod connections;
pub mod error;
pub mod registry;
pub mod scheduler;
pub mod server;
pub mod service;
pub mod store;
pub mod validate;
pub mod watch;

pub use config::Config;
pub use server::{Prepared, ServeError, prepare, serve};
