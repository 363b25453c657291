//! Compilation of the security parts of a config: listener TLS (edge certificates from files, or
//! mutual TLS with the proxy's rotating SVID), cluster mTLS origination, and the authorization
//! policies. The rustls configs are built here, on the control side, once per apply; workers
//! only clone the `Arc`s.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use shoal_ca::{IdPattern, SpiffeId};

use crate::config::{
    ClusterProtocol, ClusterTlsSpec, ConfigSpec, ListenerProtocol, ListenerTlsSpec, PolicyAction,
    TlsMode,
};
use crate::policy::{PathPattern, Policy, Rule};
use crate::tls::{self, Credentials};

use super::{Errors, is_token};

pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_H1: &[u8] = b"http/1.1";

/// A listener's compiled TLS.
#[derive(Debug)]
pub struct ListenerTls {
    pub config: Arc<rustls::ServerConfig>,
    pub mutual: bool,
    /// Lowercase header name carrying the peer identity upstream (mutual only).
    pub peer_header: Option<Arc<str>>,
}

/// A cluster's compiled mTLS origination.
#[derive(Debug)]
pub struct ClusterTls {
    /// ALPN `http/1.1` (HTTP/1.1 and TCP) and `h2`.
    pub h1: Arc<rustls::ClientConfig>,
    pub h2: Arc<rustls::ClientConfig>,
    /// SNI; `None` = the endpoint's IP (no SNI is sent for an IP).
    pub server_name: Option<ServerName<'static>>,
    pub expected: SpiffeId,
}

fn patterns(path: &str, list: &[String], errs: &mut Errors) -> Vec<IdPattern> {
    let mut out = Vec::with_capacity(list.len());
    for (k, p) in list.iter().enumerate() {
        match p.parse::<IdPattern>() {
            Ok(p) => out.push(p),
            Err(e) => errs.push(format!("{path}[{k}]"), format!("{p:?}: {e}")),
        }
    }
    out
}

/// `listeners[i].tls`.
pub(super) fn listener_tls(
    path: &str,
    t: &ListenerTlsSpec,
    protocol: ListenerProtocol,
    spec: &ConfigSpec,
    creds: &Arc<Credentials>,
    errs: &mut Errors,
) -> Option<Arc<ListenerTls>> {
    let alpn: &[&[u8]] = match protocol {
        ListenerProtocol::Auto => &[ALPN_H2, ALPN_H1],
        ListenerProtocol::Http1 => &[ALPN_H1],
        ListenerProtocol::Http2 => &[ALPN_H2],
        ListenerProtocol::Tcp => &[],
    };
    match t.mode {
        TlsMode::Server => {
            if !t.allow.is_empty() {
                errs.push(
                    format!("{path}.allow"),
                    "only `mode: mutual` checks client identities",
                );
            }
            if t.peer_header.is_some() {
                errs.push(
                    format!("{path}.peer_header"),
                    "only `mode: mutual` has a peer identity",
                );
            }
            if t.certificates.is_empty() {
                errs.push(
                    format!("{path}.certificates"),
                    "`mode: server` needs at least one certificate ({ cert, key } PEM files)",
                );
                return None;
            }
            let mut pairs = Vec::new();
            for (k, c) in t.certificates.iter().enumerate() {
                match tls::load_pem_files(Path::new(&c.cert), Path::new(&c.key)) {
                    Ok(p) => pairs.push(p),
                    Err(e) => errs.push(format!("{path}.certificates[{k}]"), e),
                }
            }
            let client_roots = match &t.client_ca {
                None => None,
                Some(f) => match tls::load_roots(Path::new(f)) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        errs.push(format!("{path}.client_ca"), e);
                        return None;
                    }
                },
            };
            if pairs.len() != t.certificates.len() {
                return None;
            }
            match tls::edge_server_config(pairs, alpn, client_roots) {
                Ok(config) => Some(Arc::new(ListenerTls {
                    config,
                    mutual: false,
                    peer_header: None,
                })),
                Err(e) => {
                    errs.push(format!("{path}.certificates"), e.to_string());
                    None
                }
            }
        }
        TlsMode::Mutual => {
            if spec.identity.is_none() {
                errs.push(
                    format!("{path}.mode"),
                    "mutual TLS presents this proxy's SVID: set `identity:`",
                );
            }
            if !t.certificates.is_empty() {
                errs.push(
                    format!("{path}.certificates"),
                    "`mode: mutual` presents this proxy's SVID, not files",
                );
            }
            if t.client_ca.is_some() {
                errs.push(
                    format!("{path}.client_ca"),
                    "`mode: mutual` verifies clients against the trust bundle",
                );
            }
            if t.allow.is_empty() {
                errs.push(
                    format!("{path}.allow"),
                    "list the SPIFFE IDs admitted (exact or `.../sa/*`)",
                );
            }
            let allow = patterns(&format!("{path}.allow"), &t.allow, errs);
            let header = match t.peer_header.as_deref() {
                None => Some("x-forwarded-client-cert".to_string()),
                Some("") => None,
                Some(h) if is_token(h) => Some(h.to_ascii_lowercase()),
                Some(h) => {
                    errs.push(
                        format!("{path}.peer_header"),
                        format!("{h:?} is not a header name"),
                    );
                    None
                }
            };
            match tls::mutual_server_config(creds.clone(), allow, alpn) {
                Ok(config) => Some(Arc::new(ListenerTls {
                    config,
                    mutual: true,
                    peer_header: header.map(Arc::from),
                })),
                Err(e) => {
                    errs.push(path, e.to_string());
                    None
                }
            }
        }
    }
}

/// `clusters[i].tls`.
pub(super) fn cluster_tls(
    path: &str,
    t: &ClusterTlsSpec,
    protocol: ClusterProtocol,
    spec: &ConfigSpec,
    creds: &Arc<Credentials>,
    errs: &mut Errors,
) -> Option<Arc<ClusterTls>> {
    let _ = protocol;
    if spec.identity.is_none() {
        errs.push(
            path,
            "mutual TLS to upstreams presents this proxy's SVID: set `identity:`",
        );
    }
    let expected = match t.spiffe_id.parse::<SpiffeId>() {
        Ok(id) => Some(id),
        Err(e) => {
            errs.push(
                format!("{path}.spiffe_id"),
                format!("{:?}: {e}", t.spiffe_id),
            );
            None
        }
    };
    let server_name = match &t.server_name {
        None => None,
        Some(n) => match ServerName::try_from(n.clone()) {
            Ok(s) => Some(s),
            Err(_) => {
                errs.push(
                    format!("{path}.server_name"),
                    format!("{n:?} is not a DNS name"),
                );
                None
            }
        },
    };
    let expected = expected?;
    let build = |alpn: &[u8]| tls::mutual_client_config(creds.clone(), expected.clone(), &[alpn]);
    match (build(ALPN_H1), build(ALPN_H2)) {
        (Ok(h1), Ok(h2)) => Some(Arc::new(ClusterTls {
            h1,
            h2,
            server_name,
            expected,
        })),
        (Err(e), _) | (_, Err(e)) => {
            errs.push(path, e.to_string());
            None
        }
    }
}

/// `policies`.
pub(super) fn policies(spec: &ConfigSpec, errs: &mut Errors) -> HashMap<String, Arc<Policy>> {
    let mut out = HashMap::new();
    for (i, p) in spec.policies.iter().enumerate() {
        let path = format!("policies[{i}]");
        if !super::valid_name(&p.name) {
            errs.push(
                format!("{path}.name"),
                "use 1-128 letters, digits, '-', '_' or '.'",
            );
        }
        let mut rules = Vec::with_capacity(p.rules.len());
        for (j, r) in p.rules.iter().enumerate() {
            let rpath = format!("{path}.rules[{j}]");
            let principals = patterns(&format!("{rpath}.principals"), &r.principals, errs);
            for (k, x) in r.paths.iter().enumerate() {
                if !x.starts_with('/') || x[..x.len().saturating_sub(1)].contains('*') {
                    errs.push(
                        format!("{rpath}.paths[{k}]"),
                        format!("{x:?}: a path is `/exact` or `/prefix/*`"),
                    );
                }
            }
            for (k, m) in r.methods.iter().enumerate() {
                if !is_token(m) {
                    errs.push(
                        format!("{rpath}.methods[{k}]"),
                        format!("{m:?} is not a method"),
                    );
                }
            }
            rules.push(Rule {
                allow: r.action == PolicyAction::Allow,
                principals,
                paths: r.paths.iter().map(|x| PathPattern::parse(x)).collect(),
                methods: r.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            });
        }
        let policy = Arc::new(Policy {
            name: Arc::from(p.name.as_str()),
            rules,
            default_allow: p.default == PolicyAction::Allow,
        });
        if out.insert(p.name.clone(), policy).is_some() {
            errs.push(
                format!("{path}.name"),
                format!("duplicate policy name {:?}", p.name),
            );
        }
    }
    out
}

/// A `policy:` reference.
pub(super) fn policy_ref(
    path: &str,
    name: Option<&str>,
    policies: &HashMap<String, Arc<Policy>>,
    errs: &mut Errors,
) -> Option<Arc<Policy>> {
    let name = name?;
    match policies.get(name) {
        Some(p) => Some(p.clone()),
        None => {
            errs.push(path, format!("unknown policy {name:?}"));
            None
        }
    }
}
