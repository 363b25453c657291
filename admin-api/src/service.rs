//! The tonic `AdminService`: reads from the running snapshot, `Apply` through [`Control`]
//! (on the blocking pool: an apply waits for every worker), `Watch` from the [`Journal`].

use std::pin::Pin;
use std::sync::Arc;

use prost::Message;
use shoal_proto::admin::v1 as pb;
use shoal_proto::admin::v1::admin_service_server::AdminService;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

use std::sync::atomic::Ordering;

use shoal_dataplane::upstream::stats::EndpointState;
use shoal_dataplane::worker::WorkerStats;

use crate::control::{Control, TxnError};
use crate::convert::ToProto;
use crate::journal::Event;
use crate::ops::{OpError, OpSpec, op_from_proto};

pub struct AdminApi {
    control: Arc<Control>,
    workers: Vec<Arc<WorkerStats>>,
}

impl AdminApi {
    pub fn new(control: Arc<Control>, workers: Vec<Arc<WorkerStats>>) -> Self {
        Self { control, workers }
    }
}

impl AdminApi {
    /// `addr`'s state summed over the workers (see `upstream::stats`).
    fn endpoint_state(
        &self,
        addr: std::net::SocketAddr,
        now: std::time::Instant,
    ) -> pb::EndpointState {
        let s = EndpointState::sum(self.workers.iter().map(|w| &w.endpoints), addr, now);
        pb::EndpointState {
            address: addr.to_string(),
            ejected_workers: s.ejected_workers,
            workers: self.workers.len() as u32,
            active_requests: s.active_requests,
            connects: s.connects,
            connect_failures: s.connect_failures,
            idle_connections: s.idle_connections,
        }
    }
}

impl From<&OpError> for pb::OpError {
    fn from(e: &OpError) -> Self {
        pb::OpError {
            op_index: e.op_index,
            path: e.path.clone(),
            reason: e.reason.clone(),
        }
    }
}

/// `INVALID_ARGUMENT` / `FAILED_PRECONDITION` with an encoded `pb::ApplyError` in the details;
/// the message lists the same problems, one per line.
pub fn txn_status(e: &TxnError) -> Status {
    match e {
        TxnError::Conflict { current, .. } => {
            let details = pb::ApplyError {
                errors: Vec::new(),
                current_version: Some(*current),
            };
            Status::with_details(
                Code::FailedPrecondition,
                e.to_string(),
                details.encode_to_vec().into(),
            )
        }
        TxnError::Invalid(errors) => {
            let mut msg = e.to_string();
            for err in errors {
                msg.push('\n');
                msg.push_str(&err.to_string());
            }
            let details = pb::ApplyError {
                errors: errors.iter().map(pb::OpError::from).collect(),
                current_version: None,
            };
            Status::with_details(Code::InvalidArgument, msg, details.encode_to_vec().into())
        }
    }
}

fn event_to_proto(e: &Event) -> pb::WatchEvent {
    pb::WatchEvent {
        version: e.version,
        ops: e.ops.iter().map(pb::Op::from).collect(),
        full: e.full,
        config: e.full.then(|| e.config.to_proto()),
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn get_config(
        &self,
        _: Request<pb::GetConfigRequest>,
    ) -> Result<Response<pb::GetConfigResponse>, Status> {
        let snap = self.control.store().load_full();
        Ok(Response::new(pb::GetConfigResponse {
            version: snap.version,
            config: Some(snap.spec.to_proto()),
            yaml: snap.spec.to_yaml(),
        }))
    }

    async fn list_listeners(
        &self,
        _: Request<pb::ListListenersRequest>,
    ) -> Result<Response<pb::ListListenersResponse>, Status> {
        let store = self.control.store();
        let snap = store.load_full();
        let listeners = snap
            .spec
            .listeners
            .iter()
            .map(|l| pb::ListenerStatus {
                listener: Some(l.to_proto()),
                bound_address: store
                    .listener_addr(&l.name)
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(pb::ListListenersResponse {
            version: snap.version,
            listeners,
        }))
    }

    async fn list_clusters(
        &self,
        _: Request<pb::ListClustersRequest>,
    ) -> Result<Response<pb::ListClustersResponse>, Status> {
        let snap = self.control.store().load_full();
        let now = std::time::Instant::now();
        let states = snap
            .spec
            .clusters
            .iter()
            .map(|spec| pb::ClusterState {
                name: spec.name.clone(),
                endpoints: snap
                    .clusters
                    .get(&spec.name)
                    .map(|c| {
                        c.endpoints
                            .iter()
                            .map(|ep| self.endpoint_state(ep.addr, now))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(pb::ListClustersResponse {
            version: snap.version,
            clusters: snap.spec.clusters.iter().map(ToProto::to_proto).collect(),
            states,
        }))
    }

    async fn get_stats(
        &self,
        _: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        Ok(Response::new(pb::GetStatsResponse {
            version: self.control.store().version(),
            workers: self
                .workers
                .iter()
                .enumerate()
                .map(|(i, w)| pb::WorkerStats {
                    worker: i as u32,
                    active_connections: w.active_connections.load(Ordering::Relaxed) as u64,
                    accepted_connections: w.accepted_connections.load(Ordering::Relaxed),
                })
                .collect(),
        }))
    }

    async fn apply(
        &self,
        request: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::ApplyResponse>, Status> {
        let req = request.into_inner();
        let mut ops: Vec<OpSpec> = Vec::with_capacity(req.ops.len());
        let mut errors = Vec::new();
        for (i, op) in req.ops.into_iter().enumerate() {
            match op_from_proto(i, op) {
                Ok(op) => ops.push(op),
                Err(e) => errors.extend(e),
            }
        }
        if !errors.is_empty() {
            let e = TxnError::Invalid(errors);
            tracing::info!("admin Apply rejected: {e}");
            return Err(txn_status(&e));
        }
        let control = self.control.clone();
        let (expected, dry_run) = (req.expected_version, req.dry_run);
        let result = tokio::task::spawn_blocking(move || control.transact(expected, ops, dry_run))
            .await
            .map_err(|e| Status::internal(format!("apply task failed: {e}")))?;
        match result {
            Ok(o) => {
                if !o.dry_run {
                    tracing::info!(version = o.version, "admin Apply applied");
                }
                Ok(Response::new(pb::ApplyResponse {
                    version: o.version,
                    diff: Some((&o.diff).into()),
                    dry_run: o.dry_run,
                }))
            }
            Err(e) => {
                tracing::info!("admin Apply refused: {e}");
                Err(txn_status(&e))
            }
        }
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let from = request.into_inner().from_version;
        let control = self.control.clone();
        let (backlog, mut rx) = control.journal().subscribe(from);
        let (tx, out) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut last = from;
            for e in backlog {
                last = e.version;
                if tx.send(Ok(event_to_proto(&e))).await.is_err() {
                    return;
                }
            }
            loop {
                let e = match rx.recv().await {
                    Ok(e) if e.version > last => e,
                    Ok(_) => continue,
                    // Fell behind the broadcast buffer: resync with the full config.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        match control.journal().latest_full() {
                            Some(e) if e.version > last => e,
                            _ => continue,
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                last = e.version;
                if tx.send(Ok(event_to_proto(&e))).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }
}
