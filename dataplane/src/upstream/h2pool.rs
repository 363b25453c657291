//! Per-worker pool of multiplexed HTTP/2 (h2c) client connections, per endpoint.
//!
//! A request leases a connection: the first one of its endpoint with fewer streams in flight than
//! the peer's SETTINGS_MAX_CONCURRENT_STREAMS. When every connection is full another is opened;
//! while one is being opened to an endpoint, other requests wait for it instead of opening their
//! own. A connection whose driver task ended (GOAWAY, I/O error, peer close), or on which a new
//! stream could not be opened, is marked closed and never leased again. Connections with no stream
//! in flight for the cluster's `pool.idle_timeout` are dropped by `reap` (h2 then sends GOAWAY).
//! A new connection is used once the peer's SETTINGS are known (one PING round trip); then a
//! PING every `http2.keepalive_interval` closes it if the peer stops answering.
//! Each connection is driven by its own `monoio::spawn`ed task on this worker; nothing is shared
//! across cores and nothing here locks.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use std::future::poll_fn;

use bytes::Bytes;
use h2::Ping;
use h2::client::SendRequest;

use super::Cluster;
use super::pool::{PoolKey, connect_to};
use crate::signal::Signal;

/// Per-stream receive window towards upstreams (bounds per-stream buffering).
const STREAM_WINDOW: u32 = 1 << 20;
/// Per-connection receive window towards upstreams.
const CONN_WINDOW: u32 = 8 << 20;

struct H2Conn {
    send: SendRequest<Bytes>,
    in_flight: Cell<usize>,
    closed: Rc<Cell<bool>>,
    idle_since: Cell<Instant>,
    max_idle: Duration,
}

impl H2Conn {
    fn usable(&self) -> bool {
        !self.closed.get() && self.in_flight.get() < self.send.current_max_send_streams()
    }
}

/// One request's share of a connection: hand `send` a request; dropping the lease frees the slot.
pub struct Lease {
    conn: Rc<H2Conn>,
    pub addr: SocketAddr,
    /// The connection had served requests before this one (a refusal may mean it was going away).
    pub reused: bool,
}

impl Lease {
    /// A handle to open a stream on this connection.
    pub fn sender(&self) -> SendRequest<Bytes> {
        self.conn.send.clone()
    }

    /// The connection cannot open streams any more (GOAWAY, error): never lease it again.
    pub fn mark_closed(&self) {
        self.conn.closed.set(true);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let n = self.conn.in_flight.get().saturating_sub(1);
        self.conn.in_flight.set(n);
        if n == 0 {
            self.conn.idle_since.set(Instant::now());
        }
    }
}

#[derive(Default)]
pub struct H2Pool {
    conns: RefCell<HashMap<PoolKey, Vec<Rc<H2Conn>>>>,
    /// Endpoints a connection is being opened to, and the signal fired when it is done.
    connecting: RefCell<HashMap<PoolKey, Signal>>,
}

impl H2Pool {
    /// A lease on an open connection to `addr` with a free stream slot, if any.
    pub fn take(&self, key: PoolKey) -> Option<Lease> {
        let addr = key.0;
        let mut conns = self.conns.borrow_mut();
        let list = conns.get_mut(&key)?;
        list.retain(|c| !c.closed.get());
        let conn = list.iter().find(|c| c.usable())?.clone();
        conn.in_flight.set(conn.in_flight.get() + 1);
        Some(Lease {
            conn,
            addr,
            reused: true,
        })
    }

    /// A lease on `addr`: a pooled connection, or one opened now (waiting for a connect already
    /// under way to the same endpoint first).
    pub async fn lease(&self, addr: SocketAddr, cluster: &Cluster) -> io::Result<Lease> {
        let key = super::pool::key(cluster, addr);
        loop {
            if let Some(l) = self.take(key) {
                return Ok(l);
            }
            let pending = self.connecting.borrow().get(&key).cloned();
            match pending {
                Some(sig) => sig.wait().await,
                None => break,
            }
        }
        let sig = Signal::new();
        self.connecting.borrow_mut().insert(key, sig.clone());
        let opened = open(addr, cluster).await;
        self.connecting.borrow_mut().remove(&key);
        sig.fire();
        let conn = Rc::new(opened?);
        conn.in_flight.set(1);
        self.conns
            .borrow_mut()
            .entry(key)
            .or_default()
            .push(conn.clone());
        Ok(Lease {
            conn,
            addr,
            reused: false,
        })
    }

    /// Drops connections closed or idle past their timeout. Returns how many remain.
    pub fn reap(&self, now: Instant) -> usize {
        let mut conns = self.conns.borrow_mut();
        conns.retain(|_, list| {
            list.retain(|c| {
                !c.closed.get()
                    && (c.in_flight.get() > 0
                        || now.duration_since(c.idle_since.get()) < c.max_idle)
            });
            !list.is_empty()
        });
        conns.values().map(Vec::len).sum()
    }

    /// Drops every connection (shutdown).
    pub fn clear(&self) {
        self.conns.borrow_mut().clear();
    }
}

async fn open(addr: SocketAddr, cluster: &Cluster) -> io::Result<H2Conn> {
    let timeout = cluster.connect_timeout;
    let io = connect_to(cluster, addr, true)
        .await?
        .into_poll(Vec::new())?;
    let handshake = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .enable_push(false)
        // Until the peer's SETTINGS say otherwise (RFC 9113 recommends allowing at least 100).
        .initial_max_send_streams(100)
        .handshake::<_, Bytes>(io);
    let (send, mut conn) = monoio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "h2 handshake timed out"))?
        .map_err(|e| io::Error::other(format!("h2 handshake: {e}")))?;
    let ping = conn.ping_pong();
    let closed = Rc::new(Cell::new(false));
    let done = closed.clone();
    let dead = Signal::new();
    let kill = dead.clone();
    monoio::spawn(async move {
        monoio::select! {
            r = conn => if let Err(e) = r {
                tracing::debug!(endpoint = %addr, error = %e, "upstream h2 connection ended");
            },
            _ = kill.wait() => {
                tracing::warn!(endpoint = %addr, "upstream h2 keepalive PING unanswered; closing the connection");
            },
        }
        done.set(true);
    });
    // The peer's SETTINGS (its max concurrent streams) come before its answer to a PING: wait for
    // that one round trip so a burst of requests on a new connection is spread by the real
    // limit instead of being refused.
    if let Some(mut pp) = ping {
        let settled = async {
            pp.send_ping(Ping::opaque()).ok()?;
            poll_fn(|cx| pp.poll_pong(cx)).await.ok()
        };
        if !matches!(monoio::time::timeout(timeout, settled).await, Ok(Some(_))) {
            dead.fire();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "h2 peer did not answer the first PING",
            ));
        }
        monoio::spawn(keepalive(
            pp,
            cluster.spec.http2.keepalive_interval.get(),
            cluster.spec.http2.keepalive_timeout.get(),
            dead,
            closed.clone(),
        ));
    }
    Ok(H2Conn {
        send,
        in_flight: Cell::new(0),
        closed,
        idle_since: Cell::new(Instant::now()),
        max_idle: cluster.pool.idle_timeout.get(),
    })
}

/// PINGs the connection every `interval`; fires `dead` when a PING is not answered in `timeout`.
async fn keepalive(
    mut pp: h2::PingPong,
    interval: Duration,
    timeout: Duration,
    dead: Signal,
    closed: Rc<Cell<bool>>,
) {
    loop {
        monoio::time::sleep(interval).await;
        if closed.get() || pp.send_ping(Ping::opaque()).is_err() {
            return;
        }
        match monoio::time::timeout(timeout, poll_fn(|cx| pp.poll_pong(cx))).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                dead.fire();
                return;
            }
        }
    }
}
