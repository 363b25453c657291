//! `shoal ctl`: a gRPC client of the admin API (`get`, `apply`, `watch`) and of the CA service
//! (`ca sign`, `ca bundle`, `ca rotate-root`).
//!
//! A non-loopback admin API is reached over mTLS: `--ca-bundle` (the server's trust bundle)
//! with `--cert`/`--key` (a client SVID whose ID is in the server's `admin.allow`).
//!
//! Exit codes: 0 ok, 1 rejected (the reasons are printed) or a bad ops file, 2 the admin API is
//! unreachable.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use prost::Message;
use shoal_admin::OpSpec;
use shoal_admin::auth::client::{ALPN, tls_channel};
use shoal_admin::proto::admin::v1 as pb;
use shoal_admin::proto::admin::v1::admin_service_client::AdminServiceClient;
use shoal_admin::proto::ca::v1 as ca_pb;
use shoal_admin::proto::ca::v1::ca_service_client::CaServiceClient;
use shoal_dataplane::tls::{Credentials, ServerId, spiffe_client_config};
use tonic::transport::Channel;
use tonic::{Code, Status};

#[derive(Args)]
pub struct Ctl {
    /// The admin API address (`admin.grpc` of the running shoal).
    #[arg(long, global = true, default_value = "127.0.0.1:15000")]
    addr: String,
    /// Reach a non-loopback admin API over TLS, verifying it against this PEM trust bundle
    /// (e.g. from `shoal ca bundle`).
    #[arg(long, global = true)]
    ca_bundle: Option<PathBuf>,
    /// The client SVID (PEM chain, e.g. from `shoal ca issue`) presented with --ca-bundle; its
    /// SPIFFE ID must be in the server's `admin.allow`.
    #[arg(long, global = true, requires = "key", requires = "ca_bundle")]
    cert: Option<PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(long, global = true, requires = "cert")]
    key: Option<PathBuf>,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Subcommand)]
enum CtlCommand {
    /// Print the running config (YAML) and its version.
    Get,
    /// Apply a transaction: a YAML list of ops (see README "Admin API"), all or nothing.
    Apply {
        /// The ops file.
        #[arg(short = 'f', long)]
        file: PathBuf,
        /// Apply only if this is the running version (compare-and-swap).
        #[arg(long)]
        expect_version: Option<u64>,
        /// Validate and print the diff; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print every applied version as it happens (after --from).
    Watch {
        #[arg(long, default_value_t = 0)]
        from: u64,
    },
    /// The CA service of a running shoal (served when its state_dir holds a CA).
    #[command(subcommand)]
    Ca(CtlCa),
}

#[derive(Subcommand)]
enum CtlCa {
    /// Generate a key here, have the CA sign a CSR for --id, write the chain and the key (0600).
    Sign {
        /// SPIFFE ID, e.g. spiffe://example.org/ns/default/sa/web.
        #[arg(long)]
        id: String,
        /// Requested lifetime (capped by the CA's policy).
        #[arg(long)]
        ttl: Option<String>,
        #[arg(long)]
        out_cert: PathBuf,
        #[arg(long)]
        out_key: PathBuf,
    },
    /// Print the trust bundle (PEM).
    Bundle,
    /// Start a root rotation: the new root is trusted at once and issues after the activation
    /// delay; the old one stays trusted while its leaves live.
    RotateRoot {
        /// How long the new root is only trusted before it issues (e.g. `5m`; `0s`: at once).
        /// Default: the CA's (2m).
        #[arg(long)]
        activation_delay: Option<String>,
    },
}

const OK: u8 = 0;
const REJECTED: u8 = 1;
const UNREACHABLE: u8 = 2;

pub fn run(ctl: Ctl) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(REJECTED);
        }
    };
    ExitCode::from(rt.block_on(async move {
        // Read the ops before connecting: a bad file is the caller's problem, not the server's.
        let ops = match &ctl.command {
            CtlCommand::Apply { file, .. } => match read_ops(file) {
                Ok(ops) => ops,
                Err(e) => {
                    eprintln!("error: {e}");
                    return REJECTED;
                }
            },
            _ => Vec::new(),
        };
        let channel = match connect(&ctl).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cannot reach the admin API at {}: {e}", ctl.addr);
                return UNREACHABLE;
            }
        };
        let mut client = AdminServiceClient::new(channel.clone());
        let result = match ctl.command {
            CtlCommand::Ca(cmd) => ca(CaServiceClient::new(channel), cmd).await,
            CtlCommand::Get => get(&mut client).await,
            CtlCommand::Apply {
                expect_version,
                dry_run,
                ..
            } => apply(&mut client, ops, expect_version, dry_run).await,
            CtlCommand::Watch { from } => watch(&mut client, from).await,
        };
        match result {
            Ok(()) => OK,
            Err(s) => report(&ctl.addr, &s),
        }
    }))
}

fn read_ops(file: &std::path::Path) -> Result<Vec<pb::Op>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let ops: Vec<OpSpec> =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(ops.iter().map(pb::Op::from).collect())
}

async fn connect(ctl: &Ctl) -> Result<Channel, String> {
    if let Some(bundle) = &ctl.ca_bundle {
        return connect_tls(ctl, bundle).await;
    }
    let addr = &ctl.addr;
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let channel = Channel::from_shared(uri)
        .map_err(|e| format!("bad address: {e}"))?
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .map_err(|e| error_chain(&e))?;
    Ok(channel)
}

/// mTLS (or TLS without --cert): the server must chain to the bundle and, with --cert, be in
/// the trust domain of the client's own SVID.
async fn connect_tls(ctl: &Ctl, bundle: &std::path::Path) -> Result<Channel, String> {
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
    };
    let addr: std::net::SocketAddr = ctl
        .addr
        .parse()
        .map_err(|_| format!("--addr {:?}: with --ca-bundle, an ip:port", ctl.addr))?;
    let roots = shoal_ca::TrustBundle::from_pem(&read(bundle)?)
        .map_err(|e| format!("{}: {e}", bundle.display()))?;
    let trust = Credentials::new();
    trust
        .install_bundle(&roots)
        .map_err(|e| format!("{}: {e}", bundle.display()))?;
    let (present, expected) = match (&ctl.cert, &ctl.key) {
        (Some(cert), Some(key)) => {
            let svid = shoal_ca::Svid::from_pem(&read(cert)?, Some(&read(key)?))
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            let td = svid.spiffe_id().trust_domain().clone();
            let creds = Credentials::new();
            creds
                .install_svid(&svid)
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            (Some(creds), ServerId::InTrustDomain(td))
        }
        _ => (None, ServerId::Any),
    };
    let config = spiffe_client_config(trust, expected, present, ALPN).map_err(|e| e.to_string())?;
    tls_channel(addr, config, Duration::from_secs(3))
        .await
        .map_err(|e| error_chain(&e))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// Prints a refused call; returns the exit code.
fn report(addr: &str, s: &Status) -> u8 {
    match s.code() {
        Code::Unavailable | Code::DeadlineExceeded => {
            eprintln!("cannot reach the admin API at {addr}: {}", s.message());
            UNREACHABLE
        }
        Code::Unimplemented => {
            eprintln!(
                "rejected: {addr} does not serve this (the CA service needs a CA in the state_dir)"
            );
            REJECTED
        }
        _ => {
            let first = s.message().lines().next().unwrap_or_default();
            eprintln!("rejected: {first}");
            match pb::ApplyError::decode(s.details()) {
                Ok(details) if is_rejection(s) && !details.errors.is_empty() => {
                    for e in details.errors {
                        match e.op_index {
                            Some(i) => eprintln!("  op {i}: {}: {}", e.path, e.reason),
                            None => eprintln!("  {}: {}", e.path, e.reason),
                        }
                    }
                }
                _ => {
                    for line in s.message().lines().skip(1) {
                        eprintln!("  {line}");
                    }
                }
            }
            REJECTED
        }
    }
}

fn is_rejection(s: &Status) -> bool {
    matches!(s.code(), Code::InvalidArgument | Code::FailedPrecondition)
}

async fn get(client: &mut AdminServiceClient<Channel>) -> Result<(), Status> {
    let r = client
        .get_config(pb::GetConfigRequest {})
        .await?
        .into_inner();
    println!("# version {}", r.version);
    print!("{}", r.yaml);
    Ok(())
}

async fn apply(
    client: &mut AdminServiceClient<Channel>,
    ops: Vec<pb::Op>,
    expected_version: Option<u64>,
    dry_run: bool,
) -> Result<(), Status> {
    let r = client
        .apply(pb::ApplyRequest {
            expected_version,
            ops,
            dry_run,
        })
        .await?
        .into_inner();
    if r.dry_run {
        println!(
            "dry run against version {}: valid, nothing applied; would change:",
            r.version
        );
    } else {
        println!("applied: version {}", r.version);
    }
    print_diff(r.diff.as_ref());
    Ok(())
}

fn print_diff(diff: Option<&pb::ConfigDiff>) {
    let Some(d) = diff else { return };
    let mut any = false;
    for (what, names) in [
        ("listener", &d.listeners),
        ("route table", &d.route_tables),
        ("cluster", &d.clusters),
        ("policy", &d.policies),
    ] {
        let Some(n) = names else { continue };
        for (sign, list) in [("+", &n.added), ("~", &n.changed), ("-", &n.removed)] {
            for name in list {
                println!("  {sign} {what} {name}");
                any = true;
            }
        }
    }
    if d.other_settings_changed {
        println!("  ~ other settings");
        any = true;
    }
    if !any {
        println!("  (no changes)");
    }
}

async fn watch(client: &mut AdminServiceClient<Channel>, from: u64) -> Result<(), Status> {
    let mut stream = client
        .watch(pb::WatchRequest { from_version: from })
        .await?
        .into_inner();
    while let Some(e) = stream.message().await? {
        if e.full {
            let c = e.config.unwrap_or_default();
            println!(
                "version {}: full config ({} listeners, {} route tables, {} clusters)",
                e.version,
                c.listeners.len(),
                c.route_tables.len(),
                c.clusters.len()
            );
        } else {
            let ops: Vec<String> = e.ops.iter().map(op_summary).collect();
            println!("version {}: {}", e.version, ops.join("; "));
        }
    }
    Ok(())
}

fn op_summary(op: &pb::Op) -> String {
    match shoal_admin::ops::op_from_proto(0, op.clone()) {
        Ok(op) => op.summary(),
        Err(_) => "(an op this client does not understand)".into(),
    }
}

async fn ca(mut client: CaServiceClient<Channel>, cmd: CtlCa) -> Result<(), Status> {
    match cmd {
        CtlCa::Sign {
            id,
            ttl,
            out_cert,
            out_key,
        } => {
            let id: shoal_ca::SpiffeId = id
                .parse()
                .map_err(|e| Status::invalid_argument(format!("--id: {e}")))?;
            let (key, csr_pem) = shoal_ca::generate_csr(&id)
                .map_err(|e| Status::internal(format!("generating a key: {e}")))?;
            let r = client
                .sign_csr(ca_pb::SignCsrRequest {
                    csr_pem,
                    requested_ttl: ttl,
                })
                .await?
                .into_inner();
            let write = |path: &std::path::Path, data: &str, mode: u32| {
                shoal_ca::store::write_file_atomic(path, data.as_bytes(), mode)
                    .map_err(|e| Status::internal(format!("writing {}: {e}", path.display())))
            };
            write(&out_key, key.pem(), shoal_ca::store::KEY_MODE)?;
            write(&out_cert, &r.chain_pem, shoal_ca::store::PUBLIC_MODE)?;
            println!(
                "signed {} (expires {}): {} and {}",
                r.spiffe_id,
                r.not_after,
                out_cert.display(),
                out_key.display()
            );
        }
        CtlCa::Bundle => {
            let r = client
                .get_trust_bundle(ca_pb::GetTrustBundleRequest {})
                .await?
                .into_inner();
            print!("{}", r.bundle_pem);
        }
        CtlCa::RotateRoot { activation_delay } => {
            let r = client
                .rotate_root(ca_pb::RotateRootRequest { activation_delay })
                .await?
                .into_inner();
            if r.active {
                println!("new root {} now issues", r.fingerprint);
            } else {
                println!(
                    "new root {} is in the trust bundle; issuing switches to it at {}",
                    r.fingerprint, r.activates_at
                );
            }
        }
    }
    Ok(())
}
