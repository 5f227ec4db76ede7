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
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

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
