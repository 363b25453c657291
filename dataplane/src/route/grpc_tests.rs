//! Table tests of gRPC route matches (`match: { grpc: { service, method } }`), matching on
//! `http::HeaderMap` as the HTTP/2 handler does.

use http::HeaderMap;

use super::*;
use crate::config::ConfigSpec;
use crate::snapshot::compile;

const GRPC: &str = r#"
clusters:
  - name: a
    endpoints: ["127.0.0.1:9001"]
routes:
  t:
    - domains: ["*"]
      routes:
        - match: {grpc: {service: pkg.Echo, method: Unary}}
          cluster: a
        - match: {grpc: {service: pkg.Echo}}
          cluster: a
        - match: {grpc: {service: other.v1.Svc, method: Call}, headers: {x-tenant: "t1"}}
          cluster: a
        - match: {prefix: /}
          cluster: a
"#;

fn headers(list: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in list {
        h.append(*n, http::HeaderValue::from_static(v));
    }
    h
}

#[test]
fn grpc_matches() {
    let spec = ConfigSpec::from_yaml(GRPC).unwrap();
    let snap = compile(&spec, None).unwrap_or_else(|e| panic!("{e:#?}"));
    let t = &snap.route_tables["t"];
    let grpc = [("content-type", "application/grpc")];
    let cases: &[(&str, &[(&'static str, &'static str)], &str)] = &[
        ("/pkg.Echo/Unary", &grpc, "t[0].routes[0]"),
        (
            "/pkg.Echo/Unary",
            &[("content-type", "application/grpc+proto")],
            "t[0].routes[0]",
        ),
        (
            "/pkg.Echo/Unary",
            &[("content-type", "Application/GRPC;x=y")],
            "t[0].routes[0]",
        ),
        // Another method of the service.
        ("/pkg.Echo/Bidi", &grpc, "t[0].routes[1]"),
        // Not gRPC (content-type missing or different): falls through to the prefix route.
        ("/pkg.Echo/Unary", &[], "t[0].routes[3]"),
        (
            "/pkg.Echo/Unary",
            &[("content-type", "application/json")],
            "t[0].routes[3]",
        ),
        (
            "/pkg.Echo/Unary",
            &[("content-type", "application/grpcx")],
            "t[0].routes[3]",
        ),
        // Service names are whole segments and case-sensitive.
        ("/pkg.EchoX/Unary", &grpc, "t[0].routes[3]"),
        ("/pkg.echo/Unary", &grpc, "t[0].routes[3]"),
        ("/pkg.Echo", &grpc, "t[0].routes[3]"),
        // Method match is exact.
        ("/other.v1.Svc/Call", &grpc, "t[0].routes[3]"),
        (
            "/other.v1.Svc/Call",
            &[("content-type", "application/grpc"), ("x-tenant", "t1")],
            "t[0].routes[2]",
        ),
        (
            "/other.v1.Svc/CallX",
            &[("content-type", "application/grpc"), ("x-tenant", "t1")],
            "t[0].routes[3]",
        ),
    ];
    for (path, hs, want) in cases {
        let h = headers(hs);
        let req = RequestHead {
            method: "POST",
            host: "x",
            path,
            headers: &h,
            peer: None,
        };
        assert_eq!(
            find(t, &req).map(|r| r.id.to_string()).as_deref(),
            Some(*want),
            "{path} {hs:?}"
        );
    }
}

#[test]
fn grpc_match_validation_names_fields() {
    let yaml = r#"
clusters:
  - name: a
    endpoints: ["127.0.0.1:9001"]
routes:
  t:
    - domains: ["*"]
      routes:
        - match: {grpc: {service: "bad/name"}}
          cluster: a
        - match: {grpc: {service: pkg.S, method: "a.b"}}
          cluster: a
        - match: {grpc: {service: pkg.S}, prefix: /x}
          cluster: a
        - match: {grpc: {service: ""}}
          cluster: a
"#;
    let errs = compile(&ConfigSpec::from_yaml(yaml).unwrap(), None).unwrap_err();
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "routes.t[0].routes[0].match.grpc.service",
            "routes.t[0].routes[1].match.grpc.method",
            "routes.t[0].routes[2].match",
            "routes.t[0].routes[3].match.grpc.service",
        ],
        "{errs:#?}"
    );
}

#[test]
fn is_grpc_content_types() {
    for (ct, want) in [
        (Some(&b"application/grpc"[..]), true),
        (Some(b"application/grpc+proto"), true),
        (Some(b"application/grpc; charset=x"), true),
        (Some(b"application/grpc-web"), false),
        (Some(b"application/json"), false),
        (Some(b"application/grp"), false),
        (None, false),
    ] {
        assert_eq!(is_grpc(ct), want, "{ct:?}");
    }
}
