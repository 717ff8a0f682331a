//! Compiles `owlet/v1/*.proto` with protox (pure Rust: no system `protoc`),
//! then generates prost types, tonic stubs and pbjson (proto3 JSON) impls.
use std::{env, path::PathBuf};

const PROTOS: &[&str] = &["owlet/v1/telemetry.proto", "owlet/v1/events.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let fds = protox::compile(PROTOS, ["."])?;
    let descriptor_path = out_dir.join("owlet_descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&fds))?;

    tonic_prost_build::configure()
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;

    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptor_path)?)?
        .extern_path(".google.protobuf", "::pbjson_types")
        .preserve_proto_field_names()
        .build(&[".owlet.v1"])?;
    Ok(())
}
