//! gRPC specifics of the HTTP/2 proxy: the `grpc-timeout` deadline and the answers Shoal gives
//! when it fails a call itself (HTTP 200, trailers-only, `grpc-status` + `grpc-message`), so that
//! a gRPC client always reads a status instead of an HTTP error it cannot parse.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Response};

/// Parses a `grpc-timeout` value: 1-8 ASCII digits and a unit (H, M, S, m, u, n).
pub fn parse_timeout(v: &[u8]) -> Option<Duration> {
    let (&unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The status and message as header fields (`grpc-message` percent-encoded as gRPC requires).
pub fn status_headers(headers: &mut HeaderMap, code: u32, message: &str) {
    headers.insert("grpc-status", HeaderValue::from(code));
    let mut enc = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    if let Ok(v) = HeaderValue::from_str(&enc) {
        headers.insert("grpc-message", v);
    }
}

/// A trailers-only response: HTTP 200, `content-type: application/grpc`, status in the headers
/// (sent with END_STREAM).
pub fn trailers_only(code: u32, message: &str) -> Response<()> {
    let mut resp = Response::new(());
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    status_headers(h, code, message);
    resp
}

/// Trailers carrying a status, for a call whose response headers were already sent.
pub fn status_trailers(code: u32, message: &str) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(2);
    status_headers(&mut h, code, message);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        let cases: &[(&[u8], Option<Duration>)] = &[
            (b"1S", Some(Duration::from_secs(1))),
            (b"250m", Some(Duration::from_millis(250))),
            (b"2H", Some(Duration::from_secs(7200))),
            (b"3M", Some(Duration::from_secs(180))),
            (b"99999999u", Some(Duration::from_micros(99_999_999))),
            (b"5n", Some(Duration::from_nanos(5))),
            (b"123456789S", None),
            (b"S", None),
            (b"", None),
            (b"10s", None),
            (b"-1S", None),
            (b"1.5S", None),
        ];
        for (v, want) in cases {
            assert_eq!(parse_timeout(v), *want, "{:?}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn trailers_only_response() {
        let r = trailers_only(14, "upstream connect failed: 100% down\n");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert_eq!(r.headers()["grpc-status"], "14");
        assert_eq!(
            r.headers()["grpc-message"],
            "upstream connect failed: 100%25 down%0A"
        );
    }
}
