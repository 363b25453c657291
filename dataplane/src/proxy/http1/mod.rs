//! HTTP/1.1 reverse proxy: one task per client connection, requests handled in order.
//!
//! Lifetime of a request: read a head (header-read timeout, size limit -> 431) -> parse with
//! httparse -> route on the current snapshot (loaded again only when its version changed) ->
//! local answer (direct response, redirect, error) or forward: take a pooled upstream connection
//! or connect, write the rewritten head (hop-by-hop fields dropped, X-Forwarded-*, x-request-id),
//! stream the body (content-length or chunked, never buffered whole), read the response head
//! (route timeout -> 504), stream the response body back, return the upstream connection to the
//! pool when the exchange left it reusable. `Upgrade` (WebSocket) becomes a byte tunnel after 101.
//! A cluster with `protocol: http2` gets the request translated ([`to_h2`]).

pub mod chunked;
pub mod dechunk;
pub mod head;
mod respond;
mod to_h2;

use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::access_log::{self, Entry};
use crate::config::ClusterProtocol;
use crate::error::ProxyError;
use crate::route::{self, Action, PathMatch, RequestHead, Route};
use crate::snapshot::{Listener, ListenerKind, Snapshot};
use crate::upstream::Cluster;
use crate::upstream::pool::{self, connect_to};
use crate::worker::{BufPool, WorkerCtx};

use self::chunked::ChunkedScanner;
use self::head::{Framing, HeadInfo, put_header};
use super::io::{BodyKind, CopyError, copy_body, fill, take_whole_body, write_all};
use super::stream::Stream;

/// Initial size of a connection's read buffer (grows up to the head limit when needed).
const READ_BUF: usize = 2048;

/// Largest trailer section accepted in a chunked body.
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Per-connection state, reused across the requests of a keep-alive connection.
struct Conn {
    stream: Stream,
    peer: SocketAddr,
    /// The mTLS peer's identity and the peer header's value (`By=..;URI=..`), when the
    /// listener carries it.
    identity: Option<super::PeerIdentity>,
    /// Bytes read from the client not yet consumed (front = next unread byte).
    buf: Vec<u8>,
    /// Head being written to the other side.
    out: Vec<u8>,
    /// Bytes read from the upstream not yet consumed.
    ubuf: Vec<u8>,
    /// Body copy buffer, allocated on the first body.
    scratch: Vec<u8>,
    /// Bytes received from / sent to the client for the current request (access log).
    rx: u64,
    tx: u64,
}

/// Writes `conn.out` to the client, counting the bytes.
async fn send_out(conn: &mut Conn) -> std::io::Result<()> {
    conn.tx += conn.out.len() as u64;
    write_all(&mut conn.stream, &mut conn.out).await
}

/// Header slots for httparse, one set per worker (parsing never spans an await), so parsing
/// allocates nothing and idle connections hold none.
#[derive(Default)]
pub struct HeaderStore(Vec<httparse::Header<'static>>);

impl HeaderStore {
    /// An empty vector with room for `n` headers (its spare capacity is what httparse fills).
    pub fn take<'b>(&mut self, n: usize) -> Vec<httparse::Header<'b>> {
        let mut v = std::mem::take(&mut self.0);
        v.clear();
        v.reserve(n);
        v
    }

    pub fn put(&mut self, mut v: Vec<httparse::Header<'_>>) {
        v.clear();
        // Same size and alignment: collects in place, keeping the allocation.
        self.0 = v.into_iter().map(|_| httparse::EMPTY_HEADER).collect();
    }
}

/// What a parsed request turned into.
enum Plan<'s> {
    Local {
        status: u16,
        body: &'s [u8],
        location: Option<String>,
        close: bool,
    },
    Forward {
        route: &'s Route,
        cluster: Arc<Cluster>,
    },
}

struct Request {
    info: HeadInfo,
    is_head: bool,
    http10: bool,
    request_id: [u8; 36],
    /// (method, path) kept only when the access log is on.
    log: Option<(String, String)>,
}

/// Serves an HTTP/1.1 client connection. `initial` holds bytes already read (protocol sniffing).
pub async fn serve(
    ctx: Rc<WorkerCtx>,
    mut snap: Arc<Snapshot>,
    mut listener: Arc<Listener>,
    stream: Stream,
    peer: SocketAddr,
    initial: Vec<u8>,
) {
    let identity = super::PeerIdentity::of(&stream, &snap);
    let mut conn = Conn {
        stream,
        peer,
        identity,
        buf: if initial.capacity() >= READ_BUF {
            initial
        } else {
            initial_buf(initial)
        },
        out: Vec::new(),
        ubuf: Vec::new(),
        scratch: Vec::new(),
        rx: 0,
        tx: 0,
    };
    let mut first = true;
    loop {
        if ctx.store.version() != snap.version {
            // Follow the new config; if this listener was removed, the established connection
            // keeps serving on the config it started with until the client closes it.
            let new = ctx.store.load_full();
            if let Some(l) = new.listeners.get(&listener.name) {
                listener = l.clone();
                snap = new;
            }
        }
        let keep = match one_request(&ctx, &snap, &listener, &mut conn, first).await {
            Next::KeepAlive => true,
            Next::Close => false,
            Next::Upgrade(upstream) => {
                let client_pending = std::mem::take(&mut conn.buf);
                let up_pending = std::mem::take(&mut conn.ubuf);
                super::tcp::tunnel(
                    conn.stream,
                    upstream,
                    client_pending,
                    up_pending,
                    listener.timeouts.idle,
                )
                .await;
                return;
            }
        };
        if !keep || ctx.draining.is_fired() {
            return;
        }
        // Between requests an idle connection keeps only its read buffer: the rest goes back
        // to the worker's pool (reused by the next request of any connection, no allocation).
        ctx.bufs.put_small(std::mem::take(&mut conn.out));
        if conn.ubuf.is_empty() {
            ctx.bufs.put_small(std::mem::take(&mut conn.ubuf));
        }
        ctx.bufs.put_copy(std::mem::take(&mut conn.scratch));
        first = false;
    }
}

fn initial_buf(initial: Vec<u8>) -> Vec<u8> {
    let mut v = Vec::with_capacity(READ_BUF);
    v.extend_from_slice(&initial);
    v
}

enum Next {
    KeepAlive,
    Close,
    Upgrade(Stream),
}

/// Reads until `conn.buf` holds a complete request head. `Ok(None)`: the client went away (or
/// idled out) between requests, nothing to answer.
async fn read_head(
    ctx: &WorkerCtx,
    l: &Listener,
    conn: &mut Conn,
    first: bool,
) -> Result<Option<()>, ProxyError> {
    let max = l.limits.max_request_head_bytes;
    if conn.buf.is_empty() {
        // Idle between requests: wait for the first byte, or the drain, or the idle timeout.
        let wait = if first {
            l.timeouts.header_read
        } else {
            l.timeouts.keepalive_idle
        };
        let drain = ctx.draining.wait();
        let got = monoio::select! {
            r = fill(&mut conn.stream, &mut conn.buf, READ_BUF, wait) => r,
            _ = drain => return Ok(None),
        };
        match got {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
    let deadline = Instant::now() + l.timeouts.header_read;
    loop {
        if head_complete(&conn.buf) {
            return Ok(Some(()));
        }
        if conn.buf.len() >= max {
            return Err(ProxyError::HeadTooLarge);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ProxyError::DownstreamTimeout);
        }
        let spare = (max - conn.buf.len()).min(16 * 1024);
        match fill(&mut conn.stream, &mut conn.buf, spare, left).await {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(ProxyError::DownstreamTimeout);
            }
            Err(_) => return Ok(None),
        }
    }
}

/// The head ends at the first CRLFCRLF (or LFLF); leading empty lines are tolerated by httparse.
fn head_complete(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n")
}

async fn one_request(
    ctx: &Rc<WorkerCtx>,
    snap: &Arc<Snapshot>,
    l: &Arc<Listener>,
    conn: &mut Conn,
    first: bool,
) -> Next {
    let start = Instant::now();
    conn.rx = 0;
    conn.tx = 0;
    let head = read_head(ctx, l, conn, first).await;
    if conn.out.capacity() == 0 {
        conn.out = ctx.bufs.get_small();
    }
    match head {
        Ok(Some(())) => {}
        Ok(None) => return Next::Close,
        Err(e) => {
            tracing::debug!(listener = %l.name, client = %conn.peer, error = %e, "rejecting request head");
            ctx.stats.record_response(e.status());
            respond::error(&mut conn.out, &e, true, None);
            let _ = send_out(conn).await;
            return Next::Close;
        }
    }
    let ListenerKind::Http { routes } = &l.kind else {
        return Next::Close;
    };

    // --- Parse and plan (synchronous; borrows the read buffer) ---
    let mut slots = ctx.headers.borrow_mut().take(l.limits.max_headers);
    let mut parsed = httparse::Request::new(&mut []);
    let head_len = match parsed.parse_with_uninit_headers(&conn.buf, slots.spare_capacity_mut()) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return fail_head(
                ctx,
                l,
                conn,
                ProxyError::BadRequest("malformed request head"),
            )
            .await;
        }
        Err(httparse::Error::TooManyHeaders) => {
            return fail_head(ctx, l, conn, ProxyError::HeadTooLarge).await;
        }
        Err(_) => {
            return fail_head(
                ctx,
                l,
                conn,
                ProxyError::BadRequest("malformed request head"),
            )
            .await;
        }
    };
    conn.rx = head_len as u64;
    if head_len > l.limits.max_request_head_bytes {
        return fail_head(ctx, l, conn, ProxyError::HeadTooLarge).await;
    }
    let method = parsed.method.unwrap_or("GET");
    let target = parsed.path.unwrap_or("/");
    let version = parsed.version.unwrap_or(1);
    let headers: &[httparse::Header<'_>] = parsed.headers;
    if method == "CONNECT" {
        return fail_head(
            ctx,
            l,
            conn,
            ProxyError::MethodNotAllowed("CONNECT is not supported"),
        )
        .await;
    }
    let info = match head::request_info(version, headers) {
        Ok(i) => i,
        Err(e) => return fail_head(ctx, l, conn, e).await,
    };
    let (host, path_and_query) = match split_target(target, headers) {
        Ok(v) => v,
        Err(e) => return fail_head(ctx, l, conn, e).await,
    };
    if version == 1 && host.is_none() {
        return fail_head(ctx, l, conn, ProxyError::BadRequest("missing host header")).await;
    }
    let host = host.unwrap_or("");
    let path = path_and_query.split('?').next().unwrap_or("/");
    let mut req = Request {
        info,
        is_head: method == "HEAD",
        http10: version == 0,
        request_id: [0u8; 36],
        log: snap
            .access_log
            .as_ref()
            .map(|_| (method.to_string(), path_and_query.to_string())),
    };
    match headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("x-request-id"))
    {
        Some(h) if h.value.len() == 36 => req.request_id.copy_from_slice(h.value),
        _ => ctx.request_id(&mut req.request_id),
    }

    let plan = match route::find(
        routes,
        &RequestHead {
            method,
            host,
            path,
            headers,
            peer: conn.identity.as_ref().map(|i| &*i.id),
        },
    ) {
        None => Err(ProxyError::NoRoute),
        Some(r) => super::authorize(l, r, conn.identity.as_ref(), method, path)
            .map(|()| plan_route(r, ctx, host, path_and_query)),
    };
    if let Ok(Plan::Forward { route, .. }) = &plan {
        write_upstream_head(
            &mut conn.out,
            method,
            route,
            path_and_query,
            host,
            headers,
            &req,
            &Forwarded {
                client: conn.peer,
                https: l.tls.is_some(),
                peer_header: l.tls.as_ref().and_then(|t| t.peer_header.as_deref()),
                identity: conn.identity.as_ref(),
            },
        );
    }
    ctx.headers.borrow_mut().put(slots);
    conn.buf.drain(..head_len);
    let plan = match plan {
        Ok(p) => p,
        Err(e) => {
            if let ProxyError::Forbidden(policy) = &e {
                ctx.stats.policy_denied();
                tracing::debug!(listener = %l.name, client = %conn.peer, peer = ?conn.identity.as_ref().map(|i| i.id.to_string()), %policy, "request denied by policy");
            }
            let close = req.info.framing.has_body() || !req.info.keep_alive;
            respond::error(&mut conn.out, &e, close, Some(&req.request_id));
            return finish_local(
                ctx,
                snap,
                l,
                conn,
                &req,
                start,
                e.status(),
                None,
                close,
                Some(e.to_string()),
            )
            .await;
        }
    };
    let (route, cluster) = match plan {
        Plan::Local {
            status,
            body,
            location,
            close,
        } => {
            let close = close || req.info.framing.has_body() || !req.info.keep_alive;
            respond::local(
                &mut conn.out,
                status,
                body,
                location.as_deref(),
                close,
                req.is_head,
                &req.request_id,
            );
            return finish_local(ctx, snap, l, conn, &req, start, status, None, close, None).await;
        }
        Plan::Forward { route, cluster } => (route, cluster),
    };
    if let Framing::Length(n) = req.info.framing {
        let limit = l.limits.max_request_body_bytes;
        if limit > 0 && n > limit {
            let e = ProxyError::BodyTooLarge;
            respond::error(&mut conn.out, &e, true, Some(&req.request_id));
            return finish_local(
                ctx,
                snap,
                l,
                conn,
                &req,
                start,
                413,
                Some(&cluster),
                true,
                None,
            )
            .await;
        }
    }
    // --- Forward ---
    let result = if cluster.protocol == ClusterProtocol::Http2 {
        to_h2::forward(ctx, l, route, &cluster, conn, &mut req).await
    } else {
        forward(ctx, l, route, &cluster, conn, &mut req).await
    };
    let (status, endpoint, next, err) = match result {
        Ok(done) => (done.status, Some(done.endpoint), done.next, None),
        Err(f) => {
            tracing::debug!(listener = %l.name, route = %route.id, cluster = %cluster.name, error = %f.err, "request failed");
            let status = f.err.status();
            if !f.response_started {
                respond::error(&mut conn.out, &f.err, true, Some(&req.request_id));
                let _ = send_out(conn).await;
            }
            (status, f.endpoint, Next::Close, Some(f.err.to_string()))
        }
    };
    ctx.stats.record_response(status);
    if let (Some(log), Some((m, p))) = (&snap.access_log, &req.log) {
        log.log(&Entry {
            time: access_log::now_rfc3339(),
            listener: &l.name,
            protocol: "http1",
            client: conn.peer,
            method: Some(m),
            path: Some(p),
            route: Some(&route.id),
            cluster: Some(&cluster.name),
            endpoint,
            status: Some(status),
            bytes_received: conn.rx,
            bytes_sent: conn.tx,
            duration_ms: access_log::millis(start.elapsed()),
            request_id: std::str::from_utf8(&req.request_id).ok(),
            error: err,
        });
    }
    next
}

async fn fail_head(ctx: &WorkerCtx, l: &Listener, conn: &mut Conn, e: ProxyError) -> Next {
    ctx.stats.record_response(e.status());
    tracing::debug!(listener = %l.name, client = %conn.peer, error = %e, "rejecting request");
    respond::error(&mut conn.out, &e, true, None);
    let _ = send_out(conn).await;
    Next::Close
}

#[allow(clippy::too_many_arguments)]
async fn finish_local(
    ctx: &WorkerCtx,
    snap: &Snapshot,
    l: &Listener,
    conn: &mut Conn,
    req: &Request,
    start: Instant,
    status: u16,
    cluster: Option<&Arc<Cluster>>,
    close: bool,
    error: Option<String>,
) -> Next {
    ctx.stats.record_response(status);
    let ok = send_out(conn).await.is_ok();
    if let (Some(log), Some((m, p))) = (&snap.access_log, &req.log) {
        log.log(&Entry {
            time: access_log::now_rfc3339(),
            listener: &l.name,
            protocol: "http1",
            client: conn.peer,
            method: Some(m),
            path: Some(p),
            route: None,
            cluster: cluster.map(|c| &*c.name),
            endpoint: None,
            status: Some(status),
            bytes_received: conn.rx,
            bytes_sent: conn.tx,
            duration_ms: access_log::millis(start.elapsed()),
            request_id: std::str::from_utf8(&req.request_id).ok(),
            error,
        });
    }
    if ok && !close {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// `(host, path?query)` from the request target: origin-form uses Host; absolute-form carries both.
fn split_target<'a>(
    target: &'a str,
    headers: &[httparse::Header<'a>],
) -> Result<(Option<&'a str>, &'a str), ProxyError> {
    let host_header = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .and_then(|h| std::str::from_utf8(h.value).ok());
    if target.starts_with('/') {
        return Ok((host_header.map(str::trim), target));
    }
    for scheme in ["http://", "https://"] {
        if let Some(rest) = target
            .get(..scheme.len())
            .filter(|s| s.eq_ignore_ascii_case(scheme))
            .map(|_| &target[scheme.len()..])
        {
            let (auth, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            return Ok((Some(auth), path));
        }
    }
    if target == "*" {
        return Ok((host_header, "*"));
    }
    Err(ProxyError::BadRequest("invalid request target"))
}

fn plan_route<'s>(r: &'s Route, ctx: &WorkerCtx, host: &str, path_and_query: &str) -> Plan<'s> {
    match &r.action {
        Action::Direct { status, body } => Plan::Local {
            status: *status,
            body,
            location: None,
            close: false,
        },
        Action::Redirect(rd) => {
            let scheme = rd.scheme.as_deref().unwrap_or("http");
            let host = rd.host.as_deref().unwrap_or(host);
            let location = match &rd.path {
                Some(p) => match path_and_query.split_once('?') {
                    Some((_, q)) => format!("{scheme}://{host}{p}?{q}"),
                    None => format!("{scheme}://{host}{p}"),
                },
                None => format!("{scheme}://{host}{path_and_query}"),
            };
            Plan::Local {
                status: rd.status,
                body: b"",
                location: Some(location),
                close: false,
            }
        }
        action => match action.cluster(ctx.balancer.random_u32()) {
            Some(c) => Plan::Forward {
                route: r,
                cluster: c.clone(),
            },
            None => Plan::Local {
                status: 503,
                body: b"no cluster",
                location: None,
                close: false,
            },
        },
    }
}

#[allow(clippy::too_many_arguments)]
/// What the upstream learns about the client.
struct Forwarded<'a> {
    client: SocketAddr,
    /// The client spoke TLS to us.
    https: bool,
    /// Header carrying the mTLS peer identity (listener setting).
    peer_header: Option<&'a str>,
    identity: Option<&'a super::PeerIdentity>,
}

#[allow(clippy::too_many_arguments)]
fn write_upstream_head(
    out: &mut Vec<u8>,
    method: &str,
    route: &Route,
    path_and_query: &str,
    host: &str,
    headers: &[httparse::Header<'_>],
    req: &Request,
    fwd: &Forwarded<'_>,
) {
    let peer_header = fwd.peer_header;
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    match (&route.prefix_rewrite, &route.matcher.path) {
        (Some(rw), PathMatch::Prefix(p)) if path_and_query.starts_with(p.as_str()) => {
            out.extend_from_slice(rw.as_bytes());
            out.extend_from_slice(&path_and_query.as_bytes()[p.len()..]);
        }
        _ => out.extend_from_slice(path_and_query.as_bytes()),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let has_host = headers.iter().any(|h| h.name.eq_ignore_ascii_case("host"));
    if !has_host && !host.is_empty() {
        put_header(out, b"host", host.as_bytes());
    }
    head::copy_headers(
        out,
        headers,
        &route.request_headers,
        &[
            "x-forwarded-for",
            "x-request-id",
            "content-length",
            peer_header.unwrap_or("x-request-id"),
        ],
    );
    // The peer identity replaces whatever the client sent under that name.
    if let (Some(name), Some(id)) = (peer_header, fwd.identity) {
        put_header(out, name.as_bytes(), id.header.as_bytes());
    }
    // X-Forwarded-For: the existing chain, then this client.
    out.extend_from_slice(b"x-forwarded-for: ");
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
    {
        out.extend_from_slice(head::trim(h.value));
        out.extend_from_slice(b", ");
    }
    let _ = write!(out, "{}\r\n", fwd.client.ip());
    if !headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("x-forwarded-proto"))
    {
        out.extend_from_slice(if fwd.https {
            b"x-forwarded-proto: https\r\n"
        } else {
            b"x-forwarded-proto: http\r\n"
        });
    }
    put_header(out, b"x-request-id", &req.request_id);
    head::framing_headers(out, req.info.framing);
    if req.info.upgrade {
        for h in headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("upgrade"))
        {
            put_header(out, b"upgrade", h.value);
        }
        out.extend_from_slice(b"connection: upgrade\r\n");
    }
    if req.info.expect_continue {
        out.extend_from_slice(b"expect: 100-continue\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

struct Done {
    status: u16,
    endpoint: SocketAddr,
    next: Next,
}

struct Failed {
    err: ProxyError,
    response_started: bool,
    endpoint: Option<SocketAddr>,
}

fn failed(err: ProxyError, endpoint: Option<SocketAddr>) -> Failed {
    Failed {
        err,
        response_started: false,
        endpoint,
    }
}

/// An upstream connection for one exchange.
struct Upstream {
    stream: Stream,
    addr: SocketAddr,
    reused: bool,
}

async fn acquire(ctx: &WorkerCtx, cluster: &Cluster, fresh: bool) -> Result<Upstream, ProxyError> {
    let mut last = ProxyError::NoHealthyUpstream;
    for _ in 0..cluster.endpoints.len().clamp(1, 2) {
        let now = Instant::now();
        let Some(addr) = ctx.balancer.pick(cluster, now) else {
            return Err(last);
        };
        let key = pool::key(cluster, addr);
        if !fresh && let Some(stream) = ctx.pool.take(key, cluster.pool.idle_timeout.get(), now) {
            return Ok(Upstream {
                stream,
                addr,
                reused: true,
            });
        }
        match connect_to(cluster, addr, false).await {
            Ok(stream) => {
                ctx.balancer.report_success(addr);
                return Ok(Upstream {
                    stream,
                    addr,
                    reused: false,
                });
            }
            Err(e) => {
                ctx.balancer.report_failure(cluster, addr, Instant::now());
                tracing::debug!(cluster = %cluster.name, endpoint = %addr, error = %e, "upstream connect failed");
                last = if e.kind() == std::io::ErrorKind::TimedOut {
                    ProxyError::UpstreamTimeout
                } else {
                    ProxyError::UpstreamConnect(e)
                };
            }
        }
    }
    Err(last)
}

/// Sends the request (head in `conn.out`) upstream and relays the response.
async fn forward(
    ctx: &WorkerCtx,
    l: &Listener,
    route: &Route,
    cluster: &Arc<Cluster>,
    conn: &mut Conn,
    req: &mut Request,
) -> Result<Done, Failed> {
    let mut body = match req.info.framing {
        Framing::Length(n) => BodyKind::Length(n),
        Framing::Chunked => BodyKind::Chunked(ChunkedScanner::new(MAX_TRAILER_BYTES)),
        Framing::None | Framing::Close => BodyKind::Length(0),
    };
    let body_limit = l.limits.max_request_body_bytes;
    if conn.ubuf.capacity() == 0 {
        conn.ubuf = ctx.bufs.get_small();
    }
    // Small bodies already read go out with the head in one write, which also makes the request
    // replayable on a fresh connection if a pooled one turns out dead.
    let whole = if req.info.expect_continue {
        matches!(body, BodyKind::Length(0))
    } else {
        let before = conn.out.len();
        let whole = take_whole_body(&mut body, &mut conn.buf, &mut conn.out)
            .map_err(|e| failed(body_error(e), None))?;
        conn.rx += (conn.out.len() - before) as u64;
        whole
    };
    if let BodyKind::Chunked(s) = &body
        && body_limit > 0
        && s.payload > body_limit
    {
        return Err(failed(ProxyError::BodyTooLarge, None));
    }
    let timeout = route.timeout.unwrap_or(l.timeouts.request);
    let timeout = if timeout.is_zero() {
        l.timeouts.idle
    } else {
        timeout
    };
    let deadline = Instant::now() + timeout;

    let mut up = acquire(ctx, cluster, false)
        .await
        .map_err(|e| failed(e, None))?;
    let _in_flight = ctx.balancer.start_request(up.addr);
    let mut attempt = 0;
    let (status, info, head_len) = loop {
        attempt += 1;
        let sent = write_all(&mut up.stream, &mut conn.out).await;
        let mut result = match sent {
            Err(e) => Err(ProxyError::UpstreamIo(e)),
            Ok(()) => Ok(()),
        };
        if result.is_ok() && !whole && !req.info.expect_continue {
            result = send_body(
                &ctx.bufs,
                conn,
                &mut up,
                &mut body,
                l.timeouts.idle,
                body_limit,
            )
            .await;
            if let Err(ProxyError::BodyTooLarge) = &result {
                return Err(failed(ProxyError::BodyTooLarge, Some(up.addr)));
            }
        }
        if let Err(e) = result {
            if up.reused && whole && attempt == 1 {
                up = acquire(ctx, cluster, true)
                    .await
                    .map_err(|e| failed(e, None))?;
                continue;
            }
            return Err(failed(e, Some(up.addr)));
        }
        match read_response_head(ctx, conn, &mut up, l, req, deadline).await {
            Ok(Some((status, _, head_len))) if status == 100 && req.info.expect_continue => {
                // Relay the 100 and send the body the client was holding back.
                conn.ubuf.drain(..head_len);
                conn.out.clear();
                conn.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                send_out(conn)
                    .await
                    .map_err(|e| failed(ProxyError::DownstreamIo(e), Some(up.addr)))?;
                req.info.expect_continue = false;
                send_body(
                    &ctx.bufs,
                    conn,
                    &mut up,
                    &mut body,
                    l.timeouts.idle,
                    body_limit,
                )
                .await
                .map_err(|e| failed(e, Some(up.addr)))?;
                match read_response_head(ctx, conn, &mut up, l, req, deadline).await {
                    Ok(Some(h)) => break h,
                    Ok(None) => return Err(failed(ProxyError::UpstreamClosed, Some(up.addr))),
                    Err(e) => return Err(failed(e, Some(up.addr))),
                }
            }
            Ok(Some(h)) => {
                if req.info.expect_continue {
                    // Final answer without 100: the client's body was never read, so close after.
                    req.info.keep_alive = false;
                    req.info.expect_continue = false;
                }
                break h;
            }
            Ok(None) if up.reused && whole && attempt == 1 => {
                // A pooled connection the upstream had closed: replay once on a fresh one
                // (the whole request is still in `conn.out`).
                up = acquire(ctx, cluster, true)
                    .await
                    .map_err(|e| failed(e, None))?;
                continue;
            }
            Ok(None) => return Err(failed(ProxyError::UpstreamClosed, Some(up.addr))),
            Err(e) => return Err(failed(e, Some(up.addr))),
        }
    };
    relay_response(
        ctx, l, route, cluster, conn, req, up, status, info, head_len,
    )
    .await
}

async fn send_body(
    bufs: &BufPool,
    conn: &mut Conn,
    up: &mut Upstream,
    body: &mut BodyKind,
    idle: Duration,
    limit: u64,
) -> Result<(), ProxyError> {
    copy_body(
        bufs,
        &mut conn.stream,
        &mut conn.buf,
        &mut up.stream,
        body,
        &mut conn.scratch,
        idle,
        limit,
    )
    .await
    .map(|n| conn.rx += n)
    .map_err(|e| match e {
        CopyError::Write(e) => ProxyError::UpstreamIo(e),
        other => body_error(other),
    })
}

fn body_error(e: CopyError) -> ProxyError {
    match e {
        CopyError::Read(e) => ProxyError::DownstreamIo(e),
        CopyError::ReadTimeout => ProxyError::DownstreamTimeout,
        CopyError::Eof => ProxyError::BadRequest("client closed before the body was complete"),
        CopyError::Write(e) => ProxyError::UpstreamIo(e),
        CopyError::Chunked(_) => ProxyError::BadRequest("invalid chunked body"),
        CopyError::TooLarge => ProxyError::BodyTooLarge,
    }
}

/// Reads a final (or 100) response head into `conn.ubuf`, relaying other 1xx heads to the client.
/// `Ok(None)`: the upstream closed before sending a byte.
async fn read_response_head(
    ctx: &WorkerCtx,
    conn: &mut Conn,
    up: &mut Upstream,
    l: &Listener,
    req: &Request,
    deadline: Instant,
) -> Result<Option<(u16, HeadInfo, usize)>, ProxyError> {
    let max = l.limits.max_response_head_bytes;
    loop {
        if !conn.ubuf.is_empty() && head_complete(&conn.ubuf) {
            let mut slots = ctx.headers.borrow_mut().take(l.limits.max_headers);
            let mut resp = httparse::Response::new(&mut []);
            let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut resp,
                &conn.ubuf,
                slots.spare_capacity_mut(),
            );
            let n = match parsed {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) | Err(_) => {
                    return Err(ProxyError::UpstreamProtocol("malformed response head"));
                }
            };
            let status = resp.code.unwrap_or(0);
            let info =
                head::response_info(status, resp.version.unwrap_or(1), req.is_head, resp.headers);
            ctx.headers.borrow_mut().put(slots);
            let info = info?;
            if (102..200).contains(&status) {
                // Informational (103 Early Hints...): pass on as is, then wait for the final head.
                conn.out.clear();
                conn.out.extend_from_slice(&conn.ubuf[..n]);
                conn.ubuf.drain(..n);
                send_out(conn).await.map_err(ProxyError::DownstreamIo)?;
                continue;
            }
            if status == 101 && !req.info.upgrade {
                return Err(ProxyError::UpstreamProtocol("unexpected 101 response"));
            }
            return Ok(Some((status, info, n)));
        }
        if conn.ubuf.len() >= max {
            return Err(ProxyError::UpstreamProtocol("response head too large"));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ProxyError::UpstreamTimeout);
        }
        let spare = (max - conn.ubuf.len()).min(2048);
        match fill(&mut up.stream, &mut conn.ubuf, spare, left).await {
            Ok(0) if conn.ubuf.is_empty() => return Ok(None),
            Ok(0) => return Err(ProxyError::UpstreamClosed),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(ProxyError::UpstreamTimeout);
            }
            Err(e) if conn.ubuf.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Ok(None);
            }
            Err(e) => return Err(ProxyError::UpstreamIo(e)),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn relay_response(
    ctx: &WorkerCtx,
    l: &Listener,
    route: &Route,
    cluster: &Arc<Cluster>,
    conn: &mut Conn,
    req: &Request,
    mut up: Upstream,
    status: u16,
    info: HeadInfo,
    head_len: usize,
) -> Result<Done, Failed> {
    let upgrade = status == 101;
    let client_keep = req.info.keep_alive && info.framing != Framing::Close && !upgrade;
    // Response head for the client.
    {
        let mut slots = ctx.headers.borrow_mut().take(l.limits.max_headers);
        let mut resp = httparse::Response::new(&mut []);
        let _ = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut resp,
            &conn.ubuf[..head_len],
            slots.spare_capacity_mut(),
        );
        let out = &mut conn.out;
        out.clear();
        head::status_line(out, status);
        // With no body (HEAD, 204, 304) the upstream's content-length describes the resource and
        // passes through; otherwise Shoal writes the framing itself.
        let skip: &[&str] = if info.framing == Framing::None {
            &[]
        } else {
            &["content-length"]
        };
        head::copy_headers(out, resp.headers, &route.response_headers, skip);
        head::framing_headers(out, info.framing);
        if upgrade {
            for h in resp
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("upgrade"))
            {
                put_header(out, b"upgrade", h.value);
            }
            out.extend_from_slice(b"connection: upgrade\r\n");
        } else if !client_keep {
            out.extend_from_slice(b"connection: close\r\n");
        } else if req.http10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        ctx.headers.borrow_mut().put(slots);
    }
    conn.ubuf.drain(..head_len);
    let started = |err| Failed {
        err,
        response_started: true,
        endpoint: Some(up.addr),
    };
    let mut body = match info.framing {
        Framing::None => BodyKind::Length(0),
        Framing::Length(n) => BodyKind::Length(n),
        Framing::Chunked => BodyKind::Chunked(ChunkedScanner::new(MAX_TRAILER_BYTES)),
        Framing::Close => BodyKind::Close,
    };
    // A body already read with the head goes out in the same write (one syscall, one packet).
    let whole = !upgrade
        && take_whole_body(&mut body, &mut conn.ubuf, &mut conn.out)
            .map_err(|_| started(ProxyError::UpstreamProtocol("invalid chunked body")))?;
    if let Err(e) = send_out(conn).await {
        return Err(started(ProxyError::DownstreamIo(e)));
    }
    if upgrade {
        return Ok(Done {
            status,
            endpoint: up.addr,
            next: Next::Upgrade(up.stream),
        });
    }
    let copied = if whole {
        Ok(0)
    } else {
        copy_body(
            &ctx.bufs,
            &mut up.stream,
            &mut conn.ubuf,
            &mut conn.stream,
            &mut body,
            &mut conn.scratch,
            l.timeouts.idle,
            0,
        )
        .await
    };
    if let Ok(n) = copied {
        conn.tx += n;
    }
    if let Err(e) = copied {
        let err = match e {
            CopyError::Write(e) => ProxyError::DownstreamIo(e),
            CopyError::Read(e) => ProxyError::UpstreamIo(e),
            CopyError::ReadTimeout => ProxyError::UpstreamTimeout,
            CopyError::Eof => ProxyError::UpstreamClosed,
            CopyError::Chunked(_) | CopyError::TooLarge => {
                ProxyError::UpstreamProtocol("invalid chunked body")
            }
        };
        return Err(started(err));
    }
    // Reusable: complete framed exchange, upstream did not ask to close, nothing extra buffered.
    if info.keep_alive && conn.ubuf.is_empty() {
        ctx.pool.put(
            pool::key(cluster, up.addr),
            up.stream,
            cluster.pool.max_idle_per_endpoint,
            cluster.pool.idle_timeout.get(),
        );
    } else {
        conn.ubuf.clear();
    }
    Ok(Done {
        status,
        endpoint: up.addr,
        next: if client_keep {
            Next::KeepAlive
        } else {
            Next::Close
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let host = [httparse::Header {
            name: "Host",
            value: b"a.example:8080",
        }];
        assert_eq!(
            split_target("/x?y", &host).unwrap(),
            (Some("a.example:8080"), "/x?y")
        );
        assert_eq!(
            split_target("http://b.example/p?q", &host).unwrap(),
            (Some("b.example"), "/p?q")
        );
        assert_eq!(
            split_target("HTTP://b.example", &[]).unwrap(),
            (Some("b.example"), "/")
        );
        assert!(split_target("nonsense", &host).is_err());
    }

    #[test]
    fn head_end_detection() {
        assert!(head_complete(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!head_complete(b"GET / HTTP/1.1\r\nHost: a\r\n"));
        assert!(head_complete(b"GET / HTTP/1.1\nHost: a\n\n"));
    }
}
