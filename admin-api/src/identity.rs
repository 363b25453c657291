//! The identity agent: on the admin thread, obtains this proxy's SVID and trust bundle, installs
//! them into the data plane's [`Credentials`] (new TLS handshakes use them at once; established
//! connections are untouched), and renews the SVID at about half its lifetime plus jitter
//! (`shoal_ca::renewal_time`). Between renewals it refreshes the trust bundle every
//! `bundle_refresh`, so a root rotated at the CA (published before it issues) is trusted here
//! before any peer presents a certificate from it.
//!
//! Two sources: a remote CA service (`shoal.ca.v1.CaService` of another shoal; a fresh key and
//! CSR for every renewal, the key never leaves the process) or the local CA in
//! `<state_dir>/ca`, shared with the CA service this process serves. A remote CA is reached
//! in plaintext (loopback) or over TLS ([`RemoteTls`]): the first SVID with a join token, every
//! renewal with the SVID it replaces.
//!
//! The current SVID is also published in an [`SvidSlot`] (arc-swap) for readiness and tests.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use shoal_ca::{CaStore, OffsetDateTime, SpiffeId, Svid, TrustBundle, generate_csr, renewal_time};
use shoal_dataplane::tls::{Credentials, ServerId, spiffe_client_config};
use shoal_proto::ca::v1 as pb;
use shoal_proto::ca::v1::ca_service_client::CaServiceClient;
use tonic::transport::Channel;

use crate::auth::client::{ALPN, tls_channel, with_bearer};

/// The current SVID (none until the first one is obtained).
pub type SvidSlot = Arc<ArcSwapOption<Svid>>;

/// A CA store shared by the CA service and the local identity agent.
pub type SharedCa = Arc<Mutex<CaStore>>;

/// Where the SVID comes from.
#[derive(Clone)]
pub enum Source {
    /// A remote `shoal.ca.v1.CaService`.
    Remote(SocketAddr),
    /// The CA this process holds.
    Local(SharedCa),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Remote(a) => write!(f, "remote CA {a}"),
            Source::Local(_) => f.write_str("local CA"),
        }
    }
}

/// What to obtain, from where, and where to install it.
#[derive(Debug, Clone)]
pub struct IdentityAgent {
    pub id: SpiffeId,
    pub source: Source,
    pub ttl: Option<Duration>,
    /// How often the trust bundle is re-read between renewals.
    pub bundle_refresh: Duration,
    pub creds: Arc<Credentials>,
    /// Reach a remote CA over TLS (`None`: plaintext, a loopback CA).
    pub remote_tls: Option<RemoteTls>,
}

/// How a remote CA is reached over TLS: the server must present an SVID of this proxy's trust
/// domain, verified against the installed bundle (or `bootstrap` before there is one); the
/// client presents its SVID while it holds a valid one, else the join token.
#[derive(Clone)]
pub struct RemoteTls {
    /// Credentials holding only the `ca.trust_bundle` roots.
    pub bootstrap: Arc<Credentials>,
    /// The join token (`ca.token_file`).
    pub token: Option<String>,
}

impl std::fmt::Debug for RemoteTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteTls")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Never renew more often than this (a very short TTL is due again at once, because the CA
/// backdates `not_before` by a minute).
const MIN_RENEWAL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl IdentityAgent {
    /// Obtains and renews forever (until the runtime stops).
    pub async fn run(self, slot: SvidSlot) {
        let mut backoff = Duration::from_millis(200);
        let mut bundle_fp: Vec<String> = Vec::new();
        loop {
            let renew_at = match self.obtain().await {
                Ok((svid, bundle)) => {
                    backoff = Duration::from_millis(200);
                    self.install_bundle(&bundle, &mut bundle_fp);
                    if let Err(e) = self.creds.install_svid(&svid) {
                        tracing::error!("identity: cannot use the new SVID: {e}");
                    }
                    let now = OffsetDateTime::now_utc();
                    let renew =
                        renewal_time(svid.not_before(), svid.not_after(), now, fastrand::u64(..));
                    tracing::info!(
                        id = %svid.spiffe_id(),
                        serial = svid.serial(),
                        not_after = %shoal_ca::format_time(svid.not_after()),
                        renew_in = ?renew.delay,
                        source = ?self.source,
                        "identity: installed a new SVID"
                    );
                    slot.store(Some(Arc::new(svid)));
                    tokio::time::Instant::now() + renew.delay.max(MIN_RENEWAL)
                }
                Err(e) => {
                    warn_expiry(&slot);
                    tracing::warn!(source = ?self.source, "identity: could not obtain an SVID ({e}); retrying in {backoff:?}");
                    let at = tokio::time::Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    at
                }
            };
            // Until the renewal is due, keep the trust bundle fresh.
            loop {
                let next = tokio::time::Instant::now() + self.bundle_refresh;
                if next >= renew_at {
                    tokio::time::sleep_until(renew_at).await;
                    break;
                }
                tokio::time::sleep_until(next).await;
                match self.bundle().await {
                    Ok(b) => self.install_bundle(&b, &mut bundle_fp),
                    Err(e) => {
                        tracing::warn!(source = ?self.source, "identity: could not refresh the trust bundle ({e})")
                    }
                }
                warn_expiry(&slot);
            }
        }
    }

    fn install_bundle(&self, bundle: &TrustBundle, current: &mut Vec<String>) {
        let fps = bundle.fingerprints();
        if *current == fps {
            return;
        }
        match self.creds.install_bundle(bundle) {
            Ok(()) => {
                tracing::info!(roots = fps.len(), fingerprints = ?fps, "identity: installed the trust bundle");
                *current = fps;
            }
            Err(e) => tracing::error!("identity: cannot use the trust bundle: {e}"),
        }
    }

    async fn obtain(&self) -> Result<(Svid, TrustBundle), String> {
        let svid = match &self.source {
            Source::Local(ca) => {
                let (ca, id, ttl) = (ca.clone(), self.id.clone(), self.ttl);
                tokio::task::spawn_blocking(move || {
                    let mut store = ca.lock().unwrap_or_else(|e| e.into_inner());
                    store.issue(&id, ttl).map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| e.to_string())??
            }
            Source::Remote(addr) => {
                let (key, csr_pem) = generate_csr(&self.id).map_err(|e| e.to_string())?;
                let (mut client, token) = self.remote(*addr).await?;
                let mut request = tonic::Request::new(pb::SignCsrRequest {
                    csr_pem,
                    requested_ttl: self.ttl.map(|t| humantime::format_duration(t).to_string()),
                });
                if let Some(token) = token {
                    with_bearer(&mut request, token).map_err(|s| s.message().to_string())?;
                }
                let reply = client
                    .sign_csr(request)
                    .await
                    .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
                    .into_inner();
                Svid::from_pem(&reply.chain_pem, Some(key.pem())).map_err(|e| e.to_string())?
            }
        };
        if svid.spiffe_id() != &self.id {
            return Err(format!("the CA issued {} instead", svid.spiffe_id()));
        }
        let bundle = self.bundle().await?;
        bundle
            .verify_svid(&svid, OffsetDateTime::now_utc())
            .map_err(|e| format!("the new SVID does not verify against the trust bundle: {e}"))?;
        Ok((svid, bundle))
    }

    async fn bundle(&self) -> Result<TrustBundle, String> {
        match &self.source {
            Source::Local(ca) => {
                let store = ca.lock().unwrap_or_else(|e| e.into_inner());
                Ok(store.trust_bundle())
            }
            Source::Remote(addr) => {
                let reply = self
                    .remote(*addr)
                    .await?
                    .0
                    .get_trust_bundle(pb::GetTrustBundleRequest {})
                    .await
                    .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
                    .into_inner();
                TrustBundle::from_pem(&reply.bundle_pem).map_err(|e| e.to_string())
            }
        }
    }
}

impl IdentityAgent {
    /// A client of the remote CA, and the join token to present (over TLS, while this proxy
    /// holds no valid SVID).
    async fn remote(
        &self,
        addr: SocketAddr,
    ) -> Result<(CaServiceClient<Channel>, Option<&str>), String> {
        let Some(tls) = &self.remote_tls else {
            let client = CaServiceClient::connect(format!("http://{addr}"))
                .await
                .map_err(|e| format!("connecting: {e}"))?;
            return Ok((client, None));
        };
        let trust = match self.creds.trust() {
            Some(_) => self.creds.clone(),
            None => tls.bootstrap.clone(),
        };
        let present = self.creds.ready().then(|| self.creds.clone());
        let token = match present {
            Some(_) => None,
            None => tls.token.as_deref(),
        };
        let expected = ServerId::InTrustDomain(self.id.trust_domain().clone());
        let config = spiffe_client_config(trust, expected, present, ALPN)
            .map_err(|e| format!("TLS config: {e}"))?;
        let channel = tls_channel(addr, config, Duration::from_secs(5))
            .await
            .map_err(|e| match std::error::Error::source(&e) {
                Some(cause) => format!("connecting over TLS: {e}: {cause}"),
                None => format!("connecting over TLS: {e}"),
            })?;
        Ok((CaServiceClient::new(channel), token))
    }
}

/// Logs a warning once the SVID has less than 20% of its lifetime left (renewal failing).
fn warn_expiry(slot: &SvidSlot) {
    if let Some(svid) = slot.load().as_ref()
        && let Some(left) = shoal_ca::warn_before_expiry(
            svid.not_before(),
            svid.not_after(),
            OffsetDateTime::now_utc(),
        )
    {
        tracing::warn!(
            id = %svid.spiffe_id(),
            not_after = %shoal_ca::format_time(svid.not_after()),
            "identity: the SVID expires in {left:?} and has not been renewed"
        );
    }
}

/// Whether the slot holds an SVID that is valid now.
pub fn holds_valid(slot: &SvidSlot) -> bool {
    slot.load()
        .as_ref()
        .is_some_and(|s| s.not_after() > OffsetDateTime::now_utc())
}
