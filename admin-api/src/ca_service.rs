//! The tonic `CaService` (`proto/shoal/ca/v1/ca.proto`): the CA in `<state_dir>/ca` as a
//! service. `shoal_ca` is synchronous (file writes, signing), so every call runs on the
//! blocking pool, one at a time (the store sits behind a mutex).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_ca::{CaStore, Error as CaError, IssuePolicy};
use shoal_proto::ca::v1 as pb;
use shoal_proto::ca::v1::ca_service_server::CaService;
use tonic::{Request, Response, Status};

use crate::auth::CsrGrant;

pub struct CaApi {
    store: Arc<Mutex<CaStore>>,
}

impl CaApi {
    pub fn new(store: CaStore) -> Self {
        Self::shared(Arc::new(Mutex::new(store)))
    }

    /// Serves a store shared with the local identity agent.
    pub fn shared(store: crate::identity::SharedCa) -> Self {
        Self { store }
    }

    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut CaStore) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut store)
        })
        .await
        .map_err(|e| Status::internal(format!("CA task failed: {e}")))?
    }
}

/// Maps CA errors to gRPC codes; the message never carries key material (shoal_ca's errors
/// withhold it).
fn status(e: CaError) -> Status {
    let msg = e.to_string();
    match e {
        CaError::NotAllowed { .. } | CaError::ForeignTrustDomain { .. } => {
            tracing::info!("CA: refused a CSR: {msg}");
            Status::permission_denied(msg)
        }
        CaError::CsrMalformed(_)
        | CaError::CsrBadSignature
        | CaError::CsrUnsupportedExtension
        | CaError::CsrSan(_)
        | CaError::InvalidSpiffeId { .. }
        | CaError::InvalidTtl(_)
        | CaError::InvalidActivationDelay(_)
        | CaError::Pem(_) => Status::invalid_argument(msg),
        CaError::IssuerExpired { .. } | CaError::RotationPending { .. } => {
            Status::failed_precondition(msg)
        }
        _ => {
            tracing::error!("CA: {msg}");
            Status::internal(msg)
        }
    }
}

/// Parses an optional humantime duration field ("30m"), naming the field when it is not one.
fn parse_duration(field: &str, value: Option<&str>) -> Result<Option<Duration>, Status> {
    value
        .map(|t| {
            humantime::parse_duration(t.trim()).map_err(|e| {
                Status::invalid_argument(format!("{field}: {t:?} is not a duration: {e}"))
            })
        })
        .transpose()
}

#[tonic::async_trait]
impl CaService for CaApi {
    async fn sign_csr(
        &self,
        request: Request<pb::SignCsrRequest>,
    ) -> Result<Response<pb::SignCsrResponse>, Status> {
        // What this caller may get signed (set by the admin server's `AuthLayer`; absent:
        // nothing).
        let grant = request.extensions().get::<CsrGrant>().cloned();
        let req = request.into_inner();
        let ttl = parse_duration("requested_ttl", req.requested_ttl.as_deref())?;
        let (policy, caller) = match grant {
            Some(CsrGrant::Any) => (None, None),
            Some(CsrGrant::Only { allowed, caller }) => {
                (Some(IssuePolicy::new(allowed)), Some(caller))
            }
            None => return Err(Status::permission_denied("no CSR grant for this caller")),
        };
        let who = caller.clone();
        let svid = self
            .with_store(move |store| {
                let policy =
                    policy.unwrap_or_else(|| IssuePolicy::any_in(store.authority().trust_domain()));
                store.sign_csr(&req.csr_pem, ttl, &policy).map_err(|e| {
                    if matches!(e, CaError::NotAllowed { .. }) {
                        tracing::warn!(
                            caller = who.as_deref().unwrap_or("allowed"),
                            "CA: the caller may not have this ID signed"
                        );
                    }
                    status(e)
                })
            })
            .await?;
        tracing::info!(id = %svid.spiffe_id(), serial = svid.serial(), caller = caller.as_deref().unwrap_or("allowed"), "CA: signed a CSR");
        Ok(Response::new(pb::SignCsrResponse {
            chain_pem: svid.chain_pem(),
            spiffe_id: svid.spiffe_id().to_string(),
            not_after: shoal_ca::format_time(svid.not_after()),
        }))
    }

    async fn get_trust_bundle(
        &self,
        _: Request<pb::GetTrustBundleRequest>,
    ) -> Result<Response<pb::GetTrustBundleResponse>, Status> {
        let bundle_pem = self
            .with_store(|store| Ok(store.trust_bundle().to_pem()))
            .await?;
        Ok(Response::new(pb::GetTrustBundleResponse { bundle_pem }))
    }

    async fn rotate_root(
        &self,
        request: Request<pb::RotateRootRequest>,
    ) -> Result<Response<pb::RotateRootResponse>, Status> {
        let req = request.into_inner();
        let delay = parse_duration("activation_delay", req.activation_delay.as_deref())?;
        let reply = self
            .with_store(move |store| {
                let rotation = match delay {
                    Some(d) => store.rotate_root_with_delay(d),
                    None => store.rotate_root(),
                }
                .map_err(status)?;
                Ok(pb::RotateRootResponse {
                    root_pem: rotation.root_pem,
                    fingerprint: rotation.fingerprint,
                    bundle_pem: store.trust_bundle().to_pem(),
                    activates_at: shoal_ca::format_time(rotation.activates_at),
                    active: rotation.active,
                })
            })
            .await?;
        tracing::info!(
            fingerprint = %reply.fingerprint,
            activates_at = %reply.activates_at,
            "CA: rotated the root"
        );
        Ok(Response::new(reply))
    }
}
