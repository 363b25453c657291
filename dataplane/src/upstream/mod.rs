//! Upstreams: compiled clusters (shared, immutable) and the per-worker state that serves them:
//! connection pools ([`pool`] for HTTP/1.1, [`h2pool`] for multiplexed HTTP/2) and load balancing with passive health ([`lb`]).
//! Both publish per-endpoint state for the admin API through [`stats`].

pub mod h2pool;
pub mod lb;
pub mod pool;
pub mod stats;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{ClusterProtocol, ClusterSpec, LbPolicy, OutlierSpec, PoolSpec};

/// A compiled cluster. Immutable; shared by every worker through the snapshot.
#[derive(Debug)]
pub struct Cluster {
    pub name: Arc<str>,
    /// Unique per compiled cluster: per-worker LB state is keyed by it. A recompile of an unchanged
    /// cluster reuses the same `Arc<Cluster>`, so its LB state survives config swaps.
    pub uid: u64,
    pub protocol: ClusterProtocol,
    pub lb: LbPolicy,
    pub endpoints: Vec<Endpoint>,
    pub connect_timeout: Duration,
    pub pool: PoolSpec,
    pub outlier: OutlierSpec,
    /// mTLS origination; plaintext when `None`.
    pub tls: Option<Arc<crate::snapshot::ClusterTls>>,
    /// The spec it was compiled from (compared to reuse unchanged clusters).
    pub spec: ClusterSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub weight: u32,
}
