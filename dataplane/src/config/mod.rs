//! Raw configuration: the serde shape of the YAML file (and, later, of admin API messages).
//!
//! These structs are only ever *read by the compiler* (`snapshot::compile`), never on the hot path.
//! Every struct denies unknown fields, and every optional field has a documented default, so a typo is
//! an error naming the field instead of a silently ignored setting.
//!
//! Flow: YAML text -> [`ConfigSpec`] (this module) -> `validate + compile` -> `Snapshot` (immutable).

mod duration;
mod either;
mod process;
mod tls;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use duration::HumanDuration;
pub use process::{AdminSpec, CaSpec, IdentitySpec};
pub use tls::{
    CertificateSpec, ClusterTlsSpec, ListenerTlsSpec, PolicyAction, PolicyRuleSpec, PolicySpec,
    TlsMode,
};

/// The whole configuration of a Shoal process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigSpec {
    /// Worker threads (one per core when absent). Each is pinned to a core and owns its listeners.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// Time SIGTERM/SIGINT waits for in-flight requests before exiting. Default 30s.
    pub drain_timeout: HumanDuration,
    /// Access log: one JSON line per request or TCP session. Off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_log: Option<AccessLogSpec>,
    /// Limits applied to every listener unless the listener overrides them.
    pub limits: LimitsSpec,
    /// Timeouts applied to every listener unless the listener overrides them.
    pub timeouts: TimeoutsSpec,
    pub listeners: Vec<ListenerSpec>,
    /// Route tables by name; HTTP listeners refer to one by name.
    pub routes: BTreeMap<String, Vec<VirtualHostSpec>>,
    pub clusters: Vec<ClusterSpec>,
    /// Authorization policies by name; listeners and routes refer to one with `policy:`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicySpec>,
    /// The admin API (gRPC on the admin thread). Off when absent. A process setting: read at
    /// start only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminSpec>,
    /// Directory where every applied config is persisted (atomically) and reloaded from at the
    /// next start; see README "Persistence". Not persisted when absent. A process setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    /// This proxy's own SPIFFE identity (SVID), obtained from `ca.remote` (or, without `ca`,
    /// from the local CA in `<state_dir>/ca`, created on first start) and renewed at about
    /// half its lifetime. Off when absent. A process setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentitySpec>,
    /// Where the identity comes from. A process setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<CaSpec>,
}

impl ConfigSpec {
    /// Parses YAML. Structural errors (unknown field, wrong type) name the field and position.
    pub fn from_yaml(text: &str) -> Result<Self, serde_yaml_ng::Error> {
        serde_yaml_ng::from_str(text)
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogSpec {
    /// `stdout`, `stderr` or a file path (appended to).
    pub path: String,
}

/// Size and count limits. Defaults are safe for an edge proxy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSpec {
    /// Largest request head (request line + headers) accepted; larger gets 431. Default 64 KiB.
    pub max_request_head_bytes: usize,
    /// Largest request body accepted; larger gets 413. 0 = unlimited. Default 1 GiB.
    pub max_request_body_bytes: u64,
    /// Largest response head accepted from an upstream; larger gets 502. Default 64 KiB.
    pub max_response_head_bytes: usize,
    /// Most header fields in a request or response head. Default 128.
    pub max_headers: usize,
    /// Most downstream connections open at once per worker; more are closed at accept. Default 16384.
    pub max_connections_per_worker: usize,
}

impl Default for LimitsSpec {
    fn default() -> Self {
        Self {
            max_request_head_bytes: 64 * 1024,
            max_request_body_bytes: 1 << 30,
            max_response_head_bytes: 64 * 1024,
            max_headers: 128,
            max_connections_per_worker: 16384,
        }
    }
}

/// Timeouts. Defaults follow what a production proxy needs; see README's config reference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsSpec {
    /// A client must send a complete request head within this. Default 10s.
    pub header_read: HumanDuration,
    /// An idle keep-alive client connection is closed after this. Default 60s.
    pub keepalive_idle: HumanDuration,
    /// A body (either direction) or a TCP session that moves no byte for this long is closed. Default 300s.
    pub idle: HumanDuration,
    /// Time from sending a request upstream to receiving its response head, unless the route
    /// sets `timeout`. Default 60s; 0 disables it.
    pub request: HumanDuration,
}

impl Default for TimeoutsSpec {
    fn default() -> Self {
        Self {
            header_read: HumanDuration(Duration::from_secs(10)),
            keepalive_idle: HumanDuration(Duration::from_secs(60)),
            idle: HumanDuration(Duration::from_secs(300)),
            request: HumanDuration(Duration::from_secs(60)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerProtocol {
    /// Sniffs the first bytes: HTTP/1.1 or HTTP/2 prior knowledge (h2c) on the same port
    /// (a TLS ClientHello on a listener without `tls:` is closed).
    #[default]
    Auto,
    Http1,
    /// HTTP/2 only (prior knowledge, h2c).
    Http2,
    Tcp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSpec {
    /// Unique name, used in logs, metrics and the access log.
    pub name: String,
    /// `ip:port` to bind (every worker binds it with SO_REUSEPORT). Port 0 picks a free port.
    pub address: String,
    #[serde(default)]
    pub protocol: ListenerProtocol,
    /// Route table for HTTP listeners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<String>,
    /// Cluster for TCP listeners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Overrides of the top-level limits for this listener (fields not set are inherited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsOverride>,
    /// Overrides of the top-level timeouts for this listener (fields not set are inherited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<TimeoutsOverride>,
    /// HTTP/2 settings of `auto` and `http2` listeners (defaults when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2: Option<Http2Spec>,
    /// TLS termination (plain or mutual). Plaintext when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTlsSpec>,
    /// Authorization policy (a name in `policies`) checked for every request (HTTP) or
    /// connection (TCP: a denied peer is disconnected). None when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// A listener's HTTP/2 settings. The defaults bound per-connection memory (windows x streams) and
/// keep the h2 crate's abuse defences on: rapid reset (CVE-2023-44487) through the reset-stream
/// limits, header-list and frame size limits, REFUSED_STREAM past `max_concurrent_streams`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http2Spec {
    /// Streams a client may have open at once; more are refused (REFUSED_STREAM). Default 256.
    pub max_concurrent_streams: u32,
    /// Per-stream receive window in bytes. Default 1 MiB (65535..=2147483647).
    pub initial_stream_window_size: u32,
    /// Per-connection receive window in bytes. Default 4 MiB (65535..=2147483647).
    pub initial_connection_window_size: u32,
    /// Largest frame payload accepted. Default 16384 (16384..=16777215).
    pub max_frame_size: u32,
    /// Largest decoded header list of a request. Default 64 KiB.
    pub max_header_list_size: u32,
    /// Locally reset streams remembered at once (h2 default 10 is kept). Default 10.
    pub max_concurrent_reset_streams: usize,
    /// Streams a client may reset before Shoal accepts them (rapid reset defence). Default 20.
    pub max_pending_accept_reset_streams: usize,
    /// A PING is sent after this long with no frame from the client. Default 30s.
    pub keepalive_interval: HumanDuration,
    /// A PING not answered within this closes the connection. Default 10s.
    pub keepalive_timeout: HumanDuration,
}

impl Default for Http2Spec {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 256,
            initial_stream_window_size: 1 << 20,
            initial_connection_window_size: 4 << 20,
            max_frame_size: 16 * 1024,
            max_header_list_size: 64 * 1024,
            max_concurrent_reset_streams: 10,
            max_pending_accept_reset_streams: 20,
            keepalive_interval: HumanDuration(Duration::from_secs(30)),
            keepalive_timeout: HumanDuration(Duration::from_secs(10)),
        }
    }
}

/// A listener's `limits`: each field set replaces the top-level value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsOverride {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_request_head_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_request_body_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_response_head_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_headers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections_per_worker: Option<usize>,
}

impl LimitsOverride {
    pub fn over(self, base: LimitsSpec) -> LimitsSpec {
        LimitsSpec {
            max_request_head_bytes: self
                .max_request_head_bytes
                .unwrap_or(base.max_request_head_bytes),
            max_request_body_bytes: self
                .max_request_body_bytes
                .unwrap_or(base.max_request_body_bytes),
            max_response_head_bytes: self
                .max_response_head_bytes
                .unwrap_or(base.max_response_head_bytes),
            max_headers: self.max_headers.unwrap_or(base.max_headers),
            max_connections_per_worker: self
                .max_connections_per_worker
                .unwrap_or(base.max_connections_per_worker),
        }
    }
}

/// A listener's `timeouts`: each field set replaces the top-level value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsOverride {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_read: Option<HumanDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive_idle: Option<HumanDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<HumanDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<HumanDuration>,
}

impl TimeoutsOverride {
    pub fn over(self, base: TimeoutsSpec) -> TimeoutsSpec {
        TimeoutsSpec {
            header_read: self.header_read.unwrap_or(base.header_read),
            keepalive_idle: self.keepalive_idle.unwrap_or(base.keepalive_idle),
            idle: self.idle.unwrap_or(base.idle),
            request: self.request.unwrap_or(base.request),
        }
    }
}

/// A virtual host: the domains it answers for and its ordered routes (first match wins).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualHostSpec {
    /// `api.example.com` (exact), `*.example.com` (suffix) or `*` (any). Exact beats suffix
    /// (longest first) beats `*`. The port of the Host header is ignored.
    pub domains: Vec<String>,
    pub routes: Vec<RouteSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteSpec {
    #[serde(rename = "match")]
    pub matcher: MatchSpec,
    // --- the action: exactly one of these ---
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weighted: Option<Vec<WeightedClusterSpec>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<DirectResponseSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<RedirectSpec>,
    // --- modifiers for forwarding actions ---
    /// Replaces the matched `prefix` of the path before forwarding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix_rewrite: Option<String>,
    /// Time from sending the request upstream to its response head. Overrides `timeouts.request`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    #[serde(skip_serializing_if = "HeaderOpsSpec::is_empty")]
    pub request_headers: HeaderOpsSpec,
    #[serde(skip_serializing_if = "HeaderOpsSpec::is_empty")]
    pub response_headers: HeaderOpsSpec,
    /// Authorization policy (a name in `policies`) checked after the listener's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchSpec {
    /// Exact path (query string excluded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Path prefix. With none of path/prefix/regex, every path matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Regular expression that must match the whole path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Allowed methods; empty = any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Header conditions, all of which must hold. `name: "value"` is an exact match.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, HeaderMatchSpec>,
    /// gRPC call match: `:path` is `/service/method` (any method when absent) and the
    /// content-type is `application/grpc*`. Not combined with path, prefix or regex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcMatchSpec>,
    /// Peer SPIFFE IDs (exact or `.../sa/*`), one of which the connection's mTLS peer must
    /// have; empty = any peer, with or without an identity.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcMatchSpec {
    /// Fully qualified service name, e.g. `helloworld.Greeter`.
    pub service: String,
    /// Method name, e.g. `SayHello`; every method of the service when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// `name: "value"` (exact) or `name: { exact | present | regex }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum HeaderMatchSpec {
    Exact(String),
    Rule(HeaderRuleSpec),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderRuleSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// `true`: the header must be present; `false`: it must be absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedClusterSpec {
    pub cluster: String,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectResponseSpec {
    pub status: u16,
    #[serde(default)]
    pub body: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedirectSpec {
    /// New scheme (`http`/`https`); default keeps `http`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// New host; default keeps the request's Host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// New path (query kept); default keeps the path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// 301, 302 (default), 303, 307 or 308.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderOpsSpec {
    /// Headers appended (name -> value).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Header names removed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl HeaderOpsSpec {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterProtocol {
    #[default]
    Http1,
    /// HTTP/2 prior knowledge (h2c): multiplexed connections per endpoint per worker.
    Http2,
    /// The downstream request's protocol (HTTP/1.1 -> http1, HTTP/2 -> http2).
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    #[default]
    RoundRobin,
    Random,
    /// Weighted round robin by endpoint `weight`.
    Weighted,
    /// Power of two choices on in-flight requests (per worker).
    LeastRequest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    pub name: String,
    #[serde(default)]
    pub protocol: ClusterProtocol,
    #[serde(default)]
    pub lb: LbPolicy,
    pub endpoints: Vec<EndpointSpec>,
    /// Default 1s.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    #[serde(default)]
    pub pool: PoolSpec,
    #[serde(default)]
    pub outlier: OutlierSpec,
    /// HTTP/2 upstream connections (`protocol: http2` or `auto`).
    #[serde(default)]
    pub http2: ClusterHttp2Spec,
    /// Originate mutual TLS with this proxy's SVID. Plaintext when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClusterTlsSpec>,
}

/// Keepalive of a cluster's HTTP/2 connections: a connection whose PING goes unanswered is
/// closed (its streams fail over to UNAVAILABLE / 502 instead of hanging on a dead peer).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterHttp2Spec {
    /// A PING is sent this often on each connection. Default 30s.
    pub keepalive_interval: HumanDuration,
    /// ...and must be answered within this. Default 10s.
    pub keepalive_timeout: HumanDuration,
}

impl Default for ClusterHttp2Spec {
    fn default() -> Self {
        Self {
            keepalive_interval: HumanDuration(Duration::from_secs(30)),
            keepalive_timeout: HumanDuration(Duration::from_secs(10)),
        }
    }
}

fn default_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

/// `"host:port"` or `{ address, weight }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EndpointSpec {
    Address(String),
    Weighted(WeightedEndpointSpec),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedEndpointSpec {
    pub address: String,
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

impl EndpointSpec {
    pub fn address(&self) -> &str {
        match self {
            EndpointSpec::Address(a) => a,
            EndpointSpec::Weighted(w) => &w.address,
        }
    }
    pub fn weight(&self) -> u32 {
        match self {
            EndpointSpec::Address(_) => 1,
            EndpointSpec::Weighted(w) => w.weight,
        }
    }
}

/// Per-worker upstream keep-alive pool.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolSpec {
    /// Idle connections kept per endpoint per worker. Default 64; 0 disables reuse.
    pub max_idle_per_endpoint: usize,
    /// Idle upstream connections are closed after this. Default 30s.
    pub idle_timeout: HumanDuration,
}

impl Default for PoolSpec {
    fn default() -> Self {
        Self {
            max_idle_per_endpoint: 64,
            idle_timeout: HumanDuration(Duration::from_secs(30)),
        }
    }
}

/// Passive health: an endpoint failing `consecutive_failures` connects in a row (on one worker) is
/// skipped by the load balancer for `ejection_time`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierSpec {
    /// Default 5; 0 disables ejection.
    pub consecutive_failures: u32,
    /// Default 10s.
    pub ejection_time: HumanDuration,
}

impl Default for OutlierSpec {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            ejection_time: HumanDuration(Duration::from_secs(10)),
        }
    }
}

impl Default for HumanDuration {
    fn default() -> Self {
        HumanDuration(Duration::from_secs(30))
    }
}
