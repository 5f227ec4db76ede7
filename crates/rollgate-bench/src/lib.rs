//! Rollgate's load harness: many virtual agents in one process, each a real enrolled endpoint
//! with its own client certificate, speaking the agent protocol over real mutual TLS to a real
//! `rollgate server` process.
//!
//! What exists so far (issue 4 is open): the server is started in a temporary directory,
//! identities are enrolled through the batch admin API (one key, one certificate per endpoint,
//! so that a million identities do not need a million key generations), and check-ins with
//! nothing new are driven over kept-alive connections, measuring throughput and latency.
//! Not yet: the nginx baseline, new-connection check-ins, steady-rate latency, memory, slot
//! hand-off and downloads.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Empty};
use hyper::header::{ETAG, IF_NONE_MATCH};
use hyper_util::rt::TokioIo;
use rollgate_wire::{BatchEnroll, BatchEnrolled};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_rustls::TlsConnector;

/// What to run.
#[derive(Clone, Debug)]
pub struct CheckinBench {
    /// The `rollgate` binary to start as the server.
    pub rollgate: PathBuf,
    /// Endpoints to enroll.
    pub endpoints: u32,
    /// Concurrent kept-alive connections, each with its own identity.
    pub connections: u32,
    /// How long to drive check-ins.
    pub duration: Duration,
}

/// What was measured.
#[derive(Clone, Debug, Serialize)]
pub struct CheckinResult {
    /// Endpoints enrolled.
    pub endpoints: u32,
    /// Seconds the batch enrollment took.
    pub enroll_secs: f64,
    /// Connections used.
    pub connections: u32,
    /// Check-ins answered 304 (nothing new).
    pub checkins: u64,
    /// Check-ins per second.
    pub per_sec: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Answers other than 304 (must be 0).
    pub unexpected: u64,
}

/// A server process in a temporary directory, killed on drop.
pub struct Server {
    _dir: tempfile::TempDir,
    data: PathBuf,
    url: String,
    _child: Child,
}

impl Server {
    /// Starts `rollgate server` on a free loopback port and waits until it listens.
    pub async fn start(rollgate: &Path) -> anyhow::Result<Server> {
        let dir = tempfile::Builder::new().prefix("rollgate-bench-").tempdir()?;
        let data = dir.path().join("server");
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let child = Command::new(rollgate)
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env("ROLLGATE_LOG", "warn")
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("while starting {}", rollgate.display()))?;
        for _ in 0..300 {
            if let Ok(url) = std::fs::read_to_string(data.join("server.url")) {
                return Ok(Server { url: url.trim().to_string(), data, _dir: dir, _child: child });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the server did not start within 15 s")
    }

    fn read(&self, name: &str) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(self.data.join(name))?.trim().to_string())
    }
}

/// One enrolled identity.
struct Identity {
    cert_pem: String,
}

/// Enrolls `count` endpoints through the batch API; returns the shared key and the identities.
async fn enroll(server: &Server, count: u32) -> anyhow::Result<(String, Vec<Identity>)> {
    let ca = server.read("ca.pem")?;
    let token = server.read("admin.token")?;
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes())?)
        .build()?;
    let (key_pem, csr_pem) = rollgate_pki::new_client_key_and_csr("bench")?;
    let mut identities = Vec::with_capacity(count as usize);
    let mut left = count;
    while left > 0 {
        let n = left.min(10_000);
        let request = BatchEnroll {
            csr_pem: csr_pem.clone(),
            count: n,
            hostname_prefix: "bench".into(),
            labels: Default::default(),
        };
        let response =
            http.post(format!("{}/v1/endpoints/batch", server.url)).bearer_auth(&token).json(&request).send().await?;
        if !response.status().is_success() {
            bail!("batch enrollment failed: {}", response.text().await.unwrap_or_default());
        }
        let batch: BatchEnrolled = response.json().await?;
        identities.extend(batch.endpoints.into_iter().map(|e| Identity { cert_pem: e.cert_pem }));
        left -= n;
    }
    Ok((key_pem, identities))
}

/// Drives check-ins with nothing new over one kept-alive connection until `until`.
async fn drive(tls: Arc<rustls::ClientConfig>, addr: String, until: Instant) -> anyhow::Result<(Vec<u32>, u64)> {
    let tcp = TcpStream::connect(&addr).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?.to_owned();
    let stream = TlsConnector::from(tls).connect(name, tcp).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut etag = String::new();
    let mut latencies_us = Vec::new();
    let mut unexpected = 0;
    while Instant::now() < until {
        let mut request = hyper::Request::get("/v1/agent/work?wait=0").header("host", "127.0.0.1");
        if !etag.is_empty() {
            request = request.header(IF_NONE_MATCH, etag.as_str());
        }
        let started = Instant::now();
        let response = sender.send_request(request.body(Empty::<bytes::Bytes>::new())?).await?;
        let status = response.status();
        if let Some(tag) = response.headers().get(ETAG).and_then(|v| v.to_str().ok()) {
            etag = tag.to_string();
        }
        response.into_body().collect().await?;
        if status == hyper::StatusCode::NOT_MODIFIED {
            latencies_us.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
        } else if status != hyper::StatusCode::OK {
            unexpected += 1;
        }
    }
    Ok((latencies_us, unexpected))
}

fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted_us[i]) / 1000.0
}

/// Figure 1 (Rollgate's side): check-ins with nothing new per second on kept-alive
/// connections, and their latency.
pub async fn checkins(bench: &CheckinBench) -> anyhow::Result<CheckinResult> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = Server::start(&bench.rollgate).await?;
    let started = Instant::now();
    let (key_pem, identities) = enroll(&server, bench.endpoints.max(bench.connections)).await?;
    let enroll_secs = started.elapsed().as_secs_f64();
    let ca = server.read("ca.pem")?;
    let addr = server.url.trim_start_matches("https://").to_string();
    let until = Instant::now() + bench.duration;
    let mut tasks = Vec::new();
    for identity in identities.iter().take(bench.connections as usize) {
        let tls = rollgate_pki::client_config(&ca, Some((&identity.cert_pem, &key_pem)))?;
        tasks.push(tokio::spawn(drive(tls, addr.clone(), until)));
    }
    let mut all = Vec::new();
    let mut unexpected = 0;
    for task in tasks {
        let (latencies, odd) = task.await??;
        all.extend(latencies);
        unexpected += odd;
    }
    all.sort_unstable();
    Ok(CheckinResult {
        endpoints: identities.len() as u32,
        enroll_secs,
        connections: bench.connections,
        checkins: all.len() as u64,
        per_sec: all.len() as f64 / bench.duration.as_secs_f64(),
        p50_ms: percentile_ms(&all, 0.50),
        p99_ms: percentile_ms(&all, 0.99),
        unexpected,
    })
}
