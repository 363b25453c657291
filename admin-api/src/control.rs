//! `Control`: the admin side's single writer. Runs transactions (ops -> copy of the running
//! spec -> whole-config validation by `ConfigStore` -> compare-and-swap apply) and reloads, and
//! records every applied version in the [`Journal`] in order. Blocking (an apply waits for every
//! worker's ack): the gRPC service calls it from `spawn_blocking`, `App::reload` directly.

use std::sync::{Arc, Mutex};

use shoal_dataplane::config::ConfigSpec;
use shoal_dataplane::snapshot::{ApplyError, ConfigStore, FieldError, Rejection};

use crate::diff::ConfigDiff;
use crate::journal::{Event, Journal};
use crate::ops::{Entity, OpError, OpSpec, apply_ops};

/// A transaction that applied (or, for a dry run, would apply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The new version; for a dry run, the version the diff was computed against.
    pub version: u64,
    pub diff: ConfigDiff,
    pub dry_run: bool,
}

/// A refused transaction; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error("config version is {current}, not {expected}")]
    Conflict { expected: u64, current: u64 },
    #[error("transaction rejected ({} problem{})", .0.len(), if .0.len() == 1 { "" } else { "s" })]
    Invalid(Vec<OpError>),
}

pub struct Control {
    store: Arc<ConfigStore>,
    journal: Journal,
    /// Serialises changes made through `Control` so the journal records them in version order.
    writer: Mutex<()>,
}

impl Control {
    /// Wraps a store that already runs its first config (recorded as a full event).
    pub fn new(store: Arc<ConfigStore>) -> Arc<Self> {
        let snap = store.load_full();
        let journal = Journal::new();
        journal.record(Event {
            version: snap.version,
            ops: Vec::new(),
            config: Arc::new(snap.spec.clone()),
            full: true,
        });
        Arc::new(Self {
            store,
            journal,
            writer: Mutex::new(()),
        })
    }

    pub fn store(&self) -> &Arc<ConfigStore> {
        &self.store
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Runs a transaction, all or nothing. Returns only after the new config is persisted and
    /// installed on every worker.
    pub fn transact(
        &self,
        expected: Option<u64>,
        ops: Vec<OpSpec>,
        dry_run: bool,
    ) -> Result<Outcome, TxnError> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        // Without `expected`, the ops apply on top of whatever runs: if a change that bypassed
        // `Control` lands between our read and our swap, recompute on the new base (bounded).
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.transact_once(expected, &ops, dry_run) {
                Err(TxnError::Conflict { .. }) if expected.is_none() && attempts < 3 => continue,
                other => return other,
            }
        }
    }

    fn transact_once(
        &self,
        expected: Option<u64>,
        ops: &[OpSpec],
        dry_run: bool,
    ) -> Result<Outcome, TxnError> {
        let base = self.store.load_full();
        if let Some(expected) = expected
            && expected != base.version
        {
            return Err(TxnError::Conflict {
                expected,
                current: base.version,
            });
        }
        let (new, mut errors) = apply_ops(&base.spec, ops);
        // A real apply compiles (and so validates) in `apply_if` below; compile here only to
        // report validation errors next to op errors, or for a dry run.
        if (dry_run || !errors.is_empty())
            && let Err(r) = ConfigStore::check(&new)
        {
            errors.extend(attribute(&r, &new, ops));
        }
        if !errors.is_empty() {
            return Err(TxnError::Invalid(errors));
        }
        let diff = ConfigDiff::between(&base.spec, &new);
        // A dry run, or a transaction that changes nothing (idempotent re-apply), applies
        // nothing: no new version, no Watch event.
        if dry_run || new == base.spec {
            return Ok(Outcome {
                version: base.version,
                diff,
                dry_run,
            });
        }
        let config = Arc::new(new.clone());
        // The store re-checks the version under its own lock: a change that bypassed `Control`
        // in between makes this a conflict instead of a silent overwrite.
        let version = self
            .store
            .apply_if(Some(base.version), new)
            .map_err(|e| match e {
                ApplyError::Conflict { current, .. } => TxnError::Conflict {
                    expected: expected.unwrap_or(base.version),
                    current,
                },
                ApplyError::Rejected(r) => TxnError::Invalid(attribute(&r, &config, ops)),
            })?;
        self.journal.record(Event {
            version,
            ops: ops.to_vec(),
            config,
            full: false,
        });
        Ok(Outcome {
            version,
            diff,
            dry_run,
        })
    }

    /// Applies a whole config (SIGHUP reload): recorded as a full event.
    pub fn apply_spec(&self, spec: ConfigSpec) -> Result<u64, Rejection> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let config = Arc::new(spec.clone());
        let version = self.store.apply(spec)?;
        self.journal.record(Event {
            version,
            ops: Vec::new(),
            config,
            full: true,
        });
        Ok(version)
    }
}

/// Traces each validation error of the resulting config `new` back to the op that caused it:
/// the last op touching the listener / route table / cluster / policy the path names, else a
/// delete op whose name the message quotes (`unknown cluster "api"`), else none.
fn attribute(r: &Rejection, new: &ConfigSpec, ops: &[OpSpec]) -> Vec<OpError> {
    r.errors
        .iter()
        .map(|e| OpError {
            op_index: entity_of(e, new)
                .and_then(|ent| ops.iter().rposition(|op| op.entity() == ent))
                .or_else(|| deleted_named_in(&e.message, ops))
                .map(|i| i as u32),
            path: e.path.clone(),
            reason: e.message.clone(),
        })
        .collect()
}

fn entity_of(e: &FieldError, spec: &ConfigSpec) -> Option<Entity> {
    let index = |rest: &str| -> Option<usize> { rest.split(']').next()?.parse().ok() };
    let p = e.path.as_str();
    if let Some(rest) = p.strip_prefix("listeners[") {
        return spec
            .listeners
            .get(index(rest)?)
            .map(|l| Entity::Listener(l.name.clone()));
    }
    if let Some(rest) = p.strip_prefix("clusters[") {
        return spec
            .clusters
            .get(index(rest)?)
            .map(|c| Entity::Cluster(c.name.clone()));
    }
    if let Some(rest) = p.strip_prefix("policies[") {
        return spec
            .policies
            .get(index(rest)?)
            .map(|x| Entity::Policy(x.name.clone()));
    }
    if p.starts_with("limits.") {
        return Some(Entity::Limits);
    }
    if p.starts_with("timeouts.") {
        return Some(Entity::Timeouts);
    }
    if let Some(rest) = p.strip_prefix("routes.") {
        // Table names cannot contain '[' (validated), so the name ends at the first '['.
        let name = rest.split('[').next()?;
        return Some(Entity::Table(name.to_string()));
    }
    None
}

fn deleted_named_in(message: &str, ops: &[OpSpec]) -> Option<usize> {
    ops.iter().rposition(|op| match op {
        OpSpec::DeleteListener(n)
        | OpSpec::DeleteRouteTable(n)
        | OpSpec::DeleteCluster(n)
        | OpSpec::DeletePolicy(n) => message.contains(&format!("{n:?}")),
        _ => false,
    })
}

#[cfg(test)]
#[path = "control_tests.rs"]
mod tests;
