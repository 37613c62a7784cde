//! Compiles `crier/v1/*.proto` with the protoc shipped by `protoc-bin-vendored`, so a fresh machine needs no
//! system protoc.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "crier/v1/access.proto",
    "crier/v1/access_service.proto",
    "crier/v1/admin.proto",
    "crier/v1/admin_service.proto",
    "crier/v1/publish.proto",
    "crier/v1/publish_service.proto",
    "crier/v1/stream_entry.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    // Payloads stay `bytes::Bytes` from the gRPC decoder to the socket write.
    config.bytes(["."]);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("crier_descriptor.bin"))
        .compile_with_config(config, PROTOS, &["."])?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
