//! The agent's state directory: its identity, what it has installed, its current job and the
//! reports not yet acknowledged. Every file is written atomically (temp file, fsync, rename) so
//! a crash leaves either the old or the new version, never half of one.
//!
//! ```text
//! STATE/identity/{key.pem,cert.pem,ca.pem,endpoint_id} (and pending.csr until enrolled)
//! STATE/agent.pid          the running agent's pid (after a self-upgrade, the new one's)
//! STATE/done-sets.json     sets finished here, so a stale assignment is not started again
//! STATE/installed.json      product -> version (the agent's own version included)
//! STATE/job.json            the upgrade in progress, if any
//! STATE/outbox.json         reports waiting for the server's acknowledgement
//! STATE/self-upgrade.json   a self-upgrade on trial (renamed to .confirmed by the new agent,
//!                           or to .aborted by the old one: whoever renames first wins)
//! STATE/software.json     the package list the server accepted (see `software`)
//! STATE/tuf/                the TUF root, tough's datastore, signed release counters
//!                           (see `signing`)
//! STATE/downloads/          partial and verified package files
//! STATE/products/           installed versions (see `install`)
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Paths inside the state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Creates the directory tree if needed.
    pub fn open(root: &Path) -> anyhow::Result<StateDir> {
        for sub in ["identity", "downloads", "products"] {
            fs::create_dir_all(root.join(sub))
                .with_context(|| format!("while creating {}", root.join(sub).display()))?;
        }
        // The identity holds the private key.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(root.join("identity"), fs::Permissions::from_mode(0o700))?;
        let root = root.canonicalize().with_context(|| format!("while resolving {}", root.display()))?;
        Ok(StateDir { root })
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file in the identity directory.
    pub fn identity(&self, name: &str) -> PathBuf {
        self.root.join("identity").join(name)
    }

    /// Where installed versions live.
    pub fn products(&self) -> PathBuf {
        self.root.join("products")
    }

    /// Where downloads live.
    pub fn downloads(&self) -> PathBuf {
        self.root.join("downloads")
    }

    /// A top-level file.
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Reads a JSON file; None when it does not exist.
    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> anyhow::Result<Option<T>> {
        let path = self.file(name);
        match fs::read(&path) {
            Ok(bytes) => {
                Ok(Some(serde_json::from_slice(&bytes).with_context(|| format!("while parsing {}", path.display()))?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("while reading {}", path.display())),
        }
    }

    /// Writes a JSON file atomically.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(value)?;
        write_atomic(&self.file(name), &bytes)
    }

    /// Removes a top-level file if present.
    pub fn remove(&self, name: &str) -> anyhow::Result<()> {
        match fs::remove_file(self.file(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Installed products, without the agent itself unless it upgraded itself.
    pub fn installed(&self) -> anyhow::Result<BTreeMap<String, String>> {
        Ok(self.read_json("installed.json")?.unwrap_or_default())
    }

    /// Records that `product` is now at `version` (None: removed).
    pub fn set_installed(&self, product: &str, version: Option<&str>) -> anyhow::Result<()> {
        let mut installed = self.installed()?;
        match version {
            Some(v) => installed.insert(product.to_string(), v.to_string()),
            None => installed.remove(product),
        };
        self.write_json("installed.json", &installed)
    }
}

/// Writes `bytes` to `path` so that readers see the old or the new contents, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic_mode(path, bytes, 0o644)
}

/// As [`write_atomic`], for secrets: the file is created with mode 0600, never readable by
/// others even for a moment.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic_mode(path, bytes, 0o600)
}

fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().context("path has no parent")?;
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("file")));
    let _ = fs::remove_file(&tmp);
    {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("while creating {}", tmp.display()))?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path).with_context(|| format!("while replacing {}", path.display()))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The upgrade in progress, persisted so that a restarted agent continues it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Job {
    /// What the server assigned.
    pub assignment: rollgate_wire::Assignment,
    /// The version installed before the job started.
    pub from_version: Option<String>,
    /// Attempts started.
    pub attempts: u32,
    /// True between an attempt's start and its outcome: seen at start-up, it means the agent
    /// died mid-attempt.
    pub in_attempt: bool,
    /// True when some attempt changed the endpoint and then reverted it.
    pub reverted_any: bool,
    /// True once an attempt installed the new version and it was healthy: a restarted agent
    /// then finishes the job as a success instead of treating the attempt as interrupted.
    #[serde(default)]
    pub installed: bool,
    /// The release counter of the signed target this job's package matched (None: this agent
    /// holds no TUF root), recorded as the installed release once the install succeeds.
    #[serde(default)]
    pub signed_release: Option<u64>,
}

/// A self-upgrade on trial: written by the old agent, confirmed by the new one.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SelfUpgrade {
    /// The set.
    pub set_id: i64,
    /// The attempt.
    pub attempt: u32,
    /// The agent version being replaced.
    pub from_version: Option<String>,
    /// The new version.
    pub to_version: String,
    /// The new binary.
    pub new_exe: PathBuf,
    /// The signed release counter of the new version (see [`Job::signed_release`]).
    #[serde(default)]
    pub signed_release: Option<u64>,
}
