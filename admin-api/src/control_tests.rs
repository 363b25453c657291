//! `Control` on a store without workers (nothing is bound): all-or-nothing, attribution of
//! validation errors to ops, compare-and-swap, dry runs, no-op transactions, and the journal.

use std::sync::Arc;

use shoal_dataplane::config::ConfigSpec;
use shoal_dataplane::snapshot::ConfigStore;

use super::*;

const BASE: &str = r#"
listeners:
  - { name: web, address: "127.0.0.1:0", routes: web }
routes:
  web:
    - domains: ["*"]
      routes: [ { cluster: a } ]
clusters:
  - { name: a, endpoints: ["127.0.0.1:9001"] }
"#;

fn control() -> Arc<Control> {
    let store = Arc::new(ConfigStore::new());
    store.apply(ConfigSpec::from_yaml(BASE).unwrap()).unwrap();
    Control::new(store)
}

fn ops(yaml: &str) -> Vec<OpSpec> {
    serde_yaml_ng::from_str(yaml).unwrap()
}

/// Runs a transaction that must be refused as invalid: `(op index, path)` of every problem.
fn refused(c: &Control, yaml: &str) -> Vec<(Option<u32>, String)> {
    let err = c.transact(None, ops(yaml), false).unwrap_err();
    let TxnError::Invalid(errors) = err else {
        panic!("{err:?}")
    };
    errors.into_iter().map(|e| (e.op_index, e.path)).collect()
}

fn has(got: &[(Option<u32>, String)], op: u32, path: &str) -> bool {
    got.iter().any(|(i, p)| *i == Some(op) && p == path)
}

#[test]
fn every_error_is_traced_to_its_op_and_nothing_changes() {
    let c = control();
    let got = refused(
        &c,
        r#"
- upsert_cluster: { name: b, endpoints: ["127.0.0.1:9002"] }
- upsert_listener: { name: api, address: "nowhere", routes: web }
- delete_cluster: a
- upsert_route_table: { name: t2, virtual_hosts: [ { domains: ["*"], routes: [ { cluster: zz } ] } ] }
- set_limits: { max_headers: 2 }
"#,
    );
    assert!(has(&got, 1, "listeners[1].address"), "{got:?}");
    assert!(has(&got, 2, "routes.web[0].routes[0].cluster"), "{got:?}");
    assert!(has(&got, 3, "routes.t2[0].routes[0].cluster"), "{got:?}");
    assert!(has(&got, 4, "limits.max_headers"), "{got:?}");
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(c.store().version(), 1);
    assert_eq!(c.store().load().spec, ConfigSpec::from_yaml(BASE).unwrap());
}

#[test]
fn versions_dry_runs_no_ops_and_the_journal() {
    let c = control();
    let add = ops(r#"- upsert_cluster: { name: b, endpoints: ["127.0.0.1:9002"] }"#);
    let dry = c.transact(Some(1), add.clone(), true).unwrap();
    assert_eq!((dry.version, dry.dry_run), (1, true));
    assert_eq!(dry.diff.clusters.added, ["b"]);
    assert_eq!(c.store().version(), 1);
    assert_eq!(
        c.transact(Some(0), add.clone(), false),
        Err(TxnError::Conflict {
            expected: 0,
            current: 1
        })
    );
    assert_eq!(c.transact(Some(1), add.clone(), false).unwrap().version, 2);
    // The same upsert again changes nothing: no new version, no event.
    let same = c.transact(None, add.clone(), false).unwrap();
    assert_eq!(same.version, 2);
    assert!(same.diff.is_empty());
    // A change made behind Control's back: without expected_version the ops are re-based.
    let mut spec = c.store().load().spec.clone();
    spec.clusters[0].endpoints.clear();
    spec.clusters[0]
        .endpoints
        .push(shoal_dataplane::config::EndpointSpec::Address(
            "127.0.0.1:9009".into(),
        ));
    c.store().apply(spec).unwrap();
    let r = c.transact(None, ops("- delete_cluster: b"), false).unwrap();
    assert_eq!(r.version, 4);
    let (events, _rx) = c.journal().subscribe(0);
    let versions: Vec<(u64, usize, bool)> = events
        .iter()
        .map(|e| (e.version, e.ops.len(), e.full))
        .collect();
    // Version 3 bypassed Control, so it is not in the journal; everything else is, in order.
    assert_eq!(versions, [(1, 0, true), (2, 1, false), (4, 1, false)]);
    assert_eq!(
        events[2].config.clusters[0].endpoints[0].address(),
        "127.0.0.1:9009"
    );
}

#[test]
fn watch_subscriptions_at_the_edges() {
    let c = control();
    let add = ops(r#"- upsert_cluster: { name: b, endpoints: ["127.0.0.1:9002"] }"#);
    c.transact(None, add, false).unwrap();
    // From the future (or the end of u64): nothing kept, live events only, no panic.
    assert!(c.journal().subscribe(u64::MAX).0.is_empty());
    assert!(c.journal().subscribe(2).0.is_empty());
    assert_eq!(c.journal().subscribe(1).0.len(), 1);
    assert_eq!(c.journal().subscribe(0).0.len(), 2);
}

#[test]
fn policies_are_named_in_the_diff() {
    let c = control();
    let add = ops("- upsert_policy: { name: p, default: allow }");
    let dry = c.transact(None, add.clone(), true).unwrap();
    assert_eq!(dry.diff.policies.added, ["p"]);
    assert!(!dry.diff.other_settings_changed, "{:?}", dry.diff);
    c.transact(None, add, false).unwrap();
    let change = ops("- upsert_policy: { name: p }");
    assert_eq!(
        c.transact(None, change, true)
            .unwrap()
            .diff
            .policies
            .changed,
        ["p"]
    );
    let out = c.transact(None, ops("- delete_policy: p"), false).unwrap();
    assert_eq!(out.diff.policies.removed, ["p"]);
    assert!(c.store().load().spec.policies.is_empty());
    let wire = shoal_proto::admin::v1::ConfigDiff::from(&out.diff);
    assert_eq!(wire.policies.unwrap().removed, ["p"]);
}

#[test]
fn deleting_a_policy_still_named_is_refused_and_traced_to_the_delete() {
    let c = control();
    c.transact(
        None,
        ops(r#"
- upsert_policy: { name: p, rules: [ { action: allow, methods: [GET] } ] }
- upsert_listener: { name: web, address: "127.0.0.1:0", routes: web, policy: p }
- upsert_route_table: { name: web, virtual_hosts: [ { domains: ["*"], routes: [ { cluster: a, policy: p } ] } ] }
"#),
        false,
    )
    .unwrap();
    let before = c.store().version();
    let got = refused(&c, "- delete_policy: p");
    assert!(has(&got, 0, "listeners[0].policy"), "{got:?}");
    assert!(has(&got, 0, "routes.web[0].routes[0].policy"), "{got:?}");
    assert_eq!(c.store().version(), before);
}
