//! `shoal ca` as an operator uses it, checked by a stock tool: OpenSSL must read the SVID, see
//! its SPIFFE URI SAN and verify its chain against the trust bundle, and a root rotation must
//! keep issuing leaves that peers holding the previous bundle accept until it activates.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_shoal");

fn run(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

pub fn shoal(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "shoal {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Runs a `shoal` command that must fail; returns its standard error.
fn shoal_fails(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(!out.status.success(), "shoal {args:?} should have failed");
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// The fingerprint in rotate-root's first line (`new root <fp> ...`).
fn new_root_fingerprint(rotate_output: &str) -> String {
    rotate_output
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("new root "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no new root in {rotate_output:?}"))
        .to_owned()
}

fn init(dir: &Path, state_dir: &str) {
    shoal(
        dir,
        &[
            "ca",
            "init",
            "--trust-domain",
            "example.org",
            "--state-dir",
            state_dir,
        ],
    );
}

fn issue(dir: &Path, state_dir: &str, name: &str) {
    shoal(
        dir,
        &[
            "ca",
            "issue",
            "--state-dir",
            state_dir,
            "--id",
            "spiffe://example.org/ns/default/sa/web",
            "--out-cert",
            &format!("{name}.pem"),
            "--out-key",
            &format!("{name}.key"),
        ],
    );
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

/// `openssl verify` of the chain file `chain` (leaf + intermediate) against `bundle`.
fn verify(dir: &Path, bundle: &str, chain: &str) -> (bool, String) {
    openssl(
        dir,
        &["verify", "-CAfile", bundle, "-untrusted", chain, chain],
    )
}

#[test]
fn issued_svid_is_read_and_verified_by_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init(dir, "st");
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
    let (ok, text) = verify(dir, "bundle.pem", "web.pem");
    assert!(ok && text.contains("OK"), "{text}");

    // After a root rotation the old SVID still verifies against the published bundle. With
    // the default activation delay the new root is published now and issues later.
    let rotated = shoal(dir, &["ca", "rotate-root", "--state-dir", "st"]);
    let new_fp = new_root_fingerprint(&rotated);
    assert!(rotated.contains("issuing switches to it at"), "{rotated}");
    assert!(rotated.contains("(pending, issues from "), "{rotated}");
    let bundle = shoal(dir, &["ca", "bundle", "--state-dir", "st"]);
    assert_eq!(
        bundle.matches("BEGIN CERTIFICATE").count(),
        2,
        "old and new root: {bundle}"
    );
    std::fs::write(dir.join("bundle2.pem"), &bundle).unwrap();
    let (ok, text) = verify(dir, "bundle2.pem", "web.pem");
    assert!(ok, "{text}");

    // Until it activates, new leaves still come from the old root: a peer holding only the
    // pre-rotation bundle accepts them.
    issue(dir, "st", "during");
    let (ok, text) = verify(dir, "bundle.pem", "during.pem");
    assert!(ok, "{text}");
    let inspect = shoal(
        dir,
        &["ca", "inspect", "during.pem", "--bundle", "bundle2.pem"],
    );
    assert!(inspect.contains("chains to root"), "{inspect}");
    assert!(!inspect.contains(&new_fp), "{inspect}");
    // One rotation at a time.
    let err = shoal_fails(
        dir,
        &[
            "ca",
            "rotate-root",
            "--state-dir",
            "st",
            "--activation-delay",
            "0s",
        ],
    );
    assert!(err.contains("already pending"), "{err}");

    // `--activation-delay 0s` switches at once: the next leaf chains to the new root, which
    // the pre-rotation bundle does not know.
    init(dir, "st0");
    let before = shoal(dir, &["ca", "bundle", "--state-dir", "st0"]);
    std::fs::write(dir.join("before0.pem"), &before).unwrap();
    let rotated = shoal(
        dir,
        &[
            "ca",
            "rotate-root",
            "--state-dir",
            "st0",
            "--activation-delay",
            "0s",
        ],
    );
    let new_fp = new_root_fingerprint(&rotated);
    assert!(rotated.contains("now issues"), "{rotated}");
    issue(dir, "st0", "switched");
    let after = shoal(dir, &["ca", "bundle", "--state-dir", "st0"]);
    std::fs::write(dir.join("after0.pem"), &after).unwrap();
    let inspect = shoal(
        dir,
        &["ca", "inspect", "switched.pem", "--bundle", "after0.pem"],
    );
    assert!(
        inspect.contains(&format!("chains to root {new_fp}")),
        "{inspect}"
    );
    let (ok, _) = verify(dir, "before0.pem", "switched.pem");
    assert!(
        !ok,
        "the new root's leaf must not verify against the old bundle"
    );

    // A certificate from a foreign CA does not verify against our bundle.
    let other = tempfile::tempdir().unwrap();
    init(other.path(), "st");
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
    let (ok, _) = verify(dir, "bundle2.pem", "rogue.pem");
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
