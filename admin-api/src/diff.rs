//! What a transaction changes: names of listeners, route tables and clusters added, changed or
//! removed (what `Apply` returns, and all a dry run returns).

use std::collections::BTreeMap;

use shoal_dataplane::config::{ClusterSpec, ConfigSpec, ListenerSpec, VirtualHostSpec};
use shoal_proto::admin::v1 as pb;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameDiff {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl NameDiff {
    fn of<T: PartialEq>(old: &BTreeMap<&str, &T>, new: &BTreeMap<&str, &T>) -> Self {
        let mut d = NameDiff::default();
        for (name, v) in new {
            match old.get(name) {
                None => d.added.push(name.to_string()),
                Some(o) if o != v => d.changed.push(name.to_string()),
                Some(_) => {}
            }
        }
        d.removed = old
            .keys()
            .filter(|n| !new.contains_key(*n))
            .map(|n| n.to_string())
            .collect();
        d
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    pub listeners: NameDiff,
    pub route_tables: NameDiff,
    pub clusters: NameDiff,
    /// Anything outside listeners, route tables and clusters.
    pub other_settings_changed: bool,
}

impl ConfigDiff {
    pub fn between(old: &ConfigSpec, new: &ConfigSpec) -> Self {
        fn by_name(
            s: &ConfigSpec,
        ) -> (
            BTreeMap<&str, &ListenerSpec>,
            BTreeMap<&str, &Vec<VirtualHostSpec>>,
            BTreeMap<&str, &ClusterSpec>,
        ) {
            (
                s.listeners
                    .iter()
                    .map(|l| (l.name.as_str(), l))
                    .collect::<BTreeMap<_, _>>(),
                s.routes
                    .iter()
                    .map(|(n, t)| (n.as_str(), t))
                    .collect::<BTreeMap<_, _>>(),
                s.clusters
                    .iter()
                    .map(|c| (c.name.as_str(), c))
                    .collect::<BTreeMap<_, _>>(),
            )
        }
        let (ol, ot, oc) = by_name(old);
        let (nl, nt, nc) = by_name(new);
        let strip = |s: &ConfigSpec| ConfigSpec {
            listeners: Vec::new(),
            routes: BTreeMap::new(),
            clusters: Vec::new(),
            ..s.clone()
        };
        ConfigDiff {
            listeners: NameDiff::of(&ol, &nl),
            route_tables: NameDiff::of(&ot, &nt),
            clusters: NameDiff::of(&oc, &nc),
            other_settings_changed: strip(old) != strip(new),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
            && self.route_tables.is_empty()
            && self.clusters.is_empty()
            && !self.other_settings_changed
    }
}

impl From<&NameDiff> for pb::NameDiff {
    fn from(d: &NameDiff) -> Self {
        pb::NameDiff {
            added: d.added.clone(),
            changed: d.changed.clone(),
            removed: d.removed.clone(),
        }
    }
}

impl From<&ConfigDiff> for pb::ConfigDiff {
    fn from(d: &ConfigDiff) -> Self {
        pb::ConfigDiff {
            listeners: Some((&d.listeners).into()),
            route_tables: Some((&d.route_tables).into()),
            clusters: Some((&d.clusters).into()),
            other_settings_changed: d.other_settings_changed,
        }
    }
}
