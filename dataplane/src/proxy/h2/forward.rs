//! The exchange of one downstream HTTP/2 request with an HTTP/2 upstream.
//!
//! Head: connection-specific fields dropped, route header ops applied, `x-forwarded-for`,
//! `x-forwarded-proto` and `x-request-id` set, `:path` rewritten by `prefix_rewrite`. The request
//! body and the response run at the same time (bidirectional streaming), each relayed frame by
//! frame with flow control ([`super::relay`]).
//!
//! Deadlines: a gRPC call ends at `min(grpc-timeout, route timeout)` (no deadline when neither
//! is set: streams are not cut by the listener's default request timeout); other requests wait
//! at most the route timeout (or `timeouts.request`) for the response head. A request the upstream
//! refused unprocessed (REFUSED_STREAM, or GOAWAY naming a lower last-stream-id) is sent once more
//! on another connection while its body is still held for replay. Resets travel both ways: a
//! client RST_STREAM cancels the upstream stream, an upstream reset is passed to the client.

use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::header::{CONNECTION, HOST, TE, TRANSFER_ENCODING, UPGRADE};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, Uri};

use super::relay::{RelayError, RequestBody, relay};
use super::server::ConnShared;
use super::stream::{ReqInfo, fail};
use crate::config::ClusterProtocol;
use crate::error::{ProxyError, grpc_status};
use crate::proxy::grpc;
use crate::route::{HeaderOps, PathMatch, Route};
use crate::snapshot::Listener;
use crate::upstream::Cluster;
use crate::upstream::h2pool::Lease;
use crate::worker::WorkerCtx;

/// How an exchange failed.
enum Fail {
    /// The client reset the stream or went away.
    Down,
    /// The upstream failed (reset, I/O, protocol).
    Up(h2::Error),
    /// The upstream refused the stream without processing it (`goaway`: the connection is going
    /// away; otherwise REFUSED_STREAM, the connection stays usable).
    Refused { goaway: bool },
    /// The deadline passed.
    Timeout,
    /// The request body passed the size limit.
    TooLarge,
}

/// Forwards the request; returns the status sent (if any) and an error for the access log.
#[allow(clippy::too_many_arguments)]
pub async fn forward(
    conn: &ConnShared,
    l: &Listener,
    route: &Route,
    cluster: &Arc<Cluster>,
    info: &ReqInfo,
    mut parts: Parts,
    body: RecvStream,
    mut respond: SendResponse<Bytes>,
) -> (Option<u16>, Option<String>) {
    let ctx = &conn.ctx;
    let uri = match upstream_uri(&parts, route) {
        Ok(u) => u,
        Err(e) => {
            let status = fail(&mut respond, info, &e);
            return (Some(status), Some(e.to_string()));
        }
    };
    let now = Instant::now();
    let call_deadline = if info.grpc {
        let asked = parts
            .headers
            .get("grpc-timeout")
            .and_then(|v| grpc::parse_timeout(v.as_bytes()));
        match (route.timeout, asked) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    } else {
        None
    };
    if let Some(d) = call_deadline.filter(|_| parts.headers.contains_key("grpc-timeout")) {
        // A client deadline goes on as the one Shoal enforces (possibly capped by the route); a
        // route timeout alone is Shoal's policy and is not announced.
        let ms = d.as_millis().clamp(1, 99_999_999);
        if let Ok(v) = HeaderValue::from_str(&format!("{ms}m")) {
            parts.headers.insert("grpc-timeout", v);
        }
    }
    let call_deadline = call_deadline.map(|d| now + d);
    let head_timeout = if info.grpc {
        None
    } else {
        route
            .timeout
            .or(Some(l.timeouts.request).filter(|t| !t.is_zero()))
    };
    request_headers(&mut parts.headers, &route.request_headers, conn, info);

    let limit = l.limits.max_request_body_bytes;
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if limit > 0 && declared.is_some_and(|n| n > limit) {
        let e = ProxyError::BodyTooLarge;
        let status = fail(&mut respond, info, &e);
        return (Some(status), Some(e.to_string()));
    }
    if cluster.protocol == ClusterProtocol::Http1 {
        let head_deadline = match (call_deadline, head_timeout) {
            (Some(at), _) => Some(at),
            (None, t) => t.map(|t| now + t),
        };
        return super::to_h1::forward(
            conn,
            l,
            route,
            cluster,
            info,
            &parts,
            &uri,
            body,
            respond,
            head_deadline,
        )
        .await;
    }
    let mut body = RequestBody::new(body, limit);
    let eos = body.src.is_end_stream();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let lease = match acquire(ctx, cluster).await {
            Ok(l) => l,
            Err(e) => {
                let status = fail(&mut respond, info, &e);
                return (Some(status), Some(e.to_string()));
            }
        };
        let _in_flight = ctx.balancer.start_request(lease.addr);
        let mut req = Request::new(());
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = uri.clone();
        *req.headers_mut() = parts.headers.clone();
        let (resp_fut, mut up_send) = match open_stream(&lease, req, eos, cluster).await {
            Ok(s) => s,
            Err(e) => {
                lease.mark_closed();
                if attempt == 1 {
                    continue;
                }
                let status = fail(&mut respond, info, &e);
                return (Some(status), Some(e.to_string()));
            }
        };
        let mut down: Option<SendStream<Bytes>> = None;
        let answered = Cell::new(false);
        let exchange = exchange(
            &mut respond,
            &mut down,
            &mut body,
            eos,
            resp_fut,
            &mut up_send,
            &answered,
            &route.response_headers,
            head_timeout,
        );
        let result = match call_deadline {
            Some(at) => {
                match monoio::time::timeout(at.saturating_duration_since(Instant::now()), exchange)
                    .await
                {
                    Ok(r) => r,
                    Err(_) => Err(Fail::Timeout),
                }
            }
            None => exchange.await,
        };
        let fail_kind = match result {
            Ok(status) => return (Some(status), None),
            Err(f) => f,
        };
        if let Fail::Refused { goaway } = fail_kind {
            if goaway {
                lease.mark_closed();
            }
            if attempt == 1 && (eos || body.replayable()) {
                tracing::debug!(cluster = %cluster.name, endpoint = %lease.addr, "upstream refused the stream; retrying once");
                continue;
            }
        }
        up_send.send_reset(Reason::CANCEL);
        let (status, err) = answer_failure(&mut respond, down.as_mut(), info, fail_kind);
        tracing::debug!(cluster = %cluster.name, error = ?err, "h2 exchange failed");
        return (status, err);
    }
}

/// Tells the client how the exchange failed, in the form its state allows.
fn answer_failure(
    respond: &mut SendResponse<Bytes>,
    down: Option<&mut SendStream<Bytes>>,
    info: &ReqInfo,
    f: Fail,
) -> (Option<u16>, Option<String>) {
    match (f, down) {
        (Fail::Down, Some(d)) => {
            d.send_reset(Reason::CANCEL);
            (None, Some("client reset the stream".into()))
        }
        (Fail::Down, None) => {
            respond.send_reset(Reason::CANCEL);
            (None, Some("client reset the stream".into()))
        }
        (Fail::Timeout, None) => {
            let e = ProxyError::UpstreamTimeout;
            (Some(fail(respond, info, &e)), Some(e.to_string()))
        }
        (Fail::Timeout, Some(d)) => {
            if info.grpc {
                let t = grpc::status_trailers(grpc_status::DEADLINE_EXCEEDED, "deadline exceeded");
                if d.send_trailers(t).is_err() {
                    d.send_reset(Reason::CANCEL);
                }
            } else {
                d.send_reset(Reason::CANCEL);
            }
            (None, Some(ProxyError::UpstreamTimeout.to_string()))
        }
        (Fail::Up(e), None) if e.is_reset() && e.is_remote() => {
            // The upstream reset the stream before answering: pass the reset on.
            let reason = e.reason().unwrap_or(Reason::INTERNAL_ERROR);
            respond.send_reset(reason);
            (None, Some(format!("upstream reset the stream: {reason:?}")))
        }
        (Fail::Up(e), None) => {
            let e = ProxyError::UpstreamH2(e);
            (Some(fail(respond, info, &e)), Some(e.to_string()))
        }
        (Fail::Up(e), Some(d)) if info.grpc && !e.is_reset() => {
            // The upstream connection broke mid-call (not a reset the upstream chose): end the
            // call with a status the client can act on.
            let t = grpc::status_trailers(grpc_status::UNAVAILABLE, "upstream connection lost");
            if d.send_trailers(t).is_err() {
                d.send_reset(Reason::INTERNAL_ERROR);
            }
            (None, Some(format!("upstream stream failed: {e}")))
        }
        (Fail::Up(e), Some(d)) => {
            let reason = e.reason().unwrap_or(Reason::INTERNAL_ERROR);
            d.send_reset(reason);
            (None, Some(format!("upstream stream failed: {e}")))
        }
        (Fail::TooLarge, None) => {
            let e = ProxyError::BodyTooLarge;
            (Some(fail(respond, info, &e)), Some(e.to_string()))
        }
        (Fail::TooLarge, Some(d)) => {
            if info.grpc {
                let t = grpc::status_trailers(
                    grpc_status::RESOURCE_EXHAUSTED,
                    &ProxyError::BodyTooLarge.to_string(),
                );
                if d.send_trailers(t).is_err() {
                    d.send_reset(Reason::CANCEL);
                }
            } else {
                d.send_reset(Reason::CANCEL);
            }
            (None, Some(ProxyError::BodyTooLarge.to_string()))
        }
        (Fail::Refused { .. }, _) => {
            let e = ProxyError::UpstreamClosed;
            (
                Some(fail(respond, info, &e)),
                Some("upstream refused the stream".into()),
            )
        }
    }
}

/// Runs the request body relay and the response side together until the response ends.
#[allow(clippy::too_many_arguments)]
async fn exchange(
    respond: &mut SendResponse<Bytes>,
    down: &mut Option<SendStream<Bytes>>,
    body: &mut RequestBody,
    eos: bool,
    mut resp_fut: h2::client::ResponseFuture,
    up_send: &mut SendStream<Bytes>,
    answered: &Cell<bool>,
    response_ops: &HeaderOps,
    head_timeout: Option<Duration>,
) -> Result<u16, Fail> {
    let request_side = async {
        if eos {
            Ok(())
        } else {
            body.send(up_send, answered).await
        }
    };
    let response_side = async {
        let wait_head = poll_fn(|cx| {
            if respond.poll_reset(cx).is_ready() {
                return Poll::Ready(Err(Fail::Down));
            }
            Pin::new(&mut resp_fut).poll(cx).map_err(classify)
        });
        let resp = match head_timeout {
            Some(t) => monoio::time::timeout(t, wait_head)
                .await
                .unwrap_or(Err(Fail::Timeout))?,
            None => wait_head.await?,
        };
        answered.set(true);
        let (mut head, mut up_body) = resp.into_parts();
        strip_connection_headers(&mut head.headers);
        apply_ops(&mut head.headers, response_ops);
        let status = head.status.as_u16();
        let end = up_body.is_end_stream();
        let s = respond
            .send_response(Response::from_parts(head, ()), end)
            .map_err(|_| Fail::Down)?;
        if end {
            return Ok(status);
        }
        let s = down.insert(s);
        relay(&mut up_body, s).await.map_err(|e| match e {
            RelayError::Source(e) => Fail::Up(e),
            RelayError::Dest(_) | RelayError::DestReset(_) | RelayError::TooLarge => Fail::Down,
        })?;
        Ok(status)
    };
    let mut request_side = pin!(request_side);
    let mut response_side = pin!(response_side);
    let mut request_done = eos;
    poll_fn(|cx| {
        if !request_done && let Poll::Ready(r) = request_side.as_mut().poll(cx) {
            request_done = true;
            // A failure of the upstream side shows on the response too; the client's is ours.
            match r {
                Err(RelayError::Source(_)) => return Poll::Ready(Err(Fail::Down)),
                Err(RelayError::TooLarge) => return Poll::Ready(Err(Fail::TooLarge)),
                _ => {}
            }
        }
        response_side.as_mut().poll(cx)
    })
    .await
}

/// An upstream error while waiting for the response head.
fn classify(e: h2::Error) -> Fail {
    if e.is_go_away() && e.is_remote() {
        Fail::Refused { goaway: true }
    } else if e.reason() == Some(Reason::REFUSED_STREAM) {
        Fail::Refused { goaway: false }
    } else {
        Fail::Up(e)
    }
}

/// Opens a stream on the leased connection (waiting, bounded, for a free stream slot).
pub(crate) async fn open_stream(
    lease: &Lease,
    req: Request<()>,
    eos: bool,
    cluster: &Cluster,
) -> Result<(h2::client::ResponseFuture, SendStream<Bytes>), ProxyError> {
    let ready = monoio::time::timeout(cluster.connect_timeout, lease.sender().ready())
        .await
        .map_err(|_| ProxyError::UpstreamTimeout)?;
    let mut send = ready.map_err(ProxyError::UpstreamH2)?;
    send.send_request(req, eos).map_err(ProxyError::UpstreamH2)
}

pub(crate) async fn acquire(ctx: &WorkerCtx, cluster: &Cluster) -> Result<Lease, ProxyError> {
    let mut last = ProxyError::NoHealthyUpstream;
    for _ in 0..cluster.endpoints.len().clamp(1, 2) {
        let Some(addr) = ctx.balancer.pick(cluster, Instant::now()) else {
            return Err(last);
        };
        match ctx.h2pool.lease(addr, cluster).await {
            Ok(l) => {
                if !l.reused {
                    ctx.balancer.report_success(addr);
                }
                return Ok(l);
            }
            Err(e) => {
                ctx.balancer.report_failure(cluster, addr, Instant::now());
                tracing::debug!(cluster = %cluster.name, endpoint = %addr, error = %e, "upstream h2 connect failed");
                last = ProxyError::UpstreamConnect(e);
            }
        }
    }
    Err(last)
}

/// `http://{authority}{path}` with the route's prefix rewrite applied.
pub(super) fn upstream_uri(parts: &Parts, route: &Route) -> Result<Uri, ProxyError> {
    let authority = match parts.uri.authority() {
        Some(a) => a.clone(),
        None => parts
            .headers
            .get(HOST)
            .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
            .ok_or(ProxyError::BadRequest("missing :authority"))?,
    };
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let builder = Uri::builder().scheme("http").authority(authority);
    let uri = match (&route.prefix_rewrite, &route.matcher.path) {
        (Some(rw), PathMatch::Prefix(p)) if pq.starts_with(p.as_str()) => {
            builder.path_and_query(format!("{rw}{}", &pq[p.len()..]))
        }
        _ => builder.path_and_query(pq),
    };
    uri.build()
        .map_err(|_| ProxyError::BadRequest("invalid request target"))
}

/// Fields that are connection-specific (never forwarded in HTTP/2).
pub(super) fn strip_connection_headers(h: &mut HeaderMap) {
    for name in [CONNECTION, TRANSFER_ENCODING, UPGRADE, HOST] {
        h.remove(name);
    }
    h.remove("keep-alive");
    h.remove("proxy-connection");
    if h.get(TE).is_some_and(|v| v != "trailers") {
        h.remove(TE);
    }
}

pub(crate) fn apply_ops(h: &mut HeaderMap, ops: &HeaderOps) {
    for name in &ops.remove {
        h.remove(name.as_str());
    }
    for (name, value) in &ops.add {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            h.append(n, v);
        }
    }
}

/// The request head as the upstream sees it.
pub(super) fn request_headers(
    h: &mut HeaderMap,
    ops: &HeaderOps,
    conn: &ConnShared,
    info: &ReqInfo,
) {
    strip_connection_headers(h);
    apply_ops(h, ops);
    // X-Forwarded-For: the existing chain, then this client.
    let mut xff = String::new();
    for v in h.get_all("x-forwarded-for") {
        if let Ok(s) = v.to_str() {
            xff.push_str(s.trim());
            xff.push_str(", ");
        }
    }
    xff.push_str(&conn.peer.ip().to_string());
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert("x-forwarded-for", v);
    }
    if !h.contains_key("x-forwarded-proto") {
        h.insert(
            "x-forwarded-proto",
            HeaderValue::from_static(if conn.tls.is_some() { "https" } else { "http" }),
        );
    }
    h.insert("x-request-id", info.request_id.clone());
    // The mTLS peer identity replaces whatever the client sent under that name.
    if let Some(tls) = &conn.tls
        && let Some(name) = &tls.peer_header
    {
        h.remove(name.as_ref());
        if let Some(v) = &tls.peer_value
            && let Ok(name) = http::HeaderName::from_bytes(name.as_bytes())
        {
            h.insert(name, v.clone());
        }
    }
}
