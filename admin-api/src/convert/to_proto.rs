//! config -> proto: what the reads (`GetConfig`, `ListListeners`, `ListClusters`) and the
//! `Watch` stream send. Lossless: converting back with `TryFrom` gives the same config (tested).
//! Top-level limits and timeouts are sent with every field set (their effective values).

use shoal_dataplane::config::{
    ClusterProtocol, ClusterSpec, ConfigSpec, EndpointSpec, HeaderMatchSpec, HeaderOpsSpec,
    HumanDuration, LbPolicy, LimitsOverride, LimitsSpec, ListenerProtocol, ListenerSpec,
    ListenerTlsSpec, PolicyAction, PolicySpec, RouteSpec, TimeoutsOverride, TimeoutsSpec, TlsMode,
    VirtualHostSpec,
};
use shoal_proto::admin::v1 as pb;

use super::ToProto;

fn d(h: HumanDuration) -> String {
    h.to_string()
}

fn limits(l: LimitsOverride) -> pb::Limits {
    pb::Limits {
        max_request_head_bytes: l.max_request_head_bytes.map(|v| v as u64),
        max_request_body_bytes: l.max_request_body_bytes,
        max_response_head_bytes: l.max_response_head_bytes.map(|v| v as u64),
        max_headers: l.max_headers.map(|v| v as u64),
        max_connections_per_worker: l.max_connections_per_worker.map(|v| v as u64),
    }
}

fn timeouts(t: TimeoutsOverride) -> pb::Timeouts {
    pb::Timeouts {
        header_read: t.header_read.map(d),
        keepalive_idle: t.keepalive_idle.map(d),
        idle: t.idle.map(d),
        request: t.request.map(d),
    }
}

pub(crate) fn full_limits(l: LimitsSpec) -> pb::Limits {
    limits(LimitsOverride {
        max_request_head_bytes: Some(l.max_request_head_bytes),
        max_request_body_bytes: Some(l.max_request_body_bytes),
        max_response_head_bytes: Some(l.max_response_head_bytes),
        max_headers: Some(l.max_headers),
        max_connections_per_worker: Some(l.max_connections_per_worker),
    })
}

pub(crate) fn full_timeouts(t: TimeoutsSpec) -> pb::Timeouts {
    timeouts(TimeoutsOverride {
        header_read: Some(t.header_read),
        keepalive_idle: Some(t.keepalive_idle),
        idle: Some(t.idle),
        request: Some(t.request),
    })
}

impl ToProto<pb::Listener> for ListenerSpec {
    fn to_proto(&self) -> pb::Listener {
        let l = self;
        let protocol = match l.protocol {
            ListenerProtocol::Auto => pb::ListenerProtocol::Auto,
            ListenerProtocol::Http1 => pb::ListenerProtocol::Http1,
            ListenerProtocol::Http2 => pb::ListenerProtocol::Http2,
            ListenerProtocol::Tcp => pb::ListenerProtocol::Tcp,
        };
        pb::Listener {
            name: l.name.clone(),
            address: l.address.clone(),
            protocol: protocol as i32,
            routes: l.routes.clone(),
            cluster: l.cluster.clone(),
            limits: l.limits.map(limits),
            timeouts: l.timeouts.map(timeouts),
            http2: l.http2.map(|h| pb::Http2Settings {
                max_concurrent_streams: Some(h.max_concurrent_streams),
                initial_stream_window_size: Some(h.initial_stream_window_size),
                initial_connection_window_size: Some(h.initial_connection_window_size),
                max_frame_size: Some(h.max_frame_size),
                max_header_list_size: Some(h.max_header_list_size),
                max_concurrent_reset_streams: Some(h.max_concurrent_reset_streams as u64),
                max_pending_accept_reset_streams: Some(h.max_pending_accept_reset_streams as u64),
                keepalive_interval: Some(d(h.keepalive_interval)),
                keepalive_timeout: Some(d(h.keepalive_timeout)),
            }),
            tls: l.tls.as_ref().map(listener_tls),
            policy: l.policy.clone(),
        }
    }
}

fn listener_tls(t: &ListenerTlsSpec) -> pb::ListenerTls {
    pb::ListenerTls {
        mode: match t.mode {
            TlsMode::Server => pb::TlsMode::Server,
            TlsMode::Mutual => pb::TlsMode::Mutual,
        } as i32,
        certificates: t
            .certificates
            .iter()
            .map(|c| pb::Certificate {
                cert: c.cert.clone(),
                key: c.key.clone(),
            })
            .collect(),
        allow: t.allow.clone(),
        peer_header: t.peer_header.clone(),
        client_ca: t.client_ca.clone(),
    }
}

fn header_ops(h: &HeaderOpsSpec) -> Option<pb::HeaderOps> {
    (!h.is_empty()).then(|| pb::HeaderOps {
        add: h.add.clone().into_iter().collect(),
        remove: h.remove.clone(),
    })
}

impl ToProto<pb::Route> for RouteSpec {
    fn to_proto(&self) -> pb::Route {
        let r = self;
        use pb::header_match::Kind;
        let m = &r.matcher;
        let headers = m
            .headers
            .iter()
            .map(|(name, h)| {
                let kind = match h {
                    HeaderMatchSpec::Exact(v) => Some(Kind::Exact(v.clone())),
                    HeaderMatchSpec::Rule(rule) => rule
                        .exact
                        .clone()
                        .map(Kind::Exact)
                        .or(rule.present.map(Kind::Present))
                        .or(rule.regex.clone().map(Kind::Regex)),
                };
                (name.clone(), pb::HeaderMatch { kind })
            })
            .collect();
        // A valid route has exactly one action; the first set one is sent.
        let action = if let Some(c) = &r.cluster {
            Some(pb::route::Action::Cluster(c.clone()))
        } else if let Some(w) = &r.weighted {
            Some(pb::route::Action::Weighted(pb::WeightedClusters {
                clusters: w
                    .iter()
                    .map(|w| pb::WeightedCluster {
                        cluster: w.cluster.clone(),
                        weight: w.weight,
                    })
                    .collect(),
            }))
        } else if let Some(dr) = &r.direct_response {
            Some(pb::route::Action::DirectResponse(pb::DirectResponse {
                status: dr.status.into(),
                body: dr.body.clone(),
            }))
        } else {
            r.redirect.as_ref().map(|rd| {
                pb::route::Action::Redirect(pb::Redirect {
                    scheme: rd.scheme.clone(),
                    host: rd.host.clone(),
                    path: rd.path.clone(),
                    status: rd.status.map(u32::from),
                })
            })
        };
        pb::Route {
            r#match: Some(pb::RouteMatch {
                path: m.path.clone(),
                prefix: m.prefix.clone(),
                regex: m.regex.clone(),
                methods: m.methods.clone(),
                headers,
                grpc: m.grpc.as_ref().map(|g| pb::GrpcMatch {
                    service: g.service.clone(),
                    method: g.method.clone(),
                }),
                principals: m.principals.clone(),
            }),
            action,
            prefix_rewrite: r.prefix_rewrite.clone(),
            timeout: r.timeout.map(d),
            request_headers: header_ops(&r.request_headers),
            response_headers: header_ops(&r.response_headers),
            policy: r.policy.clone(),
        }
    }
}

/// A route table as a message (YAML: one entry of the `routes` map).
pub fn route_table(name: &str, vhosts: &[VirtualHostSpec]) -> pb::RouteTable {
    pb::RouteTable {
        name: name.to_string(),
        virtual_hosts: vhosts
            .iter()
            .map(|v| pb::VirtualHost {
                domains: v.domains.clone(),
                routes: v.routes.iter().map(ToProto::to_proto).collect(),
            })
            .collect(),
    }
}

impl ToProto<pb::Endpoint> for EndpointSpec {
    fn to_proto(&self) -> pb::Endpoint {
        let e = self;
        match e {
            EndpointSpec::Address(a) => pb::Endpoint {
                address: a.clone(),
                weight: None,
            },
            EndpointSpec::Weighted(w) => pb::Endpoint {
                address: w.address.clone(),
                weight: Some(w.weight),
            },
        }
    }
}

impl ToProto<pb::Cluster> for ClusterSpec {
    fn to_proto(&self) -> pb::Cluster {
        let c = self;
        let lb = match c.lb {
            LbPolicy::RoundRobin => pb::LbPolicy::RoundRobin,
            LbPolicy::Random => pb::LbPolicy::Random,
            LbPolicy::Weighted => pb::LbPolicy::Weighted,
            LbPolicy::LeastRequest => pb::LbPolicy::LeastRequest,
        };
        pb::Cluster {
            name: c.name.clone(),
            protocol: match c.protocol {
                ClusterProtocol::Http1 => pb::ClusterProtocol::Http1,
                ClusterProtocol::Http2 => pb::ClusterProtocol::Http2,
                ClusterProtocol::Auto => pb::ClusterProtocol::Auto,
            } as i32,
            lb: lb as i32,
            endpoints: c.endpoints.iter().map(ToProto::to_proto).collect(),
            connect_timeout: Some(d(c.connect_timeout)),
            pool: Some(pb::Pool {
                max_idle_per_endpoint: Some(c.pool.max_idle_per_endpoint as u64),
                idle_timeout: Some(d(c.pool.idle_timeout)),
            }),
            outlier: Some(pb::Outlier {
                consecutive_failures: Some(c.outlier.consecutive_failures),
                ejection_time: Some(d(c.outlier.ejection_time)),
            }),
            http2: Some(pb::ClusterHttp2 {
                keepalive_interval: Some(d(c.http2.keepalive_interval)),
                keepalive_timeout: Some(d(c.http2.keepalive_timeout)),
            }),
            tls: c.tls.as_ref().map(|t| pb::ClusterTls {
                spiffe_id: t.spiffe_id.clone(),
                server_name: t.server_name.clone(),
            }),
        }
    }
}

fn policy_action(a: PolicyAction) -> i32 {
    let a = match a {
        PolicyAction::Allow => pb::PolicyAction::Allow,
        PolicyAction::Deny => pb::PolicyAction::Deny,
    };
    a as i32
}

impl ToProto<pb::Policy> for PolicySpec {
    fn to_proto(&self) -> pb::Policy {
        pb::Policy {
            name: self.name.clone(),
            rules: self
                .rules
                .iter()
                .map(|r| pb::PolicyRule {
                    action: policy_action(r.action),
                    principals: r.principals.clone(),
                    paths: r.paths.clone(),
                    methods: r.methods.clone(),
                })
                .collect(),
            default: policy_action(self.default),
        }
    }
}

impl ToProto<pb::Config> for ConfigSpec {
    fn to_proto(&self) -> pb::Config {
        let c = self;
        pb::Config {
            workers: c.workers.map(|w| w as u64),
            drain_timeout: Some(d(c.drain_timeout)),
            access_log: c.access_log.as_ref().map(|a| pb::AccessLog {
                path: a.path.clone(),
            }),
            limits: Some(full_limits(c.limits)),
            timeouts: Some(full_timeouts(c.timeouts)),
            listeners: c.listeners.iter().map(ToProto::to_proto).collect(),
            route_tables: c
                .routes
                .iter()
                .map(|(name, vhosts)| route_table(name, vhosts))
                .collect(),
            clusters: c.clusters.iter().map(ToProto::to_proto).collect(),
            admin: c.admin.as_ref().map(|a| pb::Admin {
                grpc: a.grpc.clone(),
                metrics: a.metrics.clone(),
            }),
            state_dir: c.state_dir.clone(),
            identity: c.identity.as_ref().map(|i| pb::Identity {
                id: i.id.clone(),
                ttl: i.ttl.map(d),
            }),
            ca: c.ca.as_ref().map(|k| pb::Ca {
                remote: k.remote.clone(),
            }),
            policies: c.policies.iter().map(ToProto::to_proto).collect(),
        }
    }
}
