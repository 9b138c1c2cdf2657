//! The resilient-circuit load generator.
//!
//! Layout: [`echo`] the generated benchmark baseline (package
//! `resilient_circuit.bench.v1`): an echo service that the load generator serves itself,
//! never circuitd, so a figure can be read as a ratio to what the transport alone manages.

/// The benchmark baseline (package `resilient_circuit.bench.v1`).
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic,
    rustdoc::all
)]
pub mod echo {
    tonic::include_proto!("resilient_circuit.bench.v1");
}
