//! The immutable, versioned [`Snapshot`] and [`ConfigStore`], the one door every change goes through.
//!
//! `ConfigStore::apply(spec)`: compile (validate everything, collecting every error) -> bind new
//! listener sockets (one SO_REUSEPORT socket per worker) -> swap the snapshot (arc-swap) -> hand
//! each worker its new sockets and the ids of listeners to stop -> wait for every worker to ack.
//! A rejected change leaves the running snapshot and listeners untouched. Readers (workers) only
//! `load()` the current snapshot: no lock on the hot path. The store's mutex serialises writers
//! and lives on the control side only.

mod bind;
mod compile;
mod persist;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};

use crate::access_log::AccessLog;
use crate::config::{ConfigSpec, Http2Spec, LimitsSpec, ListenerProtocol};
use crate::policy::Policy;
use crate::route::RouteTable;
use crate::tls::Credentials;
use crate::upstream::Cluster;
use crate::worker::{WorkerCmd, WorkerLink};

pub use bind::bind_reuseport;
pub use compile::{ALPN_H1, ALPN_H2, ClusterTls, FieldError, ListenerTls, compile};
pub use persist::{LoadError, StateFile};

/// A compiled, immutable configuration.
#[derive(Debug)]
pub struct Snapshot {
    pub version: u64,
    pub spec: ConfigSpec,
    pub listeners: HashMap<Arc<str>, Arc<Listener>>,
    pub clusters: HashMap<String, Arc<Cluster>>,
    pub route_tables: HashMap<String, Arc<RouteTable>>,
    pub drain_timeout: Duration,
    /// Opened by `apply` (never by `compile`, which has no side effects).
    pub access_log: Option<Arc<AccessLog>>,
    /// The proxy's rotating SVID and trust bundle (the same for every version: TLS configs
    /// read it at each handshake).
    pub creds: Arc<Credentials>,
}

#[derive(Debug)]
pub struct Listener {
    pub name: Arc<str>,
    pub address: SocketAddr,
    pub protocol: ListenerProtocol,
    pub kind: ListenerKind,
    pub limits: LimitsSpec,
    pub timeouts: Timeouts,
    /// HTTP/2 settings (used by `auto` and `http2` listeners).
    pub http2: Http2Spec,
    /// TLS termination; plaintext when `None`.
    pub tls: Option<Arc<ListenerTls>>,
    /// Authorization checked for every request (HTTP) or connection (TCP).
    pub policy: Option<Arc<Policy>>,
}

#[derive(Debug)]
pub enum ListenerKind {
    Http { routes: Arc<RouteTable> },
    Tcp { cluster: Arc<Cluster> },
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header_read: Duration,
    pub keepalive_idle: Duration,
    pub idle: Duration,
    /// Zero = none.
    pub request: Duration,
}

/// A change that was refused; the running config is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Rejection {
    pub errors: Vec<FieldError>,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "config rejected ({} error{}):",
            self.errors.len(),
            if self.errors.len() == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl Rejection {
    fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            errors: vec![FieldError {
                path: path.into(),
                message: message.into(),
            }],
        }
    }
}

/// Why [`ConfigStore::apply_if`] refused a change; the running config is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Compare-and-swap failed: the running version is not the one the caller expected.
    #[error("config version is {current}, not {expected}")]
    Conflict { expected: u64, current: u64 },
    #[error(transparent)]
    Rejected(#[from] Rejection),
}

/// A listener socket set owned by the workers, tracked by the store.
struct Bound {
    id: u64,
    address: SocketAddr,
    local: SocketAddr,
}

#[derive(Default)]
struct Door {
    workers: Vec<WorkerLink>,
    bound: HashMap<Arc<str>, Bound>,
    next_id: u64,
    /// Where applied configs are persisted (before the swap); none = not persisted.
    state: Option<StateFile>,
}

/// Holds the running snapshot; the only way to change it is [`ConfigStore::apply`].
pub struct ConfigStore {
    current: ArcSwap<Snapshot>,
    version: AtomicU64,
    door: Mutex<Door>,
}

impl Default for ConfigStore {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigStore {
    /// An empty store (version 0, nothing listening).
    pub fn new() -> Self {
        Self::resuming_after(0)
    }

    /// An empty store whose first `apply` produces version `last + 1`: a restart that re-applies
    /// a persisted config of version `v` uses `resuming_after(v - 1)` so versions stay monotonic
    /// across restarts (the persisted config keeps its version).
    pub fn resuming_after(last: u64) -> Self {
        let mut empty = compile(&ConfigSpec::default(), None)
            .unwrap_or_else(|_| unreachable!("empty config is valid"));
        empty.version = last;
        Self {
            current: ArcSwap::from_pointee(empty),
            version: AtomicU64::new(last),
            door: Mutex::default(),
        }
    }

    /// Persist every applied config to `state` (before the swap). Called before the first `apply`.
    pub fn set_state_file(&self, state: Option<StateFile>) {
        self.door.lock().unwrap_or_else(|e| e.into_inner()).state = state;
    }

    /// The running snapshot (lock-free).
    #[inline]
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    #[inline]
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The running version (one atomic load; cheaper than `load()` to detect a change).
    #[inline]
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Registers the workers that own listeners. Called once, before the first `apply`.
    pub fn attach_workers(&self, links: Vec<WorkerLink>) {
        self.door.lock().unwrap_or_else(|e| e.into_inner()).workers = links;
    }

    /// The address a listener is bound to (useful with port 0).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.door
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .bound
            .get(name)
            .map(|b| b.local)
    }

    /// Validates `spec` without applying it.
    pub fn check(spec: &ConfigSpec) -> Result<(), Rejection> {
        compile(spec, None)
            .map(|_| ())
            .map_err(|errors| Rejection { errors })
    }

    /// Validates, compiles, binds, persists and installs `spec` on every worker, all or nothing.
    /// Returns the new version once every worker runs it.
    pub fn apply(&self, spec: ConfigSpec) -> Result<u64, Rejection> {
        let mut door = self.door.lock().unwrap_or_else(|e| e.into_inner());
        self.apply_locked(&mut door, spec)
    }

    /// [`apply`](Self::apply) as a compare-and-swap: with `Some(v)`, applies only if the running
    /// version is `v`, checked under the same lock that serialises every apply, so two
    /// controllers cannot overwrite each other. `None` applies unconditionally.
    pub fn apply_if(&self, expected: Option<u64>, spec: ConfigSpec) -> Result<u64, ApplyError> {
        let mut door = self.door.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(expected) = expected {
            let current = self.current.load().version;
            if current != expected {
                return Err(ApplyError::Conflict { expected, current });
            }
        }
        Ok(self.apply_locked(&mut door, spec)?)
    }

    fn apply_locked(&self, door: &mut Door, spec: ConfigSpec) -> Result<u64, Rejection> {
        let started = std::time::Instant::now();
        let prev = self.current.load_full();
        let mut snap = compile(&spec, Some(&prev)).map_err(|errors| Rejection { errors })?;
        let compiled = started.elapsed();
        if let (Some(old), Some(new)) = (prev.spec.workers, spec.workers)
            && old != new
            && !door.workers.is_empty()
        {
            tracing::warn!(
                running = old,
                wanted = new,
                "changing `workers` takes effect at the next restart"
            );
        }

        snap.access_log = match (&spec.access_log, &prev.access_log) {
            (None, _) => None,
            (Some(want), Some(have)) if have.path() == want.path => Some(have.clone()),
            (Some(want), _) => Some(AccessLog::open(&want.path).map_err(|e| {
                Rejection::one(
                    "access_log.path",
                    format!("cannot open {:?}: {e}", want.path),
                )
            })?),
        };

        // Listener diff: keep sockets whose name and address are unchanged, bind the rest.
        let n = door.workers.len();
        let mut adds: Vec<Vec<(u64, Arc<str>, std::net::TcpListener)>> =
            (0..n).map(|_| Vec::new()).collect();
        let mut new_bound: HashMap<Arc<str>, Bound> = HashMap::new();
        if n > 0 {
            for (i, l) in spec.listeners.iter().enumerate() {
                let name: Arc<str> = Arc::from(l.name.as_str());
                let listener = &snap.listeners[&name];
                if let Some(b) = door.bound.get(&name)
                    && b.address == listener.address
                {
                    new_bound.insert(
                        name,
                        Bound {
                            id: b.id,
                            address: b.address,
                            local: b.local,
                        },
                    );
                    continue;
                }
                let sockets = bind_reuseport(listener.address, n).map_err(|e| {
                    Rejection::one(
                        format!("listeners[{i}].address"),
                        format!("cannot listen on {}: {e}", listener.address),
                    )
                })?;
                let local = sockets[0].local_addr().unwrap_or(listener.address);
                door.next_id += 1;
                let id = door.next_id;
                for (w, s) in sockets.into_iter().enumerate() {
                    adds[w].push((id, name.clone(), s));
                }
                new_bound.insert(
                    name,
                    Bound {
                        id,
                        address: listener.address,
                        local,
                    },
                );
            }
        }
        let removes: Vec<u64> = door
            .bound
            .values()
            .filter(|b| !new_bound.values().any(|nb| nb.id == b.id))
            .map(|b| b.id)
            .collect();

        let version = prev.version + 1;
        let persist_start = std::time::Instant::now();
        if let Some(state) = &door.state {
            state.save(version, &spec).map_err(|e| {
                Rejection::one(
                    "state_dir",
                    format!(
                        "cannot persist the config in {}: {e}",
                        state.dir().display()
                    ),
                )
            })?;
        }
        let persisted = persist_start.elapsed();
        snap.version = version;
        let swap_start = std::time::Instant::now();
        self.current.store(Arc::new(snap));
        self.version.store(version, Ordering::Release);
        door.bound = new_bound;

        // Every worker installs its sockets and stops removed listeners before we return.
        let (ack_tx, ack_rx) = std::sync::mpsc::channel();
        let mut sent = 0;
        for (link, add) in door.workers.iter().zip(adds) {
            let cmd = WorkerCmd::Listeners {
                add,
                remove: removes.clone(),
                ack: ack_tx.clone(),
            };
            if link.send(cmd) {
                sent += 1;
            }
        }
        drop(ack_tx);
        for _ in 0..sent {
            if ack_rx.recv_timeout(Duration::from_secs(10)).is_err() {
                tracing::error!(
                    version,
                    "a worker did not acknowledge the new config in 10s"
                );
                break;
            }
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        tracing::info!(
            version,
            listeners = door.bound.len(),
            compile_ms = ms(compiled),
            persist_ms = ms(persisted),
            swap_and_acks_ms = ms(swap_start.elapsed()),
            total_ms = ms(started.elapsed()),
            "config applied"
        );
        Ok(version)
    }
}

#[cfg(test)]
mod tests;
