//! HTTP/1.1 message heads: what the proxy needs to know of a parsed head (framing, persistence,
//! upgrade) and writing the rewritten head for the other side.
//!
//! Hop-by-hop fields (RFC 9110 §7.6.1: Connection and every field it names, Keep-Alive,
//! Proxy-Connection, TE, Transfer-Encoding, Upgrade) are never forwarded as received; the proxy
//! writes its own framing and connection fields.

use std::io::Write;

use crate::error::ProxyError;
use crate::route::HeaderOps;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

impl Framing {
    /// Whether body bytes follow the head.
    pub fn has_body(self) -> bool {
        !matches!(self, Framing::None | Framing::Length(0))
    }
}

/// Facts about a head that outlive the parse.
#[derive(Debug, Clone, Copy)]
pub struct HeadInfo {
    pub framing: Framing,
    /// The sender wants the connection kept open after this message.
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// Upgrade requested (request) or accepted (101 response).
    pub upgrade: bool,
}

fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim).filter(|t| !t.is_empty())
}

pub fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// Whether `name` is hop-by-hop for this message (fixed list, or named in a Connection field).
pub fn hop_by_hop(name: &str, headers: &[httparse::Header<'_>]) -> bool {
    const FIXED: [&str; 6] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
    ];
    if FIXED.iter().any(|f| name.eq_ignore_ascii_case(f)) {
        return true;
    }
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .any(|h| tokens(h.value).any(|t| t.eq_ignore_ascii_case(name.as_bytes())))
}

/// Framing and persistence of a request head (RFC 9112 §6.3), rejecting ambiguous framing.
pub fn request_info(version: u8, headers: &[httparse::Header<'_>]) -> Result<HeadInfo, ProxyError> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut te_seen = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut upgrade_token = false;
    let mut upgrade_header = false;
    let mut expect_continue = false;
    for h in headers {
        let n = h.name;
        if n.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(trim(h.value))
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(ProxyError::BadRequest("invalid content-length"))?;
            if length.is_some_and(|l| l != v) {
                return Err(ProxyError::BadRequest("conflicting content-length values"));
            }
            length = Some(v);
        } else if n.eq_ignore_ascii_case("transfer-encoding") {
            te_seen = true;
            // chunked must be the final coding; anything else cannot be framed (RFC 9112 §6.3).
            chunked = tokens(h.value)
                .last()
                .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
        } else if n.eq_ignore_ascii_case("connection") {
            for t in tokens(h.value) {
                close |= t.eq_ignore_ascii_case(b"close");
                keep_alive_token |= t.eq_ignore_ascii_case(b"keep-alive");
                upgrade_token |= t.eq_ignore_ascii_case(b"upgrade");
            }
        } else if n.eq_ignore_ascii_case("upgrade") {
            // `Upgrade: h2c` (RFC 7540 §3.2) is declined politely: the request is served as
            // HTTP/1.1 and the field, being hop-by-hop, is not forwarded. Clients that want
            // HTTP/2 use prior knowledge, which `auto` listeners detect.
            upgrade_header |= !tokens(h.value).all(|t| t.eq_ignore_ascii_case(b"h2c"));
        } else if n.eq_ignore_ascii_case("expect") {
            if trim(h.value).eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else {
                return Err(ProxyError::BadRequest("unsupported expectation"));
            }
        }
    }
    let framing = match (te_seen, length) {
        (true, Some(_)) => {
            return Err(ProxyError::BadRequest(
                "both transfer-encoding and content-length",
            ));
        }
        (true, None) if !chunked => {
            return Err(ProxyError::BadRequest("unsupported transfer-encoding"));
        }
        (true, None) => Framing::Chunked,
        (false, None) => Framing::None,
        (false, Some(n)) => Framing::Length(n),
    };
    let keep_alive = if version == 0 {
        keep_alive_token && !close
    } else {
        !close
    };
    Ok(HeadInfo {
        framing,
        keep_alive,
        expect_continue,
        upgrade: upgrade_header && upgrade_token,
    })
}

/// Framing and persistence of a response head, given the request it answers (RFC 9112 §6.3).
pub fn response_info(
    status: u16,
    version: u8,
    head_request: bool,
    headers: &[httparse::Header<'_>],
) -> Result<HeadInfo, ProxyError> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut te_seen = false;
    let mut close = false;
    let mut keep_alive_token = false;
    for h in headers {
        let n = h.name;
        if n.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(trim(h.value))
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(ProxyError::UpstreamProtocol("invalid content-length"))?;
            if length.is_some_and(|l| l != v) {
                return Err(ProxyError::UpstreamProtocol(
                    "conflicting content-length values",
                ));
            }
            length = Some(v);
        } else if n.eq_ignore_ascii_case("transfer-encoding") {
            te_seen = true;
            chunked = tokens(h.value)
                .last()
                .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
        } else if n.eq_ignore_ascii_case("connection") {
            for t in tokens(h.value) {
                close |= t.eq_ignore_ascii_case(b"close");
                keep_alive_token |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = if no_body {
        Framing::None
    } else if te_seen {
        if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else {
        match length {
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    let keep_alive = framing != Framing::Close
        && if version == 0 {
            keep_alive_token && !close
        } else {
            !close
        };
    Ok(HeadInfo {
        framing,
        keep_alive,
        expect_continue: false,
        upgrade: status == 101,
    })
}

/// Writes `name: value\r\n`.
#[inline]
pub fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Copies the end-to-end fields of `headers` (dropping hop-by-hop ones, those `ops` removes and
/// those `skip` names), then appends `ops.add`.
pub fn copy_headers(
    out: &mut Vec<u8>,
    headers: &[httparse::Header<'_>],
    ops: &HeaderOps,
    skip: &[&str],
) {
    for h in headers {
        if hop_by_hop(h.name, headers)
            || ops.removes(h.name)
            || skip.iter().any(|s| h.name.eq_ignore_ascii_case(s))
        {
            continue;
        }
        put_header(out, h.name.as_bytes(), h.value);
    }
    for (n, v) in &ops.add {
        put_header(out, n.as_bytes(), v.as_bytes());
    }
}

/// Writes a status line.
pub fn status_line(out: &mut Vec<u8>, status: u16) {
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\n",
        crate::error::reason(status)
    );
}

/// Writes `framing` as header fields for a forwarded message.
pub fn framing_headers(out: &mut Vec<u8>, framing: Framing) {
    match framing {
        Framing::Length(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None | Framing::Close => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs<'a>(pairs: &'a [(&'a str, &'a str)]) -> Vec<httparse::Header<'a>> {
        pairs
            .iter()
            .map(|(n, v)| httparse::Header {
                name: n,
                value: v.as_bytes(),
            })
            .collect()
    }

    #[test]
    fn request_framing_table() {
        use Framing::*;
        let cases: &[(u8, &[(&str, &str)], Result<(Framing, bool), u16>)] = &[
            (1, &[], Ok((None, true))),
            (0, &[], Ok((None, false))),
            (0, &[("connection", "keep-alive")], Ok((None, true))),
            (1, &[("connection", "close")], Ok((None, false))),
            (1, &[("content-length", "10")], Ok((Length(10), true))),
            (1, &[("content-length", "0")], Ok((Length(0), true))),
            (
                1,
                &[("content-length", "10"), ("content-length", "10")],
                Ok((Length(10), true)),
            ),
            (
                1,
                &[("content-length", "10"), ("content-length", "11")],
                Err(400),
            ),
            (1, &[("content-length", "-1")], Err(400)),
            (1, &[("content-length", "1x")], Err(400)),
            (1, &[("transfer-encoding", "chunked")], Ok((Chunked, true))),
            (
                1,
                &[("transfer-encoding", "gzip, chunked")],
                Ok((Chunked, true)),
            ),
            (1, &[("transfer-encoding", "chunked, gzip")], Err(400)),
            (
                1,
                &[("transfer-encoding", "chunked"), ("content-length", "5")],
                Err(400),
            ),
            (1, &[("expect", "100-continue")], Ok((None, true))),
            (1, &[("expect", "something")], Err(400)),
        ];
        for (version, headers, want) in cases {
            let got = request_info(*version, &hs(headers))
                .map(|i| (i.framing, i.keep_alive))
                .map_err(|e| e.status());
            assert_eq!(&got, want, "{headers:?}");
        }
    }

    #[test]
    fn upgrade_detection_declines_h2c() {
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[("connection", "upgrade"), ("upgrade", "websocket")], true),
            (
                &[
                    ("connection", "Upgrade, HTTP2-Settings"),
                    ("upgrade", "h2c"),
                ],
                false,
            ),
            (&[("connection", "upgrade"), ("upgrade", "H2C")], false),
            (
                &[("connection", "upgrade"), ("upgrade", "h2c, websocket")],
                true,
            ),
            (&[("upgrade", "websocket")], false),
        ];
        for (headers, want) in cases {
            let got = request_info(1, &hs(headers)).map(|i| i.upgrade);
            assert_eq!(got.ok(), Some(*want), "{headers:?}");
        }
    }

    #[test]
    fn response_framing_table() {
        use Framing::*;
        let cases: &[(u16, bool, &[(&str, &str)], (Framing, bool))] = &[
            (200, false, &[("content-length", "3")], (Length(3), true)),
            (200, true, &[("content-length", "3")], (None, true)),
            (204, false, &[], (None, true)),
            (304, false, &[("content-length", "3")], (None, true)),
            (200, false, &[], (Close, false)),
            (200, false, &[("content-length", "0")], (Length(0), true)),
            (404, true, &[("content-length", "0")], (None, true)),
            (
                200,
                false,
                &[("transfer-encoding", "chunked")],
                (Chunked, true),
            ),
            (
                200,
                false,
                &[("content-length", "3"), ("connection", "close")],
                (Length(3), false),
            ),
        ];
        for (status, head, headers, want) in cases {
            let i = response_info(*status, 1, *head, &hs(headers)).unwrap();
            assert_eq!((i.framing, i.keep_alive), *want, "{status} {headers:?}");
        }
    }

    #[test]
    fn hop_by_hop_includes_connection_named_fields() {
        let h = hs(&[
            ("connection", "close, x-secret"),
            ("x-secret", "1"),
            ("x-kept", "2"),
        ]);
        assert!(hop_by_hop("X-Secret", &h));
        assert!(hop_by_hop("keep-alive", &h));
        assert!(!hop_by_hop("x-kept", &h));
        let mut out = Vec::new();
        copy_headers(&mut out, &h, &HeaderOps::default(), &[]);
        assert_eq!(out, b"x-kept: 2\r\n");
    }
}
