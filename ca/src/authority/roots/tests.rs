//! Unit tests of root rotation (two-phase: trust before use), activation and retirement, all
//! at explicit times: which root a leaf chains to is checked with `TrustBundle::verify_svid`.

use std::time::Duration;

use ::time::Duration as TimeDuration;
use ::time::OffsetDateTime;

use crate::authority::{Authority, AuthorityOptions, IssuePolicy};
use crate::bundle::TrustBundle;
use crate::error::Error;
use crate::spiffe::{SpiffeId, TrustDomain};
use crate::svid::{Svid, generate_csr};
use crate::x509;

fn td(s: &str) -> TrustDomain {
    s.parse().unwrap()
}

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

/// A fixed instant (2030-03-17T17:46:40Z), so every test runs on the same timeline.
fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap()
}

fn min(n: i64) -> TimeDuration {
    TimeDuration::minutes(n)
}

/// A CA with default options (activation delay 2 minutes) created at `now`.
fn ca_at(now: OffsetDateTime) -> Authority {
    Authority::init_at(td("example.org"), AuthorityOptions::default(), now).unwrap()
}

/// A one-hour leaf for `spiffe://example.org/<name>` issued at `now`.
fn leaf(a: &mut Authority, name: &str, now: OffsetDateTime) -> Svid {
    let id = id(&format!("spiffe://example.org/{name}"));
    a.issue_at(&id, Some(Duration::from_secs(3600)), now)
        .unwrap()
}

/// The fingerprint of the root `svid` chains to in `a`'s current bundle, checked at `at`.
fn root_of(a: &Authority, svid: &Svid, at: OffsetDateTime) -> String {
    a.trust_bundle()
        .verify_svid(svid, at)
        .unwrap()
        .root_fingerprint
}

#[test]
fn new_root_is_trusted_at_once_but_issues_only_from_its_activation_time() {
    let mut a = ca_at(t0());
    let old_fp = a.roots()[0].fingerprint.clone();
    let old_root = a.root_cert_der().to_vec();
    let rotated_at = t0() + min(10);
    let r = a.rotate_root_at(rotated_at).unwrap();
    assert!(!r.active);
    assert_eq!(r.activates_at, rotated_at + min(2));

    // Published at once: the bundle holds both roots, the new one last.
    assert_eq!(
        a.trust_bundle().fingerprints(),
        vec![old_fp.clone(), r.fingerprint.clone()]
    );
    let published = TrustBundle::from_pem(&r.root_pem).unwrap();
    assert_eq!(published.fingerprints(), vec![r.fingerprint.clone()]);
    let roots = a.roots();
    assert!(roots[0].active);
    assert_eq!(roots[0].activates_at, None);
    assert!(!roots[1].active);
    assert_eq!(roots[1].activates_at, Some(r.activates_at));
    assert_eq!(roots[1].latest_leaf_expiry, None);
    assert_eq!(a.root_cert_der(), old_root.as_slice());

    // Up to the last second before activation, leaves come from the old root: a peer that
    // has not fetched the new bundle yet accepts them.
    let old_only = TrustBundle::from_der([old_root.clone()]).unwrap();
    let just_before = r.activates_at - TimeDuration::seconds(1);
    for (name, at) in [("early", rotated_at), ("late", just_before)] {
        let svid = leaf(&mut a, name, at);
        assert_eq!(root_of(&a, &svid, at), old_fp, "{name}");
        old_only.verify_svid(&svid, at).unwrap();
    }
    let before = leaf(&mut a, "before", just_before);
    assert!(!a.roots()[1].active);

    // The first issue at the activation time switches: the leaf chains to the new root,
    // which the old bundle alone does not know.
    let after = leaf(&mut a, "after", r.activates_at);
    assert_eq!(root_of(&a, &after, r.activates_at), r.fingerprint);
    assert!(old_only.verify_svid(&after, r.activates_at).is_err());
    let roots = a.roots();
    assert!(!roots[0].active && roots[1].active);
    assert_eq!(roots[1].activates_at, None);
    assert_eq!(x509::fingerprint(a.root_cert_der()), r.fingerprint);
    // Each root records the leaves it actually issued (the old one issued until the switch).
    assert_eq!(roots[0].latest_leaf_expiry, Some(before.not_after()));
    assert_eq!(roots[1].latest_leaf_expiry, Some(after.not_after()));
    // Old leaves keep verifying against the bundle.
    assert_eq!(root_of(&a, &before, r.activates_at), old_fp);
}

#[test]
fn signed_csrs_switch_at_the_activation_time_too() {
    let mut a = ca_at(t0());
    let r = a.rotate_root_at(t0()).unwrap();
    let (_, csr) = generate_csr(&id("spiffe://example.org/w")).unwrap();
    let policy = IssuePolicy::any_in(&td("example.org"));
    let at = t0() + min(1);
    let early = a.sign_csr_at(&csr, None, &policy, at).unwrap();
    assert_ne!(root_of(&a, &early, at), r.fingerprint);
    let at = r.activates_at + min(1);
    let late = a.sign_csr_at(&csr, None, &policy, at).unwrap();
    assert_eq!(root_of(&a, &late, at), r.fingerprint);
}

#[test]
fn zero_delay_switches_issuing_at_once() {
    // Through the options...
    let opts = AuthorityOptions {
        activation_delay: Duration::ZERO,
        ..AuthorityOptions::default()
    };
    let mut a = Authority::init_at(td("example.org"), opts, t0()).unwrap();
    let r = a.rotate_root_at(t0()).unwrap();
    assert!(r.active);
    assert_eq!(r.activates_at, t0());
    let roots = a.roots();
    assert!(!roots[0].active && roots[1].active);
    assert!(roots.iter().all(|root| root.activates_at.is_none()));
    assert_eq!(x509::fingerprint(a.root_cert_der()), r.fingerprint);
    let svid = leaf(&mut a, "now", t0());
    assert_eq!(root_of(&a, &svid, t0()), r.fingerprint);
    assert_eq!(a.activate_pending_root(), None);

    // ...or explicitly, whatever the options say; nothing stays pending, so rotating again
    // right away is fine.
    let mut b = ca_at(t0());
    let r = b.rotate_root_with_delay_at(Duration::ZERO, t0()).unwrap();
    assert!(r.active);
    let svid = leaf(&mut b, "now", t0());
    assert_eq!(root_of(&b, &svid, t0()), r.fingerprint);
    b.rotate_root_with_delay_at(Duration::ZERO, t0()).unwrap();
    assert_eq!(b.trust_bundle().len(), 3);
}

#[test]
fn explicit_activation_switches_before_the_activation_time() {
    let mut a = ca_at(t0());
    let r = a.rotate_root_at(t0()).unwrap();
    assert_eq!(a.activate_pending_root(), Some(r.fingerprint.clone()));
    assert_eq!(a.activate_pending_root(), None);
    let svid = leaf(&mut a, "x", t0());
    assert_eq!(root_of(&a, &svid, t0()), r.fingerprint);
    assert!(a.roots()[1].active);
}

#[test]
fn activation_time_is_whole_seconds_and_never_early() {
    let mut a = ca_at(t0());
    let rotated_at = t0() + TimeDuration::milliseconds(1500);
    let r = a.rotate_root_at(rotated_at).unwrap();
    assert_eq!(r.activates_at, t0() + min(2) + TimeDuration::seconds(2));
    assert!(r.activates_at >= rotated_at + min(2));
}

#[test]
fn a_second_rotation_is_refused_while_one_is_pending() {
    let mut a = ca_at(t0());
    let first = a.rotate_root_at(t0()).unwrap();
    let err = a.rotate_root_at(t0() + min(1)).unwrap_err();
    match &err {
        Error::RotationPending {
            fingerprint,
            activates_at,
        } => {
            assert_eq!(fingerprint, &first.fingerprint);
            assert_eq!(activates_at, &crate::format_time(first.activates_at));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("already pending"), "{err}");
    // Even with zero delay: one rotation at a time.
    let err = a
        .rotate_root_with_delay_at(Duration::ZERO, t0() + min(1))
        .unwrap_err();
    assert!(matches!(err, Error::RotationPending { .. }), "{err}");
    // Nothing changed.
    assert_eq!(a.trust_bundle().len(), 2);
    assert_eq!(a.roots()[1].activates_at, Some(first.activates_at));

    // Once the first is due, a new rotation activates it and then starts.
    let second = a.rotate_root_at(first.activates_at).unwrap();
    let roots = a.roots();
    assert_eq!(roots.len(), 3);
    assert_eq!(roots[1].fingerprint, first.fingerprint);
    assert!(roots[1].active);
    assert_eq!(roots[2].fingerprint, second.fingerprint);
    assert_eq!(roots[2].activates_at, Some(second.activates_at));
}

#[test]
fn retirement_never_drops_the_active_or_the_pending_root() {
    let mut a = ca_at(t0());
    let old_leaf = leaf(&mut a, "old", t0());
    let active = a
        .rotate_root_with_delay_at(Duration::ZERO, t0())
        .unwrap()
        .fingerprint;
    let pending = a.rotate_root_at(t0()).unwrap();
    assert_eq!(a.trust_bundle().len(), 3);

    // Once the old leaf has expired only the oldest root goes; neither the active root (no
    // leaf issued) nor the pending one (not even activated yet, though due) is touched, even
    // long after every root has expired.
    let later = old_leaf.not_after() + TimeDuration::seconds(1);
    assert_eq!(a.retire_expired_roots(later).len(), 1);
    assert_eq!(
        a.trust_bundle().fingerprints(),
        vec![active.clone(), pending.fingerprint.clone()]
    );
    let far = t0() + TimeDuration::days(20 * 365);
    assert!(a.retire_expired_roots(far).is_empty());
    assert_eq!(a.roots()[1].activates_at, Some(pending.activates_at));

    // After the switch, the previous root (which never issued) goes; the new active one stays.
    let svid = leaf(&mut a, "new", pending.activates_at);
    assert_eq!(
        root_of(&a, &svid, pending.activates_at),
        pending.fingerprint
    );
    assert_eq!(a.retire_expired_roots(pending.activates_at), vec![active]);
    assert_eq!(
        a.trust_bundle().fingerprints(),
        vec![pending.fingerprint.clone()]
    );
}

#[test]
fn an_unusable_activation_delay_is_refused() {
    let mut a = ca_at(t0());
    // The default intermediate lives a year: it would expire before issuing.
    let year = Duration::from_secs(365 * 24 * 3600);
    let err = a.rotate_root_with_delay_at(year, t0()).unwrap_err();
    assert!(matches!(err, Error::InvalidActivationDelay(_)), "{err}");
    assert!(err.to_string().contains("intermediate_ttl"), "{err}");
    let err = a
        .rotate_root_with_delay_at(Duration::MAX, t0())
        .unwrap_err();
    assert!(matches!(err, Error::InvalidActivationDelay(_)), "{err}");
    assert_eq!(a.trust_bundle().len(), 1);
}

#[test]
fn rotation_keeps_old_root_until_its_leaves_expire() {
    let now = t0();
    let mut a = ca_at(now);
    let old_leaf = leaf(&mut a, "old", now);
    let old_root = a.root_cert_der().to_vec();
    // Zero delay: the new root issues at once (the behaviour before two-phase rotation).
    let new_fp = a
        .rotate_root_with_delay_at(Duration::ZERO, now)
        .unwrap()
        .fingerprint;
    assert_ne!(a.root_cert_der(), old_root.as_slice());
    let new_leaf = leaf(&mut a, "new", now);
    let bundle = a.trust_bundle();
    assert_eq!(bundle.len(), 2);
    assert_eq!(bundle.fingerprints()[1], new_fp);
    bundle.verify_svid(&old_leaf, now).unwrap();
    bundle.verify_svid(&new_leaf, now).unwrap();
    // The new leaf does not verify against the old root alone.
    let old_only = TrustBundle::from_der([old_root]).unwrap();
    assert!(old_only.verify_svid(&new_leaf, now).is_err());

    let roots = a.roots();
    assert_eq!(roots.len(), 2);
    assert!(!roots[0].active && roots[1].active);
    assert_eq!(roots[0].latest_leaf_expiry, Some(old_leaf.not_after()));
    assert_eq!(roots[1].latest_leaf_expiry, Some(new_leaf.not_after()));

    // Not retired while the old leaf is valid (including its last second).
    assert!(a.retire_expired_roots(now).is_empty());
    assert!(a.retire_expired_roots(old_leaf.not_after()).is_empty());
    assert_eq!(a.trust_bundle().len(), 2);
    // Retired once it has expired; the active root never is.
    let later = old_leaf.not_after() + TimeDuration::seconds(1);
    let retired = a.retire_expired_roots(later);
    assert_eq!(retired.len(), 1);
    assert_ne!(retired[0], new_fp);
    assert_eq!(a.trust_bundle().fingerprints(), vec![new_fp.clone()]);
    assert!(
        a.retire_expired_roots(now + TimeDuration::days(10_000))
            .is_empty()
    );
    assert_eq!(a.trust_bundle().len(), 1);
}

#[test]
fn root_without_leaves_is_retired_at_once() {
    let mut a = ca_at(t0());
    a.rotate_root_with_delay_at(Duration::ZERO, t0()).unwrap();
    a.rotate_root_with_delay_at(Duration::ZERO, t0()).unwrap();
    assert_eq!(a.trust_bundle().len(), 3);
    let retired = a.retire_expired_roots(t0());
    assert_eq!(retired.len(), 2);
    assert_eq!(a.trust_bundle().len(), 1);
}
