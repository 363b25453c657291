//! The `shoal-admin` thread: a tokio current-thread runtime serving the gRPC admin API (plus
//! server reflection, so `grpcurl` works without the .proto files) and the HTTP health and
//! metrics endpoints, on listeners bound by the caller (so a port conflict is reported at
//! start, and port 0 resolves before we return). Off loopback the gRPC listener is TLS and
//! every call is authorized by [`crate::auth`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use shoal_proto::admin::v1::admin_service_server::AdminServiceServer;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;

use shoal_dataplane::worker::WorkerStats;
use shoal_proto::ca::v1::ca_service_server::CaServiceServer;

use crate::Error;
use crate::auth::client::ALPN;
use crate::auth::incoming::tls_incoming;
use crate::auth::{Access, AuthLayer};
use crate::ca_service::CaApi;
use crate::control::Control;
use crate::identity::{IdentityAgent, SharedCa, SvidSlot};
use crate::metrics::{self, Probe};
use crate::service::AdminApi;
use shoal_dataplane::tls::Credentials;

/// What the admin thread serves.
pub struct AdminOptions {
    /// The gRPC admin API.
    pub grpc: Option<std::net::TcpListener>,
    /// `/healthz`, `/readyz`, `/metrics`.
    pub metrics: Option<std::net::TcpListener>,
    /// The workers' counters (for `/metrics` and `GetStats`).
    pub workers: Vec<Arc<WorkerStats>>,
    /// Obtain and renew this proxy's SVID into the slot.
    pub identity: Option<(IdentityAgent, SvidSlot)>,
    /// The CA served as `shoal.ca.v1.CaService` beside the admin API (when `grpc` is set).
    pub ca: Option<SharedCa>,
    /// The data plane's TLS credentials (expiry metrics; the admin API's certificate when
    /// `access` is mTLS).
    pub creds: Option<Arc<Credentials>>,
    /// Who may call the gRPC API: plaintext for everyone local, or TLS and per-call rules.
    pub access: Access,
}

/// The running admin thread; [`AdminServer::stop`] ends it.
pub struct AdminServer {
    addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl AdminServer {
    /// Serves what `opts` asks for from a new `shoal-admin` thread.
    pub fn start(opts: AdminOptions, control: Arc<Control>) -> Result<Self, Error> {
        let mut addr = None;
        if let Some(l) = &opts.grpc {
            addr = Some(l.local_addr()?);
            l.set_nonblocking(true)?;
        }
        let mut metrics_addr = None;
        if let Some(l) = &opts.metrics {
            metrics_addr = Some(l.local_addr()?);
            l.set_nonblocking(true)?;
        }
        let tls = match (&opts.access, &opts.creds) {
            (Access::Loopback, _) => None,
            (Access::Mtls { .. }, Some(creds)) => Some(
                shoal_dataplane::tls::optional_client_server_config(creds.clone(), ALPN)
                    .map_err(|e| Error::Tls(e.to_string()))?,
            ),
            (Access::Mtls { .. }, None) => {
                return Err(Error::Tls("mTLS needs this proxy's credentials".into()));
            }
        };
        let access = Arc::new(opts.access);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Io)?;
        let ca = opts
            .ca
            .clone()
            .filter(|_| opts.grpc.is_some())
            .map(|store| CaServiceServer::new(CaApi::shared(store)));
        let mut reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(shoal_proto::FILE_DESCRIPTOR_SET)
            // List only what is served.
            .with_service_name("shoal.admin.v1.AdminService");
        if ca.is_some() {
            reflection = reflection.with_service_name("shoal.ca.v1.CaService");
        }
        let reflection = reflection
            .build_v1()
            .map_err(|e| Error::Reflection(e.to_string()))?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("shoal-admin".into())
            .spawn(move || {
                rt.block_on(async move {
                    let slot = opts.identity.as_ref().map(|(_, slot)| slot.clone());
                    if let Some((agent, slot)) = opts.identity {
                        tokio::spawn(agent.run(slot));
                    }
                    if let Some(l) = opts.metrics {
                        let probe = Probe {
                            store: control.store().clone(),
                            workers: opts.workers.clone(),
                            identity: slot,
                            creds: opts.creds.clone(),
                            ca: opts.ca.clone(),
                        };
                        match tokio::net::TcpListener::from_std(l) {
                            Ok(l) => {
                                tracing::info!(addr = ?metrics_addr, "health and metrics listening");
                                tokio::spawn(metrics::serve(l, Arc::new(probe)));
                            }
                            Err(e) => tracing::error!("metrics listener: {e}"),
                        }
                    }
                    let grpc = async move {
                        let Some(l) = opts.grpc else {
                            return std::future::pending().await;
                        };
                        let listener = match tokio::net::TcpListener::from_std(l) {
                            Ok(l) => l,
                            Err(e) => {
                                tracing::error!("admin API listener: {e}");
                                return std::future::pending().await;
                            }
                        };
                        tracing::info!(addr = ?addr, tls = tls.is_some(), "admin API listening");
                        let router = tonic::transport::Server::builder()
                            .layer(AuthLayer::new(access))
                            .add_service(AdminServiceServer::new(AdminApi::new(control, opts.workers)))
                            .add_service(reflection)
                            .add_optional_service(ca);
                        let served = match tls {
                            Some(config) => {
                                router.serve_with_incoming(tls_incoming(listener, config)).await
                            }
                            None => {
                                router
                                    .serve_with_incoming(
                                        TcpIncoming::from(listener).with_nodelay(Some(true)),
                                    )
                                    .await
                            }
                        };
                        if let Err(e) = served {
                            tracing::error!("admin API stopped: {e}");
                        }
                    };
                    tokio::select! {
                        _ = grpc => {},
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
            metrics_addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The address the gRPC admin API listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// The address of `/healthz`, `/readyz` and `/metrics`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
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
