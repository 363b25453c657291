//! Validation and compilation: `ConfigSpec` -> the parts of an immutable `Snapshot`.
//!
//! Every problem is collected (not just the first) as a [`FieldError`] whose path names the field
//! the way a user wrote it: `clusters[2].endpoints[0]`, `routes.web[0].routes[1].cluster`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use regex::Regex;

use crate::config::{
    ClusterSpec, ConfigSpec, HeaderMatchSpec, HeaderOpsSpec, Http2Spec, LimitsSpec,
    ListenerProtocol, ListenerSpec, RouteSpec, TimeoutsSpec, VirtualHostSpec,
};
use crate::policy::Policy;
use crate::route::{
    Action, HeaderMatch, HeaderMatchKind, HeaderOps, PathMatch, Redirect, Route, RouteMatch,
    RouteTable, VirtualHost,
};
use crate::tls::Credentials;
use crate::upstream::{Cluster, Endpoint};

use super::{Listener, ListenerKind, Snapshot, Timeouts};

/// One problem with a config, located by the path of the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }
}

static CLUSTER_UID: AtomicU64 = AtomicU64::new(1);

/// Validates `spec` and builds a snapshot (version 0: the store sets it). Unchanged clusters of `prev`
/// are reused so per-worker LB state survives the swap.
pub fn compile(spec: &ConfigSpec, prev: Option<&Snapshot>) -> Result<Snapshot, Vec<FieldError>> {
    let mut errs = Errors::default();
    if spec.workers == Some(0) {
        errs.push("workers", "must be at least 1");
    }
    check_limits("limits", &spec.limits, &mut errs);
    check_timeouts("timeouts", &spec.timeouts, &mut errs);
    if let Some(al) = &spec.access_log
        && al.path.trim().is_empty()
    {
        errs.push("access_log.path", "must be stdout, stderr or a file path");
    }
    settings::check_process_settings(spec, &mut errs);
    let creds = prev.map_or_else(Credentials::new, |p| p.creds.clone());
    let policies = security::policies(spec, &mut errs);

    // Clusters.
    let mut clusters: HashMap<String, Arc<Cluster>> = HashMap::new();
    for (i, c) in spec.clusters.iter().enumerate() {
        let path = format!("clusters[{i}]");
        if let Some(cluster) = compile_cluster(&path, c, spec, prev, &creds, &mut errs)
            && clusters.insert(c.name.clone(), cluster).is_some()
        {
            errs.push(
                format!("{path}.name"),
                format!("duplicate cluster name {:?}", c.name),
            );
        }
    }

    // Route tables.
    let mut tables: HashMap<String, Arc<RouteTable>> = HashMap::new();
    for (name, vhosts) in &spec.routes {
        let path = format!("routes.{name}");
        if !valid_name(name) {
            errs.push(&path, "table names use letters, digits, '-', '_' and '.'");
        }
        tables.insert(
            name.clone(),
            Arc::new(compile_table(
                &path, name, vhosts, &clusters, &policies, &mut errs,
            )),
        );
    }

    // Listeners.
    let mut listeners: HashMap<Arc<str>, Arc<Listener>> = HashMap::new();
    let mut addresses: HashSet<SocketAddr> = HashSet::new();
    for (i, l) in spec.listeners.iter().enumerate() {
        let path = format!("listeners[{i}]");
        let Some(listener) = compile_listener(
            &path, l, spec, &clusters, &tables, &policies, &creds, &mut errs,
        ) else {
            continue;
        };
        if listener.address.port() != 0 && !addresses.insert(listener.address) {
            errs.push(
                format!("{path}.address"),
                format!("{} is used by another listener", listener.address),
            );
        }
        if listeners
            .insert(listener.name.clone(), Arc::new(listener))
            .is_some()
        {
            errs.push(
                format!("{path}.name"),
                format!("duplicate listener name {:?}", l.name),
            );
        }
    }

    if !errs.0.is_empty() {
        return Err(errs.0);
    }
    Ok(Snapshot {
        version: 0,
        spec: spec.clone(),
        listeners,
        clusters,
        route_tables: tables,
        drain_timeout: spec.drain_timeout.get(),
        access_log: None,
        creds,
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn check_limits(path: &str, l: &LimitsSpec, errs: &mut Errors) {
    if !(1024..=1 << 20).contains(&l.max_request_head_bytes) {
        errs.push(
            format!("{path}.max_request_head_bytes"),
            "must be between 1024 and 1048576",
        );
    }
    if !(1024..=1 << 20).contains(&l.max_response_head_bytes) {
        errs.push(
            format!("{path}.max_response_head_bytes"),
            "must be between 1024 and 1048576",
        );
    }
    if !(8..=1024).contains(&l.max_headers) {
        errs.push(format!("{path}.max_headers"), "must be between 8 and 1024");
    }
    if l.max_connections_per_worker == 0 {
        errs.push(
            format!("{path}.max_connections_per_worker"),
            "must be at least 1",
        );
    }
}

fn check_timeouts(path: &str, t: &TimeoutsSpec, errs: &mut Errors) {
    for (name, d) in [
        ("header_read", t.header_read),
        ("keepalive_idle", t.keepalive_idle),
        ("idle", t.idle),
    ] {
        if d.get().is_zero() {
            errs.push(format!("{path}.{name}"), "must be greater than 0");
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn compile_listener(
    path: &str,
    l: &ListenerSpec,
    spec: &ConfigSpec,
    clusters: &HashMap<String, Arc<Cluster>>,
    tables: &HashMap<String, Arc<RouteTable>>,
    policies: &HashMap<String, Arc<Policy>>,
    creds: &Arc<Credentials>,
    errs: &mut Errors,
) -> Option<Listener> {
    if !valid_name(&l.name) {
        errs.push(
            format!("{path}.name"),
            "use 1-128 letters, digits, '-', '_' or '.'",
        );
    }
    let address = match l.address.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            errs.push(
                format!("{path}.address"),
                format!("{:?} is not an ip:port address", l.address),
            );
            None
        }
    };
    // Listener overrides replace only the fields they set.
    let limits = l.limits.map_or(spec.limits, |o| o.over(spec.limits));
    if l.limits.is_some() {
        check_limits(&format!("{path}.limits"), &limits, errs);
    }
    let t = l.timeouts.map_or(spec.timeouts, |o| o.over(spec.timeouts));
    if l.timeouts.is_some() {
        check_timeouts(&format!("{path}.timeouts"), &t, errs);
    }
    let http2 = l.http2.unwrap_or_default();
    if let Some(h) = &l.http2 {
        if matches!(l.protocol, ListenerProtocol::Tcp | ListenerProtocol::Http1) {
            errs.push(
                format!("{path}.http2"),
                "only `auto` and `http2` listeners speak HTTP/2",
            );
        }
        check_http2(&format!("{path}.http2"), h, errs);
    }
    let kind = match l.protocol {
        ListenerProtocol::Tcp => {
            if l.routes.is_some() {
                errs.push(
                    format!("{path}.routes"),
                    "a tcp listener forwards to `cluster`, not routes",
                );
            }
            match &l.cluster {
                None => {
                    errs.push(format!("{path}.cluster"), "a tcp listener needs a cluster");
                    None
                }
                Some(c) => match clusters.get(c) {
                    Some(c) => Some(ListenerKind::Tcp { cluster: c.clone() }),
                    None => {
                        errs.push(format!("{path}.cluster"), format!("unknown cluster {c:?}"));
                        None
                    }
                },
            }
        }
        ListenerProtocol::Http1 | ListenerProtocol::Http2 | ListenerProtocol::Auto => {
            if l.cluster.is_some() {
                errs.push(
                    format!("{path}.cluster"),
                    "an http listener uses `routes`; only tcp listeners take a cluster",
                );
            }
            match &l.routes {
                None => {
                    errs.push(
                        format!("{path}.routes"),
                        "an http listener needs a route table",
                    );
                    None
                }
                Some(r) => match tables.get(r) {
                    Some(t) => Some(ListenerKind::Http { routes: t.clone() }),
                    None => {
                        errs.push(
                            format!("{path}.routes"),
                            format!("unknown route table {r:?}"),
                        );
                        None
                    }
                },
            }
        }
    };
    let tls = l.tls.as_ref().and_then(|t| {
        security::listener_tls(&format!("{path}.tls"), t, l.protocol, spec, creds, errs)
    });
    let policy = security::policy_ref(
        &format!("{path}.policy"),
        l.policy.as_deref(),
        policies,
        errs,
    );
    if l.protocol == ListenerProtocol::Tcp
        && let Some(p) = &policy
        && p.needs_request()
    {
        errs.push(
            format!("{path}.policy"),
            format!(
                "policy {:?} has path or method conditions, which a tcp listener cannot check",
                p.name
            ),
        );
    }
    if l.tls.is_some() && tls.is_none() {
        return None;
    }
    Some(Listener {
        name: Arc::from(l.name.as_str()),
        address: address?,
        protocol: l.protocol,
        kind: kind?,
        tls,
        policy,
        limits,
        timeouts: Timeouts {
            header_read: t.header_read.get(),
            keepalive_idle: t.keepalive_idle.get(),
            idle: t.idle.get(),
            request: t.request.get(),
        },
        http2,
    })
}

fn check_http2(path: &str, h: &Http2Spec, errs: &mut Errors) {
    const MAX_WINDOW: u32 = (1 << 31) - 1;
    if h.max_concurrent_streams == 0 {
        errs.push(
            format!("{path}.max_concurrent_streams"),
            "must be at least 1",
        );
    }
    for (name, v) in [
        ("initial_stream_window_size", h.initial_stream_window_size),
        (
            "initial_connection_window_size",
            h.initial_connection_window_size,
        ),
    ] {
        if !(65_535..=MAX_WINDOW).contains(&v) {
            errs.push(
                format!("{path}.{name}"),
                "must be between 65535 and 2147483647",
            );
        }
    }
    if !(16_384..=16_777_215).contains(&h.max_frame_size) {
        errs.push(
            format!("{path}.max_frame_size"),
            "must be between 16384 and 16777215",
        );
    }
    if !(1024..=1 << 24).contains(&h.max_header_list_size) {
        errs.push(
            format!("{path}.max_header_list_size"),
            "must be between 1024 and 16777216",
        );
    }
    if h.max_concurrent_reset_streams > 10_000 {
        errs.push(
            format!("{path}.max_concurrent_reset_streams"),
            "must be at most 10000",
        );
    }
    if !(1..=10_000).contains(&h.max_pending_accept_reset_streams) {
        errs.push(
            format!("{path}.max_pending_accept_reset_streams"),
            "must be between 1 and 10000 (0 would turn off the rapid-reset defence)",
        );
    }
    for (name, d) in [
        ("keepalive_interval", h.keepalive_interval),
        ("keepalive_timeout", h.keepalive_timeout),
    ] {
        if d.get().is_zero() {
            errs.push(format!("{path}.{name}"), "must be greater than 0");
        }
    }
}

fn compile_cluster(
    path: &str,
    c: &ClusterSpec,
    spec: &ConfigSpec,
    prev: Option<&Snapshot>,
    creds: &Arc<Credentials>,
    errs: &mut Errors,
) -> Option<Arc<Cluster>> {
    let before = errs.0.len();
    if !valid_name(&c.name) {
        errs.push(
            format!("{path}.name"),
            "use 1-128 letters, digits, '-', '_' or '.'",
        );
    }
    if c.connect_timeout.get().is_zero() {
        errs.push(format!("{path}.connect_timeout"), "must be greater than 0");
    }
    for (name, d) in [
        ("keepalive_interval", c.http2.keepalive_interval),
        ("keepalive_timeout", c.http2.keepalive_timeout),
    ] {
        if d.get().is_zero() {
            errs.push(format!("{path}.http2.{name}"), "must be greater than 0");
        }
    }
    if c.outlier.consecutive_failures > 0 && c.outlier.ejection_time.get().is_zero() {
        errs.push(
            format!("{path}.outlier.ejection_time"),
            "must be greater than 0",
        );
    }
    let mut endpoints = Vec::with_capacity(c.endpoints.len());
    for (j, ep) in c.endpoints.iter().enumerate() {
        let epath = format!("{path}.endpoints[{j}]");
        if ep.weight() == 0 {
            errs.push(format!("{epath}.weight"), "must be at least 1");
        }
        match resolve(ep.address()) {
            Ok(addr) => endpoints.push(Endpoint {
                addr,
                weight: ep.weight(),
            }),
            Err(msg) => errs.push(epath, msg),
        }
    }
    let tls = c.tls.as_ref().and_then(|t| {
        security::cluster_tls(&format!("{path}.tls"), t, c.protocol, spec, creds, errs)
    });
    if errs.0.len() > before {
        return None;
    }
    if let Some(old) = prev.and_then(|p| p.clusters.get(&c.name))
        && old.spec == *c
        && old.endpoints == endpoints
    {
        return Some(old.clone());
    }
    Some(Arc::new(Cluster {
        name: Arc::from(c.name.as_str()),
        uid: CLUSTER_UID.fetch_add(1, Ordering::Relaxed),
        protocol: c.protocol,
        lb: c.lb,
        endpoints,
        connect_timeout: c.connect_timeout.get(),
        pool: c.pool,
        outlier: c.outlier,
        tls,
        spec: c.clone(),
    }))
}

/// `ip:port`, or `host:port` resolved now (the first address).
fn resolve(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = addr.parse::<SocketAddr>() {
        return if a.port() == 0 {
            Err(format!("{addr:?}: port 0 is not a valid endpoint"))
        } else {
            Ok(a)
        };
    }
    match addr.to_socket_addrs() {
        Ok(mut it) => it
            .next()
            .ok_or_else(|| format!("{addr:?} resolved to no address")),
        Err(e) => Err(format!("{addr:?} is not a valid host:port ({e})")),
    }
}

fn compile_table(
    path: &str,
    name: &str,
    vhosts: &[VirtualHostSpec],
    clusters: &HashMap<String, Arc<Cluster>>,
    policies: &HashMap<String, Arc<Policy>>,
    errs: &mut Errors,
) -> RouteTable {
    let mut table = RouteTable {
        name: Arc::from(name),
        exact: HashMap::new(),
        suffixes: Vec::new(),
        wildcard: None,
        vhosts: Vec::with_capacity(vhosts.len()),
    };
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, vh) in vhosts.iter().enumerate() {
        let vpath = format!("{path}[{i}]");
        if vh.domains.is_empty() {
            errs.push(
                format!("{vpath}.domains"),
                "needs at least one domain (use \"*\" for any)",
            );
        }
        for (k, d) in vh.domains.iter().enumerate() {
            let dpath = format!("{vpath}.domains[{k}]");
            let d = d.to_ascii_lowercase();
            if let Some(prev) = seen.insert(d.clone(), i) {
                errs.push(
                    &dpath,
                    format!("domain {d:?} is already served by {path}[{prev}]"),
                );
                continue;
            }
            if d == "*" {
                table.wildcard = Some(i);
            } else if let Some(suffix) = d.strip_prefix('*') {
                if !suffix.starts_with('.') || !valid_host(&suffix[1..]) {
                    errs.push(
                        &dpath,
                        format!("{d:?}: a wildcard domain is \"*\" or \"*.suffix\""),
                    );
                }
                table.suffixes.push((suffix.to_string(), i));
            } else if valid_host(&d) {
                table.exact.insert(d, i);
            } else {
                errs.push(&dpath, format!("{d:?} is not a valid host name"));
            }
        }
        let routes = vh
            .routes
            .iter()
            .enumerate()
            .filter_map(|(j, r)| {
                compile_route(
                    &format!("{vpath}.routes[{j}]"),
                    name,
                    i,
                    j,
                    r,
                    clusters,
                    policies,
                    errs,
                )
            })
            .collect();
        table.vhosts.push(VirtualHost::new(routes));
    }
    table.suffixes.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
    table
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn anchored(path: &str, re: &str, errs: &mut Errors) -> Option<Regex> {
    match Regex::new(&format!("^(?:{re})$")) {
        Ok(r) => Some(r),
        Err(e) => {
            errs.push(path, format!("invalid regex: {e}"));
            None
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn compile_route(
    path: &str,
    table: &str,
    vh: usize,
    idx: usize,
    r: &RouteSpec,
    clusters: &HashMap<String, Arc<Cluster>>,
    policies: &HashMap<String, Arc<Policy>>,
    errs: &mut Errors,
) -> Option<Route> {
    let before = errs.0.len();
    let m = &r.matcher;
    let set = [
        m.path.is_some(),
        m.prefix.is_some(),
        m.regex.is_some(),
        m.grpc.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if set > 1 {
        errs.push(
            format!("{path}.match"),
            "use only one of path, prefix, regex and grpc",
        );
    }
    let path_match = if let Some(g) = &m.grpc {
        grpc_path(&format!("{path}.match.grpc"), g, errs)
    } else if let Some(p) = &m.path {
        if !p.starts_with('/') {
            errs.push(format!("{path}.match.path"), "must start with '/'");
        }
        PathMatch::Exact(p.clone())
    } else if let Some(p) = &m.prefix {
        if !p.starts_with('/') {
            errs.push(format!("{path}.match.prefix"), "must start with '/'");
        }
        PathMatch::Prefix(p.clone())
    } else if let Some(re) = &m.regex {
        anchored(&format!("{path}.match.regex"), re, errs).map_or(PathMatch::Any, PathMatch::Regex)
    } else {
        PathMatch::Any
    };
    let mut methods = Vec::new();
    for (k, meth) in m.methods.iter().enumerate() {
        if !is_token(meth) {
            errs.push(
                format!("{path}.match.methods[{k}]"),
                format!("{meth:?} is not a method name"),
            );
        }
        methods.push(meth.to_ascii_uppercase());
    }
    let mut headers = Vec::new();
    for (name, hm) in &m.headers {
        let hpath = format!("{path}.match.headers.{name}");
        if !is_token(name) {
            errs.push(&hpath, "not a valid header name");
        }
        let kind = match hm {
            HeaderMatchSpec::Exact(v) => Some(HeaderMatchKind::Exact(v.as_bytes().to_vec())),
            HeaderMatchSpec::Rule(rule) => {
                let n = [
                    rule.exact.is_some(),
                    rule.present.is_some(),
                    rule.regex.is_some(),
                ]
                .iter()
                .filter(|b| **b)
                .count();
                if n != 1 {
                    errs.push(&hpath, "set exactly one of exact, present and regex");
                    None
                } else if let Some(v) = &rule.exact {
                    Some(HeaderMatchKind::Exact(v.as_bytes().to_vec()))
                } else if let Some(p) = rule.present {
                    Some(HeaderMatchKind::Present(p))
                } else {
                    rule.regex
                        .as_deref()
                        .and_then(|re| anchored(&format!("{hpath}.regex"), re, errs))
                        .map(HeaderMatchKind::Regex)
                }
            }
        };
        if let Some(kind) = kind {
            headers.push(HeaderMatch {
                name: name.to_ascii_lowercase(),
                kind,
            });
        }
    }

    let actions = [
        r.cluster.is_some(),
        r.weighted.is_some(),
        r.direct_response.is_some(),
        r.redirect.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if actions != 1 {
        errs.push(
            path,
            "set exactly one action: cluster, weighted, direct_response or redirect",
        );
    }
    let lookup = |p: String, name: &str, errs: &mut Errors| match clusters.get(name) {
        Some(c) => Some(c.clone()),
        None => {
            errs.push(p, format!("unknown cluster {name:?}"));
            None
        }
    };
    let action = if let Some(c) = &r.cluster {
        lookup(format!("{path}.cluster"), c, errs).map(Action::Cluster)
    } else if let Some(ws) = &r.weighted {
        if ws.is_empty() {
            errs.push(format!("{path}.weighted"), "needs at least one cluster");
        }
        let mut list = Vec::new();
        let mut total: u32 = 0;
        for (k, w) in ws.iter().enumerate() {
            if let Some(c) = lookup(format!("{path}.weighted[{k}].cluster"), &w.cluster, errs) {
                list.push((c, w.weight));
            }
            match total.checked_add(w.weight) {
                Some(t) => total = t,
                None => errs.push(
                    format!("{path}.weighted[{k}].weight"),
                    "weights must add up to at most 4294967295",
                ),
            }
        }
        if total == 0 && !ws.is_empty() {
            errs.push(
                format!("{path}.weighted"),
                "weights must add up to more than 0",
            );
        }
        Some(Action::Weighted {
            clusters: list,
            total,
        })
    } else if let Some(d) = &r.direct_response {
        if !(200..=599).contains(&d.status) {
            errs.push(
                format!("{path}.direct_response.status"),
                "must be between 200 and 599",
            );
        }
        Some(Action::Direct {
            status: d.status,
            body: Arc::from(d.body.as_bytes()),
        })
    } else if let Some(rd) = &r.redirect {
        let status = rd.status.unwrap_or(302);
        if ![301, 302, 303, 307, 308].contains(&status) {
            errs.push(
                format!("{path}.redirect.status"),
                "must be 301, 302, 303, 307 or 308",
            );
        }
        if let Some(s) = &rd.scheme
            && s != "http"
            && s != "https"
        {
            errs.push(format!("{path}.redirect.scheme"), "must be http or https");
        }
        if let Some(h) = &rd.host
            && !valid_host(strip_port_str(h))
        {
            errs.push(
                format!("{path}.redirect.host"),
                format!("{h:?} is not a valid host"),
            );
        }
        if let Some(p) = &rd.path
            && !valid_path(p)
        {
            errs.push(
                format!("{path}.redirect.path"),
                "must start with '/' and contain no spaces or control characters",
            );
        }
        Some(Action::Redirect(Redirect {
            scheme: rd.scheme.clone(),
            host: rd.host.clone(),
            path: rd.path.clone(),
            status,
        }))
    } else {
        None
    };
    if let Some(rw) = &r.prefix_rewrite {
        if m.prefix.is_none() {
            errs.push(
                format!("{path}.prefix_rewrite"),
                "needs match.prefix (the part it replaces)",
            );
        }
        if !valid_path(rw) {
            errs.push(
                format!("{path}.prefix_rewrite"),
                "must start with '/' and contain no spaces or control characters",
            );
        }
    }
    let request_headers = header_ops(&format!("{path}.request_headers"), &r.request_headers, errs);
    let response_headers = header_ops(
        &format!("{path}.response_headers"),
        &r.response_headers,
        errs,
    );
    let principals = m
        .principals
        .iter()
        .enumerate()
        .filter_map(|(k, p)| match p.parse::<shoal_ca::IdPattern>() {
            Ok(p) => Some(p),
            Err(e) => {
                errs.push(
                    format!("{path}.match.principals[{k}]"),
                    format!("{p:?}: {e}"),
                );
                None
            }
        })
        .collect();
    let policy = security::policy_ref(
        &format!("{path}.policy"),
        r.policy.as_deref(),
        policies,
        errs,
    );
    if errs.0.len() > before {
        return None;
    }
    Some(Route {
        id: Arc::from(format!("{table}[{vh}].routes[{idx}]")),
        matcher: RouteMatch {
            path: path_match,
            methods,
            headers,
            grpc: m.grpc.is_some(),
            principals,
        },
        policy,
        action: action?,
        prefix_rewrite: r.prefix_rewrite.clone(),
        timeout: r
            .timeout
            .map(|t| t.get())
            .filter(|t: &Duration| !t.is_zero()),
        request_headers,
        response_headers,
    })
}

/// `grpc: { service, method }` -> the `:path` it matches: `/service/method` or `/service/`.
fn grpc_path(path: &str, g: &crate::config::GrpcMatchSpec, errs: &mut Errors) -> PathMatch {
    let ident = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
            && !s.starts_with('.')
            && !s.ends_with('.')
    };
    if !ident(&g.service) {
        errs.push(
            format!("{path}.service"),
            format!(
                "{:?} is not a service name (package.Service: letters, digits, '_', '.')",
                g.service
            ),
        );
    }
    match &g.method {
        Some(m) => {
            if !ident(m) || m.contains('.') {
                errs.push(
                    format!("{path}.method"),
                    format!("{m:?} is not a method name (letters, digits, '_')"),
                );
            }
            PathMatch::Exact(format!("/{}/{m}", g.service))
        }
        None => PathMatch::Prefix(format!("/{}/", g.service)),
    }
}

/// A path written into a request line or a Location header: no spaces, no control characters.
fn valid_path(p: &str) -> bool {
    p.starts_with('/') && !p.bytes().any(|b| b <= b' ' || b == 0x7f)
}

fn strip_port_str(h: &str) -> &str {
    crate::route::strip_port(h)
}

fn header_ops(path: &str, ops: &HeaderOpsSpec, errs: &mut Errors) -> HeaderOps {
    let mut out = HeaderOps::default();
    for (name, value) in &ops.add {
        if !is_token(name) {
            errs.push(format!("{path}.add.{name}"), "not a valid header name");
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            errs.push(
                format!("{path}.add.{name}"),
                "value must not contain CR, LF or NUL",
            );
        }
        out.add.push((name.to_ascii_lowercase(), value.clone()));
    }
    for (k, name) in ops.remove.iter().enumerate() {
        if !is_token(name) {
            errs.push(format!("{path}.remove[{k}]"), "not a valid header name");
        }
        out.remove.push(name.to_ascii_lowercase());
    }
    out
}

mod security;
mod settings;

pub use security::{ALPN_H1, ALPN_H2, ClusterTls, ListenerTls};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod http2_tests;
