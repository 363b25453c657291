//! Transaction ops: [`OpSpec`] (the config-side form, also the YAML `shoal ctl apply -f` reads),
//! its conversions from/to `pb::Op`, and [`apply_ops`], which applies a list of ops to a copy
//! of a config. Whole-config validation is not done here: `ConfigStore` does it (see `control`).

use serde::{Deserialize, Serialize};
use shoal_dataplane::config::{
    ClusterSpec, ConfigSpec, EndpointSpec, ListenerSpec, PolicySpec, RouteSpec, VirtualHostSpec,
};
use shoal_dataplane::config::{LimitsSpec, TimeoutsSpec};
use shoal_proto::admin::v1 as pb;

use crate::convert::{self, ConvertError, FromProto, ToProto};

/// One change, as `shoal ctl apply -f` reads it from YAML (a list of single-key maps:
/// `- upsert_cluster: { name: api, endpoints: [...] }`). Bodies are the YAML config's shapes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "OpYaml", into = "OpYaml")]
// Control-plane values, few and short-lived: boxing would only add noise at every use.
#[allow(clippy::large_enum_variant)]
pub enum OpSpec {
    UpsertListener(ListenerSpec),
    DeleteListener(String),
    UpsertRouteTable(RouteTableSpec),
    DeleteRouteTable(String),
    UpsertRoute(UpsertRouteSpec),
    DeleteRoute(DeleteRouteSpec),
    UpsertCluster(ClusterSpec),
    DeleteCluster(String),
    UpsertEndpoint(UpsertEndpointSpec),
    DeleteEndpoint(DeleteEndpointSpec),
    SetLimits(LimitsSpec),
    SetTimeouts(TimeoutsSpec),
    UpsertPolicy(PolicySpec),
    DeletePolicy(String),
}

/// The YAML form of an op: a map with exactly one of these keys (serde_yaml would want
/// `!upsert_cluster` tags for an enum; a single-key map reads better).
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpYaml {
    #[serde(skip_serializing_if = "Option::is_none")]
    upsert_listener: Option<ListenerSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delete_listener: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upsert_route_table: Option<RouteTableSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delete_route_table: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upsert_route: Option<UpsertRouteSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delete_route: Option<DeleteRouteSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upsert_cluster: Option<ClusterSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delete_cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upsert_endpoint: Option<UpsertEndpointSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delete_endpoint: Option<DeleteEndpointSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    set_limits: Option<LimitsSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    set_timeouts: Option<TimeoutsSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upsert_policy: Option<PolicySpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delete_policy: Option<String>,
}

impl TryFrom<OpYaml> for OpSpec {
    type Error = String;
    fn try_from(y: OpYaml) -> Result<Self, String> {
        let all = [
            y.upsert_listener.map(OpSpec::UpsertListener),
            y.delete_listener.map(OpSpec::DeleteListener),
            y.upsert_route_table.map(OpSpec::UpsertRouteTable),
            y.delete_route_table.map(OpSpec::DeleteRouteTable),
            y.upsert_route.map(OpSpec::UpsertRoute),
            y.delete_route.map(OpSpec::DeleteRoute),
            y.upsert_cluster.map(OpSpec::UpsertCluster),
            y.delete_cluster.map(OpSpec::DeleteCluster),
            y.upsert_endpoint.map(OpSpec::UpsertEndpoint),
            y.delete_endpoint.map(OpSpec::DeleteEndpoint),
            y.set_limits.map(OpSpec::SetLimits),
            y.set_timeouts.map(OpSpec::SetTimeouts),
            y.upsert_policy.map(OpSpec::UpsertPolicy),
            y.delete_policy.map(OpSpec::DeletePolicy),
        ];
        let mut set = all.into_iter().flatten();
        match (set.next(), set.next()) {
            (Some(op), None) => Ok(op),
            _ => Err(
                "an op is a map with exactly one key: upsert_listener, delete_listener, \
                      upsert_route_table, delete_route_table, upsert_route, delete_route, \
                      upsert_cluster, delete_cluster, upsert_endpoint, delete_endpoint, \
                      set_limits, set_timeouts, upsert_policy or delete_policy"
                    .into(),
            ),
        }
    }
}

impl From<OpSpec> for OpYaml {
    fn from(op: OpSpec) -> Self {
        let mut y = OpYaml::default();
        match op {
            OpSpec::UpsertListener(v) => y.upsert_listener = Some(v),
            OpSpec::DeleteListener(v) => y.delete_listener = Some(v),
            OpSpec::UpsertRouteTable(v) => y.upsert_route_table = Some(v),
            OpSpec::DeleteRouteTable(v) => y.delete_route_table = Some(v),
            OpSpec::UpsertRoute(v) => y.upsert_route = Some(v),
            OpSpec::DeleteRoute(v) => y.delete_route = Some(v),
            OpSpec::UpsertCluster(v) => y.upsert_cluster = Some(v),
            OpSpec::DeleteCluster(v) => y.delete_cluster = Some(v),
            OpSpec::UpsertEndpoint(v) => y.upsert_endpoint = Some(v),
            OpSpec::DeleteEndpoint(v) => y.delete_endpoint = Some(v),
            OpSpec::SetLimits(v) => y.set_limits = Some(v),
            OpSpec::SetTimeouts(v) => y.set_timeouts = Some(v),
            OpSpec::UpsertPolicy(v) => y.upsert_policy = Some(v),
            OpSpec::DeletePolicy(v) => y.delete_policy = Some(v),
        }
        y
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTableSpec {
    pub name: String,
    pub virtual_hosts: Vec<VirtualHostSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpsertRouteSpec {
    pub table: String,
    #[serde(default)]
    pub virtual_host: u32,
    /// Route to replace; absent (or the number of routes) appends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    pub route: RouteSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteRouteSpec {
    pub table: String,
    #[serde(default)]
    pub virtual_host: u32,
    pub index: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpsertEndpointSpec {
    pub cluster: String,
    pub endpoint: EndpointSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteEndpointSpec {
    pub cluster: String,
    pub address: String,
}

/// One problem of a transaction (wire form: `pb::OpError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    /// The op that caused it, when it can be traced to one.
    pub op_index: Option<u32>,
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.op_index {
            Some(i) => write!(f, "ops[{i}] {}: {}", self.path, self.reason),
            None => write!(f, "{}: {}", self.path, self.reason),
        }
    }
}

/// What an op touches, to trace config validation errors back to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entity {
    Listener(String),
    Table(String),
    Cluster(String),
    Policy(String),
    Limits,
    Timeouts,
}

impl OpSpec {
    /// The oneof field name (`upsert_cluster`): used in error paths and summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            OpSpec::UpsertListener(_) => "upsert_listener",
            OpSpec::DeleteListener(_) => "delete_listener",
            OpSpec::UpsertRouteTable(_) => "upsert_route_table",
            OpSpec::DeleteRouteTable(_) => "delete_route_table",
            OpSpec::UpsertRoute(_) => "upsert_route",
            OpSpec::DeleteRoute(_) => "delete_route",
            OpSpec::UpsertCluster(_) => "upsert_cluster",
            OpSpec::DeleteCluster(_) => "delete_cluster",
            OpSpec::UpsertEndpoint(_) => "upsert_endpoint",
            OpSpec::DeleteEndpoint(_) => "delete_endpoint",
            OpSpec::SetLimits(_) => "set_limits",
            OpSpec::SetTimeouts(_) => "set_timeouts",
            OpSpec::UpsertPolicy(_) => "upsert_policy",
            OpSpec::DeletePolicy(_) => "delete_policy",
        }
    }

    pub(crate) fn entity(&self) -> Entity {
        match self {
            OpSpec::UpsertListener(l) => Entity::Listener(l.name.clone()),
            OpSpec::DeleteListener(n) => Entity::Listener(n.clone()),
            OpSpec::UpsertRouteTable(t) => Entity::Table(t.name.clone()),
            OpSpec::DeleteRouteTable(n) => Entity::Table(n.clone()),
            OpSpec::UpsertRoute(r) => Entity::Table(r.table.clone()),
            OpSpec::DeleteRoute(r) => Entity::Table(r.table.clone()),
            OpSpec::UpsertCluster(c) => Entity::Cluster(c.name.clone()),
            OpSpec::DeleteCluster(n) => Entity::Cluster(n.clone()),
            OpSpec::UpsertEndpoint(e) => Entity::Cluster(e.cluster.clone()),
            OpSpec::DeleteEndpoint(e) => Entity::Cluster(e.cluster.clone()),
            OpSpec::SetLimits(_) => Entity::Limits,
            OpSpec::SetTimeouts(_) => Entity::Timeouts,
            OpSpec::UpsertPolicy(p) => Entity::Policy(p.name.clone()),
            OpSpec::DeletePolicy(n) => Entity::Policy(n.clone()),
        }
    }

    /// A one-line human summary (`upsert_cluster api`).
    pub fn summary(&self) -> String {
        let what = match self {
            OpSpec::UpsertRoute(r) => format!(
                "{} virtual_host {} index {}",
                r.table,
                r.virtual_host,
                r.index.map_or("append".to_string(), |i| i.to_string())
            ),
            OpSpec::DeleteRoute(r) => format!(
                "{} virtual_host {} index {}",
                r.table, r.virtual_host, r.index
            ),
            OpSpec::UpsertEndpoint(e) => format!("{} {}", e.cluster, e.endpoint.address()),
            OpSpec::DeleteEndpoint(e) => format!("{} {}", e.cluster, e.address),
            _ => match self.entity() {
                Entity::Listener(n) | Entity::Table(n) | Entity::Cluster(n) | Entity::Policy(n) => {
                    n
                }
                Entity::Limits | Entity::Timeouts => String::new(),
            },
        };
        format!("{} {what}", self.kind()).trim_end().to_string()
    }
}

/// `pb::Op` at index `i` -> [`OpSpec`]; errors carry `ops[i].<field>...` paths.
pub fn op_from_proto(i: usize, op: pb::Op) -> Result<OpSpec, Vec<OpError>> {
    use pb::op::Op as P;
    let fail = |kind: &str, e: ConvertError| -> Vec<OpError> {
        e.errors
            .into_iter()
            .map(|f| OpError {
                op_index: Some(i as u32),
                path: if f.path.is_empty() {
                    format!("ops[{i}].{kind}")
                } else {
                    format!("ops[{i}].{kind}.{}", f.path)
                },
                reason: f.message,
            })
            .collect()
    };
    let missing = |field: &str| {
        vec![OpError {
            op_index: Some(i as u32),
            path: format!("ops[{i}].{field}"),
            reason: "required".into(),
        }]
    };
    Ok(match op.op {
        None => return Err(missing("op")),
        Some(P::UpsertListener(l)) => OpSpec::UpsertListener(
            ListenerSpec::from_proto(l).map_err(|e| fail("upsert_listener", e))?,
        ),
        Some(P::DeleteListener(n)) => OpSpec::DeleteListener(n),
        Some(P::UpsertRouteTable(t)) => {
            let (name, virtual_hosts) =
                convert::route_table_from_proto(t).map_err(|e| fail("upsert_route_table", e))?;
            OpSpec::UpsertRouteTable(RouteTableSpec {
                name,
                virtual_hosts,
            })
        }
        Some(P::DeleteRouteTable(n)) => OpSpec::DeleteRouteTable(n),
        Some(P::UpsertRoute(r)) => {
            let route = r.route.ok_or_else(|| missing("upsert_route.route"))?;
            OpSpec::UpsertRoute(UpsertRouteSpec {
                table: r.table,
                virtual_host: r.virtual_host,
                index: r.index,
                route: RouteSpec::from_proto(route).map_err(|e| fail("upsert_route.route", e))?,
            })
        }
        Some(P::DeleteRoute(r)) => OpSpec::DeleteRoute(DeleteRouteSpec {
            table: r.table,
            virtual_host: r.virtual_host,
            index: r.index,
        }),
        Some(P::UpsertCluster(c)) => OpSpec::UpsertCluster(
            ClusterSpec::from_proto(c).map_err(|e| fail("upsert_cluster", e))?,
        ),
        Some(P::DeleteCluster(n)) => OpSpec::DeleteCluster(n),
        Some(P::UpsertEndpoint(e)) => {
            let endpoint = e
                .endpoint
                .ok_or_else(|| missing("upsert_endpoint.endpoint"))?;
            OpSpec::UpsertEndpoint(UpsertEndpointSpec {
                cluster: e.cluster,
                endpoint: convert::endpoint_from_proto(endpoint),
            })
        }
        Some(P::DeleteEndpoint(e)) => OpSpec::DeleteEndpoint(DeleteEndpointSpec {
            cluster: e.cluster,
            address: e.address,
        }),
        Some(P::SetLimits(l)) => {
            OpSpec::SetLimits(convert::limits_spec(l).map_err(|e| fail("set_limits", e))?)
        }
        Some(P::SetTimeouts(t)) => {
            OpSpec::SetTimeouts(convert::timeouts_spec(t).map_err(|e| fail("set_timeouts", e))?)
        }
        Some(P::UpsertPolicy(p)) => {
            OpSpec::UpsertPolicy(PolicySpec::from_proto(p).map_err(|e| fail("upsert_policy", e))?)
        }
        Some(P::DeletePolicy(n)) => OpSpec::DeletePolicy(n),
    })
}

impl From<&OpSpec> for pb::Op {
    fn from(op: &OpSpec) -> Self {
        use pb::op::Op as P;
        let op = match op {
            OpSpec::UpsertListener(l) => P::UpsertListener(l.to_proto()),
            OpSpec::DeleteListener(n) => P::DeleteListener(n.clone()),
            OpSpec::UpsertRouteTable(t) => {
                P::UpsertRouteTable(convert::route_table_to_proto(&t.name, &t.virtual_hosts))
            }
            OpSpec::DeleteRouteTable(n) => P::DeleteRouteTable(n.clone()),
            OpSpec::UpsertRoute(r) => P::UpsertRoute(pb::UpsertRoute {
                table: r.table.clone(),
                virtual_host: r.virtual_host,
                index: r.index,
                route: Some(r.route.to_proto()),
            }),
            OpSpec::DeleteRoute(r) => P::DeleteRoute(pb::DeleteRoute {
                table: r.table.clone(),
                virtual_host: r.virtual_host,
                index: r.index,
            }),
            OpSpec::UpsertCluster(c) => P::UpsertCluster(c.to_proto()),
            OpSpec::DeleteCluster(n) => P::DeleteCluster(n.clone()),
            OpSpec::UpsertEndpoint(e) => P::UpsertEndpoint(pb::UpsertEndpoint {
                cluster: e.cluster.clone(),
                endpoint: Some(e.endpoint.to_proto()),
            }),
            OpSpec::DeleteEndpoint(e) => P::DeleteEndpoint(pb::DeleteEndpoint {
                cluster: e.cluster.clone(),
                address: e.address.clone(),
            }),
            OpSpec::SetLimits(l) => P::SetLimits(convert::full_limits(*l)),
            OpSpec::SetTimeouts(t) => P::SetTimeouts(convert::full_timeouts(*t)),
            OpSpec::UpsertPolicy(p) => P::UpsertPolicy(p.to_proto()),
            OpSpec::DeletePolicy(n) => P::DeletePolicy(n.clone()),
        };
        pb::Op { op: Some(op) }
    }
}

/// Applies `ops` in order to a copy of `base`. Ops that cannot apply (deleting what does not
/// exist, an index out of range) are reported and skipped; the rest still apply, so the caller
/// can validate the result and report every problem at once.
pub fn apply_ops(base: &ConfigSpec, ops: &[OpSpec]) -> (ConfigSpec, Vec<OpError>) {
    let mut spec = base.clone();
    let mut errors = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if let Err((field, reason)) = apply_one(&mut spec, op) {
            let kind = op.kind();
            errors.push(OpError {
                op_index: Some(i as u32),
                path: if field.is_empty() {
                    format!("ops[{i}].{kind}")
                } else {
                    format!("ops[{i}].{kind}.{field}")
                },
                reason,
            });
        }
    }
    (spec, errors)
}

fn apply_one(spec: &mut ConfigSpec, op: &OpSpec) -> Result<(), (&'static str, String)> {
    match op {
        OpSpec::UpsertListener(l) => upsert(&mut spec.listeners, l.clone(), |x| x.name == l.name),
        OpSpec::DeleteListener(n) => remove(&mut spec.listeners, |x| &x.name == n)
            .ok_or(("", format!("no listener named {n:?}")))?,
        OpSpec::UpsertRouteTable(t) => {
            spec.routes.insert(t.name.clone(), t.virtual_hosts.clone());
        }
        OpSpec::DeleteRouteTable(n) => {
            spec.routes
                .remove(n)
                .ok_or(("", format!("no route table named {n:?}")))?;
        }
        OpSpec::UpsertRoute(r) => {
            let routes = vhost_routes(spec, &r.table, r.virtual_host)?;
            match r.index.map(|i| i as usize) {
                Some(i) if i < routes.len() => routes[i] = r.route.clone(),
                Some(i) if i > routes.len() => {
                    return Err((
                        "index",
                        format!("{i} is past the end ({} routes)", routes.len()),
                    ));
                }
                _ => routes.push(r.route.clone()),
            }
        }
        OpSpec::DeleteRoute(r) => {
            let routes = vhost_routes(spec, &r.table, r.virtual_host)?;
            let i = r.index as usize;
            if i >= routes.len() {
                return Err(("index", format!("no route {i} ({} routes)", routes.len())));
            }
            routes.remove(i);
        }
        OpSpec::UpsertCluster(c) => upsert(&mut spec.clusters, c.clone(), |x| x.name == c.name),
        OpSpec::DeleteCluster(n) => remove(&mut spec.clusters, |x| &x.name == n)
            .ok_or(("", format!("no cluster named {n:?}")))?,
        OpSpec::UpsertEndpoint(e) => {
            let c = cluster(spec, &e.cluster)?;
            let addr = e.endpoint.address();
            upsert(&mut c.endpoints, e.endpoint.clone(), |x| {
                x.address() == addr
            });
        }
        OpSpec::DeleteEndpoint(e) => {
            let c = cluster(spec, &e.cluster)?;
            remove(&mut c.endpoints, |x| x.address() == e.address).ok_or((
                "address",
                format!("cluster {:?} has no endpoint {:?}", e.cluster, e.address),
            ))?;
        }
        OpSpec::SetLimits(l) => spec.limits = *l,
        OpSpec::SetTimeouts(t) => spec.timeouts = *t,
        // Whether a listener or route still names the policy is the whole-config validation's
        // call (`ConfigStore::check`), like a deleted cluster a route still forwards to.
        OpSpec::UpsertPolicy(p) => upsert(&mut spec.policies, p.clone(), |x| x.name == p.name),
        OpSpec::DeletePolicy(n) => remove(&mut spec.policies, |x| &x.name == n)
            .ok_or(("", format!("no policy named {n:?}")))?,
    }
    Ok(())
}

fn upsert<T>(items: &mut Vec<T>, item: T, same: impl Fn(&T) -> bool) {
    match items.iter().position(same) {
        Some(i) => items[i] = item,
        None => items.push(item),
    }
}

fn remove<T>(items: &mut Vec<T>, pred: impl Fn(&T) -> bool) -> Option<()> {
    let i = items.iter().position(pred)?;
    items.remove(i);
    Some(())
}

fn cluster<'a>(
    spec: &'a mut ConfigSpec,
    name: &str,
) -> Result<&'a mut ClusterSpec, (&'static str, String)> {
    spec.clusters
        .iter_mut()
        .find(|c| c.name == name)
        .ok_or(("cluster", format!("no cluster named {name:?}")))
}

fn vhost_routes<'a>(
    spec: &'a mut ConfigSpec,
    table: &str,
    vhost: u32,
) -> Result<&'a mut Vec<RouteSpec>, (&'static str, String)> {
    let t = spec
        .routes
        .get_mut(table)
        .ok_or(("table", format!("no route table named {table:?}")))?;
    let n = t.len();
    t.get_mut(vhost as usize).map(|v| &mut v.routes).ok_or((
        "virtual_host",
        format!("no virtual host {vhost} ({n} in table {table:?})"),
    ))
}

#[cfg(test)]
#[path = "ops_tests.rs"]
mod tests;
