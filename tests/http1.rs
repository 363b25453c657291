//! HTTP/1.1 forwarding: headers, bodies (length, chunked + trailers, large), keep-alive pooling,
//! Expect: 100-continue, WebSocket upgrade, routing actions.

use std::time::Duration;

use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{self, upstream};

fn one_cluster(up: std::net::SocketAddr, extra_routes: &str) -> String {
    format!(
        r#"
listeners:
  - {{ name: web, address: "127.0.0.1:0", protocol: auto, routes: web }}
routes:
  web:
    - domains: ["*"]
      routes:
{extra_routes}
        - {{ match: {{ prefix: / }}, cluster: up }}
clusters:
  - {{ name: up, endpoints: ["{up}"] }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_with_proxy_headers_and_strips_hop_by_hop() {
    let up = upstream::http_echo("a").await;
    let app = support::start(&one_cluster(up.addr, ""));
    let addr = app.listener_addr("web").unwrap();
    let (status, headers, body) = support::request(
        addr,
        Method::POST,
        "example.com",
        "/p?q=1",
        &[
            ("connection", "x-secret"),
            ("x-secret", "s"),
            ("x-forwarded-for", "10.1.1.1"),
            ("x-kept", "k"),
        ],
        b"hello".to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, b"hello");
    let seen = headers["x-echo-headers"].to_str().unwrap().to_string();
    assert_eq!(headers["x-echo-path"], "/p?q=1");
    assert!(seen.contains("x-kept: k"), "{seen}");
    assert!(
        !seen.contains("x-secret"),
        "hop-by-hop named in Connection leaked: {seen}"
    );
    assert!(
        seen.contains("x-forwarded-for: 10.1.1.1, 127.0.0.1"),
        "{seen}"
    );
    assert!(seen.contains("x-forwarded-proto: http"), "{seen}");
    assert!(seen.contains("host: example.com"), "{seen}");
    let rid = seen
        .split('|')
        .find_map(|h| h.strip_prefix("x-request-id: "))
        .expect("x-request-id generated");
    assert_eq!(rid.len(), 36);
    // The upstream's hop-by-hop `keep-alive` response header is not passed on.
    assert!(headers.get("keep-alive").is_none());
    // A client-supplied request id is kept.
    let id = "0123abcd-0000-4000-8000-000000000000";
    let (_, headers, _) =
        support::request(addr, Method::GET, "h", "/", &[("x-request-id", id)], vec![]).await;
    assert!(headers["x-echo-headers"].to_str().unwrap().contains(id));
    app.shutdown();
}

async fn roundtrip_body(size: usize) {
    let up = upstream::http_echo("a").await;
    let app = support::start(&one_cluster(up.addr, ""));
    let addr = app.listener_addr("web").unwrap();
    let payload = upstream::bytes(size, 3);
    let (status, _, body) =
        support::request(addr, Method::PUT, "h", "/big", &[], payload.to_vec()).await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), size);
    assert!(body == payload, "body differs after the round trip");
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mebibyte_body_both_ways() {
    roundtrip_body(1 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mebibyte_body_both_ways() {
    roundtrip_body(64 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_with_trailers_pass_through_both_ways() {
    // A raw upstream: checks the exact chunked request (trailer included) and answers chunked
    // with a trailer of its own.
    let up = upstream::raw_server(|mut s: TcpStream| async move {
        let req = upstream::read_until(&mut s, b"0\r\nx-req-trailer: yes\r\n\r\n").await;
        let text = String::from_utf8_lossy(&req).to_string();
        let ok = text.contains("transfer-encoding: chunked") && text.contains("5\r\nhello\r\n6\r\n world\r\n");
        let body = if ok { "4\r\ngood\r\n" } else { "3\r\nbad\r\n" };
        let resp = format!(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-resp-trailer\r\n\r\n{body}0\r\nx-resp-trailer: done\r\n\r\n"
        );
        s.write_all(resp.as_bytes()).await.unwrap();
        let _ = upstream::read_until(&mut s, b"never").await;
    })
    .await;
    let app = support::start(&one_cluster(up.addr, ""));
    let mut c = TcpStream::connect(app.listener_addr("web").unwrap())
        .await
        .unwrap();
    c.write_all(b"POST /c HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await; // split across reads on purpose
    c.write_all(b"6\r\n world\r\n0\r\nx-req-trailer: yes\r\n\r\n")
        .await
        .unwrap();
    let resp = upstream::read_until(&mut c, b"x-resp-trailer: done\r\n\r\n").await;
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("4\r\ngood\r\n0\r\nx-resp-trailer: done\r\n\r\n"),
        "{text}"
    );
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused() {
    let up = upstream::http_echo("a").await;
    let app = support::start(&one_cluster(up.addr, ""));
    let addr = app.listener_addr("web").unwrap();
    // Twenty requests on separate client connections, one after another: one upstream connection.
    for i in 0..20 {
        let (status, body) = support::get(addr, "h", &format!("/r{i}")).await;
        assert_eq!((status, body.as_str()), (200, ""));
    }
    assert_eq!(
        up.accepts(),
        1,
        "upstream keep-alive connection was not reused"
    );
    // Pipelined requests on one client connection are answered in order.
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /one HTTP/1.1\r\nhost: h\r\n\r\nGET /two HTTP/1.1\r\nhost: h\r\n\r\n")
        .await
        .unwrap();
    // Both responses may arrive in one read: collect until the second is complete, then check
    // the order (each has an empty body, so it ends with its head).
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let text = loop {
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(i) = text.find("x-echo-path: /two")
            && text[i..].contains("\r\n\r\n")
        {
            break text;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut tmp))
            .await
            .expect("responses in time")
            .unwrap();
        assert!(n > 0, "closed early: {text}");
        buf.extend_from_slice(&tmp[..n]);
    };
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    let (one, two) = (
        text.find("x-echo-path: /one").unwrap(),
        text.find("x-echo-path: /two").unwrap(),
    );
    assert!(one < two, "answered out of order: {text}");
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_relayed() {
    let up = upstream::http_echo("a").await;
    let app = support::start(&one_cluster(up.addr, ""));
    let mut c = TcpStream::connect(app.listener_addr("web").unwrap())
        .await
        .unwrap();
    c.write_all(b"PUT /e HTTP/1.1\r\nhost: h\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    // The client holds the body back until it sees the interim response.
    let interim = tokio::time::timeout(
        Duration::from_secs(5),
        upstream::read_until(&mut c, b"\r\n\r\n"),
    )
    .await
    .unwrap();
    assert!(
        interim.starts_with(b"HTTP/1.1 100 Continue\r\n"),
        "{:?}",
        String::from_utf8_lossy(&interim)
    );
    c.write_all(b"data").await.unwrap();
    let (status, _, body) = support::read_response(&mut c).await;
    assert_eq!((status, body.as_slice()), (200, &b"data"[..]));
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_tunnelled() {
    let up = upstream::raw_server(|mut s: TcpStream| async move {
        let req = upstream::read_until(&mut s, b"\r\n\r\n").await;
        let text = String::from_utf8_lossy(&req).to_lowercase();
        assert!(text.contains("upgrade: websocket") && text.contains("connection: upgrade"), "{text}");
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 1024];
        loop {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).await.unwrap();
        }
    })
    .await;
    let app = support::start(&one_cluster(up.addr, ""));
    let mut c = TcpStream::connect(app.listener_addr("web").unwrap())
        .await
        .unwrap();
    c.write_all(b"GET /ws HTTP/1.1\r\nhost: h\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: x\r\n\r\n").await.unwrap();
    let head = upstream::read_until(&mut c, b"\r\n\r\n").await;
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    for msg in [&b"frame-1"[..], b"frame-two"] {
        c.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(got, msg);
    }
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_actions() {
    let a = upstream::http_echo("a").await;
    let b = upstream::http_echo("b").await;
    let yaml = format!(
        r#"
listeners:
  - {{ name: web, address: "127.0.0.1:0", routes: web }}
routes:
  web:
    - domains: ["api.example.com"]
      routes:
        - {{ match: {{ prefix: /v1/, headers: {{ x-canary: "1" }} }}, cluster: b }}
        - {{ match: {{ prefix: /v1/ }}, prefix_rewrite: /internal/, cluster: a,
            request_headers: {{ add: {{ x-added: yes }}, remove: [x-drop] }},
            response_headers: {{ add: {{ x-resp: r }}, remove: [x-upstream] }} }}
        - {{ match: {{ path: /old }}, redirect: {{ path: /new, status: 301 }} }}
        - {{ match: {{ regex: "/split/[0-9]+" }}, weighted: [ {{ cluster: a, weight: 0 }}, {{ cluster: b, weight: 100 }} ] }}
        - {{ match: {{ path: /teapot, methods: [POST] }}, direct_response: {{ status: 418, body: "short and stout" }} }}
    - domains: ["*.example.com"]
      routes:
        - {{ match: {{ prefix: / }}, cluster: b }}
clusters:
  - {{ name: a, endpoints: ["{}"] }}
  - {{ name: b, endpoints: ["{}"] }}
"#,
        a.addr, b.addr
    );
    let app = support::start(&yaml);
    let addr = app.listener_addr("web").unwrap();
    let host = "api.example.com";

    let (s, h, _) = support::request(
        addr,
        Method::GET,
        host,
        "/v1/x?y=1",
        &[("x-drop", "1")],
        vec![],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(h["x-echo-path"], "/internal/x?y=1", "prefix rewrite");
    let seen = h["x-echo-headers"].to_str().unwrap();
    assert!(
        seen.contains("x-added: yes") && !seen.contains("x-drop"),
        "{seen}"
    );
    assert_eq!(h["x-resp"], "r");
    assert!(h.get("x-upstream").is_none(), "response header removal");

    let (_, h, _) = support::request(
        addr,
        Method::GET,
        host,
        "/v1/x",
        &[("x-canary", "1")],
        vec![],
    )
    .await;
    assert_eq!(h["x-upstream"], "b", "header match routes the canary");

    let (s, h, _) = support::request(addr, Method::GET, host, "/old?k=v", &[], vec![]).await;
    assert_eq!(s, 301);
    assert_eq!(h["location"], "http://api.example.com/new?k=v");

    for _ in 0..5 {
        let (_, h, _) = support::request(addr, Method::GET, host, "/split/42", &[], vec![]).await;
        assert_eq!(h["x-upstream"], "b", "weight 0 never chosen");
    }
    let (s, _, body) = support::request(addr, Method::POST, host, "/teapot", &[], vec![]).await;
    assert_eq!((s, body.as_slice()), (418, &b"short and stout"[..]));
    let (s, _, _) = support::request(addr, Method::GET, host, "/teapot", &[], vec![]).await;
    assert_eq!(s, 404, "method did not match and nothing else does");

    let (_, h, _) =
        support::request(addr, Method::GET, "www.example.com:8080", "/", &[], vec![]).await;
    assert_eq!(h["x-upstream"], "b", "suffix domain with port");
    let (s, _, _) = support::request(addr, Method::GET, "other.org", "/", &[], vec![]).await;
    assert_eq!(s, 404, "no virtual host");
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_across_endpoints() {
    let a = upstream::http_echo("a").await;
    let b = upstream::http_echo("b").await;
    let yaml = format!(
        r#"
listeners:
  - {{ name: web, address: "127.0.0.1:0", routes: web }}
routes:
  web:
    - domains: ["*"]
      routes:
        - {{ cluster: ab }}
clusters:
  - {{ name: ab, lb: round_robin, endpoints: ["{}", "{}"] }}
"#,
        a.addr, b.addr
    );
    let app = support::start(&yaml);
    let addr = app.listener_addr("web").unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (_, h, _) = support::request(addr, Method::GET, "h", "/", &[], vec![]).await;
        seen.push(h["x-upstream"].to_str().unwrap().to_string());
    }
    assert_eq!(seen.iter().filter(|s| *s == "a").count(), 2, "{seen:?}");
    assert_eq!(seen.iter().filter(|s| *s == "b").count(), 2, "{seen:?}");
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_writes_json_lines() {
    let up = upstream::http_echo("a").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let yaml = format!(
        "access_log: {{ path: \"{}\" }}\n{}",
        log.display(),
        one_cluster(up.addr, "")
    );
    let app = support::start(&yaml);
    let (status, _) = support::get(app.listener_addr("web").unwrap(), "h", "/logged").await;
    assert_eq!(status, 200);
    let mut text = String::new();
    for _ in 0..50 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if !text.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let line: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("a log line")).unwrap();
    assert_eq!(line["listener"], "web");
    assert_eq!(line["path"], "/logged");
    assert_eq!(line["status"], 200);
    assert_eq!(line["cluster"], "up");
    assert_eq!(line["endpoint"], up.addr.to_string());
    assert_eq!(line["request_id"].as_str().unwrap().len(), 36);
    // hyper's request head, no body; the response is head + empty body.
    let received = line["bytes_received"].as_u64().unwrap();
    assert!((20..200).contains(&received), "bytes_received {received}");
    let sent = line["bytes_sent"].as_u64().unwrap();
    assert!(sent > 100, "bytes_sent {sent}");
    assert!(line["duration_ms"].as_f64().unwrap() > 0.0);
    app.shutdown();
}
