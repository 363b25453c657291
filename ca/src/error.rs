//! The crate's error types: [`Error`] for everything the CA does, and [`SpiffeIdError`], the
//! precise reason a SPIFFE ID, trust domain or ID pattern was rejected (wrapped by `Error`).
//!
//! Messages never contain key material; they name the certificate, file or ID concerned.

use std::path::PathBuf;

/// Why a string is not a valid SPIFFE ID, trust domain or ID pattern (SPIFFE-ID spec §2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    /// The input was empty.
    #[error("SPIFFE ID is empty")]
    Empty,
    /// The whole ID is longer than the 2048 bytes the spec allows.
    #[error("SPIFFE ID is {len} bytes long; the maximum is 2048")]
    TooLong {
        /// Length of the rejected input in bytes.
        len: usize,
    },
    /// There is no `scheme://` at all.
    #[error("SPIFFE ID must start with \"spiffe://\"")]
    MissingScheme,
    /// The scheme is not exactly the lowercase `spiffe`.
    #[error("SPIFFE ID scheme must be lowercase \"spiffe\", found {0:?}")]
    WrongScheme(String),
    /// Nothing between `spiffe://` and the path.
    #[error("SPIFFE ID trust domain is empty")]
    EmptyTrustDomain,
    /// The trust domain is longer than 255 bytes.
    #[error("trust domain is {len} bytes long; the maximum is 255")]
    TrustDomainTooLong {
        /// Length of the rejected trust domain in bytes.
        len: usize,
    },
    /// A character outside `[a-z0-9.-_]` in the trust domain (uppercase is not allowed).
    #[error(
        "trust domain contains {0:?}; only lowercase letters, digits, '.', '-' and '_' are allowed"
    )]
    TrustDomainChar(char),
    /// `host:port` form: SPIFFE trust domains carry no port.
    #[error("trust domain must not contain a port")]
    Port,
    /// `user@host` form: SPIFFE trust domains carry no user info.
    #[error("trust domain must not contain user info ('@')")]
    Userinfo,
    /// `//` inside the path.
    #[error("SPIFFE ID path contains an empty segment (\"//\")")]
    EmptySegment,
    /// A `.` or `..` segment.
    #[error("SPIFFE ID path contains a '.' or '..' segment")]
    DotSegment,
    /// A character outside `[A-Za-z0-9.-_]` in the path (percent-encoding is not allowed either).
    #[error("SPIFFE ID path contains {0:?}; only letters, digits, '.', '-' and '_' are allowed")]
    PathChar(char),
    /// The ID ends with `/`.
    #[error("SPIFFE ID must not end with '/'")]
    TrailingSlash,
    /// `?query` or `#fragment` present.
    #[error("SPIFFE ID must not contain a query or fragment")]
    QueryOrFragment,
}

/// Every error the CA crate returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A SPIFFE ID, trust domain or pattern failed validation.
    #[error("invalid SPIFFE ID {input:?}: {reason}")]
    InvalidSpiffeId {
        /// The rejected input (IDs are public names, not secrets).
        input: String,
        /// Why it was rejected.
        #[source]
        reason: SpiffeIdError,
    },
    /// An ID outside the CA's trust domain was requested.
    #[error("SPIFFE ID {id} is not in this CA's trust domain {ca_trust_domain}")]
    ForeignTrustDomain {
        /// The requested ID.
        id: String,
        /// The CA's trust domain.
        ca_trust_domain: String,
    },
    /// The caller's policy does not allow the requested ID.
    #[error("SPIFFE ID {id} is not allowed by the issuing policy")]
    NotAllowed {
        /// The requested ID.
        id: String,
    },
    /// The CSR could not be parsed (not PEM, not a PKCS#10 request, unsupported algorithm).
    #[error("malformed CSR: {0}")]
    CsrMalformed(String),
    /// The CSR's self-signature does not verify.
    #[error("CSR signature does not verify (the requester does not hold the key)")]
    CsrBadSignature,
    /// The CSR asks for an extension the CA cannot parse, so it is refused as a whole.
    #[error("CSR requests an unsupported extension")]
    CsrUnsupportedExtension,
    /// The CSR does not carry exactly one URI SAN holding a SPIFFE ID.
    #[error("CSR must carry exactly one URI SAN (the SPIFFE ID), found {0}")]
    CsrSan(String),
    /// A zero or unrepresentable TTL.
    #[error("invalid TTL: {0}")]
    InvalidTtl(String),
    /// Inconsistent CA options.
    #[error("invalid CA options: {0}")]
    InvalidOptions(String),
    /// An activation delay the CA cannot use for a root rotation.
    #[error("invalid activation delay: {0}")]
    InvalidActivationDelay(String),
    /// A root rotation is already under way: its root is in the trust bundle but does not
    /// issue yet. Only one rotation may be pending at a time.
    #[error(
        "a root rotation is already pending: root {fingerprint} starts issuing at {activates_at}; \
         rotate again from then on"
    )]
    RotationPending {
        /// The pending root's fingerprint.
        fingerprint: String,
        /// When it starts issuing (RFC 3339).
        activates_at: String,
    },
    /// The issuing CA certificate has expired (or has no time left); rotate it.
    #[error("issuing CA certificate expired at {not_after}")]
    IssuerExpired {
        /// When the issuer expired.
        not_after: String,
    },
    /// Certificate generation or signing failed inside rcgen.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// The system random number generator failed.
    #[error("system random number generator failed")]
    Rng,
    /// PEM input held no usable block, or a block of the wrong type.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// DER bytes that are not an X.509 certificate.
    #[error("invalid certificate: {0}")]
    Certificate(String),
    /// Chain verification: a certificate is past its notAfter.
    #[error("certificate {subject:?} expired at {not_after}")]
    Expired {
        /// Subject of the expired certificate.
        subject: String,
        /// Its notAfter.
        not_after: String,
    },
    /// Chain verification: a certificate's notBefore is in the future.
    #[error("certificate {subject:?} is not valid before {not_before}")]
    NotYetValid {
        /// Subject of the certificate.
        subject: String,
        /// Its notBefore.
        not_before: String,
    },
    /// Chain verification: no path from the leaf to a root in the bundle.
    #[error("certificate {subject:?} (issuer {issuer:?}) does not chain to any trusted root")]
    UntrustedChain {
        /// Subject of the last certificate reached.
        subject: String,
        /// The issuer that could not be found or did not verify.
        issuer: String,
    },
    /// Chain verification: a certificate used as an issuer is not a CA, or the leaf is one.
    #[error("certificate {subject:?} has the wrong CA flag for its place in the chain")]
    BadBasicConstraints {
        /// Subject of the offending certificate.
        subject: String,
    },
    /// The trust bundle holds no roots.
    #[error("trust bundle is empty")]
    EmptyBundle,
    /// The store exists but belongs to another trust domain.
    #[error(
        "CA store {dir} belongs to trust domain {stored:?}, not {requested:?}; use another --state-dir"
    )]
    TrustDomainMismatch {
        /// The store directory.
        dir: PathBuf,
        /// Trust domain recorded in the store.
        stored: String,
        /// Trust domain asked for.
        requested: String,
    },
    /// No CA has been initialised in this directory.
    #[error("no CA in {0} (run `shoal ca init` first)")]
    NotInitialized(PathBuf),
    /// The store is half-written or its files disagree with each other.
    #[error("CA store {dir} is inconsistent: {reason}")]
    StoreCorrupt {
        /// The store directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("write", "read", ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
