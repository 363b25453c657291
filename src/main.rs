//! `shoal`: the command line. Parses flags, sets up logging and signals, and runs [`shoal::App`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

mod cli;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "shoal",
    version,
    about = "Shoal: a thread-per-core service-mesh data plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy. Without --config, a built-in demo (listener + in-process upstream).
    Run {
        /// YAML config file (see README "Config reference"). SIGHUP re-reads it.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Override `workers` (one per core by default).
        #[arg(long)]
        workers: Option<usize>,
        /// Do not pin workers to cores.
        #[arg(long)]
        no_pin: bool,
        /// Demo listener address (only without --config).
        #[arg(long, default_value = "127.0.0.1:8080")]
        demo_listen: SocketAddr,
    },
    /// Check a config file; prints every error with its field path.
    Validate { file: PathBuf },
    /// Talk to a running shoal's admin API: get, apply -f OPS.yaml, watch.
    Ctl(cli::ctl::Ctl),
    /// Offline certificate authority work (init, issue, inspect, rotate-root, bundle).
    #[command(subcommand)]
    Ca(cli::ca::CaCommand),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            workers,
            no_pin,
            demo_listen,
        } => run(config, workers, !no_pin, demo_listen),
        Command::Ca(cmd) => cli::ca::run(cmd),
        Command::Ctl(ctl) => return cli::ctl::run(ctl),
        Command::Validate { file } => match shoal::validate_file(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                Ok(())
            }
            Err(e) => {
                eprintln!("{}: {e:#}", file.display());
                return ExitCode::from(1);
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

const DEMO_ADMIN: &str = "127.0.0.1:15000";

/// The demo enables the admin API on 127.0.0.1:15000 unless that port is taken.
fn demo_admin() -> Option<SocketAddr> {
    let addr: SocketAddr = DEMO_ADMIN.parse().ok()?;
    match std::net::TcpListener::bind(addr) {
        Ok(probe) => {
            drop(probe);
            Some(addr)
        }
        Err(e) => {
            tracing::warn!(
                "{DEMO_ADMIN} is not available ({e}): the demo runs without the admin API"
            );
            None
        }
    }
}

fn run(
    config: Option<PathBuf>,
    workers: Option<usize>,
    pin: bool,
    demo_listen: SocketAddr,
) -> Result<()> {
    let mut signals =
        Signals::new([SIGHUP, SIGINT, SIGTERM]).context("installing signal handlers")?;
    let (mut spec, demo) = match &config {
        Some(path) => (shoal::validate_file(path)?, None),
        None => {
            let upstream =
                shoal::demo::start("127.0.0.1:0".parse()?).context("starting the demo upstream")?;
            (
                shoal::demo_config(demo_listen, upstream, demo_admin())?,
                Some(upstream),
            )
        }
    };
    if workers.is_some() {
        spec.workers = workers;
    }
    let start = |spec| {
        shoal::App::start(shoal::AppOptions {
            spec,
            config_path: config.clone(),
            pin,
        })
    };
    let app = match start(spec.clone()) {
        // The demo's admin port was free when probed but taken since: run without it.
        Err(e) if demo.is_some() && format!("{e:#}").contains("admin.grpc: cannot listen") => {
            tracing::warn!("{e:#}: the demo runs without the admin API");
            spec.admin = None;
            start(spec)?
        }
        other => other?,
    };
    tracing::info!(
        workers = app.drivers().len(),
        driver = app.drivers().first().map(|d| d.name()).unwrap_or("-"),
        "shoal running"
    );
    if let Some(upstream) = demo {
        let addr = app.listener_addr("demo").unwrap_or(demo_listen);
        println!("Shoal demo: listener http://{addr}/ -> demo upstream {upstream}");
        println!("  try: curl -i http://{addr}/hello");
        println!("       curl -i http://{addr}/healthz");
        match app.admin_addr() {
            Some(a) => println!("  admin API (gRPC): {a}   try: shoal ctl get"),
            None => println!("  admin API off: {DEMO_ADMIN} is taken"),
        }
        println!("Ctrl-C to stop.");
    }
    for signal in signals.forever() {
        match signal {
            SIGHUP => match app.reload() {
                Ok(v) => tracing::info!(version = v, "config reloaded"),
                Err(e) => tracing::error!("reload failed, keeping the running config: {e:#}"),
            },
            _ => break,
        }
    }
    app.shutdown();
    Ok(())
}
