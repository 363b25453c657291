//! The CA as a gRPC service (`shoal.ca.v1.CaService`), backed by `<state_dir>/ca`: a CSR is
//! signed into a chain the trust bundle verifies, the policy (trust domain) and input checks
//! refuse with the right codes, and a root rotation keeps old leaves valid and, unless asked
//! to switch at once, keeps issuing from the old root until its activation time.

use shoal_admin::proto::ca::v1 as pb;
use shoal_admin::proto::ca::v1::ca_service_client::CaServiceClient;
use shoal_ca::{CaStore, OffsetDateTime, SpiffeId, TrustBundle, TrustDomain, generate_csr};
use tonic::Code;
use tonic::transport::Channel;

use crate::admin::config;
use crate::support::{self, upstream};

async fn rotate(
    ca: &mut CaServiceClient<Channel>,
    activation_delay: Option<&str>,
) -> Result<pb::RotateRootResponse, tonic::Status> {
    let request = pb::RotateRootRequest {
        activation_delay: activation_delay.map(str::to_owned),
    };
    Ok(ca.rotate_root(request).await?.into_inner())
}

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

    // Rotation with `activation_delay: 0s` (the behaviour before two-phase rotation): two
    // roots in the bundle, the old leaf still verifies, new leaves chain to the new root.
    let signer = ca.clone();
    let sign = move |csr: String| {
        let mut ca = signer.clone();
        async move {
            ca.sign_csr(pb::SignCsrRequest {
                csr_pem: csr,
                requested_ttl: None,
            })
            .await
            .unwrap()
            .into_inner()
            .chain_pem
        }
    };
    let rotated = rotate(&mut ca, Some("0s")).await.unwrap();
    assert!(rotated.active);
    assert!(!rotated.fingerprint.is_empty());
    let trust = TrustBundle::from_pem(&rotated.bundle_pem).unwrap();
    assert_eq!(trust.len(), 2);
    assert_eq!(trust.fingerprints()[1], rotated.fingerprint);
    trust.verify_pem_chain(&signed.chain_pem, now).unwrap();
    let fresh = sign(csr.clone()).await;
    let v = trust.verify_pem_chain(&fresh, now).unwrap();
    assert_eq!(v.root_fingerprint, rotated.fingerprint);

    // With the default delay (2 minutes) the new root is published at once but does not issue
    // yet: leaves still chain to the active root, which every peer already trusts.
    let pending = rotate(&mut ca, None).await.unwrap();
    assert!(!pending.active);
    // RFC 3339 UTC timestamps of one width compare as strings.
    let at = |secs: u64| shoal_ca::format_time(now + std::time::Duration::from_secs(secs));
    assert!(
        pending.activates_at > at(100) && pending.activates_at <= at(180),
        "{} not about 2 minutes after {}",
        pending.activates_at,
        at(0)
    );
    let trust = TrustBundle::from_pem(&pending.bundle_pem).unwrap();
    assert_eq!(trust.len(), 3);
    assert_eq!(trust.fingerprints()[2], pending.fingerprint);
    let during = sign(csr.clone()).await;
    let v = trust.verify_pem_chain(&during, now).unwrap();
    assert_eq!(
        v.root_fingerprint, rotated.fingerprint,
        "not yet the new root"
    );
    // One rotation at a time; a delay must be a duration.
    for (delay, code, says) in [
        ("0s", Code::FailedPrecondition, "already pending"),
        ("soon", Code::InvalidArgument, "activation_delay"),
    ] {
        let err = rotate(&mut ca, Some(delay)).await.unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
        assert!(err.message().contains(says), "{}", err.message());
    }

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
    let out = std::process::Command::new(bin)
        .args(["ctl", "--addr", &addr, "ca", "rotate-root"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already pending"),
        "{out:?}"
    );
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
        3
    );

    // Persisted: the store on disk has the rotated bundle and the pending root.
    let on_disk = CaStore::open(dir.path().join("ca")).unwrap();
    assert_eq!(on_disk.trust_bundle().len(), 3);
    let roots = on_disk.authority().roots();
    assert!(roots[1].active);
    assert_eq!(roots[2].fingerprint, pending.fingerprint);
    assert!(roots[2].activates_at.is_some());
    app.shutdown();
}

/// A proxy with `identity:` + `ca: { remote }` obtains its SVID from another shoal's CA
/// service, is ready only once it holds one, and renews it (new serial) before it expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_ca_proxy_obtains_and_renews_its_svid() {
    use std::time::{Duration, Instant};

    let a = upstream::http_echo("a").await;
    let dir = tempfile::tempdir().unwrap();
    let td: TrustDomain = "example.org".parse().unwrap();
    CaStore::load_or_init(dir.path().join("ca"), &td).unwrap();
    let ca_app = support::start(&config(
        a.addr,
        a.addr,
        &format!("state_dir: \"{}\"", dir.path().display()),
    ));
    let ca_addr = ca_app.admin_addr().unwrap();

    // A CA that is not there: not ready, no SVID, keeps retrying.
    let nowhere = support::closed_port();
    let lonely = support::start(&format!(
        "admin: {{ metrics: \"127.0.0.1:0\" }}\n\
         identity: {{ id: \"spiffe://example.org/ns/default/sa/edge\" }}\n\
         ca: {{ remote: \"{nowhere}\" }}\n"
    ));
    let ready = |addr| async move {
        let out = support::raw_exchange(
            addr,
            b"GET /readyz HTTP/1.1\r\nhost: m\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200")
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(lonely.svid().is_none());
    assert!(!ready(lonely.metrics_addr().unwrap()).await);
    lonely.shutdown();

    let edge = support::start(&format!(
        "admin: {{ metrics: \"127.0.0.1:0\" }}\n\
         identity: {{ id: \"spiffe://example.org/ns/default/sa/edge\", ttl: 2s }}\n\
         ca: {{ remote: \"{ca_addr}\" }}\n"
    ));
    let start = Instant::now();
    let first = loop {
        if let Some(s) = edge.svid() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no SVID obtained"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        first.spiffe_id().to_string(),
        "spiffe://example.org/ns/default/sa/edge"
    );
    assert!(first.key_pem().is_some(), "the key stays with the proxy");
    let bundle = CaStore::open(dir.path().join("ca")).unwrap().trust_bundle();
    bundle
        .verify_svid(&first, OffsetDateTime::now_utc())
        .unwrap();
    assert!(ready(edge.metrics_addr().unwrap()).await);
    // Renewed: a new certificate replaces it.
    let renewed = loop {
        let now = edge.svid().unwrap();
        if now.serial() != first.serial() {
            break now;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "never renewed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    bundle
        .verify_svid(&renewed, OffsetDateTime::now_utc())
        .unwrap();
    edge.shutdown();
    ca_app.shutdown();
}
