//! The certificate authority: [`Authority`] owns the active root CA (self-signed ECDSA P-256),
//! the intermediate that does all issuing, the records of older roots still in the trust
//! bundle and, during a root rotation, the pending root (trusted, not issuing yet). It issues
//! SVIDs ([`Authority::issue`] generates the key, [`Authority::sign_csr`] signs a caller's CSR
//! under an [`IssuePolicy`]), rotates the root in two phases (trust before use, see `roots`),
//! and retires old roots once every leaf they vouch for has expired.
//!
//! Issuing is policy-driven: whatever a CSR asks for, the leaf gets exactly one URI SAN (the
//! SPIFFE ID), EKU serverAuth+clientAuth, key usage digitalSignature, CA:false, an AKI, a
//! random 16-byte serial, and validity `now-1min .. now+min(ttl, max)` capped at the
//! intermediate's expiry. The intermediate is likewise capped at its root's expiry.
//!
//! Submodules: `policy` (options and issuing policy), `roots` (the roots of the bundle:
//! rotation and retirement).

use std::fmt;
use std::time::Duration;

use ::time::OffsetDateTime;
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{Error, Result};
use crate::spiffe::{SpiffeId, TrustDomain};
use crate::svid::{PrivateKey, Svid};
use crate::x509;

mod policy;
mod roots;

use policy::to_time;
pub use policy::{AuthorityOptions, DEFAULT_ACTIVATION_DELAY, IssuePolicy};
pub(crate) use roots::{PendingRoot, RootRecord};
pub use roots::{RootInfo, RootRotation};

/// How far back `not_before` is set, to absorb clock skew between peers.
const BACKDATE: ::time::Duration = ::time::Duration::minutes(1);

/// A CA certificate together with its signing key.
pub(crate) struct CaCert {
    pub(crate) der: Vec<u8>,
    pub(crate) not_after: OffsetDateTime,
    pub(crate) issuer: Issuer<'static, KeyPair>,
}

impl CaCert {
    /// Rebuilds a CA from its PEM certificate and PEM key, checking that they belong together.
    pub(crate) fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        let der = x509::pem_to_certs(cert_pem)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Pem("no certificate".into()))?;
        let key = KeyPair::from_pem(key_pem)
            .map_err(|_| Error::Pem("CA key is not a supported PKCS#8 key".into()))?;
        let cert = x509::parse_cert(&der)?;
        if !cert.is_ca() {
            return Err(Error::Certificate("not a CA certificate".into()));
        }
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(Error::Certificate(
                "the CA key does not match the CA certificate".into(),
            ));
        }
        let not_after = cert.validity().not_after.to_datetime();
        let issuer = Issuer::from_ca_cert_der(&der.as_slice().into(), key)?;
        Ok(CaCert {
            der,
            not_after,
            issuer,
        })
    }

    pub(crate) fn cert_pem(&self) -> String {
        x509::cert_to_pem(&self.der)
    }

    pub(crate) fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }
}

/// The CA: active root + intermediate, the pending root of a rotation under way, and every
/// root still trusted.
pub struct Authority {
    trust_domain: TrustDomain,
    opts: AuthorityOptions,
    root: CaCert,
    intermediate: CaCert,
    /// A rotation's new root and intermediate: in the bundle, issuing from `activate_at`.
    pending: Option<PendingRoot>,
    /// All roots in the bundle, oldest first; the last one is the pending root if there is
    /// one, else `root`.
    roots: Vec<RootRecord>,
    rng: SystemRandom,
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authority")
            .field("trust_domain", &self.trust_domain)
            .field("opts", &self.opts)
            .field("roots", &self.roots.len())
            .field("intermediate_not_after", &self.intermediate.not_after)
            .field(
                "pending_activates_at",
                &self.pending.as_ref().map(|p| p.activate_at),
            )
            .finish_non_exhaustive()
    }
}

fn add(t: OffsetDateTime, d: Duration) -> Result<OffsetDateTime> {
    t.checked_add(to_time(d)?)
        .ok_or_else(|| Error::InvalidTtl(format!("{d:?} is too large")))
}

/// A random positive 16-byte serial (top bit clear, next bit set so it is always 16 bytes).
fn random_serial(rng: &SystemRandom) -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    rng.fill(&mut bytes).map_err(|_| Error::Rng)?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn ca_params(
    trust_domain: &TrustDomain,
    role: &str,
    serial: SerialNumber,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    let tag = x509::hex(&serial.as_ref()[..4]);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, trust_domain.as_str());
    dn.push(DnType::CommonName, format!("Shoal {role} CA {tag}"));
    let mut p = CertificateParams::default();
    p.distinguished_name = dn;
    p.serial_number = Some(serial);
    p.not_before = x509::whole_seconds(not_before);
    p.not_after = x509::whole_seconds(not_after);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

fn new_key() -> Result<KeyPair> {
    Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?)
}

/// Checks that `child`'s signature verifies with `parent`'s key (names for the message).
fn check_signed_by(
    child: &CaCert,
    parent: &CaCert,
    child_name: &str,
    parent_name: &str,
) -> Result<()> {
    let parent_cert = x509::parse_cert(&parent.der)?;
    x509::parse_cert(&child.der)?
        .verify_signature(Some(parent_cert.public_key()))
        .map_err(|_| Error::Certificate(format!("{child_name} is not signed by {parent_name}")))
}

impl Authority {
    /// Creates a fresh root and intermediate for `trust_domain`.
    pub fn init(trust_domain: TrustDomain, opts: AuthorityOptions) -> Result<Self> {
        Self::init_at(trust_domain, opts, OffsetDateTime::now_utc())
    }

    /// [`Authority::init`] as if the current time were `now` (tests, reproducible fixtures).
    pub fn init_at(
        trust_domain: TrustDomain,
        opts: AuthorityOptions,
        now: OffsetDateTime,
    ) -> Result<Self> {
        opts.validate()?;
        let rng = SystemRandom::new();
        let root = Self::new_root(&trust_domain, &opts, &rng, now)?;
        let intermediate = Self::new_intermediate(&trust_domain, &opts, &rng, &root, now)?;
        let roots = vec![RootRecord::new(root.der.clone(), None)?];
        tracing::info!(
            trust_domain = %trust_domain,
            root = %roots[0].fingerprint,
            root_not_after = %x509::fmt_time(root.not_after),
            "initialised certificate authority"
        );
        Ok(Authority {
            trust_domain,
            opts,
            root,
            intermediate,
            pending: None,
            roots,
            rng,
        })
    }

    /// Reassembles an authority from stored parts (used by the store): `roots` must end with
    /// the pending root when there is one, else with the active root, and each intermediate
    /// must be signed by its root.
    pub(crate) fn from_parts(
        trust_domain: TrustDomain,
        opts: AuthorityOptions,
        root: CaCert,
        intermediate: CaCert,
        pending: Option<PendingRoot>,
        roots: Vec<RootRecord>,
    ) -> Result<Self> {
        opts.validate()?;
        let active = x509::fingerprint(&root.der);
        if !roots.iter().any(|r| r.fingerprint == active) {
            return Err(Error::Certificate(
                "the active root is not in the bundle".into(),
            ));
        }
        check_signed_by(&intermediate, &root, "the intermediate", "the active root")?;
        let newest = match &pending {
            Some(p) => {
                check_signed_by(
                    &p.intermediate,
                    &p.root,
                    "the pending intermediate",
                    "the pending root",
                )?;
                let fp = x509::fingerprint(&p.root.der);
                if fp == active {
                    return Err(Error::Certificate(
                        "the pending root is the active root".into(),
                    ));
                }
                fp
            }
            None => active,
        };
        if roots.last().map(|r| r.fingerprint.as_str()) != Some(newest.as_str()) {
            return Err(Error::Certificate(format!(
                "the {} root is not the newest root of the bundle",
                if pending.is_some() {
                    "pending"
                } else {
                    "active"
                }
            )));
        }
        Ok(Authority {
            trust_domain,
            opts,
            root,
            intermediate,
            pending,
            roots,
            rng: SystemRandom::new(),
        })
    }

    fn new_root(
        td: &TrustDomain,
        opts: &AuthorityOptions,
        rng: &SystemRandom,
        now: OffsetDateTime,
    ) -> Result<CaCert> {
        let key = new_key()?;
        let mut p = ca_params(
            td,
            "root",
            random_serial(rng)?,
            now - BACKDATE,
            add(now, opts.root_ttl)?,
        );
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key)?;
        Ok(CaCert {
            der: cert.der().to_vec(),
            not_after: p.not_after,
            issuer: Issuer::new(p, key),
        })
    }

    fn new_intermediate(
        td: &TrustDomain,
        opts: &AuthorityOptions,
        rng: &SystemRandom,
        root: &CaCert,
        now: OffsetDateTime,
    ) -> Result<CaCert> {
        let not_after = add(now, opts.intermediate_ttl)?.min(root.not_after);
        if not_after <= now {
            return Err(Error::IssuerExpired {
                not_after: x509::fmt_time(root.not_after),
            });
        }
        let key = new_key()?;
        let mut p = ca_params(
            td,
            "intermediate",
            random_serial(rng)?,
            now - BACKDATE,
            not_after,
        );
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&key, &root.issuer)?;
        Ok(CaCert {
            der: cert.der().to_vec(),
            not_after: p.not_after,
            issuer: Issuer::new(p, key),
        })
    }

    /// The CA's trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The lifetimes in force.
    pub fn options(&self) -> &AuthorityOptions {
        &self.opts
    }

    /// Replaces the lifetimes used for future issuing (existing certificates are untouched; a
    /// pending rotation keeps the activation time it was given).
    pub fn set_options(&mut self, opts: AuthorityOptions) -> Result<()> {
        opts.validate()?;
        self.opts = opts;
        Ok(())
    }

    pub(crate) fn root_ca(&self) -> &CaCert {
        &self.root
    }

    pub(crate) fn intermediate_ca(&self) -> &CaCert {
        &self.intermediate
    }

    pub(crate) fn pending(&self) -> Option<&PendingRoot> {
        self.pending.as_ref()
    }

    /// The active root certificate (the one issuing, never a pending root), DER.
    pub fn root_cert_der(&self) -> &[u8] {
        &self.root.der
    }

    /// The active root certificate (the one issuing, never a pending root), PEM.
    pub fn root_cert_pem(&self) -> String {
        self.root.cert_pem()
    }

    /// The issuing intermediate certificate, DER.
    pub fn intermediate_cert_der(&self) -> &[u8] {
        &self.intermediate.der
    }

    /// The issuing intermediate certificate, PEM.
    pub fn intermediate_cert_pem(&self) -> String {
        self.intermediate.cert_pem()
    }

    /// When the intermediate expires: no leaf outlives it.
    pub fn intermediate_not_after(&self) -> OffsetDateTime {
        self.intermediate.not_after
    }

    /// When the active root expires.
    pub fn root_not_after(&self) -> OffsetDateTime {
        self.root.not_after
    }

    /// Generates a key pair and issues an SVID for `id` (TTL defaults to `default_leaf_ttl`,
    /// capped at `max_leaf_ttl` and at the intermediate's expiry). A pending root whose
    /// activation time has come is activated first, so the leaf comes from it.
    pub fn issue(&mut self, id: &SpiffeId, ttl: Option<Duration>) -> Result<Svid> {
        self.issue_at(id, ttl, OffsetDateTime::now_utc())
    }

    /// [`Authority::issue`] as if the current time were `now`.
    pub fn issue_at(
        &mut self,
        id: &SpiffeId,
        ttl: Option<Duration>,
        now: OffsetDateTime,
    ) -> Result<Svid> {
        self.check_domain(id)?;
        let key = new_key()?;
        self.activate_due_root(now);
        let params = self.leaf_params(id, ttl, None, now)?;
        let cert = params.signed_by(&key, &self.intermediate.issuer)?;
        self.finish_leaf(cert.der().to_vec(), Some(PrivateKey::from_key_pair(&key)))
    }

    /// Signs a PKCS#10 CSR (PEM). The CSR's self-signature must verify, and it must carry
    /// exactly one URI SAN: a SPIFFE ID in this trust domain that `policy` allows. Everything
    /// else it asks for (subject, DNS SANs, CA flag, key usages, validity) is ignored. The
    /// returned SVID carries no key. Like [`Authority::issue`], activates a due pending root.
    pub fn sign_csr(
        &mut self,
        csr_pem: &str,
        requested_ttl: Option<Duration>,
        policy: &IssuePolicy,
    ) -> Result<Svid> {
        self.sign_csr_at(csr_pem, requested_ttl, policy, OffsetDateTime::now_utc())
    }

    /// [`Authority::sign_csr`] as if the current time were `now`.
    pub fn sign_csr_at(
        &mut self,
        csr_pem: &str,
        requested_ttl: Option<Duration>,
        policy: &IssuePolicy,
        now: OffsetDateTime,
    ) -> Result<Svid> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| match e {
            rcgen::Error::InvalidCertificationRequestSignature => Error::CsrBadSignature,
            rcgen::Error::UnsupportedExtension => Error::CsrUnsupportedExtension,
            other => Error::CsrMalformed(other.to_string()),
        })?;
        let uris: Vec<&str> = csr
            .params
            .subject_alt_names
            .iter()
            .filter_map(|san| match san {
                SanType::URI(u) => Some(u.as_str()),
                _ => None,
            })
            .collect();
        let id: SpiffeId = match uris.as_slice() {
            [one] => one.parse().map_err(|reason| Error::InvalidSpiffeId {
                input: (*one).to_owned(),
                reason,
            })?,
            [] => return Err(Error::CsrSan("none".into())),
            many => return Err(Error::CsrSan(format!("{}", many.len()))),
        };
        self.check_domain(&id)?;
        if !policy.allows(&id) {
            tracing::warn!(%id, "CSR refused: SPIFFE ID not allowed by policy");
            return Err(Error::NotAllowed { id: id.to_string() });
        }
        self.activate_due_root(now);
        let params = self.leaf_params(&id, requested_ttl, policy.max_ttl(), now)?;
        let cert = params.signed_by(&csr.public_key, &self.intermediate.issuer)?;
        self.finish_leaf(cert.der().to_vec(), None)
    }

    fn check_domain(&self, id: &SpiffeId) -> Result<()> {
        if id.trust_domain() != &self.trust_domain {
            return Err(Error::ForeignTrustDomain {
                id: id.to_string(),
                ca_trust_domain: self.trust_domain.to_string(),
            });
        }
        if id.path().is_empty() {
            return Err(Error::NotAllowed { id: id.to_string() });
        }
        Ok(())
    }

    fn leaf_params(
        &self,
        id: &SpiffeId,
        ttl: Option<Duration>,
        policy_max: Option<Duration>,
        now: OffsetDateTime,
    ) -> Result<CertificateParams> {
        let requested = ttl.unwrap_or(self.opts.default_leaf_ttl);
        if requested.is_zero() {
            return Err(Error::InvalidTtl("TTL must be positive".into()));
        }
        let max = policy_max.map_or(self.opts.max_leaf_ttl, |p| p.min(self.opts.max_leaf_ttl));
        let not_after =
            x509::whole_seconds(add(now, requested.min(max))?).min(self.intermediate.not_after);
        if not_after <= now {
            return Err(Error::IssuerExpired {
                not_after: x509::fmt_time(self.intermediate.not_after),
            });
        }
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.subject_alt_names = vec![SanType::URI(Ia5String::try_from(id.to_string())?)];
        p.serial_number = Some(random_serial(&self.rng)?);
        p.not_before = x509::whole_seconds(now - BACKDATE);
        p.not_after = not_after;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        Ok(p)
    }

    fn finish_leaf(&mut self, leaf_der: Vec<u8>, key: Option<PrivateKey>) -> Result<Svid> {
        let svid = Svid::new(vec![leaf_der, self.intermediate.der.clone()], key)?;
        // Recorded on the root that issued it (not the newest one: that may be pending).
        if let Some(active) = self.roots.iter_mut().rev().find(|r| r.der == self.root.der) {
            let latest = active.latest_leaf_expiry.get_or_insert(svid.not_after());
            *latest = (*latest).max(svid.not_after());
        }
        tracing::debug!(
            id = %svid.spiffe_id(),
            serial = %svid.serial(),
            not_after = %x509::fmt_time(svid.not_after()),
            "issued SVID"
        );
        Ok(svid)
    }

    /// Replaces the intermediate with a fresh one under the active root (e.g. before it
    /// expires). Leaves signed by the old intermediate keep verifying: their root is unchanged.
    pub fn rotate_intermediate(&mut self) -> Result<()> {
        self.rotate_intermediate_at(OffsetDateTime::now_utc())
    }

    /// [`Authority::rotate_intermediate`] as if the current time were `now`.
    pub fn rotate_intermediate_at(&mut self, now: OffsetDateTime) -> Result<()> {
        self.intermediate =
            Self::new_intermediate(&self.trust_domain, &self.opts, &self.rng, &self.root, now)?;
        tracing::info!(
            not_after = %x509::fmt_time(self.intermediate.not_after),
            "rotated intermediate CA"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests;
