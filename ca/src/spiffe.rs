//! SPIFFE names: [`TrustDomain`], [`SpiffeId`] and the allow-list [`IdPattern`].
//!
//! Parsing follows the SPIFFE-ID specification §2 strictly (lowercase `spiffe://` scheme,
//! trust domain of `[a-z0-9.-_]` with no port or user info, path segments of `[A-Za-z0-9.-_]`
//! that are neither empty nor `.`/`..`, no trailing slash, query or fragment, at most 2048
//! bytes). A value that parses always prints back to the same string (`FromStr`/`Display`
//! round-trip), so IDs can be compared as strings everywhere else.

use std::fmt;
use std::str::FromStr;

use crate::error::SpiffeIdError;

const SCHEME: &str = "spiffe://";
/// Longest SPIFFE ID accepted, in bytes (spec §2.3 says URIs SHOULD be at most 2048 bytes).
pub const MAX_ID_LEN: usize = 2048;
/// Longest trust domain accepted, in bytes.
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// A SPIFFE trust domain name such as `example.org` (no scheme, no path).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// The trust domain name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SPIFFE ID of the trust domain itself (`spiffe://<td>`, empty path).
    pub fn id(&self) -> SpiffeId {
        SpiffeId {
            trust_domain: self.clone(),
            path: String::new(),
        }
    }
}

fn validate_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    if td.is_empty() {
        return Err(SpiffeIdError::EmptyTrustDomain);
    }
    if td.contains('@') {
        return Err(SpiffeIdError::Userinfo);
    }
    if td.contains(':') {
        return Err(SpiffeIdError::Port);
    }
    if let Some(c) = td
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_'))
    {
        return Err(SpiffeIdError::TrustDomainChar(c));
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong { len: td.len() });
    }
    Ok(())
}

/// Validates a path that is either empty or starts with `/`.
fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(SpiffeIdError::TrailingSlash);
    }
    // `path` starts with '/', so the first split element is the empty string before it.
    for segment in path.split('/').skip(1) {
        if segment.is_empty() {
            return Err(SpiffeIdError::EmptySegment);
        }
        if segment == "." || segment == ".." {
            return Err(SpiffeIdError::DotSegment);
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_'))
        {
            return Err(SpiffeIdError::PathChar(c));
        }
    }
    Ok(())
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        validate_trust_domain(s)?;
        Ok(TrustDomain(s.to_owned()))
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated SPIFFE ID: `spiffe://<trust domain><path>`.
///
/// The path is empty (the trust domain's own ID) or starts with `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    path: String,
}

impl SpiffeId {
    /// The Kubernetes-style workload ID `spiffe://<td>/ns/<ns>/sa/<sa>`.
    pub fn workload(
        trust_domain: &TrustDomain,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, SpiffeIdError> {
        let path = format!("/ns/{namespace}/sa/{service_account}");
        Self::from_parts(trust_domain.clone(), &path)
    }

    /// Builds an ID from a trust domain and a path (empty or starting with `/`).
    pub fn from_parts(trust_domain: TrustDomain, path: &str) -> Result<Self, SpiffeIdError> {
        if !path.is_empty() && !path.starts_with('/') {
            return Err(SpiffeIdError::PathChar(path.chars().next().unwrap_or('/')));
        }
        if path.contains(['?', '#']) {
            return Err(SpiffeIdError::QueryOrFragment);
        }
        validate_path(path)?;
        let len = SCHEME.len() + trust_domain.0.len() + path.len();
        if len > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong { len });
        }
        Ok(SpiffeId {
            trust_domain,
            path: path.to_owned(),
        })
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The path: empty, or starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The path's segments (none for a trust-domain ID).
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.path.split('/').skip(1)
    }

    fn ns_sa(&self) -> Option<(&str, &str)> {
        let mut it = self.segments();
        match (it.next(), it.next(), it.next(), it.next(), it.next()) {
            (Some("ns"), Some(ns), Some("sa"), Some(sa), None) => Some((ns, sa)),
            _ => None,
        }
    }

    /// The namespace, when the path is `/ns/<ns>/sa/<sa>`.
    pub fn namespace(&self) -> Option<&str> {
        self.ns_sa().map(|(ns, _)| ns)
    }

    /// The service account, when the path is `/ns/<ns>/sa/<sa>`.
    pub fn service_account(&self) -> Option<&str> {
        self.ns_sa().map(|(_, sa)| sa)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if s.len() > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong { len: s.len() });
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(SpiffeIdError::MissingScheme);
        };
        if scheme != "spiffe" {
            return Err(SpiffeIdError::WrongScheme(scheme.to_owned()));
        }
        if rest.contains(['?', '#']) {
            return Err(SpiffeIdError::QueryOrFragment);
        }
        let (td, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        validate_trust_domain(td)?;
        validate_path(path)?;
        Ok(SpiffeId {
            trust_domain: TrustDomain(td.to_owned()),
            path: path.to_owned(),
        })
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}{}", self.trust_domain, self.path)
    }
}

/// An allow-list entry: an exact SPIFFE ID, or a prefix ending in `/*`.
///
/// * `spiffe://example.org/ns/default/sa/web`: exactly that ID.
/// * `spiffe://example.org/ns/default/sa/*`: any ID with one more (final) segment after the
///   prefix, e.g. `.../sa/web` but not `.../sa/web/x` nor `.../sa` itself.
/// * `spiffe://example.org/*`: any ID with a non-empty path in `example.org`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdPattern {
    /// Matches exactly this ID.
    Exact(SpiffeId),
    /// Matches IDs under this base (`base/*`); see the type's docs.
    Wildcard(SpiffeId),
}

impl IdPattern {
    /// Whether `id` is allowed by this pattern.
    pub fn matches(&self, id: &SpiffeId) -> bool {
        match self {
            IdPattern::Exact(exact) => exact == id,
            IdPattern::Wildcard(base) => {
                if base.trust_domain != id.trust_domain {
                    return false;
                }
                if base.path.is_empty() {
                    return !id.path.is_empty();
                }
                id.path
                    .strip_prefix(base.path.as_str())
                    .and_then(|rest| rest.strip_prefix('/'))
                    .is_some_and(|last| !last.is_empty() && !last.contains('/'))
            }
        }
    }

    /// The trust domain this pattern is confined to.
    pub fn trust_domain(&self) -> &TrustDomain {
        match self {
            IdPattern::Exact(id) | IdPattern::Wildcard(id) => id.trust_domain(),
        }
    }
}

impl FromStr for IdPattern {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_suffix("/*") {
            Some(base) => Ok(IdPattern::Wildcard(base.parse()?)),
            None => Ok(IdPattern::Exact(s.parse()?)),
        }
    }
}

impl fmt::Display for IdPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdPattern::Exact(id) => write!(f, "{id}"),
            IdPattern::Wildcard(base) => write!(f, "{base}/*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SpiffeIdError as E;

    #[test]
    fn accepted_ids_round_trip() {
        let long_path = format!("spiffe://example.org/{}", "a".repeat(MAX_ID_LEN - 21));
        assert_eq!(long_path.len(), MAX_ID_LEN);
        let cases: &[(&str, &str, &str)] = &[
            ("spiffe://example.org", "example.org", ""),
            ("spiffe://example.org/web", "example.org", "/web"),
            (
                "spiffe://example.org/ns/default/sa/web",
                "example.org",
                "/ns/default/sa/web",
            ),
            ("spiffe://a-b_c.9/X.y-Z_0", "a-b_c.9", "/X.y-Z_0"),
            ("spiffe://td/...", "td", "/..."),
            ("spiffe://td/.a/..b", "td", "/.a/..b"),
            ("spiffe://1.2.3.4/x", "1.2.3.4", "/x"),
            (&long_path, "example.org", &long_path[20..]),
        ];
        for (input, td, path) in cases {
            let id: SpiffeId = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(id.trust_domain().as_str(), *td, "{input}");
            assert_eq!(id.path(), *path, "{input}");
            assert_eq!(id.to_string(), *input, "{input}");
            assert_eq!(id.to_string().parse::<SpiffeId>().unwrap(), id);
        }
    }

    #[test]
    fn rejected_ids() {
        let too_long = format!("spiffe://example.org/{}", "a".repeat(MAX_ID_LEN));
        let long_td = format!("spiffe://{}/x", "a".repeat(256));
        let cases: &[(&str, SpiffeIdError)] = &[
            ("", E::Empty),
            (
                &too_long,
                E::TooLong {
                    len: too_long.len(),
                },
            ),
            ("example.org/web", E::MissingScheme),
            ("spiffe:example.org/web", E::MissingScheme),
            ("SPIFFE://example.org/web", E::WrongScheme("SPIFFE".into())),
            ("Spiffe://example.org/web", E::WrongScheme("Spiffe".into())),
            ("https://example.org/web", E::WrongScheme("https".into())),
            ("spiffe://", E::EmptyTrustDomain),
            ("spiffe:///web", E::EmptyTrustDomain),
            ("spiffe://Example.org/web", E::TrustDomainChar('E')),
            ("spiffe://exa mple.org/web", E::TrustDomainChar(' ')),
            ("spiffe://exämple.org/web", E::TrustDomainChar('ä')),
            ("spiffe://example.org:8080/web", E::Port),
            ("spiffe://user@example.org/web", E::Userinfo),
            ("spiffe://user:pw@example.org/web", E::Userinfo),
            (&long_td, E::TrustDomainTooLong { len: 256 }),
            ("spiffe://example.org/", E::TrailingSlash),
            ("spiffe://example.org/web/", E::TrailingSlash),
            ("spiffe://example.org//web", E::EmptySegment),
            ("spiffe://example.org/a//b", E::EmptySegment),
            ("spiffe://example.org/./web", E::DotSegment),
            ("spiffe://example.org/a/../b", E::DotSegment),
            ("spiffe://example.org/a/..", E::DotSegment),
            ("spiffe://example.org/we b", E::PathChar(' ')),
            ("spiffe://example.org/w%20b", E::PathChar('%')),
            ("spiffe://example.org/a*", E::PathChar('*')),
            ("spiffe://example.org/a:b", E::PathChar(':')),
            ("spiffe://example.org/web?x=1", E::QueryOrFragment),
            ("spiffe://example.org/web#frag", E::QueryOrFragment),
            ("spiffe://example.org?x", E::QueryOrFragment),
        ];
        for (input, want) in cases {
            assert_eq!(
                input.parse::<SpiffeId>().err().as_ref(),
                Some(want),
                "{input}"
            );
        }
    }

    #[test]
    fn trust_domain_validation() {
        for ok in ["example.org", "a", "td-1_x.local", "123"] {
            let td: TrustDomain = ok.parse().unwrap();
            assert_eq!(td.to_string(), ok);
            assert_eq!(td.id().to_string(), format!("spiffe://{ok}"));
        }
        let cases: &[(&str, SpiffeIdError)] = &[
            ("", E::EmptyTrustDomain),
            ("Example.org", E::TrustDomainChar('E')),
            ("example.org/x", E::TrustDomainChar('/')),
            ("example.org:443", E::Port),
            ("me@example.org", E::Userinfo),
        ];
        for (input, want) in cases {
            assert_eq!(
                input.parse::<TrustDomain>().err().as_ref(),
                Some(want),
                "{input}"
            );
        }
    }

    #[test]
    fn workload_ids() {
        let td: TrustDomain = "example.org".parse().unwrap();
        let id = SpiffeId::workload(&td, "default", "web").unwrap();
        assert_eq!(id.to_string(), "spiffe://example.org/ns/default/sa/web");
        assert_eq!(id.namespace(), Some("default"));
        assert_eq!(id.service_account(), Some("web"));
        assert_eq!(
            id.segments().collect::<Vec<_>>(),
            ["ns", "default", "sa", "web"]
        );
        assert!(SpiffeId::workload(&td, "", "web").is_err());
        assert!(SpiffeId::workload(&td, "a/b", "web").is_ok()); // extra segments stay valid...
        let odd = SpiffeId::workload(&td, "a/b", "web").unwrap();
        assert_eq!(odd.namespace(), None); // ...but no longer have the ns/sa shape
        assert_eq!(
            SpiffeId::workload(&td, "x", "..").err(),
            Some(E::DotSegment)
        );
        for other in [
            "spiffe://example.org/web",
            "spiffe://example.org/ns/a/sa/b/c",
        ] {
            let id: SpiffeId = other.parse().unwrap();
            assert_eq!(id.namespace(), None);
            assert_eq!(id.service_account(), None);
        }
    }

    #[test]
    fn from_parts_validates() {
        let td: TrustDomain = "example.org".parse().unwrap();
        assert_eq!(SpiffeId::from_parts(td.clone(), "").unwrap(), td.id());
        assert!(SpiffeId::from_parts(td.clone(), "web").is_err());
        assert_eq!(
            SpiffeId::from_parts(td.clone(), "/a?b").err(),
            Some(E::QueryOrFragment)
        );
        assert_eq!(
            SpiffeId::from_parts(td.clone(), "/a/").err(),
            Some(E::TrailingSlash)
        );
        let long = format!("/{}", "a".repeat(MAX_ID_LEN));
        assert!(matches!(
            SpiffeId::from_parts(td, &long),
            Err(E::TooLong { .. })
        ));
    }

    #[test]
    fn patterns() {
        // (pattern, id, matches)
        let cases: &[(&str, &str, bool)] = &[
            (
                "spiffe://example.org/ns/default/sa/web",
                "spiffe://example.org/ns/default/sa/web",
                true,
            ),
            (
                "spiffe://example.org/ns/default/sa/web",
                "spiffe://example.org/ns/default/sa/webx",
                false,
            ),
            (
                "spiffe://example.org/ns/default/sa/*",
                "spiffe://example.org/ns/default/sa/web",
                true,
            ),
            (
                "spiffe://example.org/ns/default/sa/*",
                "spiffe://example.org/ns/default/sa/db",
                true,
            ),
            (
                "spiffe://example.org/ns/default/sa/*",
                "spiffe://example.org/ns/default/sa",
                false,
            ),
            (
                "spiffe://example.org/ns/default/sa/*",
                "spiffe://example.org/ns/default/sa/a/b",
                false,
            ),
            (
                "spiffe://example.org/ns/default/sa/*",
                "spiffe://example.org/ns/default/saX/a",
                false,
            ),
            (
                "spiffe://example.org/ns/default/sa/*",
                "spiffe://example.org/ns/other/sa/web",
                false,
            ),
            (
                "spiffe://example.org/ns/default/sa/*",
                "spiffe://other.org/ns/default/sa/web",
                false,
            ),
            ("spiffe://example.org/*", "spiffe://example.org/web", true),
            (
                "spiffe://example.org/*",
                "spiffe://example.org/ns/a/sa/b",
                true,
            ),
            ("spiffe://example.org/*", "spiffe://example.org", false),
            (
                "spiffe://example.org/*",
                "spiffe://example.org.evil/web",
                false,
            ),
            ("spiffe://example.org/*", "spiffe://evil.org/web", false),
        ];
        for (pat, id, want) in cases {
            let p: IdPattern = pat.parse().unwrap_or_else(|e| panic!("{pat}: {e}"));
            assert_eq!(p.to_string(), *pat);
            let id: SpiffeId = id.parse().unwrap();
            assert_eq!(p.matches(&id), *want, "{pat} vs {id}");
            assert_eq!(
                p.trust_domain().as_str(),
                pat[9..].split('/').next().unwrap()
            );
        }
    }

    /// The fuzz target's properties over every single-character mutation of a few seeds.
    #[test]
    fn round_trip_over_mutations() {
        let seeds = [
            "spiffe://example.org/ns/default/sa/web",
            "spiffe://example.org/*",
            "spiffe://td/a/*",
        ];
        let alphabet = [
            '/', '.', ':', '@', '?', '#', '*', '%', 'A', 'a', '-', '_', ' ', 'é',
        ];
        let mut accepted = 0;
        for seed in seeds {
            let chars: Vec<char> = seed.chars().collect();
            for i in 0..=chars.len() {
                for c in alphabet {
                    let mut variants = Vec::new();
                    let mut ins = chars.clone();
                    ins.insert(i, c);
                    variants.push(ins);
                    if i < chars.len() {
                        let mut rep = chars.clone();
                        rep[i] = c;
                        variants.push(rep);
                        let mut del = chars.clone();
                        del.remove(i);
                        variants.push(del);
                    }
                    for v in variants {
                        let s: String = v.into_iter().collect();
                        if let Ok(id) = s.parse::<SpiffeId>() {
                            accepted += 1;
                            assert_eq!(id.to_string(), s);
                            assert!(IdPattern::Exact(id.clone()).matches(&id));
                        }
                        if let Ok(p) = s.parse::<IdPattern>() {
                            assert_eq!(p.to_string(), s);
                        }
                    }
                }
            }
        }
        assert!(accepted > 50, "{accepted}");
    }

    #[test]
    fn bad_patterns() {
        let cases: &[(&str, SpiffeIdError)] = &[
            ("spiffe://example.org/*/x", E::PathChar('*')),
            ("spiffe://example.org/a*", E::PathChar('*')),
            ("spiffe://example.org/**", E::PathChar('*')),
            ("spiffe://*x", E::TrustDomainChar('*')),
            ("spiffe://*", E::MissingScheme), // "spiffe:/" + "/*"
            ("spiffe:///*", E::EmptyTrustDomain),
            ("/*", E::Empty),
            ("spiffe://example.org/a/", E::TrailingSlash),
        ];
        for (input, want) in cases {
            assert_eq!(
                input.parse::<IdPattern>().err().as_ref(),
                Some(want),
                "{input}"
            );
        }
    }
}
