//! The CA as a gRPC service (`shoal.ca.v1.CaService`), backed by `<state_dir>/ca`: a CSR is
//! signed into a chain the trust bundle verifies, the policy (trust domain) and input checks
//! refuse with the right codes, and a root rotation keeps old leaves valid.

use shoal_admin::proto::ca::v1 as pb;
use shoal_admin::proto::ca::v1::ca_service_client::CaServiceClient;
use shoal_ca::{CaStore, OffsetDateTime, SpiffeId, TrustBundle, TrustDomain, generate_csr};
use tonic::Code;

use crate::admin::config;
use crate::support::{self, upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_signs_csrs_and_rotates_over_grpc() {
    let a = upstream::http_echo("a").await;
    let dir = tempfile::tempdir().unwrap();
    let td: TrustDomain = "example.org".parse().unwrap();
    CaStore::load_or_init(dir.path().join("ca"), &td).unwrap();
    let yaml = config(
        a.addr,
        a.addr,
        &format!("state_dir: \"{}\"", dir.path().display()),
    );
    let app = support::start(&yaml);
    let mut ca = CaServiceClient::connect(format!("http://{}", app.admin_addr().unwrap()))
        .await
        .unwrap();

    let id: SpiffeId = "spiffe://example.org/ns/default/sa/web".parse().unwrap();
    let (_key, csr) = generate_csr(&id).unwrap();
    let signed = ca
        .sign_csr(pb::SignCsrRequest {
            csr_pem: csr.clone(),
            requested_ttl: Some("30m".into()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(signed.spiffe_id, id.to_string());
    let bundle = ca
        .get_trust_bundle(pb::GetTrustBundleRequest {})
        .await
        .unwrap()
        .into_inner()
        .bundle_pem;
    let now = OffsetDateTime::now_utc();
    let trust = TrustBundle::from_pem(&bundle).unwrap();
    assert_eq!(trust.len(), 1);
    trust.verify_pem_chain(&signed.chain_pem, now).unwrap();
    // The requested TTL was honoured (30 minutes, not the 1h default).
    let leaf = shoal_ca::Svid::from_pem(&signed.chain_pem, None).unwrap();
    let ttl = (leaf.not_after() - now).whole_seconds();
    assert!((28 * 60..=31 * 60).contains(&ttl), "{ttl}s");

    // Refusals: another trust domain, garbage, a bad TTL.
    let foreign: SpiffeId = "spiffe://other.org/ns/default/sa/web".parse().unwrap();
    let (_, foreign_csr) = generate_csr(&foreign).unwrap();
    let err = ca
        .sign_csr(pb::SignCsrRequest {
            csr_pem: foreign_csr,
            requested_ttl: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = ca
        .sign_csr(pb::SignCsrRequest {
            csr_pem:
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
                    .into(),
            requested_ttl: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = ca
        .sign_csr(pb::SignCsrRequest {
            csr_pem: csr.clone(),
            requested_ttl: Some("a while".into()),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("requested_ttl"), "{}", err.message());

    // Rotation: two roots in the bundle, the old leaf still verifies, new leaves too.
    let rotated = ca
        .rotate_root(pb::RotateRootRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!rotated.fingerprint.is_empty());
    let trust = TrustBundle::from_pem(&rotated.bundle_pem).unwrap();
    assert_eq!(trust.len(), 2);
    trust.verify_pem_chain(&signed.chain_pem, now).unwrap();
    let fresh = ca
        .sign_csr(pb::SignCsrRequest {
            csr_pem: csr,
            requested_ttl: None,
        })
        .await
        .unwrap()
        .into_inner();
    trust.verify_pem_chain(&fresh.chain_pem, now).unwrap();
    // `shoal ctl ca ...` does the same from the command line.
    let bin = env!("CARGO_BIN_EXE_shoal");
    let addr = app.admin_addr().unwrap().to_string();
    let (cert, key) = (dir.path().join("web.pem"), dir.path().join("web.key"));
    let out = std::process::Command::new(bin)
        .args([
            "ctl",
            "--addr",
            &addr,
            "ca",
            "sign",
            "--id",
            &id.to_string(),
            "--ttl",
            "10m",
        ])
        .arg("--out-cert")
        .arg(&cert)
        .arg("--out-key")
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let chain = std::fs::read_to_string(&cert).unwrap();
    trust.verify_pem_chain(&chain, now).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let out = std::process::Command::new(bin)
        .args([
            "ctl",
            "--addr",
            &addr,
            "ca",
            "sign",
            "--id",
            &foreign.to_string(),
        ])
        .args(["--out-cert", "/dev/null", "--out-key", "/dev/null"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = std::process::Command::new(bin)
        .args(["ctl", "--addr", &addr, "ca", "bundle"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        TrustBundle::from_pem(&String::from_utf8_lossy(&out.stdout))
            .unwrap()
            .len(),
        2
    );

    // Persisted: the store on disk has the rotated bundle.
    let on_disk = CaStore::open(dir.path().join("ca")).unwrap();
    assert_eq!(on_disk.trust_bundle().len(), 2);
    app.shutdown();
}
