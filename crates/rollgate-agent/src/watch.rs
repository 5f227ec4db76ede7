//! Watching a product after it was patched, and telling the server whether it stayed healthy:
//! the agent's part of a patch campaign's good-patch ratio.
//!
//! After the agent records `succeeded` for an assignment whose `watch_secs` is above zero (a
//! campaign step's soak time), `job.rs` calls [`Watcher::start`], which spawns a Tokio task: the
//! agent's polling and its next jobs go on meanwhile. Every [`check_interval`] (a tenth of the
//! watch, at least [`MIN_CHECK_INTERVAL`] and at most [`MAX_CHECK_INTERVAL`]) the task runs the
//! installed version's health program again, the one its install module judged the install by
//! (`rollgate-health` for `files`, the optional `health` for `script`), with the same working
//! directory, environment and step timeout (`install::check_installed_health`). Then:
//!
//! - The first failing run (a non-zero exit, a signal, the step timeout: the product's processes
//!   crashed, exited abnormally or are unhealthy) ends the watch with one [`PatchHealth`]
//!   `healthy: false`, whose reason names the program, how it ended and the last
//!   [`MAX_REASON_OUTPUT_CHARS`] characters of its output.
//! - When every run passed until `watch_secs` is over (the last run is at its end), one
//!   `healthy: true`.
//! - A version without a health program is not watched and nothing is reported: the server
//!   counts silence as good, and a watch that did not happen is not claimed.
//! - When the version is no longer the installed one (`current` points elsewhere for `files`,
//!   `installed.json` names another version for `script`), the watch ends without a report.
//!
//! One watch per product: starting another, or [`Watcher::cancel`] (which `job.rs` calls when a
//! new install of the product is about to change the endpoint), ends the earlier one without a
//! report. The agent's own upgrades are not watched.
//!
//! Reports go into a bounded channel. In the agent, [`forward_reports`] sends them with
//! `POST /v1/agent/patch-health` over the agent's mutual-TLS client, one at a time, retrying
//! network failures and 5xx answers with a doubling backoff up to [`SendPolicy::max_tries`]
//! tries and then dropping the report with a warning; a 4xx answer (`not_a_member`: this
//! endpoint did not install that version in that set) is logged and not retried. Tests read the
//! channel instead of running a server.
//!
//! Watches live only in memory, on purpose for now: an agent restarted during a watch does not
//! resume it, and a report not yet sent when the agent stops is lost. Either way the server sees
//! silence, which it counts as good.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;
use rollgate_wire::PatchHealth;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::{ApiFailure, Client};
use crate::install::{self, HealthTarget, InstalledHealth, Module};
use crate::state::StateDir;

/// The shortest time between two health checks of a watch.
pub const MIN_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// The longest time between two health checks of a watch.
pub const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// How much of a failing health program's output (its end) goes into the report's reason.
pub const MAX_REASON_OUTPUT_CHARS: usize = 500;
/// Reports waiting to be sent, at most: a watch whose report finds the queue full waits.
pub const REPORT_QUEUE_LEN: usize = 64;

/// How often a watch of `watch_secs` runs the health program: a tenth of the watch, clamped to
/// [`MIN_CHECK_INTERVAL`]..=[`MAX_CHECK_INTERVAL`].
pub fn check_interval(watch_secs: u64) -> Duration {
    (Duration::from_secs(watch_secs) / 10).clamp(MIN_CHECK_INTERVAL, MAX_CHECK_INTERVAL)
}

/// A patched product to watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchRequest {
    /// The set whose install is watched (reported back as is).
    pub set_id: i64,
    /// The product.
    pub product: String,
    /// The version just installed.
    pub version: String,
    /// The version it replaced, given to the health program as during the install.
    pub from_version: Option<String>,
    /// The module that installed it: it names the health program and what "still installed"
    /// means.
    pub module: Module,
    /// How long to watch; 0: no watch.
    pub watch_secs: u64,
    /// Time limit of one health check.
    pub step_timeout: Duration,
    /// Extra environment for the health program, as for the install.
    pub env: Vec<(String, String)>,
}

/// Runs the watches of one agent, at most one per product, and sends their reports into a
/// channel.
///
/// Dropping the watcher does not end running watches: each holds its own sender, so a reader
/// of the channel sees it close once the last watch has ended.
#[derive(Debug)]
pub struct Watcher {
    state: StateDir,
    reports: mpsc::Sender<PatchHealth>,
    running: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl Watcher {
    /// A watcher of the products installed under `state`, reporting into `reports`.
    pub fn new(state: StateDir, reports: mpsc::Sender<PatchHealth>) -> Watcher {
        Watcher { state, reports, running: Mutex::new(HashMap::new()) }
    }

    /// Starts watching `request.product` at `request.version` in a background task, first ending
    /// an earlier watch of the same product without a report. Does nothing when `watch_secs` is
    /// 0. Must be called within a Tokio runtime.
    pub fn start(&self, request: WatchRequest) {
        if request.watch_secs == 0 {
            return;
        }
        let mut running = self.running();
        running.retain(|_, task| !task.is_finished());
        if let Some(earlier) = running.remove(&request.product) {
            tracing::info!(product = %request.product, "a newer install ends the earlier watch");
            earlier.abort();
        }
        let product = request.product.clone();
        let state = self.state.clone();
        let reports = self.reports.clone();
        let task = tokio::spawn(async move {
            let Some(health) = watch(&state, &request).await else { return };
            if reports.send(health).await.is_err() {
                tracing::warn!(product = %request.product, "patch-health report dropped: nobody sends reports");
            }
        });
        running.insert(product, task);
    }

    /// Ends the watch of `product`, if one runs, without a report. Returns whether one ran.
    pub fn cancel(&self, product: &str) -> bool {
        let Some(task) = self.running().remove(product) else { return false };
        let was_running = !task.is_finished();
        task.abort();
        if was_running {
            tracing::info!(product, "watch ended: a new install of the product begins");
        }
        was_running
    }

    fn running(&self) -> MutexGuard<'_, HashMap<String, JoinHandle<()>>> {
        // The map stays consistent even if a holder panicked: every change is one call.
        self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How a watch ended.
enum Outcome {
    /// Every check passed for the whole watch.
    Healthy,
    /// A check failed, for this reason.
    Unhealthy(String),
    /// Nothing to report, for this reason (no health program, version replaced).
    Silent(&'static str),
}

/// Watches one product to its end; the report to send, if any.
async fn watch(state: &StateDir, request: &WatchRequest) -> Option<PatchHealth> {
    let outcome = observe(state, request).await;
    let (product, version, set_id) = (&request.product, &request.version, request.set_id);
    match outcome {
        Outcome::Healthy => {
            tracing::info!(%product, %version, set_id, watch_secs = request.watch_secs, "patched product stayed healthy");
            Some(patch_health(request, true, None))
        }
        Outcome::Unhealthy(reason) => {
            tracing::warn!(%product, %version, set_id, %reason, "patched product became unhealthy");
            Some(patch_health(request, false, Some(reason)))
        }
        Outcome::Silent(why) => {
            tracing::info!(%product, %version, set_id, "no patch-health report: {why}");
            None
        }
    }
}

/// Runs the health checks every [`check_interval`] until one fails or the watch is over.
async fn observe(state: &StateDir, request: &WatchRequest) -> Outcome {
    let products_dir = state.products();
    let target = HealthTarget {
        products_dir: &products_dir,
        product: &request.product,
        version: &request.version,
        from_version: request.from_version.as_deref(),
        module: request.module,
        env: &request.env,
        step_timeout: request.step_timeout,
    };
    // A program that is present but cannot run is left to the first check, which reports why.
    if let Ok(false) = install::has_health_program(&target) {
        return Outcome::Silent("the version has no health program, so there is nothing to watch");
    }
    let interval = check_interval(request.watch_secs);
    let deadline = Instant::now() + Duration::from_secs(request.watch_secs);
    let mut next_check = Instant::now();
    loop {
        next_check = (next_check + interval).min(deadline);
        tokio::time::sleep_until(next_check).await;
        if !still_installed(state, request) {
            return Outcome::Silent("another version replaced it during the watch");
        }
        match install::check_installed_health(&target, MAX_REASON_OUTPUT_CHARS).await {
            InstalledHealth::Healthy if next_check >= deadline => return Outcome::Healthy,
            InstalledHealth::Healthy => {}
            InstalledHealth::Unhealthy(reason) => return Outcome::Unhealthy(reason),
            InstalledHealth::NoProgram => return Outcome::Silent("its health program disappeared during the watch"),
        }
    }
}

/// Whether `request.version` is still the installed version of its product: what `current`
/// points to for `files`, what `installed.json` records for `script` (which has no `current`).
fn still_installed(state: &StateDir, request: &WatchRequest) -> bool {
    let installed = match request.module {
        Module::Files => install::current_version(&state.products(), &request.product),
        Module::Script => match state.installed() {
            Ok(mut installed) => installed.remove(&request.product),
            Err(err) => {
                tracing::warn!(product = %request.product, "cannot tell which version is installed: {err:#}");
                None
            }
        },
    };
    installed.as_deref() == Some(request.version.as_str())
}

fn patch_health(request: &WatchRequest, healthy: bool, reason: Option<String>) -> PatchHealth {
    PatchHealth {
        set_id: request.set_id,
        version: request.version.clone(),
        healthy,
        reason,
        at: Timestamp::now().to_string(),
    }
}

/// How hard to try to deliver one report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendPolicy {
    /// Tries in all (at least one is made).
    pub max_tries: u32,
    /// Wait after the first transient failure, doubled after each further one.
    pub backoff_initial: Duration,
    /// Upper bound on that wait.
    pub backoff_max: Duration,
}

impl Default for SendPolicy {
    /// Six tries over about half a minute: long enough for a server restart.
    fn default() -> Self {
        SendPolicy { max_tries: 6, backoff_initial: Duration::from_secs(1), backoff_max: Duration::from_secs(30) }
    }
}

/// What became of one report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The server recorded it.
    Recorded,
    /// The server refused it (4xx); not retried.
    Refused,
    /// Every try failed to reach the server or met a server error.
    GaveUp,
}

/// Sends one report, retrying network failures and server errors as `policy` allows. Logs a
/// warning unless the report was recorded.
pub async fn send_patch_health(client: &Client, health: &PatchHealth, policy: SendPolicy) -> Delivery {
    let max_tries = policy.max_tries.max(1);
    let mut wait = policy.backoff_initial;
    for try_number in 1..=max_tries {
        match client.patch_health(health).await {
            Ok(()) => return Delivery::Recorded,
            Err(ApiFailure::Refused { status, code, message }) => {
                tracing::warn!(set_id = health.set_id, %status, %code, "server refused the patch-health report: {message}");
                return Delivery::Refused;
            }
            Err(err) if try_number < max_tries => {
                tracing::warn!(set_id = health.set_id, "patch-health report not sent ({err}); again in {wait:?}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(policy.backoff_max);
            }
            Err(err) => {
                tracing::warn!(set_id = health.set_id, "patch-health report dropped after {max_tries} tries: {err}");
            }
        }
    }
    Delivery::GaveUp
}

/// Sends every report from `reports` to the server in order until the channel closes (all
/// senders dropped). The agent runs it as a task for as long as it lives.
pub async fn forward_reports(client: Arc<Client>, mut reports: mpsc::Receiver<PatchHealth>, policy: SendPolicy) {
    while let Some(health) = reports.recv().await {
        send_patch_health(&client, &health, policy).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_run_every_tenth_of_the_watch_within_bounds() {
        let secs = |s: u64| Duration::from_secs(s);
        assert_eq!(check_interval(0), secs(1));
        assert_eq!(check_interval(3), secs(1));
        assert_eq!(check_interval(25), Duration::from_millis(2500));
        assert_eq!(check_interval(600), secs(60));
        assert_eq!(check_interval(86_400), secs(60));
    }
}
