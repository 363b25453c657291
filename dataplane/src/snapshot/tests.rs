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

#[test]
fn apply_if_is_a_compare_and_swap() {
    let store = ConfigStore::new();
    assert_eq!(store.apply_if(Some(0), spec(V1)), Ok(1));
    // A second controller that read version 0 loses and changes nothing.
    assert_eq!(
        store.apply_if(Some(0), spec(V2)),
        Err(ApplyError::Conflict {
            expected: 0,
            current: 1
        })
    );
    assert_eq!(store.version(), 1);
    assert_eq!(store.load().spec, spec(V1));
    assert_eq!(store.apply_if(Some(1), spec(V2)), Ok(2));
    assert_eq!(store.apply_if(None, spec(V1)), Ok(3));
    // A rejection under CAS is a rejection, and the version stays.
    assert!(matches!(
        store.apply_if(Some(3), spec(BROKEN)),
        Err(ApplyError::Rejected(_))
    ));
    assert_eq!(store.version(), 3);
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "shoal-persist-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn applied_configs_are_persisted_and_rejections_are_not() {
    let dir = temp_dir("apply");
    let state = StateFile::new(dir.join("state"));
    let store = ConfigStore::new();
    store.set_state_file(Some(state.clone()));
    assert_eq!(state.load().unwrap(), None);
    store.apply(spec(V1)).unwrap();
    store.apply(spec(V2)).unwrap();
    assert_eq!(state.load().unwrap(), Some((2, spec(V2))));
    assert!(store.apply(spec(BROKEN)).is_err());
    assert_eq!(state.load().unwrap(), Some((2, spec(V2))));

    // A restart resumes at the persisted version.
    let again = ConfigStore::resuming_after(1);
    assert_eq!(again.apply(spec(V2)), Ok(2));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_torn_temp_file_is_ignored_and_cleaned_up() {
    let dir = temp_dir("torn");
    let state = StateFile::new(&dir);
    state.save(4, &spec(V1)).unwrap();
    // A crash in the middle of the next write leaves a partial temp file behind.
    let stray = dir.join(".config.yaml.tmp-999-5");
    std::fs::write(&stray, "version: 5\nconfig:\n  listeners:\n  - {name: we").unwrap();
    assert_eq!(state.load().unwrap(), Some((4, spec(V1))));
    state.save(5, &spec(V2)).unwrap();
    assert!(!stray.exists(), "stray temp file removed by the next write");
    assert_eq!(state.load().unwrap(), Some((5, spec(V2))));
    // Garbage in the real file is an error naming it, never a silent empty config.
    std::fs::write(state.path(), "version: [").unwrap();
    let err = state.load().unwrap_err().to_string();
    assert!(err.contains("config.yaml"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The field paths of the errors checking `yaml` finds (none when it is valid).
fn paths(yaml: &str) -> Vec<String> {
    ConfigStore::check(&spec(yaml))
        .err()
        .map(|r| r.errors.into_iter().map(|e| e.path).collect())
        .unwrap_or_default()
}

/// Everything a config can hold survives save + load (the file is JSON read by the YAML parser).
const RICH: &str = r#"
workers: 3
drain_timeout: 2500ms
state_dir: /tmp/somewhere
admin: { grpc: "127.0.0.1:15000" }
access_log: { path: stdout }
limits: { max_connections_per_worker: 100 }
timeouts: { keepalive_idle: 90s }
listeners:
  - { name: web, address: "127.0.0.1:8080", protocol: auto, routes: web }
  - { name: pg, address: "127.0.0.1:6432", protocol: tcp, cluster: a }
routes:
  web:
    - domains: ["api.example.com", "*.example.org", "*"]
      routes:
        - match: { prefix: /v1/, methods: [GET, POST], headers: { x-canary: "1", x-debug: { present: true }, x-v: { regex: "v[0-9]+" } } }
          weighted: [ { cluster: a, weight: 90 }, { cluster: b, weight: 10 } ]
          timeout: 2s
          prefix_rewrite: /
          request_headers: { add: { x-added: "yes \"quoted\" ünïcode" }, remove: [x-drop] }
        - match: { grpc: { service: pkg.Echo, method: Unary } }
          cluster: b
        - match: { regex: "/static/.*\\.css" }
          direct_response: { status: 200, body: "line 1\nline 2\ttab: {json: [1]}" }
        - redirect: { scheme: https, status: 308 }
clusters:
  - { name: a, lb: least_request, endpoints: ["127.0.0.1:9001", { address: "127.0.0.1:9002", weight: 3 }], outlier: { consecutive_failures: 2, ejection_time: 1m } }
  - { name: b, protocol: http2, endpoints: ["127.0.0.1:9003"], pool: { max_idle_per_endpoint: 0 } }
"#;

#[test]
fn every_config_field_round_trips_through_the_state_file() {
    let dir = temp_dir("rich");
    let state = StateFile::new(&dir);
    let rich = spec(RICH);
    state.save(9, &rich).unwrap();
    assert_eq!(state.load().unwrap(), Some((9, rich)));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_non_loopback_admin_address_needs_identity_and_allow() {
    let err = ConfigStore::check(&spec("admin: { grpc: 0.0.0.0:15000 }")).unwrap_err();
    assert_eq!(err.errors[0].path, "admin.grpc");
    assert!(err.errors[0].message.contains("mTLS"), "{err}");
    assert_eq!(
        paths("admin: { grpc: 0.0.0.0:15000 }"),
        ["admin.grpc", "admin.allow"]
    );
    assert!(ConfigStore::check(&spec("admin: { grpc: nope }")).is_err());
    assert!(
        ConfigStore::check(&spec("admin: { grpc: 127.0.0.1:15000 }\nstate_dir: /tmp/x")).is_ok()
    );
    let id = "identity: { id: \"spiffe://a.org/edge\" }\nstate_dir: /tmp/x\n";
    assert_eq!(
        paths(&format!("{id}admin: {{ grpc: 0.0.0.0:15000 }}")),
        ["admin.allow"]
    );
    assert!(
        paths(&format!(
            "{id}admin: {{ grpc: 0.0.0.0:15000, allow: [\"spiffe://a.org/ops/*\"], join_tokens: /tmp/t }}"
        ))
        .is_empty()
    );
    assert_eq!(
        paths(&format!(
            "{id}admin: {{ grpc: 0.0.0.0:15000, allow: [\"spiffe://a.org/ok\", \"https://x\"], join_tokens: \"\" }}"
        )),
        ["admin.allow[1]", "admin.join_tokens"]
    );
}

#[test]
fn identity_and_ca_settings_are_checked() {
    assert_eq!(
        paths("identity: { id: \"spiffe://a.org/x\" }"),
        ["identity"]
    );
    assert_eq!(
        paths("identity: { id: \"a.org/x\" }\nca: { remote: \"127.0.0.1:1\" }"),
        ["identity.id"]
    );
    assert_eq!(paths("ca: { remote: nowhere }"), ["ca.remote"]);
    assert_eq!(paths("admin: { metrics: nowhere }"), ["admin.metrics"]);
    // A token only over TLS; a non-loopback CA only over TLS.
    assert_eq!(
        paths("ca: { remote: \"127.0.0.1:1\", token_file: /t }"),
        ["ca.token_file"]
    );
    assert_eq!(paths("ca: { remote: \"10.0.0.1:1\" }"), ["ca.trust_bundle"]);
    assert!(paths("ca: { remote: \"10.0.0.1:1\", token_file: /t, trust_bundle: /b }").is_empty());
    assert!(
        paths("identity: { id: \"spiffe://a.org/x\", ttl: 1h }\nca: { remote: \"127.0.0.1:1\" }")
            .is_empty()
    );
}
