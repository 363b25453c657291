//! The demo upstream served in-process when `shoal run` has no `--config`: a tiny HTTP/1.1 server
//! on its own thread, so a newcomer sees a response through the proxy at once.
//!
//! It answers every request with `200 hello from the shoal demo upstream` plus the path it saw,
//! keeps connections alive and reads content-length bodies; it exists for demos, not production.

use std::io;
use std::net::SocketAddr;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};

/// Starts the demo upstream on `addr` (port 0 picks one) and returns the bound address.
pub fn start(addr: SocketAddr) -> io::Result<SocketAddr> {
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let local = std_listener.local_addr()?;
    std::thread::Builder::new()
        .name("shoal-demo-upstream".into())
        .spawn(move || {
            let rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                .enable_timer()
                .build();
            match rt {
                Ok(mut rt) => rt.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(std_listener) else {
                        return;
                    };
                    while let Ok((stream, _)) = listener.accept().await {
                        let _ = stream.set_nodelay(true);
                        monoio::spawn(serve(stream));
                    }
                }),
                Err(e) => tracing::error!(error = %e, "demo upstream could not start"),
            }
        })?;
    Ok(local)
}

async fn serve(mut stream: TcpStream) {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    loop {
        // Parse whatever is buffered; read more while the head is incomplete.
        let parsed = {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let len = req
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .and_then(|h| {
                            std::str::from_utf8(h.value)
                                .ok()?
                                .trim()
                                .parse::<usize>()
                                .ok()
                        })
                        .unwrap_or(0);
                    let chunked = req
                        .headers
                        .iter()
                        .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
                    let close = req.headers.iter().any(|h| {
                        h.name.eq_ignore_ascii_case("connection")
                            && h.value.eq_ignore_ascii_case(b"close")
                    });
                    Some((
                        n,
                        len,
                        chunked || close,
                        req.path.unwrap_or("/").to_string(),
                    ))
                }
                Ok(httparse::Status::Partial) => None,
                Err(_) => return,
            }
        };
        match parsed {
            Some((head, body, close, path)) => {
                // Wait for the body, then drop it.
                while buf.len() < head + body {
                    if !read_more(&mut stream, &mut buf).await {
                        return;
                    }
                }
                buf.drain(..head + body);
                let text = format!("hello from the shoal demo upstream (path {path})\n");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{}\r\n{text}",
                    text.len(),
                    if close { "connection: close\r\n" } else { "" }
                );
                let (res, _) = stream.write_all(resp.into_bytes()).await;
                if res.is_err() || close {
                    return;
                }
            }
            None => {
                if buf.len() > 64 * 1024 || !read_more(&mut stream, &mut buf).await {
                    return;
                }
            }
        }
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    buf.reserve(8192);
    let len = buf.len();
    let (res, slice) = stream.read(std::mem::take(buf).slice_mut(len..)).await;
    *buf = slice.into_inner();
    matches!(res, Ok(n) if n > 0)
}
