//! Translation of an HTTP/2 request to an HTTP/1.1 upstream (a cluster with `protocol: http1`).
//!
//! The request head is written as HTTP/1.1 (`:authority` -> `Host`, fields already stripped of
//! connection-specific ones); the body goes out as it arrives: raw with the client's
//! `content-length`, otherwise chunked, with the client's trailers in the last chunk. The response
//! head is read with httparse (hop-by-hop fields dropped) and its body becomes DATA frames within
//! the client's flow-control window: content-length, close-delimited, or chunked decoded
//! ([`crate::proxy::http1::dechunk`]) with its trailers sent as trailers. The upstream connection
//! goes back to the worker's HTTP/1.1 pool after a complete, reusable exchange; a bodyless request
//! that meets a pooled connection the upstream had closed is sent again on a fresh one.

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Response, StatusCode, Uri};

use super::forward::apply_ops;
use super::relay::send_chunk;
use super::server::ConnShared;
use super::stream::{ReqInfo, fail};
use crate::error::ProxyError;
use crate::proxy::http1::dechunk::{Dechunker, Step};
use crate::proxy::http1::head::{self, Framing};
use crate::proxy::io::{fill, write_all};
use crate::proxy::stream::Stream;
use crate::route::Route;
use crate::snapshot::Listener;
use crate::upstream::Cluster;
use crate::upstream::pool::{self, connect_to};

const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// How the exchange failed.
enum Fail {
    /// Before a response head was sent to the client.
    Early(ProxyError),
    /// After: the client stream is reset.
    Late(String),
    /// The client went away or reset the stream.
    Down,
}

/// Forwards `parts` (head already rewritten for the upstream) and `body` over HTTP/1.1.
#[allow(clippy::too_many_arguments)]
pub async fn forward(
    conn: &ConnShared,
    l: &Listener,
    route: &Route,
    cluster: &Cluster,
    info: &ReqInfo,
    parts: &Parts,
    uri: &Uri,
    body: RecvStream,
    mut respond: SendResponse<Bytes>,
    head_deadline: Option<Instant>,
) -> (Option<u16>, Option<String>) {
    let ctx = &conn.ctx;
    let Some(addr) = ctx.balancer.pick(cluster, Instant::now()) else {
        let e = ProxyError::NoHealthyUpstream;
        return (Some(fail(&mut respond, info, &e)), Some(e.to_string()));
    };
    let _in_flight = ctx.balancer.start_request(addr);
    let mut body = body;
    let eos = body.is_end_stream();
    let mut fresh = false;
    let (ex, result, down) = loop {
        let pooled = if fresh {
            None
        } else {
            ctx.pool.take(
                pool::key(cluster, addr),
                cluster.pool.idle_timeout.get(),
                Instant::now(),
            )
        };
        let reused = pooled.is_some();
        let stream = match pooled {
            Some(s) => s,
            None => match connect_to(cluster, addr, false).await {
                Ok(s) => {
                    ctx.balancer.report_success(addr);
                    s
                }
                Err(e) => {
                    ctx.balancer.report_failure(cluster, addr, Instant::now());
                    let e = ProxyError::UpstreamConnect(e);
                    return (Some(fail(&mut respond, info, &e)), Some(e.to_string()));
                }
            },
        };
        let mut ex = Exchange {
            up: stream,
            buf: ctx.bufs.get_small(),
            out: ctx.bufs.get_small(),
            idle: l.timeouts.idle,
            limit: l.limits.max_request_body_bytes,
            max_head: l.limits.max_response_head_bytes,
            max_headers: l.limits.max_headers,
        };
        let mut down: Option<SendStream<Bytes>> = None;
        let result = ex
            .run(
                parts,
                uri,
                &mut body,
                &mut respond,
                &mut down,
                route,
                head_deadline,
            )
            .await;
        // A pooled connection the upstream had already closed: a request without a body is
        // still whole, so it is sent again once on a fresh connection.
        if reused
            && eos
            && matches!(
                result,
                Err(Fail::Early(
                    ProxyError::UpstreamClosed | ProxyError::UpstreamIo(_)
                ))
            )
        {
            fresh = true;
            continue;
        }
        break (ex, result, down);
    };
    let mut down = down;
    let Exchange { up, buf, out, .. } = ex;
    ctx.bufs.put_small(out);
    match result {
        Ok((status, reusable)) => {
            if reusable && buf.is_empty() {
                ctx.pool.put(
                    pool::key(cluster, addr),
                    up,
                    cluster.pool.max_idle_per_endpoint,
                    cluster.pool.idle_timeout.get(),
                );
            }
            ctx.bufs.put_small(buf);
            (Some(status), None)
        }
        Err(Fail::Early(e)) => (Some(fail(&mut respond, info, &e)), Some(e.to_string())),
        Err(Fail::Late(why)) => {
            if let Some(d) = down.as_mut() {
                d.send_reset(Reason::INTERNAL_ERROR);
            }
            (None, Some(why))
        }
        Err(Fail::Down) => {
            match down.as_mut() {
                Some(d) => d.send_reset(Reason::CANCEL),
                None => respond.send_reset(Reason::CANCEL),
            }
            (None, Some("client reset the stream".into()))
        }
    }
}

struct Exchange {
    up: Stream,
    buf: Vec<u8>,
    out: Vec<u8>,
    idle: Duration,
    limit: u64,
    max_head: usize,
    max_headers: usize,
}

impl Exchange {
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &mut self,
        parts: &Parts,
        uri: &Uri,
        body: &mut RecvStream,
        respond: &mut SendResponse<Bytes>,
        down: &mut Option<SendStream<Bytes>>,
        route: &Route,
        head_deadline: Option<Instant>,
    ) -> Result<(u16, bool), Fail> {
        let eos = body.is_end_stream();
        let chunked = !eos && !parts.headers.contains_key(http::header::CONTENT_LENGTH);
        self.write_head(parts, uri, eos, chunked);
        write_all(&mut self.up, &mut self.out)
            .await
            .map_err(|e| Fail::Early(ProxyError::UpstreamIo(e)))?;
        if !eos {
            self.send_body(body, chunked).await?;
        }
        let is_head = parts.method == http::Method::HEAD;
        let (status, info, head_len, resp) = self.read_head(is_head, head_deadline).await?;
        let mut resp = resp;
        apply_ops(resp.headers_mut(), &route.response_headers);
        self.buf.drain(..head_len);
        let end = !info.framing.has_body();
        let s = respond.send_response(resp, end).map_err(|_| Fail::Down)?;
        if end {
            return Ok((status, info.keep_alive));
        }
        let d = down.insert(s);
        match info.framing {
            Framing::Length(n) => self.relay_length(d, Some(n)).await?,
            Framing::Close => self.relay_length(d, None).await?,
            Framing::Chunked => self.relay_chunked(d).await?,
            Framing::None => {}
        }
        Ok((status, info.keep_alive && info.framing != Framing::Close))
    }

    fn write_head(&mut self, parts: &Parts, uri: &Uri, eos: bool, chunked: bool) {
        let out = &mut self.out;
        out.clear();
        let pq = uri.path_and_query().map_or("/", |p| p.as_str());
        let _ = write!(out, "{} {pq} HTTP/1.1\r\n", parts.method);
        if let Some(a) = uri.authority() {
            head::put_header(out, b"host", a.as_str().as_bytes());
        }
        for (name, value) in &parts.headers {
            if name == http::header::TE {
                continue;
            }
            head::put_header(out, name.as_str().as_bytes(), value.as_bytes());
        }
        if chunked {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        } else if eos
            && !parts.headers.contains_key(http::header::CONTENT_LENGTH)
            && !matches!(
                parts.method,
                http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
            )
        {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    async fn send_body(&mut self, body: &mut RecvStream, chunked: bool) -> Result<(), Fail> {
        let mut sent: u64 = 0;
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|_| Fail::Down)?;
            let n = chunk.len();
            sent += n as u64;
            if self.limit > 0 && sent > self.limit {
                return Err(Fail::Early(ProxyError::BodyTooLarge));
            }
            self.out.clear();
            if chunked {
                if n == 0 {
                    continue;
                }
                let _ = write!(self.out, "{n:x}\r\n");
                self.out.extend_from_slice(&chunk);
                self.out.extend_from_slice(b"\r\n");
            } else {
                self.out.extend_from_slice(&chunk);
            }
            write_all(&mut self.up, &mut self.out)
                .await
                .map_err(|e| Fail::Early(ProxyError::UpstreamIo(e)))?;
            let _ = body.flow_control().release_capacity(n);
        }
        if chunked {
            self.out.clear();
            self.out.extend_from_slice(b"0\r\n");
            if let Ok(Some(t)) = body.trailers().await {
                for (name, value) in &t {
                    head::put_header(&mut self.out, name.as_str().as_bytes(), value.as_bytes());
                }
            }
            self.out.extend_from_slice(b"\r\n");
            write_all(&mut self.up, &mut self.out)
                .await
                .map_err(|e| Fail::Early(ProxyError::UpstreamIo(e)))?;
        }
        Ok(())
    }

    /// Reads the final response head (skipping 1xx) and converts it for HTTP/2.
    async fn read_head(
        &mut self,
        is_head: bool,
        deadline: Option<Instant>,
    ) -> Result<(u16, head::HeadInfo, usize, Response<()>), Fail> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head_len = end + 4;
                let mut slots = vec![httparse::EMPTY_HEADER; self.max_headers];
                let mut resp = httparse::Response::new(&mut slots);
                match resp.parse(&self.buf[..head_len]) {
                    Ok(httparse::Status::Complete(_)) => {}
                    _ => {
                        return Err(Fail::Early(ProxyError::UpstreamProtocol(
                            "malformed response head",
                        )));
                    }
                }
                let status = resp.code.unwrap_or(0);
                if (100..200).contains(&status) {
                    self.buf.drain(..head_len);
                    continue;
                }
                let info =
                    head::response_info(status, resp.version.unwrap_or(1), is_head, resp.headers)
                        .map_err(Fail::Early)?;
                let mut out = Response::new(());
                *out.status_mut() = StatusCode::from_u16(status).map_err(|_| {
                    Fail::Early(ProxyError::UpstreamProtocol("invalid status code"))
                })?;
                let h = out.headers_mut();
                for f in resp.headers.iter() {
                    if head::hop_by_hop(f.name, resp.headers)
                        || (info.framing != Framing::None
                            && f.name.eq_ignore_ascii_case("content-length")
                            && !matches!(info.framing, Framing::Length(_)))
                    {
                        continue;
                    }
                    if let (Ok(n), Ok(v)) = (
                        HeaderName::from_bytes(f.name.as_bytes()),
                        HeaderValue::from_bytes(f.value),
                    ) {
                        h.append(n, v);
                    }
                }
                return Ok((status, info, head_len, out));
            }
            if self.buf.len() >= self.max_head {
                return Err(Fail::Early(ProxyError::UpstreamProtocol(
                    "response head too large",
                )));
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => self.idle,
            };
            if left.is_zero() {
                return Err(Fail::Early(ProxyError::UpstreamTimeout));
            }
            match fill(&mut self.up, &mut self.buf, 4096, left).await {
                Ok(0) => return Err(Fail::Early(ProxyError::UpstreamClosed)),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(Fail::Early(ProxyError::UpstreamTimeout));
                }
                Err(e) => return Err(Fail::Early(ProxyError::UpstreamIo(e))),
            }
        }
    }

    /// Relays `len` bytes (or up to EOF when `None`) as DATA frames.
    async fn relay_length(
        &mut self,
        d: &mut SendStream<Bytes>,
        len: Option<u64>,
    ) -> Result<(), Fail> {
        let mut left = len.unwrap_or(u64::MAX);
        loop {
            if !self.buf.is_empty() {
                let n = (self.buf.len() as u64).min(left) as usize;
                let chunk = Bytes::copy_from_slice(&self.buf[..n]);
                self.buf.drain(..n);
                left -= n as u64;
                send_chunk(d, chunk).await.map_err(|_| Fail::Down)?;
            }
            if left == 0 {
                break;
            }
            match fill(&mut self.up, &mut self.buf, 64 * 1024, self.idle).await {
                Ok(0) if len.is_none() => break,
                Ok(0) => return Err(Fail::Late("upstream closed mid-body".into())),
                Ok(_) => {}
                Err(e) => return Err(Fail::Late(format!("upstream body: {e}"))),
            }
        }
        d.send_data(Bytes::new(), true).map_err(|_| Fail::Down)
    }

    async fn relay_chunked(&mut self, d: &mut SendStream<Bytes>) -> Result<(), Fail> {
        let mut dec = Dechunker::new(MAX_TRAILER_BYTES);
        loop {
            let (n, step) = dec
                .step(&self.buf)
                .map_err(|e| Fail::Late(format!("upstream body: {e}")))?;
            match step {
                Step::Data(r) => {
                    let chunk = Bytes::copy_from_slice(&self.buf[r]);
                    self.buf.drain(..n);
                    send_chunk(d, chunk).await.map_err(|_| Fail::Down)?;
                }
                Step::Framing => {
                    self.buf.drain(..n);
                }
                Step::Done => {
                    self.buf.drain(..n);
                    let trailers = std::mem::take(&mut dec.trailers);
                    return if trailers.is_empty() {
                        d.send_data(Bytes::new(), true)
                    } else {
                        d.send_trailers(trailers)
                    }
                    .map_err(|_| Fail::Down);
                }
                Step::NeedMore => {
                    match fill(&mut self.up, &mut self.buf, 64 * 1024, self.idle).await {
                        Ok(0) => return Err(Fail::Late("upstream closed mid-body".into())),
                        Ok(_) => {}
                        Err(e) => return Err(Fail::Late(format!("upstream body: {e}"))),
                    }
                }
            }
        }
    }
}
