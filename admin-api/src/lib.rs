//! `shoal-admin`: Shoal's gRPC admin API, served on the `shoal-admin` thread (a tokio
//! current-thread runtime), never on a worker.
//!
//! Flow: a tonic call ([`service`]) -> protobuf converted at the edge into the data plane's
//! config types ([`convert`], [`ops`]) -> [`control::Control`] applies the ops to a copy of the
//! running spec, lets `ConfigStore` validate the whole result and installs it with a
//! compare-and-swap (`ConfigStore::apply_if`: persisted, then swapped on every worker) ->
//! the [`journal`] records the version for `Watch`. The data plane never sees protobuf.
//!
//! Beside it on the same thread: [`ca_service`] (the CA in `<state_dir>/ca` as
//! `shoal.ca.v1.CaService`) and [`metrics`] (`/healthz`, `/readyz`, `/metrics` over HTTP).
//! [`identity`] obtains and renews this proxy's own SVID from a remote CA. [`server`] owns the
//! thread and its runtime. [`auth`] decides who may call what (loopback: everyone local;
//! elsewhere: mTLS with `admin.allow`, join tokens for a first SVID).

pub mod auth;
pub mod ca_service;
pub mod control;
pub mod convert;
pub mod diff;
pub mod identity;
pub mod journal;
pub mod metrics;
pub mod ops;
pub mod server;
pub mod service;

pub use control::{Control, Outcome, TxnError};
pub use ops::{OpError, OpSpec};
pub use server::{AdminOptions, AdminServer};
pub use shoal_proto as proto;

/// Errors starting the admin API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("admin API: {0}")]
    Io(#[from] std::io::Error),
    #[error("admin API reflection: {0}")]
    Reflection(String),
    #[error("admin API TLS: {0}")]
    Tls(String),
}
