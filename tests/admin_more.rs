//! The admin API, continued: `Watch`, persistence across a restart, the loopback-only rule and
//! `shoal ctl` (the built binary) exit codes.

use std::process::Command;

use shoal::{App, AppOptions};
use shoal_admin::proto::admin::v1 as pb;

use crate::admin::{apply, client, cluster_op, config, route_to};
use crate::support::{self, upstream};

/// The version and config persisted in `state` (read the way a restart reads them).
fn persisted(state: &std::path::Path) -> (u64, shoal_dataplane::config::ConfigSpec) {
    shoal_dataplane::snapshot::StateFile::new(state)
        .load()
        .expect("state file reads")
        .expect("a config was persisted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_every_version_in_order() {
    let a = upstream::http_echo("a").await;
    let app = support::start(&config(a.addr, a.addr, ""));
    let (mut c, mut w) = (client(&app).await, client(&app).await);
    let mut stream = w
        .watch(pb::WatchRequest { from_version: 0 })
        .await
        .unwrap()
        .into_inner();
    // The start is the first event, with the full config.
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.version, 1);
    assert!(first.full);
    assert_eq!(first.config.unwrap().clusters.len(), 2);
    let mut sent = Vec::new();
    for i in 0..10 {
        let op = if i % 2 == 0 {
            cluster_op(&format!("c{i}"), "127.0.0.1:9")
        } else {
            route_to(if i % 4 == 1 { "b" } else { "a" })
        };
        let r = c.apply(apply(vec![op.clone()], None, false)).await.unwrap();
        sent.push((r.into_inner().version, op));
    }
    // A rejected transaction produces no event.
    assert!(
        c.apply(apply(vec![route_to("nope")], None, false))
            .await
            .is_err()
    );
    for (version, op) in &sent {
        let e = tokio::time::timeout(std::time::Duration::from_secs(5), stream.message())
            .await
            .expect("event in time")
            .unwrap()
            .unwrap();
        assert_eq!(e.version, *version);
        assert!(!e.full);
        assert_eq!(e.ops.len(), 1);
        // Sent back as the server stored it (defaults filled in), so compare what was asked.
        match (&e.ops[0].op, &op.op) {
            (Some(pb::op::Op::UpsertCluster(got)), Some(pb::op::Op::UpsertCluster(want))) => {
                assert_eq!(got.name, want.name)
            }
            (Some(pb::op::Op::UpsertRoute(got)), Some(pb::op::Op::UpsertRoute(want))) => {
                assert_eq!(
                    got.route.as_ref().unwrap().action,
                    want.route.as_ref().unwrap().action
                )
            }
            other => panic!("unexpected op {other:?}"),
        }
    }
    let last = sent.last().unwrap().0;

    // A watcher starting mid-history gets exactly the versions after its from_version.
    let mut w2 = client(&app).await;
    let mut s2 = w2
        .watch(pb::WatchRequest {
            from_version: last - 3,
        })
        .await
        .unwrap()
        .into_inner();
    for v in last - 2..=last {
        assert_eq!(s2.message().await.unwrap().unwrap().version, v);
    }

    // Push the start out of the kept history: a watcher from version 1 gets the full config
    // at the current version first, then live events.
    // (The route points at b now; each apply flips it, so each is a real change.)
    for i in 0..shoal_admin::journal::HISTORY as u64 {
        let target = if i % 2 == 0 { "a" } else { "b" };
        c.apply(apply(vec![route_to(target)], None, false))
            .await
            .unwrap();
    }
    let now = last + shoal_admin::journal::HISTORY as u64;
    let mut s3 = w2
        .watch(pb::WatchRequest { from_version: 1 })
        .await
        .unwrap()
        .into_inner();
    let resync = s3.message().await.unwrap().unwrap();
    assert_eq!(resync.version, now);
    assert!(resync.full);
    assert!(
        resync
            .config
            .unwrap()
            .clusters
            .iter()
            .any(|k| k.name == "c8")
    );
    c.apply(apply(vec![route_to("a")], None, false))
        .await
        .unwrap();
    assert_eq!(s3.message().await.unwrap().unwrap().version, now + 1);
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_applied_config() {
    let a = upstream::http_echo("a").await;
    let b = upstream::http_echo("b").await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let yaml = config(
        a.addr,
        b.addr,
        &format!("state_dir: \"{}\"", state.display()),
    );
    let app = support::start(&yaml);
    let mut c = client(&app).await;
    let r = c
        .apply(apply(
            vec![cluster_op("c", &b.addr.to_string()), route_to("c")],
            None,
            false,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.version, 2);
    // Persisted before the reply.
    let (on_disk, _) = persisted(&state);
    assert_eq!(on_disk, 2);
    drop(c);
    app.shutdown();

    // A crash in the middle of a later write left a torn temp file behind: it is ignored.
    std::fs::write(
        state.join(".config.yaml.tmp-1-3"),
        "version: 3\nconfig: {listen",
    )
    .unwrap();
    // The same config file again: the persisted config wins, with its version.
    let app = support::start(&yaml);
    let mut c = client(&app).await;
    let got = c
        .get_config(pb::GetConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.version, 2);
    let config = got.config.unwrap();
    assert!(config.clusters.iter().any(|k| k.name == "c"), "{config:?}");
    let addr = app.listener_addr("web").unwrap();
    let (_, headers, _) =
        support::request(addr, http::Method::GET, "h", "/", &[], Vec::new()).await;
    assert_eq!(headers["x-upstream"], "b");
    // Versions continue from the persisted one.
    let r = c
        .apply(apply(vec![route_to("a")], Some(2), false))
        .await
        .unwrap();
    assert_eq!(r.into_inner().version, 3);
    app.shutdown();
}

#[test]
fn a_non_loopback_admin_address_refuses_to_start() {
    let spec = support::spec("admin: { grpc: \"0.0.0.0:0\" }");
    let err = App::start(AppOptions {
        spec,
        config_path: None,
        pin: false,
    })
    .err()
    .expect("refused");
    let text = format!("{err:#}");
    assert!(
        text.contains("admin.grpc") && text.contains("mTLS"),
        "{text}"
    );
}

const BIN: &str = env!("CARGO_BIN_EXE_shoal");

fn ctl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("ctl")
        .args(args)
        .output()
        .expect("run shoal ctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shoal_ctl_exit_codes() {
    let a = upstream::http_echo("a").await;
    let app = support::start(&config(a.addr, a.addr, ""));
    let addr = app.admin_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let good = write(
        "good.yaml",
        "- upsert_cluster: { name: c, endpoints: [\"127.0.0.1:9\"] }\n\
         - upsert_route: { table: web, index: 0, route: { match: { prefix: / }, cluster: c } }\n",
    );
    let bad = write(
        "bad.yaml",
        "- upsert_cluster: { name: d, endpoints: [\"nowhere\"] }\n",
    );

    let (code, out, err) = ctl(&["--addr", &addr, "get"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("# version 1\n") && out.contains("name: web"),
        "{out}"
    );

    let (code, out, err) = ctl(&["--addr", &addr, "apply", "-f", &good, "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("dry run") && out.contains("+ cluster c"),
        "{out}"
    );
    assert_eq!(app.store().version(), 1);

    let (code, out, err) = ctl(&[
        "--addr",
        &addr,
        "apply",
        "-f",
        &good,
        "--expect-version",
        "1",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("applied: version 2"), "{out}");
    assert_eq!(app.store().version(), 2);

    // Stale version: rejected, nothing applied.
    let (code, _, err) = ctl(&[
        "--addr",
        &addr,
        "apply",
        "-f",
        &good,
        "--expect-version",
        "1",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("config version is 2, not 1"), "{err}");

    let (code, _, err) = ctl(&["--addr", &addr, "apply", "-f", &bad]);
    assert_eq!(code, 1);
    assert!(
        err.contains("op 0: clusters[3].endpoints[0]") && err.contains("nowhere"),
        "{err}"
    );
    assert_eq!(app.store().version(), 2);

    // `watch` prints one line per version, from the start, and keeps following.
    let mut watch = Command::new(BIN)
        .args(["ctl", "--addr", &addr, "watch"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(watch.stdout.take().unwrap()));
    let first = lines.next().unwrap().unwrap();
    assert!(
        first.starts_with("version 1: full config (1 listeners"),
        "{first}"
    );
    let second = lines.next().unwrap().unwrap();
    assert_eq!(
        second,
        "version 2: upsert_cluster c; upsert_route web virtual_host 0 index 0"
    );
    watch.kill().unwrap();
    watch.wait().unwrap();

    let closed = support::closed_port().to_string();
    let (code, _, err) = ctl(&["--addr", &closed, "get"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot reach"), "{err}");
    app.shutdown();
}

/// What `grpcurl` relies on: server reflection lists the admin service and serves its file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_reflection_describes_the_admin_api() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let a = upstream::http_echo("a").await;
    let app = support::start(&config(a.addr, a.addr, ""));
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", app.admin_addr().unwrap()))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut c = ServerReflectionClient::new(channel);
    let ask = |m: MessageRequest| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    };
    let reqs = vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(
            "shoal.admin.v1.AdminService".into(),
        )),
    ];
    let mut replies = c
        .server_reflection_info(tokio_stream::iter(reqs))
        .await
        .unwrap()
        .into_inner();
    match replies.message().await.unwrap().unwrap().message_response {
        Some(MessageResponse::ListServicesResponse(l)) => {
            let names: Vec<&str> = l.service.iter().map(|s| s.name.as_str()).collect();
            assert!(names.contains(&"shoal.admin.v1.AdminService"), "{names:?}");
            assert!(!names.contains(&"shoal.ca.v1.CaService"), "{names:?}");
        }
        other => panic!("{other:?}"),
    }
    match replies.message().await.unwrap().unwrap().message_response {
        Some(MessageResponse::FileDescriptorResponse(f)) => {
            assert!(!f.file_descriptor_proto.is_empty())
        }
        other => panic!("{other:?}"),
    }
    app.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_endpoints() {
    use tokio::io::AsyncWriteExt;

    let a = upstream::http_echo("a").await;
    let yaml = config(a.addr, a.addr, "").replace(
        "admin: { grpc: \"127.0.0.1:0\" }",
        "admin: { grpc: \"127.0.0.1:0\", metrics: \"127.0.0.1:0\" }",
    );
    let app = support::start(&yaml);
    let m = app.metrics_addr().expect("metrics endpoint runs");
    let get = |path: &'static str| async move {
        let req = format!("GET {path} HTTP/1.1\r\nhost: m\r\n\r\n");
        let out = support::raw_exchange(m, req.as_bytes(), std::time::Duration::from_secs(5)).await;
        String::from_utf8(out).unwrap()
    };
    assert!(get("/healthz").await.starts_with("HTTP/1.1 200 OK"));
    assert!(get("/readyz").await.starts_with("HTTP/1.1 200 OK"));
    assert!(get("/nope").await.starts_with("HTTP/1.1 404"));

    // One client connection held open after a request: counted as active on worker 0.
    let web = app.listener_addr("web").unwrap();
    let mut held = tokio::net::TcpStream::connect(web).await.unwrap();
    held.write_all(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(support::read_response(&mut held).await.0, 200);
    let text = get("/metrics").await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    for line in [
        "# TYPE shoal_config_version gauge",
        "\nshoal_config_version 1\n",
        "\nshoal_listeners 1\n",
        "\nshoal_workers 1\n",
        "\nshoal_active_connections{worker=\"0\"} 1\n",
        "\nshoal_accepted_connections_total{worker=\"0\"} 1\n",
        "\nshoal_http_requests_total{worker=\"0\"} 1\n",
        "\nshoal_http_responses_total{worker=\"0\",class=\"2xx\"} 1\n",
        "\nshoal_http_responses_total{worker=\"0\",class=\"5xx\"} 0\n",
        "\nshoal_upstream_connects_total{worker=\"0\"} 1\n",
        "\nshoal_upstream_connect_failures_total{worker=\"0\"} 0\n",
    ] {
        assert!(text.contains(line), "{line:?} missing in:\n{text}");
    }
    // The same numbers over gRPC.
    let stats = client(&app)
        .await
        .get_stats(pb::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.version, 1);
    assert_eq!(stats.workers.len(), 1);
    assert_eq!(
        (
            stats.workers[0].active_connections,
            stats.workers[0].accepted_connections
        ),
        (1, 1)
    );
    drop(held);
    // The close is seen by the worker shortly after.
    let start = std::time::Instant::now();
    loop {
        let text = get("/metrics").await;
        if text.contains("\nshoal_active_connections{worker=\"0\"} 0\n") {
            break;
        }
        assert!(
            start.elapsed().as_secs() < 5,
            "connection never closed:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The version follows applies.
    let mut c = client(&app).await;
    c.apply(apply(vec![route_to("b")], None, false))
        .await
        .unwrap();
    assert!(get("/metrics").await.contains("\nshoal_config_version 2\n"));
    app.shutdown();
}

/// A SIGHUP reload goes through the same writer: persisted, and a full event on the watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_is_persisted_and_watched() {
    let a = upstream::http_echo("a").await;
    let b = upstream::http_echo("b").await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("shoal.yaml");
    let yaml = config(
        a.addr,
        b.addr,
        &format!("state_dir: \"{}\"", state.display()),
    );
    std::fs::write(&file, &yaml).unwrap();
    let app = App::start(AppOptions {
        spec: support::spec(&yaml),
        config_path: Some(file.clone()),
        pin: false,
    })
    .unwrap();
    let mut w = client(&app).await;
    let mut stream = w
        .watch(pb::WatchRequest { from_version: 1 })
        .await
        .unwrap()
        .into_inner();
    std::fs::write(&file, yaml.replace("cluster: a }", "cluster: b }")).unwrap();
    assert_eq!(app.reload().unwrap(), 2);
    let e = stream.message().await.unwrap().unwrap();
    assert_eq!((e.version, e.full, e.ops.len()), (2, true, 0));
    let table = &e.config.unwrap().route_tables[0];
    assert_eq!(
        table.virtual_hosts[0].routes[0].action,
        Some(pb::route::Action::Cluster("b".into()))
    );
    let (on_disk, spec) = persisted(&state);
    assert_eq!(on_disk, 2);
    assert_eq!(
        spec.routes["web"][0].routes[0].cluster.as_deref(),
        Some("b")
    );
    app.shutdown();
}
