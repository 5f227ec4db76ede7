//! The campaign driver: creates each campaign's month instances on schedule and moves them
//! along, the shell around `rollgate_core::campaign`.
//!
//! On every campaign tick (run by the holder of the `campaigns` lease, one replica at a time)
//! it, for each campaign:
//! 1. creates the first month (`first_month` of when the campaign was applied) or, once the last
//!    month ended, the next one;
//! 2. starts a Scheduled month whose start time has come;
//! 3. for the running step of an Active month: plans the step run once (which package fixes
//!    which approved advisory on which targeted endpoint, `campaign::dispatch::plan`), creates its
//!    Upgrade Sets one package after another (each with the step's max-in-flight, window,
//!    attempts and soak as the agents' watch time, so the step never has more installs in
//!    flight than its limit; the next package starts once nothing is in flight and only
//!    offline endpoints wait), tallies the step's members over its runs and judges the gate;
//! 4. drains a Pausing month (`InFlightDrained` once no install of it is in flight);
//! 5. with `global_autofix` on the last step, adds sets for endpoints that came to need a patch
//!    after the step planned (late enrollments, new findings) while the step runs and after the
//!    month completed, until the next month starts.
//!
//! A month is read with its version and written back only if nobody wrote in between
//! (`Store::save_month`), so an operator's command and the driver cannot both win; only after a
//! successful write are notifications sent. The month's sets follow its state: every tick
//! brings them in line (paused while the month is held, cancelled once it failed, a retried
//! step's old runs cancelled), so a crash between a month's write and its sets' change, or a
//! set created from a read that an operator's command overtook, is repaired within a tick.
//!
//! Modules: this one (the loop and the months), `step` (a step's runs, sets, tally, gate and
//! the sets following the month), `plan` (what a step deploys, global autofix).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use jiff::Timestamp;
use rollgate_core::campaign::month::{step_plans, Month, MonthEvent, MonthState, StepPhase, Transition};
use rollgate_core::campaign::schedule::{first_month, month_start, YearMonth};
use rollgate_core::campaign::spec::{CampaignSpec, ValidCampaign, ValidStep};
use rollgate_store::{CampaignRecord, MonthRow, Store, StoreError, TransitionRow};
use serde::{Deserialize, Serialize};

use crate::AppState;

mod plan;
mod step;

pub use plan::collected;
pub use step::{RunFacts, StepStanding};

/// The name of the campaign driver's lease.
pub const LEASE: &str = "campaigns";

/// Parses and validates a campaign file; the error lists every problem, one per line.
pub fn parse(text: &str) -> Result<ValidCampaign, String> {
    let spec: CampaignSpec = toml::from_str(text).map_err(|e| format!("the file is not a campaign: {e}"))?;
    spec.validate().map_err(|e| e.problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
}

/// A stored month, restored, with the row it came from (whose version a write must match).
pub struct Loaded {
    /// The row as read.
    pub row: MonthRow,
    /// The month.
    pub month: Month,
}

impl Loaded {
    fn from_row(row: MonthRow) -> anyhow::Result<Loaded> {
        let snapshot = serde_json::from_str(&row.snapshot)
            .with_context(|| format!("stored campaign {} month {} is damaged", row.campaign, row.month))?;
        let month = Month::restore(&snapshot)?;
        Ok(Loaded { row, month })
    }

    /// True once the month started (it may be over since).
    pub fn started(&self) -> bool {
        self.month.step_run() > 0
    }
}

/// The months of `campaign`, oldest first.
pub async fn load_months(store: &dyn Store, campaign: &str) -> anyhow::Result<Vec<Loaded>> {
    store.campaign_months(campaign).await?.into_iter().map(Loaded::from_row).collect()
}

fn row_of(campaign: &str, month: &Month, version: i64, now: Timestamp) -> anyhow::Result<MonthRow> {
    Ok(MonthRow {
        campaign: campaign.to_owned(),
        month: month.month().to_string(),
        state: month.effective().as_str().to_owned(),
        snapshot: serde_json::to_string(&month.snapshot())?,
        version,
        created_at: now,
        updated_at: now,
    })
}

fn transition_row(t: &Transition) -> TransitionRow {
    TransitionRow {
        at: t.at,
        from: t.from.as_str().to_owned(),
        to: t.to.as_str().to_owned(),
        step: u32::try_from(t.step).unwrap_or(u32::MAX),
        reason: t.reason.clone(),
    }
}

/// Records an operator's decision that changed `loaded`'s month into `month` without moving
/// its state (a vulnerability approval), with `reason` in its history; [`StoreError::Conflict`]
/// when the month changed since it was read.
pub async fn save_decision(
    store: &dyn Store,
    loaded: &Loaded,
    month: &Month,
    reason: &str,
    now: Timestamp,
) -> anyhow::Result<()> {
    let state = month.effective();
    let record = Transition { from: state, to: state, step: month.step(), at: now, reason: reason.to_owned() };
    let row = row_of(&loaded.row.campaign, month, loaded.row.version, now)?;
    store.save_month(&row, &[transition_row(&record)], now).await?;
    Ok(())
}

/// A conflict error from the store, for callers that retry.
pub fn is_conflict(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<StoreError>(), Some(StoreError::Conflict(_)))
}

// ------------------------------------------------------------------------------- the loop

/// Runs the driver for ever on whichever replica holds the `campaigns` lease. It has a lease
/// and a task of its own so that its scans (which read every targeted endpoint) never delay
/// the rollout scheduler's ticks or lease.
pub async fn run(state: AppState) {
    let tick = Duration::from_millis(state.config.campaign_tick_ms.max(10));
    // Outlives a slow tick (a step's first plan scans every targeted endpoint).
    let lease_ms = i64::try_from((tick * 6).max(Duration::from_secs(60)).as_millis()).unwrap_or(i64::MAX);
    loop {
        match state.store.try_lease(LEASE, &state.replica_id, Timestamp::now(), lease_ms).await {
            Ok(true) => {
                if state.campaigns.tick(&state, Timestamp::now()).await {
                    state.announce_change();
                }
            }
            Ok(false) => {}
            Err(e) => tracing::error!("could not renew the campaign driver's lease: {e}"),
        }
        tokio::time::sleep(tick).await;
    }
}

/// Per-process state of the driver: when each campaign last ran its (costly) autofix scan.
#[derive(Default)]
pub struct Driver {
    autofix_scanned: Mutex<HashMap<String, Instant>>,
}

/// How often, in campaign ticks, the last step of a campaign with `global_autofix` looks for
/// endpoints that came to need a patch (every 30 s at the default 5 s tick): a scan matches
/// every deployable advisory against every targeted endpoint.
const AUTOFIX_SCAN_TICKS: u64 = 6;

/// How many of a campaign's newest months each tick keeps their sets in line with.
const MONTHS_RECONCILED: usize = 3;

impl Driver {
    /// One pass over every campaign. Errors of one campaign are logged and do not stop the rest.
    pub async fn tick(&self, state: &AppState, now: Timestamp) -> bool {
        let campaigns = match state.store.list_campaigns().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("campaign driver could not list campaigns: {e}");
                return false;
            }
        };
        let mut changed = false;
        for record in campaigns {
            match self.tick_campaign(state, &record, now).await {
                Ok(c) => changed |= c,
                Err(e) => tracing::error!(campaign = %record.name, "campaign driver: {e:#}"),
            }
        }
        changed
    }

    async fn tick_campaign(&self, state: &AppState, record: &CampaignRecord, now: Timestamp) -> anyhow::Result<bool> {
        let campaign = parse(&record.spec)
            .map_err(|p| anyhow::anyhow!("stored campaign no longer validates: {}", p.replace('\n', "; ")))?;
        let first = first_month(&campaign, record.created_at)?;
        let mut months = load_months(&*state.store, &record.name).await?;
        let mut changed = ensure_month(state, &record.name, &campaign, first, &months, now).await?;
        if changed {
            months = load_months(&*state.store, &record.name).await?;
        }
        let autofix_due = self.autofix_due(&record.name, state.config.campaign_tick_ms);
        let ctx =
            Ctx { state, name: &record.name, campaign: &campaign, first, autofix_due, cache: TickCache::default() };
        for loaded in months.iter().rev().take(MONTHS_RECONCILED) {
            changed |= ctx.reconcile_sets(loaded, now).await?;
        }
        if let Some(latest) = months.last().filter(|m| !m.month.effective().is_terminal()) {
            changed |= ctx.tick_month(latest, now).await?;
        }
        // The newest completed month keeps its last step's autofix until a later month starts.
        let newest_done = months.iter().rposition(|m| m.month.effective() == MonthState::Completed);
        if let Some(i) = newest_done {
            if !months[i + 1..].iter().any(Loaded::started) {
                changed |= ctx.autofix(&months[i], now).await?;
            }
        }
        Ok(changed)
    }

    fn autofix_due(&self, campaign: &str, campaign_tick_ms: u64) -> bool {
        let interval = Duration::from_millis(campaign_tick_ms.saturating_mul(AUTOFIX_SCAN_TICKS));
        let Ok(mut scanned) = self.autofix_scanned.lock() else { return true };
        let due = scanned.get(campaign).is_none_or(|at| at.elapsed() >= interval);
        if due {
            scanned.insert(campaign.to_owned(), Instant::now());
        }
        due
    }
}

/// Creates the campaign's first month, or the next one once the latest ended. A server that
/// was down for months catches up one month at a time, each starting at once with its own
/// advisory window, so no month's advisories are skipped.
async fn ensure_month(
    state: &AppState,
    name: &str,
    campaign: &ValidCampaign,
    first: YearMonth,
    months: &[Loaded],
    now: Timestamp,
) -> anyhow::Result<bool> {
    let next = match months.last() {
        None => first,
        Some(latest) if latest.month.effective().is_terminal() => latest.month.month().next()?,
        Some(_) => return Ok(false),
    };
    let month = Month::new(next, month_start(campaign, next)?, step_plans(campaign))?;
    let reason = format!("month {next} scheduled to start at {}", month.start_at());
    let first_transition = TransitionRow {
        at: now,
        from: "created".to_owned(),
        to: MonthState::Scheduled.as_str().to_owned(),
        step: 0,
        reason,
    };
    let created = state.store.create_month(&row_of(name, &month, 1, now)?, &first_transition).await?;
    if created {
        tracing::info!(campaign = name, month = %next, "campaign month scheduled for {}", month.start_at());
    }
    Ok(created)
}

/// What one campaign's tick works with.
pub struct Ctx<'a> {
    /// Server state.
    pub state: &'a AppState,
    /// The campaign's name.
    pub name: &'a str,
    /// The campaign.
    pub campaign: &'a ValidCampaign,
    /// Its first month.
    pub first: YearMonth,
    /// Whether this tick may run the global autofix scan (throttled by the driver).
    pub autofix_due: bool,
    /// What this tick already read.
    pub cache: TickCache,
}

/// Reads one tick (or one view) shares, so that a step's members and the endpoints' last-seen
/// times are read once, not once per decision: on a large fleet they are most of a tick's cost.
/// A tick lasts well under a second; what agents report meanwhile is seen at the next one.
#[derive(Default)]
pub struct TickCache {
    endpoints: tokio::sync::OnceCell<Vec<rollgate_store::EndpointRecord>>,
    last_seen: tokio::sync::OnceCell<HashMap<String, Option<Timestamp>>>,
    members: Mutex<HashMap<i64, step::Members>>,
}

/// The plan of one step run as stored (`campaign_step_runs.plan`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StoredPlan {
    /// One entry per package, in the order their sets are created.
    pub deployments: Vec<StoredDeployment>,
    /// `(advisory, software)` with no fixing package in the store.
    pub needs_package: Vec<(String, String)>,
}

/// One package of a stored plan.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredDeployment {
    /// Product.
    pub product: String,
    /// Version.
    pub version: String,
    /// Endpoints that get it.
    pub endpoints: Vec<String>,
}

impl Ctx<'_> {
    fn store(&self) -> &dyn Store {
        &*self.state.store
    }

    /// Every endpoint with its inventory, read once per tick (or view): planning every step of
    /// a month, and its vulnerabilities, match against the same list.
    pub async fn endpoints(&self) -> anyhow::Result<&[rollgate_store::EndpointRecord]> {
        let endpoints =
            self.cache.endpoints.get_or_try_init(|| async { anyhow::Ok(self.store().list_endpoints().await?) }).await?;
        Ok(endpoints)
    }

    /// When each endpoint was last seen, read once per tick.
    async fn last_seen(&self) -> anyhow::Result<&HashMap<String, Option<Timestamp>>> {
        self.cache
            .last_seen
            .get_or_try_init(|| async { Ok(self.store().endpoints_last_seen().await?.into_iter().collect()) })
            .await
    }

    /// A set's members and their states, read once per tick.
    async fn members_of(&self, set_id: i64) -> anyhow::Result<step::Members> {
        if let Some(members) = self.cache.members.lock().ok().and_then(|m| m.get(&set_id).cloned()) {
            return Ok(members);
        }
        let members: step::Members = Arc::new(self.store().member_states(set_id).await?);
        if let Ok(mut cache) = self.cache.members.lock() {
            cache.insert(set_id, members.clone());
        }
        Ok(members)
    }

    /// The campaign's step that is step `index` of `month`, found by name: the month keeps the
    /// steps it was created with, and a re-applied campaign may have reordered its own.
    pub fn step_of(&self, month: &Month, index: usize) -> anyhow::Result<&ValidStep> {
        let name =
            &month.plan().get(index).with_context(|| format!("month {} has no step {index}", month.month()))?.name;
        self.campaign.steps().iter().find(|s| s.name() == name).with_context(|| {
            format!(
                "the campaign no longer has step `{name}`, which month {} runs; re-add it or stop the month",
                month.month()
            )
        })
    }

    async fn tick_month(&self, loaded: &Loaded, now: Timestamp) -> anyhow::Result<bool> {
        let month = &loaded.month;
        match month.effective() {
            MonthState::Scheduled if month.due_to_start(now) => {
                self.apply(loaded, MonthEvent::Start, now).await?;
                Ok(true)
            }
            MonthState::Active if month.phase() == StepPhase::Running => self.drive_step(loaded, now).await,
            MonthState::Active => {
                // Awaiting approval: the step's remaining sets keep deploying; autofix still
                // covers the last step.
                let changed = self.create_next_set(loaded, now).await?;
                Ok(changed | self.autofix_if_last(loaded, now).await?)
            }
            MonthState::Pausing => {
                if self.in_flight_now(loaded).await? == 0 {
                    self.apply(loaded, MonthEvent::InFlightDrained, now).await?;
                    return Ok(true);
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// Applies `event` to the stored month and, once written, brings its sets in line and
    /// sends the notifications it calls for.
    pub async fn apply(&self, loaded: &Loaded, event: MonthEvent, now: Timestamp) -> anyhow::Result<Transition> {
        let mut month = loaded.month.clone();
        let transition = month.apply(now, event.clone())?;
        let row = row_of(self.name, &month, loaded.row.version, now)?;
        self.store().save_month(&row, &[transition_row(&transition)], now).await?;
        tracing::info!(campaign = self.name, month = %month.month(), "{transition}");
        let after = Loaded { row: MonthRow { version: loaded.row.version + 1, ..row }, month };
        if let Err(e) = self.reconcile_sets(&after, now).await {
            // The next tick tries again.
            tracing::warn!(campaign = self.name, "could not bring the month's sets in line: {e:#}");
        }
        if let Some(kind) = notification_kind(&event, &after.month, loaded.month.step()) {
            self.notify(kind, &loaded.month, loaded.month.step(), &transition.reason, now);
        }
        Ok(transition)
    }

    fn notify(&self, kind: &'static str, month: &Month, step: usize, reason: &str, now: Timestamp) {
        let Ok(spec) = self.step_of(month, step) else { return };
        let notify = spec.notify();
        if notify.emails.is_empty() && notify.webhooks.is_empty() {
            return;
        }
        let n = rollgate_wire::CampaignNotification {
            event: kind.to_owned(),
            campaign: self.name.to_owned(),
            month: month.month().to_string(),
            step: spec.name().to_owned(),
            reason: reason.to_owned(),
            at: crate::api::rfc3339(now),
        };
        let notifier = self.state.notifier.clone();
        let (emails, webhooks) = (notify.emails.clone(), notify.webhooks.clone());
        tokio::spawn(async move {
            for d in notifier.send(&n, &emails, &webhooks).await {
                // Webhook URLs often carry a secret token: only their origin is logged.
                let recipient = crate::notify::redacted(&d.recipient);
                match d.result {
                    Ok(()) => tracing::info!(%recipient, "sent {} notification of {} {}", n.event, n.campaign, n.month),
                    Err(e) => tracing::warn!(%recipient, "could not send {} notification: {e}", n.event),
                }
            }
        });
    }
}

/// Which notification an accepted event calls for, if any.
fn notification_kind(event: &MonthEvent, after: &Month, step: usize) -> Option<&'static str> {
    match event {
        MonthEvent::StepGateFailed { .. } => Some("gate_failed"),
        MonthEvent::StepGatePassed { .. } if after.phase() == StepPhase::AwaitingApproval && after.step() == step => {
            Some("awaiting_approval")
        }
        MonthEvent::StepGatePassed { .. } => Some("step_completed"),
        _ => None,
    }
}

/// The current step and run of a month (run 1 before any retry).
fn current_place(month: &Month) -> (usize, u32) {
    (month.step(), month.step_run().max(1))
}

fn step_u32(step: usize) -> u32 {
    u32::try_from(step).unwrap_or(u32::MAX)
}
