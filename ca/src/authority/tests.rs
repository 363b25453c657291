//! Unit tests of the authority: issuing, CSR policy enforcement, TTL capping, and an OpenSSL
//! cross-check of the produced chain (root rotation and retirement: `roots/tests.rs`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ::time::Duration as TimeDuration;
use rcgen::{CertificateParams, KeyPair};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::*;
use crate::error::SpiffeIdError;

fn td(s: &str) -> TrustDomain {
    s.parse().unwrap()
}

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

fn ca() -> Authority {
    Authority::init(td("example.org"), AuthorityOptions::default()).unwrap()
}

/// A CSR for `sans` (URI SANs) with extra junk the CA must ignore.
fn csr_with(sans: Vec<SanType>, key: &KeyPair) -> String {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, "please make me a CA");
    p.subject_alt_names = sans;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    p.serialize_request(key).unwrap().pem().unwrap()
}

fn uri(s: &str) -> SanType {
    SanType::URI(Ia5String::try_from(s).unwrap())
}

fn p256() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
}

/// Asserts the leaf has exactly the SVID profile, whatever was requested.
fn assert_svid_profile(der: &[u8], want_id: &str) {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    assert_eq!(
        cert.subject().as_raw().len(),
        2,
        "empty subject (SEQUENCE {{}})"
    );
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert!(san.critical, "SAN critical with an empty subject");
    assert_eq!(san.value.general_names, vec![GeneralName::URI(want_id)]);
    let bc = cert.basic_constraints().unwrap().unwrap();
    assert!(!bc.value.ca);
    let ku = cert.key_usage().unwrap().unwrap();
    assert!(ku.value.digital_signature());
    assert!(!ku.value.key_cert_sign());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(!eku.code_signing && eku.other.is_empty());
    assert!(cert.iter_extensions().any(|e| matches!(
        e.parsed_extension(),
        ParsedExtension::AuthorityKeyIdentifier(_)
    )));
    let serial = cert.raw_serial();
    assert_eq!(serial.len(), 16);
    assert_eq!(serial[0] & 0x80, 0, "positive serial");
}

#[test]
fn issue_produces_svid_profile_and_verifies() {
    let mut a = ca();
    let before = OffsetDateTime::now_utc();
    let svid = a
        .issue(&id("spiffe://example.org/ns/default/sa/web"), None)
        .unwrap();
    assert_eq!(
        svid.spiffe_id(),
        &id("spiffe://example.org/ns/default/sa/web")
    );
    assert_eq!(svid.chain_der().len(), 2);
    assert_eq!(svid.chain_der()[1], a.intermediate_cert_der());
    assert_svid_profile(svid.leaf_der(), "spiffe://example.org/ns/default/sa/web");
    // Default TTL 1h, backdated 1 min.
    let life = svid.not_after() - svid.not_before();
    assert!(
        (life - TimeDuration::minutes(61)).abs() <= TimeDuration::seconds(2),
        "{life}"
    );
    assert!(svid.not_before() <= before - TimeDuration::seconds(59));
    // The key is present and matches the certificate.
    let key = KeyPair::from_pem(svid.key_pem().unwrap()).unwrap();
    let (_, cert) = X509Certificate::from_der(svid.leaf_der()).unwrap();
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
    assert_eq!(svid.serial(), x509::hex(cert.raw_serial()));
    assert!(!format!("{svid:?}").contains("PRIVATE"));
    let v = a
        .trust_bundle()
        .verify_svid(&svid, OffsetDateTime::now_utc())
        .unwrap();
    assert_eq!(v.spiffe_id.as_ref(), Some(svid.spiffe_id()));
}

#[test]
fn ca_certificates_have_the_right_shape() {
    let a = ca();
    let (_, root) = X509Certificate::from_der(a.root_cert_der()).unwrap();
    let (_, inter) = X509Certificate::from_der(a.intermediate_cert_der()).unwrap();
    assert!(root.is_ca() && inter.is_ca());
    assert_eq!(inter.issuer().as_raw(), root.subject().as_raw());
    inter.verify_signature(Some(root.public_key())).unwrap();
    root.verify_signature(None).unwrap();
    let bc = inter.basic_constraints().unwrap().unwrap().value;
    assert_eq!(bc.path_len_constraint, Some(0));
    let root_life = a.root_not_after() - OffsetDateTime::now_utc();
    assert!(root_life > TimeDuration::days(3649) && root_life <= TimeDuration::days(3650));
    let inter_life = a.intermediate_not_after() - OffsetDateTime::now_utc();
    assert!(inter_life > TimeDuration::days(364) && inter_life <= TimeDuration::days(365));
    assert!(root.subject().to_string().contains("O=example.org"));
}

#[test]
fn serials_are_random_16_byte_positive() {
    let mut a = ca();
    let mut seen = std::collections::HashSet::new();
    for i in 0..20 {
        let s = a
            .issue(&id(&format!("spiffe://example.org/w{i}")), None)
            .unwrap();
        assert_eq!(s.serial().len(), 32);
        assert!(seen.insert(s.serial().to_owned()));
    }
}

#[test]
fn issue_rejects_foreign_domain_and_bare_domain_and_zero_ttl() {
    let mut a = ca();
    let err = a.issue(&id("spiffe://other.org/web"), None).unwrap_err();
    assert!(matches!(err, Error::ForeignTrustDomain { .. }), "{err}");
    let err = a.issue(&id("spiffe://example.org"), None).unwrap_err();
    assert!(matches!(err, Error::NotAllowed { .. }), "{err}");
    let err = a
        .issue(&id("spiffe://example.org/web"), Some(Duration::ZERO))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidTtl(_)), "{err}");
}

#[test]
fn ttl_is_capped_at_max_and_at_issuer_expiry() {
    let now = OffsetDateTime::now_utc();
    let opts = AuthorityOptions {
        intermediate_ttl: Duration::from_secs(1800),
        max_leaf_ttl: Duration::from_secs(7200),
        ..AuthorityOptions::default()
    };
    let mut a = Authority::init_at(td("example.org"), opts, now).unwrap();
    // Asked 1h, the intermediate only has 30 min: capped at the intermediate's expiry.
    let s = a
        .issue_at(
            &id("spiffe://example.org/x"),
            Some(Duration::from_secs(3600)),
            now,
        )
        .unwrap();
    assert_eq!(s.not_after(), a.intermediate_not_after());
    // With a long-lived intermediate the leaf gets at most max_leaf_ttl.
    let mut a = Authority::init_at(td("example.org"), AuthorityOptions::default(), now).unwrap();
    let s = a
        .issue_at(
            &id("spiffe://example.org/x"),
            Some(Duration::from_secs(99_999_999)),
            now,
        )
        .unwrap();
    assert_eq!(
        s.not_after(),
        x509::whole_seconds(now + TimeDuration::hours(24))
    );
    // A policy ceiling applies to CSRs.
    let key = p256();
    let csr = csr_with(vec![uri("spiffe://example.org/x")], &key);
    let policy = IssuePolicy::any_in(&td("example.org")).with_max_ttl(Duration::from_secs(600));
    let s = a
        .sign_csr_at(&csr, Some(Duration::from_secs(3600)), &policy, now)
        .unwrap();
    assert_eq!(
        s.not_after(),
        x509::whole_seconds(now + TimeDuration::minutes(10))
    );
}

#[test]
fn intermediate_is_capped_at_root_expiry() {
    let now = OffsetDateTime::now_utc();
    let opts = AuthorityOptions {
        root_ttl: Duration::from_secs(3600),
        ..AuthorityOptions::default()
    };
    let a = Authority::init_at(td("example.org"), opts, now).unwrap();
    assert_eq!(a.intermediate_not_after(), a.root_not_after());
}

#[test]
fn expired_issuer_refuses_to_issue() {
    let now = OffsetDateTime::now_utc();
    let opts = AuthorityOptions {
        intermediate_ttl: Duration::from_secs(600),
        ..AuthorityOptions::default()
    };
    let mut a = Authority::init_at(td("example.org"), opts, now).unwrap();
    let later = now + TimeDuration::minutes(11);
    let err = a
        .issue_at(&id("spiffe://example.org/x"), None, later)
        .unwrap_err();
    assert!(matches!(err, Error::IssuerExpired { .. }), "{err}");
    a.rotate_intermediate_at(later).unwrap();
    a.issue_at(&id("spiffe://example.org/x"), None, later)
        .unwrap();
}

#[test]
fn bad_options_are_rejected() {
    let bad = [
        AuthorityOptions {
            root_ttl: Duration::ZERO,
            ..AuthorityOptions::default()
        },
        AuthorityOptions {
            default_leaf_ttl: Duration::from_secs(7200),
            max_leaf_ttl: Duration::from_secs(3600),
            ..AuthorityOptions::default()
        },
        AuthorityOptions {
            root_ttl: Duration::MAX,
            ..AuthorityOptions::default()
        },
    ];
    for opts in bad {
        let err = Authority::init(td("example.org"), opts).unwrap_err();
        assert!(matches!(err, Error::InvalidOptions(_)), "{err}");
    }
}

#[test]
fn sign_csr_applies_policy_profile_and_ignores_requests() {
    let mut a = ca();
    let key = p256();
    let csr = csr_with(
        vec![
            uri("spiffe://example.org/ns/default/sa/web"),
            SanType::DnsName("evil.example.com".try_into().unwrap()),
        ],
        &key,
    );
    let policy = IssuePolicy::new(vec![
        "spiffe://example.org/ns/default/sa/*".parse().unwrap(),
    ]);
    let svid = a.sign_csr(&csr, None, &policy).unwrap();
    assert!(svid.key().is_none());
    assert_svid_profile(svid.leaf_der(), "spiffe://example.org/ns/default/sa/web");
    let (_, cert) = X509Certificate::from_der(svid.leaf_der()).unwrap();
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
    a.trust_bundle()
        .verify_svid(&svid, OffsetDateTime::now_utc())
        .unwrap();
}

#[test]
fn sign_csr_rejections() {
    let mut a = ca();
    let key = p256();
    let policy = IssuePolicy::new(vec![
        "spiffe://example.org/ns/default/sa/*".parse().unwrap(),
    ]);
    let sign = |a: &mut Authority, csr: &str| a.sign_csr(csr, None, &policy).unwrap_err();

    let foreign = csr_with(vec![uri("spiffe://other.org/ns/default/sa/web")], &key);
    assert!(matches!(
        sign(&mut a, &foreign),
        Error::ForeignTrustDomain { .. }
    ));

    let not_allowed = csr_with(vec![uri("spiffe://example.org/ns/prod/sa/db")], &key);
    assert!(matches!(
        sign(&mut a, &not_allowed),
        Error::NotAllowed { .. }
    ));
    assert!(matches!(
        a.sign_csr(&not_allowed, None, &IssuePolicy::default())
            .unwrap_err(),
        Error::NotAllowed { .. }
    ));

    let no_san = csr_with(vec![], &key);
    assert!(matches!(sign(&mut a, &no_san), Error::CsrSan(_)));
    let dns_only = csr_with(
        vec![SanType::DnsName("a.example".try_into().unwrap())],
        &key,
    );
    assert!(matches!(sign(&mut a, &dns_only), Error::CsrSan(_)));
    let two = csr_with(
        vec![
            uri("spiffe://example.org/ns/default/sa/a"),
            uri("spiffe://example.org/ns/default/sa/b"),
        ],
        &key,
    );
    assert!(matches!(sign(&mut a, &two), Error::CsrSan(_)));
    let not_spiffe = csr_with(vec![uri("https://example.org/x")], &key);
    assert!(matches!(
        sign(&mut a, &not_spiffe),
        Error::InvalidSpiffeId {
            reason: SpiffeIdError::WrongScheme(_),
            ..
        }
    ));

    assert!(matches!(sign(&mut a, "not a csr"), Error::CsrMalformed(_)));
    let cert_pem = a.root_cert_pem();
    assert!(matches!(sign(&mut a, &cert_pem), Error::CsrMalformed(_)));

    // Flip a bit in the signed subject: the self-signature no longer verifies.
    let good = csr_with(vec![uri("spiffe://example.org/ns/default/sa/web")], &key);
    let mut der = pem::parse(&good).unwrap().into_contents();
    let pos = der
        .windows(6)
        .position(|w| w == b"please")
        .expect("CN in CSR");
    der[pos] ^= 0x20;
    let tampered = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
    assert!(matches!(sign(&mut a, &tampered), Error::CsrBadSignature));
    // The untampered one is fine.
    a.sign_csr(&good, None, &policy).unwrap();
}

fn openssl() -> Option<&'static str> {
    Command::new("openssl")
        .arg("version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "openssl")
}

fn openssl_verify(dir: &Path, root: &str, inter: &str, leaf: &str) -> std::process::Output {
    Command::new("openssl")
        .args(["verify", "-x509_strict", "-purpose", "sslclient", "-CAfile"])
        .arg(dir.join(root))
        .arg("-untrusted")
        .arg(dir.join(inter))
        .arg(dir.join(leaf))
        .output()
        .unwrap()
}

#[test]
fn openssl_accepts_the_chain() {
    let Some(bin) = openssl() else {
        eprintln!("openssl not on PATH: skipping");
        return;
    };
    let mut a = ca();
    let leaf = a
        .issue(&id("spiffe://example.org/ns/default/sa/web"), None)
        .unwrap();
    let key = p256();
    let csr = csr_with(vec![uri("spiffe://example.org/ns/default/sa/db")], &key);
    let signed = a
        .sign_csr(&csr, None, &IssuePolicy::any_in(&td("example.org")))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, data: &str| std::fs::write(dir.path().join(name), data).unwrap();
    write("root.pem", &a.root_cert_pem());
    write("intermediate.pem", &a.intermediate_cert_pem());
    write("leaf.pem", &x509::cert_to_pem(leaf.leaf_der()));
    write("signed.pem", &x509::cert_to_pem(signed.leaf_der()));
    write("foreign.pem", &ca().root_cert_pem());

    let text = Command::new(bin)
        .args(["x509", "-text", "-noout", "-in"])
        .arg(dir.path().join("leaf.pem"))
        .output()
        .unwrap();
    assert!(
        text.status.success(),
        "{}",
        String::from_utf8_lossy(&text.stderr)
    );
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("URI:spiffe://example.org/ns/default/sa/web"),
        "{text}"
    );
    assert!(text.contains("TLS Web Server Authentication, TLS Web Client Authentication"));
    assert!(text.contains("CA:FALSE"));
    assert!(!text.contains("DNS:"));

    for leaf in ["leaf.pem", "signed.pem"] {
        let out = openssl_verify(dir.path(), "root.pem", "intermediate.pem", leaf);
        assert!(
            out.status.success(),
            "{leaf}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = openssl_verify(dir.path(), "foreign.pem", "intermediate.pem", "leaf.pem");
    assert!(
        !out.status.success(),
        "a foreign root must not verify the chain"
    );
}
