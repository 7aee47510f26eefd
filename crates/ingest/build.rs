//! Compiles `proto/` with a vendored `protoc`: the build needs nothing but Rust.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;
    env::set_var("PROTOC", protoc);
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let proto = root.join("hookrelay/ingest/v1/ingest.proto");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // A malformed message is INVALID_ARGUMENT (see src/codec.rs).
        .codec_path("crate::codec::StrictCodec")
        .file_descriptor_set_path(out.join("ingest_descriptor.bin"))
        .compile_protos(&[proto.as_path()], &[root.as_path(), include.as_path()])?;
    println!("cargo:rerun-if-changed={}", proto.display());
    Ok(())
}
