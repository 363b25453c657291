//! Shoal's data plane: configuration snapshots, routing and proxying on thread-per-core workers.
//!
//! - [`config`]: the serde shape of the configuration (YAML and, later, the admin API).
//! - [`snapshot`]: validation/compilation into an immutable [`snapshot::Snapshot`] and the
//!   [`snapshot::ConfigStore`], the one door through which every change goes.
//! - [`route`]: compiled route tables and the pure matching function.
//! - [`worker`]: pinned monoio workers with their own listeners, pools and LB state.
//! - [`proxy`]: the TCP and HTTP/1.1 handlers.
//!
//! Nothing in this crate depends on tonic, prost or a tokio runtime: control code lives elsewhere.

pub mod access_log;
pub mod config;
pub mod error;
pub mod policy;
pub mod proxy;
pub mod route;
pub mod signal;
pub mod snapshot;
mod sys;
pub mod tls;
pub mod upstream;
pub mod worker;
