//! One downstream HTTP/2 connection: handshake with the listener's settings, accept streams (each
//! in its own task), keepalive PING (no PONG within `keepalive_timeout` closes the connection),
//! GOAWAY after `timeouts.keepalive_idle` with no stream open, and GOAWAY (graceful: in-flight
//! streams finish) when the worker starts draining.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::stream;
use crate::proxy::PeerIdentity;
use crate::proxy::stream::Stream;
use crate::signal::Signal;
use crate::snapshot::{Listener, Snapshot};
use crate::worker::WorkerCtx;
use bytes::Bytes;
use h2::{Ping, PingPong};

/// Most bytes h2 buffers per stream for sending before `poll_capacity` holds the writer back.
const MAX_SEND_BUFFER: usize = 256 * 1024;

/// What a connection's stream tasks share.
pub struct ConnShared {
    pub ctx: Rc<WorkerCtx>,
    /// The snapshot and listener requests are served on (followed when the version moves).
    pub current: RefCell<(Arc<Snapshot>, Arc<Listener>)>,
    pub peer: SocketAddr,
    /// Set when the client spoke TLS to us.
    pub tls: Option<ConnTls>,
    active: Cell<usize>,
    last_active: Cell<Instant>,
}

impl ConnShared {
    /// The snapshot and listener for a new request: reloaded only if the config version moved (a
    /// removed listener keeps serving on the config it started with).
    pub fn current(&self) -> (Arc<Snapshot>, Arc<Listener>) {
        let mut cur = self.current.borrow_mut();
        if self.ctx.store.version() != cur.0.version {
            let new = self.ctx.store.load_full();
            if let Some(l) = new.listeners.get(&cur.1.name).cloned() {
                *cur = (new, l);
            }
        }
        cur.clone()
    }
}

/// What TLS established for a connection.
pub struct ConnTls {
    /// The mTLS peer.
    pub identity: Option<PeerIdentity>,
    /// The listener's peer header name (lowercase), and its value for this peer.
    pub peer_header: Option<Arc<str>>,
    pub peer_value: Option<http::HeaderValue>,
}

/// Counts a stream as open until dropped.
pub struct StreamGuard(Rc<ConnShared>);

impl StreamGuard {
    pub fn shared(&self) -> Rc<ConnShared> {
        self.0.clone()
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get() - 1);
        self.0.last_active.set(Instant::now());
    }
}

/// Serves an HTTP/2 connection. `initial` holds bytes already read (the preface, when sniffed).
pub async fn serve(
    ctx: Rc<WorkerCtx>,
    snap: Arc<Snapshot>,
    listener: Arc<Listener>,
    stream: Stream,
    peer: SocketAddr,
    initial: Vec<u8>,
) {
    let tls = listener.tls.as_ref().map(|t| {
        let identity = PeerIdentity::of(&stream, &snap);
        ConnTls {
            peer_value: identity
                .as_ref()
                .and_then(|i| http::HeaderValue::from_str(&i.header).ok()),
            identity,
            peer_header: t.peer_header.clone(),
        }
    });
    let io = match stream.into_poll(initial) {
        Ok(io) => io,
        Err(e) => {
            tracing::debug!(client = %peer, error = %e, "cannot switch the socket to poll-io");
            return;
        }
    };
    let s = listener.http2;
    let handshake = h2::server::Builder::new()
        .max_concurrent_streams(s.max_concurrent_streams)
        .initial_window_size(s.initial_stream_window_size)
        .initial_connection_window_size(s.initial_connection_window_size)
        .max_frame_size(s.max_frame_size)
        .max_header_list_size(s.max_header_list_size)
        .max_concurrent_reset_streams(s.max_concurrent_reset_streams)
        .max_pending_accept_reset_streams(s.max_pending_accept_reset_streams)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .handshake::<_, Bytes>(io);
    let mut conn = match monoio::time::timeout(listener.timeouts.header_read, handshake).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(listener = %listener.name, client = %peer, error = %e, "h2 handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(listener = %listener.name, client = %peer, "h2 handshake timed out");
            return;
        }
    };
    let idle = listener.timeouts.keepalive_idle;
    let shared = Rc::new(ConnShared {
        ctx: ctx.clone(),
        current: RefCell::new((snap, listener.clone())),
        peer,
        tls,
        active: Cell::new(0),
        last_active: Cell::new(Instant::now()),
    });
    let closed = Signal::new();
    let dead = Signal::new();
    if let Some(pp) = conn.ping_pong() {
        monoio::spawn(keepalive(
            pp,
            s.keepalive_interval.get(),
            s.keepalive_timeout.get(),
            dead.clone(),
            closed.clone(),
        ));
    }
    let mut shutting = false;
    loop {
        let idle_left = if !shutting && shared.active.get() == 0 {
            idle.saturating_sub(shared.last_active.get().elapsed())
        } else {
            idle
        };
        let drain = ctx.draining.clone();
        let wait_drain = async move {
            if shutting {
                std::future::pending::<()>().await
            } else {
                drain.wait().await
            }
        };
        monoio::select! {
            r = conn.accept() => match r {
                Some(Ok((req, respond))) => {
                    shared.active.set(shared.active.get() + 1);
                    let guard = StreamGuard(shared.clone());
                    monoio::spawn(stream::handle(guard, req, respond));
                }
                Some(Err(e)) => {
                    tracing::debug!(listener = %listener.name, client = %peer, error = %e, "h2 connection error");
                    break;
                }
                None => break,
            },
            _ = wait_drain => {
                tracing::debug!(listener = %listener.name, client = %peer, "draining: GOAWAY");
                conn.graceful_shutdown();
                shutting = true;
            },
            _ = dead.wait() => {
                tracing::debug!(listener = %listener.name, client = %peer, "keepalive PING unanswered; closing");
                break;
            },
            _ = monoio::time::sleep(idle_left) => {
                if !shutting && shared.active.get() == 0 && shared.last_active.get().elapsed() >= idle {
                    tracing::debug!(listener = %listener.name, client = %peer, "idle: GOAWAY");
                    conn.graceful_shutdown();
                    shutting = true;
                }
            },
        }
    }
    closed.fire();
}

/// Sends a PING every `interval`; fires `dead` when one is not answered within `timeout`.
async fn keepalive(
    mut pp: PingPong,
    interval: Duration,
    timeout: Duration,
    dead: Signal,
    closed: Signal,
) {
    loop {
        monoio::select! {
            _ = closed.wait() => return,
            _ = monoio::time::sleep(interval) => {},
        }
        if pp.send_ping(Ping::opaque()).is_err() {
            return;
        }
        monoio::select! {
            _ = closed.wait() => return,
            r = monoio::time::timeout(timeout, poll_fn(|cx| pp.poll_pong(cx))) => match r {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    dead.fire();
                    return;
                }
            },
        }
    }
}
