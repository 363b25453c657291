//! Translation of an HTTP/1.1 request to an HTTP/2 upstream (a cluster with `protocol: http2`).
//!
//! The head the HTTP/1.1 path already rewrote (hop-by-hop fields dropped, `X-Forwarded-*`,
//! `x-request-id`) is turned into an HTTP/2 request (`Host` -> `:authority`, framing fields
//! dropped) on a stream leased from the worker's `H2Pool`. The request body becomes DATA frames
//! (content-length as is, chunked decoded, its trailers sent as trailers); the response comes back
//! with its `content-length`, or chunked (HTTP/1.0 clients: close-delimited) with the upstream's
//! trailers in the last chunk. Upgrades are not translated.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use h2::SendStream;
use http::header::CONTENT_LENGTH;
use http::{Method, Uri};

use super::dechunk::{Dechunker, Step};
use super::head::{self, Framing};
use super::{Conn, Done, Failed, Next, Request, failed};
use crate::error::ProxyError;
use crate::proxy::h2::forward::{acquire, apply_ops, open_stream};
use crate::proxy::h2::relay::{RelayError, send_chunk};
use crate::proxy::io::{fill, write_all};
use crate::route::Route;
use crate::snapshot::Listener;
use crate::upstream::Cluster;
use crate::worker::WorkerCtx;

const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Sends the request (rewritten HTTP/1.1 head in `conn.out`) to an HTTP/2 upstream.
pub(super) async fn forward(
    ctx: &WorkerCtx,
    l: &Listener,
    route: &Route,
    cluster: &Arc<Cluster>,
    conn: &mut Conn,
    req: &mut Request,
) -> Result<Done, Failed> {
    if req.info.upgrade {
        return Err(failed(
            ProxyError::Unsupported("Upgrade is not forwarded to an HTTP/2 cluster"),
            None,
        ));
    }
    let h2req = h2_head(&conn.out, l.limits.max_headers).map_err(|e| failed(e, None))?;
    let eos = !req.info.framing.has_body();
    let lease = acquire(ctx, cluster).await.map_err(|e| failed(e, None))?;
    let addr = lease.addr;
    let _in_flight = ctx.balancer.start_request(addr);
    let (resp_fut, mut up_send) = match open_stream(&lease, h2req, eos, cluster).await {
        Ok(s) => s,
        Err(e) => {
            lease.mark_closed();
            return Err(failed(e, Some(addr)));
        }
    };
    if req.info.expect_continue {
        conn.out.clear();
        conn.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        write_all(&mut conn.stream, &mut conn.out)
            .await
            .map_err(|e| failed(ProxyError::DownstreamIo(e), Some(addr)))?;
    }
    if !eos {
        send_body(conn, req.info.framing, &mut up_send, l)
            .await
            .map_err(|e| failed(e, Some(addr)))?;
    }
    let timeout = route.timeout.unwrap_or(l.timeouts.request);
    let timeout = if timeout.is_zero() {
        l.timeouts.idle
    } else {
        timeout
    };
    let resp = match monoio::time::timeout(timeout, resp_fut).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(failed(ProxyError::UpstreamH2(e), Some(addr))),
        Err(_) => {
            up_send.send_reset(h2::Reason::CANCEL);
            return Err(failed(ProxyError::UpstreamTimeout, Some(addr)));
        }
    };
    let (mut parts, mut body) = resp.into_parts();
    apply_ops(&mut parts.headers, &route.response_headers);
    let status = parts.status.as_u16();
    let has_length = parts.headers.contains_key(CONTENT_LENGTH);
    let no_body = req.is_head || status == 204 || status == 304 || (100..200).contains(&status);
    let chunked = !no_body && !has_length && !req.http10;
    let close_delimited = !no_body && !has_length && req.http10;
    let client_keep = req.info.keep_alive && !close_delimited;

    let out = &mut conn.out;
    out.clear();
    head::status_line(out, status);
    for (name, value) in &parts.headers {
        head::put_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    } else if !has_length && !no_body {
        // close-delimited (HTTP/1.0 client)
    } else if !has_length && status != 204 && status != 304 && !req.is_head {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    if !client_keep {
        out.extend_from_slice(b"connection: close\r\n");
    } else if req.http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let started = |err| Failed {
        err,
        response_started: true,
        endpoint: Some(addr),
    };
    write_all(&mut conn.stream, &mut conn.out)
        .await
        .map_err(|e| started(ProxyError::DownstreamIo(e)))?;
    if !no_body {
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| started(ProxyError::UpstreamH2(e)))?;
            let n = chunk.len();
            conn.out.clear();
            if chunked {
                if n == 0 {
                    continue;
                }
                let _ = write!(conn.out, "{n:x}\r\n");
                conn.out.extend_from_slice(&chunk);
                conn.out.extend_from_slice(b"\r\n");
            } else {
                conn.out.extend_from_slice(&chunk);
            }
            write_all(&mut conn.stream, &mut conn.out)
                .await
                .map_err(|e| started(ProxyError::DownstreamIo(e)))?;
            let _ = body.flow_control().release_capacity(n);
        }
        if chunked {
            conn.out.clear();
            conn.out.extend_from_slice(b"0\r\n");
            match body.trailers().await {
                Ok(Some(t)) => {
                    for (name, value) in &t {
                        head::put_header(&mut conn.out, name.as_str().as_bytes(), value.as_bytes());
                    }
                }
                Ok(None) => {}
                Err(e) => return Err(started(ProxyError::UpstreamH2(e))),
            }
            conn.out.extend_from_slice(b"\r\n");
            write_all(&mut conn.stream, &mut conn.out)
                .await
                .map_err(|e| started(ProxyError::DownstreamIo(e)))?;
        }
    }
    Ok(Done {
        status,
        endpoint: addr,
        next: if client_keep {
            Next::KeepAlive
        } else {
            Next::Close
        },
    })
}

/// The HTTP/2 request for a rewritten HTTP/1.1 head.
fn h2_head(out: &[u8], max_headers: usize) -> Result<http::Request<()>, ProxyError> {
    let mut slots = vec![httparse::EMPTY_HEADER; max_headers + 16];
    let mut parsed = httparse::Request::new(&mut slots);
    match parsed.parse(out) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(ProxyError::BadRequest("malformed request head")),
    }
    let method = Method::from_bytes(parsed.method.unwrap_or("GET").as_bytes())
        .map_err(|_| ProxyError::BadRequest("invalid method"))?;
    let host = parsed
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| h.value)
        .ok_or(ProxyError::BadRequest("missing host header"))?;
    let uri = Uri::builder()
        .scheme("http")
        .authority(host)
        .path_and_query(parsed.path.unwrap_or("/"))
        .build()
        .map_err(|_| ProxyError::BadRequest("invalid request target"))?;
    let mut req = http::Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    let h = req.headers_mut();
    const SKIP: [&str; 8] = [
        "host",
        "transfer-encoding",
        "connection",
        "upgrade",
        "expect",
        "te",
        "keep-alive",
        "proxy-connection",
    ];
    for f in parsed.headers.iter() {
        if SKIP.iter().any(|s| f.name.eq_ignore_ascii_case(s)) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(f.name.as_bytes()),
            http::HeaderValue::from_bytes(f.value),
        ) {
            h.append(n, v);
        }
    }
    Ok(req)
}

fn relay_error(e: RelayError) -> ProxyError {
    match e {
        RelayError::Dest(e) | RelayError::Source(e) => ProxyError::UpstreamH2(e),
        RelayError::DestReset(_) => ProxyError::UpstreamClosed,
        RelayError::TooLarge => ProxyError::BodyTooLarge,
    }
}

/// Sends the client's body (already-read bytes first) as DATA frames, then END_STREAM.
async fn send_body(
    conn: &mut Conn,
    framing: Framing,
    up: &mut SendStream<Bytes>,
    l: &Listener,
) -> Result<(), ProxyError> {
    let idle = l.timeouts.idle;
    let limit = l.limits.max_request_body_bytes;
    let eof = || ProxyError::BadRequest("client closed before the body was complete");
    match framing {
        Framing::Length(n) => {
            let mut left = n;
            loop {
                if !conn.buf.is_empty() {
                    let k = (conn.buf.len() as u64).min(left) as usize;
                    let chunk = Bytes::copy_from_slice(&conn.buf[..k]);
                    conn.buf.drain(..k);
                    left -= k as u64;
                    send_chunk(up, chunk).await.map_err(relay_error)?;
                }
                if left == 0 {
                    break;
                }
                if !read_more(conn, idle).await? {
                    return Err(eof());
                }
            }
            up.send_data(Bytes::new(), true)
                .map_err(ProxyError::UpstreamH2)
        }
        Framing::Chunked => {
            let mut dec = Dechunker::new(MAX_TRAILER_BYTES);
            let mut total: u64 = 0;
            loop {
                let (n, step) = dec
                    .step(&conn.buf)
                    .map_err(|_| ProxyError::BadRequest("invalid chunked body"))?;
                match step {
                    Step::Data(r) => {
                        total += r.len() as u64;
                        if limit > 0 && total > limit {
                            return Err(ProxyError::BodyTooLarge);
                        }
                        let chunk = Bytes::copy_from_slice(&conn.buf[r]);
                        conn.buf.drain(..n);
                        send_chunk(up, chunk).await.map_err(relay_error)?;
                    }
                    Step::Framing => {
                        conn.buf.drain(..n);
                    }
                    Step::Done => {
                        conn.buf.drain(..n);
                        let trailers = std::mem::take(&mut dec.trailers);
                        return if trailers.is_empty() {
                            up.send_data(Bytes::new(), true)
                        } else {
                            up.send_trailers(trailers)
                        }
                        .map_err(ProxyError::UpstreamH2);
                    }
                    Step::NeedMore => {
                        if !read_more(conn, idle).await? {
                            return Err(eof());
                        }
                    }
                }
            }
        }
        Framing::None | Framing::Close => up
            .send_data(Bytes::new(), true)
            .map_err(ProxyError::UpstreamH2),
    }
}

/// Reads more client bytes into `conn.buf`; false at EOF.
async fn read_more(conn: &mut Conn, idle: std::time::Duration) -> Result<bool, ProxyError> {
    match fill(&mut conn.stream, &mut conn.buf, 64 * 1024, idle).await {
        Ok(0) => Ok(false),
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(ProxyError::DownstreamTimeout),
        Err(e) => Err(ProxyError::DownstreamIo(e)),
    }
}
