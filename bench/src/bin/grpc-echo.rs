//! `grpc-echo`: a fast gRPC unary echo upstream for `bench/run.sh grpc`.
//!
//! Answers `/echo.Echo/Echo` with the request message unchanged (any bytes: a passthrough
//! codec over [`Bytes`], no .proto or codegen), like the peer kit's python
//! `tools/grpc_echo.py`, but fast enough not to be the limit of the gRPC benchmark.
//! Other paths get gRPC status UNIMPLEMENTED.
//!
//! ```text
//! grpc-echo [--listen 127.0.0.1:18091] [--threads N]
//! ```
//!
//! Runtime: tokio multi-thread with N worker threads (default 0 = one per CPU; the kit lets
//! upstreams float over both cores of the bench box). h2c (prior knowledge) only, TCP_NODELAY
//! on, no limit on concurrent streams beyond h2's defaults. The listening socket is bound
//! without SO_REUSEPORT, so a second server (the kit's python one, which asks for
//! SO_REUSEPORT) cannot share the port. Exits on SIGTERM / SIGINT.

use std::net::SocketAddr;

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Context, Poll, Service, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

const USAGE: &str =
    "usage: grpc-echo [--listen ADDR] [--threads N]   (default 127.0.0.1:18091, N=0: one per CPU)";

/// Passthrough codec: a gRPC message is its raw bytes, both ways.
#[derive(Debug, Default, Clone, Copy)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The unary handler: the reply is the request message.
#[derive(Debug, Clone, Copy)]
struct EchoMethod;

impl UnaryService<Bytes> for EchoMethod {
    type Response = Bytes;
    type Future = BoxFuture<Response<Bytes>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        Box::pin(async move { Ok(Response::new(request.into_inner())) })
    }
}

/// The `echo.Echo` service, routed by path like tonic-build's generated servers.
#[derive(Debug, Clone, Copy)]
struct EchoServer;

impl NamedService for EchoServer {
    const NAME: &'static str = "echo.Echo";
}

impl<B> Service<http::Request<B>> for EchoServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() == "/echo.Echo/Echo" {
            Box::pin(async move { Ok(Grpc::new(RawCodec).unary(EchoMethod, req).await) })
        } else {
            let path = req.uri().path().to_owned();
            Box::pin(
                async move { Ok(Status::unimplemented(format!("no method {path}")).into_http()) },
            )
        }
    }
}

struct Args {
    listen: SocketAddr,
    threads: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 18091)),
        threads: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--listen" => {
                let v = value("--listen")?;
                args.listen = v.parse().map_err(|e| format!("--listen {v}: {e}"))?;
            }
            "--threads" => {
                let v = value("--threads")?;
                args.threads = v.parse().map_err(|e| format!("--threads {v}: {e}"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("grpc-echo: {e}");
            }
            eprintln!("{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        rt.worker_threads(args.threads);
    }
    let rt = rt.enable_all().build().expect("tokio runtime");
    let result = rt.block_on(async {
        eprintln!(
            "grpc-echo: listening on {} (h2c), /echo.Echo/Echo",
            args.listen
        );
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(EchoServer)
            .serve_with_shutdown(args.listen, shutdown_signal())
            .await
    });
    match result {
        Ok(()) => {
            eprintln!("grpc-echo: stopped");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "grpc-echo: {e}: {}",
                std::error::Error::source(&e).map_or(String::new(), |s| s.to_string())
            );
            std::process::ExitCode::FAILURE
        }
    }
}
