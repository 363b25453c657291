//! Test harness: start the in-process `App` from YAML, upstream servers, and small clients.

#![allow(dead_code)]

pub mod h2up;
pub mod upstream;

use std::net::SocketAddr;
use std::time::Duration;

use shoal::{App, AppOptions};
use shoal_dataplane::config::ConfigSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Logs to the test output when RUST_LOG is set (e.g. `RUST_LOG=shoal_dataplane=debug`).
fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Starts Shoal in-process with `yaml` (workers default to 1, unpinned).
pub fn start(yaml: &str) -> App {
    init_logs();
    let mut spec = ConfigSpec::from_yaml(yaml).expect("test config parses");
    spec.workers.get_or_insert(1);
    App::start(AppOptions {
        spec,
        config_path: None,
        pin: false,
    })
    .expect("app starts")
}

/// Starts Shoal in-process with `yaml` on `workers` worker threads (unpinned).
pub fn start_workers(yaml: &str, workers: usize) -> App {
    init_logs();
    let mut spec = spec(yaml);
    spec.workers = Some(workers);
    App::start(AppOptions {
        spec,
        config_path: None,
        pin: false,
    })
    .expect("app starts")
}

pub fn spec(yaml: &str) -> ConfigSpec {
    let mut spec = ConfigSpec::from_yaml(yaml).expect("test config parses");
    spec.workers.get_or_insert(1);
    spec
}

/// Sends raw bytes on a new connection and reads the whole reply until the server closes or
/// `timeout` passes.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(timeout, s.read_to_end(&mut out)).await;
    out
}

/// Reads one HTTP/1.1 response (head + content-length body) from `s`.
pub async fn read_response(s: &mut TcpStream) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let mut lines = head.split("\r\n");
            let status: u16 = lines
                .next()
                .unwrap()
                .split(' ')
                .nth(1)
                .unwrap()
                .parse()
                .unwrap();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(0);
            let mut body = buf[end + 4..].to_vec();
            while body.len() < len {
                let n = s.read(&mut tmp).await.expect("read body");
                assert!(n > 0, "eof in body");
                body.extend_from_slice(&tmp[..n]);
            }
            return (status, headers, body);
        }
        let n = s.read(&mut tmp).await.expect("read head");
        assert!(
            n > 0,
            "eof before response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&tmp[..n]);
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A simple GET over a fresh connection with hyper; returns (status, body).
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let (status, _, body) = request(addr, http::Method::GET, host, path, &[], Vec::new()).await;
    (status, String::from_utf8_lossy(&body).to_string())
}

/// One request with hyper's HTTP/1 client on a fresh connection.
pub async fn request(
    addr: SocketAddr,
    method: http::Method,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, http::HeaderMap, Vec<u8>) {
    let stream = TcpStream::connect(addr).await.expect("connect to shoal");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    use http_body_util::BodyExt;
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

/// A port nothing listens on (bound then released).
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}
