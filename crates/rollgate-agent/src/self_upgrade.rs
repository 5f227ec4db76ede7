//! The agent upgrades itself as the product `rollgate-agent`.
//!
//! The old agent unpacks the new binary, points `products/rollgate-agent/current` at it,
//! writes `self-upgrade.json`, starts the new binary with the same arguments, and waits. The new
//! agent, once it has reached the server over mutual TLS, confirms by renaming the file to
//! `self-upgrade.confirmed`; the old agent gives up waiting by renaming it to
//! `self-upgrade.aborted`. A rename is atomic, so exactly one of them wins: the loser sees the
//! file gone and yields (the old agent exits; the new agent exits). Only the winner records
//! the outcome. If the new agent exits or stays silent for the grace period, the old agent
//! kills it, points `current` back, and counts a failed attempt: the old agent never stopped,
//! so the endpoint is never without a working agent.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use jiff::Timestamp;
use rollgate_wire::{Report, ReportKind};
use tokio::process::Command;

use crate::install;
use crate::job::AttemptFailure;
use crate::state::{Job, SelfUpgrade};
use crate::{outbox, Agent, AGENT_PRODUCT};

const FILE: &str = "self-upgrade.json";
const CONFIRMED: &str = "self-upgrade.confirmed";
const ABORTED: &str = "self-upgrade.aborted";

/// Set in the new agent's environment so that logs say which side is which.
pub const TRIAL_ENV: &str = "ROLLGATE_SELF_UPGRADE_TRIAL";

fn failure(phase: &'static str, reason: String, reverted: bool) -> AttemptFailure {
    AttemptFailure { phase, reason, reverted, withdrawn: false }
}

/// Old agent's side. Returns only on failure; on success the process exits.
pub async fn hand_over(agent: &Agent, job: &Job, attempt: u32, archive: &Path) -> Result<(), AttemptFailure> {
    let a = &job.assignment;
    let products = agent.state.products();
    let dir =
        install::unpack_version(&products, AGENT_PRODUCT, &a.version, archive).await.map_err(AttemptFailure::from)?;
    let new_exe = dir.join("rollgate");
    if !new_exe.is_file() {
        return Err(failure("unpack", "the package has no `rollgate` executable at its root".into(), false));
    }
    let previous = install::current_version(&products, AGENT_PRODUCT);
    let trial = SelfUpgrade {
        set_id: a.set_id,
        attempt,
        from_version: job.from_version.clone(),
        to_version: a.version.clone(),
        new_exe: new_exe.clone(),
        signed_release: job.signed_release,
    };
    let io = |e: anyhow::Error| failure("install", format!("{e:#}"), false);
    agent.state.write_json(FILE, &trial).map_err(io)?;
    install::switch_current(&products, AGENT_PRODUCT, Some(&a.version)).map_err(|e| io(e.into()))?;

    // Gives up on the trial, unless the new agent confirmed first (then this process exits).
    let abort = |reason: String| {
        loop {
            match std::fs::rename(agent.state.file(FILE), agent.state.file(ABORTED)) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::info!("the new agent {} checked in; this agent exits", a.version);
                    std::process::exit(0);
                }
                // Only a rename that happened decides; anything else is tried again.
                Err(e) => {
                    tracing::warn!("could not end the self-upgrade trial ({e}); retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        let _ = install::switch_current(&products, AGENT_PRODUCT, previous.as_deref());
        let _ = agent.state.remove(ABORTED);
        failure("health", reason, true)
    };
    let mut child = match Command::new(&new_exe)
        .args(std::env::args_os().skip(1))
        .env(TRIAL_ENV, "1")
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return Err(abort(format!("could not start the new agent: {e}"))),
    };
    let grace = Duration::from_secs(agent.config.self_upgrade_grace_secs);
    let deadline = tokio::time::Instant::now() + grace;
    tracing::info!(
        pid = child.id(),
        "started the new agent {}; waiting up to {} s for it to check in",
        a.version,
        grace.as_secs()
    );
    loop {
        if !agent.state.file(FILE).exists() {
            tracing::info!("the new agent {} checked in; this agent exits", a.version);
            std::process::exit(0);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(abort(format!("the new agent exited with {status} before checking in")));
        }
        if tokio::time::Instant::now() >= deadline {
            // Killed first, so that it cannot run on as an ordinary agent beside this one.
            let _ = child.kill().await;
            return Err(abort(format!("the new agent did not check in within {} s", grace.as_secs())));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// New agent's side, at start-up, after it reached the server: confirms a trial naming this
/// binary, or finishes one it confirmed before a crash. A trial naming another binary means the
/// old agent restarted mid-trial: it is undone.
pub fn confirm_if_on_trial(agent: &Agent) -> anyhow::Result<()> {
    let me = std::env::current_exe().context("while finding this executable")?;
    let same = |p: &Path| p.canonicalize().ok();
    if let Some(trial) = agent.state.read_json::<SelfUpgrade>(CONFIRMED)? {
        // Only the new binary finishes its own confirmation: an old binary brought back by a
        // service manager must not record a version it is not.
        if same(&me) == same(&trial.new_exe) {
            return complete(agent, &trial);
        }
        tracing::warn!("the confirmed self-upgrade to {} is not this binary; leaving it", trial.to_version);
        return Ok(());
    }
    let Some(trial) = agent.state.read_json::<SelfUpgrade>(FILE)? else {
        if std::env::var_os(TRIAL_ENV).is_some() {
            // Started as a trial, but the old agent has already ended it.
            tracing::warn!("started for a self-upgrade trial that no longer exists; exiting");
            std::process::exit(1);
        }
        return Ok(());
    };
    if same(&me) != same(&trial.new_exe) {
        tracing::warn!("found an unfinished self-upgrade to {} from an earlier run; undoing it", trial.to_version);
        if std::fs::rename(agent.state.file(FILE), agent.state.file(ABORTED)).is_ok() {
            let _ = install::switch_current(&agent.state.products(), AGENT_PRODUCT, trial.from_version.as_deref());
            agent.state.remove(ABORTED)?;
        }
        return Ok(());
    }
    match std::fs::rename(agent.state.file(FILE), agent.state.file(CONFIRMED)) {
        Ok(()) => complete(agent, &trial),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // The old agent gave up on this trial first and has taken over again.
            tracing::warn!("the old agent ended this trial before it was confirmed; exiting");
            std::process::exit(1);
        }
        Err(e) => Err(e).context("while confirming the self-upgrade"),
    }
}

/// Records a confirmed self-upgrade. Idempotent: it runs again if the agent stopped halfway.
fn complete(agent: &Agent, trial: &SelfUpgrade) -> anyhow::Result<()> {
    agent.state.set_installed(AGENT_PRODUCT, Some(&trial.to_version))?;
    crate::signing::set_installed_release(&agent.state, AGENT_PRODUCT, trial.signed_release)?;
    outbox::push(
        &agent.state,
        Report {
            set_id: trial.set_id,
            attempt: trial.attempt,
            kind: ReportKind::Succeeded,
            phase: None,
            reason: None,
            from_version: trial.from_version.clone(),
            to_version: trial.to_version.clone(),
            at: Timestamp::now().to_string(),
        },
    )?;
    agent.state.remove("job.json")?;
    agent.remember_done(trial.set_id)?;
    agent.state.remove(CONFIRMED)?;
    tracing::info!("self-upgrade to {} confirmed", trial.to_version);
    Ok(())
}
