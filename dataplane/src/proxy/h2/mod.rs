//! HTTP/2 (h2c) downstream: the `h2` crate's server over monoio's poll-io stream.
//!
//! - [`server`]: one task per connection: settings from the listener's `http2:` block, keepalive
//!   PING, idle timeout, GOAWAY on drain; every request stream gets its own `monoio::spawn` task.
//! - [`stream`]: one request: route (`route::find` on the `http::HeaderMap`), local answers,
//!   gRPC-shaped errors.
//! - [`forward`]: the exchange with an HTTP/2 upstream through the worker's `H2Pool`, with
//!   deadlines, one retry of a refused request, reset propagation both ways.
//! - [`to_h1`]: the same request translated for an HTTP/1.1 upstream.
//! - [`relay`]: DATA frames relayed with flow control and trailers.
//! - [`io`]: replays the bytes protocol sniffing already read.

pub mod forward;
pub mod io;
pub mod relay;
pub mod server;
pub mod stream;
pub mod to_h1;

pub use server::serve;
