//! `shoal ca` as an operator uses it, checked by a stock tool: OpenSSL must read the SVID, see
//! its SPIFFE URI SAN and verify its chain against the trust bundle.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_shoal");

pub fn shoal(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "shoal {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed by .ci/run");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn issued_svid_is_read_and_verified_by_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    shoal(
        dir,
        &[
            "ca",
            "init",
            "--trust-domain",
            "example.org",
            "--state-dir",
            "st",
        ],
    );
    shoal(
        dir,
        &[
            "ca",
            "issue",
            "--state-dir",
            "st",
            "--id",
            "spiffe://example.org/ns/default/sa/web",
            "--ttl",
            "1h",
            "--out-cert",
            "web.pem",
            "--out-key",
            "web.key",
        ],
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join("web.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "private key must be 0600");

    let inspect = shoal(dir, &["ca", "inspect", "web.pem"]);
    assert!(
        inspect.contains("spiffe://example.org/ns/default/sa/web"),
        "{inspect}"
    );

    let (ok, text) = openssl(dir, &["x509", "-in", "web.pem", "-noout", "-text"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("URI:spiffe://example.org/ns/default/sa/web"),
        "{text}"
    );
    assert!(
        text.contains("TLS Web Server Authentication")
            && text.contains("TLS Web Client Authentication"),
        "{text}"
    );
    assert!(
        !text.contains("DNS:"),
        "an SVID carries no DNS name: {text}"
    );

    // The chain file is leaf + intermediate; the bundle holds the root(s).
    let bundle = shoal(dir, &["ca", "bundle", "--state-dir", "st"]);
    std::fs::write(dir.join("bundle.pem"), &bundle).unwrap();
    let (ok, text) = openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            "bundle.pem",
            "-untrusted",
            "web.pem",
            "web.pem",
        ],
    );
    assert!(ok && text.contains("OK"), "{text}");

    // After a root rotation the old SVID still verifies against the published bundle.
    shoal(dir, &["ca", "rotate-root", "--state-dir", "st"]);
    let bundle = shoal(dir, &["ca", "bundle", "--state-dir", "st"]);
    assert_eq!(
        bundle.matches("BEGIN CERTIFICATE").count(),
        2,
        "old and new root: {bundle}"
    );
    std::fs::write(dir.join("bundle2.pem"), &bundle).unwrap();
    let (ok, text) = openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            "bundle2.pem",
            "-untrusted",
            "web.pem",
            "web.pem",
        ],
    );
    assert!(ok, "{text}");

    // A certificate from a foreign CA does not verify against our bundle.
    let other = tempfile::tempdir().unwrap();
    shoal(
        other.path(),
        &[
            "ca",
            "init",
            "--trust-domain",
            "example.org",
            "--state-dir",
            "st",
        ],
    );
    shoal(
        other.path(),
        &[
            "ca",
            "issue",
            "--state-dir",
            "st",
            "--id",
            "spiffe://example.org/ns/default/sa/web",
            "--out-cert",
            "rogue.pem",
            "--out-key",
            "rogue.key",
        ],
    );
    std::fs::copy(other.path().join("rogue.pem"), dir.join("rogue.pem")).unwrap();
    let (ok, _) = openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            "bundle2.pem",
            "-untrusted",
            "rogue.pem",
            "rogue.pem",
        ],
    );
    assert!(!ok, "a foreign CA's certificate must not verify");

    // IDs outside the trust domain are refused at issue time.
    let out = Command::new(BIN)
        .current_dir(dir)
        .args([
            "ca",
            "issue",
            "--state-dir",
            "st",
            "--id",
            "spiffe://other.org/ns/x/sa/y",
            "--out-cert",
            "x.pem",
            "--out-key",
            "x.key",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
