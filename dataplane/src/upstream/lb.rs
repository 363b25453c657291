//! Per-worker load balancing and passive health.
//!
//! Each worker keeps its own cursors, in-flight counts and ejections: nothing here is shared across
//! cores. Policies: round robin, random, smooth weighted round robin (nginx's algorithm) and
//! least-request by power of two choices. An endpoint that fails `outlier.consecutive_failures`
//! connects in a row is skipped for `outlier.ejection_time`; when every endpoint is ejected (or the
//! cluster has none) [`Balancer::pick`] returns `None` and the request gets 503.
//!
//! Connect outcomes, requests in flight and ejections are also published per endpoint in the
//! worker's [`EndpointStats`](super::stats::EndpointStats) (single-writer atomics) for
//! `ListClusters`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::config::LbPolicy;
use crate::worker::{WorkerStats, bump};

use super::Cluster;
use super::stats::EndpointCounters;

#[derive(Default)]
struct ClusterState {
    cursor: usize,
    /// Smooth WRR current weights, one per endpoint.
    current: Vec<i64>,
}

#[derive(Default)]
struct Health {
    failures: u32,
    ejected_until: Option<Instant>,
}

/// The per-worker balancer (one per worker thread, never shared).
pub struct Balancer {
    clusters: RefCell<HashMap<u64, ClusterState>>,
    health: RefCell<HashMap<SocketAddr, Health>>,
    endpoints: RefCell<HashMap<SocketAddr, Rc<EndpointSlot>>>,
    rng: RefCell<fastrand::Rng>,
    /// The worker's counters (connect outcomes are reported here, and per endpoint).
    stats: Arc<WorkerStats>,
}

/// This worker's in-flight count of one endpoint and the counters it publishes.
struct EndpointSlot {
    in_flight: Cell<u32>,
    shared: Arc<EndpointCounters>,
}

impl EndpointSlot {
    fn set_in_flight(&self, n: u32) {
        self.in_flight.set(n);
        self.shared
            .active_requests
            .store(u64::from(n), std::sync::atomic::Ordering::Relaxed);
    }
}

/// Counts a request in flight to an endpoint until dropped (least-request, `ListClusters`).
pub struct InFlight(Rc<EndpointSlot>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .set_in_flight(self.0.in_flight.get().saturating_sub(1));
    }
}

impl Default for Balancer {
    fn default() -> Self {
        Self::new()
    }
}

impl Balancer {
    pub fn new() -> Self {
        Self::with_stats(Arc::default())
    }

    /// A balancer that also counts connect outcomes in `stats`.
    pub fn with_stats(stats: Arc<WorkerStats>) -> Self {
        Self {
            clusters: RefCell::default(),
            health: RefCell::default(),
            endpoints: RefCell::default(),
            rng: RefCell::new(fastrand::Rng::new()),
            stats,
        }
    }

    /// A uniform random number (weighted route splits, request ids).
    pub fn random_u32(&self) -> u32 {
        self.rng.borrow_mut().u32(..)
    }

    pub fn random_u64(&self) -> u64 {
        self.rng.borrow_mut().u64(..)
    }

    /// This worker's slot for `addr` (registered with the worker's stats on first use).
    fn slot(&self, addr: SocketAddr) -> Rc<EndpointSlot> {
        self.endpoints
            .borrow_mut()
            .entry(addr)
            .or_insert_with(|| {
                Rc::new(EndpointSlot {
                    in_flight: Cell::new(0),
                    shared: self.stats.endpoints.counters(addr),
                })
            })
            .clone()
    }

    fn healthy(&self, addr: &SocketAddr, now: Instant) -> bool {
        match self.health.borrow().get(addr).and_then(|h| h.ejected_until) {
            Some(until) => now >= until,
            None => true,
        }
    }

    /// Chooses an endpoint of `cluster`, or `None` when none is healthy.
    pub fn pick(&self, cluster: &Cluster, now: Instant) -> Option<SocketAddr> {
        let eps = &cluster.endpoints;
        if eps.is_empty() {
            return None;
        }
        let healthy = |i: usize| self.healthy(&eps[i].addr, now);
        let mut states = self.clusters.borrow_mut();
        let st = states.entry(cluster.uid).or_default();
        let n = eps.len();
        match cluster.lb {
            LbPolicy::RoundRobin => {
                for _ in 0..n {
                    let i = st.cursor % n;
                    st.cursor = st.cursor.wrapping_add(1);
                    if healthy(i) {
                        return Some(eps[i].addr);
                    }
                }
                None
            }
            LbPolicy::Random => {
                let start = self.rng.borrow_mut().usize(..n);
                (0..n)
                    .map(|k| (start + k) % n)
                    .find(|&i| healthy(i))
                    .map(|i| eps[i].addr)
            }
            LbPolicy::Weighted => {
                if st.current.len() != n {
                    st.current = vec![0; n];
                }
                let mut total = 0i64;
                let mut best: Option<usize> = None;
                for (i, ep) in eps.iter().enumerate() {
                    if !healthy(i) {
                        continue;
                    }
                    st.current[i] += i64::from(ep.weight);
                    total += i64::from(ep.weight);
                    if best.is_none_or(|b| st.current[i] > st.current[b]) {
                        best = Some(i);
                    }
                }
                let b = best?;
                st.current[b] -= total;
                Some(eps[b].addr)
            }
            LbPolicy::LeastRequest => {
                let candidates: [usize; 2] = {
                    let mut rng = self.rng.borrow_mut();
                    [rng.usize(..n), rng.usize(..n)]
                };
                let load = |i: usize| {
                    self.endpoints
                        .borrow()
                        .get(&eps[i].addr)
                        .map_or(0, |s| s.in_flight.get())
                };
                let mut pick: Option<usize> = None;
                for &i in &candidates {
                    if healthy(i) && pick.is_none_or(|p| load(i) < load(p)) {
                        pick = Some(i);
                    }
                }
                // Both samples ejected: fall back to a scan so a healthy endpoint is still found.
                pick.or_else(|| (0..n).find(|&i| healthy(i)))
                    .map(|i| eps[i].addr)
            }
        }
    }

    /// Marks a request in flight to `addr` (for least-request) until the guard drops.
    pub fn start_request(&self, addr: SocketAddr) -> InFlight {
        let slot = self.slot(addr);
        slot.set_in_flight(slot.in_flight.get() + 1);
        InFlight(slot)
    }

    /// A connect to `addr` succeeded: clears its failure count.
    pub fn report_success(&self, addr: SocketAddr) {
        bump(&self.stats.upstream_connects);
        let slot = self.slot(addr);
        bump(&slot.shared.connects);
        if let Some(h) = self.health.borrow_mut().get_mut(&addr) {
            h.failures = 0;
            if h.ejected_until.take().is_some() {
                slot.shared.set_ejected_until(None);
            }
        }
    }

    /// A connect to `addr` failed; ejects it after `cluster.outlier.consecutive_failures` in a row.
    pub fn report_failure(&self, cluster: &Cluster, addr: SocketAddr, now: Instant) {
        bump(&self.stats.upstream_connect_failures);
        let slot = self.slot(addr);
        bump(&slot.shared.connect_failures);
        let limit = cluster.outlier.consecutive_failures;
        if limit == 0 {
            return;
        }
        let mut health = self.health.borrow_mut();
        let h = health.entry(addr).or_default();
        h.failures += 1;
        if h.failures >= limit {
            h.failures = 0;
            let until = now + cluster.outlier.ejection_time.get();
            h.ejected_until = Some(until);
            slot.shared.set_ejected_until(Some(until));
            tracing::warn!(cluster = %cluster.name, endpoint = %addr, "endpoint ejected after consecutive connect failures");
        }
    }

    /// Drops state of clusters that no longer exist (called when the snapshot changes).
    pub fn retain_clusters(&self, live: impl Fn(u64) -> bool) {
        self.clusters.borrow_mut().retain(|uid, _| live(*uid));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::config::{ClusterSpec, HumanDuration, OutlierSpec, PoolSpec};
    use crate::upstream::Endpoint;

    fn cluster(lb: LbPolicy, weights: &[u32]) -> Cluster {
        Cluster {
            name: Arc::from("c"),
            uid: 7,
            protocol: Default::default(),
            lb,
            endpoints: weights
                .iter()
                .enumerate()
                .map(|(i, &w)| Endpoint {
                    addr: format!("127.0.0.1:{}", 9000 + i).parse().unwrap(),
                    weight: w,
                })
                .collect(),
            connect_timeout: Duration::from_secs(1),
            tls: None,
            pool: PoolSpec::default(),
            outlier: OutlierSpec {
                consecutive_failures: 2,
                ejection_time: HumanDuration(Duration::from_secs(10)),
            },
            spec: ClusterSpec {
                name: "c".into(),
                protocol: Default::default(),
                lb,
                endpoints: vec![],
                connect_timeout: HumanDuration(Duration::from_secs(1)),
                pool: PoolSpec::default(),
                outlier: OutlierSpec::default(),
                http2: Default::default(),
                tls: None,
            },
        }
    }

    fn port(a: SocketAddr) -> u16 {
        a.port() - 9000
    }

    #[test]
    fn round_robin_cycles() {
        let b = Balancer::new();
        let c = cluster(LbPolicy::RoundRobin, &[1, 1, 1]);
        let now = Instant::now();
        let seq: Vec<u16> = (0..6).map(|_| port(b.pick(&c, now).unwrap())).collect();
        assert_eq!(seq, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weighted_is_smooth_and_proportional() {
        let b = Balancer::new();
        let c = cluster(LbPolicy::Weighted, &[5, 1, 1]);
        let now = Instant::now();
        let seq: Vec<u16> = (0..7).map(|_| port(b.pick(&c, now).unwrap())).collect();
        assert_eq!(seq.iter().filter(|&&p| p == 0).count(), 5);
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0], "nginx smooth WRR order");
    }

    #[test]
    fn least_request_prefers_idle_endpoint() {
        let b = Balancer::new();
        let c = cluster(LbPolicy::LeastRequest, &[1, 1]);
        let now = Instant::now();
        let busy = c.endpoints[0].addr;
        let _g: Vec<InFlight> = (0..10).map(|_| b.start_request(busy)).collect();
        // With two endpoints, P2C picks endpoint 1 unless both samples hit endpoint 0.
        let ones = (0..1000)
            .filter(|_| port(b.pick(&c, now).unwrap()) == 1)
            .count();
        assert!(ones > 650, "idle endpoint chosen {ones}/1000");
    }

    #[test]
    fn ejection_and_no_healthy_endpoint() {
        let b = Balancer::new();
        let c = cluster(LbPolicy::RoundRobin, &[1, 1]);
        let now = Instant::now();
        for ep in &c.endpoints {
            b.report_failure(&c, ep.addr, now);
            assert!(b.pick(&c, now).is_some(), "one failure does not eject");
            b.report_failure(&c, ep.addr, now);
        }
        assert_eq!(b.pick(&c, now), None, "all ejected");
        assert!(
            b.pick(&c, now + Duration::from_secs(11)).is_some(),
            "ejection expires"
        );
        let empty = cluster(LbPolicy::Random, &[]);
        assert_eq!(b.pick(&empty, now), None);
    }

    #[test]
    fn connect_outcomes_and_responses_are_counted() {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = Arc::new(WorkerStats::default());
        let b = Balancer::with_stats(stats.clone());
        let c = cluster(LbPolicy::RoundRobin, &[1]);
        let now = Instant::now();
        b.report_success(c.endpoints[0].addr);
        b.report_failure(&c, c.endpoints[0].addr, now);
        b.report_failure(&c, c.endpoints[0].addr, now);
        assert_eq!(stats.upstream_connects.load(Relaxed), 1);
        assert_eq!(stats.upstream_connect_failures.load(Relaxed), 2);
        for status in [101, 200, 204, 302, 404, 431, 502, 504, 999] {
            stats.record_response(status);
        }
        let classes: Vec<u64> = stats
            .responses_by_class
            .iter()
            .map(|c| c.load(Relaxed))
            .collect();
        assert_eq!(classes, [1, 2, 1, 2, 3], "999 counts as 5xx");
        assert_eq!(stats.requests.load(Relaxed), 9);
    }

    #[test]
    fn endpoint_state_is_published() {
        use crate::upstream::stats::EndpointState;
        let stats = Arc::new(WorkerStats::default());
        let b = Balancer::with_stats(stats.clone());
        let c = cluster(LbPolicy::RoundRobin, &[1, 1]);
        let (a, other) = (c.endpoints[0].addr, c.endpoints[1].addr);
        let now = Instant::now();
        let state = |at: Instant| EndpointState::sum([&stats.endpoints], a, at);
        b.report_failure(&c, a, now);
        assert_eq!(state(now).ejected_workers, 0, "one failure does not eject");
        b.report_failure(&c, a, now);
        assert_eq!(state(now).ejected_workers, 1);
        assert_eq!(state(now).connect_failures, 2);
        assert_eq!(
            state(now + Duration::from_secs(11)).ejected_workers,
            0,
            "the ejection ends after ejection_time"
        );
        let g1 = b.start_request(a);
        let g2 = b.start_request(a);
        assert_eq!(state(now).active_requests, 2);
        drop(g1);
        assert_eq!(state(now).active_requests, 1);
        drop(g2);
        assert_eq!(state(now).active_requests, 0);
        b.report_success(a);
        assert_eq!(
            state(now),
            EndpointState {
                connects: 1,
                connect_failures: 2,
                ..EndpointState::default()
            },
            "a success puts it back in rotation"
        );
        assert_eq!(
            EndpointState::sum([&stats.endpoints], other, now),
            EndpointState::default()
        );
    }

    #[test]
    fn random_only_returns_healthy() {
        let b = Balancer::new();
        let c = cluster(LbPolicy::Random, &[1, 1, 1]);
        let now = Instant::now();
        let bad = c.endpoints[1].addr;
        b.report_failure(&c, bad, now);
        b.report_failure(&c, bad, now);
        assert!((0..200).all(|_| b.pick(&c, now) != Some(bad)));
    }
}
