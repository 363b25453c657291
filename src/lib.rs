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
use shoal_admin::identity::{IdentityAgent, SvidSlot};
use shoal_admin::{AdminOptions, AdminServer, Control};
use shoal_dataplane::config::ConfigSpec;
use shoal_dataplane::snapshot::{ConfigStore, Rejection, StateFile};
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
        let identity = identity_agent(&store.load().spec)?;
        let svid = identity.as_ref().map(|(_, slot)| slot.clone());
        let admin = if grpc_listener.is_some() || metrics_listener.is_some() || identity.is_some() {
            let opts = AdminOptions {
                identity,
                ca: ca_store(
                    store.load().spec.state_dir.as_deref(),
                    grpc_listener.is_some(),
                )?,
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

/// The CA in `<state_dir>/ca`, served over gRPC when it exists and the admin API runs.
fn ca_store(state_dir: Option<&str>, grpc: bool) -> Result<Option<shoal_ca::CaStore>> {
    let Some(dir) = state_dir.map(|d| Path::new(d).join("ca")) else {
        return Ok(None);
    };
    if !grpc || !shoal_ca::CaStore::exists(&dir) {
        return Ok(None);
    }
    let store = shoal_ca::CaStore::open(&dir)
        .with_context(|| format!("opening the CA in {}", dir.display()))?;
    tracing::info!(dir = %dir.display(), "serving the CA (shoal.ca.v1.CaService)");
    Ok(Some(store))
}

/// The identity agent for `identity:` + `ca: { remote }`, with an empty slot.
fn identity_agent(spec: &ConfigSpec) -> Result<Option<(IdentityAgent, SvidSlot)>> {
    let (Some(identity), Some(ca)) = (&spec.identity, &spec.ca) else {
        return Ok(None);
    };
    let id: shoal_ca::SpiffeId = identity
        .id
        .parse()
        .with_context(|| format!("identity.id: {:?}", identity.id))?;
    let ca: SocketAddr = ca
        .remote
        .parse()
        .with_context(|| format!("ca.remote: {:?}", ca.remote))?;
    let agent = IdentityAgent {
        id,
        ca,
        ttl: identity.ttl.map(|t| t.get()),
    };
    Ok(Some((agent, SvidSlot::default())))
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
