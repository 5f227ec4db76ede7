//! Resumable, verified downloads. Bytes land in `downloads/<sha256>.part`; an interrupted
//! download continues from where it stopped (HTTP `Range`); a complete file is hashed and only
//! a file whose SHA-256 matches the assignment is renamed to `<sha256>.pkg` and ever installed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::Client;

/// A download that did not produce verified bytes.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// Network or server trouble; the partial file is kept for resuming.
    #[error("{0}")]
    Transfer(String),
    /// The bytes are not the ones the server promised; they were deleted, never installed.
    #[error("SHA-256 mismatch: expected {expected}, got {actual}; the file was deleted and not installed")]
    HashMismatch {
        /// From the assignment.
        expected: String,
        /// Of the bytes received.
        actual: String,
    },
    /// More bytes than promised.
    #[error("the server sent more than the package's {expected} bytes; the file was deleted and not installed")]
    TooLong {
        /// From the assignment.
        expected: u64,
    },
    /// Local disk trouble.
    #[error("disk error: {0}")]
    Io(#[from] std::io::Error),
}

/// A read that delivers nothing for this long is treated as a stalled connection.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How fast a transfer must go: at least `min_bytes` in every `window`. A server that sends a
/// byte now and then is never stalled, yet would hold a slot for ever; TUF left this to the
/// transport (its "slow retrieval" attack).
#[derive(Clone, Copy, Debug)]
pub struct MinRate {
    /// The span over which the rate is measured.
    pub window: Duration,
    /// Bytes the transfer must deliver in each window.
    pub min_bytes: u64,
}

/// 1 KiB/s averaged over a minute: any real link manages it, a trickle does not.
pub const MIN_RATE: MinRate = MinRate { window: Duration::from_secs(60), min_bytes: 60 * 1024 };

/// Measures a transfer against a [`MinRate`]. Pure: the caller passes the time.
#[derive(Debug)]
pub struct Pace {
    limit: MinRate,
    window_start: tokio::time::Instant,
    window_bytes: u64,
}

impl Pace {
    /// A transfer starting at `now`, held to [`MIN_RATE`].
    pub fn new(now: tokio::time::Instant) -> Pace {
        Pace::with_limit(MIN_RATE, now)
    }

    /// A transfer starting at `now`, held to `limit`.
    pub fn with_limit(limit: MinRate, now: tokio::time::Instant) -> Pace {
        Pace { limit, window_start: now, window_bytes: 0 }
    }

    /// Counts `bytes` received at `now`; an error once a whole window went by below the rate.
    pub fn record(&mut self, bytes: u64, now: tokio::time::Instant) -> Result<(), String> {
        self.window_bytes = self.window_bytes.saturating_add(bytes);
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < self.limit.window {
            return Ok(());
        }
        if self.window_bytes < self.limit.min_bytes {
            return Err(format!(
                "too slow: {} bytes in {} s, below the minimum of {} bytes per {} s",
                self.window_bytes,
                elapsed.as_secs(),
                self.limit.min_bytes,
                self.limit.window.as_secs()
            ));
        }
        self.window_start = now;
        self.window_bytes = 0;
        Ok(())
    }
}

/// Lower-case hex SHA-256 of a file, read in 256 KiB pieces (packages may be large).
pub async fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Returns the path of the verified package, downloading what is missing.
pub async fn fetch_verified(
    client: &Client,
    dir: &Path,
    download_path: &str,
    sha256: &str,
    size: u64,
) -> Result<PathBuf, DownloadError> {
    fetch_verified_at_rate(client, dir, download_path, sha256, size, MIN_RATE).await
}

/// [`fetch_verified`], holding the transfer to `min_rate` (tests use a short window).
pub async fn fetch_verified_at_rate(
    client: &Client,
    dir: &Path,
    download_path: &str,
    sha256: &str,
    size: u64,
    min_rate: MinRate,
) -> Result<PathBuf, DownloadError> {
    let done = dir.join(format!("{sha256}.pkg"));
    let part = dir.join(format!("{sha256}.part"));
    if done.exists() {
        // Re-check: the file sat on disk between attempts.
        let actual = sha256_file(&done).await?;
        if actual == sha256 {
            return Ok(done);
        }
        tokio::fs::remove_file(&done).await?;
    }
    let mut offset = match tokio::fs::metadata(&part).await {
        Ok(meta) => meta.len(),
        Err(_) => 0,
    };
    if offset > size {
        tokio::fs::remove_file(&part).await?;
        offset = 0;
    }
    if offset < size {
        if offset > 0 {
            tracing::info!("resuming the download of {sha256} at byte {offset} of {size}");
        }
        let response =
            client.download(download_path, offset).await.map_err(|e| DownloadError::Transfer(e.to_string()))?;
        let append = response.status() == StatusCode::PARTIAL_CONTENT;
        if response.status() == StatusCode::RANGE_NOT_SATISFIABLE {
            // Our partial file is not a prefix the server knows; start over.
            tokio::fs::remove_file(&part).await?;
            return Err(DownloadError::Transfer("server refused the resume range; starting over".into()));
        }
        let mut file =
            tokio::fs::OpenOptions::new().create(true).write(true).append(append).truncate(!append).open(&part).await?;
        let mut written = if append { offset } else { 0 };
        let mut stream = response.bytes_stream();
        let mut pace = Pace::with_limit(min_rate, tokio::time::Instant::now());
        loop {
            let next = tokio::time::timeout(STALL_TIMEOUT, stream.next()).await;
            let chunk = match next {
                Err(_) => {
                    file.flush().await?;
                    return Err(DownloadError::Transfer(format!("download stalled for {} s", STALL_TIMEOUT.as_secs())));
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    file.flush().await?;
                    return Err(DownloadError::Transfer(format!("download interrupted after {written} bytes: {e}")));
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            written += chunk.len() as u64;
            if written > size {
                drop(file);
                tokio::fs::remove_file(&part).await?;
                return Err(DownloadError::TooLong { expected: size });
            }
            file.write_all(&chunk).await?;
            if let Err(slow) = pace.record(chunk.len() as u64, tokio::time::Instant::now()) {
                // Kept for resuming: the next try may reach a faster server or path.
                file.flush().await?;
                return Err(DownloadError::Transfer(format!("download cut off after {written} bytes: {slow}")));
            }
        }
        file.sync_all().await?;
        if written < size {
            return Err(DownloadError::Transfer(format!("download ended early: {written} of {size} bytes")));
        }
    }
    let actual = sha256_file(&part).await?;
    if actual != sha256 {
        tokio::fs::remove_file(&part).await?;
        return Err(DownloadError::HashMismatch { expected: sha256.to_string(), actual });
    }
    tokio::fs::rename(&part, &done).await?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transfer_below_the_minimum_rate_is_cut_off_after_a_whole_window() {
        let start = tokio::time::Instant::now();
        let limit = MinRate { window: Duration::from_secs(10), min_bytes: 1000 };
        let at = |secs| start + Duration::from_secs(secs);
        let mut pace = Pace::with_limit(limit, start);
        // A byte every 9 s never stalls, but falls below the rate once a window has passed.
        assert!(pace.record(1, at(9)).is_ok());
        let err = pace.record(1, at(18)).unwrap_err();
        assert!(err.contains("2 bytes in 18 s"), "{err}");
        // A fast transfer is measured window by window.
        let mut pace = Pace::with_limit(limit, start);
        assert!(pace.record(600, at(5)).is_ok());
        assert!(pace.record(600, at(10)).is_ok(), "1200 bytes in the first window");
        assert!(pace.record(999, at(20)).is_err(), "999 bytes in the second");
    }
}
