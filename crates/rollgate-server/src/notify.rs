//! Campaign notifications: an email (SMTP, always over TLS) and a webhook (a JSON POST) for each
//! step that completed, failed its gate or waits for an operator's approval.
//!
//! The payload is `rollgate_wire::CampaignNotification`; a webhook receives it as its JSON body,
//! an email renders it as plain text with the commands an operator would run next. Delivery is
//! best effort and never panics: [`Notifier::send`] returns one [`Delivery`] per recipient, and
//! the caller records the failures. **Invariant:** an email never travels in plain text: an
//! `smtp://` server must offer STARTTLS, an `smtps://` server speaks TLS from the first byte.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::{FutureExt, StreamExt};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rollgate_wire::CampaignNotification;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Sent as `User-Agent` on every webhook.
const USER_AGENT: &str = concat!("rollgate/", env!("CARGO_PKG_VERSION"));
/// Longest one webhook request may take, connection included.
const WEBHOOK_TIMEOUT_SECS: u64 = 10;
/// Longest the connection to a webhook may take.
const WEBHOOK_CONNECT_TIMEOUT_SECS: u64 = 5;
/// The pauses before the second and third attempt; their count + 1 is the number of attempts.
const WEBHOOK_BACKOFF_MS: [u64; 2] = [500, 1000];
/// Longest one SMTP command may take (lettre's default is a minute).
const SMTP_TIMEOUT_SECS: u64 = 20;
/// How many recipients are served at once; the rest wait their turn.
const MAX_CONCURRENT_DELIVERIES: usize = 8;
/// The SMTP submission port with STARTTLS (RFC 6409).
const SMTP_DEFAULT_PORT: u16 = 587;
/// The SMTP submission port with implicit TLS (RFC 8314).
const SMTPS_DEFAULT_PORT: u16 = 465;

/// How the server sends email. Parsed from `--smtp-url` etc. by the caller.
#[derive(Clone)]
pub struct SmtpConfig {
    /// `smtp://host:port` (STARTTLS required, never plain text) or `smtps://host:port` (implicit
    /// TLS). The port defaults to 587 and 465.
    pub url: String,
    /// The From address.
    pub from: String,
    /// Extra root certificates (a PEM file) to trust for the SMTP server, e.g. a private CA, in
    /// addition to the webpki roots.
    pub ca_file: Option<PathBuf>,
    /// The user name to log in with; given together with `password` or not at all.
    pub username: Option<String>,
    /// Its password.
    pub password: Option<String>,
}

impl std::fmt::Debug for SmtpConfig {
    // By hand, so the password never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("url", &self.url)
            .field("from", &self.from)
            .field("ca_file", &self.ca_file)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The outcome of one recipient: an email address or a webhook URL, as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The email address or webhook URL.
    pub recipient: String,
    /// `Err` holds a message for the operator: what failed and why.
    pub result: Result<(), String>,
}

/// Sends campaign notifications. Cheap to clone: the SMTP transport and the HTTP client are
/// shared.
#[derive(Clone)]
pub struct Notifier {
    /// None when no SMTP server is configured; emails then fail with a message saying so.
    mailer: Option<Mailer>,
    /// Follows no redirects, so a webhook cannot steer the server elsewhere.
    http: reqwest::Client,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").field("smtp", &self.mailer.as_ref().map(|m| &m.url)).finish_non_exhaustive()
    }
}

/// A validated SMTP configuration, ready to send.
#[derive(Clone)]
struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The URL as configured, for error messages (it holds no credentials: [`parse_smtp_url`]
    /// refuses them).
    url: String,
}

impl Notifier {
    /// Validates the SMTP configuration (URL, From address, CA file, credentials) and builds
    /// the senders. Connects to nothing: a server that is down shows up in the deliveries.
    pub fn new(smtp: Option<SmtpConfig>) -> anyhow::Result<Notifier> {
        let mailer = smtp.map(|config| Mailer::new(&config)).transpose()?;
        Ok(Notifier { mailer, http: webhook_client(&[])? })
    }

    /// Also trusts the certificates in the PEM file at `pem_path` for HTTPS webhooks, in
    /// addition to the webpki roots (a receiver behind a private CA).
    pub fn with_webhook_root(mut self, pem_path: &Path) -> anyhow::Result<Notifier> {
        let pem = std::fs::read(pem_path)
            .with_context(|| format!("while reading the webhook CA file {}", pem_path.display()))?;
        let roots = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("while parsing the webhook CA file {}", pem_path.display()))?;
        if roots.is_empty() {
            bail!("the webhook CA file {} holds no PEM certificate", pem_path.display());
        }
        self.http = webhook_client(&roots)?;
        Ok(self)
    }

    /// Sends `n` to every email address (one message each) and webhook URL, a few at a time.
    /// Never panics; returns one [`Delivery`] per recipient, emails first, each list in order.
    pub async fn send(&self, n: &CampaignNotification, emails: &[String], webhooks: &[String]) -> Vec<Delivery> {
        let emails = emails.iter().map(|to| self.deliver_email(n, to).left_future());
        let hooks = webhooks.iter().map(|url| self.deliver_webhook(n, url).right_future());
        // Collected before the first await: an iterator adapter's closure held across it makes
        // this future fail the compiler's `Send` proof, and callers `tokio::spawn` it.
        let deliveries: Vec<_> = emails.chain(hooks).collect();
        futures_util::stream::iter(deliveries).buffered(MAX_CONCURRENT_DELIVERIES).collect().await
    }

    async fn deliver_email(&self, n: &CampaignNotification, to: &str) -> Delivery {
        let result = match &self.mailer {
            Some(mailer) => mailer.send(n, to).await,
            None => Err(format!(
                "cannot email {to}: no SMTP server is configured (start the server with --smtp-url and --smtp-from)"
            )),
        };
        Delivery { recipient: to.to_string(), result }
    }

    async fn deliver_webhook(&self, n: &CampaignNotification, url: &str) -> Delivery {
        let result = post_webhook(&self.http, n, url).await;
        Delivery { recipient: url.to_string(), result }
    }
}

impl Mailer {
    fn new(config: &SmtpConfig) -> anyhow::Result<Mailer> {
        let endpoint = parse_smtp_url(&config.url)?;
        let from: Mailbox = config
            .from
            .parse()
            .with_context(|| format!("the SMTP From address {:?} is not an email address", config.from))?;
        let tls = tls_parameters(&endpoint.host, config.ca_file.as_deref())?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(endpoint.host.as_str())
            .port(endpoint.port)
            .timeout(Some(Duration::from_secs(SMTP_TIMEOUT_SECS)))
            .tls(if endpoint.implicit_tls { Tls::Wrapper(tls) } else { Tls::Required(tls) });
        match (&config.username, &config.password) {
            (Some(user), Some(password)) => {
                builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
            }
            (None, None) => {}
            _ => bail!("give both an SMTP user name and a password, or neither"),
        }
        Ok(Mailer { transport: builder.build(), from, url: config.url.clone() })
    }

    async fn send(&self, n: &CampaignNotification, to: &str) -> Result<(), String> {
        let to: Mailbox = to.parse().map_err(|e| format!("{to:?} is not an email address: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to.clone())
            .subject(email_subject(n))
            .message_id(None)
            .header(ContentType::TEXT_PLAIN)
            .body(email_body(n))
            .map_err(|e| format!("cannot build the email to {to}: {e}"))?;
        self.transport
            .send(message)
            .await
            .map(drop)
            .map_err(|e| format!("sending the email to {to} through {}: {}", self.url, error_chain(&e)))
    }
}

/// Where the SMTP server is and how TLS starts.
#[derive(Debug, PartialEq, Eq)]
struct SmtpEndpoint {
    /// A DNS name or an IP address (without brackets), also the name its certificate must hold.
    host: String,
    port: u16,
    /// `smtps://`: TLS from the first byte; otherwise STARTTLS, required.
    implicit_tls: bool,
}

/// Parses `smtp://host[:port]` or `smtps://host[:port]`. Credentials in the URL are refused so
/// that they are never logged with it; nothing may follow the port.
fn parse_smtp_url(raw: &str) -> anyhow::Result<SmtpEndpoint> {
    let url = url::Url::parse(raw).with_context(|| format!("the SMTP URL {raw:?} is not a URL"))?;
    let (implicit_tls, default_port) = match url.scheme() {
        "smtp" => (false, SMTP_DEFAULT_PORT),
        "smtps" => (true, SMTPS_DEFAULT_PORT),
        other => {
            bail!("the SMTP URL {raw:?} has the scheme {other:?}; use smtp:// (STARTTLS) or smtps:// (implicit TLS)")
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        bail!("the SMTP URL must not hold credentials; give them as the SMTP user name and password");
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        bail!("the SMTP URL {raw:?} must be just smtp://host:port or smtps://host:port");
    }
    let host = match url.host() {
        Some(url::Host::Domain(name)) => name.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => bail!("the SMTP URL {raw:?} names no host"),
    };
    Ok(SmtpEndpoint { host, port: url.port().unwrap_or(default_port), implicit_tls })
}

/// rustls parameters that check the server's certificate for `host` against the webpki roots
/// and the certificates in `ca_file`.
fn tls_parameters(host: &str, ca_file: Option<&Path>) -> anyhow::Result<TlsParameters> {
    let mut builder = TlsParameters::builder(host.to_string()).certificate_store(CertificateStore::WebpkiRoots);
    if let Some(path) = ca_file {
        for der in read_pem_certificates(path)? {
            let cert = Certificate::from_der(der.to_vec())
                .with_context(|| format!("while reading a certificate of the SMTP CA file {}", path.display()))?;
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build_rustls().context("while setting up TLS for the SMTP server")
}

/// Every certificate in a PEM file; an error if there is none, since an empty or mistyped
/// file would otherwise silently trust nothing extra.
fn read_pem_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("while reading the SMTP CA file {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("while parsing the SMTP CA file {}", path.display()))?;
    if certs.is_empty() {
        bail!("the SMTP CA file {} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

/// What happened, in the words of a subject line.
fn event_phrase(event: &str) -> String {
    match event {
        "step_completed" => "completed".to_string(),
        "gate_failed" => "gate failed".to_string(),
        "awaiting_approval" => "waiting for approval".to_string(),
        // A newer server may know more events; say it as it is rather than drop the email.
        other => other.replace('_', " "),
    }
}

/// `[Rollgate] campaign monthly-workstations 2026-11: step pilot completed`.
fn email_subject(n: &CampaignNotification) -> String {
    format!("[Rollgate] campaign {} {}: step {} {}", n.campaign, n.month, n.step, event_phrase(&n.event))
}

/// The commands an operator would run next, each with what it does.
fn next_commands(n: &CampaignNotification) -> Vec<(&'static str, String)> {
    let (campaign, step) = (&n.campaign, &n.step);
    let mut commands = vec![("See the month", format!("rollgate campaigns month {campaign}"))];
    match n.event.as_str() {
        "awaiting_approval" => {
            commands.push(("Approve the step", format!("rollgate campaigns step approve {campaign} {step}")));
        }
        "gate_failed" => {
            commands.push(("Approve it anyway", format!("rollgate campaigns step approve {campaign} {step}")));
            commands.push(("Retry the step", format!("rollgate campaigns step retry {campaign} {step}")));
            commands.push(("Stop the month", format!("rollgate campaigns stop {campaign}")));
        }
        _ => {}
    }
    commands
}

/// The plain-text body: the facts, then what to do next.
fn email_body(n: &CampaignNotification) -> String {
    let mut body = format!(
        "Campaign {}, month {}: step {} {}.\n\n\
         Campaign: {}\nMonth:    {}\nStep:     {}\nEvent:    {}\nReason:   {}\nAt:       {}\n\n\
         What to do next:\n",
        n.campaign,
        n.month,
        n.step,
        event_phrase(&n.event),
        n.campaign,
        n.month,
        n.step,
        n.event,
        n.reason,
        n.at,
    );
    for (what, command) in next_commands(n) {
        body.push_str(&format!("  {what}:\n    {command}\n"));
    }
    body.push_str("\nSent by Rollgate.\n");
    body
}

/// The HTTP client for webhooks: rustls with the webpki roots and `extra_roots`, no redirects,
/// bounded time.
fn webhook_client(extra_roots: &[reqwest::Certificate]) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(WEBHOOK_CONNECT_TIMEOUT_SECS))
        .timeout(Duration::from_secs(WEBHOOK_TIMEOUT_SECS))
        .user_agent(USER_AGENT);
    for root in extra_roots {
        builder = builder.add_root_certificate(root.clone());
    }
    builder.build().context("while building the webhook HTTP client")
}

/// Why one attempt failed, and whether another may help.
enum AttemptError {
    /// A connection error, a timeout or a 5xx: the receiver may be back in a moment.
    Transient(String),
    /// Anything else (4xx, a redirect): repeating the same request will not change it.
    Final(String),
}

/// A recipient as logs and error messages show it: an email address as it is, a webhook URL
/// as its origin only, since chat webhooks carry their secret token in the path or query.
pub fn redacted(recipient: &str) -> String {
    match url::Url::parse(recipient) {
        Ok(url) if url.has_host() => format!("{}/…", url.origin().ascii_serialization()),
        _ if recipient.contains("://") => "(a webhook URL that does not parse)".to_owned(),
        _ => recipient.to_owned(),
    }
}

/// POSTs `n` as JSON to `url`, retrying transient failures after [`WEBHOOK_BACKOFF_MS`].
async fn post_webhook(http: &reqwest::Client, n: &CampaignNotification, url: &str) -> Result<(), String> {
    let shown = redacted(url);
    let parsed = url::Url::parse(url).map_err(|e| format!("{shown} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("webhook {shown} is not an http:// or https:// URL"));
    }
    let body = serde_json::to_vec(n).map_err(|e| format!("cannot encode the notification: {e}"))?;
    let mut pauses_ms = WEBHOOK_BACKOFF_MS.iter();
    let mut attempts = 1;
    loop {
        match post_once(http, &parsed, &n.event, body.clone()).await {
            Ok(()) => return Ok(()),
            Err(AttemptError::Final(message)) => return Err(format!("webhook {shown}: {message}")),
            Err(AttemptError::Transient(message)) => match pauses_ms.next() {
                Some(pause_ms) => {
                    tracing::debug!(url = %shown, attempts, %message, "webhook failed; retrying");
                    tokio::time::sleep(Duration::from_millis(*pause_ms)).await;
                    attempts += 1;
                }
                None => return Err(format!("webhook {shown}: {message} (after {attempts} attempts)")),
            },
        }
    }
}

/// One POST; a 2xx answer is success.
async fn post_once(http: &reqwest::Client, url: &url::Url, event: &str, body: Vec<u8>) -> Result<(), AttemptError> {
    let response = http
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Rollgate-Event", event)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            // A request that was sent but not answered (refused, reset, timed out) may work
            // next time; a certificate the server is not trusted with, or a request that could
            // not even be built, will not.
            // `is_request` alone (a request that may have reached the server) is not retried, so
            // a notification is not posted twice.
            let transient = !is_tls_failure(&e) && (e.is_connect() || e.is_timeout());
            // The URL is already in the message the caller builds.
            let message = error_chain(&e.without_url());
            if transient {
                AttemptError::Transient(message)
            } else {
                AttemptError::Final(message)
            }
        })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else if status.is_server_error() {
        Err(AttemptError::Transient(format!("answered {status}")))
    } else if status.is_redirection() {
        Err(AttemptError::Final(format!("answered {status} (redirects are not followed)")))
    } else {
        Err(AttemptError::Final(format!("answered {status}")))
    }
}

/// Whether a TLS failure (an untrusted certificate, a failed handshake) is among the causes.
fn is_tls_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<rustls::Error>() {
            return true;
        }
        // rustls errors reach reqwest inside (nested) `io::Error`s, whose `source` skips the
        // error they wrap; step into it instead.
        cause = match error.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    false
}

/// An error and its causes, `outer: inner: innermost`, since the outer message alone is often
/// just "error sending request".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Some errors repeat their source in their own message.
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    without_repeats(&message)
}

/// Drops a part that repeats the one before it: lettre wraps its own errors, and says
/// `Connection error: Connection error: …`.
fn without_repeats(message: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in message.split(": ") {
        if parts.last() != Some(&part) {
            parts.push(part);
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(event: &str) -> CampaignNotification {
        CampaignNotification {
            event: event.to_string(),
            campaign: "monthly-workstations".to_string(),
            month: "2026-11".to_string(),
            step: "pilot".to_string(),
            reason: "success rate 98 % ≥ 95 %".to_string(),
            at: "2026-11-12T10:00:00Z".to_string(),
        }
    }

    #[test]
    fn subjects() {
        let subject = |event| email_subject(&notification(event));
        assert_eq!(subject("step_completed"), "[Rollgate] campaign monthly-workstations 2026-11: step pilot completed");
        assert_eq!(subject("gate_failed"), "[Rollgate] campaign monthly-workstations 2026-11: step pilot gate failed");
        assert_eq!(
            subject("awaiting_approval"),
            "[Rollgate] campaign monthly-workstations 2026-11: step pilot waiting for approval"
        );
        assert_eq!(subject("month_done"), "[Rollgate] campaign monthly-workstations 2026-11: step pilot month done");
    }

    #[test]
    fn bodies_name_the_next_commands() {
        let gate_failed = email_body(&notification("gate_failed"));
        for command in [
            "rollgate campaigns month monthly-workstations",
            "rollgate campaigns step approve monthly-workstations pilot",
            "rollgate campaigns step retry monthly-workstations pilot",
            "rollgate campaigns stop monthly-workstations",
        ] {
            assert!(gate_failed.contains(command), "{command} missing from:\n{gate_failed}");
        }
        let completed = email_body(&notification("step_completed"));
        assert!(completed.contains("rollgate campaigns month monthly-workstations"));
        assert!(!completed.contains("approve"));
    }

    #[test]
    fn smtp_urls() {
        let endpoint = |host: &str, port, implicit_tls| SmtpEndpoint { host: host.to_string(), port, implicit_tls };
        assert_eq!(parse_smtp_url("smtp://mail.example.com").unwrap(), endpoint("mail.example.com", 587, false));
        assert_eq!(parse_smtp_url("smtps://mail.example.com:2465/").unwrap(), endpoint("mail.example.com", 2465, true));
        assert_eq!(parse_smtp_url("smtps://[::1]").unwrap(), endpoint("::1", 465, true));
        for bad in ["http://mail.example.com", "smtp://user:pw@mail.example.com", "smtp://mail.example.com/x", "mail"] {
            assert!(parse_smtp_url(bad).is_err(), "{bad} accepted");
        }
    }
}
