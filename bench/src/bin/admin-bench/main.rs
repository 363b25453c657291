//! admin-bench: Shoal's admin API under measurement (bench/admin.sh runs it).
//!
//! Starts `shoal run` (2 workers, admin API, one HTTP/1.1 listener, this process's own
//! upstream), then:
//!
//! 1. `apply`: `Apply` transactions adding 1, 100 and 10,000 routes, each timed from sending
//!    the request to the reply (which comes after every worker acknowledged) and to the moment
//!    fresh connections have served the first and the last new route on *every* worker
//!    (SO_REUSEPORT spreads fresh connections; `GetStats` accepted-connection counts prove both
//!    workers took some). min / median / max over the repetitions.
//! 2. `traffic`: steady HTTP/1.1 load at a fixed rate through Shoal, in rounds of a phase
//!    without applies and a phase with an `Apply` every 10 ms (100/s, each changing the route
//!    the traffic uses): errors and latency percentiles per phase.
//!
//! Everything on 127.0.0.1; every phase is bounded in time; Shoal is stopped at the end.

mod applies;
mod http;
mod load;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;

use applies::{BenchError, Client};

#[derive(Parser)]
#[command(about = "Times Shoal's admin API: apply latency and traffic during applies")]
struct Args {
    /// The shoal binary.
    #[arg(long)]
    shoal: PathBuf,
    /// Directory for the config, state and Shoal's log (must exist).
    #[arg(long)]
    work_dir: PathBuf,
    /// Ports: admin gRPC = base, HTTP listener = base + 1, upstream = base + 2.
    #[arg(long, default_value_t = 19400)]
    base_port: u16,
    /// Shoal's worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Do not persist applies (no state_dir).
    #[arg(long)]
    no_state_dir: bool,
    /// Route counts added per timed Apply.
    #[arg(long, value_delimiter = ',', default_value = "1,100,10000")]
    sizes: Vec<usize>,
    /// Timed applies per size.
    #[arg(long, default_value_t = 7)]
    reps: usize,
    /// Request rate of the steady load (requests/s, all connections together).
    #[arg(long, default_value_t = 2000)]
    rate: u32,
    /// Keep-alive connections of the steady load.
    #[arg(long, default_value_t = 16)]
    conns: usize,
    /// Seconds per traffic phase.
    #[arg(long, default_value_t = 6)]
    phase_secs: u64,
    /// Rounds of (no applies, applies) phases.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Applies per second during the apply phases.
    #[arg(long, default_value_t = 100)]
    apply_rate: u32,
    /// Which parts: apply, traffic.
    #[arg(long, value_delimiter = ',', default_value = "apply,traffic")]
    parts: Vec<String>,
}

fn config(a: &Args) -> String {
    let state = if a.no_state_dir {
        String::new()
    } else {
        format!("state_dir: \"{}\"\n", a.work_dir.join("state").display())
    };
    let (grpc, web, up) = (a.base_port, a.base_port + 1, a.base_port + 2);
    format!(
        r#"# admin-bench (bench/admin.sh)
workers: {workers}
drain_timeout: 1s
{state}admin: {{ grpc: "127.0.0.1:{grpc}" }}
timeouts: {{ keepalive_idle: 300s }}
listeners:
  - {{ name: web, address: "127.0.0.1:{web}", protocol: http1, routes: {table} }}
routes:
  {table}:
    - domains: ["*"]
      routes:
        - {{ match: {{ prefix: / }}, cluster: up }}
    - domains: ["{apply_host}"]
      routes:
        - {{ match: {{ path: /base }}, direct_response: {{ status: 200, body: base }} }}
clusters:
  - {{ name: up, endpoints: ["127.0.0.1:{up}"], pool: {{ max_idle_per_endpoint: 256 }} }}
"#,
        workers = a.workers,
        table = applies::TABLE,
        apply_host = applies::APPLY_HOST,
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `p`-quantile (0..=1) of sorted durations.
fn quantile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Stops Shoal (SIGTERM, then SIGKILL after 5 s) when dropped.
struct Shoal(Child);

impl Drop for Shoal {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_for_admin(port: u16) -> Result<Client, BenchError> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match Client::connect(format!("http://127.0.0.1:{port}")).await {
            Ok(c) => return Ok(c.max_decoding_message_size(64 << 20)),
            Err(e) if Instant::now() > deadline => {
                return Err(BenchError::Check(format!("admin API never came up: {e}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn apply_part(a: &Args, c: &mut Client, web: SocketAddr) -> Result<(), BenchError> {
    println!(
        "== apply latency: {} workers, {} reps per size, state_dir: {}",
        a.workers, a.reps, !a.no_state_dir
    );
    println!(
        "{:>7} {:>28} {:>28} {:>10}",
        "routes", "reply ms (min/med/max)", "visible ms (min/med/max)", "check conns"
    );
    for &n in &a.sizes {
        let mut samples = Vec::new();
        for rep in 0..a.reps {
            samples.push(applies::timed_add(c, web, n.max(1), rep).await?);
        }
        let mut reply: Vec<Duration> = samples.iter().map(|s| s.reply).collect();
        let mut visible: Vec<Duration> = samples.iter().map(|s| s.visible).collect();
        reply.sort();
        visible.sort();
        let conns: usize = samples.iter().map(|s| s.check_conns).sum();
        let mmm = |v: &[Duration]| {
            format!(
                "{:.2} / {:.2} / {:.2}",
                ms(v[0]),
                ms(quantile(v, 0.5)),
                ms(v[v.len() - 1])
            )
        };
        println!(
            "{n:>7} {:>28} {:>28} {:>10.1}",
            mmm(&reply),
            mmm(&visible),
            conns as f64 / samples.len() as f64
        );
        println!(
            "RESULT apply routes={n} reps={} reply_ms_min={:.3} reply_ms_med={:.3} reply_ms_max={:.3} visible_ms_min={:.3} visible_ms_med={:.3} visible_ms_max={:.3}",
            samples.len(),
            ms(reply[0]),
            ms(quantile(&reply, 0.5)),
            ms(reply[reply.len() - 1]),
            ms(visible[0]),
            ms(quantile(&visible, 0.5)),
            ms(visible[visible.len() - 1]),
        );
    }
    Ok(())
}

struct Phase {
    name: String,
    load: load::Load,
    churn: Option<applies::Churn>,
}

fn report(p: &mut Phase) {
    p.load.latencies.sort();
    let l = &p.load;
    let q = |x| ms(quantile(&l.latencies, x));
    let mut line = format!(
        "{:<16} ok {:>7} errors {:>3} late {:>4} | p50 {:>6.3} p90 {:>6.3} p99 {:>6.3} p99.9 {:>7.3} max {:>7.3} ms",
        p.name,
        l.ok,
        l.errors,
        l.late,
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        ms(l.latencies.last().copied().unwrap_or_default())
    );
    if let Some(c) = &mut p.churn {
        c.latencies.sort();
        line += &format!(
            " | applies {} ({:.0}/s) failed {} apply p50 {:.2} p99 {:.2} max {:.2} ms",
            c.applies,
            c.applies as f64 / c.elapsed.as_secs_f64().max(1e-9),
            c.failures,
            ms(quantile(&c.latencies, 0.5)),
            ms(quantile(&c.latencies, 0.99)),
            ms(c.latencies.last().copied().unwrap_or_default())
        );
    }
    println!("{line}");
    if let Some(e) = &l.first_error {
        println!("  first request error: {e}");
    }
    if let Some(e) = p.churn.as_ref().and_then(|c| c.first_error.as_ref()) {
        println!("  first apply error: {e}");
    }
    println!(
        "RESULT traffic phase={} ok={} errors={} late={} p50_ms={:.3} p99_ms={:.3} p999_ms={:.3} max_ms={:.3} applies={} apply_failures={}",
        p.name.replace(' ', "_"),
        l.ok,
        l.errors,
        l.late,
        q(0.5),
        q(0.99),
        q(0.999),
        ms(l.latencies.last().copied().unwrap_or_default()),
        p.churn.as_ref().map_or(0, |c| c.applies),
        p.churn.as_ref().map_or(0, |c| c.failures),
    );
}

async fn traffic_part(a: &Args, web: SocketAddr) -> bool {
    let phase = Duration::from_secs(a.phase_secs);
    println!(
        "== traffic: {} req/s over {} keep-alive connections, {} s phases, {} rounds; applies at {}/s in the apply phases",
        a.rate, a.conns, a.phase_secs, a.rounds, a.apply_rate
    );
    // Warm-up: connections, pools, caches.
    let _ = load::run(web, "h", a.rate, a.conns, Duration::from_secs(1)).await;
    let mut phases = Vec::new();
    for round in 0..a.rounds {
        let base = load::run(web, "h", a.rate, a.conns, phase).await;
        let mut p = Phase {
            name: format!("quiet r{round}"),
            load: base,
            churn: None,
        };
        report(&mut p);
        phases.push(p);
        let stop = Arc::new(AtomicBool::new(false));
        let every = Duration::from_secs_f64(1.0 / f64::from(a.apply_rate.max(1)));
        // The applier runs on its own thread and runtime, so its gRPC work does not delay the
        // load client's tasks (they still share the 2 CPUs with it and with Shoal).
        // Its own connection too: a tonic channel does its I/O on the runtime that made it.
        let (port, flag) = (a.base_port, stop.clone());
        let churn = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("applier runtime");
            rt.block_on(async move {
                match wait_for_admin(port).await {
                    Ok(client) => applies::churn(client, flag, every).await,
                    Err(e) => applies::Churn {
                        failures: 1,
                        first_error: Some(e.to_string()),
                        ..Default::default()
                    },
                }
            })
        });
        let busy = load::run(web, "h", a.rate, a.conns, phase).await;
        stop.store(true, Ordering::Relaxed);
        let churn = churn.join().unwrap_or_default();
        let mut p = Phase {
            name: format!("applying r{round}"),
            load: busy,
            churn: Some(churn),
        };
        report(&mut p);
        phases.push(p);
    }
    // Per-round p99s: pooled samples let the noisiest round decide, the median over rounds
    // does not.
    let round_p99s = |with: bool| -> Vec<Duration> {
        let mut v: Vec<Duration> = phases
            .iter()
            .filter(|p| p.churn.is_some() == with)
            .map(|p| quantile(&p.load.latencies, 0.99))
            .collect();
        v.sort();
        v
    };
    let (rq, ra) = (round_p99s(false), round_p99s(true));
    let fmt = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.3}", ms(*d)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let med_ratio = ms(quantile(&ra, 0.5)) / ms(quantile(&rq, 0.5)).max(1e-9);
    println!(
        "per-round p99 ms, sorted: quiet [{}] applying [{}]; median {:.3} vs {:.3} ({:+.1}%)",
        fmt(&rq),
        fmt(&ra),
        ms(quantile(&rq, 0.5)),
        ms(quantile(&ra, 0.5)),
        (med_ratio - 1.0) * 100.0
    );
    println!(
        "RESULT traffic_rounds p99_quiet_median_ms={:.3} p99_applying_median_ms={:.3} ratio={med_ratio:.3}",
        ms(quantile(&rq, 0.5)),
        ms(quantile(&ra, 0.5))
    );
    // All quiet phases together against all apply phases together.
    let mut all = |with: bool| {
        let mut l = load::Load::default();
        let mut churn = applies::Churn::default();
        for p in phases.iter_mut().filter(|p| p.churn.is_some() == with) {
            l.ok += p.load.ok;
            l.errors += p.load.errors;
            l.late += p.load.late;
            l.latencies.append(&mut p.load.latencies);
            if let Some(c) = &mut p.churn {
                churn.applies += c.applies;
                churn.failures += c.failures;
                churn.elapsed += c.elapsed;
                churn.latencies.append(&mut c.latencies);
            }
        }
        Phase {
            name: if with { "applying all" } else { "quiet all" }.to_string(),
            load: l,
            churn: with.then_some(churn),
        }
    };
    let mut quiet = all(false);
    let mut busy = all(true);
    println!("-- all rounds");
    report(&mut quiet);
    report(&mut busy);
    let (p_quiet, p_busy) = (
        quantile(&quiet.load.latencies, 0.99),
        quantile(&busy.load.latencies, 0.99),
    );
    let ratio = p_busy.as_secs_f64() / p_quiet.as_secs_f64().max(1e-12);
    let errors = quiet.load.errors + busy.load.errors;
    println!(
        "RESULT traffic_summary errors={errors} p99_quiet_ms={:.3} p99_applying_ms={:.3} ratio={ratio:.3}",
        ms(p_quiet),
        ms(p_busy)
    );
    println!(
        "targets: zero failed requests: {}; p99 during applies within 10% of quiet: pooled {} ({:+.1}%), median of rounds {} ({:+.1}%)",
        if errors == 0 { "MET" } else { "NOT MET" },
        if ratio <= 1.10 { "MET" } else { "NOT MET" },
        (ratio - 1.0) * 100.0,
        if med_ratio <= 1.10 { "MET" } else { "NOT MET" },
        (med_ratio - 1.0) * 100.0
    );
    errors == 0
}

async fn bench(a: Args) -> Result<bool, BenchError> {
    let cfg = a.work_dir.join("config.yaml");
    std::fs::write(&cfg, config(&a)).map_err(BenchError::Io)?;
    let log = std::fs::File::create(a.work_dir.join("shoal.log")).map_err(BenchError::Io)?;
    http::upstream(SocketAddr::from(([127, 0, 0, 1], a.base_port + 2))).await?;
    let child = Command::new(&a.shoal)
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(BenchError::Io)?;
    let _shoal = Shoal(child);
    let mut c = wait_for_admin(a.base_port).await?;
    let web = SocketAddr::from(([127, 0, 0, 1], a.base_port + 1));
    // The listener is up once /base answers.
    let mut conn = http::Conn::connect(web).await?;
    let (status, _) = conn.get(applies::APPLY_HOST, "/base").await?;
    if status != 200 {
        return Err(BenchError::Check(format!("/base answered {status}")));
    }
    let mut ok = true;
    if a.parts.iter().any(|p| p == "apply") {
        apply_part(&a, &mut c, web).await?;
    }
    if a.parts.iter().any(|p| p == "traffic") {
        ok &= traffic_part(&a, web).await;
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(bench(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("admin-bench: {e}");
            ExitCode::from(2)
        }
    }
}
