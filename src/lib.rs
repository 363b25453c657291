//! The `shoal` process: composes the data plane (workers + `ConfigStore`) and the admin thread
//! (gRPC admin API, when `admin.grpc` is set). `main.rs` only parses flags and calls
//! [`App::start`]; tests start the same `App`.
//!
//! Start-up precedence: when `state_dir` holds a persisted config, it replaces the routing
//! config of the file (listeners, routes, clusters, limits, timeouts, access log); the file
//! still provides the process settings `admin`, `state_dir`, `workers`, `identity` and `ca`.

pub mod demo;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use shoal_admin::auth::tokens::read_client_token;
use shoal_admin::auth::{Access, JoinTokens};
use shoal_admin::identity::{IdentityAgent, RemoteTls, SharedCa, Source, SvidSlot};
use shoal_admin::{AdminOptions, AdminServer, Control};
use shoal_dataplane::config::{CaSpec, ConfigSpec};
use shoal_dataplane::snapshot::{ConfigStore, Rejection, StateFile};
use shoal_dataplane::tls::Credentials;
use shoal_dataplane::worker::{Driver, Workers};

/// How to start an [`App`].
pub struct AppOptions {
    pub spec: ConfigSpec,
    /// The file `reload()` (SIGHUP) re-reads.
    pub config_path: Option<PathBuf>,
    /// Pin worker `i` to core `i`.
    pub pin: bool,
}

/// A running Shoal: workers with their listeners, and the store that changes them.
pub struct App {
    store: Arc<ConfigStore>,
    control: Arc<Control>,
    admin: Option<AdminServer>,
    svid: Option<SvidSlot>,
    workers: Workers,
    config_path: Option<PathBuf>,
}

impl App {
    /// Starts the workers and applies the initial config (rejected whole if invalid): the
    /// persisted one from `state_dir` if there is one, else `opts.spec`. Then starts the admin
    /// API if `admin.grpc` is set.
    pub fn start(opts: AppOptions) -> Result<Self> {
        ConfigStore::check(&opts.spec)?;
        let state = opts.spec.state_dir.as_deref().map(StateFile::new);
        let (spec, last) = match state.as_ref().map(StateFile::load).transpose()?.flatten() {
            Some((version, persisted)) => {
                tracing::info!(
                    version,
                    path = %state.as_ref().map(|s| s.path().display().to_string()).unwrap_or_default(),
                    "loading the persisted config (it takes precedence over the config file)"
                );
                let spec = with_process_settings(persisted, &opts.spec);
                ConfigStore::check(&spec).context("the persisted config is not valid")?;
                (spec, version.saturating_sub(1))
            }
            None => (opts.spec, 0),
        };
        // Bind the admin ports first: a conflict fails the start before any worker runs.
        let bind = |field: &str, addr: Option<&str>| -> Result<Option<std::net::TcpListener>> {
            addr.map(|a| {
                std::net::TcpListener::bind(a)
                    .with_context(|| format!("admin.{field}: cannot listen on {a}"))
            })
            .transpose()
        };
        let access = admin_access(&spec)?;
        let admin = spec.admin.clone().unwrap_or_default();
        let grpc_listener = bind("grpc", admin.grpc.as_deref())?;
        let metrics_listener = bind("metrics", admin.metrics.as_deref())?;
        let n = spec.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        let store = Arc::new(ConfigStore::resuming_after(last));
        store.set_state_file(state);
        let workers = Workers::start(n, store.clone(), opts.pin).context("starting workers")?;
        store.attach_workers(workers.links());
        store.apply(spec)?;
        let control = Control::new(store.clone());
        let running = store.load_full();
        let ca = ca_store(&running.spec, grpc_listener.is_some())?;
        let identity = identity_agent(&running.spec, ca.clone(), running.creds.clone())?;
        let svid = identity.as_ref().map(|(_, slot)| slot.clone());
        let admin = if grpc_listener.is_some() || metrics_listener.is_some() || identity.is_some() {
            let opts = AdminOptions {
                identity,
                ca,
                creds: Some(running.creds.clone()),
                access,
                grpc: grpc_listener,
                metrics: metrics_listener,
                workers: workers.stats(),
            };
            Some(AdminServer::start(opts, control.clone())?)
        } else {
            None
        };
        Ok(Self {
            store,
            control,
            admin,
            svid,
            workers,
            config_path: opts.config_path,
        })
    }

    /// The gRPC admin API's address, when it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(AdminServer::local_addr)
    }

    /// The address of `/healthz`, `/readyz` and `/metrics`, when they run.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(AdminServer::metrics_addr)
    }

    /// This proxy's current SVID (with `identity:` once obtained from the CA).
    pub fn svid(&self) -> Option<Arc<shoal_ca::Svid>> {
        self.svid.as_ref().and_then(|s| s.load_full())
    }

    /// The admin side's writer (transactions, reloads, the watch journal).
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    pub fn store(&self) -> &Arc<ConfigStore> {
        &self.store
    }

    /// The bound address of a listener (resolves port 0).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.store.listener_addr(name)
    }

    pub fn drivers(&self) -> &[Driver] {
        self.workers.drivers()
    }

    /// Re-reads the config file and applies it; on any error the running config stays.
    pub fn reload(&self) -> Result<u64> {
        let path = self
            .config_path
            .as_deref()
            .context("no config file to reload (started with the demo config)")?;
        let spec = with_process_settings(load_file(path)?, &self.store.load().spec);
        Ok(self.control.apply_spec(spec)?)
    }

    /// Stops the admin API, stops accepting, drains in-flight requests (up to `drain_timeout`)
    /// and stops the workers.
    pub fn shutdown(self) {
        if let Some(admin) = self.admin {
            admin.stop();
        }
        let timeout = self.store.load().drain_timeout;
        tracing::info!(?timeout, "draining");
        self.workers.drain_and_join(timeout);
        tracing::info!("stopped");
    }
}

/// The CA in `<state_dir>/ca`: served over gRPC when it exists and the admin API runs; created
/// on first start when the proxy's `identity` has no `ca.remote` (the local CA issues it).
fn ca_store(spec: &ConfigSpec, grpc: bool) -> Result<Option<SharedCa>> {
    let Some(dir) = spec.state_dir.as_deref().map(|d| Path::new(d).join("ca")) else {
        return Ok(None);
    };
    let local_identity = spec.identity.is_some() && spec.ca.is_none();
    let store = if local_identity {
        let id: shoal_ca::SpiffeId = spec
            .identity
            .as_ref()
            .map(|i| i.id.as_str())
            .unwrap_or_default()
            .parse()
            .context("identity.id")?;
        shoal_ca::CaStore::load_or_init(&dir, id.trust_domain())
            .with_context(|| format!("the local CA in {}", dir.display()))?
    } else if grpc && shoal_ca::CaStore::exists(&dir) {
        shoal_ca::CaStore::open(&dir)
            .with_context(|| format!("opening the CA in {}", dir.display()))?
    } else {
        return Ok(None);
    };
    if grpc {
        tracing::info!(dir = %dir.display(), "serving the CA (shoal.ca.v1.CaService)");
    }
    Ok(Some(Arc::new(std::sync::Mutex::new(store))))
}

/// The identity agent for `identity:`, from `ca.remote` or the local CA, with an empty slot.
fn identity_agent(
    spec: &ConfigSpec,
    local: Option<SharedCa>,
    creds: Arc<Credentials>,
) -> Result<Option<(IdentityAgent, SvidSlot)>> {
    let Some(identity) = &spec.identity else {
        return Ok(None);
    };
    let id: shoal_ca::SpiffeId = identity
        .id
        .parse()
        .with_context(|| format!("identity.id: {:?}", identity.id))?;
    let (source, bundle_refresh) = match (&spec.ca, local) {
        (Some(ca), _) => {
            let addr: SocketAddr = ca
                .remote
                .parse()
                .with_context(|| format!("ca.remote: {:?}", ca.remote))?;
            (Source::Remote(addr), ca.bundle_refresh.get())
        }
        (None, Some(local)) => (Source::Local(local), std::time::Duration::from_secs(1)),
        (None, None) => {
            anyhow::bail!("identity: needs `ca.remote` or a `state_dir` for a local CA")
        }
    };
    let agent = IdentityAgent {
        id,
        source,
        ttl: identity.ttl.map(|t| t.get()),
        bundle_refresh,
        creds,
        remote_tls: spec.ca.as_ref().map(remote_tls).transpose()?.flatten(),
    };
    Ok(Some((agent, SvidSlot::default())))
}

/// Who may call the admin API: everyone local on loopback; elsewhere mTLS with `admin.allow`
/// and the join tokens of `admin.join_tokens` (read now; a bad file fails the start).
fn admin_access(spec: &ConfigSpec) -> Result<Access> {
    let admin = spec.admin.clone().unwrap_or_default();
    let tokens = match admin.join_tokens.as_deref() {
        Some(path) => JoinTokens::load(Path::new(path)).context("admin.join_tokens")?,
        None => JoinTokens::default(),
    };
    let loopback = admin
        .grpc
        .as_deref()
        .and_then(|g| g.parse::<SocketAddr>().ok())
        .is_none_or(|a| a.ip().is_loopback());
    if loopback {
        return Ok(Access::Loopback);
    }
    let allow = admin
        .allow
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.parse::<shoal_ca::IdPattern>()
                .with_context(|| format!("admin.allow[{i}]: {p:?}"))
        })
        .collect::<Result<_>>()?;
    Ok(Access::Mtls { allow, tokens })
}

/// TLS to the remote CA when `ca.trust_bundle` is set: its roots, and the join token of
/// `ca.token_file` (both read now).
fn remote_tls(ca: &CaSpec) -> Result<Option<RemoteTls>> {
    let Some(bundle_path) = ca.trust_bundle.as_deref() else {
        return Ok(None);
    };
    let pem = std::fs::read_to_string(bundle_path)
        .with_context(|| format!("ca.trust_bundle: reading {bundle_path}"))?;
    let bundle = shoal_ca::TrustBundle::from_pem(&pem)
        .with_context(|| format!("ca.trust_bundle: {bundle_path}"))?;
    let bootstrap = Credentials::new();
    bootstrap
        .install_bundle(&bundle)
        .with_context(|| format!("ca.trust_bundle: {bundle_path}"))?;
    let token = ca
        .token_file
        .as_deref()
        .map(|p| read_client_token(Path::new(p)).context("ca.token_file"))
        .transpose()?;
    Ok(Some(RemoteTls { bootstrap, token }))
}

/// `spec` with the process settings (`admin`, `state_dir`, `workers`, `identity`, `ca`) of
/// `from`: these are read at start only and always come from the config file / flags.
fn with_process_settings(mut spec: ConfigSpec, from: &ConfigSpec) -> ConfigSpec {
    spec.identity = from.identity.clone();
    spec.ca = from.ca.clone();
    spec.admin = from.admin.clone();
    spec.state_dir = from.state_dir.clone();
    spec.workers = from.workers;
    spec
}

/// Reads and parses a YAML config file (structure only; `ConfigStore` validates the rest).
pub fn load_file(path: &Path) -> Result<ConfigSpec> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    ConfigSpec::from_yaml(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Validates a config file; `Err` lists every problem with its field path.
pub fn validate_file(path: &Path) -> Result<ConfigSpec> {
    let spec = load_file(path)?;
    ConfigStore::check(&spec).map_err(|r: Rejection| anyhow::anyhow!("{r}"))?;
    // The files the process settings name (tokens, bundles) are read at start: check them too.
    admin_access(&spec)?;
    if let Some(ca) = &spec.ca {
        remote_tls(ca)?;
    }
    Ok(spec)
}

/// The built-in demo config: `listen` -> the in-process demo upstream at `upstream`, and the
/// admin API on `admin` when given.
pub fn demo_config(
    listen: SocketAddr,
    upstream: SocketAddr,
    admin: Option<SocketAddr>,
) -> Result<ConfigSpec> {
    let admin = admin.map_or(String::new(), |a| format!("admin: {{ grpc: \"{a}\" }}"));
    let yaml = format!(
        r#"
{admin}
listeners:
  - {{ name: demo, address: "{listen}", protocol: auto, routes: demo }}
routes:
  demo:
    - domains: ["*"]
      routes:
        - {{ match: {{ path: /healthz }}, direct_response: {{ status: 200, body: "ok\n" }} }}
        - {{ match: {{ prefix: / }}, cluster: demo-upstream, timeout: 5s }}
clusters:
  - {{ name: demo-upstream, endpoints: ["{upstream}"] }}
"#
    );
    Ok(ConfigSpec::from_yaml(&yaml)?)
}
