//! `tls:` of listeners and clusters, and the authorization `policies:` (the serde shapes; see
//! `snapshot::compile` for how they are checked and built into rustls configs and rules).

use serde::{Deserialize, Serialize};

/// How a listener terminates TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plain TLS termination with configured certificates (edge use); SNI picks the certificate.
    #[default]
    Server,
    /// Mutual TLS: the proxy presents its own SVID (`identity:`), requires a client SVID that
    /// chains to the trust bundle and admits only SPIFFE IDs matching `allow`.
    Mutual,
}

/// `listeners[].tls`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerTlsSpec {
    pub mode: TlsMode,
    /// `mode: server`: certificate chains with their keys (PEM files). The client's SNI picks the
    /// one whose DNS names (SAN) match (exact, then `*.` wildcard); the first one is the default.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateSpec>,
    /// `mode: server`: require a client certificate that chains to one of these CA
    /// certificates (PEM file): mTLS with an existing PKI, no SPIFFE ID needed (a SPIFFE ID in
    /// the certificate is still available to policies and routing). Off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<String>,
    /// `mode: mutual`: SPIFFE IDs admitted: exact (`spiffe://td/ns/a/sa/b`) or every service
    /// account of a namespace (`spiffe://td/ns/a/sa/*`). Required (non-empty) in mutual mode.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// `mode: mutual`: request header carrying the peer identity to the upstream, in the
    /// `x-forwarded-client-cert` format (`By=<this proxy's id>;URI=<peer id>`). Any value the
    /// client sent under this name is removed first. Default `x-forwarded-client-cert`; an
    /// empty string turns it off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_header: Option<String>,
}

/// A certificate chain (leaf first) and its private key, PEM files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSpec {
    pub cert: String,
    pub key: String,
}

/// `clusters[].tls`: originate mutual TLS to the endpoints with this proxy's SVID.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTlsSpec {
    /// The SPIFFE ID every endpoint must present (its URI SAN); the chain must lead to the trust
    /// bundle. The DNS name is not checked.
    pub spiffe_id: String,
    /// SNI sent in the ClientHello. Default: none (IP endpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyAction {
    Allow,
    #[default]
    Deny,
}

/// `policies[]`: an authorization policy, referred to by name from a listener (`policy:`) or a
/// route (`policy:`). Rules are tried in order; the first whose conditions all hold decides.
/// When none holds, `default` decides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub name: String,
    #[serde(default)]
    pub rules: Vec<PolicyRuleSpec>,
    /// Decision when no rule holds. Default `deny`.
    #[serde(default)]
    pub default: PolicyAction,
}

/// One rule: every condition given must hold (an absent condition holds for everything).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRuleSpec {
    pub action: PolicyAction,
    /// Peer SPIFFE IDs (exact or `.../sa/*`). A connection without a peer identity (no mTLS)
    /// matches no principal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    /// Request paths: exact (`/healthz`) or prefix (`/api/*`). HTTP only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Request methods (`GET`, ...). HTTP only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
}
