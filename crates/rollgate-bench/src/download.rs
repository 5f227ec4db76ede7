//! Figure 6, artifact downloads: many concurrent agents download one large package, from
//! Rollgate and then from nginx serving the same file, with the server's memory sampled.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::load::connect;

/// Throughput of one round of downloads.
#[derive(Clone, Debug, Serialize)]
pub struct DownloadRun {
    /// What served them.
    pub target: String,
    /// Concurrent downloads.
    pub downloads: u32,
    /// Bytes of each.
    pub size_bytes: u64,
    /// Seconds until the last one finished.
    pub seconds: f64,
    /// All bytes ÷ seconds, in MiB/s.
    pub mib_per_sec: f64,
    /// Downloads that failed or came back short.
    pub errors: u64,
    /// The server's resident memory before the round, KiB.
    pub rss_before_kib: u64,
    /// Its largest resident memory during the round, KiB.
    pub rss_peak_kib: u64,
}

/// Downloads `path` (`size_bytes` long) over `downloads` concurrent connections, connection `i`
/// presenting `agents[i % len]`; samples the resident memory of `pids` meanwhile.
pub async fn round(
    target: &str,
    addr: SocketAddr,
    agents: &[Arc<rustls::ClientConfig>],
    path: &str,
    size_bytes: u64,
    downloads: u32,
    rss: impl Fn() -> u64 + Send + 'static,
) -> DownloadRun {
    let rss_before_kib = rss();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        loop {
            peak = peak.max(rss());
            tokio::select! {
                _ = stop_rx.changed() => return peak.max(rss()),
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    });
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..downloads as usize {
        let (tls, path, errors) = (agents[i % agents.len()].clone(), path.to_string(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let ok = match connect(tls, addr).await {
                Ok((mut conn, _, _)) => {
                    matches!(conn.get(&path).await, Ok((status, len)) if status.is_success() && len == size_bytes)
                }
                Err(_) => false,
            };
            if !ok {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let rss_peak_kib = sampler.await.unwrap_or(0);
    let errors = errors.load(Ordering::Relaxed);
    let bytes = (u64::from(downloads) - errors) * size_bytes;
    DownloadRun {
        target: target.to_string(),
        downloads,
        size_bytes,
        seconds,
        mib_per_sec: bytes as f64 / seconds / (1024.0 * 1024.0),
        errors,
        rss_before_kib,
        rss_peak_kib,
    }
}

/// A file of `size_bytes` pseudo-random bytes (incompressible, like a real package).
pub fn random_file(path: &std::path::Path, size_bytes: u64) -> anyhow::Result<()> {
    use rand::{RngCore, SeedableRng};
    use std::io::Write;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = size_bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        rng.fill_bytes(&mut chunk[..n]);
        out.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(())
}
