//! Unit tests of the on-disk store: layout and permissions, reload, trust-domain checks,
//! persistence of rotation/retirement bookkeeping (a pending root included), crash points,
//! and refusal of damaged stores.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use ::time::Duration as TimeDuration;

use super::*;

fn td(s: &str) -> TrustDomain {
    s.parse().unwrap()
}

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn init_writes_layout_with_private_keys_0600() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state/ca");
    assert!(!CaStore::exists(&dir));
    let store = CaStore::load_or_init(&dir, &td("example.org")).unwrap();
    assert!(CaStore::exists(&dir));
    assert_eq!(mode(&dir), 0o700);
    let files = names(&dir);
    assert_eq!(files.len(), 6, "{files:?}");
    let keys: Vec<_> = files.iter().filter(|n| n.ends_with(".key")).collect();
    assert_eq!(keys.len(), 2);
    for k in keys {
        assert_eq!(mode(&dir.join(k)), 0o600, "{k}");
        let pem = fs::read_to_string(dir.join(k)).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    }
    for public in ["bundle.pem", "ca.meta"] {
        assert_eq!(mode(&dir.join(public)), 0o644, "{public}");
    }
    assert!(!files.iter().any(|n| n.contains(".tmp")));
    let bundle = TrustBundle::from_pem(&fs::read_to_string(store.bundle_path()).unwrap()).unwrap();
    assert_eq!(bundle, store.trust_bundle());
    let meta = fs::read_to_string(dir.join(META)).unwrap();
    assert!(meta.contains("trust_domain example.org"), "{meta}");
}

#[test]
fn reload_yields_the_same_ca_and_issues_under_it() {
    let tmp = tempfile::tempdir().unwrap();
    let first = CaStore::load_or_init(tmp.path(), &td("example.org")).unwrap();
    let root = first.authority().root_cert_der().to_vec();
    let inter = first.authority().intermediate_cert_der().to_vec();
    drop(first);
    let mut again = CaStore::load_or_init(tmp.path(), &td("example.org")).unwrap();
    assert_eq!(again.authority().root_cert_der(), root.as_slice());
    assert_eq!(again.authority().intermediate_cert_der(), inter.as_slice());
    // The reloaded keys sign chains that verify.
    let svid = again.issue(&id("spiffe://example.org/web"), None).unwrap();
    again
        .trust_bundle()
        .verify_svid(&svid, OffsetDateTime::now_utc())
        .unwrap();
    let opened = CaStore::open(tmp.path()).unwrap();
    assert_eq!(opened.authority().trust_domain(), &td("example.org"));
    assert_eq!(
        opened.authority().roots()[0].latest_leaf_expiry,
        Some(svid.not_after())
    );
}

#[test]
fn other_trust_domain_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    CaStore::load_or_init(tmp.path(), &td("example.org")).unwrap();
    let err = CaStore::load_or_init(tmp.path(), &td("other.org")).unwrap_err();
    match &err {
        Error::TrustDomainMismatch {
            stored, requested, ..
        } => {
            assert_eq!(stored, "example.org");
            assert_eq!(requested, "other.org");
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("example.org"));
}

#[test]
fn rotation_and_retirement_persist() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = CaStore::load_or_init(tmp.path(), &td("example.org")).unwrap();
    let old_files = names(tmp.path());
    let old_leaf = store
        .issue(
            &id("spiffe://example.org/old"),
            Some(Duration::from_secs(3600)),
        )
        .unwrap();
    // Zero delay: the new root issues at once (see below for the two-phase rotation).
    let new_fp = store
        .rotate_root_with_delay(Duration::ZERO)
        .unwrap()
        .fingerprint;
    // Superseded CA files (old keys included) are gone; the old root lives on in the bundle.
    let files = names(tmp.path());
    assert_eq!(files.len(), 6, "{files:?}");
    assert!(
        old_files
            .iter()
            .filter(|n| n.ends_with(".key"))
            .all(|k| !files.contains(k))
    );

    let mut reloaded = CaStore::open(tmp.path()).unwrap();
    let roots = reloaded.authority().roots();
    assert_eq!(roots.len(), 2);
    assert_eq!(roots[1].fingerprint, new_fp);
    assert!(roots[1].active);
    assert_eq!(roots[0].latest_leaf_expiry, Some(old_leaf.not_after()));
    let now = OffsetDateTime::now_utc();
    reloaded.trust_bundle().verify_svid(&old_leaf, now).unwrap();
    let new_leaf = reloaded
        .issue(&id("spiffe://example.org/new"), None)
        .unwrap();
    let v = reloaded.trust_bundle().verify_svid(&new_leaf, now).unwrap();
    assert_eq!(v.root_fingerprint, new_fp);

    assert!(reloaded.retire_expired_roots(now).unwrap().is_empty());
    let later = old_leaf.not_after() + TimeDuration::seconds(1);
    assert_eq!(reloaded.retire_expired_roots(later).unwrap().len(), 1);
    let after = CaStore::open(tmp.path()).unwrap();
    assert_eq!(after.trust_bundle().fingerprints(), vec![new_fp]);
}

/// Every file of the store directory with its content.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    names(dir)
        .into_iter()
        .map(|n| {
            let data = fs::read(dir.join(&n)).unwrap();
            (n, data)
        })
        .collect()
}

fn fingerprint_of(der: &[u8]) -> String {
    x509::fingerprint(der)
}

#[test]
fn a_pending_rotation_survives_a_restart_and_activates_on_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut store = CaStore::load_or_init(dir, &td("example.org")).unwrap();
    let old_leaf = store
        .issue(
            &id("spiffe://example.org/old"),
            Some(Duration::from_secs(3600)),
        )
        .unwrap();
    let old_fp = store.authority().roots()[0].fingerprint.clone();
    let r = store.rotate_root().unwrap();
    assert!(!r.active, "the default delay makes the rotation two-phase");

    // On disk: the pending pair beside the active one (keys 0600), both roots in the bundle
    // peers fetch, and the activation time in the metadata.
    let files = names(dir);
    assert_eq!(files.len(), 10, "{files:?}");
    let keys: Vec<_> = files.iter().filter(|n| n.ends_with(".key")).collect();
    assert_eq!(keys.len(), 4);
    for k in keys {
        assert_eq!(mode(&dir.join(k)), 0o600, "{k}");
    }
    let published = TrustBundle::from_pem(&fs::read_to_string(dir.join(BUNDLE)).unwrap()).unwrap();
    assert_eq!(
        published.fingerprints(),
        vec![old_fp.clone(), r.fingerprint.clone()]
    );
    let pending = meta_of(dir).pending.expect("pending root in ca.meta");
    assert_eq!(pending.activate_at, r.activates_at.unix_timestamp());

    // A restart keeps the pending state.
    drop(store);
    let mut reloaded = CaStore::open(dir).unwrap();
    let roots = reloaded.authority().roots();
    assert_eq!(roots.len(), 2);
    assert!(roots[0].active && !roots[1].active);
    assert_eq!(roots[1].fingerprint, r.fingerprint);
    assert_eq!(roots[1].activates_at, Some(r.activates_at));
    assert_eq!(roots[0].latest_leaf_expiry, Some(old_leaf.not_after()));

    // Before the activation time (two minutes away) leaves still come from the old root, and
    // another rotation is refused.
    let now = OffsetDateTime::now_utc();
    assert!(now < r.activates_at);
    let early = reloaded
        .issue(&id("spiffe://example.org/early"), None)
        .unwrap();
    let v = reloaded.trust_bundle().verify_svid(&early, now).unwrap();
    assert_eq!(v.root_fingerprint, old_fp);
    let err = reloaded.rotate_root().unwrap_err();
    assert!(matches!(err, Error::RotationPending { .. }), "{err}");

    // The first issue at the activation time switches; saved, the switch survives a restart,
    // and only the new pair's files remain.
    let at = r.activates_at;
    let late = reloaded
        .authority
        .issue_at(&id("spiffe://example.org/late"), None, at)
        .unwrap();
    reloaded.save().unwrap();
    let v = reloaded.trust_bundle().verify_svid(&late, at).unwrap();
    assert_eq!(v.root_fingerprint, r.fingerprint);
    let after = CaStore::open(dir).unwrap();
    assert_eq!(
        fingerprint_of(after.authority().root_cert_der()),
        r.fingerprint
    );
    let roots = after.authority().roots();
    assert!(!roots[0].active && roots[1].active);
    assert_eq!(roots[1].activates_at, None);
    assert_eq!(roots[0].latest_leaf_expiry, Some(early.not_after()));
    assert_eq!(roots[1].latest_leaf_expiry, Some(late.not_after()));
    assert!(meta_of(dir).pending.is_none());
    assert_eq!(names(dir).len(), 6, "{:?}", names(dir));
}

#[test]
fn explicit_activation_persists() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = CaStore::load_or_init(tmp.path(), &td("example.org")).unwrap();
    assert_eq!(store.activate_pending_root().unwrap(), None);
    let r = store.rotate_root().unwrap();
    assert_eq!(
        store.activate_pending_root().unwrap(),
        Some(r.fingerprint.clone())
    );
    let reloaded = CaStore::open(tmp.path()).unwrap();
    assert_eq!(
        fingerprint_of(reloaded.authority().root_cert_der()),
        r.fingerprint
    );
    assert!(
        reloaded
            .authority()
            .roots()
            .iter()
            .all(|root| root.activates_at.is_none())
    );
}

#[test]
fn crash_before_the_rotation_metadata_keeps_the_active_root() {
    // The rotation wrote the pending pair and the bundle, then crashed before `ca.meta`:
    // the old metadata is in force, nothing is pending, the active root is intact.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut store = CaStore::load_or_init(dir, &td("example.org")).unwrap();
    let old_meta = fs::read(dir.join(META)).unwrap();
    let old_root = store.authority().root_cert_der().to_vec();
    let r = store.rotate_root().unwrap();
    fs::write(dir.join(META), old_meta).unwrap();
    let mut reloaded = CaStore::open(dir).unwrap();
    assert_eq!(reloaded.authority().root_cert_der(), old_root.as_slice());
    let roots = reloaded.authority().roots();
    assert!(roots.iter().all(|root| root.activates_at.is_none()));
    assert!(roots[1].active);
    assert_eq!(roots[0].fingerprint, r.fingerprint, "stray root, keyless");
    // The stray root vouches for nothing: retired, and its files go with the next save.
    let retired = reloaded
        .retire_expired_roots(OffsetDateTime::now_utc())
        .unwrap();
    assert_eq!(retired, vec![r.fingerprint]);
    assert_eq!(names(dir).len(), 6, "{:?}", names(dir));
    // And a new rotation can start.
    reloaded.rotate_root().unwrap();
}

#[test]
fn activation_rewrites_only_the_metadata() {
    // So a crash at any point before `ca.meta` is renamed leaves the directory exactly as it
    // was while the root was pending (reloaded above), and one after leaves the new state.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut store = CaStore::load_or_init(dir, &td("example.org")).unwrap();
    store.rotate_root().unwrap();
    let before = snapshot(dir);
    store.activate_pending_root().unwrap().unwrap();
    let after = snapshot(dir);
    let mut removed = 0;
    for (name, data) in &before {
        match after.get(name) {
            Some(now) if name == META => assert_ne!(now, data),
            Some(now) => assert_eq!(now, data, "{name} was rewritten"),
            None => removed += 1,
        }
    }
    assert!(after.keys().all(|n| before.contains_key(n)));
    assert_eq!(removed, 4, "the previous root's and intermediate's files");
}

#[test]
fn rotate_intermediate_persists() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = CaStore::load_or_init(tmp.path(), &td("example.org")).unwrap();
    let before = store.authority().intermediate_cert_der().to_vec();
    store.rotate_intermediate().unwrap();
    let reloaded = CaStore::open(tmp.path()).unwrap();
    assert_ne!(
        reloaded.authority().intermediate_cert_der(),
        before.as_slice()
    );
    assert_eq!(
        reloaded.authority().intermediate_cert_der(),
        store.authority().intermediate_cert_der()
    );
}

#[test]
fn missing_store_is_not_initialized() {
    let tmp = tempfile::tempdir().unwrap();
    let err = CaStore::open(tmp.path().join("nothing")).unwrap_err();
    assert!(matches!(err, Error::NotInitialized(_)), "{err}");
}

#[test]
fn files_without_metadata_are_not_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    CaStore::load_or_init(tmp.path(), &td("example.org")).unwrap();
    fs::remove_file(tmp.path().join(META)).unwrap();
    let err = CaStore::load_or_init(tmp.path(), &td("example.org")).unwrap_err();
    assert!(matches!(err, Error::StoreCorrupt { .. }), "{err}");
}

fn meta_of(dir: &Path) -> Meta {
    Meta::parse(&fs::read_to_string(dir.join(META)).unwrap()).unwrap()
}

#[test]
fn mismatched_key_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    CaStore::load_or_init(tmp.path(), &td("example.org")).unwrap();
    let m = meta_of(tmp.path());
    // Put the intermediate's key where the root's key belongs.
    let inter_key = fs::read(tmp.path().join(&m.active.intermediate_key)).unwrap();
    fs::write(tmp.path().join(&m.active.root_key), inter_key).unwrap();
    let err = CaStore::open(tmp.path()).unwrap_err();
    assert!(matches!(err, Error::StoreCorrupt { .. }), "{err}");
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn active_root_missing_from_bundle_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    CaStore::load_or_init(tmp.path(), &td("example.org")).unwrap();
    let other = Authority::init(td("example.org"), AuthorityOptions::default()).unwrap();
    fs::write(tmp.path().join(BUNDLE), other.trust_bundle().to_pem()).unwrap();
    let err = CaStore::open(tmp.path()).unwrap_err();
    assert!(err.to_string().contains("not in bundle.pem"), "{err}");
}

#[test]
fn crash_after_bundle_write_keeps_old_ca() {
    // Simulates a crash mid-rotation: a newer (keyless) root reached bundle.pem but the
    // metadata still names the old CA. The old CA loads and the stray root is retired.
    let tmp = tempfile::tempdir().unwrap();
    let store = CaStore::load_or_init(tmp.path(), &td("example.org")).unwrap();
    let other = Authority::init(td("example.org"), AuthorityOptions::default()).unwrap();
    let mut bundle = store.trust_bundle();
    bundle.add_root_der(other.root_cert_der().to_vec()).unwrap();
    fs::write(tmp.path().join(BUNDLE), bundle.to_pem()).unwrap();
    let mut reloaded = CaStore::open(tmp.path()).unwrap();
    assert_eq!(
        reloaded.authority().root_cert_der(),
        store.authority().root_cert_der()
    );
    assert!(reloaded.authority().roots()[1].active);
    let retired = reloaded
        .retire_expired_roots(OffsetDateTime::now_utc())
        .unwrap();
    assert_eq!(retired.len(), 1);
    assert_eq!(reloaded.trust_bundle().len(), 1);
}

#[test]
fn metadata_parser_is_strict() {
    let pair = |hex: &str| PairFiles {
        root_cert: format!("root-{hex}.pem"),
        root_key: format!("root-{hex}.key"),
        intermediate_cert: format!("intermediate-{hex}.pem"),
        intermediate_key: format!("intermediate-{hex}.key"),
    };
    let good = Meta {
        trust_domain: "example.org".into(),
        active: pair("0123456789abcdef"),
        pending: None,
        roots: vec![
            ("ab".repeat(32), Some(1_700_000_000)),
            ("cd".repeat(32), None),
        ],
    };
    assert_eq!(Meta::parse(&good.render()).unwrap(), good);
    let with_pending = Meta {
        pending: Some(PendingMeta {
            files: pair("fedcba9876543210"),
            activate_at: 1_900_000_120,
        }),
        ..Meta::parse(&good.render()).unwrap()
    };
    let text = with_pending.render();
    assert_eq!(Meta::parse(&text).unwrap(), with_pending);
    assert_eq!(with_pending.file_names().len(), 8);
    let bad_pending = [
        text.replace("pending_activate_at 1900000120\n", ""),
        text.replace("pending_root_key root-fedcba9876543210.key\n", ""),
        text.replace("1900000120", "soon"),
        text.replace("root-fedcba9876543210.pem", "/etc/passwd"),
        text.clone() + "pending_activate_at 1\n",
        good.render() + "pending_activate_at 1\n",
    ];
    for text in bad_pending {
        assert!(Meta::parse(&text).is_err(), "{text:?}");
    }
    let bad = [
        String::new(),
        "something else\n".to_owned(),
        good.render()
            .replace("root-0123456789abcdef.key", "../../etc/passwd"),
        good.render().replace("trust_domain example.org\n", ""),
        good.render() + "colour blue\n",
        good.render() + "root abc notanumber\n",
        good.render() + "root abc\n",
        good.render() + "root abc 1 2\n",
        good.render() + "root_cert root-0123456789abcdef.pem\n",
    ];
    for text in bad {
        assert!(Meta::parse(&text).is_err(), "{text:?}");
    }
    assert!(!is_our_file_name("root-0123456789ABCDEF.pem"));
    assert!(!is_our_file_name("bundle.pem"));
    assert!(is_our_file_name("intermediate-0123456789abcdef.key"));
}

#[test]
fn atomic_write_sets_mode_and_replaces() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("secret.key");
    write_file_atomic(&path, b"one", KEY_MODE).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"one");
    assert_eq!(mode(&path), 0o600);
    write_file_atomic(&path, b"two", PUBLIC_MODE).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"two");
    assert_eq!(mode(&path), 0o644);
    assert_eq!(names(tmp.path()), vec!["secret.key".to_owned()]);
    let err = write_file_atomic(&tmp.path().join("no/such/dir/x"), b"x", KEY_MODE).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}
