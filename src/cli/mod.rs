//! Subcommands other than `run`.
pub mod ca;
