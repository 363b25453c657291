//! proto -> config: `TryFrom<pb::X> for XSpec`. The result is the same type the YAML file parses
//! into, so `ConfigStore` validates both the same way. Only what the proto type system cannot
//! express is checked here (duration syntax, integer ranges, enum values); every problem is
//! collected with its field path relative to the message (`endpoints[1].weight`).

use std::collections::BTreeMap;

use shoal_dataplane::config::{
    AccessLogSpec, AdminSpec, CaSpec, CertificateSpec, ClusterHttp2Spec, ClusterProtocol,
    ClusterSpec, ClusterTlsSpec, ConfigSpec, DirectResponseSpec, EndpointSpec, GrpcMatchSpec,
    HeaderMatchSpec, HeaderOpsSpec, HeaderRuleSpec, Http2Spec, HumanDuration, IdentitySpec,
    LbPolicy, LimitsOverride, LimitsSpec, ListenerProtocol, ListenerSpec, ListenerTlsSpec,
    MatchSpec, OutlierSpec, PolicyAction, PolicyRuleSpec, PolicySpec, PoolSpec, RedirectSpec,
    RouteSpec, TimeoutsOverride, TimeoutsSpec, TlsMode, VirtualHostSpec, WeightedClusterSpec,
    WeightedEndpointSpec,
};
use shoal_dataplane::snapshot::FieldError;
use shoal_proto::admin::v1 as pb;

use super::{ConvertError, FromProto};

/// Collects problems under a path prefix.
struct Cx<'a> {
    errs: &'a mut Vec<FieldError>,
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

impl Cx<'_> {
    fn push(&mut self, path: String, message: impl Into<String>) {
        self.errs.push(FieldError {
            path,
            message: message.into(),
        });
    }

    fn duration(&mut self, path: String, s: &str) -> Option<HumanDuration> {
        match humantime::parse_duration(s.trim()) {
            Ok(d) => Some(HumanDuration(d)),
            Err(e) => {
                self.push(
                    path,
                    format!("{s:?} is not a duration like \"250ms\" or \"2s\": {e}"),
                );
                None
            }
        }
    }

    fn opt_duration(
        &mut self,
        path: &str,
        field: &str,
        s: Option<String>,
    ) -> Option<HumanDuration> {
        s.and_then(|s| self.duration(join(path, field), &s))
    }

    fn usize(&mut self, path: &str, field: &str, v: Option<u64>) -> Option<usize> {
        v.and_then(|v| match usize::try_from(v) {
            Ok(v) => Some(v),
            Err(_) => {
                self.push(join(path, field), format!("{v} is too large"));
                None
            }
        })
    }

    fn limits(&mut self, path: &str, l: pb::Limits) -> LimitsOverride {
        LimitsOverride {
            max_request_head_bytes: self.usize(
                path,
                "max_request_head_bytes",
                l.max_request_head_bytes,
            ),
            max_request_body_bytes: l.max_request_body_bytes,
            max_response_head_bytes: self.usize(
                path,
                "max_response_head_bytes",
                l.max_response_head_bytes,
            ),
            max_headers: self.usize(path, "max_headers", l.max_headers),
            max_connections_per_worker: self.usize(
                path,
                "max_connections_per_worker",
                l.max_connections_per_worker,
            ),
        }
    }

    fn timeouts(&mut self, path: &str, t: pb::Timeouts) -> TimeoutsOverride {
        TimeoutsOverride {
            header_read: self.opt_duration(path, "header_read", t.header_read),
            keepalive_idle: self.opt_duration(path, "keepalive_idle", t.keepalive_idle),
            idle: self.opt_duration(path, "idle", t.idle),
            request: self.opt_duration(path, "request", t.request),
        }
    }

    fn listener(&mut self, path: &str, l: pb::Listener) -> ListenerSpec {
        let protocol = match pb::ListenerProtocol::try_from(l.protocol) {
            Ok(pb::ListenerProtocol::Unspecified | pb::ListenerProtocol::Auto) => {
                ListenerProtocol::Auto
            }
            Ok(pb::ListenerProtocol::Http1) => ListenerProtocol::Http1,
            Ok(pb::ListenerProtocol::Http2) => ListenerProtocol::Http2,
            Ok(pb::ListenerProtocol::Tcp) => ListenerProtocol::Tcp,
            Err(_) => {
                self.push(
                    join(path, "protocol"),
                    format!("unknown protocol {}", l.protocol),
                );
                ListenerProtocol::Auto
            }
        };
        ListenerSpec {
            name: l.name,
            address: l.address,
            protocol,
            routes: l.routes,
            cluster: l.cluster,
            limits: l.limits.map(|x| self.limits(&join(path, "limits"), x)),
            timeouts: l
                .timeouts
                .map(|x| self.timeouts(&join(path, "timeouts"), x)),
            http2: l.http2.map(|h| self.http2(&join(path, "http2"), h)),
            tls: l.tls.map(|t| self.listener_tls(&join(path, "tls"), t)),
            policy: l.policy,
        }
    }

    fn listener_tls(&mut self, path: &str, t: pb::ListenerTls) -> ListenerTlsSpec {
        let mode = match pb::TlsMode::try_from(t.mode) {
            Ok(pb::TlsMode::Unspecified | pb::TlsMode::Server) => TlsMode::Server,
            Ok(pb::TlsMode::Mutual) => TlsMode::Mutual,
            Err(_) => {
                self.push(join(path, "mode"), format!("unknown tls mode {}", t.mode));
                TlsMode::Server
            }
        };
        ListenerTlsSpec {
            mode,
            certificates: t
                .certificates
                .into_iter()
                .map(|c| CertificateSpec {
                    cert: c.cert,
                    key: c.key,
                })
                .collect(),
            allow: t.allow,
            peer_header: t.peer_header,
            client_ca: t.client_ca,
        }
    }

    /// `unspecified`: what POLICY_ACTION_UNSPECIFIED means here (None = the field is required).
    fn policy_action(
        &mut self,
        path: String,
        v: i32,
        unspecified: Option<PolicyAction>,
    ) -> PolicyAction {
        match pb::PolicyAction::try_from(v) {
            Ok(pb::PolicyAction::Allow) => PolicyAction::Allow,
            Ok(pb::PolicyAction::Deny) => PolicyAction::Deny,
            Ok(pb::PolicyAction::Unspecified) => unspecified.unwrap_or_else(|| {
                self.push(path, "required: POLICY_ACTION_ALLOW or POLICY_ACTION_DENY");
                PolicyAction::Deny
            }),
            Err(_) => {
                self.push(path, format!("unknown policy action {v}"));
                PolicyAction::Deny
            }
        }
    }

    fn policy(&mut self, path: &str, p: pb::Policy) -> PolicySpec {
        let rules = p
            .rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| PolicyRuleSpec {
                action: self.policy_action(
                    join(path, &format!("rules[{i}].action")),
                    r.action,
                    None,
                ),
                principals: r.principals,
                paths: r.paths,
                methods: r.methods,
            })
            .collect();
        PolicySpec {
            name: p.name,
            rules,
            default: self.policy_action(
                join(path, "default"),
                p.default,
                Some(PolicyAction::default()),
            ),
        }
    }

    fn http2(&mut self, path: &str, h: pb::Http2Settings) -> Http2Spec {
        let d = Http2Spec::default();
        Http2Spec {
            max_concurrent_streams: h.max_concurrent_streams.unwrap_or(d.max_concurrent_streams),
            initial_stream_window_size: h
                .initial_stream_window_size
                .unwrap_or(d.initial_stream_window_size),
            initial_connection_window_size: h
                .initial_connection_window_size
                .unwrap_or(d.initial_connection_window_size),
            max_frame_size: h.max_frame_size.unwrap_or(d.max_frame_size),
            max_header_list_size: h.max_header_list_size.unwrap_or(d.max_header_list_size),
            max_concurrent_reset_streams: self
                .usize(
                    path,
                    "max_concurrent_reset_streams",
                    h.max_concurrent_reset_streams,
                )
                .unwrap_or(d.max_concurrent_reset_streams),
            max_pending_accept_reset_streams: self
                .usize(
                    path,
                    "max_pending_accept_reset_streams",
                    h.max_pending_accept_reset_streams,
                )
                .unwrap_or(d.max_pending_accept_reset_streams),
            keepalive_interval: self
                .opt_duration(path, "keepalive_interval", h.keepalive_interval)
                .unwrap_or(d.keepalive_interval),
            keepalive_timeout: self
                .opt_duration(path, "keepalive_timeout", h.keepalive_timeout)
                .unwrap_or(d.keepalive_timeout),
        }
    }

    fn header_ops(h: Option<pb::HeaderOps>) -> HeaderOpsSpec {
        let h = h.unwrap_or_default();
        HeaderOpsSpec {
            add: h.add.into_iter().collect(),
            remove: h.remove,
        }
    }

    fn route(&mut self, path: &str, r: pb::Route) -> RouteSpec {
        let m = r.r#match.unwrap_or_default();
        let headers: BTreeMap<String, HeaderMatchSpec> = m
            .headers
            .into_iter()
            .map(|(name, h)| {
                let rule = match h.kind {
                    Some(pb::header_match::Kind::Exact(v)) => HeaderMatchSpec::Exact(v),
                    Some(pb::header_match::Kind::Present(p)) => {
                        HeaderMatchSpec::Rule(HeaderRuleSpec {
                            present: Some(p),
                            ..Default::default()
                        })
                    }
                    Some(pb::header_match::Kind::Regex(r)) => {
                        HeaderMatchSpec::Rule(HeaderRuleSpec {
                            regex: Some(r),
                            ..Default::default()
                        })
                    }
                    // No condition: the validator names it ("set exactly one of ...").
                    None => HeaderMatchSpec::Rule(HeaderRuleSpec::default()),
                };
                (name, rule)
            })
            .collect();
        let mut spec = RouteSpec {
            matcher: MatchSpec {
                path: m.path,
                prefix: m.prefix,
                regex: m.regex,
                methods: m.methods,
                headers,
                grpc: m.grpc.map(|g| GrpcMatchSpec {
                    service: g.service,
                    method: g.method,
                }),
                principals: m.principals,
            },
            prefix_rewrite: r.prefix_rewrite,
            timeout: self.opt_duration(path, "timeout", r.timeout),
            request_headers: Self::header_ops(r.request_headers),
            response_headers: Self::header_ops(r.response_headers),
            policy: r.policy,
            ..Default::default()
        };
        // No action: left empty for the validator to name ("set exactly one action").
        match r.action {
            None => {}
            Some(pb::route::Action::Cluster(c)) => spec.cluster = Some(c),
            Some(pb::route::Action::Weighted(w)) => {
                spec.weighted = Some(
                    w.clusters
                        .into_iter()
                        .map(|c| WeightedClusterSpec {
                            cluster: c.cluster,
                            weight: c.weight,
                        })
                        .collect(),
                )
            }
            Some(pb::route::Action::DirectResponse(d)) => {
                let status = u16::try_from(d.status).unwrap_or_else(|_| {
                    self.push(
                        join(path, "direct_response.status"),
                        format!("{} is not an HTTP status", d.status),
                    );
                    0
                });
                spec.direct_response = Some(DirectResponseSpec {
                    status,
                    body: d.body,
                })
            }
            Some(pb::route::Action::Redirect(r)) => {
                let status = r.status.and_then(|s| {
                    u16::try_from(s)
                        .map_err(|_| {
                            self.push(
                                join(path, "redirect.status"),
                                format!("{s} is not an HTTP status"),
                            )
                        })
                        .ok()
                });
                spec.redirect = Some(RedirectSpec {
                    scheme: r.scheme,
                    host: r.host,
                    path: r.path,
                    status,
                })
            }
        }
        spec
    }

    fn virtual_hosts(&mut self, path: &str, vhosts: Vec<pb::VirtualHost>) -> Vec<VirtualHostSpec> {
        vhosts
            .into_iter()
            .enumerate()
            .map(|(i, v)| VirtualHostSpec {
                domains: v.domains,
                routes: v
                    .routes
                    .into_iter()
                    .enumerate()
                    .map(|(j, r)| {
                        self.route(&join(path, &format!("virtual_hosts[{i}].routes[{j}]")), r)
                    })
                    .collect(),
            })
            .collect()
    }

    fn cluster(&mut self, path: &str, c: pb::Cluster) -> ClusterSpec {
        let lb = match pb::LbPolicy::try_from(c.lb) {
            Ok(pb::LbPolicy::Unspecified | pb::LbPolicy::RoundRobin) => LbPolicy::RoundRobin,
            Ok(pb::LbPolicy::Random) => LbPolicy::Random,
            Ok(pb::LbPolicy::Weighted) => LbPolicy::Weighted,
            Ok(pb::LbPolicy::LeastRequest) => LbPolicy::LeastRequest,
            Err(_) => {
                self.push(join(path, "lb"), format!("unknown lb policy {}", c.lb));
                LbPolicy::RoundRobin
            }
        };
        let protocol = match pb::ClusterProtocol::try_from(c.protocol) {
            Ok(pb::ClusterProtocol::Unspecified | pb::ClusterProtocol::Http1) => {
                ClusterProtocol::Http1
            }
            Ok(pb::ClusterProtocol::Http2) => ClusterProtocol::Http2,
            Ok(pb::ClusterProtocol::Auto) => ClusterProtocol::Auto,
            Err(_) => {
                self.push(
                    join(path, "protocol"),
                    format!("unknown protocol {}", c.protocol),
                );
                ClusterProtocol::Http1
            }
        };
        let h2 = c.http2.unwrap_or_default();
        let dh2 = ClusterHttp2Spec::default();
        let http2 = ClusterHttp2Spec {
            keepalive_interval: self
                .opt_duration(path, "http2.keepalive_interval", h2.keepalive_interval)
                .unwrap_or(dh2.keepalive_interval),
            keepalive_timeout: self
                .opt_duration(path, "http2.keepalive_timeout", h2.keepalive_timeout)
                .unwrap_or(dh2.keepalive_timeout),
        };
        let pool = c.pool.unwrap_or_default();
        let outlier = c.outlier.unwrap_or_default();
        let (dp, doo) = (PoolSpec::default(), OutlierSpec::default());
        ClusterSpec {
            name: c.name,
            protocol,
            lb,
            endpoints: c.endpoints.into_iter().map(endpoint).collect(),
            connect_timeout: self
                .opt_duration(path, "connect_timeout", c.connect_timeout)
                .unwrap_or(HumanDuration(std::time::Duration::from_secs(1))),
            pool: PoolSpec {
                max_idle_per_endpoint: self
                    .usize(
                        path,
                        "pool.max_idle_per_endpoint",
                        pool.max_idle_per_endpoint,
                    )
                    .unwrap_or(dp.max_idle_per_endpoint),
                idle_timeout: self
                    .opt_duration(path, "pool.idle_timeout", pool.idle_timeout)
                    .unwrap_or(dp.idle_timeout),
            },
            outlier: OutlierSpec {
                consecutive_failures: outlier
                    .consecutive_failures
                    .unwrap_or(doo.consecutive_failures),
                ejection_time: self
                    .opt_duration(path, "outlier.ejection_time", outlier.ejection_time)
                    .unwrap_or(doo.ejection_time),
            },
            http2,
            tls: c.tls.map(|t| ClusterTlsSpec {
                spiffe_id: t.spiffe_id,
                server_name: t.server_name,
            }),
        }
    }
}

/// `weight` unset is the YAML short form `"host:port"`.
pub(crate) fn endpoint(e: pb::Endpoint) -> EndpointSpec {
    match e.weight {
        None => EndpointSpec::Address(e.address),
        Some(weight) => EndpointSpec::Weighted(WeightedEndpointSpec {
            address: e.address,
            weight,
        }),
    }
}

/// Runs `f` with an error collector; `Err` if it collected anything.
fn collect<T>(f: impl FnOnce(&mut Cx<'_>) -> T) -> Result<T, ConvertError> {
    let mut errs = Vec::new();
    let v = f(&mut Cx { errs: &mut errs });
    if errs.is_empty() {
        Ok(v)
    } else {
        Err(ConvertError { errors: errs })
    }
}

impl FromProto<pb::Listener> for ListenerSpec {
    fn from_proto(l: pb::Listener) -> Result<Self, ConvertError> {
        collect(|cx| cx.listener("", l))
    }
}

impl FromProto<pb::Route> for RouteSpec {
    fn from_proto(r: pb::Route) -> Result<Self, ConvertError> {
        collect(|cx| cx.route("", r))
    }
}

impl FromProto<pb::Cluster> for ClusterSpec {
    fn from_proto(c: pb::Cluster) -> Result<Self, ConvertError> {
        collect(|cx| cx.cluster("", c))
    }
}

impl FromProto<pb::Policy> for PolicySpec {
    fn from_proto(p: pb::Policy) -> Result<Self, ConvertError> {
        collect(|cx| cx.policy("", p))
    }
}

/// A route table: `(name, virtual hosts)` as in the YAML `routes` map.
pub fn route_table(t: pb::RouteTable) -> Result<(String, Vec<VirtualHostSpec>), ConvertError> {
    collect(|cx| (t.name, cx.virtual_hosts("", t.virtual_hosts)))
}

impl FromProto<pb::Config> for ConfigSpec {
    fn from_proto(c: pb::Config) -> Result<Self, ConvertError> {
        collect(|cx| {
            let (dl, dt) = (LimitsSpec::default(), TimeoutsSpec::default());
            let mut spec = ConfigSpec {
                workers: cx.usize("", "workers", c.workers),
                access_log: c.access_log.map(|a| AccessLogSpec { path: a.path }),
                limits: c.limits.map_or(dl, |l| cx.limits("limits", l).over(dl)),
                timeouts: c
                    .timeouts
                    .map_or(dt, |t| cx.timeouts("timeouts", t).over(dt)),
                admin: c.admin.map(|a| AdminSpec {
                    grpc: a.grpc,
                    metrics: a.metrics,
                    ..Default::default()
                }),
                state_dir: c.state_dir,
                ca: c.ca.map(|k| CaSpec::remote(k.remote)),
                ..Default::default()
            };
            if let Some(id) = c.identity {
                spec.identity = Some(IdentitySpec {
                    id: id.id,
                    ttl: cx.opt_duration("identity", "ttl", id.ttl),
                });
            }
            if let Some(d) = cx.opt_duration("", "drain_timeout", c.drain_timeout) {
                spec.drain_timeout = d;
            }
            for (i, l) in c.listeners.into_iter().enumerate() {
                spec.listeners
                    .push(cx.listener(&format!("listeners[{i}]"), l));
            }
            for (i, t) in c.route_tables.into_iter().enumerate() {
                let path = format!("route_tables[{i}]");
                let vhosts = cx.virtual_hosts(&path, t.virtual_hosts);
                if spec.routes.insert(t.name.clone(), vhosts).is_some() {
                    cx.push(
                        join(&path, "name"),
                        format!("duplicate route table {:?}", t.name),
                    );
                }
            }
            for (i, k) in c.clusters.into_iter().enumerate() {
                spec.clusters.push(cx.cluster(&format!("clusters[{i}]"), k));
            }
            for (i, p) in c.policies.into_iter().enumerate() {
                spec.policies.push(cx.policy(&format!("policies[{i}]"), p));
            }
            spec
        })
    }
}

/// Top-level `limits`: unset fields take their defaults.
pub(crate) fn limits_spec(l: pb::Limits) -> Result<LimitsSpec, ConvertError> {
    collect(|cx| cx.limits("", l).over(LimitsSpec::default()))
}

/// Top-level `timeouts`: unset fields take their defaults.
pub(crate) fn timeouts_spec(t: pb::Timeouts) -> Result<TimeoutsSpec, ConvertError> {
    collect(|cx| cx.timeouts("", t).over(TimeoutsSpec::default()))
}
