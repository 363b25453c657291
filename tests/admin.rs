//! The gRPC admin API driven by a real tonic client against an in-process `App`: transactions
//! under load, all-or-nothing rejections naming the op, compare-and-swap, dry runs, watch,
//! persistence across a restart (the non-loopback rules: admin_more.rs, admin_auth.rs).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use prost::Message;
use shoal::{App, AppOptions};
use shoal_admin::proto::admin::v1 as pb;
use shoal_admin::proto::admin::v1::admin_service_client::AdminServiceClient;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tonic::Code;
use tonic::transport::Channel;

use crate::support::{self, upstream};

pub type Client = AdminServiceClient<Channel>;

/// A config with the admin API on a free loopback port, a `web` listener routing `/` to
/// cluster `a`, and clusters `a` and `b`.
pub fn config(a: SocketAddr, b: SocketAddr, extra: &str) -> String {
    format!(
        r#"
admin: {{ grpc: "127.0.0.1:0" }}
{extra}
listeners:
  - {{ name: web, address: "127.0.0.1:0", routes: web }}
routes:
  web:
    - domains: ["*"]
      routes:
        - {{ match: {{ prefix: / }}, cluster: a }}
clusters:
  - {{ name: a, endpoints: ["{a}"] }}
  - {{ name: b, endpoints: ["{b}"] }}
"#
    )
}

pub async fn client(app: &App) -> Client {
    let addr = app.admin_addr().expect("admin API runs");
    AdminServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect to the admin API")
}

/// `upsert_route` replacing route 0 of `web` with a forward to `cluster`.
pub fn route_to(cluster: &str) -> pb::Op {
    pb::Op {
        op: Some(pb::op::Op::UpsertRoute(pb::UpsertRoute {
            table: "web".into(),
            virtual_host: 0,
            index: Some(0),
            route: Some(pb::Route {
                r#match: Some(pb::RouteMatch {
                    prefix: Some("/".into()),
                    ..Default::default()
                }),
                action: Some(pb::route::Action::Cluster(cluster.into())),
                ..Default::default()
            }),
        })),
    }
}

pub fn cluster_op(name: &str, endpoint: &str) -> pb::Op {
    pb::Op {
        op: Some(pb::op::Op::UpsertCluster(pb::Cluster {
            name: name.into(),
            endpoints: vec![pb::Endpoint {
                address: endpoint.into(),
                weight: None,
            }],
            ..Default::default()
        })),
    }
}

pub fn apply(ops: Vec<pb::Op>, expected_version: Option<u64>, dry_run: bool) -> pb::ApplyRequest {
    pb::ApplyRequest {
        expected_version,
        ops,
        dry_run,
    }
}

async fn upstream_of(addr: SocketAddr) -> String {
    let (status, headers, _) =
        support::request(addr, http::Method::GET, "h", "/", &[], Vec::new()).await;
    assert_eq!(status, 200);
    headers["x-upstream"].to_str().unwrap().to_string()
}

async fn version(c: &mut Client) -> u64 {
    c.get_config(pb::GetConfigRequest {})
        .await
        .unwrap()
        .into_inner()
        .version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn applies_under_continuous_load_fail_no_request() {
    let a = upstream::http_echo("a").await;
    let b = upstream::http_echo("b").await;
    let mut spec = support::spec(&config(a.addr, b.addr, ""));
    spec.workers = Some(2);
    let app = App::start(AppOptions {
        spec,
        config_path: None,
        pin: false,
    })
    .unwrap();
    let addr = app.listener_addr("web").unwrap();
    let mut c = client(&app).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut loads = Vec::new();
    for _ in 0..8 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        loads.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let mut s = TcpStream::connect(addr).await.unwrap();
                while !stop.load(Ordering::Relaxed) {
                    if s.write_all(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n")
                        .await
                        .is_err()
                    {
                        failed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    match support::read_response(&mut s).await.0 {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }
        }));
    }
    let first = version(&mut c).await;
    for i in 0..40u64 {
        let target = if i % 2 == 0 { "b" } else { "a" };
        let r = c
            .apply(apply(vec![route_to(target)], Some(first + i), false))
            .await
            .expect("apply succeeds")
            .into_inner();
        assert_eq!(r.version, first + i + 1);
        // The reply comes after every worker installed it: a new request already sees it.
        assert_eq!(upstream_of(addr).await, target, "apply {i}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in loads {
        l.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during applies"
    );
    assert!(ok.load(Ordering::Relaxed) > 200, "too little load: {ok:?}");
    app.shutdown();
}

fn apply_error(s: &tonic::Status) -> pb::ApplyError {
    pb::ApplyError::decode(s.details()).expect("ApplyError in the status details")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_one_bad_op_changes_nothing_and_names_it() {
    let a = upstream::http_echo("a").await;
    let app = support::start(&config(a.addr, a.addr, ""));
    let addr = app.listener_addr("web").unwrap();
    let mut c = client(&app).await;
    let before = c
        .get_config(pb::GetConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    let new_listener = pb::Op {
        op: Some(pb::op::Op::UpsertListener(pb::Listener {
            name: "web2".into(),
            address: "127.0.0.1:0".into(),
            routes: Some("web".into()),
            ..Default::default()
        })),
    };
    let ops = vec![
        cluster_op("c", "127.0.0.1:9"),
        cluster_op("d", "not-an-address"),
        new_listener,
        route_to("c"),
    ];
    let err = c.apply(apply(ops, None, false)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let details = apply_error(&err);
    assert_eq!(details.errors.len(), 1, "{details:?}");
    assert_eq!(details.errors[0].op_index, Some(1));
    assert_eq!(details.errors[0].path, "clusters[3].endpoints[0]");
    assert!(
        details.errors[0].reason.contains("not-an-address"),
        "{details:?}"
    );
    assert!(
        err.message().contains("ops[1] clusters[3].endpoints[0]"),
        "{}",
        err.message()
    );
    // Nothing changed: same version, same config, no new listener, traffic still goes to a.
    let after = c
        .get_config(pb::GetConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after, before);
    assert_eq!(app.listener_addr("web2"), None);
    assert_eq!(upstream_of(addr).await, "a");

    // Problems in several ops, of both kinds (conversion and validation), are all listed.
    let mut bad_timeout = cluster_op("e", "127.0.0.1:9");
    if let Some(pb::op::Op::UpsertCluster(c)) = &mut bad_timeout.op {
        c.connect_timeout = Some("soonish".into());
    }
    let ops = vec![bad_timeout, pb::Op { op: None }];
    let details = apply_error(&c.apply(apply(ops, None, false)).await.unwrap_err());
    let got: Vec<(Option<u32>, &str)> = details
        .errors
        .iter()
        .map(|e| (e.op_index, e.path.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (Some(0), "ops[0].upsert_cluster.connect_timeout"),
            (Some(1), "ops[1].op")
        ]
    );
    // Deleting a cluster a route still uses is traced to the delete.
    let ops = vec![
        cluster_op("f", "127.0.0.1:9"),
        pb::Op {
            op: Some(pb::op::Op::DeleteCluster("a".into())),
        },
    ];
    let details = apply_error(&c.apply(apply(ops, None, false)).await.unwrap_err());
    assert_eq!(details.errors[0].op_index, Some(1), "{details:?}");
    assert_eq!(details.errors[0].path, "routes.web[0].routes[0].cluster");
    assert_eq!(version(&mut c).await, before.version);
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_compare_and_swap() {
    let a = upstream::http_echo("a").await;
    let b = upstream::http_echo("b").await;
    let app = support::start(&config(a.addr, b.addr, ""));
    let addr = app.listener_addr("web").unwrap();
    let (mut one, mut two) = (client(&app).await, client(&app).await);
    let v = version(&mut one).await;
    assert_eq!(version(&mut two).await, v);
    one.apply(apply(vec![route_to("b")], Some(v), false))
        .await
        .unwrap();
    let err = two
        .apply(apply(vec![cluster_op("x", "127.0.0.1:9")], Some(v), false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message()
            .contains(&format!("config version is {}", v + 1)),
        "{}",
        err.message()
    );
    assert_eq!(apply_error(&err).current_version, Some(v + 1));
    assert_eq!(upstream_of(addr).await, "b");

    // Racing for the same version with two real changes: exactly one wins.
    let v = v + 1;
    let race =
        |mut c: Client, op: pb::Op| async move { c.apply(apply(vec![op], Some(v), false)).await };
    let (r1, r2) = tokio::join!(
        tokio::spawn(race(one.clone(), route_to("a"))),
        tokio::spawn(race(two.clone(), cluster_op("x", "127.0.0.1:9")))
    );
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    assert_eq!(r1.is_ok() as u8 + r2.is_ok() as u8, 1, "{r1:?} {r2:?}");
    let loser = r1.err().or(r2.err()).unwrap();
    assert_eq!(loser.code(), Code::FailedPrecondition);
    assert_eq!(version(&mut one).await, v + 1);
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_returns_the_diff_and_changes_nothing() {
    let a = upstream::http_echo("a").await;
    let b = upstream::http_echo("b").await;
    let app = support::start(&config(a.addr, b.addr, ""));
    let addr = app.listener_addr("web").unwrap();
    let mut c = client(&app).await;
    let before = c
        .get_config(pb::GetConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    let ops = vec![
        cluster_op("new", "127.0.0.1:9"),
        cluster_op("a", "127.0.0.1:10"),
        route_to("b"),
        pb::Op {
            op: Some(pb::op::Op::DeleteListener("web".into())),
        },
    ];
    let r = c
        .apply(apply(ops.clone(), Some(before.version), true))
        .await
        .unwrap()
        .into_inner();
    assert!(r.dry_run);
    assert_eq!(r.version, before.version);
    let d = r.diff.unwrap();
    let names = |n: Option<pb::NameDiff>| {
        let n = n.unwrap();
        (n.added, n.changed, n.removed)
    };
    let none = Vec::<String>::new;
    assert_eq!(
        names(d.clusters),
        (vec!["new".to_string()], vec!["a".to_string()], none())
    );
    assert_eq!(
        names(d.route_tables),
        (none(), vec!["web".to_string()], none())
    );
    assert_eq!(
        names(d.listeners),
        (none(), none(), vec!["web".to_string()])
    );
    assert!(!d.other_settings_changed);
    assert_eq!(
        c.get_config(pb::GetConfigRequest {})
            .await
            .unwrap()
            .into_inner(),
        before
    );
    assert_eq!(upstream_of(addr).await, "a");
    // A transaction that changes nothing is not a new version.
    let same = c
        .apply(apply(
            vec![cluster_op("a", &a.addr.to_string())],
            None,
            false,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(same.version, before.version);
    assert!(same.diff.unwrap().clusters.unwrap().changed.is_empty());
    // A dry run of an invalid transaction is rejected like a real one.
    let err = c
        .apply(apply(vec![route_to("missing")], None, true))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // Reads: listeners with their bound address, clusters with endpoints.
    let l = c
        .list_listeners(pb::ListListenersRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(l.listeners[0].bound_address, addr.to_string());
    let k = c
        .list_clusters(pb::ListClustersRequest {})
        .await
        .unwrap()
        .into_inner();
    let eps: Vec<&str> = k.clusters[0]
        .endpoints
        .iter()
        .map(|e| e.address.as_str())
        .collect();
    assert_eq!(eps, [a.addr.to_string()]);
    app.shutdown();
}
