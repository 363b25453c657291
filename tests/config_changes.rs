//! Config changes through `ConfigStore::apply`: swaps under load lose nothing, listeners come and
//! go without a restart, and established connections survive listener removal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{self, upstream};

fn web(listeners: &str, a: std::net::SocketAddr, b: std::net::SocketAddr, target: &str) -> String {
    format!(
        r#"
listeners:
{listeners}
routes:
  web:
    - domains: ["*"]
      routes:
        - {{ match: {{ prefix: / }}, cluster: {target} }}
clusters:
  - {{ name: a, endpoints: ["{a}"] }}
  - {{ name: b, endpoints: ["{b}"] }}
  - {{ name: echo, endpoints: ["{a}"] }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swaps_under_continuous_load_fail_no_request() {
    let a = upstream::http_echo("a").await;
    let b = upstream::http_echo("b").await;
    let listeners = r#"  - { name: web, address: "127.0.0.1:0", routes: web }"#;
    let mut spec = support::spec(&web(listeners, a.addr, b.addr, "a"));
    spec.workers = Some(2);
    let app = shoal::App::start(shoal::AppOptions {
        spec,
        config_path: None,
        pin: false,
    })
    .unwrap();
    let addr = app.listener_addr("web").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let seen_b = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (stop, ok, failed, seen_b) = (stop.clone(), ok.clone(), failed.clone(), seen_b.clone());
        clients.push(tokio::spawn(async move {
            // Keep-alive connection; reconnect only if the server closes it.
            while !stop.load(Ordering::Relaxed) {
                let mut c = TcpStream::connect(addr).await.unwrap();
                while !stop.load(Ordering::Relaxed) {
                    if c.write_all(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n")
                        .await
                        .is_err()
                    {
                        failed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    let (status, headers, _) = support::read_response(&mut c).await;
                    if status == 200 {
                        ok.fetch_add(1, Ordering::Relaxed);
                        if support::header(&headers, "x-upstream") == Some("b") {
                            seen_b.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let mut last = 0;
    for i in 0..60 {
        let target = if i % 2 == 0 { "b" } else { "a" };
        let mut spec = support::spec(&web(listeners, a.addr, b.addr, target));
        spec.workers = Some(2);
        last = app.store().apply(spec).expect("valid config applies");
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(last, 61);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during swaps"
    );
    assert!(
        ok.load(Ordering::Relaxed) > 200,
        "too little traffic: {}",
        ok.load(Ordering::Relaxed)
    );
    assert!(
        seen_b.load(Ordering::Relaxed) > 0,
        "new routes never took effect"
    );
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_change_keeps_running_config() {
    let a = upstream::http_echo("a").await;
    let listeners = r#"  - { name: web, address: "127.0.0.1:0", routes: web }"#;
    let app = support::start(&web(listeners, a.addr, a.addr, "a"));
    let addr = app.listener_addr("web").unwrap();
    let bad = support::spec(&web(listeners, a.addr, a.addr, "missing"));
    let err = app.store().apply(bad).unwrap_err();
    assert!(
        err.to_string()
            .contains("routes.web[0].routes[0].cluster: unknown cluster \"missing\""),
        "{err}"
    );
    assert_eq!(app.store().load().version, 1);
    assert_eq!(support::get(addr, "h", "/").await.0, 200);
    // A listener that cannot bind rejects the whole change too.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let clash = format!(
        "{listeners}\n  - {{ name: clash, address: \"{}\", routes: web }}",
        taken.local_addr().unwrap()
    );
    let err = app
        .store()
        .apply(support::spec(&web(&clash, a.addr, a.addr, "a")))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("listeners[1].address: cannot listen"),
        "{err}"
    );
    assert_eq!(app.store().load().version, 1);
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_added_and_removed_without_touching_established_connections() {
    let a = upstream::http_echo("a").await;
    let echo = upstream::tcp_echo().await;
    let one = r#"  - { name: web, address: "127.0.0.1:0", routes: web }"#.to_string();
    let both = format!(
        "{one}\n  - {{ name: web2, address: \"127.0.0.1:0\", routes: web }}\n  - {{ name: raw, address: \"127.0.0.1:0\", protocol: tcp, cluster: tcpecho }}"
    );
    let with_echo = |l: &str| {
        format!(
            "{}\n  - {{ name: tcpecho, endpoints: [\"{}\"] }}\n",
            web(l, a.addr, a.addr, "a"),
            echo.addr
        )
    };
    let app = support::start(&with_echo(&both));
    let web2 = app.listener_addr("web2").unwrap();
    let raw = app.listener_addr("raw").unwrap();
    assert_eq!(support::get(web2, "h", "/").await.0, 200);

    // Established: a keep-alive HTTP connection and a TCP session.
    let mut http = TcpStream::connect(web2).await.unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(support::read_response(&mut http).await.0, 200);
    let mut tcp = TcpStream::connect(raw).await.unwrap();
    tcp.write_all(b"before").await.unwrap();
    let mut buf = [0u8; 6];
    tcp.read_exact(&mut buf).await.unwrap();

    // Remove web2 and raw.
    app.store().apply(support::spec(&with_echo(&one))).unwrap();
    assert!(refuses(web2).await, "removed listener still accepts");
    assert!(refuses(raw).await, "removed tcp listener still accepts");
    // ...but the established connections keep working.
    http.write_all(b"GET /again HTTP/1.1\r\nhost: h\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(support::read_response(&mut http).await.0, 200);
    tcp.write_all(b"after!").await.unwrap();
    tcp.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"after!");

    // Add a new listener at runtime.
    let added = format!("{one}\n  - {{ name: web3, address: \"127.0.0.1:0\", routes: web }}");
    app.store()
        .apply(support::spec(&with_echo(&added)))
        .unwrap();
    assert_eq!(
        support::get(app.listener_addr("web3").unwrap(), "h", "/")
            .await
            .0,
        200
    );
    app.shutdown();
}

/// The socket's close is asynchronous under io_uring: allow it a moment.
async fn refuses(addr: std::net::SocketAddr) -> bool {
    for _ in 0..50 {
        if TcpStream::connect(addr).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
