//! One downstream HTTP/2 request stream: route it, answer locally (direct response, redirect,
//! error) or hand it to [`super::forward`]. Failures Shoal answers itself are gRPC-shaped
//! (HTTP 200, trailers-only `grpc-status`) when the request is gRPC, plain HTTP otherwise.

use std::time::Instant;

use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use http::header::{CONTENT_TYPE, HOST, LOCATION};
use http::{HeaderValue, Request, Response};

use super::forward;
use super::server::StreamGuard;
use crate::access_log::{self, Entry};
use crate::error::ProxyError;
use crate::proxy::grpc;
use crate::route::{self, Action, RequestHead};
use crate::snapshot::ListenerKind;

/// What one request needs to know about itself.
pub struct ReqInfo {
    pub grpc: bool,
    pub request_id: HeaderValue,
    pub start: Instant,
}

/// Handles one request stream to its end.
pub async fn handle(
    guard: StreamGuard,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let conn = guard.shared();
    let (snap, listener) = conn.current();
    let ListenerKind::Http { routes } = &listener.kind else {
        return;
    };
    let ctx = &conn.ctx;
    let (parts, body) = req.into_parts();
    let info = ReqInfo {
        grpc: route::is_grpc(parts.headers.get(CONTENT_TYPE).map(HeaderValue::as_bytes)),
        request_id: match parts.headers.get("x-request-id") {
            Some(v) if v.len() == 36 => v.clone(),
            _ => {
                let mut id = [0u8; 36];
                ctx.request_id(&mut id);
                HeaderValue::from_bytes(&id).unwrap_or(HeaderValue::from_static("-"))
            }
        },
        start: Instant::now(),
    };
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| parts.headers.get(HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or("");
    let found = route::find(
        routes,
        &RequestHead {
            method: parts.method.as_str(),
            host,
            path: parts.uri.path(),
            headers: &parts.headers,
            peer: conn
                .tls
                .as_ref()
                .and_then(|t| t.identity.as_ref())
                .map(|i| &*i.id),
        },
    );
    let log_line =
        |status: u16, route: Option<&str>, cluster: Option<&str>, err: Option<String>| {
            ctx.stats.record_response(status);
            if let Some(log) = &snap.access_log {
                log.log(&Entry {
                    time: access_log::now_rfc3339(),
                    listener: &listener.name,
                    protocol: "http2",
                    client: conn.peer,
                    method: Some(parts.method.as_str()),
                    path: parts.uri.path_and_query().map(|p| p.as_str()),
                    route,
                    cluster,
                    endpoint: None,
                    status: Some(status),
                    bytes_received: 0,
                    bytes_sent: 0,
                    duration_ms: access_log::millis(info.start.elapsed()),
                    request_id: info.request_id.to_str().ok(),
                    error: err,
                });
            }
        };
    let Some(route) = found else {
        let e = ProxyError::NoRoute;
        let status = fail(&mut respond, &info, &e);
        log_line(status, None, None, Some(e.to_string()));
        return;
    };
    let identity = conn.tls.as_ref().and_then(|t| t.identity.as_ref());
    if let Err(e) = crate::proxy::authorize(
        &listener,
        route,
        identity,
        parts.method.as_str(),
        parts.uri.path(),
    ) {
        ctx.stats.policy_denied();
        tracing::debug!(listener = %listener.name, client = %conn.peer, peer = ?identity.map(|i| i.id.to_string()), error = %e, "request denied by policy");
        let status = fail(&mut respond, &info, &e);
        log_line(status, Some(&route.id), None, Some(e.to_string()));
        return;
    }
    match &route.action {
        Action::Direct { status, body } => {
            local(&mut respond, &info, *status, body, None);
            log_line(*status, Some(&route.id), None, None);
        }
        Action::Redirect(rd) => {
            let scheme = rd.scheme.as_deref().unwrap_or("http");
            let host = rd.host.as_deref().unwrap_or(host);
            let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let location = match &rd.path {
                Some(p) => match pq.split_once('?') {
                    Some((_, q)) => format!("{scheme}://{host}{p}?{q}"),
                    None => format!("{scheme}://{host}{p}"),
                },
                None => format!("{scheme}://{host}{pq}"),
            };
            local(&mut respond, &info, rd.status, b"", Some(&location));
            log_line(rd.status, Some(&route.id), None, None);
        }
        action => {
            let Some(cluster) = action.cluster(ctx.balancer.random_u32()).cloned() else {
                let e = ProxyError::NoHealthyUpstream;
                let status = fail(&mut respond, &info, &e);
                log_line(status, Some(&route.id), None, Some(e.to_string()));
                return;
            };
            let logged = snap.access_log.as_ref().map(|_| {
                let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                (parts.method.to_string(), pq.to_string())
            });
            let (status, err) = forward::forward(
                &conn, &listener, route, &cluster, &info, parts, body, respond,
            )
            .await;
            if let Some(status) = status {
                ctx.stats.record_response(status);
            }
            if let Some(log) = &snap.access_log {
                log.log(&Entry {
                    time: access_log::now_rfc3339(),
                    listener: &listener.name,
                    protocol: "http2",
                    client: conn.peer,
                    method: logged.as_ref().map(|(m, _)| m.as_str()),
                    path: logged.as_ref().map(|(_, p)| p.as_str()),
                    route: Some(&route.id),
                    cluster: Some(&cluster.name),
                    endpoint: None,
                    status,
                    bytes_received: 0,
                    bytes_sent: 0,
                    duration_ms: access_log::millis(info.start.elapsed()),
                    request_id: info.request_id.to_str().ok(),
                    error: err,
                });
            }
        }
    }
    drop(guard);
}

/// Answers with a local response (status, optional body and Location).
pub fn local(
    respond: &mut SendResponse<Bytes>,
    info: &ReqInfo,
    status: u16,
    body: &[u8],
    location: Option<&str>,
) {
    let mut resp = Response::new(());
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    let h = resp.headers_mut();
    h.insert("x-request-id", info.request_id.clone());
    if let Some(loc) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        h.insert(LOCATION, loc);
    }
    if !body.is_empty() {
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    match respond.send_response(resp, body.is_empty()) {
        Ok(mut s) if !body.is_empty() => {
            let _ = s.send_data(Bytes::copy_from_slice(body), true);
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "could not answer the stream"),
    }
}

/// Answers a request Shoal failed itself; returns the HTTP status used (200 for gRPC).
pub fn fail(respond: &mut SendResponse<Bytes>, info: &ReqInfo, e: &ProxyError) -> u16 {
    tracing::debug!(error = %e, grpc = info.grpc, "failing h2 request");
    if info.grpc {
        let mut resp = grpc::trailers_only(e.grpc_status(), &e.to_string());
        resp.headers_mut()
            .insert("x-request-id", info.request_id.clone());
        if let Err(err) = respond.send_response(resp, true) {
            tracing::debug!(error = %err, "could not answer the stream");
        }
        200
    } else {
        let mut body = e.body().as_bytes().to_vec();
        body.push(b'\n');
        local(respond, info, e.status(), &body, None);
        e.status()
    }
}
