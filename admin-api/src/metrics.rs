//! `/healthz`, `/readyz` and `/metrics` (Prometheus text) over plain HTTP/1.1 on `admin.metrics`,
//! served by the admin thread. One request per connection (`connection: close`); a scrape sums
//! the workers' counters (relaxed atomic loads: the workers never wait for it).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use shoal_dataplane::snapshot::ConfigStore;

use crate::identity::{self, SharedCa, SvidSlot};
use shoal_ca::OffsetDateTime;
use shoal_dataplane::tls::Credentials;
use shoal_dataplane::worker::WorkerStats;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the endpoints report on.
pub struct Probe {
    pub store: Arc<ConfigStore>,
    pub workers: Vec<Arc<WorkerStats>>,
    /// The proxy's SVID, when it has an `identity`.
    pub identity: Option<SvidSlot>,
    /// The data plane's TLS credentials.
    pub creds: Option<Arc<Credentials>>,
    /// The CA this process holds.
    pub ca: Option<SharedCa>,
}

impl Probe {
    /// Ready once a config is installed on every worker (version > 0) and, when the proxy has
    /// an `identity`, it holds a valid SVID.
    pub fn ready(&self) -> bool {
        self.store.version() > 0 && self.identity.as_ref().is_none_or(identity::holds_valid)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let snap = self.store.load();
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, kind: &str, rows: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let one = |v: u64| [(String::new(), v)];
        gauge(
            "shoal_config_version",
            "The running config version.",
            "gauge",
            &one(snap.version),
        );
        gauge(
            "shoal_listeners",
            "Listeners in the running config.",
            "gauge",
            &one(snap.listeners.len() as u64),
        );
        gauge(
            "shoal_clusters",
            "Clusters in the running config.",
            "gauge",
            &one(snap.clusters.len() as u64),
        );
        gauge(
            "shoal_workers",
            "Worker threads.",
            "gauge",
            &one(self.workers.len() as u64),
        );
        let per_worker = |f: &dyn Fn(&WorkerStats) -> u64| -> Vec<(String, u64)> {
            self.workers
                .iter()
                .enumerate()
                .map(|(i, w)| (format!("{{worker=\"{i}\"}}"), f(w)))
                .collect()
        };
        gauge(
            "shoal_active_connections",
            "Open downstream connections, per worker.",
            "gauge",
            &per_worker(&|w| w.active_connections.load(Ordering::Relaxed) as u64),
        );
        gauge(
            "shoal_accepted_connections_total",
            "Downstream connections accepted, per worker.",
            "counter",
            &per_worker(&|w| w.accepted_connections.load(Ordering::Relaxed)),
        );
        gauge(
            "shoal_http_requests_total",
            "HTTP requests answered (HTTP/1.1 and HTTP/2, proxied or local), per worker.",
            "counter",
            &per_worker(&|w| w.requests.load(Ordering::Relaxed)),
        );
        let by_class: Vec<(String, u64)> = self
            .workers
            .iter()
            .enumerate()
            .flat_map(|(i, w)| {
                (0..5).map(move |c| {
                    (
                        format!("{{worker=\"{i}\",class=\"{}xx\"}}", c + 1),
                        w.responses_by_class[c].load(Ordering::Relaxed),
                    )
                })
            })
            .collect();
        gauge(
            "shoal_http_responses_total",
            "HTTP responses by status class, per worker.",
            "counter",
            &by_class,
        );
        gauge(
            "shoal_upstream_connects_total",
            "Upstream connections opened, per worker.",
            "counter",
            &per_worker(&|w| w.upstream_connects.load(Ordering::Relaxed)),
        );
        gauge(
            "shoal_upstream_connect_failures_total",
            "Upstream connects that failed or timed out, per worker.",
            "counter",
            &per_worker(&|w| w.upstream_connect_failures.load(Ordering::Relaxed)),
        );
        gauge(
            "shoal_tls_handshake_failures_total",
            "Downstream TLS handshakes that failed (certificate refused, identity not allowed, timeout), per worker.",
            "counter",
            &per_worker(&|w| w.tls_handshake_failures.load(Ordering::Relaxed)),
        );
        gauge(
            "shoal_policy_denials_total",
            "Requests (HTTP) and connections (TCP) denied by an authorization policy, per worker.",
            "counter",
            &per_worker(&|w| w.policy_denials.load(Ordering::Relaxed)),
        );
        self.render_expiry(&mut out);
        out
    }

    /// `shoal_certificate_expiry_seconds`: seconds until each certificate this proxy depends on
    /// expires (negative once expired): its SVID, every root of its trust bundle, and, when it
    /// holds a CA, that CA's active root and intermediate.
    fn render_expiry(&self, out: &mut String) {
        let now = OffsetDateTime::now_utc();
        let secs = |t: OffsetDateTime| (t - now).whole_seconds();
        let mut rows: Vec<(String, i64)> = Vec::new();
        if let Some(creds) = &self.creds {
            if let Some(svid) = creds.svid() {
                rows.push((
                    format!(
                        "{{kind=\"svid\",id=\"{}\",serial=\"{}\"}}",
                        svid.id, svid.serial
                    ),
                    secs(svid.not_after),
                ));
            }
            if let Some(trust) = creds.trust() {
                for (fp, not_after) in &trust.root_expiry {
                    rows.push((
                        format!("{{kind=\"bundle_root\",fingerprint=\"{fp}\"}}"),
                        secs(*not_after),
                    ));
                }
            }
        }
        if let Some(ca) = &self.ca {
            let store = ca.lock().unwrap_or_else(|e| e.into_inner());
            let a = store.authority();
            rows.push(("{kind=\"ca_root\"}".to_string(), secs(a.root_not_after())));
            rows.push((
                "{kind=\"ca_intermediate\"}".to_string(),
                secs(a.intermediate_not_after()),
            ));
        }
        if rows.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "# HELP shoal_certificate_expiry_seconds Seconds until the certificate expires (negative: expired).\n# TYPE shoal_certificate_expiry_seconds gauge"
        );
        for (labels, v) in rows {
            let _ = writeln!(out, "shoal_certificate_expiry_seconds{labels} {v}");
        }
    }
}

/// Accepts until the runtime stops.
pub async fn serve(listener: TcpListener, probe: Arc<Probe>) {
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                tokio::spawn(handle(s, probe.clone()));
            }
            Err(e) => {
                tracing::warn!("metrics accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(mut s: TcpStream, probe: Arc<Probe>) {
    let mut buf = Vec::with_capacity(1024);
    let mut tmp = [0u8; 1024];
    let head = tokio::time::timeout(Duration::from_secs(5), async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        true
    })
    .await;
    if head != Ok(true) {
        return;
    }
    let line = String::from_utf8_lossy(&buf);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", "/readyz") if probe.ready() => ("200 OK", "text/plain", "ready\n".to_string()),
        ("GET", "/readyz") => (
            "503 Service Unavailable",
            "text/plain",
            "not ready\n".to_string(),
        ),
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            probe.render(),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        ),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(reply.as_bytes()).await;
    let _ = s.shutdown().await;
}
