//! The agent's HTTPS client: mutual TLS with its own certificate, the server's CA as the only
//! root, and fail-over across several server URLs.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::StreamExt;
use std::time::Duration;

use reqwest::StatusCode;
use rollgate_wire::{
    EnrollRequest, EnrollResponse, ErrorBody, Inventory, PatchHealth, Report, SoftwareDelta, WorkResponse,
};

/// Why a request did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ApiFailure {
    /// The server could not be reached or the connection broke; worth retrying.
    #[error("server unreachable: {0}")]
    Network(String),
    /// The server answered with an error; retrying the same request will not help.
    #[error("server refused ({status}, {code}): {message}")]
    Refused {
        /// HTTP status.
        status: StatusCode,
        /// Stable code from the error body.
        code: String,
        /// Message from the error body.
        message: String,
    },
    /// The server failed (5xx); worth retrying.
    #[error("server error ({status}): {message}")]
    Server {
        /// HTTP status.
        status: StatusCode,
        /// Message.
        message: String,
    },
}

/// The result of a poll.
#[derive(Debug)]
pub enum Poll {
    /// Nothing changed since the ETag the agent sent.
    NotModified,
    /// The current work and its ETag.
    Work(Box<WorkResponse>, Option<String>),
}

/// An HTTPS client for one agent.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    servers: Vec<String>,
    current: AtomicUsize,
}

/// How long to wait for a connection: short, so fail-over to the next server is quick.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a request may take to be answered (a download's body has its own stall limit):
/// a frozen server must not hold heartbeats, claims or fail-over for minutes.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

fn builder(ca_pem: &str) -> anyhow::Result<reqwest::ClientBuilder> {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes())?;
    Ok(reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .https_only(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("rollgate-agent/", env!("CARGO_PKG_VERSION"))))
}

async fn error_of(response: reqwest::Response) -> ApiFailure {
    let status = response.status();
    // A stalled error body must not hang the caller.
    let text =
        tokio::time::timeout(REQUEST_TIMEOUT, response.text()).await.ok().and_then(Result::ok).unwrap_or_default();
    let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => (body.error.code, body.error.message),
        Err(_) => ("unknown".to_string(), text.chars().take(500).collect()),
    };
    // Only the server's own refusals are final. A timeout, a misdirected request, rate limiting
    // or an answer that is not ours (a load balancer's page) may succeed later: retry them.
    let retryable = status.is_server_error() || matches!(status.as_u16(), 408 | 421 | 429) || code == "unknown";
    if retryable {
        ApiFailure::Server { status, message }
    } else {
        ApiFailure::Refused { status, code, message }
    }
}

fn network(err: reqwest::Error) -> ApiFailure {
    ApiFailure::Network(format!("{err:#}"))
}

impl Client {
    /// A client without a client certificate, for enrollment only.
    pub fn anonymous(servers: Vec<String>, ca_pem: &str) -> anyhow::Result<Client> {
        Ok(Client { http: builder(ca_pem)?.build()?, servers, current: AtomicUsize::new(0) })
    }

    /// A client that presents the agent's certificate.
    pub fn with_identity(servers: Vec<String>, ca_pem: &str, cert_pem: &str, key_pem: &str) -> anyhow::Result<Client> {
        let identity = reqwest::Identity::from_pem(format!("{cert_pem}\n{key_pem}").as_bytes())?;
        Ok(Client { http: builder(ca_pem)?.identity(identity).build()?, servers, current: AtomicUsize::new(0) })
    }

    /// The server requests go to now.
    pub fn base(&self) -> &str {
        let i = self.current.load(Ordering::Relaxed) % self.servers.len().max(1);
        self.servers.get(i).map_or("", String::as_str)
    }

    fn fail_over(&self) {
        if self.servers.len() > 1 {
            self.current.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("switching to server {}", self.base());
        }
    }

    /// Sends a request built by `make` to the current server, moving to the next server on a
    /// network failure (once around the list).
    async fn send(
        &self,
        make: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiFailure> {
        let mut last = None;
        for _ in 0..self.servers.len().max(1) {
            let request = make(&self.http, self.base());
            // A held poll sets its own, longer timeout; everything else waits at most this
            // long for the answer's headers.
            let limit = request
                .try_clone()
                .and_then(|r| r.build().ok())
                .and_then(|r| r.timeout().copied())
                .unwrap_or(REQUEST_TIMEOUT);
            match tokio::time::timeout(limit, request.send()).await {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(err)) => last = Some(network(err)),
                Err(_) => last = Some(ApiFailure::Network(format!("no answer within {} s", limit.as_secs()))),
            }
            self.fail_over();
        }
        Err(last.unwrap_or_else(|| ApiFailure::Network("no server configured".into())))
    }

    /// `POST /v1/enroll`.
    pub async fn enroll(&self, req: &EnrollRequest) -> Result<EnrollResponse, ApiFailure> {
        let response = self.send(|h, base| h.post(format!("{base}/v1/enroll")).json(req)).await?;
        if !response.status().is_success() {
            return Err(error_of(response).await);
        }
        response.json().await.map_err(network)
    }

    /// `PUT /v1/agent/inventory`.
    pub async fn inventory(&self, inv: &Inventory) -> Result<(), ApiFailure> {
        let response = self.send(|h, base| h.put(format!("{base}/v1/agent/inventory")).json(inv)).await?;
        if !response.status().is_success() {
            return Err(error_of(response).await);
        }
        Ok(())
    }

    /// `POST /v1/agent/software`: a change to the installed software list (204 when applied; a
    /// 409 `software_base_mismatch` refusal when the server holds another base list).
    pub async fn software(&self, delta: &SoftwareDelta) -> Result<(), ApiFailure> {
        let response = self.send(|h, base| h.post(format!("{base}/v1/agent/software")).json(delta)).await?;
        if !response.status().is_success() {
            return Err(error_of(response).await);
        }
        Ok(())
    }

    /// `GET /v1/agent/work`, held by the server up to `wait_secs`.
    pub async fn poll(&self, etag: Option<&str>, wait_secs: u64) -> Result<Poll, ApiFailure> {
        let response = self
            .send(|h, base| {
                let mut req = h
                    .get(format!("{base}/v1/agent/work?wait={wait_secs}"))
                    .timeout(Duration::from_secs(wait_secs + 30));
                if let Some(tag) = etag {
                    req = req.header(reqwest::header::IF_NONE_MATCH, tag);
                }
                req
            })
            .await?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Ok(Poll::NotModified);
        }
        if !response.status().is_success() {
            return Err(error_of(response).await);
        }
        let etag = response.headers().get(reqwest::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_string);
        Ok(Poll::Work(Box::new(response.json().await.map_err(network)?), etag))
    }

    /// `POST /v1/agent/reports`.
    pub async fn report(&self, report: &Report) -> Result<(), ApiFailure> {
        let response = self.send(|h, base| h.post(format!("{base}/v1/agent/reports")).json(report)).await?;
        if !response.status().is_success() {
            return Err(error_of(response).await);
        }
        Ok(())
    }

    /// `POST /v1/agent/patch-health`: what a watch saw of a patched product (204 when recorded;
    /// a 409 `not_a_member` refusal when this endpoint did not install that version in that set).
    pub async fn patch_health(&self, health: &PatchHealth) -> Result<(), ApiFailure> {
        let response = self.send(|h, base| h.post(format!("{base}/v1/agent/patch-health")).json(health)).await?;
        if !response.status().is_success() {
            return Err(error_of(response).await);
        }
        Ok(())
    }

    /// `GET` of a small file (TUF metadata): its bytes, or None when the server has no such
    /// file (404). Refused beyond `max_bytes`, and cut off when it stalls, like a download.
    pub async fn get_bytes(&self, path: &str, max_bytes: u64) -> Result<Option<Vec<u8>>, ApiFailure> {
        let response = self.send(|h, base| h.get(format!("{base}{path}"))).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(error_of(response).await);
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        let mut pace = crate::download::Pace::new(tokio::time::Instant::now());
        loop {
            let chunk = match tokio::time::timeout(crate::download::STALL_TIMEOUT, stream.next()).await {
                Err(_) => return Err(ApiFailure::Network(format!("{path} stalled"))),
                Ok(None) => return Ok(Some(body)),
                Ok(Some(Err(e))) => return Err(network(e)),
                Ok(Some(Ok(chunk))) => chunk,
            };
            if body.len() as u64 + chunk.len() as u64 > max_bytes {
                return Err(ApiFailure::Network(format!("{path} is over {max_bytes} bytes")));
            }
            body.extend_from_slice(&chunk);
            if let Err(slow) = pace.record(chunk.len() as u64, tokio::time::Instant::now()) {
                return Err(ApiFailure::Network(format!("{path}: {slow}")));
            }
        }
    }

    /// Starts a download, asking for bytes from `offset` on.
    pub async fn download(&self, path: &str, offset: u64) -> Result<reqwest::Response, ApiFailure> {
        let response = self
            .send(|h, base| {
                let req = h.get(format!("{base}{path}"));
                if offset > 0 {
                    req.header(reqwest::header::RANGE, format!("bytes={offset}-"))
                } else {
                    req
                }
            })
            .await?;
        let status = response.status();
        if !(status.is_success() || status == StatusCode::RANGE_NOT_SATISFIABLE) {
            return Err(error_of(response).await);
        }
        Ok(response)
    }
}
