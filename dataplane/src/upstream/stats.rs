//! Per-endpoint state each worker publishes for the admin API (`ListClusters`).
//!
//! Every worker owns an [`EndpointStats`] (inside its `WorkerStats`): a map from endpoint
//! address to [`EndpointCounters`], atomics that only that worker writes (a relaxed load and
//! store, no locked read-modify-write) and the admin thread reads. The map's mutex is taken by
//! the worker only the first time it meets an address (its balancer and pool keep the handle
//! afterwards) and by the admin thread while it copies the handles out, so the request path
//! never locks. [`EndpointState::sum`] adds the workers' values up.
//!
//! State is per address, like passive health: clusters that list the same address share it.
//! Entries are never removed, so counts are since the process started (bounded by the number of
//! distinct addresses ever configured).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// One worker's view of one endpoint. Written only by that worker.
#[derive(Debug, Default)]
pub struct EndpointCounters {
    /// HTTP requests in flight to it now (HTTP/1.1 and HTTP/2 exchanges; TCP sessions are not
    /// requests).
    pub active_requests: AtomicU64,
    /// TCP connects that succeeded / failed (refused, unreachable or timed out).
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    /// HTTP/1.1 keep-alive connections idle in the worker's pool.
    pub idle_connections: AtomicU64,
    /// 0 when not ejected, else 1 + the end of the ejection in ms since [`epoch`].
    ejected_until: AtomicU64,
}

/// The process-wide reference instant ejection ends are stored against.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn millis(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch()).as_millis()).unwrap_or(u64::MAX - 1) + 1
}

impl EndpointCounters {
    /// Publishes that the passive outlier detector ejected the endpoint until `until` (`None`:
    /// back in rotation).
    pub fn set_ejected_until(&self, until: Option<Instant>) {
        self.ejected_until
            .store(until.map_or(0, millis), Ordering::Relaxed);
    }

    /// Whether the endpoint is ejected at `now` by this worker.
    pub fn ejected_at(&self, now: Instant) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && until > millis(now)
    }
}

/// One worker's endpoint counters, by address.
#[derive(Debug, Default)]
pub struct EndpointStats {
    map: Mutex<HashMap<SocketAddr, Arc<EndpointCounters>>>,
}

impl EndpointStats {
    /// The counters for `addr`, created on first use. Locks: callers keep the handle.
    pub fn counters(&self, addr: SocketAddr) -> Arc<EndpointCounters> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(addr).or_default().clone()
    }

    /// The counters for `addr` if this worker has met it.
    pub fn get(&self, addr: SocketAddr) -> Option<Arc<EndpointCounters>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&addr).cloned()
    }
}

/// An endpoint's state summed over the workers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EndpointState {
    /// Workers whose passive outlier detector has the endpoint ejected now.
    pub ejected_workers: u32,
    pub active_requests: u64,
    pub connects: u64,
    pub connect_failures: u64,
    pub idle_connections: u64,
}

impl EndpointState {
    /// Sums what `workers` published about `addr`, ejections judged at `now`.
    pub fn sum<'a>(
        workers: impl IntoIterator<Item = &'a EndpointStats>,
        addr: SocketAddr,
        now: Instant,
    ) -> Self {
        let mut s = EndpointState::default();
        for c in workers.into_iter().filter_map(|w| w.get(addr)) {
            s.ejected_workers += u32::from(c.ejected_at(now));
            s.active_requests += c.active_requests.load(Ordering::Relaxed);
            s.connects += c.connects.load(Ordering::Relaxed);
            s.connect_failures += c.connect_failures.load(Ordering::Relaxed);
            s.idle_connections += c.idle_connections.load(Ordering::Relaxed);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::worker::bump;

    #[test]
    fn sums_over_workers_and_expires_ejections() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let workers = [EndpointStats::default(), EndpointStats::default()];
        let now = Instant::now();
        for (i, w) in workers.iter().enumerate() {
            let c = w.counters(a);
            bump(&c.connects);
            c.connect_failures.store(i as u64 + 1, Ordering::Relaxed);
            c.idle_connections.store(2, Ordering::Relaxed);
        }
        workers[0]
            .counters(other)
            .active_requests
            .store(5, Ordering::Relaxed);
        workers[1]
            .counters(a)
            .set_ejected_until(Some(now + Duration::from_secs(10)));
        let s = EndpointState::sum(&workers, a, now);
        assert_eq!(
            s,
            EndpointState {
                ejected_workers: 1,
                active_requests: 0,
                connects: 2,
                connect_failures: 3,
                idle_connections: 4,
            }
        );
        let later = EndpointState::sum(&workers, a, now + Duration::from_secs(11));
        assert_eq!(later.ejected_workers, 0, "the ejection has ended");
        workers[1].counters(a).set_ejected_until(None);
        assert_eq!(EndpointState::sum(&workers, a, now).ejected_workers, 0);
        let unknown: SocketAddr = "127.0.0.1:3".parse().unwrap();
        assert_eq!(
            EndpointState::sum(&workers, unknown, now),
            EndpointState::default()
        );
    }
}
