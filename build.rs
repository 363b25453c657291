//! Compiles the test protos (tests/proto) for the integration tests' tonic echo service.
//! protox parses the .proto files in Rust: no protoc needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=tests/proto/echo.proto");
    let fds = protox::compile(["tests/proto/echo.proto"], ["tests/proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
