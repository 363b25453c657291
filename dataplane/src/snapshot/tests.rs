//! `ConfigStore` without workers: nothing is bound, so these tests exercise compile, versioning and
//! rejection only.

use super::*;

fn spec(yaml: &str) -> ConfigSpec {
    ConfigSpec::from_yaml(yaml).unwrap_or_else(|e| panic!("yaml: {e}\n{yaml}"))
}

const V1: &str = r#"
listeners:
  - {name: web, address: "127.0.0.1:0", routes: web}
  - {name: db, address: "127.0.0.1:0", protocol: tcp, cluster: db}
clusters:
  - {name: app, endpoints: ["127.0.0.1:9001"]}
  - {name: db, endpoints: ["127.0.0.1:5432"]}
routes:
  web:
    - domains: ["*"]
      routes: [{cluster: app}]
"#;

const V2: &str = r#"
listeners:
  - {name: web, address: "127.0.0.1:0", routes: web}
clusters:
  - {name: app, endpoints: ["127.0.0.1:9001"]}
  - {name: app2, endpoints: ["127.0.0.1:9002"]}
routes:
  web:
    - domains: ["*"]
      routes: [{weighted: [{cluster: app, weight: 1}, {cluster: app2, weight: 1}]}]
"#;

const BROKEN: &str = r#"
workers: 0
listeners:
  - {name: web, address: "127.0.0.1:0", routes: missing}
clusters:
  - {name: app, endpoints: ["127.0.0.1"]}
"#;

#[test]
fn new_store_is_empty_version_0() {
    let store = ConfigStore::new();
    assert_eq!(store.version(), 0);
    let snap = store.load();
    assert_eq!(snap.version, 0);
    assert_eq!(snap.spec, ConfigSpec::default());
    assert!(snap.listeners.is_empty() && snap.clusters.is_empty() && snap.route_tables.is_empty());
    assert_eq!(ConfigStore::default().version(), 0);
}

#[test]
fn apply_bumps_the_version() {
    let store = ConfigStore::new();
    assert_eq!(store.apply(spec(V1)), Ok(1));
    assert_eq!(store.version(), 1);
    let s1 = store.load_full();
    assert_eq!(s1.version, 1);
    assert_eq!(s1.spec, spec(V1));
    assert_eq!(s1.listeners.len(), 2);
    assert!(s1.access_log.is_none());
    // No workers: nothing is bound.
    assert_eq!(store.listener_addr("web"), None);

    assert_eq!(store.apply(spec(V2)), Ok(2));
    assert_eq!(store.version(), 2);
    let s2 = store.load();
    assert_eq!(s2.version, 2);
    assert_eq!(s2.spec, spec(V2));
    let mut names: Vec<&str> = s2.listeners.keys().map(|k| &**k).collect();
    names.sort_unstable();
    assert_eq!(names, ["web"]);
    // The unchanged cluster survives the swap; the old snapshot is still intact for its holders.
    assert!(Arc::ptr_eq(&s1.clusters["app"], &s2.clusters["app"]));
    assert_eq!(s1.version, 1);
    assert!(s1.clusters.contains_key("db"));

    // Re-applying the same spec is a new version too.
    assert_eq!(store.apply(spec(V2)), Ok(3));
    assert!(Arc::ptr_eq(
        &store.load().clusters["app2"],
        &s2.clusters["app2"]
    ));
}

#[test]
fn rejected_apply_changes_nothing() {
    let store = ConfigStore::new();

    // Rejected on an empty store.
    let rej = store.apply(spec(BROKEN)).expect_err("must be rejected");
    assert!(!rej.errors.is_empty());
    assert_eq!(store.version(), 0);
    assert_eq!(store.load().version, 0);
    assert_eq!(store.load().spec, ConfigSpec::default());

    assert_eq!(store.apply(spec(V1)), Ok(1));
    let before = store.load_full();

    let rej = store.apply(spec(BROKEN)).expect_err("must be rejected");
    let mut paths: Vec<&str> = rej.errors.iter().map(|e| e.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        ["clusters[0].endpoints[0]", "listeners[0].routes", "workers"]
    );

    assert_eq!(store.version(), 1);
    let after = store.load_full();
    assert!(
        Arc::ptr_eq(&before, &after),
        "the running snapshot is untouched"
    );
    assert_eq!(after.version, 1);
    assert_eq!(after.spec, spec(V1));

    // The rejection did not use up a version.
    assert_eq!(store.apply(spec(V2)), Ok(2));
    assert_eq!(store.load().spec, spec(V2));
}

#[test]
fn check_validates_without_applying() {
    let store = ConfigStore::new();
    assert_eq!(ConfigStore::check(&spec(V1)), Ok(()));
    assert_eq!(ConfigStore::check(&ConfigSpec::default()), Ok(()));
    let rej = ConfigStore::check(&spec(BROKEN)).expect_err("must be rejected");
    assert_eq!(
        rej.errors,
        compile(&spec(BROKEN), None).map(|_| ()).unwrap_err()
    );
    assert_eq!(rej.errors.len(), 3);
    assert_eq!(store.version(), 0, "check does not apply");
    assert_eq!(store.load().spec, ConfigSpec::default());

    // `check` and `apply` agree.
    assert_eq!(store.apply(spec(BROKEN)), Err(rej));
}

#[test]
fn rejection_lists_every_error_on_its_own_line() {
    let rej = ConfigStore::check(&spec(BROKEN)).expect_err("must be rejected");
    let text = rej.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "config rejected (3 errors):", "{text}");
    assert_eq!(lines.len(), 1 + rej.errors.len(), "{text}");
    for (line, e) in lines[1..].iter().zip(&rej.errors) {
        assert_eq!(*line, format!("  {}: {}", e.path, e.message));
    }
    for path in ["workers", "listeners[0].routes", "clusters[0].endpoints[0]"] {
        assert!(
            lines
                .iter()
                .any(|l| l.trim_start().starts_with(&format!("{path}: "))),
            "{path} missing in:\n{text}"
        );
    }

    let one = Rejection::one("workers", "must be at least 1");
    assert_eq!(
        one.to_string(),
        "config rejected (1 error):\n  workers: must be at least 1"
    );
    let two = Rejection {
        errors: vec![
            FieldError {
                path: "a".into(),
                message: "x".into(),
            },
            FieldError {
                path: "b.c[0]".into(),
                message: "y".into(),
            },
        ],
    };
    assert_eq!(
        two.to_string(),
        "config rejected (2 errors):\n  a: x\n  b.c[0]: y"
    );
}
