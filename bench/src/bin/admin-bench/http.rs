//! The bench's HTTP/1.1 side: a minimal keep-alive upstream (`200 ok` to every request) and a
//! client that sends one GET and reads one response (content-length bodies only).

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Serves `HTTP/1.1 200` with body `ok` to every request head on every connection until the
/// process exits.
pub async fn upstream(addr: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(4096);
                let mut tmp = [0u8; 4096];
                loop {
                    // Answer every complete head in the buffer (GETs: no bodies).
                    while let Some(end) = find(&buf, b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                    match s.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
            });
        }
    });
    Ok(())
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A keep-alive client connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// `GET path` with `Host: host`; returns the status and the body.
    pub async fn get(&mut self, host: &str, path: &str) -> io::Result<(u16, Vec<u8>)> {
        let req = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: admin-bench\r\n\r\n");
        self.stream.write_all(req.as_bytes()).await?;
        let mut tmp = [0u8; 4096];
        loop {
            if let Some(r) = self.parse()? {
                return Ok(r);
            }
            let n = self.stream.read(&mut tmp).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before a full response",
                ));
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    /// One complete response from the buffer, if there is one.
    fn parse(&mut self) -> io::Result<Option<(u16, Vec<u8>)>> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let head = match resp.parse(&self.buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        };
        let status = resp.code.unwrap_or(0);
        let len = resp
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
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no content-length"))?;
        if self.buf.len() < head + len {
            return Ok(None);
        }
        let body = self.buf[head..head + len].to_vec();
        self.buf.drain(..head + len);
        Ok(Some((status, body)))
    }
}
