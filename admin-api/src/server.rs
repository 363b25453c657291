//! The `shoal-admin` thread: a tokio current-thread runtime serving the gRPC admin API (plus
//! server reflection, so `grpcurl` works without the .proto files) on a listener bound by the
//! caller (so a port conflict is reported at start, and port 0 resolves before we return).

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use shoal_proto::admin::v1::admin_service_server::AdminServiceServer;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;

use crate::Error;
use crate::control::Control;
use crate::service::AdminApi;

/// The running admin thread; [`AdminServer::stop`] ends it.
pub struct AdminServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl AdminServer {
    /// Serves the admin API on `listener` from a new `shoal-admin` thread.
    pub fn start(listener: std::net::TcpListener, control: Arc<Control>) -> Result<Self, Error> {
        let addr = listener.local_addr().map_err(Error::Io)?;
        listener.set_nonblocking(true).map_err(Error::Io)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Io)?;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(shoal_proto::FILE_DESCRIPTOR_SET)
            // List only what is served (ca.proto is in the descriptor set, not served yet).
            .with_service_name("shoal.admin.v1.AdminService")
            .build_v1()
            .map_err(|e| Error::Reflection(e.to_string()))?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("shoal-admin".into())
            .spawn(move || {
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("admin API listener: {e}");
                            return;
                        }
                    };
                    let serve = tonic::transport::Server::builder()
                        .add_service(AdminServiceServer::new(AdminApi::new(control)))
                        .add_service(reflection)
                        .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)));
                    tracing::info!(%addr, "admin API listening");
                    tokio::select! {
                        r = serve => if let Err(e) = r {
                            tracing::error!("admin API stopped: {e}");
                        },
                        _ = stop_rx => {}
                    }
                });
                // Open Watch streams and in-flight calls are cut; a running apply finishes on
                // the blocking pool within this grace period.
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .map_err(Error::Io)?;
        Ok(Self {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The address the admin API listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and joins the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the admin thread panicked");
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
