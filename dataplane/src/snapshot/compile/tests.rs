//! Validation tests: a valid config compiles; each broken config is rejected with the exact field
//! paths of its problems, all reported at once; unchanged clusters are reused across compiles.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::{LbPolicy, ListenerProtocol};
use crate::route::{Action, RequestHead};

fn spec(yaml: &str) -> ConfigSpec {
    ConfigSpec::from_yaml(yaml).unwrap_or_else(|e| panic!("yaml: {e}\n{yaml}"))
}

fn ok(yaml: &str) -> Snapshot {
    compile(&spec(yaml), None).unwrap_or_else(|errs| panic!("config rejected: {errs:#?}\n{yaml}"))
}

/// The sorted error paths of a config that must be rejected.
fn error_paths(yaml: &str) -> Vec<String> {
    match compile(&spec(yaml), None) {
        Ok(_) => panic!("config accepted but should be rejected:\n{yaml}"),
        Err(errs) => {
            for e in &errs {
                assert!(!e.message.is_empty(), "empty message for {}", e.path);
            }
            let mut paths: Vec<String> = errs.into_iter().map(|e| e.path).collect();
            paths.sort();
            paths
        }
    }
}

const FULL: &str = r#"
workers: 2
drain_timeout: 5s
access_log: {path: stdout}
limits:
  max_request_head_bytes: 32768
  max_request_body_bytes: 0
  max_headers: 64
timeouts:
  header_read: 5s
  request: 0s
listeners:
  - name: web
    address: "127.0.0.1:0"
    routes: web
  - name: web-h1
    address: "127.0.0.1:18080"
    protocol: http1
    routes: web
    limits: {max_headers: 256}
    timeouts: {idle: 20s}
  - name: db
    address: "[::1]:0"
    protocol: tcp
    cluster: db
clusters:
  - name: api
    lb: least_request
    endpoints: ["127.0.0.1:9001", {address: "127.0.0.1:9002", weight: 3}]
    connect_timeout: 250ms
    pool: {max_idle_per_endpoint: 8, idle_timeout: 10s}
    outlier: {consecutive_failures: 0, ejection_time: 0s}
  - name: api-v2
    endpoints: ["[::1]:9003"]
  - name: db
    lb: random
    endpoints: ["127.0.0.1:5432"]
routes:
  web:
    - domains: ["api.example.com", "*.api.example.com"]
      routes:
        - match: {prefix: /v1/, methods: [GET, POST], headers: {x-env: canary, x-debug: {present: true}}}
          weighted: [{cluster: api, weight: 90}, {cluster: api-v2, weight: 10}]
          prefix_rewrite: /
          timeout: 3s
          request_headers: {add: {x-shoal: "1"}, remove: [cookie]}
          response_headers: {add: {x-served-by: shoal}}
        - match: {regex: "/users/[0-9]+", headers: {x-version: {regex: "v[0-9]+"}}}
          cluster: api
        - match: {path: /health}
          direct_response: {status: 200, body: ok}
    - domains: ["*"]
      routes:
        - redirect: {scheme: https, host: "www.example.com:8443", path: /, status: 308}
"#;

#[test]
fn full_config_compiles() {
    let snap = ok(FULL);
    assert_eq!(snap.version, 0, "the store sets the version");
    assert_eq!(snap.spec, spec(FULL));
    assert_eq!(snap.drain_timeout, Duration::from_secs(5));
    assert!(snap.access_log.is_none(), "compile opens nothing");

    assert_eq!(snap.listeners.len(), 3);
    let web = &snap.listeners["web"];
    assert_eq!(web.address, "127.0.0.1:0".parse().unwrap());
    assert_eq!(web.protocol, ListenerProtocol::Auto);
    assert_eq!(web.limits.max_headers, 64, "top-level limits");
    assert_eq!(web.limits.max_request_body_bytes, 0);
    assert_eq!(web.timeouts.header_read, Duration::from_secs(5));
    assert_eq!(web.timeouts.request, Duration::ZERO);
    assert_eq!(web.timeouts.idle, Duration::from_secs(300), "default");
    match &web.kind {
        ListenerKind::Http { routes } => assert!(Arc::ptr_eq(routes, &snap.route_tables["web"])),
        other => panic!("expected http, got {other:?}"),
    }
    let h1 = &snap.listeners["web-h1"];
    assert_eq!(h1.protocol, ListenerProtocol::Http1);
    assert_eq!(h1.limits.max_headers, 256, "listener override");
    assert_eq!(
        h1.timeouts.idle,
        Duration::from_secs(20),
        "listener override"
    );
    let db = &snap.listeners["db"];
    assert_eq!(db.address, "[::1]:0".parse().unwrap());
    match &db.kind {
        ListenerKind::Tcp { cluster } => assert!(Arc::ptr_eq(cluster, &snap.clusters["db"])),
        other => panic!("expected tcp, got {other:?}"),
    }

    assert_eq!(snap.clusters.len(), 3);
    let api = &snap.clusters["api"];
    assert_eq!(&*api.name, "api");
    assert_eq!(api.lb, LbPolicy::LeastRequest);
    assert_eq!(api.connect_timeout, Duration::from_millis(250));
    assert_eq!(api.pool.max_idle_per_endpoint, 8);
    let eps: Vec<(String, u32)> = api
        .endpoints
        .iter()
        .map(|e| (e.addr.to_string(), e.weight))
        .collect();
    assert_eq!(
        eps,
        vec![
            ("127.0.0.1:9001".to_string(), 1),
            ("127.0.0.1:9002".to_string(), 3)
        ]
    );
    assert_eq!(
        snap.clusters["api-v2"].connect_timeout,
        Duration::from_secs(1),
        "default"
    );
    assert_eq!(snap.clusters["db"].lb, LbPolicy::Random);
    let mut uids: Vec<u64> = snap.clusters.values().map(|c| c.uid).collect();
    uids.sort_unstable();
    uids.dedup();
    assert_eq!(uids.len(), 3, "every cluster has its own uid");

    let table = &snap.route_tables["web"];
    assert_eq!(&*table.name, "web");
    assert_eq!(table.vhosts.len(), 2);
    assert_eq!(table.vhosts[0].routes.len(), 3);
    let ids: Vec<&str> = table.vhosts[0].routes.iter().map(|r| &*r.id).collect();
    assert_eq!(
        ids,
        ["web[0].routes[0]", "web[0].routes[1]", "web[0].routes[2]"]
    );
    assert_eq!(&*table.vhosts[1].routes[0].id, "web[1].routes[0]");
    let headers: &[(&str, &str)] = &[("x-env", "canary"), ("x-debug", "")];
    let req = RequestHead {
        method: "POST",
        host: "a.api.example.com:443",
        path: "/v1/x",
        headers,
        peer: None,
    };
    let r = crate::route::find(table, &req).expect("route");
    assert_eq!(&*r.id, "web[0].routes[0]");
    assert!(matches!(&r.action, Action::Weighted { total: 100, clusters } if clusters.len() == 2));
    assert_eq!(r.timeout, Some(Duration::from_secs(3)));
}

#[test]
fn empty_config_compiles() {
    let snap = ok("{}");
    assert!(snap.listeners.is_empty() && snap.clusters.is_empty() && snap.route_tables.is_empty());
    assert_eq!(snap.drain_timeout, Duration::from_secs(30));
    assert_eq!(
        compile(&ConfigSpec::default(), None).map(|s| s.listeners.len()),
        Ok(0)
    );
}

/// A valid base every broken case below changes in one place: `web` table, cluster `a`.
const ROUTES_OK: &str = r#"
clusters:
  - name: a
    endpoints: ["127.0.0.1:9001"]
"#;

/// Wraps the `routes: web:` body of a case in a config with cluster `a` and `b`.
fn with_routes(web: &str) -> String {
    format!(
        "clusters:\n  - name: a\n    endpoints: [\"127.0.0.1:9001\"]\n  - name: b\n    endpoints: [\"127.0.0.1:9002\"]\nroutes:\n  web:\n{web}"
    )
}

#[test]
fn broken_configs_name_the_field() {
    // (what, yaml, expected error paths, sorted)
    let listeners_etc: &[(&str, String, &[&str])] = &[
        ("workers 0", "workers: 0".into(), &["workers"]),
        ("empty access log path", "access_log: {path: \" \"}".into(), &["access_log.path"]),
        (
            "limits out of range",
            "limits: {max_request_head_bytes: 100, max_response_head_bytes: 2000000, max_headers: 4, \
             max_connections_per_worker: 0}"
                .into(),
            &[
                "limits.max_connections_per_worker",
                "limits.max_headers",
                "limits.max_request_head_bytes",
                "limits.max_response_head_bytes",
            ],
        ),
        ("limits too many headers", "limits: {max_headers: 1025}".into(), &["limits.max_headers"]),
        (
            "zero timeouts",
            "timeouts: {header_read: 0s, keepalive_idle: 0ms, idle: 0s, request: 0s}".into(),
            &["timeouts.header_read", "timeouts.idle", "timeouts.keepalive_idle"],
        ),
        (
            "listener address",
            format!("{ROUTES_OK}listeners:\n  - {{name: t, address: \"not-an-address\", protocol: tcp, cluster: a}}"),
            &["listeners[0].address"],
        ),
        (
            "listener address without port",
            format!("{ROUTES_OK}listeners:\n  - {{name: t, address: \"127.0.0.1\", protocol: tcp, cluster: a}}"),
            &["listeners[0].address"],
        ),
        (
            "listener name",
            format!("{ROUTES_OK}listeners:\n  - {{name: \"my listener\", address: \"127.0.0.1:0\", protocol: tcp, cluster: a}}"),
            &["listeners[0].name"],
        ),
        (
            "duplicate listener names",
            format!(
                "{ROUTES_OK}listeners:\n  - {{name: t, address: \"127.0.0.1:7001\", protocol: tcp, cluster: a}}\n  \
                 - {{name: t, address: \"127.0.0.1:7002\", protocol: tcp, cluster: a}}"
            ),
            &["listeners[1].name"],
        ),
        (
            "duplicate listener addresses",
            format!(
                "{ROUTES_OK}listeners:\n  - {{name: t1, address: \"127.0.0.1:7001\", protocol: tcp, cluster: a}}\n  \
                 - {{name: t2, address: \"127.0.0.1:7002\", protocol: tcp, cluster: a}}\n  \
                 - {{name: t3, address: \"127.0.0.1:7001\", protocol: tcp, cluster: a}}"
            ),
            &["listeners[2].address"],
        ),
        (
            "tcp listener without cluster",
            format!("{ROUTES_OK}listeners:\n  - {{name: t, address: \"127.0.0.1:0\", protocol: tcp}}"),
            &["listeners[0].cluster"],
        ),
        (
            "tcp listener with unknown cluster",
            format!("{ROUTES_OK}listeners:\n  - {{name: t, address: \"127.0.0.1:0\", protocol: tcp, cluster: nope}}"),
            &["listeners[0].cluster"],
        ),
        (
            "tcp listener with routes",
            format!(
                "{}listeners:\n  - {{name: t, address: \"127.0.0.1:0\", protocol: tcp, cluster: a, routes: web}}",
                with_routes("    - domains: [\"*\"]\n      routes: [{cluster: a}]\n")
            ),
            &["listeners[0].routes"],
        ),
        (
            "http listener with unknown route table",
            format!("{ROUTES_OK}listeners:\n  - {{name: h, address: \"127.0.0.1:0\", routes: nope}}"),
            &["listeners[0].routes"],
        ),
        (
            "http1 listener without route table",
            format!("{ROUTES_OK}listeners:\n  - {{name: h, address: \"127.0.0.1:0\", protocol: http1}}"),
            &["listeners[0].routes"],
        ),
        (
            "http listener with a cluster",
            format!(
                "{}listeners:\n  - {{name: h, address: \"127.0.0.1:0\", routes: web, cluster: a}}",
                with_routes("    - domains: [\"*\"]\n      routes: [{cluster: a}]\n")
            ),
            &["listeners[0].cluster"],
        ),
        (
            "listener limits and timeouts",
            format!(
                "{ROUTES_OK}listeners:\n  - {{name: t, address: \"127.0.0.1:0\", protocol: tcp, cluster: a, \
                 limits: {{max_headers: 2000}}, timeouts: {{idle: 0s}}}}"
            ),
            &["listeners[0].limits.max_headers", "listeners[0].timeouts.idle"],
        ),
        (
            "endpoint without port",
            "clusters:\n  - {name: a, endpoints: [\"127.0.0.1:9001\"]}\n  - {name: b, endpoints: [\"127.0.0.1\"]}".into(),
            &["clusters[1].endpoints[0]"],
        ),
        (
            "endpoint port 0",
            "clusters:\n  - {name: a, endpoints: [\"127.0.0.1:9001\", \"127.0.0.1:0\"]}".into(),
            &["clusters[0].endpoints[1]"],
        ),
        (
            "endpoint bad port",
            "clusters:\n  - {name: a, endpoints: [\"127.0.0.1:99999\"]}".into(),
            &["clusters[0].endpoints[0]"],
        ),
        (
            "endpoint weight 0",
            "clusters:\n  - {name: a, endpoints: [{address: \"127.0.0.1:9001\", weight: 0}]}".into(),
            &["clusters[0].endpoints[0].weight"],
        ),
        (
            "duplicate cluster names",
            "clusters:\n  - {name: a, endpoints: [\"127.0.0.1:1\"]}\n  - {name: a, endpoints: [\"127.0.0.1:2\"]}".into(),
            &["clusters[1].name"],
        ),
        (
            "cluster name",
            "clusters:\n  - {name: \"a/b\", endpoints: [\"127.0.0.1:1\"]}".into(),
            &["clusters[0].name"],
        ),
        (
            "cluster timeouts",
            "clusters:\n  - {name: a, endpoints: [\"127.0.0.1:1\"], connect_timeout: 0s, \
             outlier: {consecutive_failures: 3, ejection_time: 0s}}"
                .into(),
            &["clusters[0].connect_timeout", "clusters[0].outlier.ejection_time"],
        ),
        (
            "table name",
            "routes:\n  \"bad name\":\n    - domains: [\"*\"]\n      routes: [{direct_response: {status: 200}}]".into(),
            &["routes.bad name"],
        ),
    ];

    let r = |body: &str| with_routes(&format!("    - domains: [\"*\"]\n      routes:\n{body}"));
    let route_cases: &[(&str, String, &[&str])] = &[
        (
            "unknown cluster",
            r("        - {match: {path: /ok}, cluster: a}\n        - {cluster: nope}\n"),
            &["routes.web[0].routes[1].cluster"],
        ),
        (
            "duplicate domain in one vhost",
            with_routes("    - domains: [\"a.test\", \"A.Test\"]\n      routes: [{cluster: a}]\n"),
            &["routes.web[0].domains[1]"],
        ),
        (
            "duplicate domain across vhosts",
            with_routes(
                "    - domains: [\"*.a.test\", \"*\"]\n      routes: [{cluster: a}]\n    \
                 - domains: [\"b.test\", \"*.A.test\"]\n      routes: [{cluster: b}]\n",
            ),
            &["routes.web[1].domains[1]"],
        ),
        (
            "bad domains",
            with_routes(
                "    - domains: [\"bad domain\", \"*a.test\", \"*.\", \"a..b\", \"a.test:80\", \"ok.test\"]\n      \
                 routes: [{cluster: a}]\n",
            ),
            &[
                "routes.web[0].domains[0]",
                "routes.web[0].domains[1]",
                "routes.web[0].domains[2]",
                "routes.web[0].domains[3]",
                "routes.web[0].domains[4]",
            ],
        ),
        (
            "no domains",
            with_routes("    - domains: []\n      routes: [{cluster: a}]\n"),
            &["routes.web[0].domains"],
        ),
        (
            "two actions",
            r("        - {cluster: a, direct_response: {status: 200}}\n"),
            &["routes.web[0].routes[0]"],
        ),
        (
            "no action",
            r("        - {match: {prefix: /}}\n"),
            &["routes.web[0].routes[0]"],
        ),
        (
            "unknown cluster in weighted",
            r("        - weighted: [{cluster: a, weight: 1}, {cluster: nope, weight: 1}]\n"),
            &["routes.web[0].routes[0].weighted[1].cluster"],
        ),
        (
            "weights add up to 0",
            r("        - weighted: [{cluster: a, weight: 0}, {cluster: b, weight: 0}]\n"),
            &["routes.web[0].routes[0].weighted"],
        ),
        (
            "empty weighted",
            r("        - weighted: []\n"),
            &["routes.web[0].routes[0].weighted"],
        ),
        (
            "bad path regex",
            r("        - {match: {regex: \"/users/(\"}, cluster: a}\n"),
            &["routes.web[0].routes[0].match.regex"],
        ),
        (
            "bad header regex",
            r("        - {match: {headers: {x-v: {regex: \"[\"}}}, cluster: a}\n"),
            &["routes.web[0].routes[0].match.headers.x-v.regex"],
        ),
        (
            "prefix_rewrite without prefix",
            r("        - {match: {path: /a}, cluster: a, prefix_rewrite: /b}\n"),
            &["routes.web[0].routes[0].prefix_rewrite"],
        ),
        (
            "prefix_rewrite not a path",
            r("        - {match: {prefix: /a}, cluster: a, prefix_rewrite: b}\n"),
            &["routes.web[0].routes[0].prefix_rewrite"],
        ),
        (
            "path and prefix not starting with /",
            r(
                "        - {match: {path: a}, cluster: a}\n        - {match: {prefix: b}, cluster: a}\n",
            ),
            &[
                "routes.web[0].routes[0].match.path",
                "routes.web[0].routes[1].match.prefix",
            ],
        ),
        (
            "two path matches",
            r("        - {match: {path: /a, regex: /b}, cluster: a}\n"),
            &["routes.web[0].routes[0].match"],
        ),
        (
            "bad method",
            r("        - {match: {methods: [GET, \"GE T\", \"\"]}, cluster: a}\n"),
            &[
                "routes.web[0].routes[0].match.methods[1]",
                "routes.web[0].routes[0].match.methods[2]",
            ],
        ),
        (
            "header rule with two conditions",
            r(
                "        - {match: {headers: {x-a: {exact: b, present: true}, x-b: {}}}, cluster: a}\n",
            ),
            &[
                "routes.web[0].routes[0].match.headers.x-a",
                "routes.web[0].routes[0].match.headers.x-b",
            ],
        ),
        (
            "header names with spaces",
            r(
                "        - match: {headers: {\"x foo\": bar}}\n          cluster: a\n          \
               request_headers: {add: {\"x bar\": v}, remove: [ok, \"bad name\"]}\n          \
               response_headers: {add: {\"x:baz\": v}, remove: [\"\"]}\n",
            ),
            &[
                "routes.web[0].routes[0].match.headers.x foo",
                "routes.web[0].routes[0].request_headers.add.x bar",
                "routes.web[0].routes[0].request_headers.remove[1]",
                "routes.web[0].routes[0].response_headers.add.x:baz",
                "routes.web[0].routes[0].response_headers.remove[0]",
            ],
        ),
        (
            "header values with CR, LF or NUL",
            r("        - cluster: a\n          \
               request_headers: {add: {x-crlf: \"a\\r\\nb\", x-ok: \"a b\"}}\n          \
               response_headers: {add: {x-lf: \"a\\nb\", x-cr: \"a\\rb\", x-nul: \"a\\0b\"}}\n"),
            &[
                "routes.web[0].routes[0].request_headers.add.x-crlf",
                "routes.web[0].routes[0].response_headers.add.x-cr",
                "routes.web[0].routes[0].response_headers.add.x-lf",
                "routes.web[0].routes[0].response_headers.add.x-nul",
            ],
        ),
        (
            "redirect status 200",
            r("        - redirect: {host: example.com, status: 200}\n"),
            &["routes.web[0].routes[0].redirect.status"],
        ),
        (
            "redirect scheme, host and path",
            r("        - redirect: {scheme: ftp, host: \"bad host\", path: nope}\n"),
            &[
                "routes.web[0].routes[0].redirect.host",
                "routes.web[0].routes[0].redirect.path",
                "routes.web[0].routes[0].redirect.scheme",
            ],
        ),
        (
            "direct response status",
            r(
                "        - direct_response: {status: 199}\n        - direct_response: {status: 600}\n",
            ),
            &[
                "routes.web[0].routes[0].direct_response.status",
                "routes.web[0].routes[1].direct_response.status",
            ],
        ),
    ];

    for (what, yaml, want) in listeners_etc.iter().chain(route_cases) {
        assert_eq!(error_paths(yaml), *want, "case {what:?}:\n{yaml}");
    }
}

#[test]
fn error_messages_are_useful() {
    let errs = compile(
        &spec(&with_routes(
            "    - domains: [\"a.test\", \"A.test\"]\n      routes: [{cluster: nope}]\n",
        )),
        None,
    )
    .unwrap_err();
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            r#"routes.web[0].domains[1]: domain "a.test" is already served by routes.web[0]"#,
            r#"routes.web[0].routes[0].cluster: unknown cluster "nope""#,
        ]
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let yaml = r#"
workers: 0
limits: {max_headers: 1}
listeners:
  - {name: web, address: "localhost:http", routes: web}
  - {name: tcp, address: "127.0.0.1:0", protocol: tcp}
  - {name: web, address: "127.0.0.1:0", routes: missing}
clusters:
  - {name: a, endpoints: ["127.0.0.1:9001"]}
  - {name: b, endpoints: ["127.0.0.1:9002", "127.0.0.1:0"]}
routes:
  web:
    - domains: ["a.test", "a.test"]
      routes:
        - {match: {regex: "("}, redirect: {status: 200}, request_headers: {add: {x-a: "1\n2"}}}
        - {cluster: a, direct_response: {status: 200}}
        - {cluster: nope}
        - {prefix_rewrite: /x, cluster: a}
        - {match: {path: /fine}, cluster: a}
"#;
    let want = [
        "clusters[1].endpoints[1]",
        "limits.max_headers",
        "listeners[0].address",
        "listeners[1].cluster",
        "listeners[2].routes",
        "routes.web[0].domains[1]",
        "routes.web[0].routes[0].match.regex",
        "routes.web[0].routes[0].redirect.status",
        "routes.web[0].routes[0].request_headers.add.x-a",
        "routes.web[0].routes[1]",
        "routes.web[0].routes[2].cluster",
        "routes.web[0].routes[3].prefix_rewrite",
        "workers",
    ];
    assert_eq!(error_paths(yaml), want);
}

#[test]
fn port_zero_listeners_may_share_an_address() {
    let yaml = format!(
        "{ROUTES_OK}listeners:\n  - {{name: t1, address: \"127.0.0.1:0\", protocol: tcp, cluster: a}}\n  \
         - {{name: t2, address: \"127.0.0.1:0\", protocol: tcp, cluster: a}}"
    );
    assert_eq!(ok(&yaml).listeners.len(), 2);
}

#[test]
fn unknown_field_fails_to_parse_naming_the_field() {
    let cases: &[(&str, &str)] = &[
        (
            "listeners:\n  - {name: web, adress: \"127.0.0.1:80\", routes: web}\n",
            "adress",
        ),
        ("wrkers: 2\n", "wrkers"),
        ("limits: {max_header: 10}\n", "max_header"),
        (
            "clusters:\n  - {name: a, endpoints: [\"127.0.0.1:1\"], lb_policy: random}\n",
            "lb_policy",
        ),
        (
            "routes:\n  web:\n    - domains: [\"*\"]\n      routes: [{mach: {path: /}, cluster: a}]\n",
            "mach",
        ),
        (
            "routes:\n  web:\n    - domains: [\"*\"]\n      routes: [{match: {prefx: /}, cluster: a}]\n",
            "prefx",
        ),
    ];
    for (yaml, field) in cases {
        let err = ConfigSpec::from_yaml(yaml).expect_err(yaml).to_string();
        assert!(
            err.contains(field),
            "error for {field:?} does not name it: {err}"
        );
    }
}

#[test]

fn unknown_field_in_untagged_enums_is_named() {
    let cases: &[(&str, &str)] = &[
        (
            "clusters:\n  - {name: a, endpoints: [{address: \"127.0.0.1:1\", wieght: 2}]}\n",
            "wieght",
        ),
        (
            "routes:\n  web:\n    - domains: [\"*\"]\n      routes: [{match: {headers: {x-a: {presnt: true}}}, cluster: a}]\n",
            "presnt",
        ),
    ];
    for (yaml, field) in cases {
        let err = ConfigSpec::from_yaml(yaml).expect_err(yaml).to_string();
        assert!(
            err.contains(field),
            "error for {field:?} does not name it: {err}"
        );
    }
}

#[test]

fn listener_overrides_inherit_unset_fields_from_top_level() {
    let yaml = format!(
        "{ROUTES_OK}limits: {{max_request_body_bytes: 1048576, max_headers: 32}}\ntimeouts: {{idle: 5s}}\n\
         listeners:\n  - {{name: t, address: \"127.0.0.1:0\", protocol: tcp, cluster: a, \
         limits: {{max_headers: 64}}, timeouts: {{header_read: 1s}}}}"
    );
    let snap = ok(&yaml);
    let l = &snap.listeners["t"];
    assert_eq!(l.limits.max_headers, 64, "overridden");
    assert_eq!(l.timeouts.header_read, Duration::from_secs(1), "overridden");
    assert_eq!(
        l.limits.max_request_body_bytes, 1048576,
        "inherited from top-level limits"
    );
    assert_eq!(
        l.timeouts.idle,
        Duration::from_secs(5),
        "inherited from top-level timeouts"
    );
}

const REUSE: &str = r#"
clusters:
  - {name: same, endpoints: ["127.0.0.1:9001"]}
  - {name: moved, endpoints: ["127.0.0.1:9002"]}
  - {name: relb, endpoints: ["127.0.0.1:9003"]}
  - {name: gone, endpoints: ["127.0.0.1:9004"]}
routes:
  web:
    - domains: ["*"]
      routes: [{cluster: same}]
listeners:
  - {name: tcp, address: "127.0.0.1:0", protocol: tcp, cluster: same}
"#;

#[test]
fn unchanged_clusters_are_reused() {
    let first = ok(REUSE);
    let second = compile(&spec(REUSE), Some(&first)).expect("valid");
    for name in ["same", "moved", "relb", "gone"] {
        assert!(
            Arc::ptr_eq(&first.clusters[name], &second.clusters[name]),
            "{name}"
        );
        assert_eq!(
            first.clusters[name].uid, second.clusters[name].uid,
            "{name}"
        );
    }
    // The route and listener of the new snapshot point at the reused cluster.
    match &second.listeners["tcp"].kind {
        ListenerKind::Tcp { cluster } => assert!(Arc::ptr_eq(cluster, &first.clusters["same"])),
        other => panic!("expected tcp, got {other:?}"),
    }
    match &second.route_tables["web"].vhosts[0].routes[0].action {
        Action::Cluster(c) => assert!(Arc::ptr_eq(c, &first.clusters["same"])),
        other => panic!("expected a cluster, got {other:?}"),
    }

    let changed = REUSE
        .replace("127.0.0.1:9002", "127.0.0.1:9102")
        .replace(
            "{name: relb, endpoints: [\"127.0.0.1:9003\"]}",
            "{name: relb, lb: random, endpoints: [\"127.0.0.1:9003\"]}",
        )
        .replace("  - {name: gone, endpoints: [\"127.0.0.1:9004\"]}\n", "");
    let third = compile(&spec(&changed), Some(&second)).expect("valid");
    assert!(Arc::ptr_eq(
        &third.clusters["same"],
        &first.clusters["same"]
    ));
    assert_eq!(third.clusters["same"].uid, first.clusters["same"].uid);
    for name in ["moved", "relb"] {
        assert!(
            !Arc::ptr_eq(&third.clusters[name], &second.clusters[name]),
            "{name}"
        );
        assert_ne!(
            third.clusters[name].uid, second.clusters[name].uid,
            "{name}"
        );
    }
    assert_eq!(
        third.clusters["moved"].endpoints[0].addr,
        "127.0.0.1:9102".parse().unwrap()
    );
    assert_eq!(third.clusters["relb"].lb, LbPolicy::Random);
    assert!(!third.clusters.contains_key("gone"));

    // Re-adding a cluster that was dropped compiles it afresh.
    let fourth = compile(&spec(REUSE), Some(&third)).expect("valid");
    assert_ne!(fourth.clusters["gone"].uid, first.clusters["gone"].uid);
    // Without `prev` nothing is reused.
    let fresh = ok(REUSE);
    assert_ne!(fresh.clusters["same"].uid, first.clusters["same"].uid);
}

#[test]
fn rejected_compile_with_prev_reports_errors() {
    let first = ok(REUSE);
    let broken = REUSE.replace("cluster: same}\n", "cluster: nope}\n");
    let errs = compile(&spec(&broken), Some(&first))
        .map(|_| ())
        .unwrap_err();
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["listeners[0].cluster"]);
}

#[test]
fn full_config_round_trips_through_yaml() {
    let parsed = spec(FULL);
    let again = ConfigSpec::from_yaml(&parsed.to_yaml())
        .unwrap_or_else(|e| panic!("{e}\n{}", parsed.to_yaml()));
    assert_eq!(again, parsed);
    assert_eq!(
        ConfigSpec::from_yaml(&ConfigSpec::default().to_yaml()).unwrap(),
        ConfigSpec::default()
    );
}

#[test]

fn rewritten_paths_reject_control_characters_and_spaces() {
    let yaml = with_routes(
        "    - domains: [\"*\"]\n      routes:\n        \
         - {match: {prefix: /a/}, cluster: a, prefix_rewrite: \"/b\\r\\nx-injected: 1\\r\\n\"}\n        \
         - {match: {prefix: /c/}, cluster: a, prefix_rewrite: \"/d HTTP/1.0\"}\n        \
         - {match: {path: /e}, redirect: {path: \"/f\\r\\nset-cookie: a=b\"}}\n        \
         - {match: {path: /g}, redirect: {path: \"/h\\0\"}}\n",
    );
    assert_eq!(
        error_paths(&yaml),
        [
            "routes.web[0].routes[0].prefix_rewrite",
            "routes.web[0].routes[1].prefix_rewrite",
            "routes.web[0].routes[2].redirect.path",
            "routes.web[0].routes[3].redirect.path",
        ]
    );
}
