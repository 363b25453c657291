//! HTTP/2 (h2c) through Shoal with real `h2` clients and upstreams: multiplexing, header rewriting,
//! trailers, flow control with a slow reader, RST_STREAM both ways, GOAWAY on drain.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::Reason;

use crate::support::{self, h2up};

fn config(up: std::net::SocketAddr, listener_protocol: &str, extra: &str) -> String {
    format!(
        r#"
drain_timeout: 5s
listeners:
  - {{ name: web, address: "127.0.0.1:0", protocol: {listener_protocol}, routes: web }}
routes:
  web:
    - domains: ["*"]
      routes:
        - {{ match: {{ prefix: /rw/ }}, prefix_rewrite: /, cluster: up }}
        - {{ match: {{ prefix: / }}, cluster: up, response_headers: {{ add: {{ x-via: shoal }} }} }}
clusters:
  - {{ name: up, protocol: http2, endpoints: ["{up}"] }}
{extra}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_streams_on_one_connection() {
    let up = h2up::h2_echo().await;
    let app = support::start(&config(up.addr, "auto", ""));
    let addr = app.listener_addr("web").unwrap();
    let client = h2up::client(addr).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let mut c = client.clone();
        tasks.push(tokio::spawn(async move {
            let req = h2up::request(
                "svc.test",
                &format!("/s/{i}?q=1"),
                &[("x-forwarded-for", "10.0.0.1"), ("te", "trailers")],
            );
            let c2 = c.clone();
            c = c2.ready().await.unwrap();
            let (resp, mut send) = c.send_request(req, false).unwrap();
            send.send_data(Bytes::from(format!("body-{i}")), false)
                .unwrap();
            let mut t = http::HeaderMap::new();
            t.insert("x-req-trailer", "t1".parse().unwrap());
            send.send_trailers(t).unwrap();
            let resp = resp.await.unwrap();
            assert_eq!(resp.status(), 200);
            let h = resp.headers().clone();
            let mut body = resp.into_body();
            let data = h2up::read_body(&mut body).await.unwrap();
            let trailers = body.trailers().await.unwrap().expect("trailers");
            (i, h, data, trailers)
        }));
    }
    for t in tasks {
        let (i, h, data, trailers) = t.await.unwrap();
        assert_eq!(data, format!("body-{i}").as_bytes());
        assert_eq!(h["x-echo-path"], format!("/s/{i}").as_str());
        assert_eq!(h["x-echo-authority"], "svc.test");
        assert_eq!(h["x-via"], "shoal");
        let seen = h["x-echo-headers"].to_str().unwrap();
        assert!(
            seen.contains("x-forwarded-for: 10.0.0.1, 127.0.0.1"),
            "{seen}"
        );
        assert!(seen.contains("x-forwarded-proto: http"), "{seen}");
        assert!(seen.contains("te: trailers"), "{seen}");
        let rid = seen
            .split('|')
            .find_map(|h| h.strip_prefix("x-request-id: "))
            .expect("x-request-id");
        assert_eq!(rid.len(), 36);
        assert_eq!(trailers["x-trailer"], "done");
        assert_eq!(
            trailers["x-got-x-req-trailer"], "t1",
            "request trailers forwarded"
        );
    }
    // 200 streams multiplexed: a handful of upstream connections, not one per request.
    let accepts = up.stats.accepts.load(Ordering::SeqCst);
    assert!(
        accepts <= 2,
        "{accepts} upstream connections for 200 streams"
    );
    assert_eq!(up.stats.streams.load(Ordering::SeqCst), 200);
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_only_listener_serves_h2_and_rewrites_prefix() {
    let up = h2up::h2_echo().await;
    let app = support::start(&config(up.addr, "http2", ""));
    let addr = app.listener_addr("web").unwrap();
    let client = h2up::client(addr).await;
    let mut c = client.ready().await.unwrap();
    let (resp, _) = c
        .send_request(
            http::Request::get("http://a.test/rw/x/y?z=1")
                .body(())
                .unwrap(),
            true,
        )
        .unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-echo-path"], "/x/y");
    // An HTTP/1.1 request to an http2-only listener is not served.
    let out = support::raw_exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(
        !out.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    app.shutdown();
}

/// h2 client -> Shoal -> HTTP/1.1 upstream: head mapping, bodies both ways (content-length and
/// chunked), trailers (chunked trailers become HTTP/2 trailers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_downstream_to_http1_upstream() {
    use tokio::io::AsyncWriteExt;
    let echo = support::upstream::http_echo("h1").await;
    // A raw HTTP/1.1 server answering chunked with trailers.
    let chunked = support::upstream::raw_server(|mut s| async move {
        let _ = support::upstream::read_until(&mut s, b"\r\n\r\n").await;
        let _ = s
            .write_all(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: x-hop\r\nx-hop: 1\r\nx-kept: 2\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nx-t: done\r\n\r\n",
            )
            .await;
    })
    .await;
    let yaml = format!(
        r#"
listeners:
  - {{ name: web, address: "127.0.0.1:0", protocol: auto, routes: web }}
routes:
  web:
    - domains: ["*"]
      routes:
        - {{ match: {{ prefix: /chunked }}, cluster: chunked }}
        - {{ match: {{ prefix: / }}, cluster: echo }}
clusters:
  - {{ name: echo, protocol: http1, endpoints: ["{}"] }}
  - {{ name: chunked, protocol: http1, endpoints: ["{}"] }}
"#,
        echo.addr, chunked.addr
    );
    let app = support::start(&yaml);
    let addr = app.listener_addr("web").unwrap();
    let client = h2up::client(addr).await;

    // Body without content-length (sent chunked upstream), echoed back with content-length.
    let mut c = client.clone().ready().await.unwrap();
    let (resp, mut send) = c
        .send_request(
            h2up::request("svc.test", "/p?q=1", &[("te", "trailers")]),
            false,
        )
        .unwrap();
    send.send_data(Bytes::from_static(b"hello "), false)
        .unwrap();
    send.send_data(Bytes::from_static(b"h1"), true).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["x-echo-method"], "POST");
    assert_eq!(h["x-echo-path"], "/p?q=1");
    assert!(
        h.get("keep-alive").is_none(),
        "hop-by-hop field forwarded to h2"
    );
    let seen = h["x-echo-headers"].to_str().unwrap();
    assert!(seen.contains("host: svc.test"), "{seen}");
    assert!(seen.contains("x-forwarded-for: 127.0.0.1"), "{seen}");
    assert!(!seen.contains("te:"), "{seen}");
    let body = h2up::read_body(&mut resp.into_body()).await.unwrap();
    assert_eq!(body, b"hello h1");

    // Many requests reuse pooled HTTP/1.1 connections, large body with content-length.
    let big = support::upstream::bytes(1 << 20, 9);
    for _ in 0..5 {
        let mut c = client.clone().ready().await.unwrap();
        let (resp, mut send) = c
            .send_request(
                h2up::request("svc.test", "/big", &[("content-length", "1048576")]),
                false,
            )
            .unwrap();
        send.send_data(big.clone(), true).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = h2up::read_body(&mut resp.into_body()).await.unwrap();
        assert!(body == big, "1 MiB echoed");
    }
    assert!(
        echo.accepts() <= 2,
        "{} upstream connections",
        echo.accepts()
    );

    // Chunked response: payload decoded, trailers become HTTP/2 trailers.
    let mut c = client.clone().ready().await.unwrap();
    let (resp, _) = c
        .send_request(
            http::Request::get("http://svc.test/chunked")
                .body(())
                .unwrap(),
            true,
        )
        .unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-kept"], "2");
    assert!(
        resp.headers().get("x-hop").is_none(),
        "field named in Connection forwarded"
    );
    assert!(resp.headers().get("transfer-encoding").is_none());
    let mut body = resp.into_body();
    assert_eq!(h2up::read_body(&mut body).await.unwrap(), b"hello world");
    let trailers = body.trailers().await.unwrap().expect("trailers");
    assert_eq!(trailers["x-t"], "done");

    app.shutdown();
}

/// h2 -> HTTP/1.1: a pooled connection the upstream closed silently is replaced for a bodyless
/// request instead of failing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_to_http1_replaces_a_stale_pooled_connection() {
    use tokio::io::AsyncWriteExt;
    // Answers one request per connection as if keep-alive, then closes without saying so.
    let up = support::upstream::raw_server(|mut s| async move {
        let _ = support::upstream::read_until(&mut s, b"\r\n\r\n").await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await;
        let _ = s.shutdown().await;
    })
    .await;
    let yaml = format!(
        r#"
listeners:
  - {{ name: web, address: "127.0.0.1:0", protocol: auto, routes: web }}
routes:
  web:
    - domains: ["*"]
      routes: [{{ match: {{ prefix: / }}, cluster: up }}]
clusters:
  - {{ name: up, protocol: http1, endpoints: ["{}"] }}
"#,
        up.addr
    );
    let app = support::start(&yaml);
    let client = h2up::client(app.listener_addr("web").unwrap()).await;
    for i in 0..3 {
        let mut c = client.clone().ready().await.unwrap();
        let (resp, _) = c
            .send_request(http::Request::get("http://a.test/").body(()).unwrap(), true)
            .unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
        assert_eq!(h2up::read_body(&mut resp.into_body()).await.unwrap(), b"ok");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(up.accepts(), 3);
    app.shutdown();
}

/// HTTP/1.1 client -> Shoal -> h2 upstream: Host -> :authority, content-length and chunked
/// request bodies (chunked trailers become h2 trailers), the h2 response back as chunked with
/// its trailers, keep-alive kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_downstream_to_h2_upstream() {
    use tokio::io::AsyncWriteExt;
    let up = h2up::h2_echo().await;
    let app = support::start(&config(up.addr, "auto", ""));
    let addr = app.listener_addr("web").unwrap();

    // hyper client, content-length body.
    let (status, headers, body) = support::request(
        addr,
        http::Method::POST,
        "svc.test:8080",
        "/echo?x=1",
        &[
            ("x-forwarded-for", "10.1.1.1"),
            ("connection", "x-secret"),
            ("x-secret", "s"),
        ],
        b"hello h2".to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, b"hello h2");
    assert_eq!(headers["x-echo-path"], "/echo");
    assert_eq!(headers["x-echo-authority"], "svc.test:8080");
    let seen = headers["x-echo-headers"].to_str().unwrap();
    assert!(
        seen.contains("x-forwarded-for: 10.1.1.1, 127.0.0.1"),
        "{seen}"
    );
    assert!(!seen.contains("x-secret"), "{seen}");
    assert!(!seen.contains("host:"), "{seen}");

    // Raw client: chunked body with trailers, two requests on one connection.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    for round in 0..2 {
        s.write_all(
            b"POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\nx-req: 1\r\n\r\n",
        )
        .await
        .unwrap();
        let got = support::upstream::read_until(&mut s, b"x-got-x-req: 1\r\n\r\n").await;
        let text = String::from_utf8_lossy(&got).to_string();
        assert!(text.starts_with("HTTP/1.1 200"), "round {round}: {text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{text}"
        );
        assert!(text.contains("hello"), "{text}");
        assert!(text.contains(", world"), "{text}");
        assert!(
            text.contains("x-got-x-req: 1\r\n"),
            "request trailer forwarded: {text}"
        );
        assert!(
            text.contains("\r\n0\r\nx-trailer: done\r\n"),
            "upstream trailers in the last chunk: {text}"
        );
    }
    assert_eq!(
        up.stats.accepts.load(Ordering::SeqCst),
        1,
        "one multiplexed upstream connection"
    );
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_with_backpressure() {
    let up = h2up::h2_echo().await;
    let app = support::start(&config(up.addr, "auto", ""));
    let addr = app.listener_addr("web").unwrap();
    let client = h2up::client(addr).await;

    // 16 MiB upload echoed back, byte for byte.
    let payload = support::upstream::bytes(16 << 20, 3);
    let mut c = client.clone().ready().await.unwrap();
    let (resp, mut send) = c
        .send_request(h2up::request("a.test", "/echo", &[]), false)
        .unwrap();
    let up_payload = payload.clone();
    let sender = tokio::spawn(async move {
        let mut data = up_payload;
        while !data.is_empty() {
            send.reserve_capacity(data.len().min(1 << 20));
            let cap = std::future::poll_fn(|cx| send.poll_capacity(cx))
                .await
                .unwrap()
                .unwrap();
            let n = cap.min(data.len());
            send.send_data(data.split_to(n), false).unwrap();
        }
        send.send_data(Bytes::new(), true).unwrap();
    });
    let resp = resp.await.unwrap();
    let got = h2up::read_body(&mut resp.into_body()).await.unwrap();
    sender.await.unwrap();
    assert_eq!(got.len(), payload.len());
    assert!(got == payload, "echoed body differs");

    // 16 MiB download through a slow reader: the upstream can only run ahead of the reader by
    // the windows on the way (Shoal's upstream stream window is 1 MiB), not by the whole body.
    let total = 16usize << 20;
    let mut c = client.clone().ready().await.unwrap();
    let (resp, _) = c
        .send_request(h2up::request("a.test", &format!("/big/{total}"), &[]), true)
        .unwrap();
    let mut body = resp.await.unwrap().into_body();
    let mut read = 0usize;
    let mut read_when_done = None;
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        read += chunk.len();
        if read_when_done.is_none() && up.stats.big_done.load(Ordering::SeqCst) {
            read_when_done = Some(read);
        }
        // ~16 MiB at 256 KiB per 10 ms: about 0.6 s of slow reading.
        if read % (256 << 10) < chunk.len() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    assert_eq!(read, total);
    let at = read_when_done.unwrap_or(total);
    assert!(
        at >= total - (4 << 20),
        "upstream finished sending when the client had read only {at} of {total} bytes: Shoal buffered without bound"
    );
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rst_stream_propagates_both_ways() {
    let up = h2up::h2_echo().await;
    let app = support::start(&config(up.addr, "auto", ""));
    let addr = app.listener_addr("web").unwrap();
    let client = h2up::client(addr).await;

    // Client -> upstream: the client resets a stream the upstream is holding.
    let mut c = client.clone().ready().await.unwrap();
    let (resp, mut send) = c
        .send_request(h2up::request("a.test", "/hang", &[]), false)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while up.stats.hangs.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    send.send_reset(Reason::CANCEL);
    drop(resp);
    while up.stats.cancels.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the upstream stream was not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Upstream -> client before the response head.
    let mut c = client.clone().ready().await.unwrap();
    let (resp, _) = c
        .send_request(h2up::request("a.test", "/reset", &[]), true)
        .unwrap();
    let err = resp.await.expect_err("reset expected");
    assert_eq!(err.reason(), Some(Reason::INTERNAL_ERROR), "{err}");

    // Upstream -> client in the middle of the body.
    let mut c = client.clone().ready().await.unwrap();
    let (resp, _) = c
        .send_request(h2up::request("a.test", "/reset-mid", &[]), true)
        .unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    let err = h2up::read_body(&mut resp.into_body())
        .await
        .expect_err("body must end with a reset");
    assert_eq!(err.reason(), Some(Reason::INTERNAL_ERROR), "{err}");

    // The connection is still good for other streams.
    let mut c = client.clone().ready().await.unwrap();
    let (resp, _) = c
        .send_request(h2up::request("a.test", "/echo", &[]), true)
        .unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_on_drain_lets_in_flight_streams_finish() {
    let up = h2up::h2_echo().await;
    let app = support::start(&config(up.addr, "auto", ""));
    let addr = app.listener_addr("web").unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn_task = tokio::spawn(conn);
    let mut c = client.clone().ready().await.unwrap();
    let (resp, _) = c
        .send_request(h2up::request("a.test", "/delay/700", &[]), true)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = Instant::now();
    let shutdown = tokio::task::spawn_blocking(move || app.shutdown());
    // The in-flight stream completes normally.
    let resp = resp.await.expect("in-flight stream finishes after GOAWAY");
    assert_eq!(resp.status(), 200);
    let _ = h2up::read_body(&mut resp.into_body()).await.unwrap();
    // Shoal closes the connection gracefully (GOAWAY, then close) once it is done.
    let closed = tokio::time::timeout(Duration::from_secs(5), conn_task)
        .await
        .expect("connection closed after drain")
        .unwrap();
    assert!(closed.is_ok(), "graceful close, got {closed:?}");
    // New streams are refused after the GOAWAY.
    let after = client.clone().ready().await;
    assert!(after.is_err(), "no new stream after GOAWAY");
    shutdown.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "drain waited for the timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_stream_is_retried_once_with_its_body() {
    let up = h2up::h2_echo().await;
    let app = support::start(&config(up.addr, "auto", ""));
    let addr = app.listener_addr("web").unwrap();
    let mut c = h2up::client(addr).await.ready().await.unwrap();
    let (resp, mut send) = c
        .send_request(h2up::request("a.test", "/refuse-once", &[]), false)
        .unwrap();
    send.send_data(Bytes::from_static(b"replayed body"), true)
        .unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = h2up::read_body(&mut resp.into_body()).await.unwrap();
    assert_eq!(body, b"replayed body");
    assert_eq!(
        up.stats.refused.load(Ordering::SeqCst),
        2,
        "refused, then served"
    );
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_goaway_reconnects_without_failing_requests() {
    // Every upstream connection says GOAWAY after 3 streams.
    let up = h2up::h2_echo_with(Some(3), None).await;
    let app = support::start(&config(up.addr, "auto", ""));
    let addr = app.listener_addr("web").unwrap();
    let client = h2up::client(addr).await;
    for round in 0..3 {
        let mut tasks = Vec::new();
        for i in 0..10 {
            let c = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut c = c.ready().await.unwrap();
                let (resp, mut send) = c
                    .send_request(h2up::request("a.test", "/echo", &[]), false)
                    .unwrap();
                send.send_data(Bytes::from(format!("r{round}-{i}")), true)
                    .unwrap();
                let resp = resp.await.unwrap();
                assert_eq!(resp.status(), 200, "round {round} request {i}");
                let body = h2up::read_body(&mut resp.into_body()).await.unwrap();
                assert_eq!(body, format!("r{round}-{i}").as_bytes());
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let accepts = up.stats.accepts.load(Ordering::SeqCst);
    assert!(
        accepts >= 2,
        "Shoal reconnected after GOAWAY: {accepts} connections"
    );
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_gets_goaway_and_dead_peer_is_closed() {
    let up = h2up::h2_echo().await;
    let yaml = config(up.addr, "auto", "").replace(
        "routes: web }",
        "routes: web, timeouts: { keepalive_idle: 300ms }, http2: { keepalive_interval: 200ms, keepalive_timeout: 200ms } }",
    );
    let app = support::start(&yaml);
    let addr = app.listener_addr("web").unwrap();
    // Idle: GOAWAY and a graceful close after keepalive_idle with no stream.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn_task = tokio::spawn(conn);
    let mut c = client.ready().await.unwrap();
    let (resp, _) = c
        .send_request(h2up::request("a.test", "/echo", &[]), true)
        .unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(3), conn_task)
        .await
        .expect("idle connection closed")
        .unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );

    // Dead peer: a client that sent the preface but never answers PING is closed.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let t = Instant::now();
    let mut buf = vec![0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match raw.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a peer that never answers PING must be closed"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    app.shutdown();
}

/// Rapid reset (CVE-2023-44487): a client that opens and immediately resets streams in bulk is
/// answered with GOAWAY (ENHANCE_YOUR_CALM) instead of costing unbounded work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_flood_gets_goaway() {
    let up = h2up::h2_echo().await;
    let app = support::start(&config(up.addr, "auto", ""));
    let addr = app.listener_addr("web").unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn_task = tokio::spawn(conn);
    let mut c = client.ready().await.unwrap();
    let mut refused = false;
    for _ in 0..5000 {
        match c.send_request(h2up::request("a.test", "/hang", &[]), false) {
            Ok((_, mut send)) => send.send_reset(Reason::CANCEL),
            Err(_) => {
                refused = true;
                break;
            }
        }
        tokio::task::yield_now().await;
    }
    let r = tokio::time::timeout(Duration::from_secs(5), conn_task)
        .await
        .expect("Shoal closes a rapid-reset connection")
        .unwrap();
    let err = r.expect_err("closed with an error");
    // GOAWAY(ENHANCE_YOUR_CALM); the client may instead see the socket close while it is still
    // writing its flood.
    assert!(
        err.reason() == Some(Reason::ENHANCE_YOUR_CALM) || err.is_io(),
        "{err} (refused early: {refused})"
    );
    let reached = up.stats.streams.load(Ordering::SeqCst);
    assert!(
        reached < 500,
        "{reached} of the reset streams reached the upstream"
    );
    app.shutdown();
}

/// `Upgrade: h2c` over HTTP/1.1 is declined politely: served as HTTP/1.1, the upgrade fields not
/// forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upgrade_is_served_as_http1() {
    let echo = support::upstream::http_echo("h1").await;
    let yaml = format!(
        r#"
listeners:
  - {{ name: web, address: "127.0.0.1:0", protocol: auto, routes: web }}
routes:
  web:
    - domains: ["*"]
      routes: [{{ match: {{ prefix: / }}, cluster: echo }}]
clusters:
  - {{ name: echo, endpoints: ["{}"] }}
"#,
        echo.addr
    );
    let app = support::start(&yaml);
    let addr = app.listener_addr("web").unwrap();
    let (status, headers, _) = support::request(
        addr,
        http::Method::GET,
        "a.test",
        "/x",
        &[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ],
        vec![],
    )
    .await;
    assert_eq!(status, 200);
    let seen = headers["x-echo-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(!seen.contains("upgrade"), "{seen}");
    assert!(!seen.contains("http2-settings"), "{seen}");
    app.shutdown();
}

/// An upstream allowing 5 concurrent streams: a burst of 20 requests is spread over more
/// connections by the peer's real limit, none refused or failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_stream_limit_opens_more_connections() {
    let up = h2up::h2_echo_with(None, Some(5)).await;
    let app = support::start(&config(up.addr, "auto", ""));
    let addr = app.listener_addr("web").unwrap();
    let client = h2up::client(addr).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = c.ready().await.unwrap();
            let (resp, _) = c
                .send_request(h2up::request("a.test", "/delay/300", &[]), true)
                .unwrap();
            let resp = resp.await.unwrap();
            assert_eq!(resp.status(), 200, "request {i}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let accepts = up.stats.accepts.load(Ordering::SeqCst);
    assert!(
        accepts >= 4,
        "20 concurrent streams at 5 per connection: {accepts} connections"
    );
    assert_eq!(
        up.stats.streams.load(Ordering::SeqCst),
        20,
        "no stream refused and retried"
    );
    app.shutdown();
}

/// A config swap applies to the next stream of an established h2 connection; a stream in flight
/// finishes on the config it started with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_swap_applies_to_next_stream_on_same_connection() {
    let up = h2up::h2_echo().await;
    let yaml = config(up.addr, "auto", "");
    let app = support::start(&yaml);
    let addr = app.listener_addr("web").unwrap();
    let client = h2up::client(addr).await;
    let mut c = client.clone().ready().await.unwrap();
    let (slow, _) = c
        .send_request(h2up::request("a.test", "/delay/500", &[]), true)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let swapped = yaml.replace(
        "        - { match: { prefix: / }, cluster: up, response_headers: { add: { x-via: shoal } } }",
        "        - { match: { prefix: / }, direct_response: { status: 204 } }",
    );
    assert_ne!(swapped, yaml);
    let port = addr.port();
    let swapped = swapped.replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    app.store().apply(support::spec(&swapped)).expect("applies");
    let mut c = client.clone().ready().await.unwrap();
    let (resp, _) = c
        .send_request(h2up::request("a.test", "/echo", &[]), true)
        .unwrap();
    assert_eq!(
        resp.await.unwrap().status(),
        204,
        "new stream uses the new routes"
    );
    let slow = slow.await.unwrap();
    assert_eq!(
        slow.status(),
        200,
        "stream in flight finishes on its config"
    );
    assert_eq!(slow.headers()["x-via"], "shoal");
    app.shutdown();
}

/// A client opening more streams than `http2.max_concurrent_streams` gets REFUSED_STREAM for the
/// extra ones (raw frames: a well-behaved client library would queue them instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_over_the_limit_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = h2up::h2_echo().await;
    let yaml = config(up.addr, "auto", "").replace(
        "routes: web }",
        "routes: web, http2: { max_concurrent_streams: 2 } }",
    );
    let app = support::start(&yaml);
    let addr = app.listener_addr("web").unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // SETTINGS
    // HPACK: :method GET, :scheme http, :path /hang (literal), :authority a (literal).
    let block: &[u8] = &[
        0x82, 0x86, 0x44, 5, b'/', b'h', b'a', b'n', b'g', 0x41, 1, b'a',
    ];
    for id in [1u32, 3, 5] {
        out.extend_from_slice(&[0, 0, block.len() as u8, 1, 0x5]); // HEADERS, END_STREAM|END_HEADERS
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(block);
    }
    s.write_all(&out).await.unwrap();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        // Parse complete frames looking for RST_STREAM.
        let mut at = 0;
        let mut found = None;
        while buf.len() >= at + 9 {
            let len = u32::from_be_bytes([0, buf[at], buf[at + 1], buf[at + 2]]) as usize;
            if buf.len() < at + 9 + len {
                break;
            }
            let kind = buf[at + 3];
            let id = u32::from_be_bytes([buf[at + 5], buf[at + 6], buf[at + 7], buf[at + 8]])
                & 0x7fff_ffff;
            if kind == 3 && len == 4 {
                let code =
                    u32::from_be_bytes([buf[at + 9], buf[at + 10], buf[at + 11], buf[at + 12]]);
                found = Some((id, code));
            }
            at += 9 + len;
        }
        if let Some(f) = found {
            break f;
        }
        assert!(Instant::now() < deadline, "no RST_STREAM");
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut tmp))
            .await
            .expect("read")
            .unwrap();
        assert!(n > 0, "connection closed without RST_STREAM");
        buf.extend_from_slice(&tmp[..n]);
    };
    assert_eq!(refused, (5, 7), "stream 5 refused with REFUSED_STREAM (7)");
    assert!(
        up.stats.hangs.load(Ordering::SeqCst) <= 2,
        "the refused stream never reached the upstream"
    );
    drop(s);
    app.shutdown();
}
