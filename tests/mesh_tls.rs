//! TLS listeners checked with stock tools: curl and `openssl s_client` reach an mTLS listener with
//! a certificate from `shoal ca issue` and are refused without one or with a foreign CA's; an
//! edge (`mode: server`) listener picks its certificate by SNI and speaks h2 and HTTP/1.1 by ALPN.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use std::io::Write as _;

use crate::ca_cli::shoal;
use crate::mesh::{TD, wait_svid};
use crate::support::{self, upstream};

/// Runs a tool off the async runtime; (success, stdout + stderr).
async fn run(dir: &Path, tool: &str, args: Vec<String>, stdin: &'static [u8]) -> (bool, String) {
    let dir = dir.to_path_buf();
    let tool = tool.to_string();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(&tool)
            .current_dir(&dir)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{tool}: {e} (installed by .ci/run)"));
        let _ = child.stdin.take().unwrap().write_all(stdin);
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    })
    .await
    .unwrap()
}

fn issue(dir: &Path, state: &str, id: &str, name: &str) {
    shoal(
        dir,
        &[
            "ca",
            "issue",
            "--state-dir",
            state,
            "--id",
            id,
            "--ttl",
            "1h",
            "--out-cert",
            &format!("{name}.pem"),
            "--out-key",
            &format!("{name}.key"),
        ],
    );
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_openssl_reach_an_mtls_listener_only_with_an_issued_certificate() {
    let echo = upstream::http_echo("backend").await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for state in ["st", "foreign"] {
        shoal(
            dir,
            &[
                "ca",
                "init",
                "--trust-domain",
                "example.org",
                "--state-dir",
                state,
            ],
        );
    }
    issue(dir, "st", &format!("{TD}/curl"), "curl");
    // Same trust domain and ID, but another CA: its root is not in the bundle.
    issue(dir, "foreign", &format!("{TD}/curl"), "forged");
    std::fs::write(
        dir.join("bundle.pem"),
        shoal(dir, &["ca", "bundle", "--state-dir", "st"]),
    )
    .unwrap();

    let app = support::start(&format!(
        r#"
state_dir: "{st}"
identity: {{ id: "{TD}/server" }}
listeners:
  - name: mtls
    address: 127.0.0.1:0
    protocol: auto
    routes: r
    tls: {{ mode: mutual, allow: ["{TD}/curl"] }}
routes:
  r:
    - domains: ["*"]
      routes: [ {{ match: {{ prefix: / }}, cluster: echo }} ]
clusters:
  - {{ name: echo, endpoints: ["{echo}"] }}
"#,
        st = dir.join("st").display(),
        echo = echo.addr
    ));
    wait_svid(&app).await;
    let addr = app.listener_addr("mtls").unwrap();
    let url = format!("https://{addr}/hello");

    // The server's SVID has a URI SAN only (no DNS name), so curl skips name checks (-k); the
    // chain is verified by openssl below.
    let (ok, out) = run(
        dir,
        "curl",
        s(&[
            "-sS", "-k", "-i", "--cert", "curl.pem", "--key", "curl.key", &url,
        ]),
        b"",
    )
    .await;
    assert!(ok, "{out}");
    assert!(
        out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/2 200"),
        "{out}"
    );
    assert!(
        out.contains(&format!("By={TD}/server;URI={TD}/curl")),
        "the upstream sees the peer identity: {out}"
    );

    let (ok, out) = run(dir, "curl", s(&["-sS", "-k", &url]), b"").await;
    assert!(!ok, "no client certificate must be refused: {out}");
    let (ok, out) = run(
        dir,
        "curl",
        s(&[
            "-sS",
            "-k",
            "--cert",
            "forged.pem",
            "--key",
            "forged.key",
            &url,
        ]),
        b"",
    )
    .await;
    assert!(!ok, "a foreign CA's certificate must be refused: {out}");

    // openssl verifies the server's chain against the bundle and speaks HTTP/1.1 over it.
    let (_, out) = run(
        dir,
        "openssl",
        s(&[
            "s_client",
            "-connect",
            &addr.to_string(),
            "-cert",
            "curl.pem",
            // The intermediate too (-cert sends only the leaf).
            "-cert_chain",
            "curl.pem",
            "-key",
            "curl.key",
            "-CAfile",
            "bundle.pem",
            "-verify_return_error",
            "-alpn",
            "http/1.1",
            "-quiet",
        ]),
        b"GET /via-openssl HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.contains("HTTP/1.1 200"), "{out}");
    assert!(out.contains("x-echo-path: /via-openssl"), "{out}");
    assert_eq!(
        app.svid().unwrap().spiffe_id().to_string(),
        format!("{TD}/server")
    );
}

fn self_signed(dir: &Path, name: &str, dns: &[&str]) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_tls_chooses_the_certificate_by_sni_and_the_protocol_by_alpn() {
    let echo = upstream::http_echo("backend").await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    self_signed(dir, "a", &["a.example.test"]);
    self_signed(dir, "b", &["*.b.example.test"]);
    let yaml = |certs: &str| {
        format!(
            r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    protocol: auto
    routes: r
    tls: {{ mode: server, certificates: [{certs}] }}
routes:
  r:
    - domains: ["*"]
      routes: [ {{ match: {{ prefix: / }}, cluster: echo }} ]
clusters:
  - {{ name: echo, endpoints: ["{echo}"] }}
"#,
            echo = echo.addr
        )
    };
    let d = dir.display();
    let app = support::start(&yaml(&format!(
        "{{ cert: {d}/a.pem, key: {d}/a.key }}, {{ cert: {d}/b.pem, key: {d}/b.key }}"
    )));
    let port = app.listener_addr("edge").unwrap().port();
    for (host, ca, http2) in [
        ("a.example.test", "a.pem", true),
        ("x.b.example.test", "b.pem", false),
    ] {
        let resolve = format!("{host}:{port}:127.0.0.1");
        let url = format!("https://{host}:{port}/sni");
        let mut args = s(&[
            "-sS",
            "--resolve",
            &resolve,
            "--cacert",
            ca,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            &url,
        ]);
        args.insert(0, if http2 { "--http2" } else { "--http1.1" }.into());
        let (ok, out) = run(dir, "curl", args, b"").await;
        assert!(ok, "{host}: {out}");
        let want = if http2 { "200 2" } else { "200 1.1" };
        assert_eq!(out.trim(), want, "{host}");
    }
    // The other certificate does not verify for a name: SNI really chose.
    let resolve = format!("a.example.test:{port}:127.0.0.1");
    let (ok, out) = run(
        dir,
        "curl",
        s(&[
            "-sS",
            "--resolve",
            &resolve,
            "--cacert",
            "b.pem",
            &format!("https://a.example.test:{port}/"),
        ]),
        b"",
    )
    .await;
    assert!(!ok, "{out}");

    // A missing key file is a rejection naming the field; the running config stays.
    let bad = support::spec(&yaml(&format!(
        "{{ cert: {d}/a.pem, key: {d}/missing.key }}"
    )));
    let err = app.store().apply(bad).unwrap_err().to_string();
    assert!(err.contains("listeners[0].tls.certificates[0]"), "{err}");
    let (ok, _) = run(
        dir,
        "curl",
        s(&[
            "-sS",
            "--resolve",
            &resolve,
            "--cacert",
            "a.pem",
            &format!("https://a.example.test:{port}/"),
        ]),
        b"",
    )
    .await;
    assert!(ok);
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// An existing PKI's CA (rcgen) and a client certificate it signed (EKU clientAuth).
fn client_pki(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::default();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let issuer = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    std::fs::write(dir.join("clients-ca.pem"), issuer.pem()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("client.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("client.key"), key.serialize_pem()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_tls_with_client_ca_requires_a_client_certificate_of_that_ca() {
    let echo = upstream::http_echo("backend").await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    self_signed(dir, "a", &["a.example.test"]);
    client_pki(dir);
    let d = dir.display();
    let app = support::start(&format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes: r
    tls: {{ mode: server, certificates: [ {{ cert: {d}/a.pem, key: {d}/a.key }} ], client_ca: {d}/clients-ca.pem }}
routes:
  r:
    - domains: ["*"]
      routes: [ {{ match: {{ prefix: / }}, cluster: echo }} ]
clusters:
  - {{ name: echo, endpoints: ["{echo}"] }}
"#,
        echo = echo.addr
    ));
    let port = app.listener_addr("edge").unwrap().port();
    let resolve = format!("a.example.test:{port}:127.0.0.1");
    let url = format!("https://a.example.test:{port}/");
    let curl = |extra: &[&str]| {
        let mut args = s(&["-sS", "--resolve", &resolve, "--cacert", "a.pem"]);
        args.extend(s(extra));
        args.push(url.clone());
        args
    };
    let (ok, out) = run(
        dir,
        "curl",
        curl(&["--cert", "client.pem", "--key", "client.key"]),
        b"",
    )
    .await;
    assert!(ok, "{out}");
    let (ok, out) = run(dir, "curl", curl(&[]), b"").await;
    assert!(!ok, "no client certificate must be refused: {out}");
    // A certificate of another CA (the server's self-signed one has no clientAuth either way).
    let (ok, out) = run(
        dir,
        "curl",
        curl(&["--cert", "a.pem", "--key", "a.key"]),
        b"",
    )
    .await;
    assert!(!ok, "a certificate of another CA must be refused: {out}");
    // A missing CA file is a rejection naming the field.
    let mut bad = app.store().load().spec.clone();
    bad.listeners[0].tls.as_mut().unwrap().client_ca = Some(format!("{d}/missing.pem"));
    let err = app.store().apply(bad).unwrap_err().to_string();
    assert!(err.contains("listeners[0].tls.client_ca"), "{err}");
}
