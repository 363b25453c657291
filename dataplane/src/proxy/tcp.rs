//! TCP proxying: forward bytes both ways between a client and an upstream endpoint.
//!
//! Each direction is its own copy loop with a 64 KiB buffer; EOF on one side is passed on as a
//! half-close (FIN) to the other, and the session ends when both directions are done. An idle
//! watchdog shuts both sockets down when no byte has moved either way for `timeouts.idle`.
//! The same [`tunnel`] carries HTTP/1.1 upgrades (WebSocket) after the 101.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use crate::access_log::{self, Entry};
use crate::policy::Subject;
use crate::signal::Signal;
use crate::snapshot::{Listener, Snapshot};
use crate::upstream::Cluster;
use crate::upstream::pool::connect_to;
use crate::worker::WorkerCtx;

use super::io::COPY_BUF;
use super::stream::Stream;

/// Serves one TCP session on a `protocol: tcp` listener.
pub async fn serve(
    ctx: Rc<WorkerCtx>,
    snap: Arc<Snapshot>,
    listener: Arc<Listener>,
    cluster: Arc<Cluster>,
    client: Stream,
    peer: SocketAddr,
) {
    let start = Instant::now();
    if let Some(policy) = &listener.policy {
        let subject = Subject {
            peer: client.peer_id().map(|id| &**id),
            method: None,
            path: None,
        };
        if !policy.allows(&subject) {
            ctx.stats.policy_denied();
            tracing::debug!(listener = %listener.name, client = %peer, peer_id = ?subject.peer.map(ToString::to_string), policy = %policy.name, "tcp connection denied by policy; closing");
            return;
        }
    }
    let mut last_err = None;
    let mut upstream = None;
    // A connect failure is always safe to retry on another endpoint.
    for _ in 0..cluster.endpoints.len().clamp(1, 3) {
        let Some(addr) = ctx.balancer.pick(&cluster, Instant::now()) else {
            break;
        };
        match connect_to(&cluster, addr, false).await {
            Ok(s) => {
                ctx.balancer.report_success(addr);
                upstream = Some((s, addr));
                break;
            }
            Err(e) => {
                ctx.balancer.report_failure(&cluster, addr, Instant::now());
                tracing::debug!(listener = %listener.name, cluster = %cluster.name, endpoint = %addr, error = %e, "tcp upstream connect failed");
                last_err = Some(format!("connect {addr}: {e}"));
            }
        }
    }
    let (up_bytes, down_bytes, endpoint) = match upstream {
        Some((up, addr)) => {
            let (a, b) = tunnel(client, up, Vec::new(), Vec::new(), listener.timeouts.idle).await;
            (a, b, Some(addr))
        }
        None => {
            if last_err.is_none() {
                last_err = Some("no healthy upstream endpoint".into());
            }
            tracing::debug!(listener = %listener.name, cluster = %cluster.name, "tcp session refused: {}", last_err.as_deref().unwrap_or(""));
            (0, 0, None)
        }
    };
    if let Some(log) = &snap.access_log {
        log.log(&Entry {
            time: access_log::now_rfc3339(),
            listener: &listener.name,
            protocol: "tcp",
            client: peer,
            method: None,
            path: None,
            route: None,
            cluster: Some(&cluster.name),
            endpoint,
            status: None,
            bytes_received: up_bytes,
            bytes_sent: down_bytes,
            duration_ms: access_log::millis(start.elapsed()),
            request_id: None,
            error: last_err.filter(|_| endpoint.is_none()),
        });
    }
}

/// Forwards bytes both ways until both directions have ended; `a_pending`/`b_pending` are bytes
/// already read from `a`/`b` that must reach the other side first. Returns (a->b, b->a) byte counts.
pub async fn tunnel(
    a: Stream,
    b: Stream,
    a_pending: Vec<u8>,
    b_pending: Vec<u8>,
    idle: Duration,
) -> (u64, u64) {
    let fds = [a.as_raw_fd(), b.as_raw_fd()];
    let last = Rc::new(Cell::new(Instant::now()));
    let done = Signal::new();
    let (ar, aw) = a.into_split();
    let (br, bw) = b.into_split();
    let watchdog = monoio::spawn(watchdog(last.clone(), idle, done.clone(), fds));
    let (x, y) = monoio::join!(
        pump(ar, bw, a_pending, last.clone()),
        pump(br, aw, b_pending, last)
    );
    done.fire();
    let _ = watchdog.await;
    (x, y)
}

async fn pump<R: AsyncReadRent, W: AsyncWriteRent>(
    mut r: R,
    mut w: W,
    pending: Vec<u8>,
    last: Rc<Cell<Instant>>,
) -> u64 {
    let mut total = 0u64;
    if !pending.is_empty() {
        total += pending.len() as u64;
        let (res, _) = w.write_all(pending).await;
        if res.is_err() {
            let _ = w.shutdown().await;
            return total;
        }
    }
    let mut buf = Vec::with_capacity(COPY_BUF);
    loop {
        let (res, b) = r.read(buf.slice_mut(0..COPY_BUF)).await;
        buf = b.into_inner();
        let n = match res {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        last.set(Instant::now());
        total += n as u64;
        let (res, b) = w.write_all(buf).await;
        buf = b;
        if res.is_err() {
            break;
        }
    }
    // Half-close: pass the FIN on; the other direction keeps going.
    let _ = w.shutdown().await;
    total
}

async fn watchdog(last: Rc<Cell<Instant>>, idle: Duration, done: Signal, fds: [i32; 2]) {
    loop {
        // Both pumps may have finished (and closed the fds) while we slept: never touch them then.
        if done.is_fired() {
            return;
        }
        let deadline = last.get() + idle;
        let now = Instant::now();
        if deadline <= now {
            tracing::debug!("tunnel idle for {idle:?}; closing");
            for fd in fds {
                crate::sys::shutdown_both(fd);
            }
            return;
        }
        monoio::select! {
            _ = done.wait() => return,
            _ = monoio::time::sleep(deadline - now) => {}
        }
    }
}
