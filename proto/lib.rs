//! The resilient-circuit wire crate: the v1 gRPC contract and its conversions.
//!
//! Every process that talks to `circuitd` links this crate: the daemon, the Rust client,
//! `circuitctl`, the load generator and the tests. It holds nothing but the contract:
//!
//! - [`v1`]: the code generated from `proto/resilient_circuit/v1/*.proto` (messages,
//!   clients and servers), quarantined here with its lint allowances, plus
//!   [`DESCRIPTOR_SET`] for server reflection.
//! - [`convert`]: conversions in both directions between the wire messages and the value
//!   types of the status machine (the `resilient-circuit-breaker` package), so a value
//!   means the same on either side of the wire.
//! - [`bearer`]: [`Bearer`], the `authorization: Bearer <token>` every client sends to a
//!   daemon started with `--tokens`.
//! - [`codec`]: the codec of every RPC (protobuf, with cheaper buffer handling for small
//!   messages, and a Session's common messages read and written by hand as prost would).
//! - [`name`]: [`ProtectorName`], a name checked against the contract's rule, so clients
//!   can refuse a bad name before sending it and the daemon checks it the same way.
//!
//! Layout: `proto/resilient_circuit/v1/` the contract (its rules in
//! `proto/SEMANTICS.md`), `proto/convert.rs` the conversions and `proto/convert_tests.rs`
//! their tests. The status machine is its own package in `proto/breaker/`.

pub mod bearer;
pub mod codec;
pub mod convert;
pub mod name;

pub use bearer::Bearer;

pub use name::{InvalidName, ProtectorName};

/// The generated v1 contract (package `resilient_circuit.v1`).
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic,
    rustdoc::all
)]
pub mod v1 {
    tonic::include_proto!("resilient_circuit.v1");
}

/// The encoded `FileDescriptorSet` of the v1 contract and everything it imports, for
/// server reflection.
pub const DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("resilient_circuit_descriptor");
