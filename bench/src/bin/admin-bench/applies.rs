//! The admin side of the bench: `Apply` transactions that add N routes (timed until the reply
//! and until fresh connections on every worker serve the new routes), and a steady stream of
//! applies that each change the route the traffic uses.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shoal_proto::admin::v1 as pb;
use shoal_proto::admin::v1::admin_service_client::AdminServiceClient;
use tonic::transport::Channel;

use crate::http::Conn;

pub type Client = AdminServiceClient<Channel>;

/// The route table and virtual host (`apply.bench`) the timed applies add routes to.
pub const TABLE: &str = "bench";
pub const APPLY_VHOST: u32 = 1;
pub const APPLY_HOST: &str = "apply.bench";

/// Fresh connections tried at most to see both workers serve a new route.
const MAX_CHECK_CONNS: usize = 64;

fn direct_route(path: String, body: String) -> pb::Route {
    pb::Route {
        r#match: Some(pb::RouteMatch {
            path: Some(path),
            ..Default::default()
        }),
        action: Some(pb::route::Action::DirectResponse(pb::DirectResponse {
            status: 200,
            body,
        })),
        ..Default::default()
    }
}

fn upsert(vhost: u32, index: Option<u32>, route: pb::Route) -> pb::Op {
    pb::Op {
        op: Some(pb::op::Op::UpsertRoute(pb::UpsertRoute {
            table: TABLE.into(),
            virtual_host: vhost,
            index,
            route: Some(route),
        })),
    }
}

fn delete(vhost: u32, index: u32) -> pb::Op {
    pb::Op {
        op: Some(pb::op::Op::DeleteRoute(pb::DeleteRoute {
            table: TABLE.into(),
            virtual_host: vhost,
            index,
        })),
    }
}

async fn apply(c: &mut Client, ops: Vec<pb::Op>) -> Result<u64, tonic::Status> {
    let r = c
        .apply(pb::ApplyRequest {
            expected_version: None,
            ops,
            dry_run: false,
        })
        .await?;
    Ok(r.into_inner().version)
}

/// Accepted connections per worker.
async fn accepted(c: &mut Client) -> Result<Vec<u64>, tonic::Status> {
    let s = c.get_stats(pb::GetStatsRequest {}).await?.into_inner();
    Ok(s.workers.iter().map(|w| w.accepted_connections).collect())
}

/// One timed transaction.
pub struct Sample {
    /// From sending `Apply` to its reply (every worker acknowledged the new snapshot).
    pub reply: Duration,
    /// From sending `Apply` until fresh connections served the first and last new route on
    /// every worker.
    pub visible: Duration,
    /// Fresh connections the check needed.
    pub check_conns: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("admin API: {0}")]
    Admin(#[from] tonic::Status),
    #[error("HTTP check: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Check(String),
}

/// Adds `n` routes (`/a/<n>/<rep>/<i>`, direct responses) in one `Apply`, times it, checks them
/// through `web`, then deletes them again (untimed).
pub async fn timed_add(
    c: &mut Client,
    web: SocketAddr,
    n: usize,
    rep: usize,
) -> Result<Sample, BenchError> {
    let path = |i: usize| format!("/a/{n}/{rep}/{i}");
    let body = |i: usize| format!("{n}-{rep}-{i}");
    let ops: Vec<pb::Op> = (0..n)
        .map(|i| upsert(APPLY_VHOST, None, direct_route(path(i), body(i))))
        .collect();
    let before = accepted(c).await?;
    let t0 = Instant::now();
    apply(c, ops).await?;
    let reply = t0.elapsed();
    let probes = [(path(0), body(0)), (path(n - 1), body(n - 1))];
    let mut check_conns = 0;
    loop {
        for (p, b) in &probes {
            check_conns += 1;
            let mut conn = Conn::connect(web).await?;
            let (status, got) = conn.get(APPLY_HOST, p).await?;
            if status != 200 || got != b.as_bytes() {
                return Err(BenchError::Check(format!(
                    "{p}: status {status}, body {:?} after the Apply reply",
                    String::from_utf8_lossy(&got)
                )));
            }
        }
        let now = accepted(c).await?;
        if now.len() == before.len() && now.iter().zip(&before).all(|(a, b)| a > b) {
            break;
        }
        if check_conns >= MAX_CHECK_CONNS {
            return Err(BenchError::Check(format!(
                "{check_conns} fresh connections did not reach every worker: accepted {before:?} -> {now:?}"
            )));
        }
    }
    let visible = t0.elapsed();
    // Back to the single base route, last index first (no shifting).
    let undo: Vec<pb::Op> = (1..=n as u32)
        .rev()
        .map(|i| delete(APPLY_VHOST, i))
        .collect();
    apply(c, undo).await?;
    Ok(Sample {
        reply,
        visible,
        check_conns,
    })
}

/// What the churn task did.
#[derive(Default)]
pub struct Churn {
    pub applies: usize,
    pub failures: usize,
    pub first_error: Option<String>,
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

/// Until `stop`: every `every`, an `Apply` replacing route 0 of the `*` virtual host (the one
/// the traffic uses) with the same forward plus a request header `x-gen: <n>`.
pub async fn churn(mut c: Client, stop: Arc<AtomicBool>, every: Duration) -> Churn {
    let mut out = Churn::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = Instant::now();
    let mut generation = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        generation += 1;
        let route = pb::Route {
            r#match: Some(pb::RouteMatch {
                prefix: Some("/".into()),
                ..Default::default()
            }),
            action: Some(pb::route::Action::Cluster("up".into())),
            request_headers: Some(pb::HeaderOps {
                add: HashMap::from([("x-gen".to_string(), generation.to_string())]),
                remove: Vec::new(),
            }),
            ..Default::default()
        };
        let t = Instant::now();
        match apply(&mut c, vec![upsert(0, Some(0), route)]).await {
            Ok(_) => {
                out.applies += 1;
                out.latencies.push(t.elapsed());
            }
            Err(e) => {
                out.failures += 1;
                out.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    out.elapsed = start.elapsed();
    out
}
