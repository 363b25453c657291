//! The proxy's rotating TLS material, shared by every worker: its own SVID (as a ready rustls
//! `CertifiedKey`) and the trust bundle (roots plus the webpki client verifier built from them).
//!
//! The identity agent (admin thread) calls [`Credentials::install_svid`] /
//! [`Credentials::install_bundle`]; rustls reads the current values at every handshake through
//! [`SvidResolver`] and the SPIFFE verifiers. A swap never touches an established connection, and
//! readers never lock (arc-swap).

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::RootCertStore;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use shoal_ca::{OffsetDateTime, SpiffeId, Svid, TrustBundle};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{TlsError, provider};

/// This proxy's current SVID, ready for rustls.
pub struct CurrentSvid {
    pub key: Arc<CertifiedKey>,
    pub id: SpiffeId,
    pub serial: String,
    pub not_after: OffsetDateTime,
}

/// The current trust bundle, ready for rustls.
pub struct Trust {
    pub roots: Arc<RootCertStore>,
    /// webpki's client verifier over `roots` (chain, validity, EKU clientAuth).
    pub client: Arc<dyn ClientCertVerifier>,
    /// `(fingerprint, not_after)` of every root, for expiry metrics and warnings.
    pub root_expiry: Vec<(String, OffsetDateTime)>,
}

/// See the module docs.
#[derive(Default)]
pub struct Credentials {
    svid: ArcSwapOption<CurrentSvid>,
    trust: ArcSwapOption<Trust>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("svid", &self.svid().map(|s| s.id.to_string()))
            .field("roots", &self.trust().map(|t| t.root_expiry.len()))
            .finish()
    }
}

impl Credentials {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Credentials holding `svid` and `bundle` (tests and one-off configs).
    pub fn with(svid: &Svid, bundle: &TrustBundle) -> Result<Arc<Self>, TlsError> {
        let c = Self::new();
        c.install_svid(svid)?;
        c.install_bundle(bundle)?;
        Ok(c)
    }

    /// Makes `svid` the certificate of every new handshake (server and client side).
    pub fn install_svid(&self, svid: &Svid) -> Result<(), TlsError> {
        let key = svid.key().ok_or(TlsError::NoKey)?;
        let chain: Vec<CertificateDer<'static>> = svid
            .chain_der()
            .iter()
            .map(|d| CertificateDer::from(d.clone()))
            .collect();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec()));
        let signer = provider().key_provider.load_private_key(key)?;
        self.svid.store(Some(Arc::new(CurrentSvid {
            key: Arc::new(CertifiedKey::new(chain, signer)),
            id: svid.spiffe_id().clone(),
            serial: svid.serial().to_string(),
            not_after: svid.not_after(),
        })));
        Ok(())
    }

    /// Makes `bundle` the trust anchors of every new handshake.
    pub fn install_bundle(&self, bundle: &TrustBundle) -> Result<(), TlsError> {
        let roots = super::root_store(bundle)?;
        let client = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let root_expiry = bundle
            .roots_der()
            .iter()
            .zip(bundle.fingerprints())
            .filter_map(|(der, fp)| {
                let (_, cert) = X509Certificate::from_der(der).ok()?;
                let secs = cert.validity().not_after.timestamp();
                Some((fp, OffsetDateTime::from_unix_timestamp(secs).ok()?))
            })
            .collect();
        self.trust.store(Some(Arc::new(Trust {
            roots,
            client,
            root_expiry,
        })));
        Ok(())
    }

    pub fn svid(&self) -> Option<Arc<CurrentSvid>> {
        self.svid.load_full()
    }

    pub fn trust(&self) -> Option<Arc<Trust>> {
        self.trust.load_full()
    }

    /// Whether an SVID valid now and a bundle are installed.
    pub fn ready(&self) -> bool {
        self.trust.load().is_some()
            && self
                .svid
                .load()
                .as_ref()
                .is_some_and(|s| s.not_after > OffsetDateTime::now_utc())
    }
}

/// Presents the current SVID (server and client side).
#[derive(Debug)]
pub struct SvidResolver(pub Arc<Credentials>);

impl ResolvesServerCert for SvidResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.svid.load().as_ref().map(|s| s.key.clone())
    }
}

impl ResolvesClientCert for SvidResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.svid.load().as_ref().map(|s| s.key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
