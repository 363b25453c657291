//! Compiled route tables and the pure matching function [`find`].
//!
//! A [`RouteTable`] is built once by `snapshot::compile` and never mutated. Matching takes the
//! request head (method, host, path, headers) and returns the first route of the chosen virtual
//! host whose match holds. No I/O, no allocation, no runtime: it is tested as tables of cases.
//! Each virtual host carries a route index (`route/index.rs`) built at compile time, so a lookup costs
//! about the same with 10 or 10,000 routes; [`VirtualHost::find_linear`] is the reference scan it
//! must agree with.
//!
//! Virtual host choice: exact domain, then the longest `*.suffix`, then `*`. The Host port is ignored
//! and the comparison is ASCII case-insensitive (domains are stored lowercase).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

use crate::upstream::Cluster;

/// Read access to request headers, whatever the protocol's representation.
pub trait HeaderSource {
    /// First value of the header `name` (lowercase), if present.
    fn header(&self, name: &str) -> Option<&[u8]>;
}

impl HeaderSource for [httparse::Header<'_>] {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

impl HeaderSource for http::HeaderMap {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.get(name).map(|v| v.as_bytes())
    }
}

/// `application/grpc` or `application/grpc+proto` (`;` parameters allowed), case-insensitive.
pub fn is_grpc(content_type: Option<&[u8]>) -> bool {
    const CT: &[u8] = b"application/grpc";
    match content_type {
        Some(v) if v.len() >= CT.len() && v[..CT.len()].eq_ignore_ascii_case(CT) => {
            matches!(v.get(CT.len()), None | Some(b'+' | b';'))
        }
        _ => false,
    }
}

impl HeaderSource for [(&str, &str)] {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
    }
}

/// What routing looks at.
pub struct RequestHead<'a, H: HeaderSource + ?Sized> {
    pub method: &'a str,
    /// Host without port (any case).
    pub host: &'a str,
    /// Path without the query string.
    pub path: &'a str,
    pub headers: &'a H,
    /// The connection's mTLS peer identity.
    pub peer: Option<&'a shoal_ca::SpiffeId>,
}

#[derive(Debug)]
pub struct RouteTable {
    pub name: Arc<str>,
    pub(crate) exact: HashMap<String, usize>,
    /// (".example.com", vhost index), longest suffix first.
    pub(crate) suffixes: Vec<(String, usize)>,
    pub(crate) wildcard: Option<usize>,
    pub(crate) vhosts: Vec<VirtualHost>,
}

#[derive(Debug)]
pub struct VirtualHost {
    /// In config order: the first whose match holds wins.
    pub routes: Vec<Route>,
    index: index::RouteIndex,
}

#[derive(Debug)]
pub struct Route {
    /// `table[vhost].routes[i]`, for logs.
    pub id: Arc<str>,
    pub matcher: RouteMatch,
    pub action: Action,
    pub prefix_rewrite: Option<String>,
    pub timeout: Option<Duration>,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    /// Authorization checked after the listener's.
    pub policy: Option<Arc<crate::policy::Policy>>,
}

#[derive(Debug, Default)]
pub struct RouteMatch {
    pub path: PathMatch,
    /// Uppercase method names; empty = any.
    pub methods: Vec<String>,
    pub headers: Vec<HeaderMatch>,
    /// A gRPC match: the content-type must be `application/grpc` or `application/grpc+...`.
    pub grpc: bool,
    /// The mTLS peer must match one; empty = any peer.
    pub principals: Vec<shoal_ca::IdPattern>,
}

#[derive(Debug, Default)]
pub enum PathMatch {
    #[default]
    Any,
    Exact(String),
    Prefix(String),
    /// Anchored: must match the whole path.
    Regex(Regex),
}

#[derive(Debug)]
pub struct HeaderMatch {
    pub name: String,
    pub kind: HeaderMatchKind,
}

#[derive(Debug)]
pub enum HeaderMatchKind {
    Exact(Vec<u8>),
    Present(bool),
    Regex(Regex),
}

#[derive(Debug)]
pub enum Action {
    Cluster(Arc<Cluster>),
    Weighted {
        clusters: Vec<(Arc<Cluster>, u32)>,
        total: u32,
    },
    Direct {
        status: u16,
        body: Arc<[u8]>,
    },
    Redirect(Redirect),
}

#[derive(Debug)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub status: u16,
}

#[derive(Debug, Default)]
pub struct HeaderOps {
    /// (lowercase name, value) appended.
    pub add: Vec<(String, String)>,
    /// Lowercase names removed.
    pub remove: Vec<String>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
    pub fn removes(&self, name: &str) -> bool {
        self.remove.iter().any(|r| r.eq_ignore_ascii_case(name))
    }
}

// === impl RouteTable ===

impl RouteTable {
    /// The virtual host answering for `host` (port stripped, any case).
    pub fn vhost(&self, host: &str) -> Option<&VirtualHost> {
        let host = strip_port(host);
        // Case-insensitive without allocating: compare against lowercase keys char by char.
        let mut buf = [0u8; 255];
        let lower: &str = if host.len() <= buf.len() {
            for (d, s) in buf.iter_mut().zip(host.bytes()) {
                *d = s.to_ascii_lowercase();
            }
            std::str::from_utf8(&buf[..host.len()]).unwrap_or("")
        } else {
            ""
        };
        if let Some(&i) = self.exact.get(lower) {
            return self.vhosts.get(i);
        }
        for (suffix, i) in &self.suffixes {
            if lower.len() > suffix.len() && lower.ends_with(suffix.as_str()) {
                return self.vhosts.get(*i);
            }
        }
        self.wildcard.and_then(|i| self.vhosts.get(i))
    }
}

/// `host[:port]` or `[v6]:port` -> host.
pub fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rfind(':') {
        Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
        _ => host,
    }
}

/// The first route of the matching virtual host whose match holds for `req`.
pub fn find<'t, H: HeaderSource + ?Sized>(
    table: &'t RouteTable,
    req: &RequestHead<'_, H>,
) -> Option<&'t Route> {
    table.vhost(req.host)?.find(req)
}

// === impl VirtualHost ===

impl VirtualHost {
    /// A virtual host serving `routes` (in priority order), with its lookup index.
    pub fn new(routes: Vec<Route>) -> Self {
        let index = index::RouteIndex::new(&routes);
        Self { routes, index }
    }

    /// The first route whose match holds for `req` (the host is not looked at), through the index.
    pub fn find<H: HeaderSource + ?Sized>(&self, req: &RequestHead<'_, H>) -> Option<&Route> {
        self.index.find(&self.routes, req).map(|i| &self.routes[i])
    }

    /// The same answer as [`find`](Self::find) by trying every route in order: the reference
    /// the index is tested against (and the baseline of the route-lookup bench).
    pub fn find_linear<H: HeaderSource + ?Sized>(
        &self,
        req: &RequestHead<'_, H>,
    ) -> Option<&Route> {
        self.routes.iter().find(|r| r.matcher.matches(req))
    }
}

// === impl RouteMatch ===

impl RouteMatch {
    pub fn matches<H: HeaderSource + ?Sized>(&self, req: &RequestHead<'_, H>) -> bool {
        let path_ok = match &self.path {
            PathMatch::Any => true,
            PathMatch::Exact(p) => req.path == p,
            PathMatch::Prefix(p) => req.path.starts_with(p.as_str()),
            PathMatch::Regex(r) => r.is_match(req.path),
        };
        if !path_ok {
            return false;
        }
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == req.method) {
            return false;
        }
        if self.grpc && !is_grpc(req.headers.header("content-type")) {
            return false;
        }
        if !self.principals.is_empty()
            && !req
                .peer
                .is_some_and(|id| self.principals.iter().any(|p| p.matches(id)))
        {
            return false;
        }
        self.headers.iter().all(|h| {
            let value = req.headers.header(&h.name);
            match (&h.kind, value) {
                (HeaderMatchKind::Present(want), v) => *want == v.is_some(),
                (HeaderMatchKind::Exact(want), Some(v)) => v == want.as_slice(),
                (HeaderMatchKind::Regex(r), Some(v)) => std::str::from_utf8(v)
                    .map(|s| r.is_match(s))
                    .unwrap_or(false),
                (_, None) => false,
            }
        })
    }
}

// === impl Action ===

impl Action {
    /// The cluster to forward to; `pick` is a uniform random number used for weighted splits.
    pub fn cluster(&self, pick: u32) -> Option<&Arc<Cluster>> {
        match self {
            Action::Cluster(c) => Some(c),
            Action::Weighted { clusters, total } => {
                let mut n = pick % (*total).max(1);
                for (c, w) in clusters {
                    if n < *w {
                        return Some(c);
                    }
                    n -= w;
                }
                clusters.last().map(|(c, _)| c)
            }
            _ => None,
        }
    }
}

mod index;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod index_tests;

#[cfg(test)]
mod grpc_tests;
