//! Checks of the process settings (`admin`, `state_dir`, `identity`, `ca`): read at start
//! only, but validated with the rest of the config so `shoal validate` and every apply name
//! a bad one by its field path.

use std::net::SocketAddr;

use shoal_ca::IdPattern;

use crate::config::{AdminSpec, ConfigSpec};

use super::Errors;

/// `admin`, `state_dir`, `identity` and `ca`: read at start only, but checked with everything
/// else.
pub(super) fn check_process_settings(spec: &ConfigSpec, errs: &mut Errors) {
    if let Some(admin) = &spec.admin {
        check_admin(admin, spec.identity.is_some(), errs);
    }
    if let Some(m) = spec.admin.as_ref().and_then(|a| a.metrics.as_deref())
        && m.parse::<SocketAddr>().is_err()
    {
        errs.push("admin.metrics", format!("{m:?} is not an ip:port address"));
    }
    if spec
        .state_dir
        .as_deref()
        .is_some_and(|d| d.trim().is_empty())
    {
        errs.push("state_dir", "must be a directory path");
    }
    if let Some(ca) = &spec.ca {
        if ca.remote.parse::<SocketAddr>().is_err() {
            errs.push(
                "ca.remote",
                format!("{:?} is not an ip:port address", ca.remote),
            );
        }
        if ca.bundle_refresh.get().is_zero() {
            errs.push("ca.bundle_refresh", "must be greater than 0");
        }
        for (field, path) in [
            ("ca.token_file", &ca.token_file),
            ("ca.trust_bundle", &ca.trust_bundle),
        ] {
            if path.as_deref().is_some_and(|p| p.trim().is_empty()) {
                errs.push(field, "must be a file path");
            }
        }
        if ca.token_file.is_some() && ca.trust_bundle.is_none() {
            errs.push(
                "ca.token_file",
                "needs `ca.trust_bundle`: the join token is only sent over TLS",
            );
        }
        if let Ok(a) = ca.remote.parse::<SocketAddr>()
            && !a.ip().is_loopback()
            && ca.trust_bundle.is_none()
        {
            errs.push(
                "ca.trust_bundle",
                format!(
                    "required: ca.remote {a} is not loopback, so the CA is reached over TLS and \
                     verified with this bundle"
                ),
            );
        }
    }
    if let Some(id) = &spec.identity {
        if !id.id.starts_with("spiffe://") {
            errs.push("identity.id", format!("{:?} is not a spiffe:// ID", id.id));
        }
        if spec.ca.is_none() && spec.state_dir.is_none() {
            errs.push(
                "identity",
                "needs a CA: `ca: { remote: ADDR }`, or `state_dir` to hold a local one",
            );
        }
        if let Some(ttl) = id.ttl
            && ttl.get() < std::time::Duration::from_secs(2)
        {
            errs.push("identity.ttl", "must be at least 2s");
        }
    }
}

/// `admin`: addresses, and the mTLS settings a non-loopback `grpc` needs.
fn check_admin(admin: &AdminSpec, identity: bool, errs: &mut Errors) {
    if let Some(grpc) = admin.grpc.as_deref() {
        match grpc.parse::<SocketAddr>() {
            Err(_) => errs.push("admin.grpc", format!("{grpc:?} is not an ip:port address")),
            Ok(a) if !a.ip().is_loopback() => {
                if !identity {
                    errs.push(
                        "admin.grpc",
                        format!(
                            "{a} is not loopback: the admin API then serves mTLS with this \
                             proxy's SVID, which needs `identity`"
                        ),
                    );
                }
                if admin.allow.is_empty() {
                    errs.push(
                        "admin.allow",
                        format!(
                            "required: admin.grpc {a} is not loopback; list the SPIFFE IDs \
                             that may call the admin API"
                        ),
                    );
                }
            }
            Ok(_) => {}
        }
    }
    for (i, p) in admin.allow.iter().enumerate() {
        if let Err(e) = p.parse::<IdPattern>() {
            errs.push(
                format!("admin.allow[{i}]"),
                format!("{p:?} is not a SPIFFE ID pattern: {e}"),
            );
        }
    }
    if admin
        .join_tokens
        .as_deref()
        .is_some_and(|p| p.trim().is_empty())
    {
        errs.push("admin.join_tokens", "must be a file path");
    }
}
