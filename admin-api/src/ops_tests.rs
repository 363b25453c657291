//! Ops against a config: what each does, what fails with which path, and the YAML form
//! `shoal ctl apply -f` reads.

use shoal_dataplane::config::{ConfigSpec, PolicyAction};
use shoal_proto::admin::v1 as pb;

use super::*;

const BASE: &str = r#"
listeners:
  - { name: web, address: "127.0.0.1:0", routes: web }
routes:
  web:
    - domains: ["*"]
      routes:
        - { match: { prefix: /a }, cluster: a }
clusters:
  - { name: a, endpoints: ["127.0.0.1:9001"] }
"#;

fn ops(yaml: &str) -> Vec<OpSpec> {
    serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

#[test]
fn ops_yaml_applies_each_kind() {
    let base = ConfigSpec::from_yaml(BASE).unwrap();
    let list = ops(r#"
- upsert_cluster: { name: b, endpoints: ["127.0.0.1:9002"] }
- upsert_endpoint: { cluster: a, endpoint: { address: "127.0.0.1:9003", weight: 2 } }
- upsert_endpoint: { cluster: a, endpoint: "127.0.0.1:9001" }
- delete_endpoint: { cluster: a, address: "127.0.0.1:9003" }
- upsert_route: { table: web, virtual_host: 0, index: 0, route: { match: { prefix: /b }, cluster: b } }
- upsert_route: { table: web, route: { direct_response: { status: 404 } } }
- upsert_listener: { name: web2, address: "127.0.0.1:0", routes: other }
- upsert_route_table: { name: other, virtual_hosts: [ { domains: ["*"], routes: [ { cluster: a } ] } ] }
- delete_route: { table: web, index: 1 }
- set_limits: { max_headers: 64 }
- set_timeouts: { request: 5s }
"#);
    let (spec, errors) = apply_ops(&base, &list);
    assert_eq!(errors, []);
    assert_eq!(spec.clusters.len(), 2);
    assert_eq!(spec.clusters[0].endpoints.len(), 1);
    let web = &spec.routes["web"][0].routes;
    assert_eq!(web.len(), 1);
    assert_eq!(web[0].cluster.as_deref(), Some("b"));
    assert_eq!(spec.listeners[1].name, "web2");
    assert!(spec.routes.contains_key("other"));
    assert_eq!(spec.limits.max_headers, 64);
    assert_eq!(
        spec.limits.max_request_head_bytes,
        64 * 1024,
        "unset = default"
    );
    assert_eq!(
        spec.timeouts.request.get(),
        std::time::Duration::from_secs(5)
    );
    assert_eq!(list[9].summary(), "set_limits");
    shoal_dataplane::snapshot::ConfigStore::check(&spec).unwrap();

    // Each op survives the wire.
    for (i, op) in list.iter().enumerate() {
        let wire: pb::Op = op.into();
        assert_eq!(&op_from_proto(i, wire).unwrap(), op);
    }
}

#[test]
fn failing_ops_name_their_index_and_field() {
    let base = ConfigSpec::from_yaml(BASE).unwrap();
    let list = ops(r#"
- delete_cluster: nope
- upsert_route: { table: web, virtual_host: 3, route: { cluster: a } }
- upsert_route: { table: web, index: 5, route: { cluster: a } }
- delete_endpoint: { cluster: a, address: "1.2.3.4:5" }
- upsert_endpoint: { cluster: zz, endpoint: "1.2.3.4:5" }
- delete_policy: nope
- delete_listener: web
"#);
    let (spec, errors) = apply_ops(&base, &list);
    let got: Vec<(Option<u32>, &str)> = errors
        .iter()
        .map(|e| (e.op_index, e.path.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (Some(0), "ops[0].delete_cluster"),
            (Some(1), "ops[1].upsert_route.virtual_host"),
            (Some(2), "ops[2].upsert_route.index"),
            (Some(3), "ops[3].delete_endpoint.address"),
            (Some(4), "ops[4].upsert_endpoint.cluster"),
            (Some(5), "ops[5].delete_policy"),
        ]
    );
    assert_eq!(errors[5].reason, "no policy named \"nope\"");
    // The op that could apply did (on the copy).
    assert!(spec.listeners.is_empty());
    assert_eq!(base.listeners.len(), 1);
}

#[test]
fn an_op_without_a_body_is_an_error() {
    let err = op_from_proto(3, pb::Op { op: None }).unwrap_err();
    assert_eq!(err[0].path, "ops[3].op");
    assert_eq!(err[0].op_index, Some(3));
    let err = op_from_proto(
        1,
        pb::Op {
            op: Some(pb::op::Op::UpsertCluster(pb::Cluster {
                name: "x".into(),
                connect_timeout: Some("later".into()),
                ..Default::default()
            })),
        },
    )
    .unwrap_err();
    assert_eq!(err[0].path, "ops[1].upsert_cluster.connect_timeout");
    let err = op_from_proto(
        2,
        pb::Op {
            op: Some(pb::op::Op::UpsertPolicy(pb::Policy {
                name: "p".into(),
                rules: vec![pb::PolicyRule::default()],
                ..Default::default()
            })),
        },
    )
    .unwrap_err();
    assert_eq!(err[0].path, "ops[2].upsert_policy.rules[0].action");
}

#[test]
fn policy_ops_add_replace_in_place_and_delete() {
    let base = ConfigSpec::from_yaml(BASE).unwrap();
    let list = ops(r#"
- upsert_policy: { name: ops-only, rules: [ { action: allow, principals: ["spiffe://example.org/ns/ops/sa/*"] } ] }
- upsert_policy: { name: open, default: allow }
- upsert_policy: { name: ops-only, default: allow, rules: [ { action: deny, paths: ["/admin/*"], methods: [DELETE] } ] }
- upsert_policy: { name: last }
- delete_policy: open
- upsert_listener: { name: web, address: "127.0.0.1:0", routes: web, policy: ops-only }
"#);
    let (spec, errors) = apply_ops(&base, &list);
    assert_eq!(errors, []);
    let names: Vec<&str> = spec.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["ops-only", "last"],
        "a replaced policy keeps its place"
    );
    let p = &spec.policies[0];
    assert_eq!(p.default, PolicyAction::Allow);
    assert_eq!(p.rules.len(), 1);
    assert_eq!(p.rules[0].action, PolicyAction::Deny);
    assert_eq!(p.rules[0].methods, ["DELETE"]);
    assert_eq!(spec.policies[1].default, PolicyAction::Deny, "YAML default");
    assert_eq!(spec.listeners[0].policy.as_deref(), Some("ops-only"));
    assert!(base.policies.is_empty(), "applied to a copy");
    assert_eq!(list[0].summary(), "upsert_policy ops-only");
    assert_eq!(list[4].summary(), "delete_policy open");
    shoal_dataplane::snapshot::ConfigStore::check(&spec).unwrap();

    // Each op survives the wire and the YAML form.
    for (i, op) in list.iter().enumerate() {
        let wire: pb::Op = op.into();
        assert_eq!(&op_from_proto(i, wire).unwrap(), op);
    }
    let text = serde_yaml_ng::to_string(&list).unwrap();
    assert_eq!(serde_yaml_ng::from_str::<Vec<OpSpec>>(&text).unwrap(), list);
}

#[test]
fn an_op_in_yaml_has_exactly_one_key() {
    let err = serde_yaml_ng::from_str::<Vec<OpSpec>>("- { delete_cluster: a, delete_listener: b }")
        .unwrap_err()
        .to_string();
    assert!(err.contains("exactly one key"), "{err}");
    let err = serde_yaml_ng::from_str::<Vec<OpSpec>>("- { delete_clusterr: a }")
        .unwrap_err()
        .to_string();
    assert!(err.contains("delete_clusterr"), "{err}");
    let op = OpSpec::DeleteCluster("a".into());
    let text = serde_yaml_ng::to_string(&vec![op.clone()]).unwrap();
    assert_eq!(serde_yaml_ng::from_str::<Vec<OpSpec>>(&text).unwrap(), [op]);
}
