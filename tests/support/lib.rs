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
//! - [`replica`]: a replica in a chosen role (leader, follower of an address, without a
//!   leader) from the daemon's public pieces, recording the calls it receives;
//! - [`requests`]: one helper per request the tests make (ensure, acquire, report,
//!   get, set_status, ...) and the wire values they carry;
//! - [`watcher`]: Watch streams read with a deadline;
//! - [`fixtures`]: the shared deadline, the raw client types, the real binary and
//!   temporary directories.

pub mod daemon;
pub mod fixtures;
pub mod process;
pub mod replica;
pub mod requests;
pub mod watcher;

/// The daemon library, for suites that configure one (`circuitd::Config`) without a
/// dependency of their own on it.
pub use circuitd;
pub use daemon::{BlockingDaemon, Daemon};
pub use fixtures::*;
pub use requests::*;
pub use watcher::*;
