//! Who may call the admin API when it is not on loopback: mTLS with the proxy's SVID, callers
//! authorized per call by their SPIFFE ID (`admin.allow`), join tokens for a first SVID, and
//! the CA's per-caller policy (an SVID renews only itself; a token only within its patterns).
//! Real sockets, real TLS: the admin API binds 0.0.0.0 and is reached at 127.0.0.1.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use shoal::App;
use shoal_admin::auth::client::{ALPN, tls_channel, with_bearer};
use shoal_admin::proto::admin::v1::admin_service_client::AdminServiceClient;
use shoal_admin::proto::ca::v1 as ca_pb;
use shoal_admin::proto::ca::v1::ca_service_client::CaServiceClient;
use shoal_ca::{CaStore, SpiffeId, Svid, TrustBundle, TrustDomain, generate_csr};
use shoal_dataplane::tls::{Credentials, ServerId, spiffe_client_config};
use tonic::Code;
use tonic::transport::Channel;

use crate::admin::{apply, cluster_op};
use crate::mesh::wait_svid;
use crate::process::Proc;
use crate::support;

const TOKEN: &str = "Xk29vLq7RmW3pZ8tN4bY6cH1jD5fG0sA";
const WRONG: &str = "Xk29vLq7RmW3pZ8tN4bY6cH1jD5fG0sB";
const OPS: &str = "spiffe://example.org/ops/alice";
const INTRUDER: &str = "spiffe://example.org/ns/db/sa/intruder";

/// A CA in `<dir>/state/ca`, client SVIDs it issued, its bundle and a join token file
/// (`TOKEN` may request `ns/web/sa/*`).
struct Pki {
    dir: tempfile::TempDir,
    bundle: TrustBundle,
    ops: Svid,
    intruder: Svid,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let td: TrustDomain = "example.org".parse().unwrap();
        let mut store = CaStore::load_or_init(dir.path().join("state/ca"), &td).unwrap();
        let ops = store.issue(&OPS.parse().unwrap(), None).unwrap();
        let intruder = store.issue(&INTRUDER.parse().unwrap(), None).unwrap();
        let bundle = store.trust_bundle();
        std::fs::write(dir.path().join("bundle.pem"), bundle.to_pem()).unwrap();
        std::fs::write(
            dir.path().join("tokens"),
            format!("# bootstrap tokens\n{TOKEN} spiffe://example.org/ns/web/sa/*  # web\n"),
        )
        .unwrap();
        for (name, svid) in [("ops", &ops), ("intruder", &intruder)] {
            std::fs::write(dir.path().join(format!("{name}.pem")), svid.chain_pem()).unwrap();
            std::fs::write(
                dir.path().join(format!("{name}.key")),
                svid.key_pem().unwrap(),
            )
            .unwrap();
        }
        Pki {
            dir,
            bundle,
            ops,
            intruder,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA server's config: local CA, admin API on 0.0.0.0:`port`.
    fn server_yaml(&self, port: u16, tokens: bool) -> String {
        let tokens = if tokens {
            format!(", join_tokens: \"{}\"", self.path("tokens").display())
        } else {
            String::new()
        };
        format!(
            r#"
state_dir: "{state}"
identity: {{ id: "spiffe://example.org/ns/default/sa/ca-server" }}
admin: {{ grpc: "0.0.0.0:{port}", allow: ["spiffe://example.org/ops/*"]{tokens} }}
"#,
            state = self.path("state").display()
        )
    }
}

/// The admin API of an app bound to 0.0.0.0, reached on loopback.
fn local(app: &App) -> SocketAddr {
    let addr = app.admin_addr().unwrap();
    assert!(addr.ip().is_unspecified(), "{addr}");
    SocketAddr::from(([127, 0, 0, 1], addr.port()))
}

/// A TLS channel verifying the server against `bundle`, presenting `svid` if given.
async fn tls(
    addr: SocketAddr,
    bundle: &TrustBundle,
    svid: Option<&Svid>,
) -> Result<Channel, tonic::transport::Error> {
    let trust = Credentials::new();
    trust.install_bundle(bundle).unwrap();
    let present = svid.map(|s| Credentials::with(s, bundle).unwrap());
    let expected = ServerId::InTrustDomain("example.org".parse().unwrap());
    let config = spiffe_client_config(trust, expected, present, ALPN).unwrap();
    tls_channel(addr, config, Duration::from_secs(3)).await
}

fn csr(id: &str) -> ca_pb::SignCsrRequest {
    let id: SpiffeId = id.parse().unwrap();
    ca_pb::SignCsrRequest {
        csr_pem: generate_csr(&id).unwrap().1,
        requested_ttl: None,
    }
}

/// `SignCsr` for `id`, with `token` as bearer if given: the signed ID, or the error code.
async fn sign(ch: &Channel, id: &str, token: Option<&str>) -> Result<String, Code> {
    let mut req = tonic::Request::new(csr(id));
    if let Some(t) = token {
        with_bearer(&mut req, t).unwrap();
    }
    CaServiceClient::new(ch.clone())
        .sign_csr(req)
        .await
        .map(|r| r.into_inner().spiffe_id)
        .map_err(|s| s.code())
}

async fn get_config(ch: &Channel) -> Result<u64, Code> {
    AdminServiceClient::new(ch.clone())
        .get_config(shoal_admin::proto::admin::v1::GetConfigRequest {})
        .await
        .map(|r| r.into_inner().version)
        .map_err(|s| s.code())
}

fn ctl(addr: SocketAddr, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["ctl", "--addr", &addr.to_string()])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_admin_api_needs_an_allowed_client_svid() {
    let pki = Pki::new();
    let app = support::start(&pki.server_yaml(0, true));
    wait_svid(&app).await;
    let addr = local(&app);

    // Plaintext gets nothing: the listener speaks TLS only.
    let plain = match AdminServiceClient::connect(format!("http://{addr}")).await {
        Ok(mut c) => c
            .get_config(shoal_admin::proto::admin::v1::GetConfigRequest {})
            .await
            .map(|_| ())
            .map_err(|s| s.code()),
        Err(_) => Err(Code::Unavailable),
    };
    assert!(plain.is_err(), "plaintext must not reach the API");

    // TLS without a certificate: the bundle is public, nothing else is.
    let anon = tls(addr, &pki.bundle, None).await.unwrap();
    assert_eq!(get_config(&anon).await, Err(Code::Unauthenticated));
    let bundle = CaServiceClient::new(anon.clone())
        .get_trust_bundle(ca_pb::GetTrustBundleRequest {})
        .await
        .unwrap()
        .into_inner()
        .bundle_pem;
    assert_eq!(
        TrustBundle::from_pem(&bundle).unwrap().fingerprints(),
        pki.bundle.fingerprints()
    );
    let rotate = CaServiceClient::new(anon.clone())
        .rotate_root(ca_pb::RotateRootRequest::default())
        .await
        .unwrap_err();
    assert_eq!(rotate.code(), Code::Unauthenticated);

    // A valid SVID that is not in admin.allow: known, but not allowed.
    let intruder = tls(addr, &pki.bundle, Some(&pki.intruder)).await.unwrap();
    assert_eq!(get_config(&intruder).await, Err(Code::PermissionDenied));
    let err = AdminServiceClient::new(intruder.clone())
        .apply(apply(vec![cluster_op("c", "127.0.0.1:1")], None, false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains(INTRUDER), "{}", err.message());
    let err = CaServiceClient::new(intruder)
        .rotate_root(ca_pb::RotateRootRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // An allowed SVID: reads and transactions.
    let ops = tls(addr, &pki.bundle, Some(&pki.ops)).await.unwrap();
    let before = get_config(&ops).await.unwrap();
    let r = AdminServiceClient::new(ops.clone())
        .apply(apply(
            vec![cluster_op("c", "127.0.0.1:1")],
            Some(before),
            false,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.version, before + 1);
    assert_eq!(get_config(&ops).await, Ok(before + 1));

    // A certificate from another CA (same trust domain name) fails the handshake.
    let mut foreign = shoal_ca::Authority::init(
        "example.org".parse().unwrap(),
        shoal_ca::AuthorityOptions::default(),
    )
    .unwrap();
    let forged = foreign.issue(&OPS.parse().unwrap(), None).unwrap();
    let refused = match tls(addr, &pki.bundle, Some(&forged)).await {
        Ok(ch) => get_config(&ch).await,
        Err(_) => Err(Code::Unavailable),
    };
    assert!(
        !matches!(refused, Ok(_) | Err(Code::PermissionDenied)),
        "{refused:?}"
    );
    // A client checking the server against another CA's bundle refuses it too.
    if let Ok(ch) = tls(addr, &foreign.trust_bundle(), None).await {
        let r = CaServiceClient::new(ch)
            .get_trust_bundle(ca_pb::GetTrustBundleRequest {})
            .await;
        assert!(r.is_err(), "a server outside the bundle was trusted");
    }

    // `shoal ctl` with an allowed SVID works; with another it is rejected; without TLS it
    // does not get through.
    let (bundle, cert, key) = (
        pki.path("bundle.pem"),
        pki.path("ops.pem"),
        pki.path("ops.key"),
    );
    let tls_args = |cert: &Path, key: &Path| {
        vec![
            "--ca-bundle".to_string(),
            bundle.display().to_string(),
            "--cert".into(),
            cert.display().to_string(),
            "--key".into(),
            key.display().to_string(),
            "get".into(),
        ]
    };
    let args = tls_args(&cert, &key);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = ctl(addr, &args);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("# version {}", before + 1)), "{out}");
    assert!(out.contains("name: c"), "{out}");
    let args = tls_args(&pki.path("intruder.pem"), &pki.path("intruder.key"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = ctl(addr, &args);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not in admin.allow"), "{out}");
    let (code, out) = ctl(addr, &["get"]);
    assert_ne!(code, 0, "{out}");
    app.shutdown();
}

/// The CA's per-caller policy, against the `shoal` binary (whose log must name every refusal
/// and never the token).
#[test]
fn join_tokens_and_svids_only_get_their_own_ids_signed() {
    let pki = Pki::new();
    let port = support::closed_port().port();
    let config = pki.path("server.yaml");
    std::fs::write(&config, pki.server_yaml(port, true)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal"));
    cmd.args(["run", "--no-pin", "--workers", "1", "--config"])
        .arg(&config);
    let mut server = Proc::spawn(cmd);
    server.wait_log("identity: installed a new SVID");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let anon = tls(addr, &pki.bundle, None).await.unwrap();
        // A token within its scope: signed; outside it: denied; a wrong token or none:
        // unauthenticated. A token opens nothing but SignCsr.
        let web = "spiffe://example.org/ns/web/sa/edge";
        assert_eq!(sign(&anon, web, Some(TOKEN)).await.as_deref(), Ok(web));
        assert_eq!(
            sign(&anon, "spiffe://example.org/ns/db/sa/edge", Some(TOKEN)).await,
            Err(Code::PermissionDenied)
        );
        assert_eq!(
            sign(&anon, OPS, Some(TOKEN)).await,
            Err(Code::PermissionDenied)
        );
        assert_eq!(
            sign(&anon, web, Some(WRONG)).await,
            Err(Code::Unauthenticated)
        );
        assert_eq!(sign(&anon, web, None).await, Err(Code::Unauthenticated));
        let mut req = tonic::Request::new(shoal_admin::proto::admin::v1::GetConfigRequest {});
        with_bearer(&mut req, TOKEN).unwrap();
        let err = AdminServiceClient::new(anon.clone())
            .get_config(req)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);

        // An SVID renews itself only, token or not.
        let intruder = tls(addr, &pki.bundle, Some(&pki.intruder)).await.unwrap();
        assert_eq!(
            sign(&intruder, INTRUDER, None).await.as_deref(),
            Ok(INTRUDER)
        );
        assert_eq!(
            sign(&intruder, OPS, None).await,
            Err(Code::PermissionDenied)
        );
        assert_eq!(
            sign(&intruder, web, Some(TOKEN)).await,
            Err(Code::PermissionDenied)
        );
        // An allowed caller gets any ID of the trust domain, not another domain's.
        let ops = tls(addr, &pki.bundle, Some(&pki.ops)).await.unwrap();
        assert_eq!(sign(&ops, INTRUDER, None).await.as_deref(), Ok(INTRUDER));
        assert_eq!(
            sign(&ops, "spiffe://other.org/x", None).await,
            Err(Code::PermissionDenied)
        );
    });
    // Logged: each refusal with the method and the caller; never a token.
    let start = Instant::now();
    while server.log().matches("refused a call").count() < 3
        && start.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    server.signal("TERM");
    server.wait_exit(Duration::from_secs(10));
    let log = server.log();
    assert!(
        !log.contains(TOKEN) && !log.contains(WRONG),
        "the log shows a token:\n{log}"
    );
    assert!(
        log.contains("refused a call") && log.contains("/shoal.ca.v1.CaService/SignCsr"),
        "{log}"
    );
    assert!(
        log.contains("/shoal.admin.v1.AdminService/GetConfig"),
        "{log}"
    );
    assert!(log.contains("join token (line 2)"), "{log}");
    assert!(log.contains(INTRUDER), "{log}");
}

/// A proxy whose CA is reached over TLS gets its first SVID with a join token, then renews
/// with that SVID: after the CA restarts without any join token, renewals still succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_ca_proxy_bootstraps_with_a_token_and_renews_over_mtls() {
    let pki = Pki::new();
    let port = support::closed_port().port();
    let ca = support::start(&pki.server_yaml(port, true));
    wait_svid(&ca).await;
    let addr = local(&ca);
    let token_file = pki.path("edge.token");
    std::fs::write(&token_file, format!("# edge-1\n{TOKEN}\n")).unwrap();
    let edge_yaml = |token: &Path| {
        format!(
            "admin: {{ metrics: \"127.0.0.1:0\" }}\n\
             identity: {{ id: \"spiffe://example.org/ns/web/sa/edge\", ttl: 4s }}\n\
             ca: {{ remote: \"{addr}\", bundle_refresh: 300ms, trust_bundle: \"{}\", token_file: \"{}\" }}\n",
            pki.path("bundle.pem").display(),
            token.display()
        )
    };
    let edge = support::start(&edge_yaml(&token_file));
    wait_svid(&edge).await;
    let first = edge.svid().unwrap();
    assert_eq!(
        first.spiffe_id().to_string(),
        "spiffe://example.org/ns/web/sa/edge"
    );

    // A proxy with a wrong token, or a token that does not cover its ID, gets nothing.
    let wrong_file = pki.path("wrong.token");
    std::fs::write(&wrong_file, WRONG).unwrap();
    let wrong = support::start(&edge_yaml(&wrong_file));
    let outside =
        support::start(&edge_yaml(&token_file).replace("ns/web/sa/edge", "ns/db/sa/edge"));

    // Give those two time to try (and fail) against the CA that knows the token.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The CA restarts on the same address without join tokens: the edge renews with its SVID
    // (any new certificate from now on comes from a CA that accepts no token).
    ca.shutdown();
    let ca = support::start(&pki.server_yaml(port, false));
    let at_restart = edge.svid().unwrap();
    let start = Instant::now();
    let after_restart = loop {
        let now = edge.svid().unwrap();
        if now.serial() != at_restart.serial() {
            break now;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no renewal after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    pki.bundle
        .verify_svid(&after_restart, shoal_ca::OffsetDateTime::now_utc())
        .unwrap();
    assert!(wrong.svid().is_none(), "a wrong token got an SVID");
    assert!(
        outside.svid().is_none(),
        "a token got an ID outside its patterns"
    );
    for app in [edge, wrong, outside, ca] {
        app.shutdown();
    }
}

/// A weak token fails the start, naming the file's line and not the token.
#[test]
fn a_weak_join_token_fails_the_start() {
    let pki = Pki::new();
    std::fs::write(
        pki.path("tokens"),
        format!("{TOKEN} spiffe://example.org/a\nshort-secret spiffe://example.org/b\n"),
    )
    .unwrap();
    let err = shoal::App::start(shoal::AppOptions {
        spec: support::spec(&pki.server_yaml(0, true)),
        config_path: None,
        pin: false,
    })
    .err()
    .expect("refused");
    let text = format!("{err:#}");
    assert!(
        text.contains("admin.join_tokens") && text.contains("line 2"),
        "{text}"
    );
    assert!(
        text.contains("too short") && !text.contains("short-secret"),
        "{text}"
    );
    // `shoal validate` reads the file too.
    std::fs::write(pki.path("server.yaml"), pki.server_yaml(0, true)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("validate")
        .arg(pki.path("server.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
}
