//! Small shared helpers over x509-parser and the `pem` crate: PEM <-> DER for certificates,
//! parsing one DER certificate strictly, reading URI SANs, hex, fingerprints and time
//! formatting. Crate-internal; the public types live in `svid`, `bundle` and `authority`.

use ::time::OffsetDateTime;
use ::time::format_description::well_known::Rfc3339;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::error::{Error, Result};

const CERT_TAG: &str = "CERTIFICATE";

fn encode_config() -> pem::EncodeConfig {
    pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF)
}

/// PEM-encodes one DER certificate.
pub(crate) fn cert_to_pem(der: &[u8]) -> String {
    pem::encode_config(&pem::Pem::new(CERT_TAG, der.to_vec()), encode_config())
}

/// PEM-encodes several DER certificates, in order.
pub(crate) fn certs_to_pem<'a>(ders: impl IntoIterator<Item = &'a [u8]>) -> String {
    ders.into_iter().map(cert_to_pem).collect()
}

/// Decodes every `CERTIFICATE` block of `pem_text`, in order. Any other block type, or no
/// block at all, is an error.
pub(crate) fn pem_to_certs(pem_text: &str) -> Result<Vec<Vec<u8>>> {
    let blocks = pem::parse_many(pem_text).map_err(|e| Error::Pem(e.to_string()))?;
    if blocks.is_empty() {
        return Err(Error::Pem("no PEM block found".into()));
    }
    blocks
        .into_iter()
        .map(|b| {
            if b.tag() == CERT_TAG {
                Ok(b.into_contents())
            } else {
                Err(Error::Pem(format!(
                    "expected {CERT_TAG} blocks, found {:?}",
                    b.tag()
                )))
            }
        })
        .collect()
}

/// Parses exactly one DER certificate (trailing bytes are an error).
pub(crate) fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| Error::Certificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(Error::Certificate(format!(
            "{} trailing bytes after the certificate",
            rest.len()
        )));
    }
    Ok(cert)
}

/// The certificate's URI SANs, in order.
pub(crate) fn uri_sans(cert: &X509Certificate<'_>) -> Result<Vec<String>> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| Error::Certificate(format!("subjectAltName: {e}")))?;
    Ok(san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some((*u).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Lowercase hex without separators.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// SHA-256 of the DER bytes, lowercase hex: how roots are named in logs and metadata.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

/// RFC 3339 rendering for messages and CLI output.
pub(crate) fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// Drops sub-second precision: X.509 validity has whole seconds.
pub(crate) fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_rejects_garbage_and_other_blocks() {
        assert!(matches!(pem_to_certs(""), Err(Error::Pem(_))));
        assert!(matches!(pem_to_certs("hello"), Err(Error::Pem(_))));
        let key = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]));
        assert!(matches!(pem_to_certs(&key), Err(Error::Pem(_))));
    }

    #[test]
    fn pem_round_trip_and_bad_der() {
        let text = certs_to_pem([&[1u8, 2][..], &[3u8][..]]);
        assert_eq!(pem_to_certs(&text).unwrap(), vec![vec![1, 2], vec![3]]);
        assert!(matches!(parse_cert(&[1, 2]), Err(Error::Certificate(_))));
    }

    #[test]
    fn hex_and_time() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(fingerprint(b"").len(), 64);
        let t = OffsetDateTime::from_unix_timestamp(0).unwrap();
        assert_eq!(fmt_time(t), "1970-01-01T00:00:00Z");
    }
}
