//! The route index must give exactly the linear scan's answer (first match wins): a table of
//! ordering cases through `find`, and random tables checked against `find_linear`.

use std::sync::Arc;

use regex::Regex;

use super::tests::{Case, run_cases, table};
use super::*;

/// Prefix routes before exact ones, a regex in between, header/method-conditioned routes and a
/// path-less route: the index visits them through different lists, the answer must not change.
const ORDER: &str = r#"
clusters:
  - name: a
    endpoints: ["127.0.0.1:9001"]
routes:
  t:
    - domains: ["*"]
      routes:
        - match: {prefix: /api/, headers: {x-canary: "1"}}         # 0
          cluster: a
        - match: {prefix: /api/v1/}                                 # 1
          cluster: a
        - match: {regex: "/api/v[0-9]+/users"}                      # 2
          cluster: a
        - match: {path: /api/v1/users}                              # 3: shadowed by 1
          cluster: a
        - match: {path: /api/v2/users}                              # 4: shadowed by 2
          cluster: a
        - match: {path: /api/v2/items, methods: [POST]}             # 5
          cluster: a
        - match: {prefix: /api/v2/, headers: {x-env: {present: true}}}  # 6
          cluster: a
        - match: {methods: [DELETE]}                                 # 7: any path
          cluster: a
        - match: {path: /api/v2/items}                              # 8
          cluster: a
        - match: {path: /dup, headers: {x-a: "1"}}                  # 9
          cluster: a
        - match: {path: /dup}                                       # 10
          cluster: a
        - match: {path: /dup}                                       # 11: shadowed by 10
          cluster: a
        - match: {prefix: /api}                                     # 12: no slash, /apix too
          cluster: a
        - match: {prefix: /a}                                       # 13
          cluster: a
        - match: {path: /}                                          # 14
          cluster: a
        - match: {prefix: /}                                        # 15: catch-all
          cluster: a
        - match: {path: /never}                                     # 16: after the catch-all
          cluster: a
"#;

#[test]
fn index_keeps_first_match_order() {
    let t = table(ORDER, "t");
    let r = |i: usize| Some(format!("t[0].routes[{i}]"));
    let ids: Vec<Option<String>> = (0..17).map(r).collect();
    let id = |i: usize| ids[i].as_deref();
    let h = "h";
    let cases: &[Case<'_>] = &[
        (h, "GET", "/api/v1/users", &[("x-canary", "1")], id(0)),
        (h, "GET", "/api/v9/users", &[("x-canary", "1")], id(0)),
        // The earlier prefix beats the later exact path.
        (h, "GET", "/api/v1/users", &[], id(1)),
        (h, "GET", "/api/v1/", &[], id(1)),
        // The regex sits between the prefix and the exact path.
        (h, "GET", "/api/v2/users", &[], id(2)),
        (h, "GET", "/api/v3/users", &[], id(2)),
        (h, "GET", "/api/v3/users/", &[], id(12)),
        // Method- and header-conditioned routes are skipped when they do not hold.
        (h, "POST", "/api/v2/items", &[], id(5)),
        (h, "GET", "/api/v2/items", &[("x-env", "")], id(6)),
        (h, "DELETE", "/api/v2/items", &[], id(7)),
        (h, "DELETE", "/api/v2/items", &[("x-env", "x")], id(6)),
        (h, "GET", "/api/v2/items", &[], id(8)),
        (h, "GET", "/api/v2/other", &[], id(12)),
        // Two routes on one exact path: the first whose headers hold.
        (h, "GET", "/dup", &[("x-a", "1")], id(9)),
        (h, "GET", "/dup", &[("x-a", "2")], id(10)),
        (h, "GET", "/dup/", &[], id(15)),
        // A prefix is a byte prefix, not a path segment.
        (h, "GET", "/api", &[], id(12)),
        (h, "GET", "/apix", &[], id(12)),
        (h, "GET", "/ap", &[], id(13)),
        (h, "GET", "/a", &[], id(13)),
        (h, "GET", "/", &[], id(14)),
        (h, "GET", "/b", &[], id(15)),
        (h, "GET", "/never", &[], id(15)),
        (h, "GET", "/é/ü", &[], id(15)),
        (h, "DELETE", "/never", &[], id(7)),
        // No route for a path without the leading slash, except the path-less one.
        (h, "GET", "", &[], None),
        (h, "GET", "api", &[], None),
        (h, "DELETE", "", &[], id(7)),
    ];
    run_cases(&t, cases);
}

const ALPHABET: &[&str] = &["/", "a", "b", "é"];
const REGEXES: &[&str] = &[
    "/a.*",
    "/[ab]+",
    ".*b",
    "/",
    "/é.*",
    "(?i)/ab.*",
    "/a|/b",
    "a|/b/",
    "/ab?",
    "/é|/éa",
];

fn random_str(rng: &mut fastrand::Rng, max: usize) -> String {
    (0..rng.usize(0..=max))
        .map(|_| ALPHABET[rng.usize(..ALPHABET.len())])
        .collect()
}

fn random_route(rng: &mut fastrand::Rng, i: usize) -> Route {
    // Half the prefixes and paths start with '/', as compiled configs do; the rest stress the trie.
    let slash = |rng: &mut fastrand::Rng, max: usize| {
        let s = random_str(rng, max);
        if rng.bool() { format!("/{s}") } else { s }
    };
    let path = match rng.u8(..10) {
        0 => PathMatch::Any,
        1..=3 => PathMatch::Exact(slash(rng, 4)),
        4..=7 => PathMatch::Prefix(slash(rng, 3)),
        _ => {
            let re = REGEXES[rng.usize(..REGEXES.len())];
            PathMatch::Regex(Regex::new(&format!("^(?:{re})$")).unwrap())
        }
    };
    let methods = match rng.u8(..6) {
        0 => vec!["GET".to_string()],
        1 => vec!["POST".to_string(), "PUT".to_string()],
        _ => Vec::new(),
    };
    let headers = match rng.u8(..6) {
        0 => vec![HeaderMatch {
            name: "x-h".into(),
            kind: HeaderMatchKind::Exact(b"1".to_vec()),
        }],
        1 => vec![HeaderMatch {
            name: "x-h".into(),
            kind: HeaderMatchKind::Present(false),
        }],
        _ => Vec::new(),
    };
    Route {
        policy: None,
        id: Arc::from(i.to_string()),
        matcher: RouteMatch {
            principals: Vec::new(),
            path,
            methods,
            headers,
            grpc: rng.u8(..8) == 0,
        },
        action: Action::Direct {
            status: 200,
            body: Arc::from(&b""[..]),
        },
        prefix_rewrite: None,
        timeout: None,
        request_headers: HeaderOps::default(),
        response_headers: HeaderOps::default(),
    }
}

#[test]
fn index_agrees_with_linear_scan_on_random_tables() {
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    let header_sets: &[&[(&str, &str)]] = &[
        &[],
        &[("x-h", "1")],
        &[("x-h", "2")],
        &[("content-type", "application/grpc")],
        &[("x-h", "1"), ("content-type", "application/grpc+proto")],
    ];
    let mut matched = 0;
    for table in 0..400 {
        let n = rng.usize(0..60);
        let vhost = VirtualHost::new((0..n).map(|i| random_route(&mut rng, i)).collect());
        for _ in 0..200 {
            let path = if rng.u8(..4) == 0 {
                random_str(&mut rng, 6)
            } else {
                format!("/{}", random_str(&mut rng, 5))
            };
            let method = ["GET", "POST", "DELETE"][rng.usize(..3)];
            let headers = header_sets[rng.usize(..header_sets.len())];
            let req = RequestHead {
                method,
                host: "h",
                path: &path,
                headers,
                peer: None,
            };
            let want = vhost.find_linear(&req).map(|r| r.id.clone());
            let got = vhost.find(&req).map(|r| r.id.clone());
            assert_eq!(
                got,
                want,
                "seed {seed}, table {table}: {method} {path:?} {headers:?}\nroutes: {:#?}",
                vhost.routes.iter().map(|r| &r.matcher).collect::<Vec<_>>()
            );
            matched += usize::from(want.is_some());
        }
    }
    // The generator must produce hits, or the comparison proves little.
    assert!(matched > 20_000, "only {matched} of 80000 lookups matched");
}

#[test]
fn empty_virtual_host_matches_nothing() {
    let vhost = VirtualHost::new(Vec::new());
    let headers: &[(&str, &str)] = &[];
    let req = RequestHead {
        method: "GET",
        host: "h",
        path: "/",
        headers,
        peer: None,
    };
    assert!(vhost.find(&req).is_none());
}
