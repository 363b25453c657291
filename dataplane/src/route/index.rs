//! The per-virtual-host route index: which routes can match a path, without scanning them all.
//!
//! Built once when a [`VirtualHost`](super::VirtualHost) is compiled, never mutated, no
//! allocation per lookup. Every route lands in exactly one place:
//!
//! - `path:` (and gRPC `service/method`) routes on the trie node of their path, `exact` list;
//! - `prefix:` (and gRPC `service`) routes on the trie node of their prefix, `prefix` list;
//! - `regex:` routes in the `prefix` list of the node of their literal prefix (the bytes every
//!   match starts with, e.g. `/static/` for `/static/.*\.css`; the root node if none);
//! - routes with no path matcher in the root's `prefix` list.
//!
//! A lookup walks the request path byte by byte down the trie (a byte `starts_with`, exactly
//! what [`PathMatch::Prefix`] does), so it visits every route whose prefix (or regex literal
//! prefix) the path starts with, then the exact routes of the node the whole path ends on. Each
//! list is sorted by route index; the answer is the smallest index whose full matcher holds,
//! and a list stops as soon as its indices reach the best found so far. The result is the
//! linear scan's first match ([`VirtualHost::find_linear`](super::VirtualHost::find_linear)),
//! at a cost that grows with the path's length, not with the number of routes.

use regex::Regex;
use regex_syntax::hir::literal::{ExtractKind, Extractor};

use super::{HeaderSource, PathMatch, RequestHead, Route};

/// A range into one of the index's flat arrays.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn of<T>(all: &[T], s: Span) -> &[T] {
        &all[s.start as usize..s.end as usize]
    }
}

#[derive(Debug, Default)]
struct Node {
    /// Into `edges`: (byte, child node), sorted by byte.
    edges: Span,
    /// Into `lists`: routes that may match any path starting with this node's string (prefix
    /// routes, regexes with this literal prefix, path-less routes at the root), ascending.
    prefix: Span,
    /// Into `lists`: exact routes whose path ends here, ascending.
    exact: Span,
}

#[derive(Debug, Default)]
pub(crate) struct RouteIndex {
    /// The trie; `nodes[0]` is the empty string.
    nodes: Vec<Node>,
    edges: Vec<(u8, u32)>,
    /// Every route list, back to back.
    lists: Vec<u32>,
}

/// A trie node while building: children unsorted until flattened.
#[derive(Default)]
struct BuildNode {
    edges: Vec<(u8, u32)>,
    prefix: Vec<u32>,
    exact: Vec<u32>,
}

impl RouteIndex {
    pub(crate) fn new(routes: &[Route]) -> Self {
        let mut nodes = vec![BuildNode::default()];
        for (i, route) in routes.iter().enumerate() {
            let i = u32::try_from(i).expect("fewer than 2^32 routes in a virtual host");
            match &route.matcher.path {
                PathMatch::Exact(p) => {
                    let at = insert(&mut nodes, p.as_bytes());
                    nodes[at].exact.push(i);
                }
                PathMatch::Prefix(p) => {
                    let at = insert(&mut nodes, p.as_bytes());
                    nodes[at].prefix.push(i);
                }
                PathMatch::Regex(re) => {
                    let at = insert(&mut nodes, &literal_prefix(re));
                    nodes[at].prefix.push(i);
                }
                PathMatch::Any => nodes[0].prefix.push(i),
            }
        }
        let mut index = RouteIndex {
            nodes: Vec::with_capacity(nodes.len()),
            edges: Vec::with_capacity(nodes.len().saturating_sub(1)),
            lists: Vec::with_capacity(routes.len()),
        };
        // Routes were pushed in index order, so every list is already ascending.
        for mut n in nodes {
            n.edges.sort_unstable_by_key(|e| e.0);
            let edges = push_all(&mut index.edges, &n.edges);
            let prefix = push_all(&mut index.lists, &n.prefix);
            let exact = push_all(&mut index.lists, &n.exact);
            index.nodes.push(Node {
                edges,
                prefix,
                exact,
            });
        }
        index
    }

    /// The index of the first route in `routes` (the slice this index was built from) whose
    /// matcher holds for `req`.
    pub(crate) fn find<H: HeaderSource + ?Sized>(
        &self,
        routes: &[Route],
        req: &RequestHead<'_, H>,
    ) -> Option<usize> {
        let mut best = u32::MAX;
        let mut check = |list: &[u32]| {
            for &i in list {
                if i >= best {
                    break;
                }
                if routes[i as usize].matcher.matches(req) {
                    best = i;
                    break;
                }
            }
        };
        let mut node = self.nodes.first()?;
        check(Span::of(&self.lists, node.prefix));
        let mut whole = true;
        for &b in req.path.as_bytes() {
            let edges = Span::of(&self.edges, node.edges);
            match edges.binary_search_by_key(&b, |e| e.0) {
                Ok(k) => node = &self.nodes[edges[k].1 as usize],
                Err(_) => {
                    whole = false;
                    break;
                }
            }
            check(Span::of(&self.lists, node.prefix));
        }
        if whole {
            check(Span::of(&self.lists, node.exact));
        }
        (best != u32::MAX).then_some(best as usize)
    }
}

/// Bytes every match of `re` starts with (empty when the regex can start with anything).
///
/// The prefix literal sequence of a regex lists literals one of which begins every match; when
/// it is finite, their longest common prefix begins every match too.
fn literal_prefix(re: &Regex) -> Vec<u8> {
    let Ok(hir) = regex_syntax::Parser::new().parse(re.as_str()) else {
        return Vec::new();
    };
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
    seq.longest_common_prefix()
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

/// The node for `key`, created with its missing ancestors.
fn insert(nodes: &mut Vec<BuildNode>, key: &[u8]) -> usize {
    let mut at = 0;
    for &b in key {
        at = match nodes[at].edges.iter().find(|e| e.0 == b) {
            Some(&(_, child)) => child as usize,
            None => {
                let child = nodes.len();
                nodes.push(BuildNode::default());
                let id = u32::try_from(child).expect("fewer than 2^32 trie nodes");
                nodes[at].edges.push((b, id));
                child
            }
        };
    }
    at
}

fn push_all<T: Copy>(all: &mut Vec<T>, items: &[T]) -> Span {
    let start = all.len() as u32;
    all.extend_from_slice(items);
    Span {
        start,
        end: all.len() as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_literal_prefixes() {
        let cases: &[(&str, &[u8])] = &[
            ("/static/.*\\.css", b"/static/"),
            ("/api/v[0-9]+/users", b"/api/v"),
            ("/users/[0-9]+|/users/me", b"/users/"),
            ("/a|/b", b"/"),
            ("(?i)/ab.*", b"/"),
            ("/é.*", "/é".as_bytes()),
            ("/exact", b"/exact"),
            (".*\\.png", b""),
            ("[a-z]+/x", b""),
            ("/x?y", b"/"),
        ];
        for &(re, want) in cases {
            let re = Regex::new(&format!("^(?:{re})$")).unwrap();
            assert_eq!(literal_prefix(&re), want, "{re}");
        }
    }
}
