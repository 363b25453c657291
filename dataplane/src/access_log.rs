//! The access log: one JSON line per HTTP request or TCP session, off by default.
//!
//! Workers format a line and `try_send` it to a dedicated writer thread over a bounded channel; a
//! full channel drops the line (counted) rather than block a worker. The writer batches lines
//! through a `BufWriter` and flushes whenever the channel runs dry.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime};

use serde::Serialize;

pub struct AccessLog {
    path: String,
    tx: SyncSender<String>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("path", &self.path)
            .finish()
    }
}

/// One access log record.
#[derive(Serialize)]
pub struct Entry<'a> {
    pub time: String,
    pub listener: &'a str,
    pub protocol: &'static str,
    pub client: SocketAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

pub fn millis(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

impl AccessLog {
    /// Opens `path` (`stdout`, `stderr` or a file, appended) and starts the writer thread.
    pub fn open(path: &str) -> io::Result<Arc<Self>> {
        let out: Box<dyn Write + Send> = match path {
            "stdout" => Box::new(io::stdout()),
            "stderr" => Box::new(io::stderr()),
            file => Box::new(OpenOptions::new().create(true).append(true).open(file)?),
        };
        let (tx, rx) = sync_channel::<String>(65536);
        std::thread::Builder::new()
            .name("shoal-access-log".into())
            .spawn(move || writer(rx, out))?;
        Ok(Arc::new(Self {
            path: path.to_string(),
            tx,
            dropped: AtomicU64::new(0),
        }))
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Lines dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queues one line; never blocks.
    pub fn log(&self, entry: &Entry<'_>) {
        let Ok(line) = serde_json::to_string(entry) else {
            return;
        };
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn writer(rx: Receiver<String>, out: Box<dyn Write + Send>) {
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    while let Ok(line) = rx.recv() {
        let _ = out.write_all(line.as_bytes());
        let _ = out.write_all(b"\n");
        while let Ok(line) = rx.try_recv() {
            let _ = out.write_all(line.as_bytes());
            let _ = out.write_all(b"\n");
        }
        let _ = out.flush();
    }
}
