//! Route lookup in a virtual host of 10 and of 10,000 routes: the compiled index
//! (`VirtualHost::find`, what the workers use) against the linear first-match scan
//! (`VirtualHost::find_linear`, the reference).
//!
//! Tables are realistic: `prefix: /svc-N/` routes, every tenth (N ending in 5) an exact
//! `path: /svc-N/health`,
//! three regexes spread through the table, and a `prefix: /` catch-all at the end. Requests hit
//! the first route (`hit_early`), the last service prefix (`hit_late`), the last exact path
//! (`hit_late_exact`) or nothing but the catch-all (`miss_to_catch_all`). The linear scan
//! evaluates every regex before the hit; the index only those whose literal prefix
//! (`/static-K/`) the path starts with, so none here.
//!
//! `bench/route-lookup.sh` runs this and prints the 10k/10 ratios from criterion's estimates.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use shoal_dataplane::config::ConfigSpec;
use shoal_dataplane::route::{RequestHead, VirtualHost};
use shoal_dataplane::snapshot::{Snapshot, compile};

/// A config with one route table `t`, one virtual host `*` of `n` routes (n >= 5).
fn config(n: usize) -> String {
    let mut y = String::from(
        "clusters:\n  - name: a\n    endpoints: [\"127.0.0.1:9001\"]\nroutes:\n  t:\n    - domains: [\"*\"]\n      routes:\n",
    );
    let services = n - 4;
    let regex_at = [services / 4, services / 2, 3 * services / 4];
    let mut regexes = 0;
    for i in 0..services {
        if regex_at.contains(&i) && regexes < 3 {
            y += &format!(
                "        - {{ match: {{ regex: \"/static-{regexes}/[a-z0-9]+\\\\.(css|js|png)\" }}, cluster: a }}\n"
            );
            regexes += 1;
        }
        if i % 10 == 5 {
            y += &format!("        - {{ match: {{ path: /svc-{i}/health }}, cluster: a }}\n");
        } else {
            y += &format!("        - {{ match: {{ prefix: /svc-{i}/ }}, cluster: a }}\n");
        }
    }
    while regexes < 3 {
        y += &format!("        - {{ match: {{ regex: \"/static-{regexes}/.*\" }}, cluster: a }}\n");
        regexes += 1;
    }
    y += "        - { match: { prefix: / }, cluster: a }\n";
    y
}

fn snapshot(n: usize) -> Snapshot {
    let spec = ConfigSpec::from_yaml(&config(n)).expect("bench config parses");
    let snap = compile(&spec, None).expect("bench config compiles");
    assert_eq!(snap.route_tables["t"].vhost("x").unwrap().routes.len(), n);
    snap
}

/// (case, path, expected route index) for a table of `n` routes.
fn cases(n: usize) -> Vec<(&'static str, String, usize)> {
    let services = n - 4;
    let last_prefix = (0..services).rev().find(|i| i % 10 != 5).unwrap();
    let last_exact = (0..services).rev().find(|i| i % 10 == 5).unwrap();
    vec![
        ("hit_early", "/svc-0/api/v1/users".to_string(), 0),
        (
            "hit_late",
            format!("/svc-{last_prefix}/api/v1/users"),
            n - 3,
        ),
        ("hit_late_exact", format!("/svc-{last_exact}/health"), n - 2),
        ("miss_to_catch_all", "/nothing/here".to_string(), n - 1),
    ]
}

fn bench(c: &mut Criterion) {
    let headers: &[(&str, &str)] = &[("user-agent", "bench"), ("accept", "*/*")];
    for n in [10usize, 10_000] {
        let snap = snapshot(n);
        let vhost: &VirtualHost = snap.route_tables["t"].vhost("example.com").unwrap();
        let mut group = c.benchmark_group(format!("route_lookup/{n}"));
        for (case, path, want) in cases(n) {
            let req = RequestHead {
                method: "GET",
                host: "example.com",
                path: &path,
                headers,
                peer: None,
            };
            let found = vhost.find(&req).map(|r| r.id.to_string());
            assert_eq!(
                found,
                vhost.find_linear(&req).map(|r| r.id.to_string()),
                "{case}"
            );
            assert_eq!(found, Some(format!("t[0].routes[{want}]")), "{case}");
            group.bench_with_input(BenchmarkId::new("index", case), &req, |b, req| {
                b.iter(|| black_box(vhost.find(black_box(req))).is_some())
            });
            group.bench_with_input(BenchmarkId::new("linear", case), &req, |b, req| {
                b.iter(|| black_box(vhost.find_linear(black_box(req))).is_some())
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
