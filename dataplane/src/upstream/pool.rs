//! Per-worker upstream connection pool (HTTP/1.1 keep-alive).
//!
//! Idle connections are kept per endpoint address, newest last (LIFO reuse keeps the warmest
//! connections busy and lets the rest age out). A connection is returned only after a complete,
//! reusable exchange. Idle connections older than the cluster's `pool.idle_timeout` are dropped on
//! the next `take` and by the worker's periodic `reap`, so the pool shrinks when traffic stops.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

struct Idle {
    stream: TcpStream,
    since: Instant,
    max_idle: Duration,
}

#[derive(Default)]
pub struct Pool {
    idle: RefCell<HashMap<SocketAddr, Vec<Idle>>>,
}

impl Pool {
    /// A pooled connection to `addr` that has been idle less than `max_idle`, if any.
    pub fn take(&self, addr: SocketAddr, max_idle: Duration, now: Instant) -> Option<TcpStream> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&addr)?;
        while let Some(c) = list.pop() {
            if now.duration_since(c.since) < max_idle.min(c.max_idle) {
                return Some(c.stream);
            }
        }
        None
    }

    /// Returns a connection after a complete exchange; dropped if the endpoint already has `max` idle.
    pub fn put(&self, addr: SocketAddr, stream: TcpStream, max: usize, max_idle: Duration) {
        if max == 0 {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(addr).or_default();
        if list.len() >= max {
            list.remove(0);
        }
        list.push(Idle {
            stream,
            since: Instant::now(),
            max_idle,
        });
    }

    /// Closes connections idle past their timeout. Returns how many remain.
    pub fn reap(&self, now: Instant) -> usize {
        let mut idle = self.idle.borrow_mut();
        idle.retain(|_, list| {
            list.retain(|c| now.duration_since(c.since) < c.max_idle);
            !list.is_empty()
        });
        idle.values().map(Vec::len).sum()
    }

    /// Closes every idle connection (shutdown).
    pub fn clear(&self) {
        self.idle.borrow_mut().clear();
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
