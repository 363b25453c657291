//! Protocol sniffing for `protocol: auto` listeners: the first bytes tell HTTP/2 prior knowledge
//! (the connection preface), TLS (a handshake record) and HTTP/1.x (anything else) apart. The bytes
//! read are handed to the chosen handler, so nothing is lost.

use std::time::Duration;

use monoio::net::TcpStream;

use super::io::fill;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    Http1,
    H2,
    Tls,
    /// The client closed (or sent nothing in time).
    Closed,
}

/// Classifies a buffer prefix; `None` = need more bytes.
pub fn classify(buf: &[u8]) -> Option<Detected> {
    let first = *buf.first()?;
    if first == 0x16 {
        return Some(Detected::Tls);
    }
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return if n == H2_PREFACE.len() {
            Some(Detected::H2)
        } else {
            None
        };
    }
    Some(Detected::Http1)
}

/// Reads until the protocol is known; returns it with the bytes read.
pub async fn sniff(stream: &mut TcpStream, timeout: Duration) -> (Detected, Vec<u8>) {
    let mut buf = Vec::with_capacity(2048);
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(d) = classify(&buf) {
            return (d, buf);
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match fill(stream, &mut buf, 1024, left).await {
            Ok(n) if n > 0 => {}
            _ => return (Detected::Closed, buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_table() {
        let cases: &[(&[u8], Option<Detected>)] = &[
            (b"", None),
            (b"GET / HTTP/1.1\r\n", Some(Detected::Http1)),
            (b"P", None),
            (b"PRI * HTTP/2.0\r\n", None),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Some(Detected::H2)),
            (b"POST / HTTP/1.1", Some(Detected::Http1)),
            (&[0x16, 3, 1], Some(Detected::Tls)),
        ];
        for (input, want) in cases {
            assert_eq!(classify(input), *want, "{input:?}");
        }
    }
}
