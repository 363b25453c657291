//! The per-method rules of [`Access::authorize`], as a table.

use tonic::Code;

use super::*;

const TOKEN: &str = "k3J9qZx7LmP2vR8sT4wY6uB1nC5dF0gH";
const ADMIN: &str = "/shoal.admin.v1.AdminService/Apply";
const ROTATE: &str = "/shoal.ca.v1.CaService/RotateRoot";
const REFLECT: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";

fn mtls() -> Access {
    Access::Mtls {
        allow: vec!["spiffe://example.org/ops/*".parse().unwrap()],
        tokens: JoinTokens::parse("t", &format!("{TOKEN} spiffe://example.org/ns/web/sa/*\n"))
            .unwrap(),
    }
}

fn peer(id: Option<&str>) -> PeerInfo {
    PeerInfo {
        addr: Some("10.0.0.9:5555".parse().unwrap()),
        id: id.map(|s| s.parse().unwrap()),
    }
}

fn only(pattern: &str, caller: &str) -> Result<Option<CsrGrant>, Code> {
    Ok(Some(CsrGrant::Only {
        allowed: vec![pattern.parse().unwrap()],
        caller: caller.into(),
    }))
}

#[test]
fn calls_are_authorized_by_method_and_caller() {
    let ops = Some("spiffe://example.org/ops/alice");
    const WEB: &str = "spiffe://example.org/ns/web/sa/a";
    let web = Some(WEB);
    let any = Ok(Some(CsrGrant::Any));
    let open = Ok(None);
    let unauth = Err(Code::Unauthenticated);
    let denied = Err(Code::PermissionDenied);
    let cases: Vec<(
        &str,
        Option<&str>,
        Option<&str>,
        Result<Option<CsrGrant>, Code>,
    )> = vec![
        // An allowed peer may call everything, and get any ID signed.
        (ADMIN, ops, None, any.clone()),
        (ROTATE, ops, None, any.clone()),
        (REFLECT, ops, None, any.clone()),
        (SIGN_CSR, ops, None, any.clone()),
        // Another SVID: its own ID only, nothing else; a token does not widen it.
        (SIGN_CSR, web, None, only(WEB, WEB)),
        (SIGN_CSR, web, Some(TOKEN), only(WEB, WEB)),
        (ADMIN, web, None, denied.clone()),
        (ROTATE, web, Some(TOKEN), denied.clone()),
        (REFLECT, web, None, denied),
        // No certificate: a good token gets its patterns; a bad or no token nothing.
        (
            SIGN_CSR,
            None,
            Some(TOKEN),
            only("spiffe://example.org/ns/web/sa/*", "join token (line 1)"),
        ),
        (
            SIGN_CSR,
            None,
            Some("k3J9qZx7LmP2vR8sT4wY6uB1nC5dF0gX"),
            unauth.clone(),
        ),
        (SIGN_CSR, None, None, unauth.clone()),
        (ADMIN, None, Some(TOKEN), unauth.clone()),
        (ROTATE, None, None, unauth),
        // The bundle is public.
        (GET_TRUST_BUNDLE, None, None, open.clone()),
        (GET_TRUST_BUNDLE, web, None, open),
    ];
    let access = mtls();
    for (method, id, bearer, want) in cases {
        let got = access
            .authorize(method, Some(&peer(id)), bearer)
            .map_err(|s| s.code());
        assert_eq!(
            got,
            want,
            "{method} as {id:?} with token {}",
            bearer.is_some()
        );
    }
    // Loopback: everything, any CSR.
    for method in [ADMIN, ROTATE, SIGN_CSR, REFLECT] {
        assert_eq!(
            Access::Loopback.authorize(method, None, None).unwrap(),
            Some(CsrGrant::Any)
        );
    }
}

#[test]
fn a_refusal_never_echoes_the_token() {
    let access = mtls();
    for bearer in [TOKEN, "k3J9qZx7LmP2vR8sT4wY6uB1nC5dF0gX"] {
        let err = access
            .authorize(ADMIN, Some(&peer(None)), Some(bearer))
            .unwrap_err();
        assert!(!err.message().contains(bearer), "{}", err.message());
        let err = access
            .authorize(SIGN_CSR, None, Some("k3J9qZx7LmP2vR8sT4wY6uB1nC5dF0gX"))
            .unwrap_err();
        assert!(!err.message().contains("k3J9"), "{}", err.message());
    }
}

#[test]
fn the_bearer_header_is_taken_out() {
    let mut h = http::HeaderMap::new();
    h.insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    assert_eq!(take_bearer(&mut h).as_deref(), Some(TOKEN));
    assert!(h.is_empty());
    h.insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
    assert_eq!(take_bearer(&mut h), None);
    assert!(h.is_empty(), "removed even when not a bearer token");
}
