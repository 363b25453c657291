//! Worker threads: one monoio runtime per core, pinned, each with its own listeners, upstream pools
//! and load-balancer state.
//!
//! A worker receives [`WorkerCmd`]s from the control side (the `ConfigStore` and shutdown):
//! `Listeners` hands it its SO_REUSEPORT sockets for new listeners and names the ones to stop (a
//! stopped listener stops accepting; its established connections carry on); `Drain` stops every
//! listener, tells keep-alive connections to close after their current request and waits for
//! connections to finish, up to the drain timeout. Connections read the snapshot through the store
//! (lock-free), so nothing but these commands crosses threads.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures_core::Stream;
use monoio::time::TimeDriver;
use monoio::{FusionDriver, FusionRuntime, RuntimeBuilder};

use crate::proxy::http1::HeaderStore;
use crate::signal::Signal;
use crate::snapshot::ConfigStore;
use crate::upstream::h2pool::H2Pool;
use crate::upstream::lb::Balancer;
use crate::upstream::pool::Pool;

/// A message from the control side to one worker.
pub enum WorkerCmd {
    Listeners {
        /// (listener id, name, this worker's socket)
        add: Vec<(u64, Arc<str>, std::net::TcpListener)>,
        remove: Vec<u64>,
        ack: Sender<()>,
    },
    Drain {
        timeout: Duration,
    },
}

/// The control side's handle on one worker.
pub struct WorkerLink {
    tx: UnboundedSender<WorkerCmd>,
}

impl WorkerLink {
    /// Sends a command; false if the worker is gone.
    pub fn send(&self, cmd: WorkerCmd) -> bool {
        self.tx.unbounded_send(cmd).is_ok()
    }
}

/// Which I/O driver a worker runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    IoUring,
    Epoll,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }
}

/// Everything one worker's connections share. Single-threaded: never crosses cores.
pub struct WorkerCtx {
    pub index: usize,
    pub store: Arc<ConfigStore>,
    pub balancer: Balancer,
    pub pool: Pool,
    /// Multiplexed HTTP/2 upstream connections.
    pub h2pool: H2Pool,
    /// Open downstream connections.
    pub active: Cell<usize>,
    /// What the admin thread reads (`/metrics`); written with relaxed stores, once per connection.
    pub stats: Arc<WorkerStats>,
    /// Fired when the worker starts draining.
    pub draining: Signal,
    /// Buffers lent to connections while they work on a request.
    pub bufs: BufPool,
    /// httparse header slots (parsing is synchronous, so one set serves the worker).
    pub headers: RefCell<HeaderStore>,
}

/// Per-worker free lists of buffers: small (heads, 4 KiB) and copy (bodies, 64 KiB). Taking and
/// returning is a pop and a push; the lists are capped so a burst does not pin memory forever.
#[derive(Default)]
pub struct BufPool {
    small: RefCell<Vec<Vec<u8>>>,
    copy: RefCell<Vec<Vec<u8>>>,
}

const POOL_CAP: usize = 256;
const SMALL_BUF: usize = 2048;

impl BufPool {
    pub fn get_small(&self) -> Vec<u8> {
        self.small
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(SMALL_BUF))
    }

    pub fn put_small(&self, mut b: Vec<u8>) {
        // Grown past 4x (a huge head): let it go rather than keep it around.
        if b.capacity() == 0 || b.capacity() > 4 * SMALL_BUF {
            return;
        }
        let mut list = self.small.borrow_mut();
        if list.len() < POOL_CAP {
            b.clear();
            list.push(b);
        }
    }

    pub fn get_copy(&self) -> Vec<u8> {
        self.copy
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(crate::proxy::io::COPY_BUF))
    }

    pub fn put_copy(&self, mut b: Vec<u8>) {
        if b.capacity() < crate::proxy::io::COPY_BUF {
            return;
        }
        let mut list = self.copy.borrow_mut();
        if list.len() < POOL_CAP / 16 {
            b.clear();
            list.push(b);
        }
    }
}

impl WorkerCtx {
    /// Writes a random (v4) UUID as text, for `x-request-id`.
    pub fn request_id(&self, out: &mut [u8; 36]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut bits =
            ((self.balancer.random_u64() as u128) << 64) | self.balancer.random_u64() as u128;
        bits = (bits & !(0xf << 76)) | (0x4 << 76); // version 4
        bits = (bits & !(0x3 << 62)) | (0x2 << 62); // variant 10
        let mut j = 0;
        for i in 0..32 {
            if matches!(i, 8 | 12 | 16 | 20) {
                out[j] = b'-';
                j += 1;
            }
            out[j] = HEX[((bits >> (124 - 4 * i)) & 0xf) as usize];
            j += 1;
        }
    }
}

/// One worker's counters, readable from other threads (the admin thread sums them on a
/// scrape). Only the owning worker writes them, so plain relaxed stores suffice; they live in
/// their own allocation, so workers do not share a cache line.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub active_connections: AtomicUsize,
    pub accepted_connections: AtomicU64,
    /// HTTP requests answered (HTTP/1.1 and HTTP/2), whoever wrote the response.
    pub requests: AtomicU64,
    /// Responses by class: [1xx, 2xx, 3xx, 4xx, 5xx].
    pub responses_by_class: [AtomicU64; 5],
    /// Upstream TCP connects that succeeded / failed (or timed out).
    pub upstream_connects: AtomicU64,
    pub upstream_connect_failures: AtomicU64,
    /// Downstream TLS handshakes that failed (bad certificate, identity not allowed, timeout).
    pub tls_handshake_failures: AtomicU64,
    /// Requests (HTTP) and connections (TCP) an authorization policy denied.
    pub policy_denials: AtomicU64,
    /// The same and more per endpoint address (`ListClusters`).
    pub endpoints: crate::upstream::stats::EndpointStats,
}

/// Adds one to a counter only this worker writes: a plain load and store, no locked
/// read-modify-write (the scraper only reads).
#[inline]
pub fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

impl WorkerStats {
    /// Counts a response with `status` (called on the worker that wrote it).
    #[inline]
    pub fn record_response(&self, status: u16) {
        bump(&self.requests);
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        bump(&self.responses_by_class[class]);
    }

    #[inline]
    pub fn tls_handshake_failed(&self) {
        bump(&self.tls_handshake_failures);
    }

    #[inline]
    pub fn policy_denied(&self) {
        bump(&self.policy_denials);
    }
}

/// Decrements the active connection count when the connection task ends.
struct ConnGuard(Rc<WorkerCtx>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let n = self.0.active.get() - 1;
        self.0.active.set(n);
        self.0.stats.active_connections.store(n, Ordering::Relaxed);
    }
}

/// The worker threads of a process.
pub struct Workers {
    links: Vec<WorkerLink>,
    stats: Vec<Arc<WorkerStats>>,
    threads: Vec<JoinHandle<()>>,
    drivers: Vec<Driver>,
}

impl Workers {
    /// Starts `n` workers (pinned to cores 0..n when `pin`), each with an empty listener set.
    pub fn start(n: usize, store: Arc<ConfigStore>, pin: bool) -> io::Result<Self> {
        let cores = std::thread::available_parallelism()
            .map(|c| c.get())
            .unwrap_or(1);
        let mut links = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        let stats: Vec<Arc<WorkerStats>> = (0..n).map(|_| Arc::default()).collect();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        for (index, worker_stats) in stats.iter().cloned().enumerate() {
            let (tx, rx) = unbounded();
            links.push(WorkerLink { tx });
            let store = store.clone();
            let ready = ready_tx.clone();
            let core = pin.then_some(index % cores);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("shoal-worker-{index}"))
                    .spawn(move || run_thread(index, core, store, worker_stats, rx, ready))?,
            );
        }
        drop(ready_tx);
        let mut drivers = vec![Driver::Epoll; n];
        for _ in 0..n {
            match ready_rx.recv() {
                Ok((i, Ok(d))) => drivers[i] = d,
                Ok((i, Err(e))) => {
                    return Err(io::Error::other(format!("worker {i} failed to start: {e}")));
                }
                Err(_) => return Err(io::Error::other("a worker exited during start")),
            }
        }
        Ok(Self {
            links,
            stats,
            threads,
            drivers,
        })
    }

    /// Each worker's counters (for `/metrics`).
    pub fn stats(&self) -> Vec<Arc<WorkerStats>> {
        self.stats.clone()
    }

    /// Links for `ConfigStore::attach_workers` (the store sends listener changes through them).
    pub fn links(&self) -> Vec<WorkerLink> {
        self.links
            .iter()
            .map(|l| WorkerLink { tx: l.tx.clone() })
            .collect()
    }

    pub fn drivers(&self) -> &[Driver] {
        &self.drivers
    }

    /// Stops accepting, lets connections finish for up to `timeout`, then joins every worker.
    pub fn drain_and_join(self, timeout: Duration) {
        for l in &self.links {
            l.send(WorkerCmd::Drain { timeout });
        }
        drop(self.links);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

type Ready = std::sync::mpsc::Sender<(usize, Result<Driver, String>)>;

type Runtime = FusionRuntime<TimeDriver<monoio::IoUringDriver>, TimeDriver<monoio::LegacyDriver>>;

/// io_uring (epoll where it is unavailable). The ring is set up for the one thread that submits
/// and reaps on it (COOP_TASKRUN + SINGLE_ISSUER + DEFER_TASKRUN, kernel 6.1+): completions are
/// processed when the worker parks instead of interrupting it with a signal-style notification
/// for each one. A kernel that refuses the flags gets a plain ring.
fn build_runtime() -> io::Result<Runtime> {
    let mut flags = io_uring::IoUring::builder();
    flags
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .setup_single_issuer()
        .setup_defer_taskrun();
    RuntimeBuilder::<FusionDriver>::new()
        .enable_timer()
        .with_entries(4096)
        .uring_builder(flags)
        .build()
        .or_else(|e| {
            tracing::debug!(error = %e, "io_uring refused the task-run flags; using a plain ring");
            RuntimeBuilder::<FusionDriver>::new()
                .enable_timer()
                .with_entries(4096)
                .build()
        })
}

fn run_thread(
    index: usize,
    core: Option<usize>,
    store: Arc<ConfigStore>,
    stats: Arc<WorkerStats>,
    rx: UnboundedReceiver<WorkerCmd>,
    ready: Ready,
) {
    if let Some(core) = core
        && let Err(e) = monoio::utils::bind_to_cpu_set([core])
    {
        tracing::warn!(worker = index, core, error = ?e, "could not pin worker to its core");
    }
    let mut runtime = match build_runtime() {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send((index, Err(e.to_string())));
            return;
        }
    };
    let driver = match &runtime {
        FusionRuntime::Uring(_) => Driver::IoUring,
        FusionRuntime::Legacy(_) => Driver::Epoll,
    };
    tracing::info!(worker = index, core = ?core, driver = driver.name(), "worker started");
    let _ = ready.send((index, Ok(driver)));
    let ctx = Rc::new(WorkerCtx {
        index,
        store,
        balancer: Balancer::with_stats(stats.clone()),
        pool: Pool::with_stats(stats.clone()),
        h2pool: H2Pool::default(),
        active: Cell::new(0),
        stats,
        draining: Signal::new(),
        bufs: BufPool::default(),
        headers: RefCell::new(HeaderStore::default()),
    });
    runtime.block_on(worker_main(ctx, rx));
    tracing::debug!(worker = index, "worker stopped");
}

async fn worker_main(ctx: Rc<WorkerCtx>, mut rx: UnboundedReceiver<WorkerCmd>) {
    // Per listener: (stop, stopped).
    let mut listeners: HashMap<u64, (Signal, Signal)> = HashMap::new();
    monoio::spawn(housekeeping(ctx.clone()));
    while let Some(cmd) = poll_fn(|cx| Pin::new(&mut rx).poll_next(cx)).await {
        match cmd {
            WorkerCmd::Listeners { add, remove, ack } => {
                let mut stopping = Vec::new();
                for id in remove {
                    if let Some((stop, stopped)) = listeners.remove(&id) {
                        stop.fire();
                        stopping.push(stopped);
                    }
                }
                // Ack only once removed listeners have closed their sockets.
                for stopped in stopping {
                    stopped.wait().await;
                }
                for (id, name, socket) in add {
                    match monoio::net::TcpListener::from_std(socket) {
                        Ok(l) => {
                            let (stop, stopped) = (Signal::new(), Signal::new());
                            listeners.insert(id, (stop.clone(), stopped.clone()));
                            monoio::spawn(accept_loop(ctx.clone(), l, name, stop, stopped));
                        }
                        Err(e) => {
                            tracing::error!(worker = ctx.index, listener = %name, error = %e, "cannot adopt listener socket")
                        }
                    }
                }
                let _ = ack.send(());
            }
            WorkerCmd::Drain { timeout } => {
                for (stop, _) in listeners.values() {
                    stop.fire();
                }
                ctx.draining.fire();
                let deadline = Instant::now() + timeout;
                while ctx.active.get() > 0 && Instant::now() < deadline {
                    monoio::time::sleep(Duration::from_millis(20)).await;
                }
                if ctx.active.get() > 0 {
                    tracing::warn!(
                        worker = ctx.index,
                        open = ctx.active.get(),
                        "drain timeout: closing remaining connections"
                    );
                }
                ctx.pool.clear();
                ctx.h2pool.clear();
                return;
            }
        }
    }
}

/// Periodic per-worker chores: shrink the upstream pool, forget state of removed clusters.
async fn housekeeping(ctx: Rc<WorkerCtx>) {
    let mut seen = 0;
    loop {
        monoio::time::sleep(Duration::from_secs(1)).await;
        if ctx.draining.is_fired() {
            return;
        }
        ctx.pool.reap(Instant::now());
        ctx.h2pool.reap(Instant::now());
        let version = ctx.store.version();
        if version != seen {
            seen = version;
            let snap = ctx.store.load();
            ctx.balancer
                .retain_clusters(|uid| snap.clusters.values().any(|c| c.uid == uid));
        }
    }
}

async fn accept_loop(
    ctx: Rc<WorkerCtx>,
    listener: monoio::net::TcpListener,
    name: Arc<str>,
    stop: Signal,
    stopped: Signal,
) {
    loop {
        let accepted = monoio::select! {
            _ = stop.wait() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(worker = ctx.index, listener = %name, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let snap = ctx.store.load_full();
        let Some(l) = snap.listeners.get(&name).cloned() else {
            continue;
        };
        if ctx.active.get() >= l.limits.max_connections_per_worker {
            tracing::warn!(worker = ctx.index, listener = %name, "max_connections_per_worker reached; closing new connection");
            continue;
        }
        let _ = stream.set_nodelay(true);
        let open = ctx.active.get() + 1;
        ctx.active.set(open);
        ctx.stats.active_connections.store(open, Ordering::Relaxed);
        let accepted = ctx.stats.accepted_connections.load(Ordering::Relaxed) + 1;
        ctx.stats
            .accepted_connections
            .store(accepted, Ordering::Relaxed);
        let guard = ConnGuard(ctx.clone());
        monoio::spawn(async move {
            let ctx = guard.0.clone();
            crate::proxy::serve(ctx, snap, l, stream, peer).await;
            drop(guard);
        });
    }
    drop(listener);
    stopped.fire();
    tracing::info!(worker = ctx.index, listener = %name, "listener stopped");
}
