//! Table-driven tests of the pure matcher: virtual-host choice, path/method/header matches,
//! first-match-wins ordering and the actions' cluster choice.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::ConfigSpec;
use crate::snapshot::{Snapshot, compile};

/// Parses and compiles `yaml`, panicking with every error if it is not valid.
fn snapshot(yaml: &str) -> Snapshot {
    let spec = ConfigSpec::from_yaml(yaml).unwrap_or_else(|e| panic!("yaml: {e}\n{yaml}"));
    compile(&spec, None).unwrap_or_else(|errs| panic!("config rejected: {errs:#?}\n{yaml}"))
}

/// The route table `name` of the compiled `yaml`.
pub(super) fn table(yaml: &str, name: &str) -> Arc<RouteTable> {
    snapshot(yaml).route_tables[name].clone()
}

/// Runs `find` for one request; returns the matched route id.
fn find_id(
    table: &RouteTable,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<String> {
    let req = RequestHead {
        method,
        host,
        path,
        headers,
        peer: None,
    };
    find(table, &req).map(|r| r.id.to_string())
}

/// Index of the virtual host `table.vhost(host)` returns.
fn vhost_index(table: &RouteTable, host: &str) -> Option<usize> {
    table.vhost(host).map(|v| {
        table
            .vhosts
            .iter()
            .position(|x| std::ptr::eq(x, v))
            .expect("vhost belongs to the table")
    })
}

const VHOSTS: &str = r#"
clusters:
  - name: a
    endpoints: ["127.0.0.1:9001"]
routes:
  t:
    - domains: ["api.example.com"]                       # 0
      routes: [{cluster: a}]
    - domains: ["*.example.com"]                         # 1
      routes: [{cluster: a}]
    - domains: ["*.eu.example.com"]                      # 2
      routes: [{cluster: a}]
    - domains: ["*"]                                     # 3
      routes: [{cluster: a}]
    - domains: ["Mixed.Example.ORG", "127.0.0.1", "*.Shop.Example.NET"]  # 4
      routes: [{cluster: a}]
  nowild:
    - domains: ["api.example.com"]                       # 0
      routes: [{cluster: a}]
    - domains: ["*.example.com"]                         # 1
      routes: [{cluster: a}]
"#;

#[test]
fn vhost_choice() {
    let t = table(VHOSTS, "t");
    let cases: &[(&str, Option<usize>)] = &[
        // Exact beats every suffix.
        ("api.example.com", Some(0)),
        // Case-insensitive, port ignored.
        ("API.Example.COM", Some(0)),
        ("api.example.com:8443", Some(0)),
        ("API.EXAMPLE.COM:80", Some(0)),
        // Suffix: any depth of labels before it.
        ("web.example.com", Some(1)),
        ("a.b.example.com", Some(1)),
        ("WEB.example.com:8080", Some(1)),
        // Longest suffix wins.
        ("x.eu.example.com", Some(2)),
        ("a.b.eu.example.com", Some(2)),
        // `*.eu.example.com` needs a label before `.eu`: falls back to `*.example.com`.
        ("eu.example.com", Some(1)),
        // `*.example.com` does not cover `example.com` itself.
        ("example.com", Some(3)),
        ("notexample.com", Some(3)),
        // `*` catches the rest.
        ("other.net", Some(3)),
        ("", Some(3)),
        ("[::1]:8080", Some(3)),
        ("[::1]", Some(3)),
        // Domains are stored lowercase whatever the config's case.
        ("mixed.example.org", Some(4)),
        ("MIXED.EXAMPLE.ORG:1", Some(4)),
        ("127.0.0.1", Some(4)),
        ("127.0.0.1:8080", Some(4)),
        ("www.shop.example.net", Some(4)),
        ("WWW.SHOP.EXAMPLE.NET:443", Some(4)),
        ("shop.example.net", Some(3)),
    ];
    for &(host, want) in cases {
        assert_eq!(vhost_index(&t, host), want, "host {host:?}");
    }
}

#[test]
fn vhost_without_wildcard() {
    let t = table(VHOSTS, "nowild");
    let cases: &[(&str, Option<usize>)] = &[
        ("api.example.com", Some(0)),
        ("Api.Example.Com:1234", Some(0)),
        ("x.api.example.com", Some(1)),
        ("www.example.com", Some(1)),
        ("example.com", None),
        ("other.net", None),
        ("", None),
        ("[::1]:8080", None),
        ("127.0.0.1:80", None),
    ];
    for &(host, want) in cases {
        assert_eq!(vhost_index(&t, host), want, "host {host:?}");
    }
}

#[test]
fn vhost_host_longer_than_any_name() {
    // Longer than a DNS name can be: no exact or suffix match, only `*`.
    let long = format!("{}.example.com", "a".repeat(300));
    assert_eq!(vhost_index(&table(VHOSTS, "t"), &long), Some(3));
    assert_eq!(vhost_index(&table(VHOSTS, "nowild"), &long), None);
}

#[test]
fn strip_port_cases() {
    let cases: &[(&str, &str)] = &[
        ("example.com", "example.com"),
        ("example.com:8080", "example.com"),
        ("Example.COM:80", "Example.COM"),
        ("example.com:", "example.com"),
        ("example.com:http", "example.com:http"),
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.1:443", "127.0.0.1"),
        ("[::1]:8080", "::1"),
        ("[::1]", "::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[fe80::1%eth0]:80", "fe80::1%eth0"),
        ("", ""),
    ];
    for &(host, want) in cases {
        assert_eq!(strip_port(host), want, "host {host:?}");
    }
}

const MATCHES: &str = r#"
clusters:
  - name: a
    endpoints: ["127.0.0.1:9001"]
routes:
  t:
    - domains: ["paths.test"]                            # 0
      routes:
        - match: {path: /exact}
          cluster: a
        - match: {prefix: /api/}
          cluster: a
        - match: {regex: "/users/[0-9]+"}
          cluster: a
        - match: {regex: "/files/.*\\.png|/img/[a-z]+"}
          cluster: a
    - domains: ["methods.test"]                          # 1
      routes:
        - match: {prefix: /admin, methods: [POST, delete]}
          cluster: a
        - match: {methods: [GET, head]}
          cluster: a
    - domains: ["headers.test"]                          # 2
      routes:
        - match: {path: /exact, headers: {x-env: canary}}
          cluster: a
        - match: {path: /present, headers: {x-debug: {present: true}}}
          cluster: a
        - match: {path: /absent, headers: {authorization: {present: false}}}
          cluster: a
        - match: {path: /regex, headers: {x-version: {regex: "v[0-9]+"}}}
          cluster: a
        - match: {path: /exact-rule, headers: {X-Env: {exact: prod}}}
          cluster: a
        - match: {path: /multi, headers: {x-a: "1", x-b: {present: true}}}
          cluster: a
    - domains: ["order.test"]                            # 3
      routes:
        - match: {prefix: /a}
          cluster: a
        - match: {prefix: /a/b}
          cluster: a
        - match: {path: /a/b/c}
          cluster: a
        - match: {path: /b, methods: [POST]}
          cluster: a
        - match: {path: /b, headers: {x-canary: "1"}}
          cluster: a
        - direct_response: {status: 404}
"#;

pub(super) type Case<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    Option<&'a str>,
);

pub(super) fn run_cases(t: &RouteTable, cases: &[Case<'_>]) {
    for &(host, method, path, headers, want) in cases {
        assert_eq!(
            find_id(t, host, method, path, headers).as_deref(),
            want,
            "{method} {path} Host: {host} headers: {headers:?}"
        );
    }
}

#[test]
fn path_matches() {
    let t = table(MATCHES, "t");
    let cases: &[Case<'_>] = &[
        // Exact.
        ("paths.test", "GET", "/exact", &[], Some("t[0].routes[0]")),
        (
            "PATHS.test:8080",
            "GET",
            "/exact",
            &[],
            Some("t[0].routes[0]"),
        ),
        ("paths.test", "GET", "/exact/", &[], None),
        ("paths.test", "GET", "/exactly", &[], None),
        ("paths.test", "GET", "/EXACT", &[], None),
        ("paths.test", "GET", "/", &[], None),
        // Prefix.
        ("paths.test", "GET", "/api/", &[], Some("t[0].routes[1]")),
        (
            "paths.test",
            "GET",
            "/api/v1/users",
            &[],
            Some("t[0].routes[1]"),
        ),
        ("paths.test", "POST", "/api/x", &[], Some("t[0].routes[1]")),
        ("paths.test", "GET", "/api", &[], None),
        ("paths.test", "GET", "/v1/api/", &[], None),
        // Regex: must match the whole path.
        (
            "paths.test",
            "GET",
            "/users/42",
            &[],
            Some("t[0].routes[2]"),
        ),
        ("paths.test", "GET", "/users/0", &[], Some("t[0].routes[2]")),
        ("paths.test", "GET", "/users/", &[], None),
        ("paths.test", "GET", "/users/42/edit", &[], None),
        ("paths.test", "GET", "/v1/users/42", &[], None),
        ("paths.test", "GET", "/users/abc", &[], None),
        // Alternation stays anchored on both sides.
        (
            "paths.test",
            "GET",
            "/files/a/b.png",
            &[],
            Some("t[0].routes[3]"),
        ),
        ("paths.test", "GET", "/img/cat", &[], Some("t[0].routes[3]")),
        ("paths.test", "GET", "/files/a.pngx", &[], None),
        ("paths.test", "GET", "/x/files/a.png", &[], None),
        ("paths.test", "GET", "/img/cat/1", &[], None),
        ("paths.test", "GET", "/x/img/cat", &[], None),
        // Unknown host, no `*`: nothing.
        ("other.test", "GET", "/exact", &[], None),
        ("[::1]:8080", "GET", "/exact", &[], None),
    ];
    run_cases(&t, cases);
}

#[test]
fn method_matches() {
    let t = table(MATCHES, "t");
    let cases: &[Case<'_>] = &[
        ("methods.test", "GET", "/", &[], Some("t[1].routes[1]")),
        ("methods.test", "HEAD", "/x", &[], Some("t[1].routes[1]")),
        // Config method names are uppercased.
        (
            "methods.test",
            "POST",
            "/admin",
            &[],
            Some("t[1].routes[0]"),
        ),
        (
            "methods.test",
            "DELETE",
            "/admin/users/1",
            &[],
            Some("t[1].routes[0]"),
        ),
        // GET /admin skips route 0 (method) and lands on route 1.
        ("methods.test", "GET", "/admin", &[], Some("t[1].routes[1]")),
        ("methods.test", "POST", "/other", &[], None),
        ("methods.test", "PUT", "/admin", &[], None),
        ("methods.test", "OPTIONS", "/", &[], None),
        // Request methods are case-sensitive (RFC 9110 9.1).
        ("methods.test", "get", "/", &[], None),
        ("methods.test", "post", "/admin", &[], None),
    ];
    run_cases(&t, cases);
}

#[test]
fn header_matches() {
    let t = table(MATCHES, "t");
    let h = "headers.test";
    let cases: &[Case<'_>] = &[
        // Exact (shorthand `name: value`): value is case-sensitive, name is not.
        (
            h,
            "GET",
            "/exact",
            &[("x-env", "canary")],
            Some("t[2].routes[0]"),
        ),
        (
            h,
            "GET",
            "/exact",
            &[("X-Env", "canary")],
            Some("t[2].routes[0]"),
        ),
        (
            h,
            "GET",
            "/exact",
            &[("other", "1"), ("x-env", "canary")],
            Some("t[2].routes[0]"),
        ),
        (h, "GET", "/exact", &[("x-env", "Canary")], None),
        (h, "GET", "/exact", &[("x-env", "canary2")], None),
        (h, "GET", "/exact", &[("x-env", "")], None),
        (h, "GET", "/exact", &[], None),
        // Only the first value of a repeated header counts.
        (
            h,
            "GET",
            "/exact",
            &[("x-env", "prod"), ("x-env", "canary")],
            None,
        ),
        // Exact (rule form, mixed-case name in config).
        (
            h,
            "GET",
            "/exact-rule",
            &[("x-env", "prod")],
            Some("t[2].routes[4]"),
        ),
        (
            h,
            "GET",
            "/exact-rule",
            &[("X-ENV", "prod")],
            Some("t[2].routes[4]"),
        ),
        (h, "GET", "/exact-rule", &[("x-env", "prod ")], None),
        (h, "GET", "/exact-rule", &[], None),
        // present: true (an empty value is still present).
        (
            h,
            "GET",
            "/present",
            &[("x-debug", "1")],
            Some("t[2].routes[1]"),
        ),
        (
            h,
            "GET",
            "/present",
            &[("X-Debug", "")],
            Some("t[2].routes[1]"),
        ),
        (h, "GET", "/present", &[("x-debugging", "1")], None),
        (h, "GET", "/present", &[], None),
        // present: false.
        (h, "GET", "/absent", &[], Some("t[2].routes[2]")),
        (
            h,
            "GET",
            "/absent",
            &[("x-other", "1")],
            Some("t[2].routes[2]"),
        ),
        (h, "GET", "/absent", &[("Authorization", "Bearer x")], None),
        (h, "GET", "/absent", &[("authorization", "")], None),
        // Regex: anchored on the whole value.
        (
            h,
            "GET",
            "/regex",
            &[("x-version", "v12")],
            Some("t[2].routes[3]"),
        ),
        (
            h,
            "GET",
            "/regex",
            &[("x-version", "v1")],
            Some("t[2].routes[3]"),
        ),
        (h, "GET", "/regex", &[("x-version", "v12-beta")], None),
        (h, "GET", "/regex", &[("x-version", "xv1")], None),
        (h, "GET", "/regex", &[("x-version", "v")], None),
        (h, "GET", "/regex", &[], None),
        // Every condition must hold.
        (
            h,
            "GET",
            "/multi",
            &[("x-a", "1"), ("x-b", "")],
            Some("t[2].routes[5]"),
        ),
        (
            h,
            "GET",
            "/multi",
            &[("x-b", "y"), ("X-A", "1")],
            Some("t[2].routes[5]"),
        ),
        (h, "GET", "/multi", &[("x-a", "1")], None),
        (h, "GET", "/multi", &[("x-b", "y")], None),
        (h, "GET", "/multi", &[("x-a", "2"), ("x-b", "y")], None),
    ];
    run_cases(&t, cases);
}

#[test]
fn header_regex_on_non_utf8_value_does_not_match() {
    let t = table(MATCHES, "t");
    let headers = [httparse::Header {
        name: "x-version",
        value: b"v1\xff",
    }];
    let req = RequestHead {
        method: "GET",
        host: "headers.test",
        peer: None,
        path: "/regex",
        headers: &headers[..],
    };
    assert!(find(&t, &req).is_none());
    let headers = [httparse::Header {
        name: "X-Version",
        value: b"v7",
    }];
    let req = RequestHead {
        method: "GET",
        host: "headers.test",
        peer: None,
        path: "/regex",
        headers: &headers[..],
    };
    assert_eq!(find(&t, &req).map(|r| &*r.id), Some("t[2].routes[3]"));
}

#[test]
fn first_match_wins() {
    let t = table(MATCHES, "t");
    let o = "order.test";
    let cases: &[Case<'_>] = &[
        (o, "GET", "/a", &[], Some("t[3].routes[0]")),
        // Later, more specific routes are shadowed by the earlier prefix.
        (o, "GET", "/a/b", &[], Some("t[3].routes[0]")),
        (o, "GET", "/a/b/c", &[], Some("t[3].routes[0]")),
        (o, "GET", "/abc", &[], Some("t[3].routes[0]")),
        // A route whose method or header does not match is skipped, not fatal.
        (
            o,
            "POST",
            "/b",
            &[("x-canary", "1")],
            Some("t[3].routes[3]"),
        ),
        (o, "GET", "/b", &[("x-canary", "1")], Some("t[3].routes[4]")),
        (o, "GET", "/b", &[], Some("t[3].routes[5]")),
        // The catch-all (no match block) takes everything else.
        (o, "GET", "/", &[], Some("t[3].routes[5]")),
        (o, "DELETE", "/zzz", &[], Some("t[3].routes[5]")),
    ];
    run_cases(&t, cases);
}

const ACTIONS: &str = r#"
clusters:
  - name: a
    endpoints: ["127.0.0.1:9001"]
  - name: b
    endpoints: ["127.0.0.1:9002"]
  - name: c
    endpoints: ["127.0.0.1:9003"]
routes:
  t:
    - domains: ["*"]
      routes:
        - match: {path: /split}
          weighted: [{cluster: a, weight: 90}, {cluster: b, weight: 10}]
        - match: {path: /thirds}
          weighted: [{cluster: a, weight: 1}, {cluster: b, weight: 0}, {cluster: c, weight: 2}]
        - match: {path: /direct}
          direct_response: {status: 418, body: "short and stout"}
        - match: {path: /empty}
          direct_response: {status: 204}
        - match: {path: /redirect}
          redirect: {scheme: https, host: "www.example.com:8443", path: /new, status: 301}
        - match: {path: /redirect-default}
          redirect: {}
        - match: {prefix: /single/}
          cluster: c
          prefix_rewrite: /
          timeout: 2s
          request_headers: {add: {X-Added: "yes"}, remove: [X-Drop]}
          response_headers: {remove: [Server]}
        - match: {path: /no-timeout}
          cluster: c
          timeout: 0s
"#;

fn route<'t>(t: &'t RouteTable, path: &str) -> &'t Route {
    let headers: &[(&str, &str)] = &[];
    let req = RequestHead {
        method: "GET",
        host: "any",
        path,
        headers,
        peer: None,
    };
    find(t, &req).unwrap_or_else(|| panic!("no route for {path}"))
}

/// How many of `picks` go to each cluster name.
fn distribution(action: &Action, picks: std::ops::Range<u32>) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for pick in picks {
        let name = action
            .cluster(pick)
            .expect("weighted action has a cluster")
            .name
            .to_string();
        match counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c += 1,
            None => counts.push((name, 1)),
        }
    }
    counts.sort();
    counts
}

#[test]
fn weighted_distribution() {
    let t = table(ACTIONS, "t");
    let split = &route(&t, "/split").action;
    assert!(
        matches!(split, Action::Weighted { total: 100, .. }),
        "{split:?}"
    );
    type Want<'a> = &'a [(&'a str, usize)];
    let cases: &[(std::ops::Range<u32>, Want<'_>)] = &[
        (0..100, &[("a", 90), ("b", 10)]),
        (0..1000, &[("a", 900), ("b", 100)]),
        (100..200, &[("a", 90), ("b", 10)]),
        (0..90, &[("a", 90)]),
        (90..100, &[("b", 10)]),
    ];
    for (picks, want) in cases {
        let want: Vec<(String, usize)> = want.iter().map(|(n, c)| (n.to_string(), *c)).collect();
        assert_eq!(distribution(split, picks.clone()), want, "picks {picks:?}");
    }
    // Boundaries, and picks far above the total wrap around.
    let cases: &[(u32, &str)] = &[
        (0, "a"),
        (89, "a"),
        (90, "b"),
        (99, "b"),
        (100, "a"),
        (u32::MAX, "b"),
        (u32::MAX - 10, "a"),
    ];
    for &(pick, want) in cases {
        assert_eq!(&*split.cluster(pick).unwrap().name, want, "pick {pick}");
    }

    // A zero weight is never picked.
    let thirds = &route(&t, "/thirds").action;
    assert!(
        matches!(thirds, Action::Weighted { total: 3, .. }),
        "{thirds:?}"
    );
    let want = vec![("a".to_string(), 100), ("c".to_string(), 200)];
    assert_eq!(distribution(thirds, 0..300), want);
}

#[test]
fn weighted_choice_is_the_compiled_cluster() {
    let snap = snapshot(ACTIONS);
    let t = &snap.route_tables["t"];
    let split = &route(t, "/split").action;
    assert!(Arc::ptr_eq(split.cluster(0).unwrap(), &snap.clusters["a"]));
    assert!(Arc::ptr_eq(split.cluster(95).unwrap(), &snap.clusters["b"]));
    let single = &route(t, "/single/x").action;
    for pick in [0, 1, 99, u32::MAX] {
        assert!(
            Arc::ptr_eq(single.cluster(pick).unwrap(), &snap.clusters["c"]),
            "pick {pick}"
        );
    }
}

#[test]
fn local_actions() {
    let t = table(ACTIONS, "t");

    let direct = route(&t, "/direct");
    assert_eq!(&*direct.id, "t[0].routes[2]");
    match &direct.action {
        Action::Direct { status, body } => {
            assert_eq!(*status, 418);
            assert_eq!(&body[..], b"short and stout");
        }
        other => panic!("expected a direct response, got {other:?}"),
    }
    assert!(direct.action.cluster(0).is_none());

    match &route(&t, "/empty").action {
        Action::Direct { status, body } => {
            assert_eq!(*status, 204);
            assert!(body.is_empty());
        }
        other => panic!("expected a direct response, got {other:?}"),
    }

    let redirect = route(&t, "/redirect");
    match &redirect.action {
        Action::Redirect(rd) => {
            assert_eq!(rd.scheme.as_deref(), Some("https"));
            assert_eq!(rd.host.as_deref(), Some("www.example.com:8443"));
            assert_eq!(rd.path.as_deref(), Some("/new"));
            assert_eq!(rd.status, 301);
        }
        other => panic!("expected a redirect, got {other:?}"),
    }
    assert!(redirect.action.cluster(7).is_none());

    match &route(&t, "/redirect-default").action {
        Action::Redirect(rd) => {
            assert_eq!(
                (rd.scheme.as_deref(), rd.host.as_deref(), rd.path.as_deref()),
                (None, None, None)
            );
            assert_eq!(rd.status, 302, "302 is the default");
        }
        other => panic!("expected a redirect, got {other:?}"),
    }
}

#[test]
fn forwarding_modifiers() {
    let t = table(ACTIONS, "t");
    let r = route(&t, "/single/x");
    assert!(matches!(&r.matcher.path, PathMatch::Prefix(p) if p == "/single/"));
    assert_eq!(r.prefix_rewrite.as_deref(), Some("/"));
    assert_eq!(r.timeout, Some(Duration::from_secs(2)));
    assert_eq!(
        r.request_headers.add,
        vec![("x-added".to_string(), "yes".to_string())]
    );
    assert_eq!(r.request_headers.remove, vec!["x-drop".to_string()]);
    assert!(r.request_headers.removes("X-DROP"));
    assert!(!r.request_headers.removes("x-added"));
    assert!(!r.request_headers.is_empty());
    assert!(r.response_headers.removes("server"));
    assert!(r.response_headers.add.is_empty());

    // `timeout: 0s` on a route means "no override".
    let r = route(&t, "/no-timeout");
    assert_eq!(r.timeout, None);
    assert!(r.request_headers.is_empty() && r.response_headers.is_empty());
}

#[test]

fn weighted_split_with_huge_weights() {
    let yaml = r#"
clusters:
  - name: a
    endpoints: ["127.0.0.1:9001"]
  - name: b
    endpoints: ["127.0.0.1:9002"]
routes:
  t:
    - domains: ["*"]
      routes:
        - weighted: [{cluster: a, weight: 3000000000}, {cluster: b, weight: 3000000000}]
"#;
    let spec = ConfigSpec::from_yaml(yaml).expect("yaml");
    // Either refuse the config, or split 50/50 over uniform picks.
    let Ok(snap) = compile(&spec, None) else {
        return;
    };
    let action = &route(&snap.route_tables["t"], "/").action;
    // 1000 picks spread evenly over the whole u32 range.
    let step = u32::MAX / 1000;
    let to_a = (0..1000)
        .filter(|i| &*action.cluster(i * step).unwrap().name == "a")
        .count();
    assert!(
        (450..=550).contains(&to_a),
        "{to_a} of 1000 uniform picks went to a, expected ~500"
    );
}
