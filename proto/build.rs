//! Compiles the `.proto` files with protox (pure Rust: no `protoc` needed) and generates the
//! prost messages and tonic client/server code from the resulting descriptor set. The encoded
//! descriptor set is also written to OUT_DIR for gRPC server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["shoal/admin/v1/admin.proto", "shoal/ca/v1/ca.proto"];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("shoal_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
