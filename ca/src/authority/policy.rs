//! Configuration of the CA: [`AuthorityOptions`] (lifetimes of roots, intermediates and
//! leaves, and how long a new root is trusted before it issues) and [`IssuePolicy`] (which SPIFFE IDs, and how long a TTL, a CSR's requester may
//! obtain). Plain data plus validation; the authority applies them.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::spiffe::{IdPattern, SpiffeId, TrustDomain};

const DAY: u64 = 24 * 3600;

/// Default [`AuthorityOptions::activation_delay`]: four times the 30 s at which proxies are
/// meant to refresh their trust bundle, so a missed poll or two still leaves time. (No proxy
/// polls the bundle yet: that comes with mTLS on listeners, issue 4.)
pub const DEFAULT_ACTIVATION_DELAY: Duration = Duration::from_secs(120);

/// Lifetimes the CA works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthorityOptions {
    /// Root CA validity (default 10 years).
    pub root_ttl: Duration,
    /// Intermediate CA validity (default 1 year; never beyond its root).
    pub intermediate_ttl: Duration,
    /// Leaf validity when the caller asks for none (default 1 hour).
    pub default_leaf_ttl: Duration,
    /// Longest leaf validity granted whatever is asked (default 24 hours).
    pub max_leaf_ttl: Duration,
    /// How long a new root is only trusted before it issues (default 2 minutes,
    /// [`DEFAULT_ACTIVATION_DELAY`]). A root rotation publishes the new root in the trust
    /// bundle at once, but leaves keep coming from the old root until the first issue at or
    /// after `rotation time + activation_delay`, so every peer has fetched the new root before
    /// it meets a leaf signed under it. It must exceed the interval at which proxies refresh
    /// the bundle (30 s is the intended default) plus their slack; zero switches issuing at once (peers that
    /// have not refreshed yet reject the new leaves until they do). Must be shorter than
    /// `intermediate_ttl`.
    pub activation_delay: Duration,
}

impl Default for AuthorityOptions {
    fn default() -> Self {
        AuthorityOptions {
            root_ttl: Duration::from_secs(3650 * DAY),
            intermediate_ttl: Duration::from_secs(365 * DAY),
            default_leaf_ttl: Duration::from_secs(3600),
            max_leaf_ttl: Duration::from_secs(DAY),
            activation_delay: DEFAULT_ACTIVATION_DELAY,
        }
    }
}

impl AuthorityOptions {
    pub(super) fn validate(&self) -> Result<()> {
        for (name, d) in [
            ("root_ttl", self.root_ttl),
            ("intermediate_ttl", self.intermediate_ttl),
            ("default_leaf_ttl", self.default_leaf_ttl),
            ("max_leaf_ttl", self.max_leaf_ttl),
        ] {
            if d < Duration::from_secs(1) {
                return Err(Error::InvalidOptions(format!("{name} must be at least 1s")));
            }
            to_time(d).map_err(|_| Error::InvalidOptions(format!("{name} is too large")))?;
        }
        if self.default_leaf_ttl > self.max_leaf_ttl {
            return Err(Error::InvalidOptions(
                "default_leaf_ttl is longer than max_leaf_ttl".into(),
            ));
        }
        check_activation_delay(self.activation_delay, self).map_err(|reason| {
            Error::InvalidOptions(format!(
                "activation_delay ({}s) {reason}",
                self.activation_delay.as_secs()
            ))
        })
    }
}

/// Why `delay` cannot be an activation delay under `opts` ("is too large", "must be shorter
/// than ..."): too large to represent, or not shorter than the new intermediate's lifetime
/// (it would expire before it issues).
pub(super) fn check_activation_delay(
    delay: Duration,
    opts: &AuthorityOptions,
) -> std::result::Result<(), String> {
    to_time(delay).map_err(|_| "is too large".to_owned())?;
    if delay >= opts.intermediate_ttl {
        return Err(format!(
            "must be shorter than intermediate_ttl ({}s)",
            opts.intermediate_ttl.as_secs()
        ));
    }
    Ok(())
}

/// What a CSR's requester may obtain: the IDs it may ask for and an optional TTL ceiling
/// (on top of the CA's own `max_leaf_ttl`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuePolicy {
    allowed: Vec<IdPattern>,
    max_ttl: Option<Duration>,
}

impl IssuePolicy {
    /// A policy allowing exactly the IDs matched by `allowed` (an empty list allows nothing).
    pub fn new(allowed: Vec<IdPattern>) -> Self {
        IssuePolicy {
            allowed,
            max_ttl: None,
        }
    }

    /// A policy allowing any workload ID in `trust_domain` (`spiffe://<td>/*`).
    pub fn any_in(trust_domain: &TrustDomain) -> Self {
        Self::new(vec![IdPattern::Wildcard(trust_domain.id())])
    }

    /// Caps the leaf TTL for this requester.
    pub fn with_max_ttl(mut self, max_ttl: Duration) -> Self {
        self.max_ttl = Some(max_ttl);
        self
    }

    /// Whether `id` may be requested.
    pub fn allows(&self, id: &SpiffeId) -> bool {
        self.allowed.iter().any(|p| p.matches(id))
    }

    /// The allowed patterns.
    pub fn allowed(&self) -> &[IdPattern] {
        &self.allowed
    }

    /// The requester's TTL ceiling, if any.
    pub fn max_ttl(&self) -> Option<Duration> {
        self.max_ttl
    }
}

pub(super) fn to_time(d: Duration) -> Result<::time::Duration> {
    ::time::Duration::try_from(d).map_err(|_| Error::InvalidTtl(format!("{d:?} is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_allows_only_listed_patterns() {
        let id = |s: &str| s.parse::<SpiffeId>().unwrap();
        let empty = IssuePolicy::default();
        assert!(!empty.allows(&id("spiffe://example.org/web")));
        let p = IssuePolicy::new(vec![
            "spiffe://example.org/ns/a/sa/*".parse().unwrap(),
            "spiffe://example.org/exact".parse().unwrap(),
        ])
        .with_max_ttl(Duration::from_secs(60));
        assert_eq!(p.max_ttl(), Some(Duration::from_secs(60)));
        assert_eq!(p.allowed().len(), 2);
        assert!(p.allows(&id("spiffe://example.org/ns/a/sa/x")));
        assert!(p.allows(&id("spiffe://example.org/exact")));
        assert!(!p.allows(&id("spiffe://example.org/exact/more")));
        assert!(!p.allows(&id("spiffe://example.org/ns/b/sa/x")));
        let any = IssuePolicy::any_in(&"example.org".parse().unwrap());
        assert!(any.allows(&id("spiffe://example.org/anything/at/all")));
        assert!(!any.allows(&id("spiffe://example.org")));
        assert!(!any.allows(&id("spiffe://other.org/x")));
    }

    #[test]
    fn default_options_are_valid() {
        let o = AuthorityOptions::default();
        o.validate().unwrap();
        assert_eq!(o.default_leaf_ttl, Duration::from_secs(3600));
        assert_eq!(o.root_ttl, Duration::from_secs(3650 * DAY));
        assert_eq!(o.activation_delay, Duration::from_secs(120));
    }

    #[test]
    fn activation_delay_must_be_shorter_than_the_intermediate() {
        let zero = AuthorityOptions {
            activation_delay: Duration::ZERO,
            ..AuthorityOptions::default()
        };
        zero.validate().unwrap();
        let o = AuthorityOptions {
            intermediate_ttl: Duration::from_secs(600),
            activation_delay: Duration::from_secs(600),
            ..AuthorityOptions::default()
        };
        let err = o.validate().unwrap_err();
        assert!(matches!(err, Error::InvalidOptions(_)), "{err}");
        assert!(err.to_string().contains("activation_delay (600s)"), "{err}");
        let huge = AuthorityOptions {
            activation_delay: Duration::MAX,
            ..AuthorityOptions::default()
        };
        assert!(huge.validate().is_err());
    }
}
