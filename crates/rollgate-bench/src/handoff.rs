//! Figure 5, slot hand-off: a set over many endpoints with a small max-in-flight, each install a
//! real process that sleeps, agents holding 60-second polls. The set can only finish near the
//! ideal if a freed slot reaches the next agent while its poll is held, not at its next poll.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use rollgate_wire::{CreateSet, Report, ReportKind, SetView, WorkResponse};
use serde::Serialize;
use tokio_rustls::TlsConnector;

use crate::server::{Cluster, SharedKey};

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub struct Handoff {
    /// Endpoints in the set.
    pub endpoints: u32,
    /// The set's max-in-flight.
    pub max_in_flight: u32,
    /// How long each install sleeps.
    pub install_secs: u64,
    /// How long each agent's poll is held (the server must be started with at least this
    /// `--long-poll-max-secs`).
    pub poll_secs: u64,
}

/// What was measured.
#[derive(Clone, Debug, Serialize)]
pub struct HandoffResult {
    /// Endpoints in the set.
    pub endpoints: u32,
    /// Max-in-flight.
    pub max_in_flight: u32,
    /// Seconds each install took (a real process sleeping).
    pub install_secs: u64,
    /// Seconds each poll was held.
    pub poll_secs: u64,
    /// Seconds from creating the set until the server showed it completed.
    pub finish_secs: f64,
    /// ceil(endpoints / max_in_flight) × install + one poll interval.
    pub ideal_secs: f64,
    /// finish ÷ ideal (target ≤ 1.2).
    pub ratio: f64,
    /// finish ÷ (ceil(endpoints / max_in_flight) × install): against the install time alone,
    /// since held polls hear of a freed slot at once and the poll interval never has to pass.
    pub ratio_vs_install_time: f64,
    /// Seconds from creating the set to the last agent's success report.
    pub last_report_secs: f64,
    /// Installs the virtual agents ran.
    pub installs: u64,
    /// Most installs running at once, as the agents saw it (must not exceed max-in-flight).
    pub most_in_flight: u64,
}

const PRODUCT: &str = "bench-handoff";
const VERSION: &str = "2.0.0";

/// Runs figure 5 on `cluster` (a fresh one: every endpoint enrolled here joins the set).
pub async fn run(cluster: &Cluster, key: &SharedKey, spec: &Handoff) -> anyhow::Result<HandoffResult> {
    let labels = BTreeMap::from([("bench".to_string(), "handoff".to_string())]);
    let identities = cluster.enroll(key, spec.endpoints, "handoff-", &labels, |_| {}).await?;
    let install = write_install_program(cluster.scratch(), spec.install_secs)?;
    upload_script_package(cluster, &install).await?;

    let configs = crate::agents::configs(&cluster.ca_pem, key, &identities)?;
    let addrs = cluster.addrs();
    let counters = Arc::new(Counters::default());
    let mut agents = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(1024);
    for (i, tls) in configs.into_iter().enumerate() {
        let agent = VirtualAgent {
            tls,
            addr: addrs[i % addrs.len()],
            install: install.clone(),
            poll_secs: spec.poll_secs,
            counters: counters.clone(),
        };
        let ready = ready_tx.clone();
        agents.push(tokio::spawn(async move { agent.run(ready).await }));
    }
    drop(ready_tx);
    // Every agent holds its first poll before the set exists.
    for _ in 0..spec.endpoints {
        if ready_rx.recv().await.is_none() {
            bail!("a virtual agent failed before the set was created");
        }
    }

    let create = CreateSet {
        name: "handoff".into(),
        product: PRODUCT.into(),
        version: VERSION.into(),
        target: "bench=handoff".into(),
        max_in_flight: spec.max_in_flight,
        max_attempts: 1,
        start_at: None,
        window: None,
        seed: Some(42),
        backoff_secs: None,
        stuck_timeout_secs: None,
        step_timeout_secs: Some(spec.install_secs + 60),
    };
    let created = Instant::now();
    *counters.created.lock().expect("not poisoned") = Some(created);
    let response = cluster.admin(reqwest::Method::POST, "/v1/sets").json(&create).send().await?;
    if !response.status().is_success() {
        bail!("creating the set failed: {}", response.text().await.unwrap_or_default());
    }
    let finish_secs = wait_until_completed(cluster, created, spec).await?;
    for agent in &agents {
        agent.abort();
    }
    let waves = spec.endpoints.div_ceil(spec.max_in_flight);
    let ideal_secs = f64::from(waves) * spec.install_secs as f64 + spec.poll_secs as f64;
    Ok(HandoffResult {
        endpoints: spec.endpoints,
        max_in_flight: spec.max_in_flight,
        install_secs: spec.install_secs,
        poll_secs: spec.poll_secs,
        finish_secs,
        ideal_secs,
        ratio: finish_secs / ideal_secs,
        ratio_vs_install_time: finish_secs / (f64::from(waves) * spec.install_secs as f64),
        last_report_secs: counters.last_report_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        installs: counters.installs.load(Ordering::Relaxed),
        most_in_flight: counters.most_in_flight.load(Ordering::Relaxed),
    })
}

async fn wait_until_completed(cluster: &Cluster, created: Instant, spec: &Handoff) -> anyhow::Result<f64> {
    let limit = Duration::from_secs(
        u64::from(spec.endpoints.div_ceil(spec.max_in_flight)) * spec.install_secs * 4 + spec.poll_secs * 4 + 60,
    );
    loop {
        let view: SetView = cluster.admin(reqwest::Method::GET, "/v1/sets/handoff").send().await?.json().await?;
        match view.state.as_str() {
            "completed" => return Ok(created.elapsed().as_secs_f64()),
            "failed" | "cancelled" | "paused" => bail!("the set ended {}: {:?}", view.state, view.state_reason),
            _ => {}
        }
        if created.elapsed() > limit {
            bail!("the set did not complete within {} s: {:?}", limit.as_secs(), view.counts);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A shell program that sleeps, the install step of the set's script package.
fn write_install_program(dir: &Path, secs: u64) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("install");
    std::fs::write(&path, format!("#!/bin/sh\nsleep {secs}\n"))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// Uploads a `script` package whose `install` is `install`.
async fn upload_script_package(cluster: &Cluster, install: &Path) -> anyhow::Result<()> {
    let mut archive = tar::Builder::new(Vec::new());
    archive.append_path_with_name(install, "install")?;
    let bytes = archive.into_inner()?;
    let sha256 = hex_sha256(&bytes);
    let response = cluster
        .admin(reqwest::Method::PUT, &format!("/v1/packages/{PRODUCT}/{VERSION}?module=script"))
        .header("x-rollgate-sha256", sha256)
        .body(bytes)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("uploading the package failed: {}", response.text().await.unwrap_or_default());
    }
    Ok(())
}

/// Lower-case hex SHA-256.
pub fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[derive(Default)]
struct Counters {
    created: std::sync::Mutex<Option<Instant>>,
    installs: AtomicU64,
    in_flight: AtomicU64,
    most_in_flight: AtomicU64,
    last_report_ms: AtomicU64,
}

struct VirtualAgent {
    tls: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    install: PathBuf,
    poll_secs: u64,
    counters: Arc<Counters>,
}

impl VirtualAgent {
    /// Polls, and for each assignment does what the real agent does: claim the slot
    /// (`attempt_started`), download the package, run its install, report success.
    async fn run(self, ready: tokio::sync::mpsc::Sender<()>) -> anyhow::Result<()> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
        let tls = TlsConnector::from(self.tls.clone()).connect(name, tcp).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        let mut etag: Option<String> = None;
        let mut done_set = false;
        // The first answer (200, no assignment) comes at once; the agent is then ready.
        let mut ready = Some(ready);
        loop {
            let path = format!("/v1/agent/work?wait={}", self.poll_secs);
            let mut request = hyper::Request::get(path).header("host", "127.0.0.1");
            if let Some(tag) = &etag {
                request = request.header(IF_NONE_MATCH, tag.as_str());
            }
            let response = sender.send_request(request.body(Full::new(Bytes::new()))?).await?;
            let status = response.status();
            if let Some(tag) = response.headers().get(ETAG).and_then(|v| v.to_str().ok()) {
                etag = Some(tag.to_string());
            }
            let body = response.into_body().collect().await?.to_bytes();
            if let Some(ready) = ready.take() {
                let _ = ready.send(()).await;
            }
            if status == StatusCode::NOT_MODIFIED {
                continue;
            }
            if status != StatusCode::OK {
                bail!("poll answered {status}");
            }
            let work: WorkResponse = serde_json::from_slice(&body)?;
            let Some(assignment) = work.assignment else { continue };
            if done_set {
                continue;
            }
            if !self.report(&mut sender, assignment.set_id, ReportKind::AttemptStarted).await? {
                continue;
            }
            self.download(&mut sender, &assignment.download_path, assignment.size).await?;
            let now = self.counters.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
            self.counters.most_in_flight.fetch_max(now, Ordering::Relaxed);
            let status = tokio::process::Command::new(&self.install).status().await?;
            self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
            if !status.success() {
                bail!("install exited with {status}");
            }
            self.counters.installs.fetch_add(1, Ordering::Relaxed);
            self.report(&mut sender, assignment.set_id, ReportKind::Succeeded).await?;
            if let Some(created) = *self.counters.created.lock().expect("not poisoned") {
                self.counters.last_report_ms.fetch_max(created.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
            done_set = true;
        }
    }

    async fn report(
        &self,
        sender: &mut SendRequest<Full<Bytes>>,
        set_id: i64,
        kind: ReportKind,
    ) -> anyhow::Result<bool> {
        let report = Report {
            set_id,
            attempt: 1,
            kind,
            phase: None,
            reason: None,
            from_version: None,
            to_version: VERSION.into(),
            at: jiff::Timestamp::now().to_string(),
        };
        let request = hyper::Request::post("/v1/agent/reports")
            .header("host", "127.0.0.1")
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(&report)?)))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        match status {
            StatusCode::OK => Ok(true),
            // No slot (any more): do not install, as the real agent does not.
            StatusCode::CONFLICT => Ok(false),
            _ => bail!("report answered {status}: {}", String::from_utf8_lossy(&body)),
        }
    }

    async fn download(&self, sender: &mut SendRequest<Full<Bytes>>, path: &str, size: u64) -> anyhow::Result<()> {
        let request = hyper::Request::get(path).header("host", "127.0.0.1").body(Full::new(Bytes::new()))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await.context("downloading the package")?.to_bytes();
        if status != StatusCode::OK || body.len() as u64 != size {
            bail!("download answered {status} with {} of {size} bytes", body.len());
        }
        Ok(())
    }
}
