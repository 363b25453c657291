//! The roots of the trust bundle: [`RootRecord`] (per-root bookkeeping), [`RootInfo`] (its
//! public view), [`PendingRoot`], and the [`Authority`] methods that change the set of roots:
//! rotation, activation and retirement.
//!
//! A root rotation is two-phase, trust before use. [`Authority::rotate_root`] makes a new root
//! and intermediate and publishes the root in the trust bundle at once, but the old root and
//! intermediate keep issuing until `activate_at = now + activation_delay`: proxies poll the
//! bundle, so a proxy renewing early must not hand its peers a leaf from a root they have not
//! fetched yet. The first issue at or after `activate_at` (or [`Authority::activate_pending_root`])
//! makes the pending root active. A delay of zero switches at once (no pending phase).
//!
//! One rotation at a time: rotating again while a root is pending (before its activation
//! time) is refused with [`Error::RotationPending`] rather than replacing it, so a retried or
//! repeated call cannot keep pushing the switch back or mint roots nobody will use. Once the
//! activation time has passed, a new rotation first activates the pending root.
//!
//! Retirement never drops the active or the pending root; an older root goes once every leaf
//! it vouched for has expired.

use std::time::Duration;

use ::time::OffsetDateTime;

use super::policy::check_activation_delay;
use super::{Authority, CaCert, add};
use crate::bundle::TrustBundle;
use crate::error::{Error, Result};
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

/// A rotation's new root and intermediate: trusted (in the bundle), issuing from
/// `activate_at` (whole seconds, so it survives the store's metadata unchanged).
pub(crate) struct PendingRoot {
    pub(crate) root: CaCert,
    pub(crate) intermediate: CaCert,
    pub(crate) activate_at: OffsetDateTime,
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
    /// Whether this root currently issues (through the intermediate). False for old roots and
    /// for a pending root.
    pub active: bool,
    /// For the pending root of a rotation: when it starts issuing (the first issue at or after
    /// this time switches to it; it may therefore lie in the past). None for every other root.
    pub activates_at: Option<OffsetDateTime>,
}

/// What [`Authority::rotate_root`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootRotation {
    /// SHA-256 of the new root's DER, lowercase hex.
    pub fingerprint: String,
    /// The new root certificate, PEM.
    pub root_pem: String,
    /// When issuing switches to the new root: the rotation time itself when the activation
    /// delay is zero.
    pub activates_at: OffsetDateTime,
    /// Whether the new root issues already (zero delay); otherwise it is pending.
    pub active: bool,
}

/// `t` rounded up to a whole second (the store keeps whole seconds): the promised delay is
/// never shortened.
fn ceil_seconds(t: OffsetDateTime) -> OffsetDateTime {
    let whole = x509::whole_seconds(t);
    if whole < t {
        whole + ::time::Duration::SECOND
    } else {
        whole
    }
}

impl Authority {
    /// Every trusted root (old and pending ones included), as a bundle to hand to peers.
    pub fn trust_bundle(&self) -> TrustBundle {
        TrustBundle::from_trusted_der(self.roots.iter().map(|r| r.der.clone()).collect())
    }

    /// The roots in the bundle, oldest first: old roots, the active root, then the pending
    /// root of a rotation under way (`active: false`, `activates_at: Some(..)`).
    pub fn roots(&self) -> Vec<RootInfo> {
        let pending_fp = self.pending_fingerprint();
        self.roots
            .iter()
            .map(|r| {
                let pending = pending_fp.as_deref() == Some(r.fingerprint.as_str());
                RootInfo {
                    fingerprint: r.fingerprint.clone(),
                    not_after: r.not_after,
                    latest_leaf_expiry: r.latest_leaf_expiry,
                    active: r.der == self.root.der,
                    activates_at: self
                        .pending
                        .as_ref()
                        .filter(|_| pending)
                        .map(|p| p.activate_at),
                }
            })
            .collect()
    }

    pub(crate) fn root_records(&self) -> &[RootRecord] {
        &self.roots
    }

    fn pending_fingerprint(&self) -> Option<String> {
        self.pending
            .as_ref()
            .map(|p| x509::fingerprint(&p.root.der))
    }

    /// Starts a root rotation with the configured `activation_delay`: a new root and
    /// intermediate are made and the root joins the trust bundle at once; issuing switches to
    /// them at the first issue at or after `now + activation_delay` (at once when the delay is
    /// zero). The old root stays in the bundle until [`Authority::retire_expired_roots`] finds
    /// that every leaf issued under it has expired. Refused with [`Error::RotationPending`]
    /// while an earlier rotation's root is pending and not yet due.
    pub fn rotate_root(&mut self) -> Result<RootRotation> {
        self.rotate_root_at(OffsetDateTime::now_utc())
    }

    /// [`Authority::rotate_root`] as if the current time were `now`.
    pub fn rotate_root_at(&mut self, now: OffsetDateTime) -> Result<RootRotation> {
        self.rotate_root_with_delay_at(self.opts.activation_delay, now)
    }

    /// [`Authority::rotate_root`] with an explicit activation delay (zero: switch at once).
    pub fn rotate_root_with_delay(&mut self, delay: Duration) -> Result<RootRotation> {
        self.rotate_root_with_delay_at(delay, OffsetDateTime::now_utc())
    }

    /// [`Authority::rotate_root_with_delay`] as if the current time were `now`.
    pub fn rotate_root_with_delay_at(
        &mut self,
        delay: Duration,
        now: OffsetDateTime,
    ) -> Result<RootRotation> {
        check_activation_delay(delay, &self.opts).map_err(|reason| {
            Error::InvalidActivationDelay(format!("{}s {reason}", delay.as_secs()))
        })?;
        self.activate_due_root(now);
        if let Some(p) = &self.pending {
            return Err(Error::RotationPending {
                fingerprint: x509::fingerprint(&p.root.der),
                activates_at: x509::fmt_time(p.activate_at),
            });
        }
        let activate_at = ceil_seconds(add(now, delay)?);
        let root = Self::new_root(&self.trust_domain, &self.opts, &self.rng, now)?;
        let intermediate =
            Self::new_intermediate(&self.trust_domain, &self.opts, &self.rng, &root, now)?;
        let record = RootRecord::new(root.der.clone(), None)?;
        let rotation = RootRotation {
            fingerprint: record.fingerprint.clone(),
            root_pem: root.cert_pem(),
            activates_at: if delay.is_zero() { now } else { activate_at },
            active: delay.is_zero(),
        };
        self.roots.push(record);
        if delay.is_zero() {
            self.root = root;
            self.intermediate = intermediate;
            tracing::info!(
                trust_domain = %self.trust_domain,
                root = %rotation.fingerprint,
                roots_in_bundle = self.roots.len(),
                "rotated root CA: the new root issues now"
            );
        } else {
            self.pending = Some(PendingRoot {
                root,
                intermediate,
                activate_at,
            });
            tracing::info!(
                trust_domain = %self.trust_domain,
                root = %rotation.fingerprint,
                activates_at = %x509::fmt_time(activate_at),
                roots_in_bundle = self.roots.len(),
                "rotating root CA: the new root is trusted now and issues from activates_at"
            );
        }
        Ok(rotation)
    }

    /// Makes the pending root (and its intermediate) the issuing CA now, whatever its
    /// activation time. Returns its fingerprint, or None when no rotation is pending. The
    /// previous root stays in the bundle until its leaves have expired.
    pub fn activate_pending_root(&mut self) -> Option<String> {
        let p = self.pending.take()?;
        let fingerprint = x509::fingerprint(&p.root.der);
        self.root = p.root;
        self.intermediate = p.intermediate;
        tracing::info!(
            trust_domain = %self.trust_domain,
            root = %fingerprint,
            "activated the pending root CA: it issues from now on"
        );
        Some(fingerprint)
    }

    /// Activates the pending root if its activation time has come by `now`.
    pub(crate) fn activate_due_root(&mut self, now: OffsetDateTime) -> Option<String> {
        if self.pending.as_ref().is_some_and(|p| p.activate_at <= now) {
            self.activate_pending_root()
        } else {
            None
        }
    }

    /// Removes from the bundle every root that is neither active nor pending and whose leaves
    /// have all expired by `now` (or that has itself expired). Returns the fingerprints removed.
    pub fn retire_expired_roots(&mut self, now: OffsetDateTime) -> Vec<String> {
        let pending = self.pending_fingerprint();
        let active = &self.root.der;
        let mut retired = Vec::new();
        self.roots.retain(|r| {
            let keep = &r.der == active
                || pending.as_deref() == Some(r.fingerprint.as_str())
                || (r.not_after >= now && r.latest_leaf_expiry.is_some_and(|e| e >= now));
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

#[cfg(test)]
mod tests;
