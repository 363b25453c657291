//! `shoal ca ...`: offline certificate-authority commands. They work directly on the CA
//! store in `<state-dir>/ca/` (see `shoal_ca::store`), with no running proxy:
//! `init` creates (or loads) the CA, `issue` writes an SVID chain + key, `inspect` describes
//! a certificate file (and checks it against a bundle with `--bundle`), `rotate-root` starts
//! a root rotation (the new root is trusted at once and issues after `--activation-delay`),
//! `bundle` prints the trust bundle.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use shoal_ca::store::{KEY_MODE, PUBLIC_MODE, write_file_atomic};
use shoal_ca::{
    CaStore, DEFAULT_ACTIVATION_DELAY, OffsetDateTime, RootRotation, SpiffeId, Svid, TrustBundle,
    TrustDomain, format_time,
};

/// Offline CA commands.
#[derive(Debug, clap::Subcommand)]
pub enum CaCommand {
    /// Create the CA (root + intermediate) in <state-dir>/ca, or show the existing one.
    Init {
        /// Directory holding Shoal's persisted state; the CA lives in its `ca/` folder.
        #[arg(long, default_value = "./shoal-state")]
        state_dir: PathBuf,
        /// SPIFFE trust domain of the CA, e.g. `example.org`.
        #[arg(long)]
        trust_domain: TrustDomain,
    },
    /// Issue an SVID: a fresh key pair and a leaf certificate for one SPIFFE ID.
    Issue {
        /// Directory holding Shoal's persisted state; the CA lives in its `ca/` folder.
        #[arg(long, default_value = "./shoal-state")]
        state_dir: PathBuf,
        /// SPIFFE ID to certify, e.g. `spiffe://example.org/ns/default/sa/web`.
        #[arg(long)]
        id: SpiffeId,
        /// Lifetime, e.g. `1h`, `30m` (capped by the CA's maximum and the issuer's expiry).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// Where to write the certificate chain (leaf, then intermediate), PEM.
        #[arg(long)]
        out_cert: PathBuf,
        /// Where to write the private key (PKCS#8 PEM, mode 0600).
        #[arg(long)]
        out_key: PathBuf,
    },
    /// Describe a PEM certificate file: SPIFFE ID, serial, validity, issuer chain.
    Inspect {
        /// PEM file (a leaf followed by its intermediates, or any certificate).
        file: PathBuf,
        /// Also verify the chain now against this PEM trust bundle.
        #[arg(long)]
        bundle: Option<PathBuf>,
    },
    /// Create a new root and intermediate: the new root joins the trust bundle now and issues
    /// after --activation-delay; the old root stays trusted until its leaves expire.
    RotateRoot {
        /// Directory holding Shoal's persisted state; the CA lives in its `ca/` folder.
        #[arg(long, default_value = "./shoal-state")]
        state_dir: PathBuf,
        /// How long the new root is only trusted before it issues (e.g. `5m`); must exceed the
        /// interval at which proxies refresh the trust bundle (30s intended). `0s` switches
        /// issuing at once. Refused while an earlier rotation is still pending.
        #[arg(long, default_value_t = DEFAULT_ACTIVATION_DELAY.into())]
        activation_delay: humantime::Duration,
    },
    /// Print the trust bundle (every trusted root) as PEM on standard output.
    Bundle {
        /// Directory holding Shoal's persisted state; the CA lives in its `ca/` folder.
        #[arg(long, default_value = "./shoal-state")]
        state_dir: PathBuf,
    },
}

fn ca_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("ca")
}

fn open_store(state_dir: &Path) -> Result<CaStore> {
    let dir = ca_dir(state_dir);
    CaStore::open(&dir).with_context(|| format!("opening the CA in {}", dir.display()))
}

/// Runs one `shoal ca` command.
pub fn run(cmd: CaCommand) -> Result<()> {
    match cmd {
        CaCommand::Init {
            state_dir,
            trust_domain,
        } => init(&state_dir, &trust_domain),
        CaCommand::Issue {
            state_dir,
            id,
            ttl,
            out_cert,
            out_key,
        } => issue(&state_dir, &id, ttl, &out_cert, &out_key),
        CaCommand::Inspect { file, bundle } => inspect(&file, bundle.as_deref()),
        CaCommand::RotateRoot {
            state_dir,
            activation_delay,
        } => rotate_root(&state_dir, activation_delay.into()),
        CaCommand::Bundle { state_dir } => {
            let store = open_store(&state_dir)?;
            print!("{}", store.trust_bundle().to_pem());
            Ok(())
        }
    }
}

fn init(state_dir: &Path, trust_domain: &TrustDomain) -> Result<()> {
    let dir = ca_dir(state_dir);
    let existed = CaStore::exists(&dir);
    let store = CaStore::load_or_init(&dir, trust_domain)
        .with_context(|| format!("initialising the CA in {}", dir.display()))?;
    let a = store.authority();
    if existed {
        println!(
            "CA for trust domain {trust_domain} already exists in {}",
            dir.display()
        );
    } else {
        println!(
            "created CA for trust domain {trust_domain} in {}",
            dir.display()
        );
    }
    print_roots(&store);
    println!(
        "intermediate expires {}",
        format_time(a.intermediate_not_after())
    );
    println!("trust bundle: {}", store.bundle_path().display());
    Ok(())
}

fn issue(
    state_dir: &Path,
    id: &SpiffeId,
    ttl: Duration,
    out_cert: &Path,
    out_key: &Path,
) -> Result<()> {
    let mut store = open_store(state_dir)?;
    let svid = store
        .issue(id, Some(ttl))
        .with_context(|| format!("issuing an SVID for {id}"))?;
    let key = svid
        .key_pem()
        .context("the CA returned no private key for a generated SVID")?;
    write_file_atomic(out_key, key.as_bytes(), KEY_MODE)
        .with_context(|| format!("writing the key to {}", out_key.display()))?;
    write_file_atomic(out_cert, svid.chain_pem().as_bytes(), PUBLIC_MODE)
        .with_context(|| format!("writing the certificate chain to {}", out_cert.display()))?;
    println!("issued {}", svid.spiffe_id());
    println!("  serial      {}", svid.serial());
    println!("  not before  {}", format_time(svid.not_before()));
    println!("  not after   {}", format_time(svid.not_after()));
    // The CA backdates not_before by a minute; anything shorter than ttl + 1 min was capped.
    let span = (svid.not_after() - svid.not_before()).unsigned_abs();
    if span < ttl.saturating_add(Duration::from_secs(60)) {
        println!("  (lifetime capped by the CA's maximum or the issuer's expiry)");
    }
    println!("  chain       {}", out_cert.display());
    println!("  key         {} (0600)", out_key.display());
    Ok(())
}

fn inspect(file: &Path, bundle: Option<&Path>) -> Result<()> {
    let pem =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let info = Svid::inspect(&pem).with_context(|| format!("parsing {}", file.display()))?;
    match &info.spiffe_id {
        Some(id) => println!("SPIFFE ID    {id}"),
        None if info.uri_sans.is_empty() => println!("SPIFFE ID    (none)"),
        None => println!(
            "SPIFFE ID    (none; URI SANs: {})",
            info.uri_sans.join(", ")
        ),
    }
    if !info.dns_sans.is_empty() {
        println!("DNS SANs     {}", info.dns_sans.join(", "));
    }
    println!("serial       {}", info.serial);
    println!("not before   {}", format_time(info.not_before));
    println!("not after    {}", format_time(info.not_after));
    let now = OffsetDateTime::now_utc();
    if now > info.not_after {
        println!("             (expired)");
    } else if now < info.not_before {
        println!("             (not yet valid)");
    }
    if !info.subject.is_empty() {
        println!("subject      {}", info.subject);
    }
    println!("CA           {}", if info.is_ca { "yes" } else { "no" });
    if !info.extended_key_usages.is_empty() {
        println!("key usage    {}", info.extended_key_usages.join(", "));
    }
    println!("fingerprint  {} (SHA-256)", info.fingerprint);
    println!("issuer chain");
    println!("  {}", info.issuer);
    for entry in &info.issuers {
        println!(
            "  {}  (serial {}, expires {})",
            entry.issuer,
            entry.serial,
            format_time(entry.not_after)
        );
    }
    if let Some(path) = bundle {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let bundle = TrustBundle::from_pem(&text)
            .with_context(|| format!("parsing the trust bundle {}", path.display()))?;
        let verified = bundle
            .verify_pem_chain(&pem, now)
            .with_context(|| format!("verifying {} against {}", file.display(), path.display()))?;
        println!(
            "verified     chains to root {} ({} intermediate(s))",
            verified.root_fingerprint, verified.intermediates_used
        );
    }
    Ok(())
}

fn rotate_root(state_dir: &Path, activation_delay: Duration) -> Result<()> {
    let mut store = open_store(state_dir)?;
    let rotation = store
        .rotate_root_with_delay(activation_delay)
        .context("rotating the root CA")?;
    let retired = store
        .retire_expired_roots(OffsetDateTime::now_utc())
        .context("retiring old roots")?;
    print_rotation(&rotation);
    for fp in &retired {
        println!("retired root {fp} (every leaf it vouched for has expired)");
    }
    print_roots(&store);
    println!(
        "distribute the updated bundle ({}) to every peer{}; old roots stay in it until their leaves expire",
        store.bundle_path().display(),
        if rotation.active {
            String::new()
        } else {
            format!(" before {}", format_time(rotation.activates_at))
        }
    );
    Ok(())
}

fn print_rotation(rotation: &RootRotation) {
    if rotation.active {
        println!("new root {} now issues", rotation.fingerprint);
    } else {
        println!(
            "new root {} is in the trust bundle; issuing switches to it at {} (the first issue from then on)",
            rotation.fingerprint,
            format_time(rotation.activates_at)
        );
    }
}

fn print_roots(store: &CaStore) {
    for root in store.authority().roots() {
        let leaves = root
            .latest_leaf_expiry
            .map_or_else(|| "none issued".to_owned(), format_time);
        let state = match (root.active, root.activates_at) {
            (true, _) => "(active) ".to_owned(),
            (false, Some(at)) => format!("(pending, issues from {})", format_time(at)),
            (false, None) => "(old)    ".to_owned(),
        };
        println!(
            "root {} {state} expires {}, leaves valid until {}",
            root.fingerprint,
            format_time(root.not_after),
            leaves
        );
    }
}
