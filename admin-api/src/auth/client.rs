//! The client side of a TLS admin API: a tonic [`Channel`] over tokio-rustls with a ready
//! rustls `ClientConfig` (`shoal_dataplane::tls::spiffe_client_config`: the server verified by
//! SPIFFE ID against a trust bundle, a client SVID presented or not), and the bearer metadata
//! carrying a join token. Used by the identity agent and `shoal ctl`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

/// Connects to `addr` over TLS with `config` (its ALPN should offer `h2`).
pub async fn tls_channel(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    connect_timeout: Duration,
) -> Result<Channel, tonic::transport::Error> {
    let connector = TlsConnector::from(config);
    let connect = tower::service_fn(move |_: http::Uri| {
        let connector = connector.clone();
        async move {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            // SPIFFE verification ignores the name; it is only SNI-less IP here.
            let tls = connector
                .connect(ServerName::IpAddress(addr.ip().into()), tcp)
                .await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Endpoint::from_shared(format!("https://{addr}"))?
        .connect_timeout(connect_timeout)
        .connect_with_connector(connect)
        .await
}

/// Adds `authorization: Bearer TOKEN` to a request (marked sensitive: never printed).
pub fn with_bearer<T>(req: &mut tonic::Request<T>, token: &str) -> Result<(), tonic::Status> {
    let mut value: MetadataValue<_> = format!("Bearer {token}")
        .parse()
        .map_err(|_| tonic::Status::invalid_argument("the join token is not a valid header"))?;
    value.set_sensitive(true);
    req.metadata_mut().insert("authorization", value);
    Ok(())
}

/// The ALPN protocols of the admin API (gRPC over HTTP/2).
pub const ALPN: &[&[u8]] = &[b"h2"];
