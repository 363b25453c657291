//! The roots of the trust bundle: [`RootRecord`] (per-root bookkeeping), [`RootInfo`] (its
//! public view), and the [`Authority`] methods that change the set of roots: rotation and
//! retirement.

use ::time::OffsetDateTime;

use super::Authority;
use crate::bundle::TrustBundle;
use crate::error::Result;
use crate::x509;

/// Bookkeeping for one root in the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RootRecord {
    pub(crate) der: Vec<u8>,
    pub(crate) fingerprint: String,
    pub(crate) not_after: OffsetDateTime,
    pub(crate) latest_leaf_expiry: Option<OffsetDateTime>,
}

impl RootRecord {
    pub(crate) fn new(der: Vec<u8>, latest_leaf_expiry: Option<OffsetDateTime>) -> Result<Self> {
        let not_after = x509::parse_cert(&der)?.validity().not_after.to_datetime();
        Ok(RootRecord {
            fingerprint: x509::fingerprint(&der),
            der,
            not_after,
            latest_leaf_expiry,
        })
    }
}

/// Public view of a root in the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootInfo {
    /// SHA-256 of the root's DER, lowercase hex.
    pub fingerprint: String,
    /// The root's expiry.
    pub not_after: OffsetDateTime,
    /// Expiry of the longest-lived leaf issued under this root, if any.
    pub latest_leaf_expiry: Option<OffsetDateTime>,
    /// Whether this root currently issues (through the intermediate).
    pub active: bool,
}

impl Authority {
    /// Every trusted root (old ones included), as a bundle to hand to peers.
    pub fn trust_bundle(&self) -> TrustBundle {
        TrustBundle::from_trusted_der(self.roots.iter().map(|r| r.der.clone()).collect())
    }

    /// The roots in the bundle, oldest first; the last is active.
    pub fn roots(&self) -> Vec<RootInfo> {
        let n = self.roots.len();
        self.roots
            .iter()
            .enumerate()
            .map(|(i, r)| RootInfo {
                fingerprint: r.fingerprint.clone(),
                not_after: r.not_after,
                latest_leaf_expiry: r.latest_leaf_expiry,
                active: i + 1 == n,
            })
            .collect()
    }

    pub(crate) fn root_records(&self) -> &[RootRecord] {
        &self.roots
    }

    /// Creates a new root and intermediate; issuing switches to them at once. The old root
    /// stays in the trust bundle until [`Authority::retire_expired_roots`] finds that every
    /// leaf issued under it has expired. Returns the new root's fingerprint.
    pub fn rotate_root(&mut self) -> Result<String> {
        self.rotate_root_at(OffsetDateTime::now_utc())
    }

    /// [`Authority::rotate_root`] as if the current time were `now`.
    pub fn rotate_root_at(&mut self, now: OffsetDateTime) -> Result<String> {
        let root = Self::new_root(&self.trust_domain, &self.opts, &self.rng, now)?;
        let intermediate =
            Self::new_intermediate(&self.trust_domain, &self.opts, &self.rng, &root, now)?;
        let record = RootRecord::new(root.der.clone(), None)?;
        let fingerprint = record.fingerprint.clone();
        self.root = root;
        self.intermediate = intermediate;
        self.roots.push(record);
        tracing::info!(
            trust_domain = %self.trust_domain,
            root = %fingerprint,
            roots_in_bundle = self.roots.len(),
            "rotated root CA"
        );
        Ok(fingerprint)
    }

    /// Removes from the bundle every non-active root whose leaves have all expired by `now`
    /// (or that has itself expired). Returns the fingerprints removed.
    pub fn retire_expired_roots(&mut self, now: OffsetDateTime) -> Vec<String> {
        let active = self.roots.len().saturating_sub(1);
        let mut retired = Vec::new();
        let mut i = 0;
        self.roots.retain(|r| {
            let keep = i == active
                || (r.not_after >= now && r.latest_leaf_expiry.is_some_and(|e| e >= now));
            i += 1;
            if !keep {
                retired.push(r.fingerprint.clone());
            }
            keep
        });
        for fp in &retired {
            tracing::info!(root = %fp, "retired root CA: every leaf it vouched for has expired");
        }
        retired
    }
}
