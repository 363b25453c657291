//! Every error a client can get, each with a readable reason: 400, 404, 408, 413, 431, 502, 503, 504.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{self, upstream};

fn config(up: std::net::SocketAddr, dead: std::net::SocketAddr) -> String {
    format!(
        r#"
limits: {{ max_request_head_bytes: 2048, max_request_body_bytes: 1000 }}
timeouts: {{ header_read: 500ms }}
listeners:
  - {{ name: web, address: "127.0.0.1:0", routes: web }}
routes:
  web:
    - domains: ["*"]
      routes:
        - {{ match: {{ prefix: /dead }}, cluster: dead }}
        - {{ match: {{ prefix: /empty }}, cluster: empty }}
        - {{ match: {{ prefix: /delay }}, cluster: up, timeout: 300ms }}
        - {{ match: {{ prefix: /ok }}, cluster: up }}
clusters:
  - {{ name: up, endpoints: ["{up}"] }}
  - {{ name: dead, endpoints: ["{dead}"] }}
  - {{ name: empty, endpoints: [] }}
"#
    )
}

async fn status_of(reply: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(reply).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_statuses() {
    let up = upstream::http_echo("a").await;
    let app = support::start(&config(up.addr, support::closed_port()));
    let addr = app.listener_addr("web").unwrap();
    let t = Duration::from_secs(5);
    let big_header = format!(
        "GET /ok HTTP/1.1\r\nhost: h\r\nx-big: {}\r\n\r\n",
        "a".repeat(4000)
    );
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("garbage", b"GARBAGE\r\n\r\n".to_vec(), 400, "malformed"),
        ("bad header", b"GET /ok HTTP/1.1\r\nho st: h\r\n\r\n".to_vec(), 400, "malformed"),
        ("no host", b"GET /ok HTTP/1.1\r\n\r\n".to_vec(), 400, "host"),
        ("smuggling", b"POST /ok HTTP/1.1\r\nhost: h\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n".to_vec(), 400, "transfer-encoding"),
        ("bad length", b"POST /ok HTTP/1.1\r\nhost: h\r\ncontent-length: abc\r\n\r\n".to_vec(), 400, "content-length"),
        ("head too large", big_header.into_bytes(), 431, "too large"),
        ("body too large", b"POST /ok HTTP/1.1\r\nhost: h\r\ncontent-length: 5000\r\n\r\n".to_vec(), 413, "too large"),
        ("no route", b"GET /nowhere HTTP/1.1\r\nhost: h\r\n\r\n".to_vec(), 404, "no route"),
        ("connect refused", b"GET /dead HTTP/1.1\r\nhost: h\r\n\r\n".to_vec(), 502, "connect"),
        ("no endpoints", b"GET /empty HTTP/1.1\r\nhost: h\r\n\r\n".to_vec(), 503, "no healthy"),
        ("timeout", b"GET /delay/2000 HTTP/1.1\r\nhost: h\r\n\r\n".to_vec(), 504, "timeout"),
        ("connect method", b"CONNECT h:443 HTTP/1.1\r\nhost: h:443\r\n\r\n".to_vec(), 405, "CONNECT"),
    ];
    for (name, req, want, reason) in cases {
        let reply = support::raw_exchange(addr, &req, t).await;
        let (status, body) = status_of(&reply).await;
        assert_eq!(status, want, "{name}: {}", String::from_utf8_lossy(&reply));
        assert!(
            body.contains(reason),
            "{name}: body {body:?} should say {reason:?}"
        );
    }
    // The proxy still serves after all that.
    assert_eq!(support::get(addr, "h", "/ok").await.0, 200);
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_over_limit_is_refused() {
    let up = upstream::http_echo("a").await;
    let app = support::start(&config(up.addr, support::closed_port()));
    let addr = app.listener_addr("web").unwrap();
    let mut req = b"POST /ok HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        req.extend_from_slice(b"200\r\n");
        req.extend_from_slice(&[b'x'; 0x200]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let reply = support::raw_exchange(addr, &req, Duration::from_secs(5)).await;
    let (status, _) = status_of(&reply).await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&reply));
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_is_closed_after_header_read_timeout() {
    let up = upstream::http_echo("a").await;
    let app = support::start(&config(up.addr, support::closed_port()));
    let mut c = TcpStream::connect(app.listener_addr("web").unwrap())
        .await
        .unwrap();
    c.write_all(b"GET /ok HTTP/1.1\r\nhost: h\r\n")
        .await
        .unwrap(); // never finishes the head
    let started = std::time::Instant::now();
    let reply = upstream::read_until(&mut c, b"never-arrives").await; // returns at EOF
    let elapsed = started.elapsed();
    let (status, _) = status_of(&reply).await;
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&reply));
    assert!(elapsed < Duration::from_secs(4), "closed after {elapsed:?}");
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_reset_mid_response_is_502_before_head() {
    // Accepts, reads the head, then closes without answering.
    let rude = upstream::raw_server(|mut s: TcpStream| async move {
        let _ = upstream::read_until(&mut s, b"\r\n\r\n").await;
        drop(s);
    })
    .await;
    let yaml = format!(
        r#"
listeners:
  - {{ name: web, address: "127.0.0.1:0", routes: web }}
routes:
  web:
    - domains: ["*"]
      routes:
        - {{ cluster: rude }}
clusters:
  - {{ name: rude, endpoints: ["{}"] }}
"#,
        rude.addr
    );
    let app = support::start(&yaml);
    let (status, body) = support::get(app.listener_addr("web").unwrap(), "h", "/").await;
    assert_eq!(status, 502);
    assert!(body.contains("reset"), "{body}");
    app.shutdown();
}

fn limited(up: std::net::SocketAddr) -> String {
    format!(
        r#"
listeners:
  - {{ name: web, address: "127.0.0.1:0", routes: web,
      limits: {{ max_connections_per_worker: 1 }}, timeouts: {{ keepalive_idle: 300ms }} }}
routes:
  web:
    - domains: ["*"]
      routes:
        - {{ cluster: up }}
clusters:
  - {{ name: up, endpoints: ["{up}"] }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed_and_idle_keepalive_ends() {
    use tokio::io::AsyncReadExt;
    let up = upstream::http_echo("a").await;
    let app = support::start(&limited(up.addr));
    let addr = app.listener_addr("web").unwrap();
    let mut first = TcpStream::connect(addr).await.unwrap();
    first
        .write_all(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(support::read_response(&mut first).await.0, 200);

    // A second connection while the first is open: closed without an answer.
    let mut second = TcpStream::connect(addr).await.unwrap();
    let _ = second.write_all(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n").await;
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), second.read_to_end(&mut buf)).await;
    assert!(
        r.is_ok() && buf.is_empty(),
        "over-limit connection got {:?}",
        String::from_utf8_lossy(&buf)
    );

    // The first connection, left idle, is closed after keepalive_idle (300ms)...
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(5), first.read_to_end(&mut buf)).await;
    assert!(
        r.is_ok() && buf.is_empty(),
        "idle keep-alive connection not closed"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "closed too early: {:?}",
        started.elapsed()
    );
    // ...which frees the slot for a new connection.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(support::get(addr, "h", "/").await.0, 200);
    app.shutdown();
}
