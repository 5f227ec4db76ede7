//! Campaign notifications against real servers on loopback, no mocks: emails through a real
//! SMTP server (Python's aiosmtpd, started from `tests/smtp_server.py` with a certificate made
//! here by rcgen) over STARTTLS and over implicit TLS, and webhooks to a real axum server over
//! HTTP and HTTPS.
//!
//! The SMTP tests need a Python with aiosmtpd 1.4.6: `ROLLGATE_PYTHON_SMTP`, else the venv
//! `.ci/run` makes at `target/python-tuf`, else the system `python3`. Without one they print
//! `SKIPPED: …` and pass, so a fresh clone's `cargo test` passes; `.ci/run` installs it.
//!
//! Every SMTP server records, with each message, the TLS version of the connection it arrived
//! on, so "it travelled over TLS" is checked on the receiving side, not assumed.

// Tests: an unwrap that panics is the failure report, and every input here is our own.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use rollgate_server::notify::{redacted, Delivery, Notifier, SmtpConfig};
use rollgate_wire::CampaignNotification;
use serde_json::Value;

fn notification(event: &str) -> CampaignNotification {
    CampaignNotification {
        event: event.to_string(),
        campaign: "monthly-workstations".to_string(),
        month: "2026-11".to_string(),
        step: "pilot".to_string(),
        reason: "success rate 12 of 20 installs (60 %) is below 95 % — “pilot” gate".to_string(),
        at: "2026-11-12T10:00:00Z".to_string(),
    }
}

// ---------------------------------------------------------------- certificates

/// A private CA and a server certificate it issued for `localhost` and `127.0.0.1`, as files.
struct Pki {
    _dir: tempfile::TempDir,
    ca_pem: PathBuf,
    cert_pem: PathBuf,
    key_pem: PathBuf,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "notify test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();

    let write = |name: &str, pem: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    Pki {
        ca_pem: write("ca.pem", ca.pem()),
        cert_pem: write("cert.pem", cert.pem()),
        key_pem: write("key.pem", key.serialize_pem()),
        _dir: dir,
    }
}

// ---------------------------------------------------------------- the SMTP server

/// A Python with aiosmtpd, or None (the caller skips).
fn smtp_python() -> Option<PathBuf> {
    if let Some(python) = std::env::var_os("ROLLGATE_PYTHON_SMTP") {
        return Some(PathBuf::from(python));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/python-tuf/bin/python");
    [venv, PathBuf::from("python3")].into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    })
}

/// Binds `python` or returns from the test with a line saying why it did not run.
macro_rules! python_or_skip {
    () => {
        match smtp_python() {
            Some(python) => python,
            None => {
                println!("SKIPPED: aiosmtpd not found (looked at ROLLGATE_PYTHON_SMTP, target/python-tuf, python3); .ci/run installs it");
                return;
            }
        }
    };
}

/// How the test SMTP server speaks (the `--mode` of `smtp_server.py`).
#[derive(Clone, Copy)]
enum Mode {
    StartTls,
    Implicit,
    Plain,
}

/// A running `smtp_server.py`, killed on drop.
struct SmtpServer {
    child: Child,
    port: u16,
    out: tempfile::TempDir,
    // Held open: the script exits when its stdin closes, so it cannot outlive a killed test.
    _stdin: ChildStdin,
    _stdout: BufReader<ChildStdout>,
}

impl SmtpServer {
    fn start(python: &Path, mode: Mode, pki: &Pki, login: Option<(&str, &str)>) -> SmtpServer {
        let out = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_server.py");
        let mode = match mode {
            Mode::StartTls => "starttls",
            Mode::Implicit => "implicit",
            Mode::Plain => "plain",
        };
        let mut command = Command::new(python);
        command.arg(script).args(["--mode", mode]).arg("--out").arg(out.path());
        command.arg("--cert").arg(&pki.cert_pem).arg("--key").arg(&pki.key_pem);
        if let Some((user, password)) = login {
            command.args(["--user", user, "--password", password]);
        }
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        // Blocks until the server listens; a crash closes stdout and ends the read with "".
        stdout.read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("PORT ").and_then(|port| port.parse().ok());
        let mut server = SmtpServer { child, port: 0, out, _stdin: stdin, _stdout: stdout };
        server.port = port.unwrap_or_else(|| panic!("smtp_server.py did not start (said {line:?})"));
        server
    }

    /// Every message received so far, in order of arrival.
    fn messages(&self) -> Vec<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.out.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        files.sort_by_key(|path| path.file_stem().and_then(|s| s.to_str()?.parse::<u32>().ok()));
        files.iter().map(|path| serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()).collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn smtp_config(url: String, ca_file: Option<&Path>) -> SmtpConfig {
    SmtpConfig {
        url,
        from: "Rollgate <rollgate@example.com>".to_string(),
        ca_file: ca_file.map(Path::to_path_buf),
        username: None,
        password: None,
    }
}

fn emails(addresses: &[&str]) -> Vec<String> {
    addresses.iter().map(|a| a.to_string()).collect()
}

fn assert_delivered(deliveries: &[Delivery], recipients: &[&str]) {
    let got: Vec<(&str, &Result<(), String>)> = deliveries.iter().map(|d| (d.recipient.as_str(), &d.result)).collect();
    let want: Vec<(&str, &Result<(), String>)> = recipients.iter().map(|r| (*r, &Ok(()))).collect();
    assert_eq!(got, want);
}

/// The one delivery's error.
fn single_error(deliveries: &[Delivery]) -> &str {
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    match &deliveries[0].result {
        Err(message) => message,
        Ok(()) => panic!("delivered: {deliveries:?}"),
    }
}

// ---------------------------------------------------------------- email

#[tokio::test]
async fn email_over_starttls_arrives_logged_in_with_subject_body_and_recipient() {
    let python = python_or_skip!();
    let pki = pki();
    let server = SmtpServer::start(&python, Mode::StartTls, &pki, Some(("rollgate", "s3cret")));
    let mut config = smtp_config(format!("smtp://localhost:{}", server.port), Some(&pki.ca_pem));
    config.username = Some("rollgate".to_string());
    config.password = Some("s3cret".to_string());
    let notifier = Notifier::new(Some(config)).unwrap();

    let n = notification("gate_failed");
    let to = ["ops@example.com", "Patch Team <patch-team@example.org>"];
    let deliveries = notifier.send(&n, &emails(&to), &[]).await;
    assert_delivered(&deliveries, &to);

    // One message per recipient; they are sent at once, so they may arrive in either order.
    let mut messages = server.messages();
    messages.sort_by_key(|message| message["rcpt_tos"].to_string());
    let recipients: Vec<&Value> = messages.iter().map(|message| &message["rcpt_tos"]).collect();
    assert_eq!(recipients, [&serde_json::json!(["ops@example.com"]), &serde_json::json!(["patch-team@example.org"])]);
    assert_eq!(messages[1]["to"], "Patch Team <patch-team@example.org>");
    let first = &messages[0];
    assert_eq!(first["mail_from"], "rollgate@example.com");
    assert_eq!(first["from"], "Rollgate <rollgate@example.com>");
    assert_eq!(first["subject"], "[Rollgate] campaign monthly-workstations 2026-11: step pilot gate failed");
    assert_eq!(first["content_type"], "text/plain");
    assert_eq!(first["starttls"], true, "{first:#?}");
    assert!(first["tls_version"].as_str().unwrap().starts_with("TLSv1."), "{first:#?}");
    assert_eq!(first["login"], "rollgate");
    let body = first["body"].as_str().unwrap();
    for expected in [
        "Campaign:",
        "monthly-workstations",
        "2026-11",
        "pilot",
        &n.reason,
        "2026-11-12T10:00:00Z",
        "rollgate campaigns month monthly-workstations",
        "rollgate campaigns step approve monthly-workstations pilot",
        "rollgate campaigns step retry monthly-workstations pilot",
        "rollgate campaigns stop monthly-workstations",
    ] {
        assert!(body.contains(expected), "{expected:?} missing from the body:\n{body}");
    }
}

#[tokio::test]
async fn email_over_implicit_tls_arrives() {
    let python = python_or_skip!();
    let pki = pki();
    let server = SmtpServer::start(&python, Mode::Implicit, &pki, None);
    let config = smtp_config(format!("smtps://127.0.0.1:{}", server.port), Some(&pki.ca_pem));
    let notifier = Notifier::new(Some(config)).unwrap();

    let deliveries = notifier.send(&notification("awaiting_approval"), &emails(&["ops@example.com"]), &[]).await;
    assert_delivered(&deliveries, &["ops@example.com"]);

    let messages = server.messages();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let message = &messages[0];
    assert_eq!(message["subject"], "[Rollgate] campaign monthly-workstations 2026-11: step pilot waiting for approval");
    // TLS from the first byte: there was no STARTTLS, yet the connection was encrypted.
    assert_eq!(message["starttls"], false);
    assert!(message["tls_version"].as_str().unwrap().starts_with("TLSv1."), "{message:#?}");
    let body = message["body"].as_str().unwrap();
    assert!(body.contains("rollgate campaigns step approve monthly-workstations pilot"), "{body}");
}

#[tokio::test]
async fn server_without_starttls_is_refused_not_used_in_plain_text() {
    let python = python_or_skip!();
    let pki = pki();
    let server = SmtpServer::start(&python, Mode::Plain, &pki, None);
    let config = smtp_config(format!("smtp://127.0.0.1:{}", server.port), Some(&pki.ca_pem));
    let notifier = Notifier::new(Some(config)).unwrap();

    let deliveries = notifier.send(&notification("step_completed"), &emails(&["ops@example.com"]), &[]).await;
    let error = single_error(&deliveries);
    assert!(error.contains("ops@example.com") && error.contains("STARTTLS"), "{error}");
    assert_eq!(server.messages(), Vec::<Value>::new());
}

#[tokio::test]
async fn server_with_an_untrusted_certificate_is_refused() {
    let python = python_or_skip!();
    let pki = pki();
    let server = SmtpServer::start(&python, Mode::StartTls, &pki, None);
    // No CA file: the test CA is not among the webpki roots.
    let config = smtp_config(format!("smtp://localhost:{}", server.port), None);
    let notifier = Notifier::new(Some(config)).unwrap();

    let deliveries = notifier.send(&notification("step_completed"), &emails(&["ops@example.com"]), &[]).await;
    let error = single_error(&deliveries);
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert_eq!(server.messages(), Vec::<Value>::new());
}

#[tokio::test]
async fn emails_without_smtp_fail_with_a_clear_message_and_webhooks_still_go() {
    let hook = Receiver::start(vec![]).await;
    let notifier = Notifier::new(None).unwrap();
    let deliveries = notifier
        .send(&notification("step_completed"), &emails(&["a@example.com", "b@example.com"]), &hook.urls())
        .await;
    let recipients: Vec<&str> = deliveries.iter().map(|d| d.recipient.as_str()).collect();
    assert_eq!(recipients, ["a@example.com", "b@example.com", hook.url.as_str()]);
    for delivery in &deliveries[..2] {
        let error = delivery.result.as_ref().unwrap_err();
        assert!(error.contains("no SMTP server is configured") && error.contains(&delivery.recipient), "{error}");
    }
    assert_eq!(deliveries[2].result, Ok(()));
}

#[test]
fn bad_smtp_configuration_is_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let error = |config: SmtpConfig| format!("{:#}", Notifier::new(Some(config)).err().unwrap());
    let url = |url: &str| smtp_config(url.to_string(), None);

    assert!(error(url("http://mail.example.com")).contains("smtp:// (STARTTLS) or smtps://"));
    assert!(error(url("smtp://user:pw@mail.example.com")).contains("must not hold credentials"));
    assert!(error(url("smtp://mail.example.com/inbox")).contains("must be just"));
    assert!(error(url("mail.example.com")).contains("is not a URL"));
    let mut config = url("smtp://mail.example.com");
    config.from = "not an address".to_string();
    assert!(error(config).contains("From address"));
    let missing = error(smtp_config("smtp://mail.example.com".to_string(), Some(&dir.path().join("nope.pem"))));
    assert!(missing.contains("nope.pem"), "{missing}");
    assert!(
        error(smtp_config("smtp://mail.example.com".to_string(), Some(&empty))).contains("holds no PEM certificate")
    );
    let mut config = url("smtp://mail.example.com");
    config.username = Some("rollgate".to_string());
    assert!(error(config).contains("user name and a password"));

    assert!(Notifier::new(Some(url("smtps://mail.example.com"))).is_ok());
}

#[tokio::test]
async fn a_bad_email_address_fails_alone() {
    let notifier = Notifier::new(Some(smtp_config("smtp://127.0.0.1:9".to_string(), None))).unwrap();
    let deliveries = notifier.send(&notification("step_completed"), &emails(&["not an address"]), &[]).await;
    assert!(single_error(&deliveries).contains("is not an email address"));
}

// ---------------------------------------------------------------- webhooks

/// What a receiver saw: each request's headers and body.
type Requests = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A real HTTP server that records every request and answers with the scripted statuses in
/// order (200 once they run out).
struct Receiver {
    url: String,
    requests: Requests,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Script {
    statuses: Arc<Mutex<VecDeque<StatusCode>>>,
    requests: Requests,
}

async fn record(
    axum::extract::State(script): axum::extract::State<Script>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    script.requests.lock().unwrap().push((headers, body));
    let status = script.statuses.lock().unwrap().pop_front().unwrap_or(StatusCode::OK);
    if status.is_redirection() {
        return (status, [("location", "http://127.0.0.1:9/elsewhere")]).into_response();
    }
    status.into_response()
}

fn receiver_app(statuses: Vec<StatusCode>) -> (Router, Requests) {
    let requests = Requests::default();
    let script = Script { statuses: Arc::new(Mutex::new(statuses.into())), requests: requests.clone() };
    (Router::new().fallback(record).with_state(script), requests)
}

impl Receiver {
    async fn start(statuses: Vec<StatusCode>) -> Receiver {
        let (app, requests) = receiver_app(statuses);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/rollgate", listener.local_addr().unwrap());
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, requests, task }
    }

    /// The same over HTTPS with the certificate of `pki`.
    async fn start_tls(statuses: Vec<StatusCode>, pki: &Pki) -> Receiver {
        use rustls::pki_types::pem::PemObject;
        let (app, requests) = receiver_app(statuses);
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(&pki.cert_pem)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&pki.key_pem).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://localhost:{}/hooks/rollgate", listener.local_addr().unwrap().port());
        let task = tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Receiver { url, requests, task }
    }

    /// Its URL, as the webhook list of a send.
    fn urls(&self) -> Vec<String> {
        vec![self.url.clone()]
    }

    fn requests(&self) -> Vec<(HeaderMap, Bytes)> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn webhook_posts_the_notification_as_json() {
    let hook = Receiver::start(vec![]).await;
    let notifier = Notifier::new(None).unwrap();
    let n = notification("awaiting_approval");
    // Sent from a spawned task, as the server does: this only compiles if `send` is `Send`.
    let (sent, urls) = (n.clone(), hook.urls());
    let deliveries = tokio::spawn(async move { notifier.send(&sent, &[], &urls).await }).await.unwrap();
    assert_delivered(&deliveries, &[hook.url.as_str()]);

    let requests = hook.requests();
    assert_eq!(requests.len(), 1);
    let (headers, body) = &requests[0];
    let received: CampaignNotification = serde_json::from_slice(body).unwrap();
    assert_eq!(received, n);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-rollgate-event"], "awaiting_approval");
    assert_eq!(headers["user-agent"], concat!("rollgate/", env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn webhook_over_https_with_a_private_root() {
    let pki = pki();
    let hook = Receiver::start_tls(vec![], &pki).await;
    let n = notification("step_completed");

    // Without the root, the receiver's certificate is not trusted, and that is not retried:
    // it will not be trusted a second later either.
    let plain = Notifier::new(None).unwrap();
    let error = single_error(&plain.send(&n, &[], &hook.urls()).await).to_string();
    assert!(error.to_lowercase().contains("certificate") && !error.contains("attempts"), "{error}");
    let refused = hook.requests().len();
    assert_eq!(refused, 0);

    let notifier = Notifier::new(None).unwrap().with_webhook_root(&pki.ca_pem).unwrap();
    let deliveries = notifier.send(&n, &[], &hook.urls()).await;
    assert_delivered(&deliveries, &[hook.url.as_str()]);
    let requests = hook.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(serde_json::from_slice::<CampaignNotification>(&requests[0].1).unwrap(), n);
}

#[tokio::test]
async fn webhook_retries_server_errors() {
    let hook = Receiver::start(vec![StatusCode::INTERNAL_SERVER_ERROR, StatusCode::SERVICE_UNAVAILABLE]).await;
    let notifier = Notifier::new(None).unwrap();
    let started = Instant::now();
    let deliveries = notifier.send(&notification("gate_failed"), &[], &hook.urls()).await;
    assert_delivered(&deliveries, &[hook.url.as_str()]);
    assert_eq!(hook.requests().len(), 3);
    // The backoff was really waited: 0.5 s, then 1 s.
    assert!(started.elapsed() >= Duration::from_millis(1500), "{:?}", started.elapsed());
}

#[tokio::test]
async fn webhook_gives_up_on_server_errors_after_three_attempts() {
    let hook = Receiver::start(vec![StatusCode::BAD_GATEWAY; 5]).await;
    let notifier = Notifier::new(None).unwrap();
    let deliveries = notifier.send(&notification("gate_failed"), &[], &hook.urls()).await;
    let error = single_error(&deliveries);
    assert!(error.contains("502") && error.contains("after 3 attempts"), "{error}");
    // Chat webhooks carry their token in the path: errors (which reach logs) show the origin only.
    assert!(error.contains(&redacted(&hook.url)) && !error.contains(&hook.url), "{error}");
    assert_eq!(hook.requests().len(), 3);
}

#[tokio::test]
async fn webhook_404_is_an_error_naming_it_without_retries() {
    let hook = Receiver::start(vec![StatusCode::NOT_FOUND; 5]).await;
    let notifier = Notifier::new(None).unwrap();
    let deliveries = notifier.send(&notification("step_completed"), &[], &hook.urls()).await;
    let error = single_error(&deliveries);
    assert!(error.contains("404"), "{error}");
    assert_eq!(hook.requests().len(), 1);
}

#[tokio::test]
async fn webhook_redirects_are_not_followed() {
    let hook = Receiver::start(vec![StatusCode::FOUND]).await;
    let notifier = Notifier::new(None).unwrap();
    let deliveries = notifier.send(&notification("step_completed"), &[], &hook.urls()).await;
    let error = single_error(&deliveries);
    assert!(error.contains("302") && error.contains("redirects are not followed"), "{error}");
    assert_eq!(hook.requests().len(), 1);
}

#[tokio::test]
async fn webhook_that_refuses_connections_fails_after_retries() {
    // A port that was free a moment ago: nothing listens there.
    let port = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let notifier = Notifier::new(None).unwrap();
    let deliveries = notifier.send(&notification("step_completed"), &[], std::slice::from_ref(&url)).await;
    let error = single_error(&deliveries);
    assert!(error.contains(&format!("http://127.0.0.1:{port}/…")) && error.contains("after 3 attempts"), "{error}");
    assert!(!error.contains("/hook"), "{error}");
}

#[tokio::test]
async fn webhook_url_must_be_http_or_https() {
    let notifier = Notifier::new(None).unwrap();
    for (url, shown) in [("ftp://example.com/hook", "ftp://example.com/…"), ("not a url", "not a url")] {
        let deliveries = notifier.send(&notification("step_completed"), &[], &[url.to_string()]).await;
        let error = single_error(&deliveries);
        assert!(error.contains(shown), "{error}");
    }
}

#[test]
fn recipients_are_shown_without_webhook_secrets() {
    assert_eq!(redacted("ops@example.com"), "ops@example.com");
    assert_eq!(redacted("https://hooks.slack.example/services/T0/B0/SECRET?x=1"), "https://hooks.slack.example/…");
    assert_eq!(redacted("http://127.0.0.1:8080/hook?token=abc"), "http://127.0.0.1:8080/…");
}
