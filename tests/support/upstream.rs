//! Real upstream servers for tests: an HTTP echo server (hyper), a TCP echo server, and raw
//! scripted servers. Each counts its accepted connections.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct Upstream {
    pub addr: SocketAddr,
    pub accepts: Arc<AtomicUsize>,
}

impl Upstream {
    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

/// HTTP/1.1 echo server (hyper). Responds 200 with the request body; headers
/// `x-echo-method`, `x-echo-path`, `x-echo-headers` (request headers as "name: value" lines,
/// escaped with `|`), `x-upstream: <name>`. Path `/delay/<ms>` sleeps first.
pub async fn http_echo(name: &'static str) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counter = accepts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = service_fn(
                    move |req: http::Request<hyper::body::Incoming>| async move {
                        let method = req.method().to_string();
                        let path = req.uri().to_string();
                        let hdrs: Vec<String> = req
                            .headers()
                            .iter()
                            .map(|(n, v)| {
                                format!("{}: {}", n, String::from_utf8_lossy(v.as_bytes()))
                            })
                            .collect();
                        if let Some(ms) = path.strip_prefix("/delay/") {
                            let ms: u64 = ms.parse().unwrap_or(0);
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let resp = http::Response::builder()
                            .header("x-echo-method", method)
                            .header("x-echo-path", path)
                            .header("x-echo-headers", hdrs.join("|"))
                            .header("x-upstream", name)
                            .header("keep-alive", "timeout=5")
                            .body(Full::new(body))
                            .unwrap();
                        Ok::<_, Infallible>(resp)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Upstream { addr, accepts }
}

/// TCP echo: echoes every byte; on EOF from the client, half-closes back.
pub async fn tcp_echo() -> Upstream {
    raw_server(|mut s: TcpStream| async move {
        let mut buf = vec![0u8; 65536];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = s.shutdown().await;
    })
    .await
}

/// A server running `handler` for every accepted connection.
pub async fn raw_server<F, Fut>(handler: F) -> Upstream
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counter = accepts.clone();
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let h = handler.clone();
            tokio::spawn(async move { h(stream).await });
        }
    });
    Upstream { addr, accepts }
}

/// Reads from `s` until `buf` contains `needle`; returns everything read.
pub async fn read_until(s: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    while super::find(&buf, needle).is_none() {
        let n = s.read(&mut tmp).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    buf
}

pub fn bytes(n: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>(),
    )
}
