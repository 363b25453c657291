//! [`TrustBundle`]: the set of root certificates peers trust (several during a root
//! rotation), with PEM import/export and an offline chain check
//! ([`TrustBundle::verify_chain`]) built on x509-parser's signature verification.
//!
//! The chain check is for `shoal ca inspect`, tests and diagnostics: it checks signatures,
//! CA flags and validity at a given time along leaf -> intermediates -> root. The TLS
//! handshake path verifies with rustls/webpki instead.

use ::time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::time::ASN1Time;

use crate::error::{Error, Result};
use crate::spiffe::SpiffeId;
use crate::svid::Svid;
use crate::x509;

/// Longest chain (intermediates) followed before giving up.
const MAX_INTERMEDIATES: usize = 8;

/// A set of trusted root CA certificates (DER), without duplicates, in insertion order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustBundle {
    roots: Vec<Vec<u8>>,
}

/// What a successful [`TrustBundle::verify_chain`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChain {
    /// The leaf's SPIFFE ID, when it has exactly one valid SPIFFE URI SAN.
    pub spiffe_id: Option<SpiffeId>,
    /// Fingerprint (SHA-256 hex) of the root the chain ends at.
    pub root_fingerprint: String,
    /// How many intermediates were used.
    pub intermediates_used: usize,
}

impl TrustBundle {
    /// An empty bundle.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a bundle from roots the crate produced itself (no re-validation).
    pub(crate) fn from_trusted_der(roots: Vec<Vec<u8>>) -> Self {
        let mut b = TrustBundle::new();
        for der in roots {
            if !b.roots.contains(&der) {
                b.roots.push(der);
            }
        }
        b
    }

    /// Builds a bundle from DER roots; each must parse and be a CA certificate.
    pub fn from_der(roots: impl IntoIterator<Item = Vec<u8>>) -> Result<Self> {
        let mut b = TrustBundle::new();
        for der in roots {
            b.add_root_der(der)?;
        }
        Ok(b)
    }

    /// Parses a PEM bundle (one or more `CERTIFICATE` blocks, each a CA certificate).
    pub fn from_pem(pem: &str) -> Result<Self> {
        Self::from_der(x509::pem_to_certs(pem)?)
    }

    /// Adds a root (ignored if already present). It must parse and be a CA certificate.
    pub fn add_root_der(&mut self, der: Vec<u8>) -> Result<()> {
        let cert = x509::parse_cert(&der)?;
        if !cert.is_ca() {
            return Err(Error::BadBasicConstraints {
                subject: cert.subject().to_string(),
            });
        }
        if !self.roots.contains(&der) {
            self.roots.push(der);
        }
        Ok(())
    }

    /// The roots, DER, in order.
    pub fn roots_der(&self) -> &[Vec<u8>] {
        &self.roots
    }

    /// SHA-256 fingerprints (hex) of the roots, in order.
    pub fn fingerprints(&self) -> Vec<String> {
        self.roots.iter().map(|d| x509::fingerprint(d)).collect()
    }

    /// Number of roots.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// Whether the bundle has no roots.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// All roots as concatenated PEM blocks.
    pub fn to_pem(&self) -> String {
        x509::certs_to_pem(self.roots.iter().map(Vec::as_slice))
    }

    /// Verifies an SVID's own chain at time `at`.
    pub fn verify_svid(&self, svid: &Svid, at: OffsetDateTime) -> Result<VerifiedChain> {
        let chain = svid.chain_der();
        self.verify_chain(svid.leaf_der(), chain.get(1..).unwrap_or_default(), at)
    }

    /// Verifies a PEM chain file (leaf first, then intermediates) at time `at`.
    pub fn verify_pem_chain(&self, chain_pem: &str, at: OffsetDateTime) -> Result<VerifiedChain> {
        let chain = x509::pem_to_certs(chain_pem)?;
        let (leaf, rest) = chain
            .split_first()
            .ok_or_else(|| Error::Pem("no certificate".into()))?;
        self.verify_chain(leaf, rest, at)
    }

    /// Verifies that `leaf_der` chains, through some of `intermediates`, to a root of this
    /// bundle: each link's issuer name and signature must match, every issuer must be a CA,
    /// the leaf must not be one, and every certificate on the path must be valid at `at`.
    pub fn verify_chain(
        &self,
        leaf_der: &[u8],
        intermediates: &[impl AsRef<[u8]>],
        at: OffsetDateTime,
    ) -> Result<VerifiedChain> {
        if self.roots.is_empty() {
            return Err(Error::EmptyBundle);
        }
        let at = ASN1Time::new(at);
        let leaf = x509::parse_cert(leaf_der)?;
        if leaf.is_ca() {
            return Err(Error::BadBasicConstraints {
                subject: leaf.subject().to_string(),
            });
        }
        check_validity(&leaf, at)?;
        let roots = self
            .roots
            .iter()
            .map(|d| x509::parse_cert(d))
            .collect::<Result<Vec<_>>>()?;
        let inters = intermediates
            .iter()
            .map(|d| x509::parse_cert(d.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let mut used = vec![false; inters.len()];
        let mut current = &leaf;
        for depth in 0..=MAX_INTERMEDIATES.min(inters.len()) {
            if let Some(i) = roots.iter().position(|r| signed_by(current, r)) {
                check_validity(&roots[i], at)?;
                return Ok(VerifiedChain {
                    spiffe_id: spiffe_id_of(&leaf),
                    root_fingerprint: x509::fingerprint(&self.roots[i]),
                    intermediates_used: depth,
                });
            }
            let next = (0..inters.len()).find(|&j| !used[j] && signed_by(current, &inters[j]));
            let Some(j) = next else { break };
            let issuer = &inters[j];
            if !issuer.is_ca() {
                return Err(Error::BadBasicConstraints {
                    subject: issuer.subject().to_string(),
                });
            }
            check_validity(issuer, at)?;
            used[j] = true;
            current = issuer;
        }
        Err(Error::UntrustedChain {
            subject: current.subject().to_string(),
            issuer: current.issuer().to_string(),
        })
    }
}

/// `cert`'s issuer name is `issuer`'s subject and `issuer`'s key verifies its signature.
fn signed_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    cert.issuer().as_raw() == issuer.subject().as_raw()
        && cert.verify_signature(Some(issuer.public_key())).is_ok()
}

fn check_validity(cert: &X509Certificate<'_>, at: ASN1Time) -> Result<()> {
    let v = cert.validity();
    if at < v.not_before {
        return Err(Error::NotYetValid {
            subject: cert.subject().to_string(),
            not_before: x509::fmt_time(v.not_before.to_datetime()),
        });
    }
    if at > v.not_after {
        return Err(Error::Expired {
            subject: cert.subject().to_string(),
            not_after: x509::fmt_time(v.not_after.to_datetime()),
        });
    }
    Ok(())
}

fn spiffe_id_of(leaf: &X509Certificate<'_>) -> Option<SpiffeId> {
    match x509::uri_sans(leaf).ok()?.as_slice() {
        [one] => one.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::{Authority, AuthorityOptions};
    use crate::spiffe::TrustDomain;
    use ::time::Duration as TimeDuration;
    use std::time::Duration;

    fn ca(td: &str) -> Authority {
        Authority::init(
            td.parse::<TrustDomain>().unwrap(),
            AuthorityOptions::default(),
        )
        .unwrap()
    }

    fn id(s: &str) -> SpiffeId {
        s.parse().unwrap()
    }

    #[test]
    fn two_root_bundle_verifies_leaves_from_both() {
        let mut a = ca("example.org");
        let mut b = ca("example.org");
        let la = a.issue(&id("spiffe://example.org/a"), None).unwrap();
        let lb = b.issue(&id("spiffe://example.org/b"), None).unwrap();
        let bundle =
            TrustBundle::from_der([a.root_cert_der().to_vec(), b.root_cert_der().to_vec()])
                .unwrap();
        assert_eq!(bundle.len(), 2);
        let now = OffsetDateTime::now_utc();
        let va = bundle.verify_svid(&la, now).unwrap();
        assert_eq!(va.spiffe_id, Some(id("spiffe://example.org/a")));
        assert_eq!(va.root_fingerprint, bundle.fingerprints()[0]);
        assert_eq!(va.intermediates_used, 1);
        let vb = bundle.verify_svid(&lb, now).unwrap();
        assert_eq!(vb.root_fingerprint, bundle.fingerprints()[1]);
        // Each single-root bundle only verifies its own leaves.
        assert!(a.trust_bundle().verify_svid(&lb, now).is_err());
        assert!(b.trust_bundle().verify_svid(&la, now).is_err());
    }

    #[test]
    fn foreign_ca_fails() {
        let mine = ca("example.org");
        let mut foreign = ca("example.org");
        let leaf = foreign.issue(&id("spiffe://example.org/x"), None).unwrap();
        let err = mine
            .trust_bundle()
            .verify_svid(&leaf, OffsetDateTime::now_utc())
            .unwrap_err();
        assert!(matches!(err, Error::UntrustedChain { .. }), "{err}");
    }

    #[test]
    fn expired_and_not_yet_valid_fail() {
        let mut a = ca("example.org");
        let leaf = a
            .issue(
                &id("spiffe://example.org/x"),
                Some(Duration::from_secs(3600)),
            )
            .unwrap();
        let bundle = a.trust_bundle();
        let now = OffsetDateTime::now_utc();
        bundle.verify_svid(&leaf, now).unwrap();
        bundle.verify_svid(&leaf, leaf.not_after()).unwrap(); // inclusive
        let err = bundle
            .verify_svid(&leaf, now + TimeDuration::hours(2))
            .unwrap_err();
        assert!(matches!(err, Error::Expired { .. }), "{err}");
        let err = bundle
            .verify_svid(&leaf, now - TimeDuration::minutes(10))
            .unwrap_err();
        assert!(matches!(err, Error::NotYetValid { .. }), "{err}");
    }

    #[test]
    fn chain_expires_with_short_intermediate() {
        let opts = AuthorityOptions {
            intermediate_ttl: Duration::from_secs(600),
            ..AuthorityOptions::default()
        };
        let now = OffsetDateTime::now_utc();
        let mut a = Authority::init_at("example.org".parse().unwrap(), opts, now).unwrap();
        let leaf = a
            .issue_at(&id("spiffe://example.org/x"), None, now)
            .unwrap();
        assert_eq!(leaf.not_after(), a.intermediate_not_after());
        let bundle = a.trust_bundle();
        bundle
            .verify_svid(&leaf, a.intermediate_not_after())
            .unwrap();
        let later = a.intermediate_not_after() + TimeDuration::seconds(1);
        let err = bundle.verify_svid(&leaf, later).unwrap_err();
        assert!(matches!(err, Error::Expired { .. }), "{err}");
    }

    #[test]
    fn missing_intermediate_or_tampered_leaf_fails() {
        let mut a = ca("example.org");
        let leaf = a.issue(&id("spiffe://example.org/x"), None).unwrap();
        let bundle = a.trust_bundle();
        let now = OffsetDateTime::now_utc();
        let none: &[Vec<u8>] = &[];
        let err = bundle.verify_chain(leaf.leaf_der(), none, now).unwrap_err();
        assert!(matches!(err, Error::UntrustedChain { .. }), "{err}");
        let mut bad = leaf.leaf_der().to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0x01; // inside the signature value
        let err = bundle
            .verify_chain(&bad, &leaf.chain_der()[1..], now)
            .unwrap_err();
        assert!(matches!(err, Error::UntrustedChain { .. }), "{err}");
    }

    #[test]
    fn ca_as_leaf_is_rejected() {
        let a = ca("example.org");
        let bundle = a.trust_bundle();
        let err = bundle
            .verify_chain(
                a.intermediate_cert_der(),
                &[] as &[Vec<u8>],
                OffsetDateTime::now_utc(),
            )
            .unwrap_err();
        assert!(matches!(err, Error::BadBasicConstraints { .. }), "{err}");
    }

    #[test]
    fn pem_round_trip_and_dedup() {
        let a = ca("example.org");
        let b = ca("example.org");
        let mut bundle = TrustBundle::new();
        assert!(bundle.is_empty());
        bundle.add_root_der(a.root_cert_der().to_vec()).unwrap();
        bundle.add_root_der(b.root_cert_der().to_vec()).unwrap();
        bundle.add_root_der(a.root_cert_der().to_vec()).unwrap();
        assert_eq!(bundle.len(), 2);
        let pem = bundle.to_pem();
        assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 2);
        assert_eq!(TrustBundle::from_pem(&pem).unwrap(), bundle);
    }

    #[test]
    fn from_pem_rejects_garbage_and_leaves() {
        assert!(matches!(TrustBundle::from_pem("nope"), Err(Error::Pem(_))));
        let mut a = ca("example.org");
        let leaf = a.issue(&id("spiffe://example.org/x"), None).unwrap();
        let err = TrustBundle::from_pem(&x509::cert_to_pem(leaf.leaf_der())).unwrap_err();
        assert!(matches!(err, Error::BadBasicConstraints { .. }), "{err}");
        let err = TrustBundle::new()
            .verify_svid(&leaf, OffsetDateTime::now_utc())
            .unwrap_err();
        assert!(matches!(err, Error::EmptyBundle));
    }

    #[test]
    fn verify_pem_chain_file() {
        let mut a = ca("example.org");
        let leaf = a.issue(&id("spiffe://example.org/x"), None).unwrap();
        let v = a
            .trust_bundle()
            .verify_pem_chain(&leaf.chain_pem(), OffsetDateTime::now_utc())
            .unwrap();
        assert_eq!(v.spiffe_id, Some(id("spiffe://example.org/x")));
    }
}
