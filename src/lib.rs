//! The `shoal` process: composes the data plane (workers + `ConfigStore`) and, later, the admin
//! thread. `main.rs` only parses flags and calls [`App::start`]; tests start the same `App`.

pub mod demo;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use shoal_dataplane::config::ConfigSpec;
use shoal_dataplane::snapshot::{ConfigStore, Rejection};
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
    workers: Workers,
    config_path: Option<PathBuf>,
}

impl App {
    /// Starts the workers and applies the initial config (rejected whole if invalid).
    pub fn start(opts: AppOptions) -> Result<Self> {
        ConfigStore::check(&opts.spec)?;
        let n = opts.spec.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        let store = Arc::new(ConfigStore::new());
        let workers = Workers::start(n, store.clone(), opts.pin).context("starting workers")?;
        store.attach_workers(workers.links());
        store.apply(opts.spec)?;
        Ok(Self {
            store,
            workers,
            config_path: opts.config_path,
        })
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
        let spec = load_file(path)?;
        Ok(self.store.apply(spec)?)
    }

    /// Stops accepting, drains in-flight requests (up to `drain_timeout`) and stops the workers.
    pub fn shutdown(self) {
        let timeout = self.store.load().drain_timeout;
        tracing::info!(?timeout, "draining");
        self.workers.drain_and_join(timeout);
        tracing::info!("stopped");
    }
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

/// The built-in demo config: `listen` -> the in-process demo upstream at `upstream`.
pub fn demo_config(listen: SocketAddr, upstream: SocketAddr) -> Result<ConfigSpec> {
    let yaml = format!(
        r#"
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
