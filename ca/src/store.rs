//! [`CaStore`]: the authority persisted in a directory, and [`write_file_atomic`].
//!
//! Layout of the directory (created 0700):
//! - `bundle.pem`: every trusted root (what peers need), 0644;
//! - `root-<fp>.pem` / `root-<fp>.key`: the active root certificate and its key (key 0600);
//! - `intermediate-<fp>.pem` / `intermediate-<fp>.key`: the issuing CA (key 0600);
//! - during a two-phase root rotation, the pending root and intermediate the same way (their
//!   root is already in `bundle.pem`; they issue from the activation time);
//! - `ca.meta`: the commit point, a small text file naming the trust domain, the files above
//!   (the pending ones with their activation time) and, per root, the latest expiry of the
//!   leaves it vouches for (`store/meta.rs`).
//!
//! `<fp>` is the first 16 hex digits of the certificate's SHA-256. Every file is written
//! atomically (temporary file in the same directory, fsync, rename, fsync of the directory),
//! and `ca.meta` last: a crash mid-rotation leaves the previous, consistent CA in force (a
//! rotation whose metadata never landed is simply not pending: its root may sit in the bundle,
//! keyless, until it is retired). Activating a pending root rewrites only `ca.meta` (its files
//! are already there), so a crash around it leaves either the pending state, which activates
//! again at the next issue, or the activated one. Superseded key files are deleted once the
//! new metadata is durable.

use std::collections::HashMap;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::time::OffsetDateTime;

use crate::authority::{
    Authority, AuthorityOptions, CaCert, IssuePolicy, PendingRoot, RootRecord, RootRotation,
};
use crate::bundle::TrustBundle;
use crate::error::{Error, Result};
use crate::spiffe::{SpiffeId, TrustDomain};
use crate::svid::Svid;
use crate::x509;

mod meta;

use meta::{Meta, PairFiles, PendingMeta, is_our_file_name};

const META: &str = "ca.meta";
const BUNDLE: &str = "bundle.pem";
/// Mode of private-key files.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificate and metadata files.
pub const PUBLIC_MODE: u32 = 0o644;

/// Writes `data` to `path` atomically with permissions `mode`: a temporary file in the same
/// directory is written, fsynced and renamed over `path`, then the directory is fsynced.
pub fn write_file_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::io("write", path, ErrorKind::InvalidInput.into()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| Error::io("create", &tmp, e))?;
        // The umask may have narrowed (or, for 0644, kept) the mode: set it exactly.
        f.set_permissions(Permissions::from_mode(mode))
            .map_err(|e| Error::io("chmod", &tmp, e))?;
        f.write_all(data).map_err(|e| Error::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("fsync", &dir, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes only when the content differs (keeps repeated saves cheap and idempotent).
fn write_if_changed(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    match fs::read(path) {
        Ok(old) if old == data => Ok(()),
        _ => write_file_atomic(path, data, mode),
    }
}

fn read_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| Error::io("read", path, e))
}

fn file_stem(kind: &str, der: &[u8]) -> String {
    format!("{kind}-{}", &x509::fingerprint(der)[..16])
}

/// The file names of a root + intermediate pair.
fn pair_files(root: &CaCert, intermediate: &CaCert) -> PairFiles {
    let root = file_stem("root", &root.der);
    let inter = file_stem("intermediate", &intermediate.der);
    PairFiles {
        root_cert: format!("{root}.pem"),
        root_key: format!("{root}.key"),
        intermediate_cert: format!("{inter}.pem"),
        intermediate_key: format!("{inter}.key"),
    }
}

/// The authority plus the directory it lives in. Every mutating call persists before it
/// returns, so what a caller was handed (an SVID, a rotated root) survives a restart.
#[derive(Debug)]
pub struct CaStore {
    dir: PathBuf,
    authority: Authority,
}

impl CaStore {
    /// Whether `dir` holds a store (its metadata file exists).
    pub fn exists(dir: impl AsRef<Path>) -> bool {
        dir.as_ref().join(META).exists()
    }

    /// Loads the store in `dir`, or creates a new CA for `trust_domain` there with default
    /// lifetimes. A store of another trust domain is refused.
    pub fn load_or_init(dir: impl AsRef<Path>, trust_domain: &TrustDomain) -> Result<Self> {
        Self::load_or_init_with(dir, trust_domain, AuthorityOptions::default())
    }

    /// [`CaStore::load_or_init`] with explicit lifetimes (used for future issuing either way).
    pub fn load_or_init_with(
        dir: impl AsRef<Path>,
        trust_domain: &TrustDomain,
        opts: AuthorityOptions,
    ) -> Result<Self> {
        let dir = dir.as_ref();
        if Self::exists(dir) {
            Self::load(dir, Some(trust_domain), opts)
        } else {
            Self::init(dir, trust_domain.clone(), opts)
        }
    }

    /// Opens an existing store, whatever its trust domain.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::load(dir.as_ref(), None, AuthorityOptions::default())
    }

    /// [`CaStore::open`] with explicit lifetimes for future issuing.
    pub fn open_with(dir: impl AsRef<Path>, opts: AuthorityOptions) -> Result<Self> {
        Self::load(dir.as_ref(), None, opts)
    }

    fn init(dir: &Path, trust_domain: TrustDomain, opts: AuthorityOptions) -> Result<Self> {
        if dir.exists() {
            let leftovers = fs::read_dir(dir)
                .map_err(|e| Error::io("list", dir, e))?
                .filter_map(|e| e.ok())
                .any(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name == BUNDLE || is_our_file_name(&name)
                });
            if leftovers {
                return Err(Error::StoreCorrupt {
                    dir: dir.to_path_buf(),
                    reason: format!("CA files present but {META} missing; refusing to overwrite"),
                });
            }
        }
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io("create directory", dir, e))?;
        let store = CaStore {
            dir: dir.to_path_buf(),
            authority: Authority::init(trust_domain, opts)?,
        };
        store.save()?;
        tracing::info!(dir = %dir.display(), "created CA store");
        Ok(store)
    }

    fn load(dir: &Path, want: Option<&TrustDomain>, opts: AuthorityOptions) -> Result<Self> {
        let corrupt = |reason: String| Error::StoreCorrupt {
            dir: dir.to_path_buf(),
            reason,
        };
        let meta_path = dir.join(META);
        if !meta_path.exists() {
            return Err(Error::NotInitialized(dir.to_path_buf()));
        }
        let meta = Meta::parse(&read_string(&meta_path)?).map_err(&corrupt)?;
        if let Some(want) = want
            && want.as_str() != meta.trust_domain
        {
            return Err(Error::TrustDomainMismatch {
                dir: dir.to_path_buf(),
                stored: meta.trust_domain,
                requested: want.to_string(),
            });
        }
        let trust_domain: TrustDomain = meta
            .trust_domain
            .parse()
            .map_err(|e| corrupt(format!("trust domain: {e}")))?;
        let load_ca = |cert: &str, key: &str| -> Result<CaCert> {
            let cert_pem = read_string(&dir.join(cert))?;
            let key_pem = read_string(&dir.join(key))?;
            CaCert::from_pem(&cert_pem, &key_pem).map_err(|e| corrupt(format!("{cert}: {e}")))
        };
        let load_pair = |files: &PairFiles| -> Result<(CaCert, CaCert)> {
            Ok((
                load_ca(&files.root_cert, &files.root_key)?,
                load_ca(&files.intermediate_cert, &files.intermediate_key)?,
            ))
        };
        let (root, intermediate) = load_pair(&meta.active)?;
        let pending = match &meta.pending {
            Some(p) => {
                let (root, intermediate) = load_pair(&p.files)?;
                let activate_at = OffsetDateTime::from_unix_timestamp(p.activate_at)
                    .map_err(|e| corrupt(format!("pending_activate_at: {e}")))?;
                Some(PendingRoot {
                    root,
                    intermediate,
                    activate_at,
                })
            }
            None => None,
        };
        let expiries: HashMap<&str, Option<i64>> =
            meta.roots.iter().map(|(f, e)| (f.as_str(), *e)).collect();
        let mut records = Vec::new();
        for der in x509::pem_to_certs(&read_string(&dir.join(BUNDLE))?)
            .map_err(|e| corrupt(format!("{BUNDLE}: {e}")))?
        {
            let fp = x509::fingerprint(&der);
            let exp = match expiries.get(fp.as_str()).copied().flatten() {
                Some(secs) => Some(
                    OffsetDateTime::from_unix_timestamp(secs)
                        .map_err(|e| corrupt(format!("root {fp}: {e}")))?,
                ),
                None => None,
            };
            records.push(RootRecord::new(der, exp).map_err(|e| corrupt(e.to_string()))?);
        }
        // The active root must be in the bundle; it goes last, followed by the pending root
        // if any. (A crash between writing the bundle and the metadata can leave a newer,
        // keyless root in the bundle: harmless, and retired as soon as `retire_expired_roots`
        // runs, since it vouches for nothing.)
        let mut move_last = |what: &str, der: &[u8]| {
            let fp = x509::fingerprint(der);
            let pos = records
                .iter()
                .position(|r| r.fingerprint == fp)
                .ok_or_else(|| corrupt(format!("{what} root {fp} is not in {BUNDLE}")))?;
            let record = records.remove(pos);
            records.push(record);
            Ok::<_, Error>(())
        };
        move_last("active", &root.der)?;
        if let Some(p) = &pending {
            move_last("pending", &p.root.der)?;
        }
        let authority =
            Authority::from_parts(trust_domain, opts, root, intermediate, pending, records)
                .map_err(|e| corrupt(e.to_string()))?;
        tracing::debug!(dir = %dir.display(), "loaded CA store");
        Ok(CaStore {
            dir: dir.to_path_buf(),
            authority,
        })
    }

    /// Writes the current state: new CA files, the bundle, then the metadata (the commit
    /// point), then removes CA files the metadata no longer names.
    pub fn save(&self) -> Result<()> {
        let a = &self.authority;
        let meta = Meta {
            trust_domain: a.trust_domain().to_string(),
            active: pair_files(a.root_ca(), a.intermediate_ca()),
            pending: a.pending().map(|p| PendingMeta {
                files: pair_files(&p.root, &p.intermediate),
                activate_at: p.activate_at.unix_timestamp(),
            }),
            roots: a
                .root_records()
                .iter()
                .map(|r| {
                    let exp = r.latest_leaf_expiry.map(|t| t.unix_timestamp());
                    (r.fingerprint.clone(), exp)
                })
                .collect(),
        };
        self.write_pair(&meta.active, a.root_ca(), a.intermediate_ca())?;
        if let (Some(files), Some(p)) = (&meta.pending, a.pending()) {
            self.write_pair(&files.files, &p.root, &p.intermediate)?;
        }
        write_if_changed(
            &self.dir.join(BUNDLE),
            a.trust_bundle().to_pem().as_bytes(),
            PUBLIC_MODE,
        )?;
        write_if_changed(&self.dir.join(META), meta.render().as_bytes(), PUBLIC_MODE)?;
        self.remove_stale(&meta)
    }

    /// Writes each CA's key (0600) then its certificate, each file only if it changed.
    fn write_pair(&self, files: &PairFiles, root: &CaCert, intermediate: &CaCert) -> Result<()> {
        for (cert, key, ca) in [
            (&files.root_cert, &files.root_key, root),
            (
                &files.intermediate_cert,
                &files.intermediate_key,
                intermediate,
            ),
        ] {
            write_if_changed(&self.dir.join(key), ca.key_pem().as_bytes(), KEY_MODE)?;
            write_if_changed(&self.dir.join(cert), ca.cert_pem().as_bytes(), PUBLIC_MODE)?;
        }
        Ok(())
    }

    fn remove_stale(&self, meta: &Meta) -> Result<()> {
        let keep = meta.file_names();
        let entries = fs::read_dir(&self.dir).map_err(|e| Error::io("list", &self.dir, e))?;
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_our_file_name(&name) && !keep.contains(&name.as_str()) {
                let path = entry.path();
                fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
                tracing::debug!(file = %name, "removed superseded CA file");
            }
        }
        Ok(())
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the PEM trust bundle file.
    pub fn bundle_path(&self) -> PathBuf {
        self.dir.join(BUNDLE)
    }

    /// The authority (read-only; use the store's methods to change it durably).
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Every trusted root.
    pub fn trust_bundle(&self) -> TrustBundle {
        self.authority.trust_bundle()
    }

    /// [`Authority::issue`], persisted.
    pub fn issue(&mut self, id: &SpiffeId, ttl: Option<Duration>) -> Result<Svid> {
        let svid = self.authority.issue(id, ttl)?;
        self.save()?;
        Ok(svid)
    }

    /// [`Authority::sign_csr`], persisted.
    pub fn sign_csr(
        &mut self,
        csr_pem: &str,
        requested_ttl: Option<Duration>,
        policy: &IssuePolicy,
    ) -> Result<Svid> {
        let svid = self.authority.sign_csr(csr_pem, requested_ttl, policy)?;
        self.save()?;
        Ok(svid)
    }

    /// [`Authority::rotate_root`] (two-phase, with the options' `activation_delay`),
    /// persisted: the pending root is in `bundle.pem` and `ca.meta` when this returns.
    pub fn rotate_root(&mut self) -> Result<RootRotation> {
        let rotation = self.authority.rotate_root()?;
        self.save()?;
        Ok(rotation)
    }

    /// [`Authority::rotate_root_with_delay`], persisted (zero: the new root issues at once).
    pub fn rotate_root_with_delay(&mut self, delay: Duration) -> Result<RootRotation> {
        let rotation = self.authority.rotate_root_with_delay(delay)?;
        self.save()?;
        Ok(rotation)
    }

    /// [`Authority::activate_pending_root`], persisted. Returns the activated root's
    /// fingerprint, or None when no rotation was pending.
    pub fn activate_pending_root(&mut self) -> Result<Option<String>> {
        let activated = self.authority.activate_pending_root();
        if activated.is_some() {
            self.save()?;
        }
        Ok(activated)
    }

    /// [`Authority::rotate_intermediate`], persisted.
    pub fn rotate_intermediate(&mut self) -> Result<()> {
        self.authority.rotate_intermediate()?;
        self.save()
    }

    /// [`Authority::retire_expired_roots`], persisted. Returns the retired fingerprints.
    pub fn retire_expired_roots(&mut self, now: OffsetDateTime) -> Result<Vec<String>> {
        let retired = self.authority.retire_expired_roots(now);
        if !retired.is_empty() {
            self.save()?;
        }
        Ok(retired)
    }
}

#[cfg(test)]
mod tests;
