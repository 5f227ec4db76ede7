//! Runs one upgrade to its end: claim an attempt, download and verify, install and check
//! health, and on failure retry with backoff, then give up leaving the previous version in
//! place. The decisions about retrying are `rollgate-core`'s [`AttemptPolicy`]. A success whose
//! assignment has `watch_secs` starts a background [`crate::watch`] of the product; the next
//! install of that product ends it first.
//!
//! **Invariant:** nothing is installed before the server accepted the attempt's start report,
//! so an endpoint whose slot was taken away never installs outside the set's limit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use rollgate_core::policy::{AfterFailure, AttemptPolicy};
use rollgate_wire::{Report, ReportKind};

use crate::client::ApiFailure;
use crate::download::{self, DownloadError};
use crate::install::{self, InstallFailure, InstallRequest, Module, Phase};
use crate::signing::{self, CheckError, Verdict};
use crate::state::Job;
use crate::watch::WatchRequest;
use crate::{outbox, self_upgrade, Agent, AGENT_PRODUCT};

/// A failed attempt, in the words the server records.
#[derive(Debug)]
pub struct AttemptFailure {
    /// `download`, `verify`, `unpack`, `install`, `health`, `rollback`.
    pub phase: &'static str,
    /// Why.
    pub reason: String,
    /// The attempt changed the endpoint and reverted it.
    pub reverted: bool,
    /// The server took the slot away before anything was installed: stop, report nothing.
    pub withdrawn: bool,
}

impl From<InstallFailure> for AttemptFailure {
    fn from(f: InstallFailure) -> Self {
        let phase = match f.phase {
            Phase::Unpack => "unpack",
            Phase::Install => "install",
            Phase::Health => "health",
            Phase::Rollback => "rollback",
        };
        // The install module's reason already says whether the previous version is healthy.
        AttemptFailure { phase, reason: f.reason, reverted: f.reverted, withdrawn: false }
    }
}

fn report(job: &Job, attempt: u32, kind: ReportKind, phase: Option<&str>, reason: Option<String>) -> Report {
    Report {
        set_id: job.assignment.set_id,
        attempt,
        kind,
        phase: phase.map(str::to_string),
        reason,
        from_version: job.from_version.clone(),
        to_version: job.assignment.version.clone(),
        at: Timestamp::now().to_string(),
    }
}

/// What became of the claim on an attempt.
enum Claim {
    Granted,
    /// The server says this endpoint holds no slot: stop, install nothing.
    Refused(String),
}

/// Sends the attempt-started report and waits until the server has answered it.
async fn claim_attempt(agent: &Agent, job: &Job, attempt: u32) -> anyhow::Result<Claim> {
    let started = report(job, attempt, ReportKind::AttemptStarted, None, None);
    let mut wait = Duration::from_millis(500);
    loop {
        // Earlier reports first, so the server sees them in order.
        let flushed = outbox::flush(&agent.state, &agent.client).await;
        if flushed.is_ok() {
            match agent.client.report(&started).await {
                Ok(()) => return Ok(Claim::Granted),
                Err(ApiFailure::Refused { message, .. }) => return Ok(Claim::Refused(message)),
                Err(err) => tracing::warn!("could not claim attempt {attempt}: {err}; retrying"),
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

/// Runs the job to its end (or to a self-upgrade hand-over, which ends this process).
pub async fn run(agent: &Agent, mut job: Job) -> anyhow::Result<()> {
    let a = job.assignment.clone();
    let policy = AttemptPolicy {
        max_attempts: a.max_attempts,
        backoff_initial_secs: a.backoff_initial_secs,
        backoff_max_secs: a.backoff_max_secs,
    };
    if job.installed {
        // The agent stopped after a successful install, before the job was closed.
        return complete_success(agent, &job);
    }
    if job.in_attempt {
        // The agent died during this attempt: count it as failed and make sure the previous
        // version is the one in place before deciding what to do next.
        job.in_attempt = false;
        restore_previous(agent, &job)?;
        let failure = AttemptFailure {
            phase: "install",
            reason: "the agent stopped during the attempt".into(),
            reverted: true,
            withdrawn: false,
        };
        let attempt = job.attempts.max(1);
        if give_up_or_wait(agent, &mut job, &policy, attempt, failure).await? {
            return Ok(());
        }
    }
    loop {
        let attempt = job.attempts + 1;
        match claim_attempt(agent, &job, attempt).await? {
            Claim::Granted => {}
            Claim::Refused(why) => {
                tracing::warn!(set = %a.set_name, "server withdrew the slot ({why}); installing nothing");
                agent.state.remove("job.json")?;
                return Ok(());
            }
        }
        job.attempts = attempt;
        job.in_attempt = true;
        agent.state.write_json("job.json", &job)?;
        tracing::info!(set = %a.set_name, product = %a.product, version = %a.version, attempt, "attempt started");
        let withdrawn = AtomicBool::new(false);
        let result = match verify_signed(agent, &job, attempt, &withdrawn).await {
            Ok(signed_release) => {
                // Kept with the job: the release counter is recorded once the install succeeds,
                // possibly by a restarted agent or, for a self-upgrade, by the new one.
                job.signed_release = signed_release;
                agent.state.write_json("job.json", &job)?;
                tokio::select! {
                    result = attempt_once(agent, &job, attempt, &withdrawn) => result,
                    never = heartbeats(agent, &job, attempt, &withdrawn) => match never {},
                }
            }
            Err(failure) => Err(failure),
        };
        job.in_attempt = false;
        match result {
            Ok(()) => {
                // Recorded first, so that a crash from here on still ends in success.
                job.installed = true;
                agent.state.write_json("job.json", &job)?;
                return complete_success(agent, &job);
            }
            Err(failure) if failure.withdrawn => {
                tracing::warn!(set = %a.set_name, "server withdrew the slot before the install; installing nothing");
                agent.state.remove("job.json")?;
                return Ok(());
            }
            Err(failure) => {
                tracing::warn!(set = %a.set_name, attempt, phase = failure.phase, "attempt failed: {}", failure.reason);
                if give_up_or_wait(agent, &mut job, &policy, attempt, failure).await? {
                    return Ok(());
                }
            }
        }
    }
}

/// Closes a job whose install succeeded, then starts watching the product if the assignment
/// asks for it. Every step is idempotent, so it may run again after a crash (the server ignores
/// a repeated report; the restarted agent starts a new watch).
fn complete_success(agent: &Agent, job: &Job) -> anyhow::Result<()> {
    let a = &job.assignment;
    agent.state.set_installed(&a.product, Some(&a.version))?;
    signing::set_installed_release(&agent.state, &a.product, job.signed_release)?;
    outbox::push(&agent.state, report(job, job.attempts.max(1), ReportKind::Succeeded, None, None))?;
    finish(agent, job)?;
    tracing::info!(set = %a.set_name, product = %a.product, version = %a.version, "upgrade succeeded");
    start_watch(agent, job);
    Ok(())
}

/// Starts the background watch of a patched product when `watch_secs` asks for one (campaign
/// steps); see [`crate::watch`]. The agent's own upgrades are not watched.
fn start_watch(agent: &Agent, job: &Job) {
    let a = &job.assignment;
    if a.watch_secs == 0 || a.product == AGENT_PRODUCT {
        return;
    }
    let module = match a.module.parse::<Module>() {
        Ok(module) => module,
        Err(err) => {
            tracing::warn!(product = %a.product, "not watching the patched product: {err}");
            return;
        }
    };
    tracing::info!(product = %a.product, version = %a.version, watch_secs = a.watch_secs, "watching the patched product");
    agent.watcher.start(WatchRequest {
        set_id: a.set_id,
        product: a.product.clone(),
        version: a.version.clone(),
        from_version: job.from_version.clone(),
        module,
        watch_secs: a.watch_secs,
        step_timeout: Duration::from_secs(a.step_timeout_secs.max(1)),
        env: agent.child_env(),
    });
}

/// Tells the server every `heartbeat_secs` that the attempt is still running, so a long
/// download, install or backoff keeps its slot. Runs until the caller drops it. When the
/// server answers that the slot is gone, it sets `withdrawn`.
async fn heartbeats(agent: &Agent, job: &Job, attempt: u32, withdrawn: &AtomicBool) -> std::convert::Infallible {
    let every = Duration::from_secs(job.assignment.heartbeat_secs.max(1));
    loop {
        tokio::time::sleep(every).await;
        let beat = report(job, attempt, ReportKind::Heartbeat, None, None);
        match agent.client.report(&beat).await {
            Ok(()) => {}
            Err(ApiFailure::Refused { code, message, .. }) if code == "no_slot" || code == "attempt_not_started" => {
                tracing::warn!("the server took the slot away: {message}");
                withdrawn.store(true, Ordering::SeqCst);
            }
            // Unreachable for now: the attempt goes on; its outcome is reported when it can be.
            Err(err) => tracing::warn!("heartbeat not accepted: {err}"),
        }
    }
}

/// Records a failed attempt; returns true when the job is over (gave up).
async fn give_up_or_wait(
    agent: &Agent,
    job: &mut Job,
    policy: &AttemptPolicy,
    attempt: u32,
    failure: AttemptFailure,
) -> anyhow::Result<bool> {
    job.reverted_any |= failure.reverted;
    match policy.after_failure(attempt) {
        AfterFailure::RetryAfter { secs } => {
            outbox::push(
                &agent.state,
                report(job, attempt, ReportKind::AttemptFailed, Some(failure.phase), Some(failure.reason)),
            )?;
            agent.state.write_json("job.json", &*job)?;
            let _ = outbox::flush(&agent.state, &agent.client).await;
            // Heartbeats go on through the backoff: a long wait must not cost the slot.
            let withdrawn = AtomicBool::new(false);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(secs)) => {}
                never = heartbeats(agent, job, attempt, &withdrawn) => match never {},
            }
            if withdrawn.load(Ordering::SeqCst) {
                tracing::warn!("the server took the slot away during the backoff; stopping this job");
                agent.state.remove("job.json")?;
                return Ok(true);
            }
            Ok(false)
        }
        AfterFailure::GiveUp => {
            let previous = job.from_version.as_deref().unwrap_or("nothing");
            let (kind, summary) = if job.reverted_any {
                (
                    ReportKind::RolledBack,
                    format!("rolled back to {previous} after {attempt} attempt(s); last: {}", failure.reason),
                )
            } else {
                (
                    ReportKind::Failed,
                    format!("gave up after {attempt} attempt(s), {previous} left in place; last: {}", failure.reason),
                )
            };
            outbox::push(&agent.state, report(job, attempt, kind, Some(failure.phase), Some(summary)))?;
            finish(agent, job)?;
            Ok(true)
        }
    }
}

fn finish(agent: &Agent, job: &Job) -> anyhow::Result<()> {
    agent.state.remove("job.json")?;
    agent.remember_done(job.assignment.set_id)
}

/// Puts the version from before the job back in place for the `files` module (used after a
/// crash mid-attempt, when the install module had no chance to revert).
fn restore_previous(agent: &Agent, job: &Job) -> anyhow::Result<()> {
    let a = &job.assignment;
    agent.state.set_installed(&a.product, job.from_version.as_deref())?;
    if a.module == "files" && a.product != AGENT_PRODUCT {
        let products = agent.state.products();
        if install::current_version(&products, &a.product) != job.from_version {
            install::switch_current(&products, &a.product, job.from_version.as_deref())?;
        }
    }
    Ok(())
}

/// Transfer failures (server restarting, connection dropped) are retried within the attempt,
/// resuming the partial file: a server outage must not use up an endpoint's attempts. Bytes
/// that fail verification are not retried here; that is a failed attempt.
const TRANSFER_RETRIES: u32 = 8;

async fn fetch_with_retries(agent: &Agent, job: &Job) -> Result<std::path::PathBuf, DownloadError> {
    let a = &job.assignment;
    let mut wait = Duration::from_secs(1);
    let mut tries = 0;
    loop {
        match download::fetch_verified(&agent.client, &agent.state.downloads(), &a.download_path, &a.sha256, a.size)
            .await
        {
            Err(DownloadError::Transfer(why)) if tries < TRANSFER_RETRIES => {
                tries += 1;
                tracing::warn!("download failed ({why}); resuming in {} s", wait.as_secs());
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
            other => return other,
        }
    }
}

/// [`signing::check`], trying again when the server or network failed (as downloads do): a
/// server restarting must not use up an endpoint's attempts. A refusal is final.
async fn check_with_retries(agent: &Agent, a: &rollgate_wire::Assignment) -> Result<Verdict, String> {
    let mut wait = Duration::from_secs(1);
    let mut tries = 0;
    loop {
        match signing::check(&agent.state, &agent.client, a).await {
            Ok(verdict) => return Ok(verdict),
            Err(CheckError::Transient(why)) if tries < TRANSFER_RETRIES => {
                tries += 1;
                tracing::warn!("signature check could not reach the server ({why}); again in {} s", wait.as_secs());
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
            Err(CheckError::Transient(why) | CheckError::Refused(why)) => return Err(why),
        }
    }
}

/// Checks the assignment against the signed repository before a byte is downloaded (the
/// server directs, only the targets key vouches): the signed release counter, or None when
/// this agent holds no TUF root and the server publishes none. Heartbeats keep the slot
/// meanwhile.
async fn verify_signed(
    agent: &Agent,
    job: &Job,
    attempt: u32,
    withdrawn: &AtomicBool,
) -> Result<Option<u64>, AttemptFailure> {
    let a = &job.assignment;
    let verdict = tokio::select! {
        verdict = check_with_retries(agent, a) => verdict,
        never = heartbeats(agent, job, attempt, withdrawn) => match never {},
    };
    match verdict {
        Ok(Verdict::Signed(release)) => {
            tracing::info!(product = %a.product, version = %a.version, release, "the package matches its signed target");
            Ok(Some(release))
        }
        Ok(Verdict::NoRoot) => {
            tracing::warn!(
                product = %a.product,
                version = %a.version,
                "no TUF root (none given with --root, none published by the server): installing on the server's word and its SHA-256 alone"
            );
            Ok(None)
        }
        Err(reason) => Err(AttemptFailure {
            phase: "verify",
            reason: format!("{reason}; nothing was downloaded or installed"),
            reverted: false,
            withdrawn: false,
        }),
    }
}

async fn attempt_once(agent: &Agent, job: &Job, attempt: u32, withdrawn: &AtomicBool) -> Result<(), AttemptFailure> {
    let a = &job.assignment;
    let archive = fetch_with_retries(agent, job).await.map_err(|e| {
        let phase = match e {
            DownloadError::HashMismatch { .. } | DownloadError::TooLong { .. } => "verify",
            _ => "download",
        };
        AttemptFailure { phase, reason: e.to_string(), reverted: false, withdrawn: false }
    })?;
    if withdrawn.load(Ordering::SeqCst) {
        // Nothing is changed on an endpoint that no longer holds a slot.
        return Err(AttemptFailure {
            phase: "download",
            reason: "slot withdrawn by the server".into(),
            reverted: false,
            withdrawn: true,
        });
    }
    if a.product == AGENT_PRODUCT {
        return self_upgrade::hand_over(agent, job, attempt, &archive).await;
    }
    let module: Module = a.module.parse().map_err(|e| AttemptFailure {
        phase: "install",
        reason: format!("{e}"),
        reverted: false,
        withdrawn: false,
    })?;
    // The watch of an earlier install must not judge the product while this one changes it.
    agent.watcher.cancel(&a.product);
    let env = agent.child_env();
    let request = InstallRequest {
        products_dir: &agent.state.products(),
        product: &a.product,
        version: &a.version,
        from_version: job.from_version.as_deref(),
        module,
        archive: &archive,
        env: &env,
        step_timeout: Duration::from_secs(a.step_timeout_secs.max(1)),
    };
    install::install(&request).await.map_err(AttemptFailure::from)?;
    if let Some(prev) = job.from_version.as_deref() {
        let _ = install::prune_versions(&agent.state.products(), &a.product, &[&a.version, prev]);
    }
    // The verified file is no longer needed once installed.
    let _ = std::fs::remove_file(&archive);
    Ok(())
}
