//! Compiles the echo baseline `proto/resilient_circuit/bench/v1/echo.proto` with
//! tonic-prost-build fed by protox (pure Rust, no system `protoc`). It lives here, not in
//! the wire crate, so the contract's descriptor set (and circuitd's reflection) never
//! lists it.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let echo = PathBuf::from("proto/resilient_circuit/bench/v1/echo.proto");
    println!("cargo:rerun-if-changed={}", echo.display());
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(protox::compile([&echo], ["proto"])?)?;
    Ok(())
}
