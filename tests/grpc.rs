//! gRPC through Shoal: a tonic server as the upstream and a tonic client, for unary, client
//! streaming, server streaming (10,000 messages) and bidi calls; status codes and binary metadata
//! pass unchanged; Shoal's own failures come back as gRPC statuses (DEADLINE_EXCEEDED, UNAVAILABLE,
//! UNIMPLEMENTED).

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio_stream::{Stream, StreamExt};
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::support::{self, h2up};

pub mod pb {
    tonic::include_proto!("shoal.test.echo");
}

use pb::echo_client::EchoClient;
use pb::echo_server::{Echo, EchoServer};
use pb::{EchoReply, EchoRequest};

struct Svc;

type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for Svc {
    async fn unary(&self, req: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let bin = req.metadata().get_bin("x-in-bin").cloned();
        let timeout = req.metadata().get("grpc-timeout").cloned();
        let m = req.into_inner();
        if m.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(m.delay_ms.into())).await;
        }
        if m.fail_code != 0 {
            let mut meta = tonic::metadata::MetadataMap::new();
            meta.insert_bin("x-err-bin", MetadataValue::from_bytes(&[0, 1, 2, 255]));
            return Err(Status::with_metadata(
                Code::from_i32(m.fail_code),
                format!("failed: {}", m.message),
                meta,
            ));
        }
        let mut resp = Response::new(EchoReply {
            message: m.message,
            index: 0,
        });
        if let Some(b) = bin {
            resp.metadata_mut().insert_bin("x-out-bin", b);
        }
        if let Some(t) = timeout {
            resp.metadata_mut().insert("x-seen-timeout", t);
        }
        Ok(resp)
    }

    async fn client_stream(
        &self,
        req: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoReply>, Status> {
        let mut s = req.into_inner();
        let mut n = 0;
        let mut all = String::new();
        while let Some(m) = s.next().await {
            let m = m?;
            n += 1;
            all.push_str(&m.message);
        }
        Ok(Response::new(EchoReply {
            message: all,
            index: n,
        }))
    }

    type ServerStreamStream = ReplyStream;

    async fn server_stream(
        &self,
        req: Request<EchoRequest>,
    ) -> Result<Response<ReplyStream>, Status> {
        let m = req.into_inner();
        let delay = Duration::from_millis(m.delay_ms.into());
        let s = async_stream(m.count, m.message, delay);
        Ok(Response::new(Box::pin(s)))
    }

    type BidiStream = ReplyStream;

    async fn bidi(
        &self,
        req: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<ReplyStream>, Status> {
        let s = req.into_inner().map(|m| {
            m.map(|m| EchoReply {
                message: format!("re:{}", m.message),
                index: m.count,
            })
        });
        Ok(Response::new(Box::pin(s)))
    }
}

/// `count` replies, `delay` apart.
fn async_stream(
    count: u32,
    message: String,
    delay: Duration,
) -> impl Stream<Item = Result<EchoReply, Status>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        for i in 0..count {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let r = EchoReply {
                message: message.clone(),
                index: i,
            };
            if tx.send(Ok(r)).await.is_err() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

pub async fn grpc_upstream() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(EchoServer::new(Svc))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l))
            .await
            .unwrap();
    });
    addr
}

fn config(up: SocketAddr, route_extra: &str, listener_extra: &str) -> String {
    format!(
        r#"
listeners:
  - {{ name: web, address: "127.0.0.1:0", protocol: auto, routes: web{listener_extra} }}
routes:
  web:
    - domains: ["*"]
      routes:
        - {{ match: {{ grpc: {{ service: shoal.test.echo.Echo }} }}, cluster: grpc{route_extra} }}
clusters:
  - {{ name: grpc, protocol: auto, endpoints: ["{up}"] }}
"#
    )
}

async fn client(addr: SocketAddr) -> EchoClient<tonic::transport::Channel> {
    EchoClient::connect(format!("http://{addr}"))
        .await
        .expect("connect through shoal")
}

fn req(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_kind_passes_through() {
    let up = grpc_upstream().await;
    let app = support::start(&config(up, "", ""));
    let mut c = client(app.listener_addr("web").unwrap()).await;

    // Unary.
    let r = c.unary(req("hello")).await.unwrap().into_inner();
    assert_eq!(r.message, "hello");

    // Client streaming: 1,000 messages in, one out.
    let msgs: Vec<EchoRequest> = (0..1000).map(|i| req(&format!("{}", i % 10))).collect();
    let expected: String = msgs.iter().map(|m| m.message.as_str()).collect();
    let r = c
        .client_stream(tokio_stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.index, 1000);
    assert_eq!(r.message, expected);

    // Server streaming: 10,000 messages, in order.
    let mut s = c
        .server_stream(EchoRequest {
            message: "m".into(),
            count: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(m) = s.next().await {
        let m = m.unwrap();
        assert_eq!(m.index, n);
        n += 1;
    }
    assert_eq!(n, 10_000);

    // Bidi: each message answered while the request stream is still open.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut replies = c
        .bidi(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for i in 0..100u32 {
        tx.send(EchoRequest {
            message: format!("b{i}"),
            count: i,
            ..Default::default()
        })
        .await
        .unwrap();
        let r = replies.next().await.unwrap().unwrap();
        assert_eq!(r.message, format!("re:b{i}"));
        assert_eq!(r.index, i);
    }
    drop(tx);
    assert!(
        replies.next().await.is_none(),
        "bidi ends after the client half-closes"
    );
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_codes_and_binary_metadata_arrive_unchanged() {
    let up = grpc_upstream().await;
    let app = support::start(&config(up, "", ""));
    let mut c = client(app.listener_addr("web").unwrap()).await;
    let mut r = Request::new(req("x"));
    let blob: &[u8] = &[0, 0xff, 0x10, b'\n', 0x80];
    r.metadata_mut()
        .insert_bin("x-in-bin", MetadataValue::from_bytes(blob));
    let resp = c.unary(r).await.unwrap();
    let out = resp.metadata().get_bin("x-out-bin").expect("binary header");
    assert_eq!(out.to_bytes().unwrap().as_ref(), blob);

    for code in [
        Code::NotFound,
        Code::PermissionDenied,
        Code::Internal,
        Code::Aborted,
    ] {
        let err = c
            .unary(EchoRequest {
                message: "why".into(),
                fail_code: code as i32,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), code);
        assert_eq!(err.message(), "failed: why");
        let meta = err.metadata().get_bin("x-err-bin").expect("binary trailer");
        assert_eq!(meta.to_bytes().unwrap().as_ref(), &[0, 1, 2, 255]);
    }
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_end_in_deadline_exceeded() {
    let up = grpc_upstream().await;
    // The listener's default request timeout is short, but streams are not cut by it.
    let app = support::start(&config(up, "", ", timeouts: { request: 300ms }"));
    let mut c = client(app.listener_addr("web").unwrap()).await;

    // A server stream lasting longer than timeouts.request is not cut (no grpc-timeout).
    let mut s = c
        .server_stream(EchoRequest {
            count: 8,
            delay_ms: 100,
            ..req("s")
        })
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(m) = s.next().await {
        m.unwrap();
        n += 1;
    }
    assert_eq!(n, 8);
    app.shutdown();

    // A route timeout is a deadline Shoal enforces itself (the upstream is not told of it when
    // the client set none), and caps a longer grpc-timeout.
    let app = support::start(&config(up, ", timeout: 300ms", ""));
    let mut c = client(app.listener_addr("web").unwrap()).await;
    let t = Instant::now();
    let err = c
        .unary(EchoRequest {
            delay_ms: 3000,
            ..req("slow")
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert_eq!(err.message(), "upstream timed out");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let resp = c.unary(req("no deadline")).await.unwrap();
    assert!(
        resp.metadata().get("x-seen-timeout").is_none(),
        "a route timeout alone is not announced upstream"
    );
    let mut r = Request::new(req("fast"));
    r.set_timeout(Duration::from_secs(30));
    let resp = c.unary(r).await.unwrap();
    let seen = resp
        .metadata()
        .get("x-seen-timeout")
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(seen, "300m", "upstream sees the capped deadline");
    app.shutdown();
}

/// `grpc-timeout` is the call's deadline: Shoal ends the call with DEADLINE_EXCEEDED itself. The
/// upstream here is the plain h2 test server (it ignores grpc-timeout), and the client is a raw h2
/// client (a tonic client would enforce its own timeout and race Shoal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_timeout_header_is_the_deadline() {
    let up = h2up::h2_echo().await;
    let yaml = format!(
        r#"
listeners:
  - {{ name: web, address: "127.0.0.1:0", protocol: auto, routes: web, timeouts: {{ request: 150ms }} }}
routes:
  web:
    - domains: ["*"]
      routes: [{{ match: {{ prefix: / }}, cluster: up }}]
clusters:
  - {{ name: up, protocol: http2, endpoints: ["{}"] }}
"#,
        up.addr
    );
    let app = support::start(&yaml);
    let addr = app.listener_addr("web").unwrap();
    let mut c = h2up::client(addr).await.ready().await.unwrap();
    let grpc = [
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("grpc-timeout", "200m"),
    ];
    let t = Instant::now();
    let (resp, _) = c
        .send_request(h2up::request("a.test", "/delay/3000", &grpc), true)
        .unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200, "gRPC failures are HTTP 200");
    assert_eq!(resp.headers()["grpc-status"], "4", "{:?}", resp.headers());
    assert_eq!(resp.headers()["grpc-message"], "upstream timed out");
    assert!(resp.body().is_end_stream(), "trailers-only");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // The upstream connection dies in the middle of a call: the call ends with UNAVAILABLE in
    // trailers after the headers already sent.
    let (resp, _) = c
        .send_request(h2up::request("a.test", "/die-mid", &grpc[..2]), true)
        .unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let data = h2up::read_body(&mut body).await.unwrap();
    assert_eq!(data.len(), 1024);
    let trailers = body.trailers().await.unwrap().expect("status trailers");
    assert_eq!(trailers["grpc-status"], "14", "{trailers:?}");
    // The upstream saw the deadline.
    let (resp, _) = c
        .send_request(h2up::request("a.test", "/echo", &grpc), true)
        .unwrap();
    let resp = resp.await.unwrap();
    let seen = resp.headers()["x-echo-headers"].to_str().unwrap();
    assert!(seen.contains("grpc-timeout: 200m"), "{seen}");
    // Without grpc-timeout (and no route timeout) a gRPC call is not cut by the listener's
    // request timeout (150ms here), which does apply to other requests.
    let (resp, _) = c
        .send_request(h2up::request("a.test", "/delay/400", &grpc[..2]), true)
        .unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("grpc-status").is_none(),
        "{:?}",
        resp.headers()
    );
    let (resp, _) = c
        .send_request(h2up::request("a.test", "/delay/400", &[]), true)
        .unwrap();
    assert_eq!(resp.await.unwrap().status(), 504);
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_limit_is_resource_exhausted() {
    let up = grpc_upstream().await;
    let app = support::start(&config(
        up,
        "",
        ", limits: { max_request_body_bytes: 2048 }",
    ));
    let mut c = client(app.listener_addr("web").unwrap()).await;
    // Small calls pass.
    assert_eq!(
        c.unary(req("small")).await.unwrap().into_inner().message,
        "small"
    );
    let big = "x".repeat(100);
    let msgs: Vec<EchoRequest> = (0..100).map(|_| req(&big)).collect();
    let err = c.client_stream(tokio_stream::iter(msgs)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    app.shutdown();
}

/// A hung upstream (connection open, nothing answered) is found by the cluster's h2 keepalive:
/// a call with no deadline ends UNAVAILABLE instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_upstream_is_closed_by_keepalive() {
    let zombie = h2up::h2_zombie().await;
    let yaml = format!(
        r#"
listeners:
  - {{ name: web, address: "127.0.0.1:0", protocol: auto, routes: web }}
routes:
  web:
    - domains: ["*"]
      routes: [{{ match: {{ prefix: / }}, cluster: up }}]
clusters:
  - name: up
    protocol: http2
    endpoints: ["{}"]
    http2: {{ keepalive_interval: 200ms, keepalive_timeout: 200ms }}
"#,
        zombie.addr
    );
    let app = support::start(&yaml);
    let mut c = h2up::client(app.listener_addr("web").unwrap())
        .await
        .ready()
        .await
        .unwrap();
    let t = Instant::now();
    let (resp, _) = c
        .send_request(
            h2up::request(
                "a.test",
                "/pkg.S/M",
                &[("content-type", "application/grpc")],
            ),
            true,
        )
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), resp)
        .await
        .expect("the call ends")
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["grpc-status"], "14", "{:?}", resp.headers());
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_unavailable() {
    let app = support::start(&config(support::closed_port(), "", ""));
    let mut c = client(app.listener_addr("web").unwrap()).await;
    let err = c.unary(req("x")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let err = c
        .server_stream(req("x"))
        .await
        .expect_err("server stream fails");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_service_is_unimplemented() {
    let up = grpc_upstream().await;
    let yaml = format!(
        r#"
listeners:
  - {{ name: web, address: "127.0.0.1:0", protocol: auto, routes: web }}
routes:
  web:
    - domains: ["*"]
      routes:
        - {{ match: {{ grpc: {{ service: other.Service }} }}, cluster: grpc }}
        - {{ match: {{ grpc: {{ service: shoal.test.echo.Echo, method: Unary }} }}, cluster: grpc }}
clusters:
  - {{ name: grpc, protocol: http2, endpoints: ["{up}"] }}
"#
    );
    let app = support::start(&yaml);
    let mut c = client(app.listener_addr("web").unwrap()).await;
    assert_eq!(c.unary(req("ok")).await.unwrap().into_inner().message, "ok");
    let err = c
        .client_stream(tokio_stream::iter(vec![req("a")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
    assert_eq!(err.message(), "no route");
    app.shutdown();
}

#[test]
fn grpc_example_config_is_valid() {
    let spec = shoal_dataplane::config::ConfigSpec::from_yaml(include_str!(
        "../deploy/grpc-example/shoal.yaml"
    ))
    .expect("parses");
    shoal_dataplane::snapshot::compile(&spec, None).expect("compiles");
}
