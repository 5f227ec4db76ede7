//! The load generator: the same code drives Rollgate and nginx. A check-in is
//! `GET /v1/agent/work?wait=0` with the `If-None-Match` of the previous answer; "nothing new"
//! is a `304 Not Modified` from either server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONNECTION, ETAG, IF_NONE_MATCH};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Longest a connection or a check-in may take before it counts as an error: a hung server
/// must fail the run, not hang it.
pub const CHECKIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a whole download may take.
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// The check-in request path.
pub const CHECKIN_PATH: &str = "/v1/agent/work?wait=0";

/// A server to drive: its addresses (connections are spread over them) and one TLS client
/// configuration per virtual agent.
#[derive(Clone)]
pub struct Target {
    /// What the figures call it.
    pub name: String,
    /// Where to connect; connection `i` goes to `addrs[i % len]`.
    pub addrs: Vec<SocketAddr>,
    /// One configuration per virtual agent; connection `i` uses `agents[i % len]`.
    pub agents: Arc<Vec<Arc<rustls::ClientConfig>>>,
}

/// Throughput and latency of one run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Run {
    /// What was driven.
    pub target: String,
    /// Concurrent connections.
    pub connections: u32,
    /// Seconds driven.
    pub seconds: f64,
    /// Check-ins answered (304, or 200 for a virtual agent's first).
    pub checkins: u64,
    /// Check-ins per second.
    pub per_sec: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Largest latency, milliseconds.
    pub max_ms: f64,
    /// Check-ins answered 304 Not Modified (all but each connection's first, when the
    /// "nothing new" path works).
    pub not_modified: u64,
    /// Answers other than 200/304, failed connections and timeouts.
    pub errors: u64,
    /// TLS handshakes made, and how many of them resumed a session.
    pub handshakes: u64,
    /// Handshakes that resumed a session.
    pub resumed: u64,
    /// The negotiated protocol, cipher suite and key exchange.
    pub tls: String,
}

/// Latencies in microseconds, and counts, gathered by the tasks of one run.
#[derive(Default)]
struct Tally {
    latencies_us: Mutex<Vec<u32>>,
    not_modified: AtomicU64,
    errors: AtomicU64,
    handshakes: AtomicU64,
    resumed: AtomicU64,
    tls: Mutex<String>,
}

impl Tally {
    fn record(&self, mut local: Vec<u32>) {
        self.latencies_us.lock().expect("not poisoned").append(&mut local);
    }

    fn finish(self, target: &str, connections: u32, elapsed: Duration) -> Run {
        let mut all = self.latencies_us.into_inner().expect("not poisoned");
        all.sort_unstable();
        let seconds = elapsed.as_secs_f64();
        Run {
            target: target.to_string(),
            connections,
            seconds,
            checkins: all.len() as u64,
            per_sec: all.len() as f64 / seconds,
            p50_ms: percentile_ms(&all, 0.50),
            p99_ms: percentile_ms(&all, 0.99),
            max_ms: all.last().map_or(0.0, |&us| f64::from(us) / 1000.0),
            not_modified: self.not_modified.into_inner(),
            errors: self.errors.into_inner(),
            handshakes: self.handshakes.into_inner(),
            resumed: self.resumed.into_inner(),
            tls: self.tls.into_inner().expect("not poisoned"),
        }
    }
}

/// The value at quantile `p` of sorted microseconds, in milliseconds.
pub fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted_us[i]) / 1000.0
}

/// An open HTTP/1.1 connection over TLS.
pub struct Connection {
    sender: SendRequest<Empty<Bytes>>,
}

/// Opens a TLS connection to `addr` with `tls`; tells whether the handshake resumed a session
/// and what was negotiated.
pub async fn connect(tls: Arc<rustls::ClientConfig>, addr: SocketAddr) -> anyhow::Result<(Connection, bool, String)> {
    let connecting = async {
        let tcp = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        let name = ServerName::IpAddress(addr.ip().into());
        TlsConnector::from(tls).connect(name, tcp).await.context("TLS handshake")
    };
    let stream = tokio::time::timeout(CHECKIN_TIMEOUT, connecting).await.context("connecting timed out")??;
    let session = stream.get_ref().1;
    let resumed = session.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let negotiated = format!(
        "{:?} {:?} {:?}",
        session.protocol_version().unwrap_or(rustls::ProtocolVersion::Unknown(0)),
        session.negotiated_cipher_suite().map(|s| s.suite()),
        session.negotiated_key_exchange_group().map(|g| g.name()),
    );
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok((Connection { sender }, resumed, negotiated))
}

impl Connection {
    /// One check-in; returns the status. Keeps `etag` current. With `close`, asks the server to
    /// close the connection after answering (so that the server, not the load generator, keeps
    /// the TIME_WAIT socket and the generator does not run out of ports).
    pub async fn checkin(&mut self, etag: &mut Option<String>, close: bool) -> anyhow::Result<StatusCode> {
        let mut request = hyper::Request::get(CHECKIN_PATH).header("host", "127.0.0.1");
        if let Some(tag) = etag.as_deref() {
            request = request.header(IF_NONE_MATCH, tag);
        }
        if close {
            request = request.header(CONNECTION, "close");
        }
        let exchange = async {
            let response = self.sender.send_request(request.body(Empty::new())?).await?;
            let status = response.status();
            if let Some(tag) = response.headers().get(ETAG).and_then(|v| v.to_str().ok()) {
                *etag = Some(tag.to_string());
            }
            response.into_body().collect().await?;
            anyhow::Ok(status)
        };
        tokio::time::timeout(CHECKIN_TIMEOUT, exchange).await.context("the check-in timed out")?
    }

    /// The body of a `200 OK` answer to `GET path`.
    pub async fn get_body(&mut self, path: &str) -> anyhow::Result<Bytes> {
        let request = hyper::Request::get(path).header("host", "127.0.0.1").body(Empty::new())?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::ensure!(status == StatusCode::OK, "GET {path} answered {status}");
        Ok(body)
    }

    /// `GET path`, reading the whole answer without keeping it; returns the status and the
    /// body's length.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<(StatusCode, u64)> {
        let request = hyper::Request::get(path).header("host", "127.0.0.1").body(Empty::new())?;
        let exchange = async {
            let response = self.sender.send_request(request).await?;
            let status = response.status();
            let mut body = response.into_body();
            let mut len = 0u64;
            while let Some(frame) = body.frame().await {
                if let Some(data) = frame?.data_ref() {
                    len += data.len() as u64;
                }
            }
            anyhow::Ok((status, len))
        };
        tokio::time::timeout(DOWNLOAD_TIMEOUT, exchange).await.context("the download timed out")?
    }
}

fn is_checkin(status: StatusCode) -> bool {
    status == StatusCode::NOT_MODIFIED || status == StatusCode::OK
}

/// Counts a 304 answer.
fn note_status(tally: &Tally, status: StatusCode) {
    if status == StatusCode::NOT_MODIFIED {
        tally.not_modified.fetch_add(1, Ordering::Relaxed);
    }
}

fn micros_since(start: Instant) -> u32 {
    u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX)
}

/// Runs `body` once per connection `i` (virtual agent `i`, server `i % addrs`) until
/// `duration` has passed; each returns the latencies it measured.
async fn per_connection<F, Fut>(target: &Target, connections: u32, duration: Duration, body: F) -> Run
where
    F: Fn(Arc<Tally>, Arc<rustls::ClientConfig>, SocketAddr, Instant) -> Fut,
    Fut: std::future::Future<Output = Vec<u32>> + Send + 'static,
{
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let until = started + duration;
    let tasks: Vec<_> = (0..connections as usize)
        .map(|i| {
            let (tls, addr) = (target.agents[i % target.agents.len()].clone(), target.addrs[i % target.addrs.len()]);
            let (tally, work) = (tally.clone(), body(tally.clone(), tls, addr, until));
            tokio::spawn(async move { tally.record(work.await) })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed();
    Arc::into_inner(tally).expect("all tasks ended").finish(&target.name, connections, elapsed)
}

/// Figure 1: `connections` kept-alive connections, each checking in back to back for `duration`.
pub async fn kept_alive(target: &Target, connections: u32, duration: Duration) -> Run {
    per_connection(target, connections, duration, |tally, tls, addr, until| async move {
        let mut latencies = Vec::new();
        let Ok((mut conn, resumed, negotiated)) = connect(tls, addr).await else {
            tally.errors.fetch_add(1, Ordering::Relaxed);
            return latencies;
        };
        note_handshake(&tally, resumed, negotiated);
        let mut etag = None;
        while Instant::now() < until {
            let t = Instant::now();
            match conn.checkin(&mut etag, false).await {
                Ok(status) if is_checkin(status) => {
                    note_status(&tally, status);
                    latencies.push(micros_since(t));
                }
                _ => {
                    tally.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        latencies
    })
    .await
}

fn note_handshake(tally: &Tally, resumed: bool, negotiated: String) {
    tally.handshakes.fetch_add(1, Ordering::Relaxed);
    if resumed {
        tally.resumed.fetch_add(1, Ordering::Relaxed);
    }
    let mut tls = tally.tls.lock().expect("not poisoned");
    if tls.is_empty() {
        *tls = negotiated;
    }
}

/// One check-in on a new connection: connect (resuming the agent's TLS session when it has
/// one), check in, let the server close. Returns the status.
async fn checkin_on_new_connection(
    tally: &Tally,
    tls: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    etag: &mut Option<String>,
) -> anyhow::Result<StatusCode> {
    let (mut conn, resumed, negotiated) = connect(tls, addr).await?;
    note_handshake(tally, resumed, negotiated);
    conn.checkin(etag, true).await
}

/// Figure 2: `connections` loops, each opening a new mutual-TLS connection for every check-in.
/// Each loop is one virtual agent with its own session cache, so after its first check-in
/// every handshake resumes.
pub async fn reconnecting(target: &Target, connections: u32, duration: Duration) -> Run {
    per_connection(target, connections, duration, |tally, tls, addr, until| async move {
        let mut latencies = Vec::new();
        let mut etag = None;
        while Instant::now() < until {
            let t = Instant::now();
            match checkin_on_new_connection(&tally, tls.clone(), addr, &mut etag).await {
                Ok(status) if is_checkin(status) => {
                    note_status(&tally, status);
                    latencies.push(micros_since(t));
                }
                _ => {
                    tally.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        latencies
    })
    .await
}

/// Every virtual agent of `target` checks in once on a new connection (a full handshake that
/// leaves it a session ticket), `parallel` at a time. Calls `progress` with the count done.
pub async fn sweep(target: &Target, parallel: usize, progress: impl Fn(u64) + Send + Sync + 'static) -> Run {
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(progress);
    let mut tasks = Vec::new();
    for _ in 0..parallel {
        let (target, tally, next, progress) = (target.clone(), tally.clone(), next.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= target.agents.len() {
                    break;
                }
                let (tls, addr) = (target.agents[i].clone(), target.addrs[i % target.addrs.len()]);
                let t = Instant::now();
                match checkin_on_new_connection(&tally, tls, addr, &mut None).await {
                    Ok(status) if is_checkin(status) => latencies.push(micros_since(t)),
                    _ => {
                        tally.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if i % 1000 == 999 {
                    progress(i as u64 + 1);
                }
            }
            tally.record(latencies);
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed();
    Arc::into_inner(tally).expect("all tasks ended").finish(&target.name, parallel as u32, elapsed)
}

/// Figure 3: check-ins started at a steady `per_sec` for `duration`, each on a new connection
/// that resumes the agent's session (an agent polling every few minutes reconnects each time),
/// cycling through the virtual agents. Latency counts from the moment a check-in was due, not
/// from when it started, so a stalled server cannot hide its backlog (no coordinated omission).
pub async fn steady(target: &Target, per_sec: u32, duration: Duration) -> Run {
    let tally = Arc::new(Tally::default());
    let etags: Arc<Vec<Mutex<Option<String>>>> = Arc::new((0..target.agents.len()).map(|_| Mutex::new(None)).collect());
    let total = (f64::from(per_sec) * duration.as_secs_f64()) as u64;
    let interval = Duration::from_secs_f64(1.0 / f64::from(per_sec));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        let due = started + interval.mul_f64(n as f64);
        tokio::time::sleep_until(due.into()).await;
        let i = n as usize % target.agents.len();
        let (tls, addr) = (target.agents[i].clone(), target.addrs[i % target.addrs.len()]);
        let (tally, etags) = (tally.clone(), etags.clone());
        tasks.push(tokio::spawn(async move {
            let mut etag = etags[i].lock().expect("not poisoned").clone();
            match checkin_on_new_connection(&tally, tls, addr, &mut etag).await {
                Ok(status) if is_checkin(status) => {
                    note_status(&tally, status);
                    let us = u32::try_from(due.elapsed().as_micros()).unwrap_or(u32::MAX);
                    tally.latencies_us.lock().expect("not poisoned").push(us);
                    *etags[i].lock().expect("not poisoned") = etag;
                }
                _ => {
                    tally.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed();
    let mut run = Arc::into_inner(tally).expect("all tasks ended").finish(&target.name, 0, elapsed);
    // Throughput is what was asked for; report the rate actually achieved over the schedule.
    run.per_sec = run.checkins as f64 / duration.as_secs_f64();
    run
}
