//! Validation of the HTTP/2 settings (`listeners[].http2`) and the new protocol values.

use super::*;
use crate::config::{ClusterProtocol, ListenerProtocol};

fn compile_yaml(yaml: &str) -> Result<Snapshot, Vec<FieldError>> {
    compile(&ConfigSpec::from_yaml(yaml).expect("yaml parses"), None)
}

const BASE: &str = r#"
clusters:
  - { name: a, protocol: http2, endpoints: ["127.0.0.1:9001"] }
  - { name: b, protocol: auto, endpoints: ["127.0.0.1:9002"] }
routes:
  web:
    - domains: ["*"]
      routes: [{ cluster: a }]
"#;

#[test]
fn http2_listener_with_defaults_and_overrides() {
    let yaml = format!(
        "{BASE}listeners:\n  - {{ name: h2, address: \"127.0.0.1:0\", protocol: http2, routes: web }}\n  - {{ name: auto, address: \"127.0.0.1:0\", routes: web, http2: {{ max_concurrent_streams: 7, keepalive_interval: 5s }} }}\n"
    );
    let snap = compile_yaml(&yaml).unwrap_or_else(|e| panic!("{e:#?}"));
    let h2 = &snap.listeners["h2"];
    assert_eq!(h2.protocol, ListenerProtocol::Http2);
    assert_eq!(h2.http2, Http2Spec::default());
    assert_eq!(h2.http2.max_pending_accept_reset_streams, 20);
    let auto = &snap.listeners["auto"];
    assert_eq!(auto.http2.max_concurrent_streams, 7);
    assert_eq!(auto.http2.keepalive_interval.get(), Duration::from_secs(5));
    assert_eq!(auto.http2.initial_stream_window_size, 1 << 20);
    assert_eq!(snap.clusters["a"].protocol, ClusterProtocol::Http2);
    assert_eq!(snap.clusters["b"].protocol, ClusterProtocol::Auto);
}

#[test]
fn bad_http2_settings_name_their_fields() {
    let yaml = format!(
        r#"{BASE}listeners:
  - name: h2
    address: "127.0.0.1:0"
    protocol: http2
    routes: web
    http2:
      max_concurrent_streams: 0
      initial_stream_window_size: 100
      initial_connection_window_size: 2147483648
      max_frame_size: 1000
      max_header_list_size: 10
      max_pending_accept_reset_streams: 0
      max_concurrent_reset_streams: 100000
      keepalive_interval: 0s
      keepalive_timeout: 0s
  - {{ name: h1, address: "127.0.0.1:0", protocol: http1, routes: web, http2: {{}} }}
"#
    );
    let errs = compile_yaml(&yaml).expect_err("rejected");
    let mut paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "listeners[0].http2.initial_connection_window_size",
            "listeners[0].http2.initial_stream_window_size",
            "listeners[0].http2.keepalive_interval",
            "listeners[0].http2.keepalive_timeout",
            "listeners[0].http2.max_concurrent_reset_streams",
            "listeners[0].http2.max_concurrent_streams",
            "listeners[0].http2.max_frame_size",
            "listeners[0].http2.max_header_list_size",
            "listeners[0].http2.max_pending_accept_reset_streams",
            "listeners[1].http2",
        ],
        "{errs:#?}"
    );
}

#[test]
fn unknown_http2_field_is_a_parse_error() {
    let yaml = format!(
        "{BASE}listeners:\n  - {{ name: h2, address: \"127.0.0.1:0\", protocol: http2, routes: web, http2: {{ max_streams: 1 }} }}\n"
    );
    let err = ConfigSpec::from_yaml(&yaml).expect_err("unknown field");
    assert!(err.to_string().contains("max_streams"), "{err}");
}

#[test]
fn cluster_http2_keepalive_defaults_and_validation() {
    let yaml = format!("{BASE}listeners: []\n");
    let snap = compile_yaml(&yaml).unwrap_or_else(|e| panic!("{e:#?}"));
    let h = snap.clusters["a"].spec.http2;
    assert_eq!(h.keepalive_interval.get(), Duration::from_secs(30));
    assert_eq!(h.keepalive_timeout.get(), Duration::from_secs(10));
    let bad = BASE.replace(
        "{ name: b, protocol: auto, endpoints: [\"127.0.0.1:9002\"] }",
        "{ name: b, protocol: auto, endpoints: [\"127.0.0.1:9002\"], http2: { keepalive_interval: 0s, keepalive_timeout: 0s } }",
    );
    assert_ne!(bad, BASE);
    let errs = compile_yaml(&bad).expect_err("rejected");
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "clusters[1].http2.keepalive_interval",
            "clusters[1].http2.keepalive_timeout"
        ]
    );
}
