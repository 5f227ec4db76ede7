//! Package bytes on disk, content-addressed by SHA-256.
//!
//! Uploads stream into a temporary file while being hashed and counted; only a complete
//! upload whose hash matches what the client declared is renamed into place, so a truncated,
//! oversized or corrupt upload leaves nothing behind.

use std::path::{Path, PathBuf};

use anyhow::Context;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Where package bytes live.
#[derive(Debug)]
pub struct PackageStore {
    root: PathBuf,
}

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Over the server's limit.
    #[error("package is larger than the server's limit of {limit_bytes} bytes")]
    TooLarge {
        /// The limit.
        limit_bytes: u64,
    },
    /// The bytes do not hash to what the client declared.
    #[error("upload is corrupt: its SHA-256 is {actual}, but the client declared {declared}")]
    HashMismatch {
        /// Declared by the client.
        declared: String,
        /// Computed by the server.
        actual: String,
    },
    /// The body ended early or failed.
    #[error("upload was interrupted: {0}")]
    Interrupted(String),
    /// An empty body.
    #[error("upload is empty")]
    Empty,
    /// Disk trouble.
    #[error("could not store the upload: {0}")]
    Io(#[from] std::io::Error),
}

/// A stored upload.
#[derive(Clone, Debug)]
pub struct Stored {
    /// Hex SHA-256.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

/// True for a 64-character lower-case hex string.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl PackageStore {
    /// Opens (creating) the store under `root`, removing temporary files that a crash left.
    ///
    /// The directory may be shared by several replicas, so only temporary files older than a
    /// day are removed: a younger one may be another replica's upload in progress.
    pub fn open(root: &Path) -> anyhow::Result<PackageStore> {
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp).with_context(|| format!("while creating {}", tmp.display()))?;
        let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(24 * 3600);
        for entry in std::fs::read_dir(&tmp)?.flatten() {
            let stale = entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < day_ago);
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        std::fs::create_dir_all(root.join("sha256"))?;
        Ok(PackageStore { root: root.to_path_buf() })
    }

    /// The file holding these bytes (it may not exist).
    pub fn path_of(&self, sha256: &str) -> PathBuf {
        self.root.join("sha256").join(sha256)
    }

    /// Streams `body` to disk, verifying size and (when given) the declared hash.
    pub async fn store<S, E>(
        &self,
        mut body: S,
        declared_sha256: Option<&str>,
        limit_bytes: u64,
    ) -> Result<Stored, UploadError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let tmp_path = self.root.join("tmp").join(crate::bootstrap::new_secret());
        // Removes the temporary file however this future ends, cancellation included (a client
        // that hangs up mid-upload drops the handler).
        let _guard = RemoveOnDrop(tmp_path.clone());
        let result = async {
            let mut file = tokio::fs::File::create(&tmp_path).await?;
            let mut hasher = Sha256::new();
            let mut size: u64 = 0;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| UploadError::Interrupted(e.to_string()))?;
                size += chunk.len() as u64;
                if size > limit_bytes {
                    return Err(UploadError::TooLarge { limit_bytes });
                }
                hasher.update(&chunk);
                file.write_all(&chunk).await?;
            }
            if size == 0 {
                return Err(UploadError::Empty);
            }
            file.sync_all().await?;
            let actual = hex::encode(hasher.finalize());
            if let Some(declared) = declared_sha256 {
                if declared != actual {
                    return Err(UploadError::HashMismatch { declared: declared.to_string(), actual });
                }
            }
            let final_path = self.path_of(&actual);
            tokio::fs::rename(&tmp_path, &final_path).await?;
            // The rename is durable only once the directory is: the database row that names
            // these bytes is written right after.
            tokio::fs::File::open(self.root.join("sha256")).await?.sync_all().await?;
            Ok(Stored { sha256: actual, size })
        }
        .await;
        result
    }

    /// Removes stored bytes that no package names and that are older than a day (younger ones
    /// may belong to an upload whose database row is about to be written, on any replica).
    /// Returns how many files were removed.
    pub fn collect_garbage(&self, referenced: &std::collections::HashSet<String>) -> std::io::Result<usize> {
        let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(24 * 3600);
        let mut removed = 0;
        for entry in std::fs::read_dir(self.root.join("sha256"))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let old = entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < day_ago);
            if old && !referenced.contains(&name) && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Deletes a file when dropped, if it still exists (after a successful rename it does not).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::time::{Duration, SystemTime};

    fn aged(path: &Path, age: Duration) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }

    #[test]
    fn garbage_is_old_unreferenced_bytes_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = PackageStore::open(dir.path()).unwrap();
        for name in ["a", "b", "c"] {
            std::fs::write(store.path_of(name), name).unwrap();
        }
        let two_days = Duration::from_secs(2 * 24 * 3600);
        aged(&store.path_of("a"), two_days);
        aged(&store.path_of("b"), two_days);
        let referenced: HashSet<String> = ["a".to_string()].into();
        assert_eq!(store.collect_garbage(&referenced).unwrap(), 1);
        assert!(store.path_of("a").exists(), "named by a package");
        assert!(!store.path_of("b").exists(), "old and named by none");
        assert!(store.path_of("c").exists(), "young: an upload may be about to name it");
    }

    #[tokio::test]
    async fn an_upload_dropped_midway_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = PackageStore::open(dir.path()).unwrap();
        // A body that sends one chunk and then never ends, like a client that stalls.
        let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"partial"))])
            .chain(futures_util::stream::pending());
        let upload = store.store(Box::pin(body), None, 1 << 20);
        assert!(tokio::time::timeout(Duration::from_millis(200), upload).await.is_err(), "still waiting for bytes");
        let left: Vec<_> = std::fs::read_dir(dir.path().join("tmp")).unwrap().collect();
        assert!(left.is_empty(), "temporary file removed when the upload was dropped: {left:?}");
    }
}
