//! The resilient-circuit wire crate: the v1 gRPC contract and the pure status machine.
//!
//! Every process that talks to `circuitd` links this crate: the daemon, the Rust client,
//! `circuitctl` and the tests. It holds two things that must never drift apart:
//!
//! - [`v1`]: the code generated from `proto/resilient_circuit/v1/*.proto` (messages,
//!   clients and servers), quarantined here with its lint allowances, plus
//!   [`DESCRIPTOR_SET`] for server reflection.
//! - [`breaker`]: the protector status machine, std only, with time passed in. The daemon
//!   runs it for the fleet; a client runs the very same code for its LOCAL fallback.
//! - [`convert`]: conversions between the wire messages and the [`breaker`] value types.
//!
//! Layout: `proto/resilient_circuit/v1/` the contract, `proto/breaker/` the status
//! machine and its tests, `proto/convert.rs` the conversions.

pub mod breaker;
pub mod convert;

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

/// The benchmark baseline (package `resilient_circuit.bench.v1`): an echo service that the
/// load generator serves itself, never circuitd.
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic,
    rustdoc::all
)]
pub mod bench {
    tonic::include_proto!("resilient_circuit.bench.v1");
}

/// The encoded `FileDescriptorSet` of the v1 contract and everything it imports, for
/// server reflection.
pub const DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("resilient_circuit_descriptor");
