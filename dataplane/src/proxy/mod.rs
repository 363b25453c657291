//! Protocol handlers. A worker hands every accepted connection to [`serve`], which picks the
//! handler from the listener's protocol (sniffing the first bytes for `auto`): [`tcp`],
//! [`http1`], or [`h2`] (HTTP/2 prior knowledge, gRPC-aware through [`grpc`]).

pub mod detect;
pub mod grpc;
pub mod h2;
pub mod http1;
pub mod io;
pub mod stream;
pub mod tcp;

use monoio::net::TcpStream;
use shoal_ca::SpiffeId;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use crate::config::ListenerProtocol;
use crate::error::ProxyError;
use crate::policy::Subject;
use crate::route::Route;
use crate::snapshot::{ALPN_H2, Listener, ListenerKind, ListenerTls, Snapshot};
use crate::worker::WorkerCtx;

use self::detect::Detected;
use self::stream::Stream;

/// The mTLS peer of a connection, as routing, policies and the upstream see it.
#[derive(Debug, Clone)]
pub struct PeerIdentity {
    pub id: Arc<SpiffeId>,
    /// The peer header's value: `By=<this proxy's SPIFFE ID>;URI=<peer SPIFFE ID>`.
    pub header: String,
}

impl PeerIdentity {
    /// The identity of `stream`'s peer (mutual TLS only).
    pub fn of(stream: &Stream, snap: &Snapshot) -> Option<Self> {
        let id = stream.peer_id()?.clone();
        let header = match snap.creds.svid() {
            Some(own) => format!("By={};URI={id}", own.id),
            None => format!("URI={id}"),
        };
        Some(Self { id, header })
    }
}

/// The listener's policy, then the route's: the first that denies wins.
pub fn authorize(
    l: &Listener,
    route: &Route,
    peer: Option<&PeerIdentity>,
    method: &str,
    path: &str,
) -> Result<(), ProxyError> {
    let subject = Subject {
        peer: peer.map(|p| &*p.id),
        method: Some(method),
        path: Some(path),
    };
    for p in [&l.policy, &route.policy].into_iter().flatten() {
        if !p.allows(&subject) {
            return Err(ProxyError::Forbidden(p.name.clone()));
        }
    }
    Ok(())
}

/// Serves one accepted connection to its end.
pub async fn serve(
    ctx: Rc<WorkerCtx>,
    snap: Arc<Snapshot>,
    listener: Arc<Listener>,
    mut tcp: TcpStream,
    peer: SocketAddr,
) {
    if let Some(tls) = listener.tls.clone() {
        return serve_tls(ctx, snap, listener, &tls, tcp, peer).await;
    }
    match (&listener.kind, listener.protocol) {
        (ListenerKind::Tcp { cluster }, _) => {
            let cluster = cluster.clone();
            tcp::serve(ctx, snap, listener, cluster, Stream::Plain(tcp), peer).await
        }
        (ListenerKind::Http { .. }, ListenerProtocol::Http1) => {
            http1::serve(ctx, snap, listener, Stream::Plain(tcp), peer, Vec::new()).await
        }
        (ListenerKind::Http { .. }, ListenerProtocol::Http2) => {
            h2::serve(ctx, snap, listener, Stream::Plain(tcp), peer, Vec::new()).await
        }
        (ListenerKind::Http { .. }, _) => {
            let (detected, buf) = detect::sniff(&mut tcp, listener.timeouts.header_read).await;
            match detected {
                Detected::Http1 => {
                    http1::serve(ctx, snap, listener, Stream::Plain(tcp), peer, buf).await
                }
                Detected::H2 => h2::serve(ctx, snap, listener, Stream::Plain(tcp), peer, buf).await,
                Detected::Closed => {}
                Detected::Tls => {
                    tracing::debug!(listener = %listener.name, client = %peer, "TLS ClientHello on a plaintext listener; closing");
                }
            }
        }
    }
}

/// Terminates TLS, then serves the protocol the listener (and ALPN) says.
async fn serve_tls(
    ctx: Rc<WorkerCtx>,
    snap: Arc<Snapshot>,
    listener: Arc<Listener>,
    tls: &ListenerTls,
    tcp: TcpStream,
    peer: SocketAddr,
) {
    let stream = match stream::accept(
        tcp,
        Vec::new(),
        tls.config.clone(),
        listener.timeouts.header_read,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            ctx.stats.tls_handshake_failed();
            tracing::debug!(listener = %listener.name, client = %peer, error = %e, "TLS handshake failed");
            return;
        }
    };
    let h2 = match listener.protocol {
        ListenerProtocol::Http2 => true,
        ListenerProtocol::Http1 | ListenerProtocol::Tcp => false,
        ListenerProtocol::Auto => stream
            .tls_info()
            .and_then(|i| i.alpn.as_deref())
            .is_some_and(|a| a == ALPN_H2),
    };
    match &listener.kind {
        ListenerKind::Tcp { cluster } => {
            let cluster = cluster.clone();
            tcp::serve(ctx, snap, listener, cluster, stream, peer).await
        }
        ListenerKind::Http { .. } if h2 => {
            h2::serve(ctx, snap, listener, stream, peer, Vec::new()).await
        }
        ListenerKind::Http { .. } => {
            http1::serve(ctx, snap, listener, stream, peer, Vec::new()).await
        }
    }
}
