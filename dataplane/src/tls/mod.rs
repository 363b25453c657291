//! TLS for the data plane: rustls (ring) configurations built from a SPIFFE identity (SVID) and
//! a trust bundle, with verifiers that authenticate peers by SPIFFE ID instead of DNS name.
//!
//! - [`SpiffeServerVerifier`] (outbound, client side): the server's chain must lead to a root in
//!   the bundle, be valid now, carry EKU serverAuth, and its URI SAN must be the SPIFFE ID the
//!   cluster expects. The DNS name passed to `connect` is only SNI.
//! - [`SpiffeClientVerifier`] (inbound, server side): rustls' `WebPkiClientVerifier` checks the
//!   chain, validity and EKU clientAuth; then the URI SAN must match one of the allow patterns.
//! - [`mutual_server_config`] / [`mutual_client_config`] assemble ready `Arc<ServerConfig>` /
//!   `Arc<ClientConfig>` that read the rotating [`Credentials`] at every handshake: rotating the
//!   SVID or the bundle is a swap there, no config is rebuilt. [`edge_server_config`] serves
//!   files' certificates chosen by SNI.
//! - The admin API's flavours: [`optional_client_server_config`] (a client SVID requested, not
//!   required; any SPIFFE ID, authorized per call) and [`spiffe_client_config`] (the server
//!   accepted by a [`ServerId`], e.g. any ID of a trust domain; a client SVID or none).
//!
//! The peer identity of an established connection is [`peer_spiffe_id`] of its certificates.

mod creds;
mod verify;

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use shoal_ca::{IdPattern, SpiffeId, Svid, TrustBundle};

pub use creds::{Credentials, CurrentSvid, SvidResolver, Trust};
pub use verify::{
    ServerId, SpiffeClientVerifier, SpiffeServerVerifier, peer_spiffe_id, spiffe_id_of,
};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the SVID has no private key")]
    NoKey,
    #[error("trust bundle: {0}")]
    Bundle(String),
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(String),
}

/// The crypto provider used everywhere (ring: no aws-lc build).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The bundle's roots as a rustls root store.
pub fn root_store(bundle: &TrustBundle) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for der in bundle.roots_der() {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| TlsError::Bundle(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsError::Bundle("no roots".into()));
    }
    Ok(Arc::new(roots))
}

/// A server config presenting `svid` and requiring a client SVID that chains to `bundle` and
/// matches one of `allow` (fixed credentials; the proxy uses [`mutual_server_config`]).
pub fn server_config(
    svid: &Svid,
    bundle: &TrustBundle,
    allow: Vec<IdPattern>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    mutual_server_config(Credentials::with(svid, bundle)?, allow, alpn)
}

/// A client config presenting `svid` and accepting only a server whose SVID is `expected`
/// (fixed credentials; the proxy uses [`mutual_client_config`]).
pub fn client_config(
    svid: &Svid,
    bundle: &TrustBundle,
    expected: SpiffeId,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsError> {
    mutual_client_config(Credentials::with(svid, bundle)?, expected, alpn)
}

/// The server side of mutual TLS with rotating credentials: presents the current SVID of
/// `creds`, requires a client SVID chaining to its current bundle and matching `allow`.
/// Session resumption is off (it would share a locked cache between workers; a resumed
/// session would also skip the allow check on a rotated bundle).
pub fn mutual_server_config(
    creds: Arc<Credentials>,
    allow: Vec<IdPattern>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let verifier = SpiffeClientVerifier::new(creds.clone(), allow, provider.clone());
    svid_server_config(creds, verifier, provider, alpn)
}

/// A server config presenting the current SVID of `creds`, clients checked by `verifier`,
/// no session resumption.
fn svid_server_config(
    creds: Arc<Credentials>,
    verifier: SpiffeClientVerifier,
    provider: Arc<rustls::crypto::CryptoProvider>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(SvidResolver(creds)));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// The client side of mutual TLS with rotating credentials: presents the current SVID of
/// `creds` and accepts only a server whose SVID is `expected`.
pub fn mutual_client_config(
    creds: Arc<Credentials>,
    expected: SpiffeId,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsError> {
    spiffe_client_config(creds.clone(), ServerId::Exact(expected), Some(creds), alpn)
}

/// A client config verifying the server against the bundle current in `trust` and by
/// `expected`, presenting the current SVID of `present` (no client certificate when `None`).
pub fn spiffe_client_config(
    trust: Arc<Credentials>,
    expected: ServerId,
    present: Option<Arc<Credentials>>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = SpiffeServerVerifier::accepting(trust, expected, provider.clone());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match present {
        Some(creds) => builder.with_client_cert_resolver(Arc::new(SvidResolver(creds))),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The admin API's server side: presents the current SVID of `creds` and requests, without
/// requiring, a client SVID (chain to the current bundle, EKU clientAuth, any SPIFFE ID).
/// Who may call what is decided per call by the peer's ID (or a join token without one).
pub fn optional_client_server_config(
    creds: Arc<Credentials>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let verifier = SpiffeClientVerifier::optional(creds.clone(), provider.clone());
    svid_server_config(creds, verifier, provider, alpn)
}

/// Plain TLS termination (edge): `certs` are (chain, key) pairs; SNI picks the first whose DNS
/// SANs match (exact, then `*.` wildcard), else the first pair.
///
/// With `client_roots`, a client certificate chaining to them is required (webpki: chain,
/// validity, EKU clientAuth).
pub fn edge_server_config(
    certs: Vec<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    alpn: &[&[u8]],
    client_roots: Option<Arc<RootCertStore>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let mut entries = Vec::with_capacity(certs.len());
    for (chain, key) in certs {
        let names = chain.first().map(|c| dns_names(c)).unwrap_or_default();
        let signer = provider.key_provider.load_private_key(key)?;
        entries.push((names, Arc::new(CertifiedKey::new(chain, signer))));
    }
    if entries.is_empty() {
        return Err(TlsError::NoKey);
    }
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_roots {
        None => builder.with_no_client_auth(),
        Some(roots) => builder.with_client_cert_verifier(
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?,
        ),
    };
    let mut config = builder.with_cert_resolver(Arc::new(SniResolver { entries }));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// The DNS SANs of a certificate, lowercased.
fn dns_names(der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// Chooses the certificate by SNI (see [`edge_server_config`]).
#[derive(Debug)]
struct SniResolver {
    entries: Vec<(Vec<String>, Arc<CertifiedKey>)>,
}

impl SniResolver {
    fn pick(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        if let Some(sni) = sni {
            let sni = sni.to_ascii_lowercase();
            if let Some((_, k)) = self.entries.iter().find(|(n, _)| n.contains(&sni)) {
                return k.clone();
            }
            if let Some((_, rest)) = sni.split_once('.') {
                let wild = format!("*.{rest}");
                if let Some((_, k)) = self.entries.iter().find(|(n, _)| n.contains(&wild)) {
                    return k.clone();
                }
            }
        }
        self.entries[0].1.clone()
    }
}

impl rustls::server::ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

/// Reads the CA certificates of a PEM file as a root store.
pub fn load_roots(path: &std::path::Path) -> Result<Arc<RootCertStore>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))?
    {
        let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate", path.display()));
    }
    Ok(Arc::new(roots))
}

/// Reads a PEM certificate chain and private key (PKCS#8, PKCS#1 or SEC1) from files.
pub fn load_pem_files(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    use rustls::pki_types::pem::PemObject;
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    Ok((chain, key))
}

#[cfg(test)]
mod tests;
