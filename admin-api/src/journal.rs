//! The bounded history of applied versions behind `Watch`, and the broadcast of new ones.
//!
//! Every change goes through `Control`, which records it here in version order (under its own
//! lock), so the history is gap-free. A watcher gets the kept events after its `from_version`
//! and then live ones; a watcher whose `from_version` is older than the history (or that falls
//! behind the broadcast buffer) is resynchronised with a full-config event.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use shoal_dataplane::config::ConfigSpec;
use tokio::sync::broadcast;

use crate::ops::OpSpec;

/// Versions kept for `Watch` (each holds its resulting config, shared by `Arc`).
pub const HISTORY: usize = 128;

/// One applied version.
#[derive(Debug)]
pub struct Event {
    pub version: u64,
    /// The transaction's ops; empty for a change from elsewhere (start, reload).
    pub ops: Vec<OpSpec>,
    /// The resulting config.
    pub config: Arc<ConfigSpec>,
    /// Send the full config with it (start, reload, resync).
    pub full: bool,
}

pub struct Journal {
    events: Mutex<VecDeque<Arc<Event>>>,
    tx: broadcast::Sender<Arc<Event>>,
}

impl Journal {
    pub fn new() -> Self {
        Self {
            events: Mutex::new(VecDeque::with_capacity(HISTORY)),
            tx: broadcast::channel(HISTORY).0,
        }
    }

    pub fn record(&self, event: Event) {
        let event = Arc::new(event);
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if events.len() == HISTORY {
            events.pop_front();
        }
        events.push_back(event.clone());
        // No receiver is fine.
        let _ = self.tx.send(event);
    }

    /// The events after `from_version` (a full resync first if the history does not reach back
    /// that far) and a receiver for the ones recorded later, with no gap between the two.
    pub fn subscribe(
        &self,
        from_version: u64,
    ) -> (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>) {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.tx.subscribe();
        let backlog = match events.front() {
            Some(first) if first.version > from_version.saturating_add(1) => {
                events.back().map(|last| resync(last)).into_iter().collect()
            }
            _ => events
                .iter()
                .filter(|e| e.version > from_version)
                .cloned()
                .collect(),
        };
        (backlog, rx)
    }

    /// The latest event as a full resync (for a watcher that fell behind).
    pub fn latest_full(&self) -> Option<Arc<Event>> {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        events.back().map(|e| resync(e))
    }
}

impl Default for Journal {
    fn default() -> Self {
        Self::new()
    }
}

fn resync(e: &Event) -> Arc<Event> {
    Arc::new(Event {
        version: e.version,
        ops: Vec::new(),
        config: e.config.clone(),
        full: true,
    })
}
