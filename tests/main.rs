//! Shoal's integration tests: ONE test binary. Every test starts real listeners on 127.0.0.1:0,
//! real upstream servers (tokio TCP, hyper) and talks to Shoal with real clients (hyper, raw
//! sockets, curl, the `shoal` binary itself for signals).

mod support;

mod admin;
mod admin_auth;
mod admin_ca;
mod admin_more;
mod admin_state;
mod ca_cli;
mod config_changes;
mod grpc;
mod h2;
mod http1;
mod http1_errors;
mod mesh;
mod mesh_tls;
mod process;
mod tcp;
