//! Protocol handlers. A worker hands every accepted connection to [`serve`], which picks the
//! handler from the listener's protocol (sniffing the first bytes for `auto`).

pub mod detect;
pub mod http1;
pub mod io;
pub mod tcp;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;

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
        (ListenerKind::Http { .. }, _) => {
            let (detected, buf) = detect::sniff(&mut stream, listener.timeouts.header_read).await;
            match detected {
                Detected::Http1 => http1::serve(ctx, snap, listener, stream, peer, buf).await,
                Detected::Closed => {}
                Detected::H2 | Detected::Tls => {
                    // Not served yet: say so in a way both protocols' clients surface as an error.
                    tracing::debug!(listener = %listener.name, client = %peer, protocol = ?detected, "protocol not supported on this listener");
                    if detected == Detected::H2 {
                        // GOAWAY(last_stream_id=0, HTTP_1_1_REQUIRED) after an empty SETTINGS.
                        let frames: Vec<u8> = [
                            &[0, 0, 0, 4, 0, 0, 0, 0, 0][..],
                            &[0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xd][..],
                        ]
                        .concat();
                        let _ =
                            monoio::time::timeout(Duration::from_secs(1), stream.write_all(frames))
                                .await;
                    }
                }
            }
        }
    }
}
