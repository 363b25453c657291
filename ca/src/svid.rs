//! X.509 SVIDs: [`Svid`], what the CA hands out (leaf-first chain, optional private key,
//! validity, serial), and [`CertInfo`], a readable summary of any certificate PEM file
//! (`Svid::inspect`, used by `shoal ca inspect`).
//!
//! The private key is kept out of `Debug` output and never logged.

use std::fmt;

use ::time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;

use crate::error::{Error, Result};
use crate::spiffe::SpiffeId;
use crate::x509;

/// A private key in PKCS#8 form. `Debug` prints nothing of the key.
#[derive(Clone)]
pub struct PrivateKey {
    pem: String,
    pkcs8_der: Vec<u8>,
}

impl PrivateKey {
    pub(crate) fn from_key_pair(key: &rcgen::KeyPair) -> Self {
        PrivateKey {
            pem: key.serialize_pem(),
            pkcs8_der: key.serialize_der(),
        }
    }

    /// Parses a PKCS#8 PEM private key (as written by `shoal ca issue --out-key`).
    pub fn from_pem(pem: &str) -> Result<Self> {
        let key = rcgen::KeyPair::from_pem(pem).map_err(|_| {
            Error::Pem("not a supported PKCS#8 private key (details withheld)".into())
        })?;
        Ok(Self::from_key_pair(&key))
    }

    /// PKCS#8 PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// PKCS#8 DER, ready for `rustls::pki_types::PrivateKeyDer::Pkcs8`.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8_der
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey([redacted])")
    }
}

/// An X.509 SVID: a leaf certificate for one SPIFFE ID plus the intermediate that signed it.
#[derive(Debug, Clone)]
pub struct Svid {
    spiffe_id: SpiffeId,
    chain_der: Vec<Vec<u8>>,
    key: Option<PrivateKey>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    serial: String,
}

impl Svid {
    pub(crate) fn new(chain_der: Vec<Vec<u8>>, key: Option<PrivateKey>) -> Result<Self> {
        let leaf_der = chain_der
            .first()
            .ok_or_else(|| Error::Certificate("empty chain".into()))?;
        let leaf = x509::parse_cert(leaf_der)?;
        let spiffe_id = single_spiffe_id(&leaf)?;
        if let Some(key) = &key {
            let kp = rcgen::KeyPair::try_from(key.pkcs8_der())
                .map_err(|_| Error::Pem("unusable private key (details withheld)".into()))?;
            if leaf.public_key().subject_public_key.data.as_ref() != kp.public_key_raw() {
                return Err(Error::Certificate(
                    "the private key does not match the leaf certificate".into(),
                ));
            }
        }
        let validity = leaf.validity();
        Ok(Svid {
            spiffe_id,
            not_before: validity.not_before.to_datetime(),
            not_after: validity.not_after.to_datetime(),
            serial: x509::hex(leaf.raw_serial()),
            chain_der,
            key,
        })
    }

    /// Re-reads an SVID from a chain PEM (leaf first) and, optionally, its private key PEM.
    pub fn from_pem(chain_pem: &str, key_pem: Option<&str>) -> Result<Self> {
        let chain = x509::pem_to_certs(chain_pem)?;
        let key = key_pem.map(PrivateKey::from_pem).transpose()?;
        Self::new(chain, key)
    }

    /// The SPIFFE ID in the leaf's URI SAN.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// DER certificates, leaf first, then the intermediate.
    pub fn chain_der(&self) -> &[Vec<u8>] {
        &self.chain_der
    }

    /// The leaf certificate, DER.
    pub fn leaf_der(&self) -> &[u8] {
        self.chain_der
            .first()
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// PEM of the whole chain, leaf first: what goes into a `--out-cert` file.
    pub fn chain_pem(&self) -> String {
        x509::certs_to_pem(self.chain_der.iter().map(Vec::as_slice))
    }

    /// The private key, present only when the CA generated it (`Authority::issue`).
    pub fn key(&self) -> Option<&PrivateKey> {
        self.key.as_ref()
    }

    /// PKCS#8 PEM of the private key, when the CA generated it.
    pub fn key_pem(&self) -> Option<&str> {
        self.key.as_ref().map(PrivateKey::pem)
    }

    /// Start of validity.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// End of validity.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Serial number, lowercase hex.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// Summarises the certificate(s) in a PEM file; the first block is described in full,
    /// the others (its issuers) by subject, issuer and validity.
    pub fn inspect(pem: &str) -> Result<CertInfo> {
        let ders = x509::pem_to_certs(pem)?;
        let mut summaries = Vec::with_capacity(ders.len());
        let mut first = None;
        for der in &ders {
            let cert = x509::parse_cert(der)?;
            summaries.push(ChainEntry::of(&cert, der));
            if first.is_none() {
                first = Some(LeafDetails::of(&cert)?);
            }
        }
        let details = first.ok_or_else(|| Error::Pem("no certificate".into()))?;
        let mut chain = summaries.into_iter();
        let leaf = chain
            .next()
            .ok_or_else(|| Error::Pem("no certificate".into()))?;
        Ok(CertInfo {
            spiffe_id: details.spiffe_id,
            uri_sans: details.uri_sans,
            dns_sans: details.dns_sans,
            extended_key_usages: details.ekus,
            subject: leaf.subject,
            issuer: leaf.issuer,
            serial: leaf.serial,
            not_before: leaf.not_before,
            not_after: leaf.not_after,
            is_ca: leaf.is_ca,
            fingerprint: leaf.fingerprint,
            issuers: chain.collect(),
        })
    }
}

/// Requester side of [`crate::Authority::sign_csr`]: generates an ECDSA P-256 key and a
/// PKCS#10 CSR (PEM) whose only SAN is `id`. Keep the key; send the CSR; then rebuild the SVID
/// with [`Svid::from_pem`]`(chain, Some(key.pem()))`.
pub fn generate_csr(id: &SpiffeId) -> Result<(PrivateKey, String)> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names = vec![rcgen::SanType::URI(rcgen::string::Ia5String::try_from(
        id.to_string(),
    )?)];
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((PrivateKey::from_key_pair(&key), csr))
}

/// The only SPIFFE ID of an SVID leaf: exactly one URI SAN, which must parse.
fn single_spiffe_id(leaf: &X509Certificate<'_>) -> Result<SpiffeId> {
    let uris = x509::uri_sans(leaf)?;
    match uris.as_slice() {
        [one] => one.parse().map_err(|reason| Error::InvalidSpiffeId {
            input: one.clone(),
            reason,
        }),
        other => Err(Error::Certificate(format!(
            "an SVID has exactly one URI SAN, this one has {}",
            other.len()
        ))),
    }
}

/// What `Svid::inspect` reports about a certificate file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The SPIFFE ID, when the first certificate has exactly one URI SAN holding a valid one.
    pub spiffe_id: Option<SpiffeId>,
    /// All URI SANs of the first certificate.
    pub uri_sans: Vec<String>,
    /// All DNS SANs of the first certificate (an SVID from this CA has none).
    pub dns_sans: Vec<String>,
    /// Extended key usages, by name (`serverAuth`, `clientAuth`, ...; others as OIDs).
    pub extended_key_usages: Vec<String>,
    /// Subject DN (RFC 4514 style; empty for SVID leaves).
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Whether basicConstraints says CA.
    pub is_ca: bool,
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint: String,
    /// The other certificates in the file, in order (normally the intermediate).
    pub issuers: Vec<ChainEntry>,
}

/// One certificate of a chain, summarised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEntry {
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Whether basicConstraints says CA.
    pub is_ca: bool,
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint: String,
}

impl ChainEntry {
    fn of(cert: &X509Certificate<'_>, der: &[u8]) -> Self {
        ChainEntry {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: x509::hex(cert.raw_serial()),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            is_ca: cert.is_ca(),
            fingerprint: x509::fingerprint(der),
        }
    }
}

struct LeafDetails {
    spiffe_id: Option<SpiffeId>,
    uri_sans: Vec<String>,
    dns_sans: Vec<String>,
    ekus: Vec<String>,
}

impl LeafDetails {
    fn of(cert: &X509Certificate<'_>) -> Result<Self> {
        use x509_parser::extensions::GeneralName;
        let uri_sans = x509::uri_sans(cert)?;
        let spiffe_id = match uri_sans.as_slice() {
            [one] => one.parse().ok(),
            _ => None,
        };
        let dns_sans = cert
            .subject_alternative_name()
            .map_err(|e| Error::Certificate(format!("subjectAltName: {e}")))?
            .map(|ext| {
                ext.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::DNSName(d) => Some((*d).to_owned()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut ekus = Vec::new();
        if let Some(ext) = cert
            .extended_key_usage()
            .map_err(|e| Error::Certificate(format!("extendedKeyUsage: {e}")))?
        {
            let e = ext.value;
            for (on, name) in [
                (e.any, "any"),
                (e.server_auth, "serverAuth"),
                (e.client_auth, "clientAuth"),
                (e.code_signing, "codeSigning"),
                (e.email_protection, "emailProtection"),
                (e.time_stamping, "timeStamping"),
                (e.ocsp_signing, "OCSPSigning"),
            ] {
                if on {
                    ekus.push(name.to_owned());
                }
            }
            ekus.extend(e.other.iter().map(|oid| oid.to_id_string()));
        }
        Ok(LeafDetails {
            spiffe_id,
            uri_sans,
            dns_sans,
            ekus,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::{Authority, AuthorityOptions};

    fn ca() -> Authority {
        Authority::init("example.org".parse().unwrap(), AuthorityOptions::default()).unwrap()
    }

    #[test]
    fn inspect_leaf_chain() {
        let mut a = ca();
        let id: SpiffeId = "spiffe://example.org/ns/default/sa/web".parse().unwrap();
        let svid = a.issue(&id, None).unwrap();
        let info = Svid::inspect(&svid.chain_pem()).unwrap();
        assert_eq!(info.spiffe_id.as_ref(), Some(&id));
        assert_eq!(info.uri_sans, vec![id.to_string()]);
        assert!(info.dns_sans.is_empty());
        assert_eq!(info.extended_key_usages, vec!["serverAuth", "clientAuth"]);
        assert_eq!(info.serial, svid.serial());
        assert_eq!(info.not_before, svid.not_before());
        assert_eq!(info.not_after, svid.not_after());
        assert_eq!(info.subject, "");
        assert!(!info.is_ca);
        assert!(
            info.issuer.contains("Shoal intermediate CA"),
            "{}",
            info.issuer
        );
        assert_eq!(info.issuers.len(), 1);
        assert!(info.issuers[0].is_ca);
        assert_eq!(info.issuers[0].subject, info.issuer);
        assert!(info.issuers[0].issuer.contains("Shoal root CA"));
    }

    #[test]
    fn inspect_root_and_garbage() {
        let a = ca();
        let info = Svid::inspect(&a.root_cert_pem()).unwrap();
        assert!(info.is_ca);
        assert_eq!(info.spiffe_id, None);
        assert_eq!(info.subject, info.issuer);
        assert!(info.issuers.is_empty());
        assert!(Svid::inspect("garbage").is_err());
        let bad = pem::encode(&pem::Pem::new("CERTIFICATE", vec![0x30, 0x03, 1, 2, 3]));
        assert!(matches!(Svid::inspect(&bad), Err(Error::Certificate(_))));
    }

    #[test]
    fn from_pem_round_trip_and_key_redaction() {
        let mut a = ca();
        let id: SpiffeId = "spiffe://example.org/x".parse().unwrap();
        let svid = a.issue(&id, None).unwrap();
        let key_pem = svid.key_pem().unwrap();
        let back = Svid::from_pem(&svid.chain_pem(), Some(key_pem)).unwrap();
        assert_eq!(back.spiffe_id(), &id);
        assert_eq!(back.chain_der(), svid.chain_der());
        assert_eq!(back.serial(), svid.serial());
        assert_eq!(
            back.key().unwrap().pkcs8_der(),
            svid.key().unwrap().pkcs8_der()
        );
        let dbg = format!("{back:?}");
        assert!(dbg.contains("redacted") && !dbg.contains("BEGIN"), "{dbg}");
        // A CA certificate is not an SVID.
        assert!(Svid::from_pem(&a.root_cert_pem(), None).is_err());
        assert!(PrivateKey::from_pem("nope").is_err());
        // A key that is not the leaf's is refused.
        let other = a.issue(&id, None).unwrap();
        let err = Svid::from_pem(&svid.chain_pem(), other.key_pem()).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[test]
    fn generated_csr_round_trip() {
        let mut a = ca();
        let id: SpiffeId = "spiffe://example.org/ns/default/sa/agent".parse().unwrap();
        let (key, csr) = generate_csr(&id).unwrap();
        let policy = crate::IssuePolicy::any_in(id.trust_domain());
        let signed = a.sign_csr(&csr, None, &policy).unwrap();
        let svid = Svid::from_pem(&signed.chain_pem(), Some(key.pem())).unwrap();
        assert_eq!(svid.spiffe_id(), &id);
        assert!(svid.key().is_some());
        a.trust_bundle()
            .verify_svid(&svid, OffsetDateTime::now_utc())
            .unwrap();
    }
}
