//! TLS for the data plane: rustls (ring) configurations built from a SPIFFE identity (SVID) and
//! a trust bundle, with verifiers that authenticate peers by SPIFFE ID instead of DNS name.
//!
//! - [`SpiffeServerVerifier`] (outbound, client side): the server's chain must lead to a root in
//!   the bundle, be valid now, carry EKU serverAuth, and its URI SAN must be the SPIFFE ID the
//!   cluster expects. The DNS name passed to `connect` is only SNI.
//! - [`SpiffeClientVerifier`] (inbound, server side): rustls' `WebPkiClientVerifier` checks the
//!   chain, validity and EKU clientAuth; then the URI SAN must match one of the allow patterns.
//! - [`server_config`] / [`client_config`] assemble ready `Arc<ServerConfig>`/`Arc<ClientConfig>`;
//!   rotating an SVID or the bundle means building new ones and swapping them in.
//!
//! The peer identity of an established connection is [`peer_spiffe_id`] of its certificates.

mod verify;

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use shoal_ca::{IdPattern, SpiffeId, Svid, TrustBundle};

pub use verify::{SpiffeClientVerifier, SpiffeServerVerifier, peer_spiffe_id};

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

fn chain_and_key(
    svid: &Svid,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let key = svid.key().ok_or(TlsError::NoKey)?;
    let chain = svid
        .chain_der()
        .iter()
        .map(|d| CertificateDer::from(d.clone()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec()));
    Ok((chain, key))
}

/// A server config presenting `svid` and requiring a client SVID that chains to `bundle` and
/// matches one of `allow`.
pub fn server_config(
    svid: &Svid,
    bundle: &TrustBundle,
    allow: Vec<IdPattern>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let verifier = SpiffeClientVerifier::new(root_store(bundle)?, allow, provider.clone())?;
    let (chain, key) = chain_and_key(svid)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(chain, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client config presenting `svid` and accepting only a server whose SVID is `expected`.
pub fn client_config(
    svid: &Svid,
    bundle: &TrustBundle,
    expected: SpiffeId,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = SpiffeServerVerifier::new(root_store(bundle)?, expected, provider.clone());
    let (chain, key) = chain_and_key(svid)?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests;
