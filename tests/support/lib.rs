//! The one daemon harness of the workspace: a real `circuitd` on `127.0.0.1:0` (in this
//! process, or the real binary as a child process) and real gRPC clients, with the
//! request helpers the tests share.
//!
//! The package `resilient-circuit-tests` exposes it as the library `support`. The
//! end-to-end tests of this package, the Rust client's tests, circuitctl's tests and the
//! client's examples all start their daemons with it. It depends on the daemon and the
//! wire crate only, never on the client library (`resilient-circuit` dev-depends on it,
//! and a crate must not dev-depend on its own dependents).
//!
//! Layout:
//! - [`daemon`]: [`Daemon`] in this process (stop, restart on the same port), and
//!   [`BlockingDaemon`] on a runtime of its own for synchronous tests;
//! - [`process`]: the real binary as a child process (SIGKILL, SIGTERM, its stderr);
//! - [`in_role`]: a replica in this process in a role the test sets (leader, follower of
//!   an address, without a leader), no etcd, recording the calls it receives;
//! - [`requests`]: one helper per request the tests make (ensure, acquire, report,
//!   get, set_status, ...) and the wire values they carry;
//! - [`watcher`]: Watch streams read with a deadline;
//! - [`fixtures`]: the shared deadline, the raw client types, the real binary and
//!   temporary directories;
//! - [`etcd`]: a real etcd (one member or three) on free loopback ports, its members
//!   killed, frozen and restarted, and its keys read and written;
//! - [`anywhere`]: requests to whichever replica of a cluster answers;
//! - [`replicas`]: replicated `circuitd` processes on one etcd, their roles through
//!   GetCluster, one replica killed, frozen or restarted;
//! - [`tokens`]: tokens files for `--tokens`, and an interceptor that sends a token.

pub mod anywhere;
pub mod daemon;
pub mod etcd;
mod etcd_kv;
pub mod fixtures;
pub mod http;
pub mod in_role;
pub mod process;
pub mod replicas;
pub mod requests;
pub mod tokens;
pub mod watcher;

/// The daemon library, for suites that configure one (`circuitd::Config`) without a
/// dependency of their own on it.
pub use anywhere::Anywhere;
pub use circuitd;
pub use daemon::{BlockingDaemon, Daemon};
pub use etcd::{Etcd, EtcdCluster};
/// The etcd client, for tests that read or write etcd themselves.
pub use etcd_client;
pub use fixtures::*;
pub use replicas::{Replicas, unique_prefix};
pub use requests::*;
pub use tokens::{tokens_file, with_token};
pub use watcher::*;
