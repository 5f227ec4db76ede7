//! The vulnerability download phase: the server polls the configured advisory feeds on their
//! schedule, fetches only what changed, imports it, and records every run.
//!
//! Kinds:
//! - `csaf`: a CSAF provider's `provider-metadata.json`. Its `distributions` give directories
//!   (read through their `changes.csv`: path and change time per document) and ROLIE feeds
//!   (entries with an `updated` time and a `content.src`). A document is fetched only when its
//!   listed change time differs from the one recorded at its last successful import.
//! - `osv`: an HTTPS URL of a zip archive of OSV records (OSV publishes `all.zip` per
//!   ecosystem), fetched when it changed, every `.json` member imported.
//! - `dir`: a directory on the server, every `.json`/`.xml` file whose size or modification time
//!   changed imported.
//!
//! Every request is conditional (`If-None-Match`, `If-Modified-Since`) on what was recorded of
//! that URL. An index (`changes.csv`, a ROLIE feed) is recorded only when every document it
//! listed was imported, so a failed document is tried again at the next run.

use std::time::Duration;

use anyhow::Context;
use jiff::Timestamp;
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::StatusCode;
use rollgate_store::{FeedFile, FeedRecord, FeedRun};
use sha2::{Digest, Sha256};

use crate::AppState;

/// Largest body fetched (an OSV `all.zip` of a large ecosystem is tens of MB).
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;
/// How often the poller looks for due feeds.
const POLL_EVERY: Duration = Duration::from_secs(30);
/// A run holds its feed's lease this long at most.
const RUN_LEASE_MS: i64 = 30 * 60 * 1000;

/// A run in progress: its counts and errors.
struct Run<'a> {
    state: &'a AppState,
    feed: &'a FeedRecord,
    http: reqwest::Client,
    record: FeedRun,
    /// Documents already handled in this run (a document listed by two indexes is fetched once).
    handled: std::collections::HashSet<String>,
    /// When this run last renewed its lease.
    lease_renewed: tokio::time::Instant,
}

/// The lease that keeps a feed's runs on one replica.
fn lease_name(feed: &str) -> String {
    format!("feed:{feed}")
}

/// Feeds running in this process: a manual run and the poller never run one feed at once.
static RUNNING: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> =
    std::sync::LazyLock::new(Default::default);

/// Marks `feed` running in this process until dropped; None when it already runs.
pub struct Running(String);

impl Running {
    /// Claims `feed`.
    pub fn claim(feed: &str) -> Option<Running> {
        let mut running = RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        running.insert(feed.to_string()).then(|| Running(feed.to_string()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.0);
    }
}

/// How often a long run renews its lease (the lease lasts `RUN_LEASE_MS`).
const LEASE_RENEW_EVERY: Duration = Duration::from_secs(300);

/// Takes the feed's lease for this replica; false when another replica holds it.
pub async fn take_lease(state: &AppState, feed: &str) -> anyhow::Result<bool> {
    Ok(state.store.try_lease(&lease_name(feed), &state.replica_id, Timestamp::now(), RUN_LEASE_MS).await?)
}

/// Gives the lease up at once (it expires now), so another replica may run the feed.
pub async fn release_lease(state: &AppState, feed: &str) {
    if let Err(e) = state.store.try_lease(&lease_name(feed), &state.replica_id, Timestamp::now(), 0).await {
        tracing::warn!(feed, "could not release the feed lease: {e}");
    }
}

/// What a conditional GET gave.
enum Fetched {
    /// The server says it did not change.
    NotModified,
    /// A body, and what to record of it once it was handled.
    Body(Vec<u8>, FeedFile),
}

/// An HTTPS client trusting the public roots and the feed's own CA, if it has one.
fn client_for(feed: &FeedRecord) -> anyhow::Result<reqwest::Client> {
    let host = feed_origin(&feed.url);
    // Redirects only within the feed's own origin: a provider must not steer the server (and
    // the CA trusted for this feed) towards other hosts.
    let redirects = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 5 {
            attempt.error("more than 5 redirects")
        } else if host.is_some() && origin_of(attempt.url()) == host {
            attempt.follow()
        } else {
            attempt.error("a redirect to another host")
        }
    });
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .https_only(true)
        .redirect(redirects)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(600))
        .user_agent(concat!("rollgate/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &feed.ca_pem {
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes())?);
    }
    Ok(builder.build()?)
}

/// The scheme, host and port of a URL.
fn origin_of(url: &url::Url) -> Option<(String, String, Option<u16>)> {
    Some((url.scheme().to_string(), url.host_str()?.to_string(), url.port_or_known_default()))
}

fn feed_origin(url: &str) -> Option<(String, String, Option<u16>)> {
    url::Url::parse(url).ok().as_ref().and_then(origin_of)
}

/// Refuses a URL a provider's document points to outside the feed's origin.
fn ensure_same_origin(feed_url: &str, url: &str) -> anyhow::Result<()> {
    let parsed = url::Url::parse(url).with_context(|| format!("bad URL {url}"))?;
    if origin_of(&parsed).is_none() || origin_of(&parsed) != feed_origin(feed_url) {
        anyhow::bail!("{url} is not on the feed's host ({feed_url}); add it as a feed of its own");
    }
    Ok(())
}

impl Run<'_> {
    fn fail(&mut self, what: impl std::fmt::Display) {
        self.record.failed += 1;
        tracing::warn!(feed = %self.feed.name, "{what}");
        self.record.errors.push(what.to_string());
    }

    /// Renews the lease when it is due; an error when another replica took the feed over.
    async fn keep_lease(&mut self) -> anyhow::Result<()> {
        if self.lease_renewed.elapsed() < LEASE_RENEW_EVERY {
            return Ok(());
        }
        if !take_lease(self.state, &self.feed.name).await? {
            anyhow::bail!("another server took this feed over; stopping this run");
        }
        self.lease_renewed = tokio::time::Instant::now();
        Ok(())
    }

    /// A conditional GET of `url`.
    async fn fetch(&mut self, url: &str) -> anyhow::Result<Fetched> {
        self.keep_lease().await?;
        if self.feed.kind != "dir" {
            ensure_same_origin(&self.feed.url, url)?;
        }
        let before = self.state.store.feed_file(&self.feed.name, url).await?.unwrap_or_default();
        let mut request = self.http.get(url);
        if let Some(etag) = &before.etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(modified) = &before.last_modified {
            request = request.header(IF_MODIFIED_SINCE, modified);
        }
        self.record.requests += 1;
        let response = request.send().await.with_context(|| format!("GET {url}"))?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified);
        }
        if !response.status().is_success() {
            anyhow::bail!("GET {url}: HTTP {}", response.status().as_u16());
        }
        let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (etag, last_modified) = (header(ETAG), header(LAST_MODIFIED));
        if response.content_length().is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            anyhow::bail!("GET {url}: larger than {MAX_BODY_BYTES} bytes");
        }
        let body = read_capped(response, url).await?;
        self.record.downloaded += 1;
        let sha256 = hex::encode(Sha256::digest(&body));
        Ok(Fetched::Body(body, FeedFile { etag, last_modified, sha256: Some(sha256), changed_at: None, body: None }))
    }

    /// Imports one document; true when it was handled (imported or unchanged).
    async fn import(&mut self, name: &str, bytes: &[u8]) -> bool {
        let document = match rollgate_advisories::parse(bytes) {
            Ok(d) => d,
            Err(e) => {
                self.fail(format!("{name}: {e}"));
                return false;
            }
        };
        match crate::api::advisories::store_document(self.state, &document).await {
            Ok(import) => {
                if import.items.iter().any(|i| i.outcome == "new" || i.outcome == "updated") {
                    self.record.imported += 1;
                } else {
                    self.record.unchanged += 1;
                }
                true
            }
            Err(e) => {
                self.fail(format!("{name}: {}", e.message()));
                false
            }
        }
    }
}

/// Reads a body, refusing it past `MAX_BODY_BYTES` whatever the headers said.
async fn read_capped(response: reqwest::Response, url: &str) -> anyhow::Result<Vec<u8>> {
    use futures_util::StreamExt;
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("GET {url}"))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            anyhow::bail!("GET {url}: larger than {MAX_BODY_BYTES} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Runs `feed` once and records the run. The caller holds the feed's lease and its
/// [`Running`] claim.
pub async fn run_feed(state: &AppState, feed: &FeedRecord) -> FeedRun {
    let started_at = Timestamp::now();
    let record = FeedRun {
        feed: feed.name.clone(),
        started_at,
        finished_at: started_at,
        requests: 0,
        downloaded: 0,
        imported: 0,
        unchanged: 0,
        failed: 0,
        errors: Vec::new(),
    };
    let mut run = match client_for(feed) {
        Ok(http) => Run {
            state,
            feed,
            http,
            record,
            handled: std::collections::HashSet::new(),
            lease_renewed: tokio::time::Instant::now(),
        },
        Err(e) => {
            let mut record = record;
            record.failed = 1;
            record.errors.push(format!("bad CA certificate for this feed: {e}"));
            return finish(state, record).await;
        }
    };
    let outcome = match feed.kind.as_str() {
        "csaf" => run_csaf(&mut run).await,
        "osv" => run_osv_archive(&mut run).await,
        "dir" => run_dir(&mut run).await,
        other => Err(anyhow::anyhow!("unknown feed kind {other}")),
    };
    if let Err(e) = outcome {
        run.fail(format!("{e:#}"));
    }
    finish(state, run.record).await
}

async fn finish(state: &AppState, mut record: FeedRun) -> FeedRun {
    record.finished_at = Timestamp::now();
    if let Err(e) = state.store.record_feed_run(&record).await {
        tracing::warn!(feed = %record.feed, "could not record the run: {e}");
    }
    tracing::info!(
        feed = %record.feed,
        requests = record.requests,
        downloaded = record.downloaded,
        imported = record.imported,
        unchanged = record.unchanged,
        failed = record.failed,
        "feed run finished"
    );
    record
}

/// An index document (provider metadata, changes.csv, ROLIE feed): its body now, from the
/// server or, when unchanged, as recorded; and what to record once its documents are handled.
async fn fetch_index(run: &mut Run<'_>, url: &str) -> anyhow::Result<(String, Option<FeedFile>)> {
    match run.fetch(url).await? {
        Fetched::Body(bytes, mut file) => {
            let text = String::from_utf8(bytes).with_context(|| format!("{url} is not UTF-8"))?;
            file.body = Some(text.clone());
            Ok((text, Some(file)))
        }
        Fetched::NotModified => {
            let recorded = run.state.store.feed_file(&run.feed.name, url).await?.and_then(|f| f.body);
            Ok((recorded.with_context(|| format!("{url} answered 304 but nothing was recorded of it"))?, None))
        }
    }
}

async fn run_csaf(run: &mut Run<'_>) -> anyhow::Result<()> {
    let metadata_url = run.feed.url.clone();
    let (text, changed) = fetch_index(run, &metadata_url).await?;
    let metadata: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{metadata_url} is not JSON"))?;
    let distributions = metadata.get("distributions").and_then(|d| d.as_array()).cloned().unwrap_or_default();
    if distributions.is_empty() {
        anyhow::bail!("{metadata_url} lists no distributions");
    }
    for distribution in &distributions {
        if let Some(dir) = distribution.get("directory_url").and_then(|u| u.as_str()) {
            if let Err(e) = csaf_directory(run, dir).await {
                run.fail(format!("{e:#}"));
            }
        }
        let feeds = distribution.pointer("/rolie/feeds").and_then(|f| f.as_array()).cloned().unwrap_or_default();
        for feed in feeds {
            if let Some(url) = feed.get("url").and_then(|u| u.as_str()) {
                if let Err(e) = rolie_feed(run, url).await {
                    run.fail(format!("{e:#}"));
                }
            }
        }
    }
    if let Some(file) = changed {
        run.state.store.put_feed_file(&run.feed.name, &metadata_url, &file).await?;
    }
    Ok(())
}

/// A reference `href` found in the document at `url`, resolved against it (ROLIE entries).
fn resolve(url: &str, href: &str) -> anyhow::Result<String> {
    Ok(url::Url::parse(url).and_then(|u| u.join(href)).with_context(|| format!("{href} in {url}"))?.to_string())
}

/// A `path` under the directory `base` (a CSAF `directory_url`, with or without its final `/`).
fn join(base: &str, path: &str) -> anyhow::Result<String> {
    let base = if base.ends_with('/') { base.to_string() } else { format!("{base}/") };
    Ok(url::Url::parse(&base).and_then(|b| b.join(path)).with_context(|| format!("{path} under {base}"))?.to_string())
}

/// The `changes.csv` lines: (path, change time).
fn parse_changes_csv(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(',').map(|f| f.trim().trim_matches('"').to_string());
            let path = fields.next().filter(|p| !p.is_empty())?;
            let changed = fields.next()?;
            Some((path, changed))
        })
        .collect()
}

async fn csaf_directory(run: &mut Run<'_>, dir: &str) -> anyhow::Result<()> {
    let changes_url = join(dir, "changes.csv")?;
    let (text, changed) = fetch_index(run, &changes_url).await?;
    let mut all_handled = true;
    for (path, changed_at) in parse_changes_csv(&text) {
        let url = join(dir, &path)?;
        all_handled &= fetch_document(run, &url, &changed_at).await;
    }
    if let (Some(file), true) = (changed, all_handled) {
        run.state.store.put_feed_file(&run.feed.name, &changes_url, &file).await?;
    }
    Ok(())
}

async fn rolie_feed(run: &mut Run<'_>, url: &str) -> anyhow::Result<()> {
    let (text, changed) = fetch_index(run, url).await?;
    let feed: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{url} is not JSON"))?;
    let entries = feed.pointer("/feed/entry").and_then(|e| e.as_array()).cloned().unwrap_or_default();
    let mut all_handled = true;
    for entry in entries {
        let src = entry.pointer("/content/src").and_then(|s| s.as_str());
        let updated = entry.get("updated").and_then(|u| u.as_str()).unwrap_or("");
        if let Some(src) = src {
            let document_url = resolve(url, src)?;
            all_handled &= fetch_document(run, &document_url, updated).await;
        }
    }
    if let (Some(file), true) = (changed, all_handled) {
        run.state.store.put_feed_file(&run.feed.name, url, &file).await?;
    }
    Ok(())
}

/// Fetches and imports one listed document unless its listed change time is the one recorded
/// at its last import; true when it is handled.
async fn fetch_document(run: &mut Run<'_>, url: &str, changed_at: &str) -> bool {
    if !run.handled.insert(url.to_string()) {
        return true;
    }
    // Indexes write times differently (`Z`, `.000Z`, `+00:00`): compare them as instants.
    let normalized = rollgate_advisories::dates::timestamp(changed_at).map(|t| t.to_string());
    let changed_at = normalized.as_deref().unwrap_or(changed_at);
    let recorded = match run.state.store.feed_file(&run.feed.name, url).await {
        Ok(f) => f,
        Err(e) => {
            run.fail(format!("{url}: {e}"));
            return false;
        }
    };
    if recorded.as_ref().and_then(|f| f.changed_at.as_deref()) == Some(changed_at) && !changed_at.is_empty() {
        return true;
    }
    let (bytes, mut file) = match run.fetch(url).await {
        Ok(Fetched::Body(bytes, file)) => (bytes, file),
        Ok(Fetched::NotModified) => return remember_change_time(run, url, recorded, changed_at).await,
        Err(e) => {
            run.fail(format!("{e:#}"));
            return false;
        }
    };
    if recorded.as_ref().and_then(|f| f.sha256.as_ref()) == file.sha256.as_ref() {
        // The same bytes under a new listed time: nothing to import.
        run.record.unchanged += 1;
    } else if !run.import(url, &bytes).await {
        return false;
    }
    file.changed_at = Some(changed_at.to_string());
    record_file(run, url, &file).await
}

async fn remember_change_time(run: &mut Run<'_>, url: &str, recorded: Option<FeedFile>, changed_at: &str) -> bool {
    let file = FeedFile { changed_at: Some(changed_at.to_string()), ..recorded.unwrap_or_default() };
    run.record.unchanged += 1;
    record_file(run, url, &file).await
}

/// Records what was fetched of `url`; a failure fails the document in this run's record.
async fn record_file(run: &mut Run<'_>, url: &str, file: &FeedFile) -> bool {
    match run.state.store.put_feed_file(&run.feed.name, url, file).await {
        Ok(()) => true,
        Err(e) => {
            run.fail(format!("{url}: {e}"));
            false
        }
    }
}

async fn run_osv_archive(run: &mut Run<'_>) -> anyhow::Result<()> {
    let url = run.feed.url.clone();
    let Fetched::Body(bytes, file) = run.fetch(&url).await? else { return Ok(()) };
    let documents = tokio::task::spawn_blocking(move || unzip_documents(&bytes)).await??;
    for (name, bytes) in documents {
        run.import(&format!("{url}!{name}"), &bytes).await;
    }
    // Recorded even when some records failed: the same bytes would fail the same way, and
    // the failures are in this run's record. A new archive is read again in full.
    run.state.store.put_feed_file(&run.feed.name, &url, &file).await?;
    Ok(())
}

/// Limits on an archive's contents: a member, all members together, and their number. Reads
/// are cut at these sizes whatever the archive declares, so a zip bomb ends in an error, not in
/// a full memory.
const MAX_MEMBER_BYTES: u64 = 64 * 1024 * 1024;
const MAX_ARCHIVE_BYTES: u64 = 2 * 1024 * 1024 * 1024;
const MAX_MEMBERS: usize = 500_000;

/// The `.json` members of a zip archive.
fn unzip_documents(bytes: &[u8]) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).context("not a zip archive")?;
    if archive.len() > MAX_MEMBERS {
        anyhow::bail!("the archive has {} members, more than {MAX_MEMBERS}", archive.len());
    }
    let mut out = Vec::new();
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        let member = archive.by_index(i)?;
        if !member.is_file() || !member.name().ends_with(".json") {
            continue;
        }
        let name = member.name().to_string();
        let mut data = Vec::new();
        member.take(MAX_MEMBER_BYTES + 1).read_to_end(&mut data)?;
        if data.len() as u64 > MAX_MEMBER_BYTES {
            anyhow::bail!("{name} is larger than {MAX_MEMBER_BYTES} bytes");
        }
        total += data.len() as u64;
        if total > MAX_ARCHIVE_BYTES {
            anyhow::bail!("the archive holds more than {MAX_ARCHIVE_BYTES} bytes of records");
        }
        out.push((name, data));
    }
    Ok(out)
}

async fn run_dir(run: &mut Run<'_>) -> anyhow::Result<()> {
    let root = std::path::PathBuf::from(&run.feed.url);
    let files = tokio::task::spawn_blocking(move || list_documents(&root)).await??;
    for path in files {
        let key = format!("file://{}", path.display());
        run.record.requests += 1;
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if meta.len() > MAX_MEMBER_BYTES {
            run.fail(format!("{}: larger than {MAX_MEMBER_BYTES} bytes", path.display()));
            continue;
        }
        let stamp = format!(
            "{}:{}",
            meta.len(),
            meta.modified().ok().and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos())
        );
        let recorded = run.state.store.feed_file(&run.feed.name, &key).await?;
        if recorded.as_ref().and_then(|f| f.last_modified.as_deref()) == Some(stamp.as_str()) {
            continue;
        }
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) => {
                run.fail(format!("{}: {e}", path.display()));
                continue;
            }
        };
        run.record.downloaded += 1;
        if run.import(&path.display().to_string(), &bytes).await {
            let file = FeedFile {
                last_modified: Some(stamp),
                sha256: Some(hex::encode(Sha256::digest(&bytes))),
                ..Default::default()
            };
            run.state.store.put_feed_file(&run.feed.name, &key, &file).await?;
        }
    }
    Ok(())
}

/// `.json` and `.xml` files under `root`, in name order (also what `rollgate advisories import`
/// reads of a directory).
pub fn list_documents(root: &std::path::Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(root)
        .with_context(|| format!("reading {}", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        // Symbolic links to directories are not followed: a loop must not recurse for ever.
        let is_real_dir = std::fs::symlink_metadata(&path).map(|m| m.is_dir()).unwrap_or(false);
        if is_real_dir {
            out.extend(list_documents(&path)?);
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("json" | "xml")) {
            out.push(path);
        }
    }
    Ok(out)
}

/// Runs every due feed, each on one replica at a time (lease `feed:<name>`), for ever.
pub async fn poll_feeds(state: AppState) {
    loop {
        if let Err(e) = run_due(&state).await {
            tracing::warn!("feed poller: {e:#}");
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

async fn run_due(state: &AppState) -> anyhow::Result<()> {
    let now = Timestamp::now();
    for feed in state.store.list_feeds().await? {
        if feed.next_run_at > now {
            continue;
        }
        let Some(_running) = Running::claim(&feed.name) else { continue };
        if !take_lease(state, &feed.name).await? {
            continue;
        }
        run_feed(state, &feed).await;
        release_lease(state, &feed.name).await;
        let next = Timestamp::now()
            + jiff::SignedDuration::from_secs(i64::try_from(feed.interval_secs).unwrap_or(i64::MAX / 2));
        state.store.schedule_feed(&feed.name, next).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_csv_lines_are_read_and_paths_joined() {
        let text = "\"2022/rhsa-2022_0011.json\",\"2022-01-04T08:38:00Z\"\n2021/x.json,2021-12-16T22:34:00Z\n\n,bad\n";
        assert_eq!(
            parse_changes_csv(text),
            [
                ("2022/rhsa-2022_0011.json".to_string(), "2022-01-04T08:38:00Z".to_string()),
                ("2021/x.json".to_string(), "2021-12-16T22:34:00Z".to_string()),
            ]
        );
        assert_eq!(join("https://h/csaf", "2022/a.json").unwrap(), "https://h/csaf/2022/a.json");
        assert_eq!(join("https://h/csaf/", "2022/a.json").unwrap(), "https://h/csaf/2022/a.json");
        assert_eq!(resolve("https://h/feeds/f.json", "../csaf/a.json").unwrap(), "https://h/csaf/a.json");
        assert_eq!(resolve("https://h/feeds/f.json", "https://o/x.json").unwrap(), "https://o/x.json");
    }
}
