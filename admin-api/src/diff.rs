//! What a transaction changes: names of listeners, route tables, clusters and policies added,
//! changed or removed (what `Apply` returns, and all a dry run returns).

use std::collections::BTreeMap;

use shoal_dataplane::config::ConfigSpec;
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
    pub policies: NameDiff,
    /// Anything outside listeners, route tables, clusters and policies.
    pub other_settings_changed: bool,
}

impl ConfigDiff {
    pub fn between(old: &ConfigSpec, new: &ConfigSpec) -> Self {
        /// `(name, value)` pairs by name.
        fn by<'a, T>(items: impl Iterator<Item = (&'a String, &'a T)>) -> BTreeMap<&'a str, &'a T> {
            items.map(|(n, v)| (n.as_str(), v)).collect()
        }
        fn diff<'a, T: PartialEq + 'a>(
            old: impl Iterator<Item = (&'a String, &'a T)>,
            new: impl Iterator<Item = (&'a String, &'a T)>,
        ) -> NameDiff {
            NameDiff::of(&by(old), &by(new))
        }
        let strip = |s: &ConfigSpec| ConfigSpec {
            listeners: Vec::new(),
            routes: BTreeMap::new(),
            clusters: Vec::new(),
            policies: Vec::new(),
            ..s.clone()
        };
        ConfigDiff {
            listeners: diff(
                old.listeners.iter().map(|l| (&l.name, l)),
                new.listeners.iter().map(|l| (&l.name, l)),
            ),
            route_tables: diff(old.routes.iter(), new.routes.iter()),
            clusters: diff(
                old.clusters.iter().map(|c| (&c.name, c)),
                new.clusters.iter().map(|c| (&c.name, c)),
            ),
            policies: diff(
                old.policies.iter().map(|p| (&p.name, p)),
                new.policies.iter().map(|p| (&p.name, p)),
            ),
            other_settings_changed: strip(old) != strip(new),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
            && self.route_tables.is_empty()
            && self.clusters.is_empty()
            && self.policies.is_empty()
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
            policies: Some((&d.policies).into()),
            other_settings_changed: d.other_settings_changed,
        }
    }
}
