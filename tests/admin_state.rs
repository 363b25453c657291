//! `ListClusters` per-endpoint state, summed over two workers: a closed port's connect failures
//! and ejection, a healthy endpoint's connects, pooled idle connections and requests in flight.

use std::time::Duration;

use shoal_admin::proto::admin::v1 as pb;

use crate::admin::{Client, client};
use crate::support::{self, upstream};

async fn states(c: &mut Client) -> Vec<pb::ClusterState> {
    let r = c
        .list_clusters(pb::ListClustersRequest {})
        .await
        .expect("ListClusters")
        .into_inner();
    let names: Vec<&str> = r.clusters.iter().map(|c| c.name.as_str()).collect();
    let state_names: Vec<&str> = r.states.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, state_names, "one state per cluster, same order");
    r.states
}

async fn endpoint(c: &mut Client, cluster: &str) -> pb::EndpointState {
    let s = states(c).await;
    let s = s
        .iter()
        .find(|s| s.name == cluster)
        .expect("cluster listed");
    assert_eq!(s.endpoints.len(), 1);
    s.endpoints[0].clone()
}

/// Polls `ListClusters` until `ok` holds for `cluster`'s endpoint (workers publish as they go).
async fn wait_for(
    c: &mut Client,
    cluster: &str,
    ok: impl Fn(&pb::EndpointState) -> bool,
) -> pb::EndpointState {
    let mut last = None;
    for _ in 0..100 {
        let e = endpoint(c, cluster).await;
        if ok(&e) {
            return e;
        }
        last = Some(e);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{cluster}: state never got there: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_clusters_reports_endpoint_state() {
    let good = upstream::http_echo("good").await;
    let bad = support::closed_port();
    let yaml = format!(
        r#"
admin: {{ grpc: "127.0.0.1:0" }}
listeners:
  - {{ name: web, address: "127.0.0.1:0", routes: web }}
routes:
  web:
    - domains: ["*"]
      routes:
        - {{ match: {{ prefix: /good/ }}, cluster: good, prefix_rewrite: / }}
        - {{ match: {{ prefix: /bad/ }}, cluster: bad }}
clusters:
  - {{ name: good, endpoints: ["{good}"] }}
  - {{ name: bad, endpoints: ["{bad}"], outlier: {{ consecutive_failures: 1, ejection_time: 60s }} }}
"#,
        good = good.addr
    );
    let app = support::start_workers(&yaml, 2);
    let addr = app.listener_addr("web").unwrap();
    let mut c = client(&app).await;

    // Nothing has happened yet: every number is zero, the worker count is there.
    let fresh = endpoint(&mut c, "good").await;
    assert_eq!(fresh.address, good.addr.to_string());
    assert_eq!(fresh.workers, 2);
    assert_eq!(
        (
            fresh.connects,
            fresh.connect_failures,
            fresh.ejected_workers
        ),
        (0, 0, 0)
    );

    // The closed port: every request fails (fresh connections, spread over both workers).
    for _ in 0..8 {
        let (status, _) = support::get(addr, "h", "/bad/x").await;
        assert!(status == 502 || status == 503, "status {status}");
    }
    let b = endpoint(&mut c, "bad").await;
    assert!(b.connect_failures >= 1, "{b:?}");
    assert_eq!(b.connects, 0, "{b:?}");
    assert!(
        (1..=2).contains(&b.ejected_workers),
        "ejected on the workers that saw a failure: {b:?}"
    );
    assert_eq!(b.workers, 2);

    // The healthy endpoint: connects succeed, connections go back to the pool.
    for _ in 0..8 {
        let (status, _) = support::get(addr, "h", "/good/x").await;
        assert_eq!(status, 200);
    }
    let g = wait_for(&mut c, "good", |e| e.idle_connections >= 1).await;
    assert!(g.connects >= 1, "{g:?}");
    assert!(g.connects <= 8, "pooled connections are reused: {g:?}");
    assert_eq!((g.connect_failures, g.ejected_workers), (0, 0), "{g:?}");
    assert_eq!(g.active_requests, 0, "{g:?}");

    // A slow request is in flight while it waits for the upstream.
    let slow = tokio::spawn(async move { support::get(addr, "h", "/good/delay/1500").await });
    let busy = wait_for(&mut c, "good", |e| e.active_requests == 1).await;
    assert_eq!(busy.connect_failures, 0);
    assert_eq!(slow.await.unwrap().0, 200);
    wait_for(&mut c, "good", |e| e.active_requests == 0).await;

    // The bad endpoint's failures were not counted against the good one, and vice versa.
    let b2 = endpoint(&mut c, "bad").await;
    assert_eq!((b2.connects, b2.connect_failures), (0, b.connect_failures));
    app.shutdown();
}
