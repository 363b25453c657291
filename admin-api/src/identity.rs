//! The identity agent: on the admin thread, obtains this proxy's SVID from a remote CA service
//! (`shoal.ca.v1.CaService` of another shoal) and renews it at about half its lifetime plus
//! jitter (`shoal_ca::renewal_time`). The key never leaves the process: a fresh key and CSR
//! are made for every renewal. The current SVID is published in an [`SvidSlot`] (arc-swap),
//! which readers (readiness, later the TLS config) load without locking.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use shoal_ca::{OffsetDateTime, SpiffeId, Svid, generate_csr, renewal_time};
use shoal_proto::ca::v1 as pb;
use shoal_proto::ca::v1::ca_service_client::CaServiceClient;

/// The current SVID (none until the first one is obtained).
pub type SvidSlot = Arc<ArcSwapOption<Svid>>;

/// What to obtain, from where.
#[derive(Debug, Clone)]
pub struct IdentityAgent {
    pub id: SpiffeId,
    pub ca: SocketAddr,
    pub ttl: Option<Duration>,
}

/// Never renew more often than this (a very short TTL is due again at once, because the CA
/// backdates `not_before` by a minute).
const MIN_RENEWAL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl IdentityAgent {
    /// Obtains and renews forever (until the runtime stops).
    pub async fn run(self, slot: SvidSlot) {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.obtain().await {
                Ok(svid) => {
                    backoff = Duration::from_millis(200);
                    let now = OffsetDateTime::now_utc();
                    let renew =
                        renewal_time(svid.not_before(), svid.not_after(), now, fastrand::u64(..));
                    tracing::info!(
                        id = %svid.spiffe_id(),
                        serial = svid.serial(),
                        not_after = %shoal_ca::format_time(svid.not_after()),
                        renew_in = ?renew.delay,
                        "identity: obtained an SVID"
                    );
                    slot.store(Some(Arc::new(svid)));
                    tokio::time::sleep(renew.delay.max(MIN_RENEWAL)).await;
                }
                Err(e) => {
                    tracing::warn!(ca = %self.ca, "identity: could not obtain an SVID ({e}); retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn obtain(&self) -> Result<Svid, String> {
        let (key, csr_pem) = generate_csr(&self.id).map_err(|e| e.to_string())?;
        let mut client = CaServiceClient::connect(format!("http://{}", self.ca))
            .await
            .map_err(|e| format!("connecting: {e}"))?;
        let reply = client
            .sign_csr(pb::SignCsrRequest {
                csr_pem,
                requested_ttl: self.ttl.map(|t| humantime::format_duration(t).to_string()),
            })
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
            .into_inner();
        let svid = Svid::from_pem(&reply.chain_pem, Some(key.pem())).map_err(|e| e.to_string())?;
        if svid.spiffe_id() != &self.id {
            return Err(format!("the CA issued {} instead", svid.spiffe_id()));
        }
        Ok(svid)
    }
}

/// Whether the slot holds an SVID that is valid now.
pub fn holds_valid(slot: &SvidSlot) -> bool {
    slot.load()
        .as_ref()
        .is_some_and(|s| s.not_after() > OffsetDateTime::now_utc())
}
