//! Subcommands other than `run`.
pub mod ca;
pub mod ctl;
