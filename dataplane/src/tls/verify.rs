//! The SPIFFE certificate verifiers (see the module docs of `tls`).

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use shoal_ca::{IdPattern, SpiffeId, TrustDomain};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::Credentials;

/// The SPIFFE ID of a certificate: its single URI SAN, parsed. `None` when it has none, several,
/// or one that is not a valid SPIFFE ID.
pub fn spiffe_id_of(der: &[u8]) -> Option<SpiffeId> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut uris = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(u) => Some(*u),
        _ => None,
    });
    let first = uris.next()?;
    if uris.next().is_some() {
        return None;
    }
    first.parse().ok()
}

/// The peer's SPIFFE ID from the certificates of an established connection (leaf first).
pub fn peer_spiffe_id(certs: &[CertificateDer<'_>]) -> Option<SpiffeId> {
    certs.first().and_then(|c| spiffe_id_of(c))
}

/// The handshake-signature methods both verifiers share: checked with the crypto provider's
/// algorithms (`self.provider`), independent of which certificate is being verified.
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

fn no_bundle() -> Error {
    Error::General("no trust bundle installed yet".into())
}

fn id_error(msg: String) -> Error {
    Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        SpiffeMismatch(msg),
    ))))
}

#[derive(Debug)]
struct SpiffeMismatch(String);

impl fmt::Display for SpiffeMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpiffeMismatch {}

// === impl SpiffeServerVerifier ===

/// Which server SPIFFE IDs a client accepts (after the chain checked out against the bundle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerId {
    /// Exactly this ID (a cluster's `tls.spiffe_id`).
    Exact(SpiffeId),
    /// Any workload ID of this trust domain (a CA service, whose ID the client does not know
    /// in advance but which must belong to the domain it issues for).
    InTrustDomain(TrustDomain),
    /// Any SPIFFE ID (the bundle alone decides; `shoal ctl` with only `--ca-bundle`).
    Any,
}

impl ServerId {
    fn check(&self, id: &SpiffeId) -> Result<(), String> {
        match self {
            ServerId::Exact(expected) if id == expected => Ok(()),
            ServerId::Exact(expected) => Err(format!("server is {id}, expected {expected}")),
            ServerId::InTrustDomain(td) if id.trust_domain() == td && !id.path().is_empty() => {
                Ok(())
            }
            ServerId::InTrustDomain(td) => Err(format!(
                "server is {id}, expected a workload ID in trust domain {td}"
            )),
            ServerId::Any => Ok(()),
        }
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerId::Exact(id) => write!(f, "{id}"),
            ServerId::InTrustDomain(td) => write!(f, "any ID in {td}"),
            ServerId::Any => f.write_str("any SPIFFE ID"),
        }
    }
}

/// Verifies an upstream's certificate: chain to the bundle, validity, EKU serverAuth, and the
/// URI SAN accepted by a [`ServerId`] (usually the exact SPIFFE ID the cluster expects).
pub struct SpiffeServerVerifier {
    creds: Arc<Credentials>,
    expected: ServerId,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for SpiffeServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpiffeServerVerifier")
            .field("expected", &self.expected.to_string())
            .finish()
    }
}

impl SpiffeServerVerifier {
    /// Verifies against the trust bundle current in `creds` at each handshake.
    pub fn new(creds: Arc<Credentials>, expected: SpiffeId, provider: Arc<CryptoProvider>) -> Self {
        Self::accepting(creds, ServerId::Exact(expected), provider)
    }

    /// Like [`SpiffeServerVerifier::new`], accepting the server IDs `expected` describes.
    pub fn accepting(
        creds: Arc<Credentials>,
        expected: ServerId,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        Self {
            creds,
            expected,
            provider,
        }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let trust = self.creds.trust().ok_or_else(no_bundle)?;
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &trust.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        match spiffe_id_of(end_entity) {
            Some(id) => match self.expected.check(&id) {
                Ok(()) => Ok(ServerCertVerified::assertion()),
                Err(msg) => Err(id_error(msg)),
            },
            None => Err(id_error("server certificate has no SPIFFE ID".into())),
        }
    }

    handshake_signatures!();
}

// === impl SpiffeClientVerifier ===

/// Verifies a downstream client's certificate with webpki (chain, validity, EKU clientAuth),
/// then admits it only if its SPIFFE ID matches an allow pattern. The [`optional`] flavour
/// (the admin API) also admits clients without a certificate and any SPIFFE ID: whoever
/// serves the connection authorizes each request by the peer's ID.
///
/// [`optional`]: SpiffeClientVerifier::optional
pub struct SpiffeClientVerifier {
    creds: Arc<Credentials>,
    /// `None`: any SPIFFE ID.
    allow: Option<Vec<IdPattern>>,
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for SpiffeClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let allow: Option<Vec<String>> = self
            .allow
            .as_ref()
            .map(|a| a.iter().map(ToString::to_string).collect());
        f.debug_struct("SpiffeClientVerifier")
            .field("allow", &allow)
            .field("mandatory", &self.mandatory)
            .finish()
    }
}

impl SpiffeClientVerifier {
    /// Verifies against the trust bundle current in `creds` at each handshake.
    pub fn new(
        creds: Arc<Credentials>,
        allow: Vec<IdPattern>,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        Self {
            creds,
            allow: Some(allow),
            mandatory: true,
            provider,
        }
    }

    /// Requests a client certificate without requiring one; a certificate sent must verify
    /// (chain, validity, EKU clientAuth) and carry a SPIFFE ID, any ID.
    pub fn optional(creds: Arc<Credentials>, provider: Arc<CryptoProvider>) -> Self {
        Self {
            creds,
            allow: None,
            mandatory: false,
            provider,
        }
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The bundle rotates; hints are optional (clients send their SVID regardless).
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let trust = self.creds.trust().ok_or_else(no_bundle)?;
        trust
            .client
            .verify_client_cert(end_entity, intermediates, now)?;
        match spiffe_id_of(end_entity) {
            Some(id)
                if self
                    .allow
                    .as_ref()
                    .is_none_or(|allow| allow.iter().any(|p| p.matches(&id))) =>
            {
                Ok(ClientCertVerified::assertion())
            }
            Some(id) => Err(id_error(format!("client {id} is not allowed"))),
            None => Err(id_error("client certificate has no SPIFFE ID".into())),
        }
    }

    handshake_signatures!();

    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }
}
