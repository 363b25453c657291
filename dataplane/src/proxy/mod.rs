//! Protocol handlers. A worker hands every accepted connection to [`serve`], which picks the
//! handler from the listener's protocol (sniffing the first bytes for `auto`): [`tcp`],
//! [`http1`], or [`h2`] (HTTP/2 prior knowledge, gRPC-aware through [`grpc`]).

pub mod detect;
pub mod grpc;
pub mod h2;
pub mod http1;
pub mod io;
pub mod tcp;

use monoio::net::TcpStream;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use crate::config::ListenerProtocol;
use crate::snapshot::{Listener, ListenerKind, Snapshot};
use crate::worker::WorkerCtx;

use self::detect::Detected;

/// Serves one accepted connection to its end.
pub async fn serve(
    ctx: Rc<WorkerCtx>,
    snap: Arc<Snapshot>,
    listener: Arc<Listener>,
    mut stream: TcpStream,
    peer: SocketAddr,
) {
    match (&listener.kind, listener.protocol) {
        (ListenerKind::Tcp { cluster }, _) => {
            let cluster = cluster.clone();
            tcp::serve(ctx, snap, listener, cluster, stream, peer).await
        }
        (ListenerKind::Http { .. }, ListenerProtocol::Http1) => {
            http1::serve(ctx, snap, listener, stream, peer, Vec::new()).await
        }
        (ListenerKind::Http { .. }, ListenerProtocol::Http2) => {
            h2::serve(ctx, snap, listener, stream, peer, Vec::new()).await
        }
        (ListenerKind::Http { .. }, _) => {
            let (detected, buf) = detect::sniff(&mut stream, listener.timeouts.header_read).await;
            match detected {
                Detected::Http1 => http1::serve(ctx, snap, listener, stream, peer, buf).await,
                Detected::H2 => h2::serve(ctx, snap, listener, stream, peer, buf).await,
                Detected::Closed => {}
                Detected::Tls => {
                    // Not served yet (issue 4): close.
                    tracing::debug!(listener = %listener.name, client = %peer, "TLS not supported on this listener yet");
                }
            }
        }
    }
}
