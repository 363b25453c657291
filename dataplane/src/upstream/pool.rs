//! Per-worker upstream connection pool (HTTP/1.1 keep-alive).
//!
//! Idle connections are kept per endpoint address, newest last (LIFO reuse keeps the warmest
//! connections busy and lets the rest age out). A connection is returned only after a complete,
//! reusable exchange. Idle connections older than the cluster's `pool.idle_timeout` are dropped on
//! the next `take` and by the worker's periodic `reap`, so the pool shrinks when traffic stops.
//! The idle count per endpoint is published in the worker's endpoint stats after every change.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use super::Cluster;
use super::stats::EndpointCounters;
use crate::proxy::stream::{self, Stream};
use crate::worker::WorkerStats;

/// Pooled connections are keyed by endpoint and TLS origination: a plaintext connection (tag 0)
/// is never handed to an mTLS cluster, nor one verified for another cluster's SPIFFE ID.
pub type PoolKey = (SocketAddr, u64);

/// The pool key of `addr` in `cluster`.
pub fn key(cluster: &Cluster, addr: SocketAddr) -> PoolKey {
    (
        addr,
        if cluster.tls.is_some() {
            cluster.uid
        } else {
            0
        },
    )
}

struct Idle {
    stream: Stream,
    since: Instant,
    max_idle: Duration,
}

/// One endpoint's idle connections and where their count is published.
struct IdleList {
    conns: Vec<Idle>,
    counters: Arc<EndpointCounters>,
}

impl IdleList {
    fn publish(&self) {
        self.counters
            .idle_connections
            .store(self.conns.len() as u64, Ordering::Relaxed);
    }
}

#[derive(Default)]
pub struct Pool {
    /// Entries stay once created (an empty list is a few words), so the published count
    /// always has a home.
    idle: RefCell<HashMap<PoolKey, IdleList>>,
    stats: Arc<WorkerStats>,
}

impl Pool {
    /// A pool that publishes its idle counts in `stats` (the worker's).
    pub fn with_stats(stats: Arc<WorkerStats>) -> Self {
        Self {
            idle: RefCell::default(),
            stats,
        }
    }

    /// A pooled connection to `addr` that has been idle less than `max_idle`, if any.
    pub fn take(&self, key: PoolKey, max_idle: Duration, now: Instant) -> Option<Stream> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&key)?;
        let mut found = None;
        while let Some(c) = list.conns.pop() {
            if now.duration_since(c.since) < max_idle.min(c.max_idle) {
                found = Some(c.stream);
                break;
            }
        }
        list.publish();
        found
    }

    /// Returns a connection after a complete exchange; dropped if the endpoint already has `max` idle.
    pub fn put(&self, key: PoolKey, stream: Stream, max: usize, max_idle: Duration) {
        if max == 0 {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(key).or_insert_with(|| IdleList {
            conns: Vec::new(),
            counters: self.stats.endpoints.counters(key.0),
        });
        if list.conns.len() >= max {
            list.conns.remove(0);
        }
        list.conns.push(Idle {
            stream,
            since: Instant::now(),
            max_idle,
        });
        list.publish();
    }

    /// Closes connections idle past their timeout. Returns how many remain.
    pub fn reap(&self, now: Instant) -> usize {
        let mut idle = self.idle.borrow_mut();
        let mut left = 0;
        for list in idle.values_mut() {
            let before = list.conns.len();
            list.conns
                .retain(|c| now.duration_since(c.since) < c.max_idle);
            if list.conns.len() != before {
                list.publish();
            }
            left += list.conns.len();
        }
        left
    }

    /// Closes every idle connection (shutdown).
    pub fn clear(&self) {
        for list in self.idle.borrow_mut().values_mut() {
            list.conns.clear();
            list.publish();
        }
    }
}

/// Connects to `addr` within `timeout`, with TCP_NODELAY set.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = monoio::time::timeout(timeout, TcpStream::connect_addr(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Connects to `addr` of `cluster`: TCP within `connect_timeout`, then, when the cluster
/// originates mTLS, the handshake (ALPN `h2` when `h2`, else `http/1.1`) within the same time.
pub async fn connect_to(cluster: &Cluster, addr: SocketAddr, h2: bool) -> io::Result<Stream> {
    let tcp = connect(addr, cluster.connect_timeout).await?;
    let Some(tls) = &cluster.tls else {
        return Ok(Stream::Plain(tcp));
    };
    let config = if h2 { &tls.h2 } else { &tls.h1 };
    let name = tls
        .server_name
        .clone()
        .unwrap_or_else(|| rustls::pki_types::ServerName::IpAddress(addr.ip().into()));
    stream::connect(tcp, config.clone(), name, cluster.connect_timeout).await
}
