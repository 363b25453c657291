//! Compiled authorization policies and the pure decision function [`Policy::allows`].
//!
//! A policy is an ordered list of rules; the first rule whose conditions all hold decides
//! (allow or deny), else the policy's default. Conditions: the peer's SPIFFE ID (mutual TLS),
//! the request path and the method. A TCP connection has no path or method, so a rule with
//! either condition never holds for it (validation refuses such a policy on a TCP listener).

use std::sync::Arc;

use shoal_ca::{IdPattern, SpiffeId};

#[derive(Debug)]
pub struct Policy {
    pub name: Arc<str>,
    pub rules: Vec<Rule>,
    pub default_allow: bool,
}

#[derive(Debug)]
pub struct Rule {
    pub allow: bool,
    /// Empty = any peer (with or without an identity).
    pub principals: Vec<IdPattern>,
    /// Empty = any path.
    pub paths: Vec<PathPattern>,
    /// Uppercase; empty = any method.
    pub methods: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    Exact(String),
    /// `/api/*` -> `/api/`.
    Prefix(String),
}

impl PathPattern {
    pub fn parse(s: &str) -> Self {
        match s.strip_suffix('*') {
            Some(p) => PathPattern::Prefix(p.to_string()),
            None => PathPattern::Exact(s.to_string()),
        }
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(p) => path == p,
            PathPattern::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

/// What a policy decides on: `method`/`path` are `None` for a TCP connection.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub peer: Option<&'a SpiffeId>,
    pub method: Option<&'a str>,
    pub path: Option<&'a str>,
}

impl Rule {
    /// Whether every condition of the rule holds. A condition on the peer fails without a
    /// peer identity; one on path or method fails without a request (TCP).
    fn holds(&self, s: &Subject<'_>) -> bool {
        if !self.principals.is_empty() {
            match s.peer {
                Some(id) if self.principals.iter().any(|p| p.matches(id)) => {}
                _ => return false,
            }
        }
        if !self.paths.is_empty() {
            match s.path {
                Some(path) if self.paths.iter().any(|p| p.matches(path)) => {}
                _ => return false,
            }
        }
        if !self.methods.is_empty() {
            match s.method {
                Some(m) if self.methods.iter().any(|x| x == m) => {}
                _ => return false,
            }
        }
        true
    }

    /// Whether the rule looks at the request (path or method).
    pub fn needs_request(&self) -> bool {
        !self.paths.is_empty() || !self.methods.is_empty()
    }
}

impl Policy {
    /// The decision for `s`: the first rule that holds, else the default.
    pub fn allows(&self, s: &Subject<'_>) -> bool {
        self.rules
            .iter()
            .find(|r| r.holds(s))
            .map_or(self.default_allow, |r| r.allow)
    }

    /// Whether some rule looks at the request (path or method).
    pub fn needs_request(&self) -> bool {
        self.rules.iter().any(Rule::needs_request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        s.parse().unwrap()
    }

    fn pat(s: &str) -> IdPattern {
        s.parse().unwrap()
    }

    fn policy() -> Policy {
        Policy {
            name: "p".into(),
            rules: vec![
                // Nobody deletes.
                Rule {
                    allow: false,
                    principals: vec![],
                    paths: vec![],
                    methods: vec!["DELETE".into()],
                },
                // The frontend may call the API.
                Rule {
                    allow: true,
                    principals: vec![pat("spiffe://example.org/ns/web/sa/frontend")],
                    paths: vec![PathPattern::parse("/api/*")],
                    methods: vec![],
                },
                // Everyone in ns ops may read /healthz.
                Rule {
                    allow: true,
                    principals: vec![pat("spiffe://example.org/ns/ops/sa/*")],
                    paths: vec![PathPattern::parse("/healthz")],
                    methods: vec!["GET".into()],
                },
            ],
            default_allow: false,
        }
    }

    #[test]
    fn decision_table() {
        let p = policy();
        let fe = id("spiffe://example.org/ns/web/sa/frontend");
        let other = id("spiffe://example.org/ns/web/sa/other");
        let ops = id("spiffe://example.org/ns/ops/sa/probe");
        let cases: &[(Option<&SpiffeId>, Option<&str>, Option<&str>, bool)] = &[
            (Some(&fe), Some("GET"), Some("/api/x"), true),
            (Some(&fe), Some("DELETE"), Some("/api/x"), false),
            (Some(&fe), Some("GET"), Some("/other"), false),
            (Some(&other), Some("GET"), Some("/api/x"), false),
            (None, Some("GET"), Some("/api/x"), false),
            (Some(&ops), Some("GET"), Some("/healthz"), true),
            (Some(&ops), Some("POST"), Some("/healthz"), false),
            (Some(&ops), Some("GET"), Some("/healthz/x"), false),
            // TCP: path and method conditions never hold.
            (Some(&fe), None, None, false),
        ];
        for (peer, method, path, want) in cases {
            let s = Subject {
                peer: *peer,
                method: *method,
                path: *path,
            };
            assert_eq!(p.allows(&s), *want, "{s:?}");
        }
    }

    #[test]
    fn default_allow_and_principal_only_rules_for_tcp() {
        let p = Policy {
            name: "tcp".into(),
            rules: vec![Rule {
                allow: false,
                principals: vec![pat("spiffe://example.org/ns/bad/sa/*")],
                paths: vec![],
                methods: vec![],
            }],
            default_allow: true,
        };
        assert!(!p.needs_request());
        let bad = id("spiffe://example.org/ns/bad/sa/x");
        let good = id("spiffe://example.org/ns/good/sa/x");
        let tcp = |peer| Subject {
            peer,
            method: None,
            path: None,
        };
        assert!(!p.allows(&tcp(Some(&bad))));
        assert!(p.allows(&tcp(Some(&good))));
        assert!(p.allows(&tcp(None)));
        assert!(policy().needs_request());
    }
}
