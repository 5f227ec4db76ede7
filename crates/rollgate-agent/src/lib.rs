//! Rollgate's endpoint agent (the Updater).
//!
//! It enrolls once (its own key, a certificate signed by the server's CA), then talks to the
//! server only over mutual TLS: it reports its inventory when it changes, holds a poll open for
//! work, and runs each assignment through [`job`]. After a successful install that asks for it,
//! [`watch`] keeps checking the patched product in the background and reports its health.
//! Everything it must not forget lives in its [`state`] directory.

pub mod client;
pub mod download;
pub mod install;
pub mod job;
pub mod outbox;
pub mod self_upgrade;
pub mod signing;
pub mod software;
pub mod state;
pub mod trim;
pub mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use rollgate_wire::{EnrollRequest, Inventory};

use crate::client::{ApiFailure, Client, Poll};
use crate::state::{Job, StateDir};

/// The product name under which the agent upgrades itself.
pub const AGENT_PRODUCT: &str = "rollgate-agent";

/// How the agent was asked to run.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Server base URLs, tried in order (fail-over on network errors).
    pub servers: Vec<String>,
    /// The CA to trust for the server (required for enrollment; kept in the state directory).
    pub ca_file: Option<PathBuf>,
    /// Token for the first start.
    pub enroll_token: Option<String>,
    /// Where the agent keeps everything.
    pub state_dir: PathBuf,
    /// Labels to report.
    pub labels: BTreeMap<String, String>,
    /// Longest wait between polls (the server holds each poll up to this long).
    pub poll_interval_secs: u64,
    /// How long a new agent binary has to check in before the old one takes over again.
    pub self_upgrade_grace_secs: u64,
    /// Host name to report (defaults to the machine's).
    pub hostname: Option<String>,
    /// The TUF root to trust (`--root`), kept in the state directory on first start: with it,
    /// a server compromised even before enrollment cannot make this agent install anything
    /// the targets key did not sign.
    pub root_file: Option<PathBuf>,
}

/// A running agent.
#[derive(Debug)]
pub struct Agent {
    /// Settings.
    pub config: AgentConfig,
    /// State directory.
    pub state: StateDir,
    /// mTLS client (shared with the TUF transport).
    pub client: std::sync::Arc<Client>,
    /// Endpoint id.
    pub endpoint_id: String,
    /// Watches of patched products; their reports go to the server through `client`.
    pub watcher: watch::Watcher,
}

fn machine_hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn os_description() -> String {
    let pretty = std::fs::read_to_string("/etc/os-release").ok().and_then(|text| {
        text.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string()))
    });
    format!("{} ({})", pretty.unwrap_or_else(|| std::env::consts::OS.to_string()), std::env::consts::ARCH)
}

impl Agent {
    /// Environment for install, health and rollback processes.
    pub fn child_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("ROLLGATE_ENDPOINT_ID".to_string(), self.endpoint_id.clone()),
            ("ROLLGATE_STATE_DIR".to_string(), self.state.root().display().to_string()),
        ];
        for (k, v) in &self.config.labels {
            let key: String =
                k.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
            env.push((format!("ROLLGATE_LABEL_{key}"), v.clone()));
        }
        env
    }

    /// Remembers that this set is finished here, so a stale assignment (the server has not
    /// seen the final report yet) does not start it again.
    pub fn remember_done(&self, set_id: i64) -> anyhow::Result<()> {
        let mut done: Vec<i64> = self.state.read_json("done-sets.json")?.unwrap_or_default();
        if !done.contains(&set_id) {
            done.push(set_id);
        }
        // Bounded: set ids grow, so only the newest matter.
        let excess = done.len().saturating_sub(256);
        done.drain(..excess);
        self.state.write_json("done-sets.json", &done)
    }

    fn is_done(&self, set_id: i64) -> anyhow::Result<bool> {
        Ok(self.state.read_json::<Vec<i64>>("done-sets.json")?.unwrap_or_default().contains(&set_id))
    }

    /// Products to report: what the agent installed, plus the agent itself, at the version of
    /// the binary actually running (a self-upgraded agent runs from
    /// `products/rollgate-agent/versions/<version>/rollgate`), never merely the one recorded.
    pub fn products(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let mut products = self.state.installed()?;
        products.insert(AGENT_PRODUCT.to_string(), self.running_version());
        Ok(products)
    }

    /// The version of the running agent binary.
    pub fn running_version(&self) -> String {
        let versions = self.state.products().join(AGENT_PRODUCT).join("versions");
        let from_path = || {
            let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
            let dir = exe.parent()?;
            if dir.parent()? != versions.canonicalize().ok()?.as_path() {
                return None;
            }
            dir.file_name()?.to_str().map(str::to_string)
        };
        from_path().unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string())
    }

    fn inventory(&self) -> anyhow::Result<Inventory> {
        let (os_id, os_version) = software::os_facts();
        Ok(Inventory {
            hostname: self.config.hostname.clone().unwrap_or_else(machine_hostname),
            os: os_description(),
            labels: self.config.labels.clone(),
            products: self.products()?,
            os_id,
            os_version,
        })
    }
}

/// Loads the agent's identity, enrolling first if it has none.
pub async fn start(config: AgentConfig) -> anyhow::Result<Agent> {
    if config.servers.is_empty() {
        bail!("no server given: pass --server URL (several may be given, comma-separated)");
    }
    let state = StateDir::open(&config.state_dir)?;
    let id_file = state.identity("endpoint_id");
    if !id_file.exists() {
        enroll(&config, &state).await?;
    }
    let endpoint_id = std::fs::read_to_string(&id_file).context("while reading the endpoint id")?.trim().to_string();
    let read = |name: &str| {
        std::fs::read_to_string(state.identity(name)).with_context(|| format!("while reading identity/{name}"))
    };
    let ca = match &config.ca_file {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("while reading --ca {}", path.display()))?
        }
        None => read("ca.pem")?,
    };
    let client = Client::with_identity(config.servers.clone(), &ca, &read("cert.pem")?, &read("key.pem")?)?;
    if let Some(path) = &config.root_file {
        let root = std::fs::read(path).with_context(|| format!("while reading --root {}", path.display()))?;
        signing::keep_root_if_none(&state, &root, &format!("given with --root {}", path.display()))?;
    }
    std::fs::write(state.file("agent.pid"), format!("{}\n", std::process::id()))?;
    let client = std::sync::Arc::new(client);
    let (reports, to_send) = tokio::sync::mpsc::channel(watch::REPORT_QUEUE_LEN);
    tokio::spawn(watch::forward_reports(std::sync::Arc::clone(&client), to_send, watch::SendPolicy::default()));
    let watcher = watch::Watcher::new(state.clone(), reports);
    Ok(Agent { config, state, client, endpoint_id, watcher })
}

async fn enroll(config: &AgentConfig, state: &StateDir) -> anyhow::Result<()> {
    let Some(token) = &config.enroll_token else {
        bail!(
            "this agent has no identity in {} yet: pass --enroll-token TOKEN (and --ca FILE) once",
            state.root().display()
        );
    };
    let Some(ca_file) = &config.ca_file else {
        bail!("enrollment needs the server's CA certificate: pass --ca FILE");
    };
    let ca = std::fs::read_to_string(ca_file).with_context(|| format!("while reading --ca {}", ca_file.display()))?;
    let hostname = config.hostname.clone().unwrap_or_else(machine_hostname);
    // The key and CSR are kept before asking, and reused if this enrollment is retried: should
    // the answer be lost, the server recognizes the key and returns the same endpoint.
    let (key_path, csr_path) = (state.identity("key.pem"), state.identity("pending.csr"));
    let (key_pem, csr_pem) = match (std::fs::read_to_string(&key_path), std::fs::read_to_string(&csr_path)) {
        (Ok(key), Ok(csr)) => (key, csr),
        _ => {
            let (key, csr) = rollgate_pki::new_client_key_and_csr(&hostname)?;
            state::write_private_atomic(&key_path, key.as_bytes())?;
            state::write_private_atomic(&csr_path, csr.as_bytes())?;
            (key, csr)
        }
    };
    let client = Client::anonymous(config.servers.clone(), &ca)?;
    let request =
        EnrollRequest { token: token.clone(), csr_pem, hostname, os: os_description(), labels: config.labels.clone() };
    let response = client.enroll(&request).await.map_err(|e| match e {
        ApiFailure::Refused { message, .. } => anyhow::anyhow!("enrollment refused: {message}"),
        other => anyhow::anyhow!("enrollment failed: {other}"),
    })?;
    drop(key_pem);
    state::write_atomic(&state.identity("cert.pem"), response.cert_pem.as_bytes())?;
    state::write_atomic(&state.identity("ca.pem"), ca.as_bytes())?;
    // A root given with --root is kept first (in `start`); otherwise the server's, which came
    // over the channel the CA vouches for.
    if let (None, Some(root)) = (&config.root_file, &response.tuf_root) {
        signing::keep_root_if_none(state, root.as_bytes(), "the server sent at enrollment")?;
    }
    // Written last: its presence means the identity is complete.
    state::write_atomic(&state.identity("endpoint_id"), response.endpoint_id.as_bytes())?;
    let _ = std::fs::remove_file(&csr_path);
    tracing::info!(endpoint = %response.endpoint_id, "enrolled");
    Ok(())
}

/// Runs the agent until the process is stopped.
pub async fn run(config: AgentConfig) -> anyhow::Result<()> {
    let agent = start(config).await?;
    println!("rollgate agent {} running as endpoint {}", env!("CARGO_PKG_VERSION"), agent.endpoint_id);
    let mut reported: Option<Inventory> = None;
    let mut etag: Option<String> = None;
    let mut trial_checked = false;
    let mut backoff = Duration::from_millis(500);
    let mut trimmed = false;
    let mut software_watch = software::SoftwareWatch::default();
    loop {
        match cycle(&agent, &mut reported, &mut etag, &mut trial_checked, &mut software_watch).await {
            Ok(()) => {
                backoff = Duration::from_millis(500);
                if !trimmed {
                    // Start-up is over (enrolled, inventory sent, first poll answered): give back
                    // the pages of code that ran only for it.
                    trimmed = true;
                    match trim::release_startup_pages() {
                        Ok(released) => tracing::debug!(?released, "released start-up pages"),
                        Err(err) => tracing::debug!("could not release start-up pages: {err}"),
                    }
                }
            }
            Err(err) => {
                tracing::warn!("{err:#}; retrying in {} ms", backoff.as_millis());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(agent.config.poll_interval_secs.clamp(1, 60)));
            }
        }
    }
}

/// One round: report what changed, continue or pick up work, or wait for some.
async fn cycle(
    agent: &Agent,
    reported: &mut Option<Inventory>,
    etag: &mut Option<String>,
    trial_checked: &mut bool,
    software_watch: &mut software::SoftwareWatch,
) -> anyhow::Result<()> {
    let inventory = agent.inventory()?;
    if reported.as_ref() != Some(&inventory) {
        agent.client.inventory(&inventory).await?;
        *reported = Some(inventory);
    }
    if !*trial_checked {
        self_upgrade::confirm_if_on_trial(agent)?;
        *trial_checked = true;
        // The confirmation changed what is installed; report it before anything else.
        if reported.as_ref() != Some(&agent.inventory()?) {
            return Ok(());
        }
    }
    // After the trial check: a new agent must confirm within its grace period, which a slow
    // `rpm -qa` (up to 60 s) or a first upload of the whole list must not eat into. Advisory
    // matching only: a failure must not keep the agent from its upgrades; the watch retries it.
    if let Err(err) = software::report_if_changed(agent, software_watch).await {
        tracing::warn!("could not report the installed software: {err:#}");
    }
    outbox::flush(&agent.state, &agent.client).await?;
    if let Some(job) = agent.state.read_json::<Job>("job.json")? {
        return job::run(agent, job).await;
    }
    let poll = agent.client.poll(etag.as_deref(), agent.config.poll_interval_secs).await?;
    let Poll::Work(work, tag) = poll else { return Ok(()) };
    *etag = tag;
    let Some(assignment) = work.assignment else { return Ok(()) };
    if agent.is_done(assignment.set_id)? {
        // Finished here; the server has not seen the final report yet. Wait for the next change.
        return Ok(());
    }
    let from_version = agent.products()?.get(&assignment.product).cloned();
    let job = Job {
        assignment,
        from_version,
        attempts: 0,
        in_attempt: false,
        reverted_any: false,
        installed: false,
        signed_release: None,
    };
    agent.state.write_json("job.json", &job)?;
    job::run(agent, job).await
}
