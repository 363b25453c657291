//! The process settings of [`super::ConfigSpec`]: `identity`, `ca` and `admin`. Read at start
//! only (a running process keeps the ones it started with), but validated with the rest of
//! the config (`snapshot::compile::settings`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::HumanDuration;

/// `identity:` the SVID this proxy holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {
    /// The SPIFFE ID to request, e.g. `spiffe://example.org/ns/default/sa/edge`.
    pub id: String,
    /// Requested lifetime; the CA caps it. Default: the CA's default (1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<HumanDuration>,
}

/// `ca:` the certificate authority this proxy asks for its SVID.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaSpec {
    /// `ip:port` of a shoal admin API serving `shoal.ca.v1.CaService`.
    pub remote: String,
    /// How often the trust bundle is fetched between SVID renewals, so a rotated root is
    /// trusted before peers present certificates from it. Default 30s; keep it well below the
    /// CA's root activation delay.
    #[serde(default = "default_bundle_refresh")]
    pub bundle_refresh: HumanDuration,
    /// A file holding the join token presented (as `authorization: Bearer`) to obtain the
    /// first SVID, before this proxy has one to authenticate with. The first non-empty,
    /// non-`#` line is the token. Needs `trust_bundle` (the token never travels in plaintext).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// A PEM trust bundle (the CA's roots, e.g. from `shoal ca bundle`) used to verify the CA
    /// server before this proxy holds its own bundle. With it the CA is reached over TLS (the
    /// server must present an SVID of `identity.id`'s trust domain); without it, in plaintext
    /// (loopback `remote` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_bundle: Option<String>,
}

fn default_bundle_refresh() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

impl CaSpec {
    /// `remote` with the default settings.
    pub fn remote(remote: String) -> Self {
        Self {
            remote,
            bundle_refresh: default_bundle_refresh(),
            token_file: None,
            trust_bundle: None,
        }
    }
}

/// `admin:` the admin API's settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSpec {
    /// `ip:port` of the gRPC admin API (e.g. `127.0.0.1:15000`; port 0 picks one). Off when
    /// absent. On a loopback address it is plaintext and every local caller may call
    /// everything. On any other address it is TLS, presenting this proxy's SVID (so it needs
    /// `identity`), and each call is authorized by the caller's client certificate
    /// (`allow`) or, for `SignCsr` only, a join token (`join_tokens`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<String>,
    /// `ip:port` of the HTTP health and metrics endpoints (`/healthz`, `/readyz`, `/metrics`,
    /// Prometheus text). Read-only, so any address is allowed. Off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    /// SPIFFE ID patterns (`spiffe://td/path` or `spiffe://td/prefix/*`) of the clients that
    /// may call everything on a non-loopback `grpc` (config, CA rotation, any CSR in the trust
    /// domain). Any other client with a valid SVID may only renew its own ID. Required (non
    /// empty) when `grpc` is not loopback.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// A file of bootstrap join tokens, read at start: one per line, `TOKEN PATTERN...`
    /// (`#` starts a comment). A caller without a certificate presenting a token (as
    /// `authorization: Bearer TOKEN`) may get a CSR signed for an ID its patterns match.
    /// Tokens are at least 32 characters. Only used on a non-loopback `grpc`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_tokens: Option<String>,
}
