//! Checks of the process settings (`admin`, `state_dir`, `identity`, `ca`): read at start
//! only, but validated with the rest of the config so `shoal validate` and every apply name
//! a bad one by its field path.

use std::net::SocketAddr;

use crate::config::ConfigSpec;

use super::Errors;

/// `admin`, `state_dir`, `identity` and `ca`: read at start only, but checked with everything
/// else.
pub(super) fn check_process_settings(spec: &ConfigSpec, errs: &mut Errors) {
    if let Some(grpc) = spec.admin.as_ref().and_then(|a| a.grpc.as_deref()) {
        match grpc.parse::<SocketAddr>() {
            Err(_) => errs.push("admin.grpc", format!("{grpc:?} is not an ip:port address")),
            Ok(a) if !a.ip().is_loopback() => errs.push(
                "admin.grpc",
                format!(
                    "{a} is not a loopback address: the admin API may listen elsewhere only \
                     with mTLS, which is not supported yet (issue 5 follow-up); use 127.0.0.1"
                ),
            ),
            Ok(_) => {}
        }
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
