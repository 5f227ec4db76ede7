//! The signed update repository (TUF) the server publishes: roots and targets roles signed on
//! operators' machines are checked and published here with a new snapshot and timestamp,
//! signed with the online keys, the only TUF keys the server holds. See `rollgate_tuf`.

use std::path::PathBuf;

use rollgate_tuf::publish::{OnlineKeys, Published, Repo};

/// The repository and, when configured, the online keys.
pub struct Tuf {
    repo: Repo,
    keys: Option<OnlineKeys>,
    /// One publish at a time in this process (versions are read, then the next written); the
    /// lock file does the same across the replicas sharing the directory.
    publishing: tokio::sync::Mutex<()>,
}

/// An exclusive `flock` on the repository directory's lock file, held until dropped. Replicas
/// share the directory (`--tuf-dir`, like `--package-dir`); two of them publishing at once
/// would both write snapshot N+1, with different contents.
struct DirLock(#[allow(dead_code)] std::fs::File);

async fn lock_dir(dir: &std::path::Path) -> Result<DirLock, rollgate_tuf::TufError> {
    let path = dir.join(".publish.lock");
    let shown = path.clone();
    let locked = tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
        Ok::<_, std::io::Error>(DirLock(file))
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    locked.map_err(|source| rollgate_tuf::TufError::Io { what: "locking", path: shown, source })
}

impl Tuf {
    /// Opens the repository in `dir`, with the online keys if both files are given.
    pub fn open(dir: &std::path::Path, keys: Option<(PathBuf, PathBuf)>) -> anyhow::Result<Tuf> {
        let repo = Repo::open(dir)?;
        let keys = keys.map(|(snapshot, timestamp)| OnlineKeys::from_files(&snapshot, &timestamp));
        Ok(Tuf { repo, keys, publishing: tokio::sync::Mutex::new(()) })
    }

    /// Adds a root to the chain (checked: see `Repo::add_root`).
    pub async fn add_root(&self, bytes: &[u8]) -> Result<u64, rollgate_tuf::TufError> {
        let _one = self.publishing.lock().await;
        let _all = lock_dir(self.repo.dir()).await?;
        Ok(self.repo.add_root(bytes)?.signed.version.get())
    }

    /// Publishes a targets role signed elsewhere.
    pub async fn publish_targets(&self, bytes: &[u8]) -> Result<Published, PublishError> {
        let keys = self.keys.as_ref().ok_or(PublishError::NoKeys)?;
        let _one = self.publishing.lock().await;
        let _all = lock_dir(self.repo.dir()).await.map_err(PublishError::Refused)?;
        self.repo.publish_targets(bytes, keys, jiff::Timestamp::now()).await.map_err(PublishError::Refused)
    }

    /// The newest root published, as published (None without a repository).
    pub fn latest_root_json(&self) -> Option<String> {
        let version = self.repo.latest_root().ok()?.signed.version.get();
        std::fs::read_to_string(self.repo.dir().join(format!("{version}.root.json"))).ok()
    }

    /// The bytes of metadata file `name` (`<n>.root.json`, `<n>.targets.json`,
    /// `<n>.snapshot.json` or `timestamp.json`), if published.
    pub fn metadata(&self, name: &str) -> Option<Vec<u8>> {
        if !is_metadata_name(name) {
            return None;
        }
        std::fs::read(self.repo.dir().join(name)).ok()
    }
}

/// How often the server looks at the timestamp's expiry.
const TIMESTAMP_CHECK_SECS: u64 = 600;
/// Re-sign the timestamp when it has less than this left (it lives a day): endpoints keep
/// trusting the repository while the server runs, and stop within hours once it stops signing.
const TIMESTAMP_RENEW_BEFORE_SECS: i64 = 12 * 3600;

impl Tuf {
    /// Whether the timestamp should be re-signed at `now`.
    fn timestamp_due(&self, now: jiff::Timestamp) -> bool {
        match self.repo.timestamp() {
            Ok(Some(t)) => t.signed.expires.as_second() - now.as_second() < TIMESTAMP_RENEW_BEFORE_SECS,
            _ => false,
        }
    }

    /// Re-signs the timestamp if it is due; returns the new version when it did.
    pub async fn renew_timestamp_if_due(&self, now: jiff::Timestamp) -> Result<Option<u64>, rollgate_tuf::TufError> {
        let Some(keys) = &self.keys else { return Ok(None) };
        let _one = self.publishing.lock().await;
        let _all = lock_dir(self.repo.dir()).await?;
        if !self.timestamp_due(now) {
            return Ok(None);
        }
        self.repo.refresh_timestamp(keys, now).await.map(Some)
    }
}

/// Keeps the timestamp fresh, on one replica at a time (the `tuf-timestamp` lease).
pub async fn renew_timestamps(state: crate::AppState) {
    const LEASE: &str = "tuf-timestamp";
    let lease_ms = i64::try_from(TIMESTAMP_CHECK_SECS * 3 * 1000).unwrap_or(i64::MAX);
    loop {
        let now = jiff::Timestamp::now();
        match state.store.try_lease(LEASE, &state.replica_id, now, lease_ms).await {
            Ok(true) => match state.tuf.renew_timestamp_if_due(now).await {
                Ok(Some(version)) => tracing::info!(version, "TUF timestamp re-signed"),
                Ok(None) => {}
                Err(e) => tracing::warn!("could not re-sign the TUF timestamp: {e}"),
            },
            Ok(false) => {}
            Err(e) => tracing::warn!("could not take the TUF timestamp lease: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(TIMESTAMP_CHECK_SECS)).await;
    }
}

/// Why a targets role was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The server was started without the online keys.
    #[error(
        "this server has no snapshot and timestamp keys (start it with --tuf-snapshot-key and --tuf-timestamp-key)"
    )]
    NoKeys,
    /// The role was refused.
    #[error("{0}")]
    Refused(rollgate_tuf::TufError),
}

/// Whether `name` is a metadata file name this repository serves.
fn is_metadata_name(name: &str) -> bool {
    if name == "timestamp.json" {
        return true;
    }
    let Some((version, role)) = name.split_once('.') else { return false };
    !version.is_empty()
        && version.len() <= 19
        && version.bytes().all(|b| b.is_ascii_digit())
        && matches!(role, "root.json" | "targets.json" | "snapshot.json")
}

#[cfg(test)]
mod tests {
    use super::is_metadata_name;

    #[tokio::test]
    async fn the_timestamp_is_renewed_only_when_it_nears_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let now = jiff::Timestamp::now();
        let keys = rollgate_tuf::keys::init(&dir.path().join("op"), 1, 1, now).await.unwrap();
        let tuf =
            super::Tuf::open(&dir.path().join("repo"), Some((keys.snapshot_key.clone(), keys.timestamp_key.clone())))
                .unwrap();
        tuf.add_root(&std::fs::read(&keys.root).unwrap()).await.unwrap();
        let root = rollgate_tuf::targets::parse("root.json", &std::fs::read(&keys.root).unwrap()).unwrap();
        let (_, targets) = rollgate_tuf::targets::sign(&root, None, &[], &keys.targets_key, 90, now).await.unwrap();
        tuf.publish_targets(&targets).await.unwrap();
        assert_eq!(tuf.renew_timestamp_if_due(now).await.unwrap(), None, "fresh: a day left");
        let later = now + jiff::SignedDuration::from_hours(13);
        assert_eq!(tuf.renew_timestamp_if_due(later).await.unwrap(), Some(2), "11 hours left: renewed");
        assert_eq!(tuf.renew_timestamp_if_due(later).await.unwrap(), None, "renewed already");
    }

    #[tokio::test]
    async fn replicas_sharing_the_directory_publish_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let now = jiff::Timestamp::now();
        let keys = rollgate_tuf::keys::init(&dir.path().join("op"), 1, 1, now).await.unwrap();
        let online = || Some((keys.snapshot_key.clone(), keys.timestamp_key.clone()));
        let repo = dir.path().join("repo");
        let (a, b) = (super::Tuf::open(&repo, online()).unwrap(), super::Tuf::open(&repo, online()).unwrap());
        a.add_root(&std::fs::read(&keys.root).unwrap()).await.unwrap();
        let root = rollgate_tuf::targets::parse("root.json", &std::fs::read(&keys.root).unwrap()).unwrap();
        let (_, targets) = rollgate_tuf::targets::sign(&root, None, &[], &keys.targets_key, 90, now).await.unwrap();

        // Replica A holds the lock (as while publishing); replica B's publish waits for it.
        let held = super::lock_dir(&repo).await.unwrap();
        let b_publish = b.publish_targets(&targets);
        tokio::pin!(b_publish);
        let waited = tokio::time::timeout(std::time::Duration::from_millis(300), &mut b_publish).await;
        assert!(waited.is_err(), "B published while A held the lock");
        drop(held);
        let published = b_publish.await.unwrap();
        assert_eq!((published.targets, published.snapshot), (1, 1));
    }

    #[test]
    fn only_metadata_names_are_served() {
        for ok in ["timestamp.json", "1.root.json", "12.targets.json", "3.snapshot.json"] {
            assert!(is_metadata_name(ok), "{ok}");
        }
        for bad in
            ["root.json", "../1.root.json", "1.timestamp.json", "x.root.json", ".root.json", "1.root.json/x", "keys"]
        {
            assert!(!is_metadata_name(bad), "{bad}");
        }
    }
}
