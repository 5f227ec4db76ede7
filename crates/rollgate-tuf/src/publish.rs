//! The server's part: it holds only the snapshot and timestamp keys. It accepts a targets role
//! signed elsewhere (checking it against the root, never re-signing it), and publishes it with a
//! new snapshot and timestamp, as consistent snapshots: every file but `timestamp.json` is named
//! by its version and never changes, so relays may cache them.
//!
//! Repository layout (`repo/`): `<n>.root.json` for every root in the chain,
//! `<n>.targets.json`, `<n>.snapshot.json`, `timestamp.json`. Target files are served by the
//! server from its content-addressed package store as `targets/<sha256>.<name>`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use tough::editor::signed::SignedRole;
use tough::key_source::KeySource;
use tough::schema::{Hashes, KeyHolder, Metafile, Root, Signed, Snapshot, Targets, Timestamp};

use crate::targets::parse;
use crate::{expires_after, non_zero, write_atomic, TufError, SPEC_VERSION};

/// How long a snapshot is valid.
pub const SNAPSHOT_VALID_DAYS: i64 = 7;
/// How long a timestamp is valid: the longest a server that stopped signing (or an attacker
/// replaying an old timestamp) can keep endpoints on stale metadata.
pub const TIMESTAMP_VALID_SECS: i64 = 86_400;

/// A published snapshot and its exact bytes.
type SnapshotFile = (Signed<Snapshot>, Vec<u8>);

/// The versions now published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    /// Targets role version.
    pub targets: u64,
    /// Snapshot version.
    pub snapshot: u64,
    /// Timestamp version.
    pub timestamp: u64,
}

/// The online keys.
pub struct OnlineKeys {
    /// Signs `snapshot.json`.
    pub snapshot: Box<dyn KeySource>,
    /// Signs `timestamp.json`.
    pub timestamp: Box<dyn KeySource>,
}

impl OnlineKeys {
    /// The key files `snapshot` and `timestamp`.
    pub fn from_files(snapshot: &Path, timestamp: &Path) -> OnlineKeys {
        OnlineKeys { snapshot: crate::keys::key_source(snapshot), timestamp: crate::keys::key_source(timestamp) }
    }
}

/// A repository directory on the server.
pub struct Repo {
    dir: PathBuf,
}

impl Repo {
    /// The repository in `dir` (created if missing).
    pub fn open(dir: &Path) -> Result<Repo, TufError> {
        std::fs::create_dir_all(dir).map_err(TufError::io("creating", dir))?;
        Ok(Repo { dir: dir.to_path_buf() })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Adds a root to the chain (`<version>.root.json`), checking that it is signed by a
    /// threshold of its own root keys and, from version 2 on, of the previous root's.
    pub fn add_root(&self, root_bytes: &[u8]) -> Result<Signed<Root>, TufError> {
        let root: Signed<Root> = parse("root.json", root_bytes)?;
        root.signed
            .verify_role(&root)
            .map_err(|e| TufError::Invalid(format!("root.json is not signed by a threshold of its own keys: {e}")))?;
        let version = root.signed.version.get();
        if version > 1 {
            let previous = self.root(version - 1)?.ok_or_else(|| {
                TufError::Invalid(format!("root version {version} needs version {} published first", version - 1))
            })?;
            previous.signed.verify_role(&root).map_err(|e| {
                TufError::Invalid(format!(
                    "root version {version} is not signed by a threshold of the previous root's keys: {e}"
                ))
            })?;
        }
        let path = self.dir.join(format!("{version}.root.json"));
        match std::fs::read(&path) {
            Ok(existing) if existing == root_bytes => {}
            Ok(_) => return Err(TufError::Invalid(format!("a different root version {version} is published already"))),
            Err(_) => write_atomic(&path, root_bytes)?,
        }
        Ok(root)
    }

    /// Root `version`, if published.
    pub fn root(&self, version: u64) -> Result<Option<Signed<Root>>, TufError> {
        let path = self.dir.join(format!("{version}.root.json"));
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(parse("root.json", &bytes)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(TufError::Io { what: "reading", path, source: e }),
        }
    }

    /// The newest root published.
    pub fn latest_root(&self) -> Result<Signed<Root>, TufError> {
        let mut latest = self.root(1)?.ok_or_else(|| TufError::Invalid("no root.json published".into()))?;
        while let Some(next) = self.root(latest.signed.version.get() + 1)? {
            latest = next;
        }
        Ok(latest)
    }

    /// The current timestamp, if any.
    pub fn timestamp(&self) -> Result<Option<Signed<Timestamp>>, TufError> {
        let path = self.dir.join("timestamp.json");
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(parse("timestamp.json", &bytes)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(TufError::Io { what: "reading", path, source: e }),
        }
    }

    /// The current snapshot, if any.
    fn snapshot(&self) -> Result<Option<SnapshotFile>, TufError> {
        let Some(timestamp) = self.timestamp()? else { return Ok(None) };
        let version = timestamp.signed.meta.get("snapshot.json").map_or(0, |m| m.version.get());
        let path = self.dir.join(format!("{version}.snapshot.json"));
        let bytes = std::fs::read(&path).map_err(TufError::io("reading", &path))?;
        Ok(Some((parse("snapshot.json", &bytes)?, bytes)))
    }

    /// The targets role currently published, as signed by the targets key.
    pub fn targets(&self) -> Result<Option<Signed<Targets>>, TufError> {
        let Some((snapshot, _)) = self.snapshot()? else { return Ok(None) };
        let version = snapshot.signed.meta.get("targets.json").map_or(0, |m| m.version.get());
        let path = self.dir.join(format!("{version}.targets.json"));
        let bytes = std::fs::read(&path).map_err(TufError::io("reading", &path))?;
        Ok(Some(parse("targets.json", &bytes)?))
    }

    /// Publishes `targets_bytes` (a targets role signed on the operator's machine) with a new
    /// snapshot and timestamp signed by `keys`. Refused: a targets role not signed by a
    /// threshold of the root's targets keys, or older than the one published, or a different
    /// role under the published version number.
    pub async fn publish_targets(
        &self,
        targets_bytes: &[u8],
        keys: &OnlineKeys,
        now: jiff::Timestamp,
    ) -> Result<Published, TufError> {
        let root = self.latest_root()?;
        let targets: Signed<Targets> = parse("targets.json", targets_bytes)?;
        root.signed.verify_role(&targets).map_err(|e| {
            TufError::Invalid(format!("targets.json is not signed by a threshold of the root's targets keys: {e}"))
        })?;
        let version = targets.signed.version.get();
        let path = self.dir.join(format!("{version}.targets.json"));
        if let Some(current) = self.targets()? {
            let current_version = current.signed.version.get();
            if version < current_version {
                return Err(TufError::Invalid(format!(
                    "targets.json version {version} is older than the published version {current_version}"
                )));
            }
        }
        match std::fs::read(&path) {
            Ok(existing) if existing != targets_bytes => {
                return Err(TufError::Invalid(format!(
                    "a different targets.json version {version} is published already"
                )))
            }
            Ok(_) => {}
            Err(_) => write_atomic(&path, targets_bytes)?,
        }
        self.publish_snapshot(&root, version, targets_bytes, keys, now).await
    }

    /// Signs a new snapshot pointing at targets `targets_version` and a new timestamp pointing
    /// at it; writes the timestamp last, so that clients never see it before what it names.
    pub(crate) async fn publish_snapshot(
        &self,
        root: &Signed<Root>,
        targets_version: u64,
        targets_bytes: &[u8],
        keys: &OnlineKeys,
        now: jiff::Timestamp,
    ) -> Result<Published, TufError> {
        let holder = KeyHolder::Root(root.signed.clone());
        let rng = SystemRandom::new();
        let snapshot_version = self.snapshot()?.map_or(1, |(s, _)| s.signed.version.get() + 1);
        let mut snapshot = Snapshot::new(
            SPEC_VERSION.into(),
            non_zero(snapshot_version)?,
            expires_after(now, SNAPSHOT_VALID_DAYS * 86_400)?,
        );
        snapshot.meta.insert("targets.json".into(), metafile(targets_bytes, targets_version)?);
        let snapshot = SignedRole::new(snapshot, &holder, std::slice::from_ref(&keys.snapshot), &rng)
            .await
            .map_err(TufError::tough("signing snapshot.json (is this the snapshot key of the root?)"))?;
        write_atomic(&self.dir.join(format!("{snapshot_version}.snapshot.json")), snapshot.buffer())?;
        let timestamp_version = self.sign_timestamp(root, snapshot.buffer(), snapshot_version, keys, now).await?;
        Ok(Published { targets: targets_version, snapshot: snapshot_version, timestamp: timestamp_version })
    }

    /// Re-signs the timestamp with a new version and expiry, pointing at the same snapshot: run
    /// well within [`TIMESTAMP_VALID_SECS`] so that endpoints keep trusting the repository.
    pub async fn refresh_timestamp(&self, keys: &OnlineKeys, now: jiff::Timestamp) -> Result<u64, TufError> {
        let root = self.latest_root()?;
        let (snapshot, bytes) = self.snapshot()?.ok_or_else(|| TufError::Invalid("nothing is published yet".into()))?;
        self.sign_timestamp(&root, &bytes, snapshot.signed.version.get(), keys, now).await
    }

    async fn sign_timestamp(
        &self,
        root: &Signed<Root>,
        snapshot_bytes: &[u8],
        snapshot_version: u64,
        keys: &OnlineKeys,
        now: jiff::Timestamp,
    ) -> Result<u64, TufError> {
        let version = self.timestamp()?.map_or(1, |t| t.signed.version.get() + 1);
        let mut timestamp =
            Timestamp::new(SPEC_VERSION.into(), non_zero(version)?, expires_after(now, TIMESTAMP_VALID_SECS)?);
        timestamp.meta.insert("snapshot.json".into(), metafile(snapshot_bytes, snapshot_version)?);
        let signed = SignedRole::new(
            timestamp,
            &KeyHolder::Root(root.signed.clone()),
            std::slice::from_ref(&keys.timestamp),
            &SystemRandom::new(),
        )
        .await
        .map_err(TufError::tough("signing timestamp.json (is this the timestamp key of the root?)"))?;
        write_atomic(&self.dir.join("timestamp.json"), signed.buffer())?;
        Ok(version)
    }
}

/// Length, SHA-256 and version of a metadata file, as a snapshot or timestamp lists it.
fn metafile(bytes: &[u8], version: u64) -> Result<Metafile, TufError> {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    Ok(Metafile {
        length: Some(bytes.len() as u64),
        hashes: Some(Hashes { sha256: digest.as_ref().to_vec().into(), _extra: HashMap::new() }),
        version: non_zero(version)?,
        _extra: HashMap::new(),
    })
}

/// Publishes a new snapshot and timestamp for targets `version` without checking who signed it:
/// what a server holding the online keys could do if it were taken over. For tests of the
/// agent's checks only.
#[doc(hidden)]
pub async fn publish_unchecked_for_tests(
    repo: &Repo,
    version: u64,
    targets_bytes: &[u8],
    keys: &OnlineKeys,
    now: jiff::Timestamp,
) -> Result<Published, TufError> {
    let root = repo.latest_root()?;
    repo.publish_snapshot(&root, version, targets_bytes, keys, now).await
}
