//! Advisory feeds: their configuration, what was last fetched from each URL, and their runs.

use jiff::Timestamp;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::sql::{ms, ts};
use crate::{Result, StoreError};

/// A configured feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedRecord {
    /// Unique name.
    pub name: String,
    /// `csaf` (a provider's `provider-metadata.json`), `osv` (an archive of OSV records), `dir`
    /// (a directory on the server).
    pub kind: String,
    /// Where.
    pub url: String,
    /// A CA to trust for this feed's HTTPS server besides the public roots.
    pub ca_pem: Option<String>,
    /// Seconds between runs.
    pub interval_secs: u64,
    /// When the next run is due.
    pub next_run_at: Timestamp,
    /// When it was added.
    pub created_at: Timestamp,
}

/// What was last fetched from one URL of a feed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedFile {
    /// The server's `ETag`.
    pub etag: Option<String>,
    /// The server's `Last-Modified`.
    pub last_modified: Option<String>,
    /// SHA-256 of the bytes.
    pub sha256: Option<String>,
    /// The change time the feed's index gave for it (CSAF `changes.csv`, ROLIE `updated`).
    pub changed_at: Option<String>,
    /// The body, kept for a feed's index documents only (a 304 answer does not repeat it).
    pub body: Option<String>,
}

/// One run of a feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedRun {
    /// Feed name.
    pub feed: String,
    /// Started.
    pub started_at: Timestamp,
    /// Finished.
    pub finished_at: Timestamp,
    /// HTTP requests made (or files looked at, for a directory).
    pub requests: u64,
    /// Bodies downloaded (or files read) because they changed.
    pub downloaded: u64,
    /// Documents imported that were new or newer.
    pub imported: u64,
    /// Documents read that changed nothing.
    pub unchanged: u64,
    /// Documents or requests that failed.
    pub failed: u64,
    /// What failed, one line each (bounded).
    pub errors: Vec<String>,
}

fn u64_of(row: &AnyRow, column: &str) -> Result<u64> {
    u64::try_from(row.try_get::<i64, _>(column)?).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn feed_from_row(row: &AnyRow) -> Result<FeedRecord> {
    Ok(FeedRecord {
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        url: row.try_get("url")?,
        ca_pem: row.try_get("ca_pem")?,
        interval_secs: u64_of(row, "interval_secs")?,
        next_run_at: ts(row.try_get("next_run_at")?)?,
        created_at: ts(row.try_get("created_at")?)?,
    })
}

/// Adds a feed.
pub(crate) async fn create(pool: &AnyPool, f: &FeedRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO feeds (name, kind, url, ca_pem, interval_secs, next_run_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&f.name)
    .bind(&f.kind)
    .bind(&f.url)
    .bind(&f.ca_pem)
    .bind(i64_of(f.interval_secs))
    .bind(ms(f.next_run_at))
    .bind(ms(f.created_at))
    .execute(pool)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(format!("a feed named {} exists already", f.name))
        }
        _ => e.into(),
    })?;
    Ok(())
}

/// Every feed, by name.
pub(crate) async fn list(pool: &AnyPool) -> Result<Vec<FeedRecord>> {
    let rows = sqlx::query("SELECT * FROM feeds ORDER BY name").fetch_all(pool).await?;
    rows.iter().map(feed_from_row).collect()
}

/// One feed.
pub(crate) async fn get(pool: &AnyPool, name: &str) -> Result<FeedRecord> {
    let row = sqlx::query("SELECT * FROM feeds WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("feed `{name}`")))?;
    feed_from_row(&row)
}

/// Sets when the feed runs next.
pub(crate) async fn schedule(pool: &AnyPool, name: &str, at: Timestamp) -> Result<()> {
    sqlx::query("UPDATE feeds SET next_run_at = $1 WHERE name = $2").bind(ms(at)).bind(name).execute(pool).await?;
    Ok(())
}

/// What was last fetched from `url`.
pub(crate) async fn file(pool: &AnyPool, feed: &str, url: &str) -> Result<Option<FeedFile>> {
    let row = sqlx::query("SELECT * FROM feed_files WHERE feed = $1 AND url = $2")
        .bind(feed)
        .bind(url)
        .fetch_optional(pool)
        .await?;
    row.map(|r| {
        Ok(FeedFile {
            etag: r.try_get("etag")?,
            last_modified: r.try_get("last_modified")?,
            sha256: r.try_get("sha256")?,
            changed_at: r.try_get("changed_at")?,
            body: r.try_get("body")?,
        })
    })
    .transpose()
}

/// Records what was fetched from `url`.
pub(crate) async fn put_file(pool: &AnyPool, feed: &str, url: &str, f: &FeedFile) -> Result<()> {
    sqlx::query(
        "INSERT INTO feed_files (feed, url, etag, last_modified, sha256, changed_at, body) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (feed, url) DO UPDATE SET etag = excluded.etag, last_modified = excluded.last_modified,
             sha256 = excluded.sha256, changed_at = excluded.changed_at, body = excluded.body",
    )
    .bind(feed)
    .bind(url)
    .bind(&f.etag)
    .bind(&f.last_modified)
    .bind(&f.sha256)
    .bind(&f.changed_at)
    .bind(&f.body)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records a run.
pub(crate) async fn record_run(pool: &AnyPool, r: &FeedRun) -> Result<()> {
    // Errors are kept readable, not complete: a broken feed can fail on every document.
    let errors: Vec<&String> = r.errors.iter().take(50).collect();
    let errors =
        if errors.is_empty() { None } else { Some(errors.iter().map(|e| e.as_str()).collect::<Vec<_>>().join("\n")) };
    sqlx::query(
        "INSERT INTO feed_runs (feed, started_at, finished_at, requests, downloaded, imported, unchanged, failed, errors)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&r.feed)
    .bind(ms(r.started_at))
    .bind(ms(r.finished_at))
    .bind(i64_of(r.requests))
    .bind(i64_of(r.downloaded))
    .bind(i64_of(r.imported))
    .bind(i64_of(r.unchanged))
    .bind(i64_of(r.failed))
    .bind(errors)
    .execute(pool)
    .await?;
    Ok(())
}

/// The newest `limit` runs of a feed, newest first.
pub(crate) async fn runs(pool: &AnyPool, feed: &str, limit: u32) -> Result<Vec<FeedRun>> {
    let rows = sqlx::query("SELECT * FROM feed_runs WHERE feed = $1 ORDER BY id DESC LIMIT $2")
        .bind(feed)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            let errors: Option<String> = r.try_get("errors")?;
            Ok(FeedRun {
                feed: r.try_get("feed")?,
                started_at: ts(r.try_get("started_at")?)?,
                finished_at: ts(r.try_get("finished_at")?)?,
                requests: u64_of(r, "requests")?,
                downloaded: u64_of(r, "downloaded")?,
                imported: u64_of(r, "imported")?,
                unchanged: u64_of(r, "unchanged")?,
                failed: u64_of(r, "failed")?,
                errors: errors.map(|e| e.lines().map(str::to_string).collect()).unwrap_or_default(),
            })
        })
        .collect()
}
