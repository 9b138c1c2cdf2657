//! Compiles `proto/resilient_circuit/v1/*.proto` into Rust with tonic-prost-build, fed
//! by protox (pure Rust), so no system `protoc` is needed. The encoded descriptor set,
//! imports included, is written to `OUT_DIR/resilient_circuit_descriptor.bin` for
//! server reflection.

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from("proto/resilient_circuit/v1");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed={}", dir.display());
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(&files)?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out.join("resilient_circuit_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        // `proto/codec.rs`: protobuf with cheaper buffer handling for small messages.
        .codec_path("crate::codec::FastCodec")
        // An answer's transition is rare (a status change) and large (72 bytes): boxed, it
        // leaves every other Session answer a third smaller to move and to copy.
        .boxed(".resilient_circuit.v1.AcquireResponse.transition")
        .boxed(".resilient_circuit.v1.ReportResponse.transition")
        .build_client(true)
        .build_server(true)
        .compile_fds(compiler.file_descriptor_set())?;

    Ok(())
}
