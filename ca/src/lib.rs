//! Shoal's certificate authority, synchronous and runtime-free.
//!
//! - [`spiffe`]: SPIFFE IDs, trust domains and allow-list patterns (strict parsing).
//! - [`authority`]: the CA itself: root + intermediate (ECDSA P-256), issuing SVIDs and
//!   signing CSRs under a policy, two-phase root rotation (trust before use) and retirement.
//! - [`bundle`]: multi-root trust bundles and an offline chain check.
//! - [`svid`]: the issued SVID and a certificate inspector.
//! - [`rotation`]: the pure renewal schedule (50% + jitter) and expiry warnings.
//! - [`store`]: persistence of the CA in a directory (atomic writes, keys 0600).
//!
//! Data flows one way: a [`store::CaStore`] loads or creates an [`Authority`]; the authority
//! issues [`Svid`]s and exports a [`TrustBundle`]; the data plane turns those into rustls
//! configs and schedules renewals with [`rotation::renewal_time`].

pub mod authority;
pub mod bundle;
pub mod error;
pub mod rotation;
pub mod spiffe;
pub mod store;
pub mod svid;
mod x509;

pub use authority::{
    Authority, AuthorityOptions, DEFAULT_ACTIVATION_DELAY, IssuePolicy, RootInfo, RootRotation,
};
pub use bundle::{TrustBundle, VerifiedChain};
pub use error::{Error, Result, SpiffeIdError};
pub use rotation::{Renewal, renewal_time, warn_before_expiry};
pub use spiffe::{IdPattern, SpiffeId, TrustDomain};
pub use store::CaStore;
pub use svid::{CertInfo, ChainEntry, PrivateKey, Svid, generate_csr};
/// Re-exported so callers can pass times without depending on `time` themselves.
pub use time::OffsetDateTime;

/// Formats a time as RFC 3339 (`2030-01-01T00:00:00Z`), as the CLI prints it.
pub fn format_time(t: OffsetDateTime) -> String {
    x509::fmt_time(t)
}

#[cfg(test)]
mod tests {
    fn assert_send_sync<T: Send + Sync>() {}

    /// The admin thread shares these behind a lock and hands SVIDs to worker threads.
    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<crate::Authority>();
        assert_send_sync::<crate::CaStore>();
        assert_send_sync::<crate::Svid>();
        assert_send_sync::<crate::TrustBundle>();
        assert_send_sync::<crate::Error>();
    }
}
