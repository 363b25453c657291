//! Conversions: a full config survives config -> proto -> config unchanged, and bad input names
//! its field and becomes INVALID_ARGUMENT.

use shoal_dataplane::config::{
    ClusterSpec, ConfigSpec, ListenerSpec, PolicyAction, PolicySpec, RouteSpec, TlsMode,
};
use shoal_proto::admin::v1 as pb;

use super::{FromProto, ToProto};

const FULL: &str = r#"
workers: 2
drain_timeout: 5s
access_log: { path: stderr }
limits: { max_headers: 64 }
timeouts: { request: 0s }
admin: { grpc: "127.0.0.1:15000", metrics: "0.0.0.0:15090" }
state_dir: /var/lib/shoal
identity: { id: "spiffe://example.org/ns/default/sa/edge", ttl: 30m }
ca: { remote: "127.0.0.1:15000" }
listeners:
  - { name: web, address: "127.0.0.1:8080", routes: web, limits: { max_request_body_bytes: 10 }, timeouts: { idle: 5s } }
  - { name: db, address: "127.0.0.1:6432", protocol: tcp, cluster: db }
  - { name: grpc, address: "127.0.0.1:8081", protocol: http2, routes: web, http2: { max_concurrent_streams: 64, keepalive_interval: 5s } }
  - name: edge
    address: "127.0.0.1:8443"
    routes: web
    policy: open
    tls: { certificates: [ { cert: /etc/shoal/a.pem, key: /etc/shoal/a.key }, { cert: /etc/shoal/b.pem, key: /etc/shoal/b.key } ], client_ca: /etc/shoal/clients.pem }
  - name: mesh-in
    address: "127.0.0.1:15006"
    routes: web
    tls: { mode: mutual, allow: ["spiffe://example.org/ns/default/sa/*", "spiffe://example.org/ns/x/sa/y"], peer_header: x-peer }
  - { name: mesh-quiet, address: "127.0.0.1:15007", protocol: tcp, cluster: db, policy: mesh-only, tls: { mode: mutual, allow: ["spiffe://example.org/ns/a/sa/b"], peer_header: "" } }
routes:
  web:
    - domains: ["api.example.com", "*"]
      routes:
        - match: { prefix: /v1/, methods: [GET], headers: { x-canary: "1", x-a: { present: true }, x-b: { regex: "a.*" } } }
          weighted: [ { cluster: api, weight: 90 }, { cluster: db, weight: 10 } ]
          timeout: 2s
          prefix_rewrite: /
          request_headers: { add: { x-from: shoal }, remove: [cookie] }
        - { match: { path: /old }, redirect: { host: new.example.com, status: 301 } }
        - { match: { regex: "/h.*" }, direct_response: { status: 200, body: ok } }
        - { match: { grpc: { service: helloworld.Greeter, method: SayHello } }, cluster: greeter }
        - { cluster: api, response_headers: { remove: [server] } }
        - { match: { prefix: /admin/, principals: ["spiffe://example.org/ns/ops/sa/*", "spiffe://example.org/ns/x/sa/y"] }, cluster: api, policy: mesh-only }
clusters:
  - { name: api, lb: least_request, endpoints: ["127.0.0.1:9001", { address: "127.0.0.1:9002", weight: 3 }], connect_timeout: 250ms, pool: { max_idle_per_endpoint: 8 }, outlier: { consecutive_failures: 0 } }
  - { name: db, endpoints: ["127.0.0.1:5432"] }
  - { name: greeter, protocol: http2, endpoints: ["127.0.0.1:50051"], http2: { keepalive_interval: 2s } }
  - { name: mixed, protocol: auto, endpoints: ["127.0.0.1:50052"] }
  - { name: secure, protocol: http2, endpoints: ["10.0.0.7:50051"], tls: { spiffe_id: "spiffe://example.org/ns/default/sa/greeter", server_name: greeter.internal } }
  - { name: secure-ip, endpoints: ["10.0.0.8:8080"], tls: { spiffe_id: "spiffe://example.org/ns/default/sa/api" } }
policies:
  - name: mesh-only
    rules:
      - { action: deny, paths: ["/admin/*", /debug], methods: [DELETE, PUT] }
      - { action: allow, principals: ["spiffe://example.org/ns/default/sa/*"] }
  - name: open
    default: allow
    rules:
      - { action: deny, principals: ["spiffe://example.org/ns/evil/sa/x"], paths: [/], methods: [POST] }
  - { name: empty }
"#;

#[test]
fn a_full_config_round_trips_through_proto() {
    let spec = ConfigSpec::from_yaml(FULL).unwrap();
    // The YAML uses every tls / policy field (so a field the conversions drop fails below).
    let l = &spec.listeners;
    assert_eq!(l[3].tls.as_ref().unwrap().certificates.len(), 2);
    assert_eq!(l[4].tls.as_ref().unwrap().mode, TlsMode::Mutual);
    assert_eq!(
        l[4].tls.as_ref().unwrap().peer_header.as_deref(),
        Some("x-peer")
    );
    assert_eq!(l[5].tls.as_ref().unwrap().peer_header.as_deref(), Some(""));
    let admin = &spec.routes["web"][0].routes[5];
    assert_eq!(admin.matcher.principals.len(), 2);
    assert_eq!(admin.policy.as_deref(), Some("mesh-only"));
    assert_eq!(
        spec.clusters[4]
            .tls
            .as_ref()
            .unwrap()
            .server_name
            .as_deref(),
        Some("greeter.internal")
    );
    assert_eq!(spec.policies.len(), 3);

    let proto: pb::Config = spec.to_proto();
    assert_eq!(proto.policies[1].default, pb::PolicyAction::Allow as i32);
    assert_eq!(
        proto.listeners[4].tls.as_ref().unwrap().mode,
        pb::TlsMode::Mutual as i32
    );
    let back = ConfigSpec::from_proto(proto).unwrap();
    assert_eq!(back, spec);
    // ...and so does the YAML the reads send alongside (`GetConfigResponse.yaml`).
    assert_eq!(ConfigSpec::from_yaml(&back.to_yaml()).unwrap(), spec);
}

#[test]
fn bad_tls_and_policy_enums_name_their_fields() {
    let err = ConfigSpec::from_proto(pb::Config {
        listeners: vec![pb::Listener {
            name: "in".into(),
            tls: Some(pb::ListenerTls {
                mode: 7,
                ..Default::default()
            }),
            ..Default::default()
        }],
        policies: vec![
            pb::Policy {
                name: "ok".into(),
                ..Default::default()
            },
            pb::Policy {
                name: "bad".into(),
                rules: vec![
                    pb::PolicyRule {
                        action: pb::PolicyAction::Allow as i32,
                        ..Default::default()
                    },
                    pb::PolicyRule {
                        action: 9,
                        ..Default::default()
                    },
                    // The YAML `action` is required: unspecified is not a silent deny.
                    pb::PolicyRule::default(),
                ],
                default: -1,
            },
        ],
        ..Default::default()
    })
    .unwrap_err();
    let got: Vec<(&str, &str)> = err
        .errors
        .iter()
        .map(|e| (e.path.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("listeners[0].tls.mode", "unknown tls mode 7"),
            ("policies[1].rules[1].action", "unknown policy action 9"),
            (
                "policies[1].rules[2].action",
                "required: POLICY_ACTION_ALLOW or POLICY_ACTION_DENY"
            ),
            ("policies[1].default", "unknown policy action -1"),
        ]
    );
    let status = tonic::Status::from(err);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("listeners[0].tls.mode"),
        "{}",
        status.message()
    );
}

#[test]
fn proto_defaults_are_the_yaml_defaults() {
    let l = ListenerSpec::from_proto(pb::Listener {
        name: "web".into(),
        address: "127.0.0.1:0".into(),
        routes: Some("web".into()),
        ..Default::default()
    })
    .unwrap();
    let yaml: ListenerSpec =
        serde_yaml_ng::from_str("{ name: web, address: \"127.0.0.1:0\", routes: web }").unwrap();
    assert_eq!(l, yaml);
    let c = ClusterSpec::from_proto(pb::Cluster {
        name: "api".into(),
        endpoints: vec![pb::Endpoint {
            address: "127.0.0.1:1".into(),
            weight: None,
        }],
        ..Default::default()
    })
    .unwrap();
    let yaml: ClusterSpec =
        serde_yaml_ng::from_str("{ name: api, endpoints: [\"127.0.0.1:1\"] }").unwrap();
    assert_eq!(c, yaml);

    // Unspecified enums: TLS_MODE_UNSPECIFIED = server, a policy's default unset = deny.
    let tls = ListenerSpec::from_proto(pb::Listener {
        name: "in".into(),
        address: "127.0.0.1:0".into(),
        routes: Some("web".into()),
        tls: Some(pb::ListenerTls {
            certificates: vec![pb::Certificate {
                cert: "c.pem".into(),
                key: "k.pem".into(),
            }],
            ..Default::default()
        }),
        ..Default::default()
    })
    .unwrap();
    let yaml: ListenerSpec = serde_yaml_ng::from_str(
        "{ name: in, address: \"127.0.0.1:0\", routes: web, tls: { certificates: [ { cert: c.pem, key: k.pem } ] } }",
    )
    .unwrap();
    assert_eq!(tls, yaml);
    assert_eq!(tls.tls.unwrap().mode, TlsMode::Server);

    let p = PolicySpec::from_proto(pb::Policy {
        name: "p".into(),
        rules: vec![pb::PolicyRule {
            action: pb::PolicyAction::Allow as i32,
            methods: vec!["GET".into()],
            ..Default::default()
        }],
        ..Default::default()
    })
    .unwrap();
    let yaml: PolicySpec =
        serde_yaml_ng::from_str("{ name: p, rules: [ { action: allow, methods: [GET] } ] }")
            .unwrap();
    assert_eq!(p, yaml);
    assert_eq!(p.default, PolicyAction::Deny);
}

#[test]
fn bad_input_names_every_field_and_is_invalid_argument() {
    let err = ClusterSpec::from_proto(pb::Cluster {
        name: "api".into(),
        lb: 42,
        connect_timeout: Some("soon".into()),
        outlier: Some(pb::Outlier {
            ejection_time: Some("10 parsecs".into()),
            ..Default::default()
        }),
        ..Default::default()
    })
    .unwrap_err();
    let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["lb", "connect_timeout", "outlier.ejection_time"]);
    assert!(err.errors[1].message.contains("\"soon\""), "{err}");
    let status = tonic::Status::from(err);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("connect_timeout"),
        "{}",
        status.message()
    );

    let err = RouteSpec::from_proto(pb::Route {
        action: Some(pb::route::Action::DirectResponse(pb::DirectResponse {
            status: 70_000,
            body: String::new(),
        })),
        timeout: Some("-1s".into()),
        ..Default::default()
    })
    .unwrap_err();
    let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["timeout", "direct_response.status"]);

    let err = ListenerSpec::from_proto(pb::Listener {
        name: "x".into(),
        protocol: 9,
        timeouts: Some(pb::Timeouts {
            idle: Some("1 fortnight-ish".into()),
            ..Default::default()
        }),
        ..Default::default()
    })
    .unwrap_err();
    let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["protocol", "timeouts.idle"]);

    let err = ConfigSpec::from_proto(pb::Config {
        route_tables: vec![
            pb::RouteTable {
                name: "t".into(),
                virtual_hosts: vec![pb::VirtualHost {
                    domains: vec!["*".into()],
                    routes: vec![pb::Route {
                        timeout: Some("x".into()),
                        ..Default::default()
                    }],
                }],
            },
            pb::RouteTable {
                name: "t".into(),
                virtual_hosts: vec![],
            },
        ],
        ..Default::default()
    })
    .unwrap_err();
    let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "route_tables[0].virtual_hosts[0].routes[0].timeout",
            "route_tables[1].name"
        ]
    );
}
