//! Real TLS 1.3 handshakes (in memory, rustls on both sides) with CA-issued SVIDs: the accepted
//! case and every rejection the verifiers owe us.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use shoal_ca::{
    Authority, AuthorityOptions, IdPattern, OffsetDateTime, SpiffeId, Svid, TrustBundle,
    TrustDomain,
};

use super::*;

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

fn ca(domain: &str) -> Authority {
    let td: TrustDomain = domain.parse().unwrap();
    // Started a day ago so leaves can be issued "in the past" for the expiry cases.
    Authority::init_at(
        td,
        AuthorityOptions::default(),
        OffsetDateTime::now_utc() - ::time::Duration::days(1),
    )
    .unwrap()
}

/// Runs the handshake to completion or to the first error (either side's).
fn handshake(
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
) -> Result<Option<SpiffeId>, rustls::Error> {
    let mut c = ClientConnection::new(client, ServerName::try_from("backend.internal").unwrap())?;
    let mut s = ServerConnection::new(server)?;
    let mut buf = Vec::new();
    for _ in 0..10 {
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets()?;
        }
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets()?;
        }
        if !c.is_handshaking() && !s.is_handshaking() {
            // TLS 1.3: the server checks the client's certificate on the client's last flight.
            return Ok(s.peer_certificates().and_then(peer_spiffe_id));
        }
    }
    panic!("handshake did not finish");
}

struct Pki {
    ca: Authority,
    bundle: TrustBundle,
    server: Svid,
    client: Svid,
}

fn pki() -> Pki {
    let mut ca = ca("example.org");
    let server = ca
        .issue(&id("spiffe://example.org/ns/default/sa/server"), None)
        .unwrap();
    let client = ca
        .issue(&id("spiffe://example.org/ns/default/sa/client"), None)
        .unwrap();
    let bundle = ca.trust_bundle();
    Pki {
        ca,
        bundle,
        server,
        client,
    }
}

fn allow_default() -> Vec<IdPattern> {
    vec!["spiffe://example.org/ns/default/sa/*".parse().unwrap()]
}

fn expect_err(r: Result<Option<SpiffeId>, rustls::Error>, needle: &str) {
    let e = r.expect_err("handshake should fail");
    let text = format!("{e:?} {e}");
    assert!(text.contains(needle), "{needle:?} not in {text}");
}

#[test]
fn mutual_spiffe_handshake_and_peer_identity() {
    let p = pki();
    let server = server_config(&p.server, &p.bundle, allow_default(), &[b"h2"]).unwrap();
    let client = client_config(
        &p.client,
        &p.bundle,
        id("spiffe://example.org/ns/default/sa/server"),
        &[b"h2"],
    )
    .unwrap();
    let peer = handshake(client, server).unwrap();
    assert_eq!(peer, Some(id("spiffe://example.org/ns/default/sa/client")));
}

#[test]
fn server_with_another_spiffe_id_is_rejected() {
    let p = pki();
    let server = server_config(&p.server, &p.bundle, allow_default(), &[]).unwrap();
    let client = client_config(
        &p.client,
        &p.bundle,
        id("spiffe://example.org/ns/default/sa/billing"),
        &[],
    )
    .unwrap();
    expect_err(
        handshake(client, server),
        "expected spiffe://example.org/ns/default/sa/billing",
    );
}

#[test]
fn wrong_trust_domain_is_rejected_both_ways() {
    let p = pki();
    let mut other = ca("other.org");
    let foreign_server = other
        .issue(&id("spiffe://other.org/ns/default/sa/server"), None)
        .unwrap();
    let foreign_client = other
        .issue(&id("spiffe://other.org/ns/default/sa/client"), None)
        .unwrap();
    // Both roots trusted: the chain is fine, the identity is not.
    let mut both = p.bundle.clone();
    both.add_root_der(other.root_cert_der().to_vec()).unwrap();
    let server = server_config(&foreign_server, &both, allow_default(), &[]).unwrap();
    let client = client_config(
        &p.client,
        &both,
        id("spiffe://example.org/ns/default/sa/server"),
        &[],
    )
    .unwrap();
    expect_err(handshake(client, server), "server is spiffe://other.org");
    let server = server_config(&p.server, &both, allow_default(), &[]).unwrap();
    let client = client_config(
        &foreign_client,
        &both,
        id("spiffe://example.org/ns/default/sa/server"),
        &[],
    )
    .unwrap();
    expect_err(
        handshake(client, server),
        "client spiffe://other.org/ns/default/sa/client is not allowed",
    );
}

#[test]
fn unknown_ca_is_rejected_both_ways() {
    let p = pki();
    let mut other = ca("example.org"); // same trust domain, different (untrusted) CA
    let rogue = other
        .issue(&id("spiffe://example.org/ns/default/sa/server"), None)
        .unwrap();
    let server = server_config(&rogue, &other.trust_bundle(), allow_default(), &[]).unwrap();
    let client = client_config(
        &p.client,
        &p.bundle,
        id("spiffe://example.org/ns/default/sa/server"),
        &[],
    )
    .unwrap();
    expect_err(handshake(client, server), "UnknownIssuer");
    let rogue_client = other
        .issue(&id("spiffe://example.org/ns/default/sa/client"), None)
        .unwrap();
    let server = server_config(&p.server, &p.bundle, allow_default(), &[]).unwrap();
    let client = client_config(
        &rogue_client,
        &p.bundle,
        id("spiffe://example.org/ns/default/sa/server"),
        &[],
    )
    .unwrap();
    expect_err(handshake(client, server), "UnknownIssuer");
}

#[test]
fn expired_and_not_yet_valid_are_rejected() {
    let mut p = pki();
    let now = OffsetDateTime::now_utc();
    let sid = id("spiffe://example.org/ns/default/sa/server");
    let expired =
        p.ca.issue_at(
            &sid,
            Some(Duration::from_secs(3600)),
            now - ::time::Duration::hours(3),
        )
        .unwrap();
    let future =
        p.ca.issue_at(
            &sid,
            Some(Duration::from_secs(3600)),
            now + ::time::Duration::hours(2),
        )
        .unwrap();
    for (svid, needle) in [(&expired, "Expired"), (&future, "NotValidYet")] {
        let server = server_config(svid, &p.bundle, allow_default(), &[]).unwrap();
        let client = client_config(&p.client, &p.bundle, sid.clone(), &[]).unwrap();
        expect_err(handshake(client, server), needle);
    }
    let cid = id("spiffe://example.org/ns/default/sa/client");
    let expired_client =
        p.ca.issue_at(
            &cid,
            Some(Duration::from_secs(3600)),
            now - ::time::Duration::hours(3),
        )
        .unwrap();
    let server = server_config(&p.server, &p.bundle, allow_default(), &[]).unwrap();
    let client = client_config(&expired_client, &p.bundle, sid, &[]).unwrap();
    expect_err(handshake(client, server), "Expired");
}

#[test]
fn missing_client_certificate_is_rejected() {
    let p = pki();
    let server = server_config(&p.server, &p.bundle, allow_default(), &[]).unwrap();
    let provider = provider();
    let creds = Credentials::new();
    creds.install_bundle(&p.bundle).unwrap();
    let verifier = SpiffeServerVerifier::new(
        creds,
        id("spiffe://example.org/ns/default/sa/server"),
        provider.clone(),
    );
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    expect_err(
        handshake(Arc::new(client), server),
        "NoCertificatesPresented",
    );
}

/// A hand-made CA (rcgen) whose leaves lack the EKU for their role.
fn leaf_with_eku(spiffe: &str, eku: Vec<ExtendedKeyUsagePurpose>) -> (Svid, TrustBundle) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let issuer = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(spiffe.try_into().unwrap())];
    params.extended_key_usages = eku;
    let leaf = params.signed_by(&key, &issuer).unwrap();
    let svid = Svid::from_pem(&leaf.pem(), Some(&key.serialize_pem())).unwrap();
    (
        svid,
        TrustBundle::from_der([issuer.der().to_vec()]).unwrap(),
    )
}

#[test]
fn missing_eku_is_rejected() {
    let p = pki();
    // A server certificate good only for client auth.
    let (server_svid, server_bundle) = leaf_with_eku(
        "spiffe://example.org/ns/default/sa/server",
        vec![ExtendedKeyUsagePurpose::ClientAuth],
    );
    let server = server_config(&server_svid, &p.bundle, allow_default(), &[]).unwrap();
    let client = client_config(
        &p.client,
        &server_bundle,
        id("spiffe://example.org/ns/default/sa/server"),
        &[],
    )
    .unwrap();
    expect_err(handshake(client, server), "InvalidPurpose");
    // A client certificate good only for server auth.
    let (client_svid, client_bundle) = leaf_with_eku(
        "spiffe://example.org/ns/default/sa/client",
        vec![ExtendedKeyUsagePurpose::ServerAuth],
    );
    let server = server_config(&p.server, &client_bundle, allow_default(), &[]).unwrap();
    let client = client_config(
        &client_svid,
        &p.bundle,
        id("spiffe://example.org/ns/default/sa/server"),
        &[],
    )
    .unwrap();
    expect_err(handshake(client, server), "InvalidPurpose");
}

#[test]
fn two_root_bundle_accepts_leaves_from_both_roots() {
    let mut p = pki();
    let old_client = p.client.clone();
    // Zero delay: the new root issues at once, so the server's leaf comes from it.
    p.ca.rotate_root_with_delay(std::time::Duration::ZERO)
        .unwrap();
    let new_server =
        p.ca.issue(&id("spiffe://example.org/ns/default/sa/server"), None)
            .unwrap();
    let bundle = p.ca.trust_bundle();
    assert_eq!(bundle.len(), 2, "old root stays while its leaves live");
    let server = server_config(&new_server, &bundle, allow_default(), &[]).unwrap();
    let client = client_config(
        &old_client,
        &bundle,
        id("spiffe://example.org/ns/default/sa/server"),
        &[],
    )
    .unwrap();
    assert_eq!(
        handshake(client, server).unwrap(),
        Some(id("spiffe://example.org/ns/default/sa/client"))
    );
}

/// The admin API's flavour: a client certificate is optional, but one that is sent must
/// verify; the client accepts any server ID of the trust domain it asks for.
#[test]
fn optional_client_auth_and_trust_domain_server_ids() {
    let p = pki();
    let server_creds = Credentials::with(&p.server, &p.bundle).unwrap();
    let server = optional_client_server_config(server_creds, &[]).unwrap();
    let trust = Credentials::new();
    trust.install_bundle(&p.bundle).unwrap();
    let in_td = || ServerId::InTrustDomain("example.org".parse().unwrap());
    // No certificate: admitted (no peer ID).
    let anon = spiffe_client_config(trust.clone(), in_td(), None, &[]).unwrap();
    assert_eq!(handshake(anon, server.clone()).unwrap(), None);
    // An SVID: admitted whatever its ID, and the ID is known.
    let client_creds = Credentials::with(&p.client, &p.bundle).unwrap();
    let with_cert = spiffe_client_config(trust.clone(), in_td(), Some(client_creds), &[]).unwrap();
    assert_eq!(
        handshake(with_cert, server.clone()).unwrap(),
        Some(id("spiffe://example.org/ns/default/sa/client"))
    );
    // A certificate from another CA is still refused at the handshake.
    let mut other = ca("example.org");
    let stranger = other
        .issue(&id("spiffe://example.org/ns/default/sa/client"), None)
        .unwrap();
    let stranger = Credentials::with(&stranger, &p.bundle).unwrap();
    let bad = spiffe_client_config(trust.clone(), in_td(), Some(stranger), &[]).unwrap();
    expect_err(handshake(bad, server.clone()), "UnknownIssuer");
    // The client refuses a server of another trust domain, and accepts it with `Any`.
    let other_td = ServerId::InTrustDomain("other.org".parse().unwrap());
    let wrong = spiffe_client_config(trust.clone(), other_td, None, &[]).unwrap();
    expect_err(handshake(wrong, server.clone()), "trust domain other.org");
    let any = spiffe_client_config(trust, ServerId::Any, None, &[]).unwrap();
    assert_eq!(handshake(any, server).unwrap(), None);
}
