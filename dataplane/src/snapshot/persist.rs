//! The persisted config: `<state_dir>/config.yaml` holds the last applied version and its spec.
//!
//! Written by `ConfigStore::apply` after validation and binding, *before* the swap, so a change
//! that was acknowledged is on disk. Writes are atomic: a temp file in the same directory,
//! `fsync`, `rename` over `config.yaml`, `fsync` of the directory. A crash mid-write leaves
//! either the old file or the new one, plus at most a stray temp file, which is ignored (and
//! removed by the next successful write).
//!
//! The file is written as (pretty) JSON, which is YAML too: it is read back with the YAML
//! parser, like any config file (older files written as YAML load the same way). JSON because
//! serializing is on the path of every `Apply`: for 10,000 routes serde_json takes a few
//! milliseconds where the YAML serializer took 40-65 ms.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::ConfigSpec;

const FILE: &str = "config.yaml";
const TMP_PREFIX: &str = ".config.yaml.tmp-";

/// `<state_dir>/config.yaml`.
#[derive(Debug, Clone)]
pub struct StateFile {
    dir: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Persisted {
    version: u64,
    config: ConfigSpec,
}

/// What is written: the same shape as [`Persisted`], borrowing the spec.
#[derive(Serialize)]
struct PersistedRef<'a> {
    version: u64,
    config: &'a ConfigSpec,
}

/// A persisted config that could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("parsing {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_yaml_ng::Error,
    },
}

impl StateFile {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding the last applied config.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// The last persisted `(version, spec)`, or `None` if nothing was persisted yet.
    pub fn load(&self) -> Result<Option<(u64, ConfigSpec)>, LoadError> {
        let path = self.path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LoadError::Io { path, source }),
        };
        let p: Persisted =
            serde_yaml_ng::from_str(&text).map_err(|source| LoadError::Parse { path, source })?;
        Ok(Some((p.version, p.config)))
    }

    /// Writes `(version, spec)` atomically (temp file + fsync + rename + fsync of the directory).
    pub fn save(&self, version: u64, spec: &ConfigSpec) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let text = serde_json::to_string_pretty(&PersistedRef {
            version,
            config: spec,
        })
        .map_err(io::Error::other)?;
        let tmp = self
            .dir
            .join(format!("{TMP_PREFIX}{}-{version}", std::process::id()));
        let result = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(
                b"# Written by shoal: the last applied config. Do not edit while running.\n",
            )?;
            f.write_all(text.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            fs::rename(&tmp, self.path())?;
            File::open(&self.dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        } else {
            self.remove_stray_temps();
        }
        result
    }

    /// Temp files left by a crash mid-write are never read; remove them.
    fn remove_stray_temps(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}
