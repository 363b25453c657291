//! The two-hop mesh, in one process: client -> Shoal A (plaintext in, mTLS out with A's SVID)
//! -> Shoal B (mTLS in, allow list + authorization policy) -> upstream, for HTTP/1.1, h2, gRPC
//! and TCP. B holds the CA (local, in its state dir) and serves it; A obtains and renews its SVID
//! from it over gRPC. A second client proxy with another identity is refused by B's policy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use shoal::App;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::grpc::{grpc_upstream, pb};
use crate::support::{self, h2up, upstream};

pub const TD: &str = "spiffe://example.org/ns/default/sa";

/// Shoal B: the server side of the mesh, holding the CA.
fn server_b(state: &std::path::Path, echo: SocketAddr, grpc: SocketAddr, tcp: SocketAddr) -> App {
    support::start(&format!(
        r#"
state_dir: "{state}"
identity: {{ id: "{TD}/server-b" }}
admin: {{ grpc: "127.0.0.1:0", metrics: "127.0.0.1:0" }}
listeners:
  - name: mesh-in
    address: 127.0.0.1:0
    protocol: auto
    routes: backend
    tls: {{ mode: mutual, allow: ["{TD}/*"] }}
    policy: only-a
  - name: mesh-tcp
    address: 127.0.0.1:0
    protocol: tcp
    cluster: tcp-echo
    tls: {{ mode: mutual, allow: ["{TD}/*"] }}
    policy: only-a-tcp
policies:
  - name: only-a
    rules:
      - {{ action: deny, methods: [DELETE] }}
      - {{ action: allow, principals: ["{TD}/client-a"] }}
  - name: only-a-tcp
    rules:
      - {{ action: allow, principals: ["{TD}/client-a"] }}
routes:
  backend:
    - domains: ["*"]
      routes:
        - {{ match: {{ grpc: {{ service: shoal.test.echo.Echo }} }}, cluster: grpc }}
        - {{ match: {{ prefix: / }}, cluster: echo }}
clusters:
  - {{ name: echo, endpoints: ["{echo}"] }}
  - {{ name: grpc, protocol: http2, endpoints: ["{grpc}"] }}
  - {{ name: tcp-echo, endpoints: ["{tcp}"] }}
"#,
        state = state.display()
    ))
}

/// A client-side Shoal with identity `sa/<name>`, its SVID from B's CA, forwarding everything
/// to B over mTLS.
fn client_proxy(name: &str, b: &App, ttl: &str) -> App {
    let ca = b.admin_addr().unwrap();
    let mesh = b.listener_addr("mesh-in").unwrap();
    let mesh_tcp = b.listener_addr("mesh-tcp").unwrap();
    support::start(&format!(
        r#"
identity: {{ id: "{TD}/{name}", ttl: {ttl} }}
ca: {{ remote: "{ca}", bundle_refresh: 200ms }}
listeners:
  - {{ name: out, address: 127.0.0.1:0, protocol: auto, routes: out }}
  - {{ name: out-tcp, address: 127.0.0.1:0, protocol: tcp, cluster: b-tcp }}
routes:
  out:
    - domains: ["*"]
      routes:
        - {{ match: {{ grpc: {{ service: shoal.test.echo.Echo }} }}, cluster: b-h2 }}
        - {{ match: {{ prefix: /h2/ }}, cluster: b-h2 }}
        - {{ match: {{ prefix: /fresh/ }}, cluster: b-fresh }}
        - {{ match: {{ prefix: / }}, cluster: b }}
clusters:
  - {{ name: b, endpoints: ["{mesh}"], tls: {{ spiffe_id: "{TD}/server-b" }} }}
  - {{ name: b-fresh, endpoints: ["{mesh}"], tls: {{ spiffe_id: "{TD}/server-b" }}, pool: {{ max_idle_per_endpoint: 0 }} }}
  - {{ name: b-h2, protocol: http2, endpoints: ["{mesh}"], tls: {{ spiffe_id: "{TD}/server-b" }} }}
  - {{ name: b-tcp, endpoints: ["{mesh_tcp}"], tls: {{ spiffe_id: "{TD}/server-b" }} }}
"#
    ))
}

/// Waits until `app` holds an SVID.
pub async fn wait_svid(app: &App) {
    for _ in 0..200 {
        if app.svid().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no SVID after 5s");
}

struct Mesh {
    _state: tempfile::TempDir,
    b: App,
    a: App,
    intruder: App,
}

async fn mesh(ttl: &str) -> Mesh {
    let echo = upstream::http_echo("backend").await;
    let grpc = grpc_upstream().await;
    let tcp = upstream::tcp_echo().await;
    let state = tempfile::tempdir().unwrap();
    let b = server_b(state.path(), echo.addr, grpc, tcp.addr);
    wait_svid(&b).await;
    let a = client_proxy("client-a", &b, ttl);
    let intruder = client_proxy("intruder", &b, "1h");
    wait_svid(&a).await;
    wait_svid(&intruder).await;
    Mesh {
        _state: state,
        b,
        a,
        intruder,
    }
}

fn echoed_headers(h: &http::HeaderMap) -> Vec<String> {
    h.get("x-echo-headers")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string())
        .unwrap_or_default()
        .split('|')
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hop_mesh_http1_h2_grpc_tcp_with_identity_and_policy() {
    let m = mesh("1h").await;
    let a = m.a.listener_addr("out").unwrap();

    // HTTP/1.1: through both hops; B tells the upstream who called (and drops the client's
    // attempt to claim an identity).
    let (status, headers, body) = support::request(
        a,
        http::Method::POST,
        "svc",
        "/hello",
        &[(
            "x-forwarded-client-cert",
            "URI=spiffe://example.org/ns/x/sa/forged",
        )],
        b"ping".to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, b"ping");
    let seen = echoed_headers(&headers);
    let xfcc: Vec<&String> = seen
        .iter()
        .filter(|h| h.starts_with("x-forwarded-client-cert:"))
        .collect();
    assert_eq!(
        xfcc,
        [&format!(
            "x-forwarded-client-cert: By={TD}/server-b;URI={TD}/client-a"
        )],
        "{seen:?}"
    );
    // The client spoke plain HTTP to A; B keeps what the first hop said.
    assert!(
        seen.contains(&"x-forwarded-proto: http".to_string()),
        "{seen:?}"
    );

    // The policy: DELETE is denied for everyone, the intruder for everything.
    let (status, _, _) =
        support::request(a, http::Method::DELETE, "svc", "/x", &[], Vec::new()).await;
    assert_eq!(status, 403);
    let i = m.intruder.listener_addr("out").unwrap();
    let (status, _) = support::get(i, "svc", "/hello").await;
    assert_eq!(status, 403);

    // HTTP/2 client -> A -> h2 over mTLS -> B -> HTTP/1.1 upstream.
    let mut h2 = h2up::client(a).await;
    let (resp, _) = h2
        .send_request(h2up::request("svc", "/h2/x", &[]), true)
        .unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        echoed_headers(resp.headers()).contains(&format!(
            "x-forwarded-client-cert: By={TD}/server-b;URI={TD}/client-a"
        )),
        "{:?}",
        resp.headers()
    );

    // gRPC: unary works for A; the intruder gets PERMISSION_DENIED.
    let mut client = pb::echo_client::EchoClient::connect(format!("http://{a}"))
        .await
        .unwrap();
    let reply = client
        .unary(pb::EchoRequest {
            message: "hi".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(reply.get_ref().message, "hi");
    let mut bad = pb::echo_client::EchoClient::connect(format!("http://{i}"))
        .await
        .unwrap();
    let err = bad
        .unary(pb::EchoRequest {
            message: "hi".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // TCP over mTLS: echoed for A; the intruder's connection is closed by B.
    let mut s = tokio::net::TcpStream::connect(m.a.listener_addr("out-tcp").unwrap())
        .await
        .unwrap();
    s.write_all(b"over mtls").await.unwrap();
    let mut buf = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(&buf, b"over mtls");
    let mut s = tokio::net::TcpStream::connect(m.intruder.listener_addr("out-tcp").unwrap())
        .await
        .unwrap();
    let _ = s.write_all(b"let me in").await;
    let mut out = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("closed in time");
    assert!(n.is_err() || out.is_empty(), "intruder got {out:?}");

    // B's metrics: certificate expiry (its SVID, the bundle root, its CA) and the denials.
    let req = b"GET /metrics HTTP/1.1\r\nhost: m\r\n\r\n";
    let text = String::from_utf8(
        support::raw_exchange(m.b.metrics_addr().unwrap(), req, Duration::from_secs(5)).await,
    )
    .unwrap();
    let svid_line = text
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "shoal_certificate_expiry_seconds{{kind=\"svid\",id=\"{TD}/server-b\""
            ))
        })
        .unwrap_or_else(|| panic!("no SVID expiry in {text}"));
    let secs: i64 = svid_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((3000..=3600).contains(&secs), "{svid_line}");
    for kind in ["bundle_root", "ca_root", "ca_intermediate"] {
        assert!(
            text.contains(&format!(
                "shoal_certificate_expiry_seconds{{kind=\"{kind}\""
            )),
            "{kind} missing: {text}"
        );
    }
    let denials: u64 = text
        .lines()
        .filter(|l| l.starts_with("shoal_policy_denials_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(
        denials >= 4,
        "DELETE, intruder h1, gRPC and TCP were denied: {denials}"
    );
    drop(m.b);
}

/// Continuous traffic through A in two loops: one reuses A's pooled mTLS connections to B; the
/// other makes A open a new one (a full handshake with its current SVID) for every request.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    loops: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(a: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let loops = ["/load", "/fresh/load"]
            .into_iter()
            .map(|path| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let (status, _) = support::get(a, "svc", path).await;
                        if status == 200 {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failed.fetch_add(1, Ordering::Relaxed);
                            eprintln!("{path}: status {status}");
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failed,
            loops,
        }
    }

    /// Stops the loops; (succeeded, failed) requests.
    async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for l in self.loops {
            l.await.unwrap();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// A's SVID rotates (short TTL) while traffic flows over new and kept-alive connections: not one
/// request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svid_rotation_under_traffic_drops_nothing() {
    let m = mesh("4s").await;
    let a = m.a.listener_addr("out").unwrap();
    let first = m.a.svid().unwrap();
    let load = Load::start(a);
    // A's SVID is renewed (the CA backdates by a minute, so a 4s TTL is due within a second
    // or two): wait for three new serials, each then used by new handshakes.
    let mut serials = vec![first.serial().to_string()];
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = m.a.svid().unwrap().serial().to_string();
        if !serials.contains(&now) {
            serials.push(now);
        }
        if serials.len() > 3 {
            break;
        }
    }
    assert!(serials.len() > 3, "A's SVID was not renewed: {serials:?}");

    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed) = load.stop().await;
    assert!(ok > 50, "too little traffic: {ok}");
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
}

/// B's CA rotates its root (two-phase: the new root is published at once and issues only after
/// the activation delay) while A renews its SVID every second and opens a new mTLS connection
/// to B for every request: B trusts the new root before A presents a certificate from it, so
/// not one request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_rotation_under_traffic_drops_nothing() {
    use shoal_admin::proto::ca::v1 as ca_pb;
    let m = mesh("4s").await;
    let a = m.a.listener_addr("out").unwrap();
    let load = Load::start(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ca = ca_pb::ca_service_client::CaServiceClient::connect(format!(
        "http://{}",
        m.b.admin_addr().unwrap()
    ))
    .await
    .unwrap();
    // Longer than every proxy's bundle refresh (A: 200ms, B's local CA: 1s).
    let rotated = ca
        .rotate_root(ca_pb::RotateRootRequest {
            activation_delay: Some("3s".into()),
        })
        .await
        .unwrap()
        .into_inner();
    let new_root = shoal_ca::TrustBundle::from_pem(&rotated.root_pem).unwrap();
    let mut on_new_root = false;
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let svid = m.a.svid().unwrap();
        if new_root
            .verify_svid(&svid, shoal_ca::OffsetDateTime::now_utc())
            .is_ok()
        {
            on_new_root = true;
            break;
        }
    }
    assert!(
        on_new_root,
        "A never got an SVID from the new root {}",
        rotated.fingerprint
    );
    // Keep the traffic going on the new certificates for a while.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (ok, failed) = load.stop().await;
    assert!(ok > 50, "too little traffic: {ok}");
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
}
