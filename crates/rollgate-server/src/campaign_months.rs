//! The campaign driver: creates each campaign's month instances on schedule and moves them
//! along, the shell around `rollgate_core::campaign`.
//!
//! On every campaign tick (run by the scheduler's lease holder) it, for each campaign:
//! 1. creates the first month (`first_month` of when the campaign was applied) or, once the last
//!    month ended, the next one;
//! 2. starts a Scheduled month whose start time has come;
//! 3. for the running step of an Active month: plans the step run once (which package fixes
//!    which approved advisory on which targeted endpoint, `campaign::dispatch::plan`), creates its
//!    Upgrade Sets one package after another (each with the step's max-in-flight, window and
//!    soak as the agents' watch time, so the step never has more installs in flight than its
//!    limit), tallies the sets' members and judges the gate;
//! 4. drains a Pausing month (`InFlightDrained` once no install of it is in flight);
//! 5. with `global_autofix` on the last step, adds sets for endpoints that came to need a patch
//!    after the step planned (late enrollments, new findings) while the step runs and after the
//!    month completed, until the next month starts.
//!
//! A month is read with its version and written back only if nobody wrote in between
//! (`Store::save_month`), so an operator's command and the driver cannot both win; only after a
//! successful write are side effects run: set pauses and resumes, and notifications.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use jiff::Timestamp;
use rollgate_advisories::matching::{findings, Inventory};
use rollgate_advisories::Advisory;
use rollgate_core::campaign::dispatch::{self, EndpointProgress, InstallProgress, Need};
use rollgate_core::campaign::gate::{self, StepTally};
use rollgate_core::campaign::month::{step_plans, Month, MonthEvent, MonthState, StepPhase, Transition};
use rollgate_core::campaign::schedule::{advisory_window, first_month, month_start, YearMonth};
use rollgate_core::campaign::spec::{CampaignSpec, Severity, ValidCampaign, ValidStep};
use rollgate_core::member::MemberState;
use rollgate_core::set::SetEvent;
use rollgate_store::{
    AdvisoryFilter, AdvisoryRecord, CampaignRecord, EndpointRecord, MonthRow, NewSet, StepRunRow, Store, StoreError,
    TransitionRow,
};
use rollgate_wire::CampaignNotification;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::advisories::severity_matches;
use crate::AppState;

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

// ------------------------------------------------------------------------------- the tick

/// Per-process state of the driver: when each campaign last ran its (costly) autofix scan.
#[derive(Default)]
pub struct Driver {
    autofix_scanned: Mutex<HashMap<String, Instant>>,
}

/// How often, in campaign ticks, the last step of a campaign with `global_autofix` looks for
/// endpoints that came to need a patch (every 30 s at the default 5 s tick): a scan matches
/// every deployable advisory against every targeted endpoint.
const AUTOFIX_SCAN_TICKS: u64 = 6;

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
        let ctx = Ctx { state, name: &record.name, campaign: &campaign, first, autofix_due };
        if let Some(latest) = months.last().filter(|m| !m.month.effective().is_terminal()) {
            changed |= ctx.tick_month(latest, now).await?;
        }
        // The newest completed month keeps its last step's autofix until a later month starts.
        let newest_done = months.iter().rposition(|m| m.month.effective() == MonthState::Completed);
        if let Some(i) = newest_done {
            if months[i + 1..].iter().all(|m| m.month.effective() == MonthState::Scheduled) {
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

/// Creates the campaign's first month, or the next one once the latest ended.
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
    let first_transition =
        TransitionRow { at: now, from: "created".to_owned(), to: MonthState::Scheduled.as_str().to_owned(), step: 0, reason };
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

/// What the driver read of one step run: its plan, sets and members.
pub struct RunFacts {
    /// The stored run.
    pub run: StepRunRow,
    /// Its plan.
    pub plan: StoredPlan,
    /// Each created set's record and members, by `seq`.
    pub sets: BTreeMap<u32, (rollgate_store::SetRecord, Vec<rollgate_store::MemberRecord>)>,
}

impl RunFacts {
    /// Per targeted endpoint, the progress of each of its installs.
    pub fn progress(&self, endpoints: &HashMap<String, EndpointRecord>, bad: &BTreeSet<String>, good: &BTreeSet<String>) -> Vec<EndpointProgress> {
        let mut per: BTreeMap<&str, Vec<InstallProgress>> = BTreeMap::new();
        for (seq, d) in (0u32..).zip(&self.plan.deployments) {
            let members: HashMap<&str, MemberState> = self
                .sets
                .get(&seq)
                .map(|(_, ms)| ms.iter().map(|m| (m.endpoint_id.as_str(), m.member.state)).collect())
                .unwrap_or_default();
            for e in &d.endpoints {
                per.entry(e).or_default().push(members.get(e.as_str()).map_or(InstallProgress::NotStarted, |s| install_progress(*s)));
            }
        }
        per.into_iter()
            .map(|(e, installs)| EndpointProgress {
                installs,
                last_seen: endpoints.get(e).and_then(|r| r.last_seen),
                reported_good: good.contains(e),
                reported_bad: bad.contains(e),
            })
            .collect()
    }

    /// Ids of its sets.
    pub fn set_ids(&self) -> Vec<i64> {
        self.sets.values().map(|(s, _)| s.id).collect()
    }
}

fn install_progress(state: MemberState) -> InstallProgress {
    match state {
        MemberState::Pending => InstallProgress::NotStarted,
        MemberState::InProgress => InstallProgress::Running,
        MemberState::Succeeded => InstallProgress::Succeeded,
        MemberState::Failed | MemberState::RolledBack | MemberState::TimedOut => InstallProgress::Failed,
    }
}

impl Ctx<'_> {
    fn store(&self) -> &dyn Store {
        &*self.state.store
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
                let in_flight = self.in_flight_now(loaded).await?;
                if in_flight == 0 {
                    self.apply(loaded, MonthEvent::InFlightDrained, now).await?;
                    return Ok(true);
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// Plans, dispatches and judges the running step.
    async fn drive_step(&self, loaded: &Loaded, now: Timestamp) -> anyhow::Result<bool> {
        let mut changed = self.create_next_set(loaded, now).await?;
        changed |= self.autofix_if_last(loaded, now).await?;
        let Some(facts) = self.current_run(loaded).await? else { return Ok(changed) };
        let tally = self.tally(&facts).await?;
        let step = self.step(loaded.month.step())?;
        let verdict = gate::evaluate(step.acceptance(), &tally, loaded.month.soak_done_at(now));
        let in_flight = tally.running();
        if let Some(event) = MonthEvent::from_gate(loaded.month.step(), &verdict, in_flight) {
            self.apply(loaded, event, now).await?;
            changed = true;
        }
        Ok(changed)
    }

    fn step(&self, index: usize) -> anyhow::Result<&ValidStep> {
        self.campaign
            .steps()
            .get(index)
            .with_context(|| format!("the campaign no longer has step {index}; the month keeps its own plan"))
    }

    /// The month's current step run, planned now if it was not.
    async fn current_run(&self, loaded: &Loaded) -> anyhow::Result<Option<RunFacts>> {
        let (step, run) = current_place(&loaded.month);
        if step >= self.campaign.steps().len() {
            return Ok(None);
        }
        let month = loaded.row.month.as_str();
        let find = |runs: Vec<StepRunRow>| runs.into_iter().find(|r| r.step == step_u32(step) && r.run == run);
        let stored = match find(self.store().step_runs(self.name, month).await?) {
            Some(r) => r,
            None => {
                let plan = self.plan_step(&loaded.month, step).await?;
                let row = StepRunRow {
                    step: step_u32(step),
                    run,
                    started_at: loaded.month.changed_at().unwrap_or_else(Timestamp::now),
                    plan: serde_json::to_string(&plan)?,
                    sets: Vec::new(),
                };
                if self.store().start_step_run(self.name, month, &row).await? {
                    let endpoints: usize = plan.deployments.iter().map(|d| d.endpoints.len()).sum();
                    tracing::info!(campaign = self.name, month, step, run, "step planned: {} packages, {endpoints} installs", plan.deployments.len());
                }
                find(self.store().step_runs(self.name, month).await?).context("the step run just recorded is missing")?
            }
        };
        self.run_facts_of(stored).await.map(Some)
    }

    /// What a stored run's sets say now.
    pub async fn run_facts_of(&self, run: StepRunRow) -> anyhow::Result<RunFacts> {
        let plan: StoredPlan = serde_json::from_str(&run.plan).context("a stored step plan is damaged")?;
        let mut sets = BTreeMap::new();
        for (seq, set_id) in &run.sets {
            let set = self.store().get_set(*set_id).await?;
            let members = self.store().set_members(*set_id).await?;
            sets.insert(*seq, (set, members));
        }
        Ok(RunFacts { run, plan, sets })
    }

    /// The gate's tally of a run.
    pub async fn tally(&self, facts: &RunFacts) -> anyhow::Result<StepTally> {
        let endpoints: HashMap<String, EndpointRecord> =
            self.store().list_endpoints().await?.into_iter().map(|e| (e.id.clone(), e)).collect();
        let (bad, good) = self.health(&facts.set_ids()).await?;
        Ok(dispatch::tally(&facts.progress(&endpoints, &bad, &good), facts.run.started_at))
    }

    /// Endpoints reported bad (by agent or operator) and endpoints their agent reported good.
    async fn health(&self, set_ids: &[i64]) -> anyhow::Result<(BTreeSet<String>, BTreeSet<String>)> {
        let mut bad = BTreeSet::new();
        let mut good = BTreeSet::new();
        for h in self.store().patch_health(set_ids).await? {
            if !h.healthy {
                bad.insert(h.endpoint_id);
            } else if h.source == "agent" {
                good.insert(h.endpoint_id);
            }
        }
        Ok((bad, good))
    }

    /// Installs of the month's current step run in flight now.
    pub async fn in_flight_now(&self, loaded: &Loaded) -> anyhow::Result<u32> {
        let Some(facts) = self.current_run(loaded).await? else { return Ok(0) };
        let running = facts
            .sets
            .values()
            .flat_map(|(_, members)| members)
            .filter(|m| m.member.state == MemberState::InProgress)
            .count();
        Ok(u32::try_from(running).unwrap_or(u32::MAX))
    }

    /// Creates the run's next set once every earlier one ended: one package at a time.
    async fn create_next_set(&self, loaded: &Loaded, now: Timestamp) -> anyhow::Result<bool> {
        if loaded.month.effective() != MonthState::Active {
            return Ok(false);
        }
        let Some(facts) = self.current_run(loaded).await? else { return Ok(false) };
        if facts.sets.values().any(|(set, _)| !set.state.is_terminal()) {
            return Ok(false);
        }
        let seq = u32::try_from(facts.sets.len()).unwrap_or(u32::MAX);
        let Some(deployment) = facts.plan.deployments.get(seq as usize) else { return Ok(false) };
        let (step, run) = current_place(&loaded.month);
        self.create_set(&loaded.row.month, (step, run, seq), deployment, now).await?;
        Ok(true)
    }

    async fn create_set(
        &self,
        month: &str,
        (step, run, seq): (usize, u32, u32),
        deployment: &StoredDeployment,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        let spec = self.step(step)?;
        let name = set_name(self.name, month, step, run, seq);
        let new = NewSet {
            name: name.clone(),
            product: deployment.product.clone(),
            version: deployment.version.clone(),
            selector: format!("campaign {} {month} step {}", self.name, spec.name()),
            max_in_flight: spec.max_in_flight(),
            max_attempts: spec.max_attempts(),
            start_at: None,
            window: spec.window().map(ToString::to_string),
            seed: seed_of(&name),
            backoff_secs: spec.retry_backoff_secs(),
            stuck_timeout_secs: 900,
            step_timeout_secs: 600,
            watch_secs: spec.soak_secs(),
        };
        let members: Vec<(String, u32)> = rollgate_core::order::release_order(new.seed, &deployment.endpoints)
            .into_iter()
            .zip(0u32..)
            .collect();
        self.store()
            .create_campaign_set(self.name, month, (step_u32(step), run, seq), &new, &members, now)
            .await?;
        tracing::info!(campaign = self.name, month, set = %name, "created set for {}@{} on {} endpoints", deployment.product, deployment.version, members.len());
        self.state.wake_scheduler.notify_one();
        Ok(())
    }

    /// Applies `event` to the stored month and, once written, runs its side effects.
    pub async fn apply(&self, loaded: &Loaded, event: MonthEvent, now: Timestamp) -> anyhow::Result<Transition> {
        let mut month = loaded.month.clone();
        let transition = month.apply(now, event.clone())?;
        let row = MonthRow { version: loaded.row.version, ..row_of(self.name, &month, loaded.row.version, now)? };
        self.store().save_month(&row, &[transition_row(&transition)], now).await?;
        tracing::info!(campaign = self.name, month = %month.month(), "{transition}");
        self.after(loaded, &month, &event, &transition, now).await;
        Ok(transition)
    }

    /// Side effects of an accepted transition: the month's sets follow its pauses, a retried
    /// step's old sets stop, and the step's recipients hear about gates.
    async fn after(&self, before: &Loaded, month: &Month, event: &MonthEvent, t: &Transition, now: Timestamp) {
        let was_held = matches!(before.month.effective(), MonthState::Pausing | MonthState::Paused);
        let held = matches!(month.effective(), MonthState::Pausing | MonthState::Paused);
        if let MonthEvent::RetryStep { step } = event {
            // The new run plans afresh from what is still unpatched.
            self.set_sets(before, SetEvent::Cancel, &t.reason, now, Some(*step)).await;
        }
        if held && !was_held {
            self.set_sets(before, SetEvent::Pause, &t.reason, now, None).await;
        } else if was_held && month.effective() == MonthState::Active {
            self.set_sets(before, SetEvent::Resume, &t.reason, now, None).await;
        } else if month.effective() == MonthState::Failed {
            self.set_sets(before, SetEvent::Cancel, &t.reason, now, None).await;
        }
        if let Some(kind) = notification_kind(event, month, before.month.step()) {
            self.notify(kind, &before.month, before.month.step(), &t.reason, now);
        }
    }

    /// Sends `event` of the month's step to all of the month's sets that allow it.
    async fn set_sets(&self, loaded: &Loaded, event: SetEvent, reason: &str, now: Timestamp, only_step: Option<usize>) {
        let runs = match self.store().step_runs(self.name, &loaded.row.month).await {
            Ok(r) => r,
            Err(e) => return tracing::error!(campaign = self.name, "could not list the month's sets: {e}"),
        };
        let runs = runs.iter().filter(|r| only_step.is_none_or(|step| r.step as usize == step));
        for (_, set_id) in runs.flat_map(|r| &r.sets) {
            let Ok(set) = self.store().get_set(*set_id).await else { continue };
            if set.state.apply(event).is_err() {
                continue;
            }
            let reason = format!("campaign {}: {reason}", self.name);
            if let Err(e) = self.store().change_set_state(&set.spec.name, event, &reason, now).await {
                tracing::warn!(set = %set.spec.name, "could not {event:?} the campaign's set: {e}");
            }
        }
        self.state.wake_scheduler.notify_one();
        self.state.announce_change();
    }

    fn notify(&self, kind: &'static str, month: &Month, step: usize, reason: &str, now: Timestamp) {
        let Some(spec) = self.campaign.steps().get(step) else { return };
        let notify = spec.notify();
        if notify.emails.is_empty() && notify.webhooks.is_empty() {
            return;
        }
        let n = CampaignNotification {
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
                match d.result {
                    Ok(()) => tracing::info!(recipient = %d.recipient, "sent {} notification of {} {}", n.event, n.campaign, n.month),
                    Err(e) => tracing::warn!(recipient = %d.recipient, "could not send {} notification: {e}", n.event),
                }
            }
        });
    }

    // ------------------------------------------------------------------ planning

    /// The advisories `month` collects (its window, the campaign's products and severities).
    pub async fn collected(&self, month: YearMonth) -> anyhow::Result<Vec<AdvisoryRecord>> {
        collected(self.store(), self.campaign, month, self.first).await
    }

    /// The needs of the month's deployable advisories on `endpoints`.
    pub async fn needs(&self, month: &Month, endpoints: &[EndpointRecord]) -> anyhow::Result<Vec<Need>> {
        let records = self.collected(month.month()).await?;
        let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
        let deployable: BTreeSet<&str> = month.deployable(ids).into_iter().collect();
        let mut needs = Vec::new();
        for record in records.iter().filter(|r| deployable.contains(r.id.as_str())) {
            let advisory: Advisory = serde_json::from_str(&record.document)
                .with_context(|| format!("stored advisory {} is damaged", record.id))?;
            needs.extend(self.needs_of(&advisory, endpoints).await?);
        }
        Ok(needs)
    }

    async fn needs_of(&self, advisory: &Advisory, endpoints: &[EndpointRecord]) -> anyhow::Result<Vec<Need>> {
        let names: Vec<String> = advisory
            .product_names()
            .iter()
            .flat_map(|n| [n.to_lowercase(), format!("src:{}", n.to_lowercase())])
            .collect();
        let mut packages: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        for (endpoint, name, version) in self.store().software_named(&names).await? {
            packages.entry(endpoint).or_default().insert(name, version);
        }
        let empty = BTreeMap::new();
        let mut needs = Vec::new();
        for e in endpoints {
            let inventory = Inventory {
                os_id: e.os_id.as_deref(),
                os_version: e.os_version.as_deref(),
                packages: packages.get(&e.id).unwrap_or(&empty),
                products: &e.products,
            };
            for f in findings(advisory, &inventory) {
                needs.push(Need {
                    endpoint: e.id.clone(),
                    advisory: advisory.id.clone(),
                    software: f.software,
                    fixed_version: f.fixed_version,
                });
            }
        }
        Ok(needs)
    }

    /// Stored packages by product.
    pub async fn packages(&self) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
        let mut by_product: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in self.store().list_packages().await? {
            by_product.entry(p.product).or_default().push(p.version);
        }
        Ok(by_product)
    }

    /// The endpoints step `step` targets.
    pub async fn targeted(&self, step: usize) -> anyhow::Result<Vec<EndpointRecord>> {
        let selector = self.step(step)?.targets().clone();
        Ok(self.store().list_endpoints().await?.into_iter().filter(|e| selector.matches(&e.id, &e.labels)).collect())
    }

    /// What step `step` of `month` would deploy if it started now.
    pub async fn plan_step(&self, month: &Month, step: usize) -> anyhow::Result<StoredPlan> {
        let targeted = self.targeted(step).await?;
        let needs = self.needs(month, &targeted).await?;
        let plan = dispatch::plan(&needs, &self.packages().await?);
        Ok(StoredPlan {
            deployments: plan
                .deployments
                .into_iter()
                .map(|d| StoredDeployment { product: d.product, version: d.version, endpoints: d.endpoints })
                .collect(),
            needs_package: plan.needs_package.into_iter().collect(),
        })
    }

    // ------------------------------------------------------------------ global autofix

    async fn autofix_if_last(&self, loaded: &Loaded, now: Timestamp) -> anyhow::Result<bool> {
        let last = loaded.month.step() + 1 == self.campaign.steps().len();
        if !last || !self.campaign.steps().last().is_some_and(ValidStep::global_autofix) {
            return Ok(false);
        }
        self.autofix(loaded, now).await
    }

    /// Adds a set for targeted endpoints of the last step that need an approved patch and are in
    /// no set of its current run for that package: endpoints that enrolled, or came to need it,
    /// after the step planned. One package per scan, once the run's sets have all ended.
    pub async fn autofix(&self, loaded: &Loaded, now: Timestamp) -> anyhow::Result<bool> {
        let Some(last) = self.campaign.steps().last() else { return Ok(false) };
        if !self.autofix_due || !last.global_autofix() || loaded.month.step() + 1 != self.campaign.steps().len() {
            return Ok(false);
        }
        let Some(facts) = self.current_run(loaded).await? else { return Ok(false) };
        // The planned sets come first, and one set at a time keeps the step's max-in-flight.
        let busy = facts.sets.values().any(|(set, _)| !set.state.is_terminal());
        if busy || facts.sets.len() < facts.plan.deployments.len() {
            return Ok(false);
        }
        let step = loaded.month.step();
        let targeted = self.targeted(step).await?;
        let plan = dispatch::plan(&self.needs(&loaded.month, &targeted).await?, &self.packages().await?);
        let covered: BTreeSet<(String, String, String)> = facts
            .sets
            .values()
            .flat_map(|(set, members)| {
                members.iter().map(move |m| (set.spec.product.clone(), set.spec.version.clone(), m.endpoint_id.clone()))
            })
            .collect();
        let (_, run) = current_place(&loaded.month);
        let seq = u32::try_from(facts.sets.len()).unwrap_or(u32::MAX);
        let Some(d) = dispatch::late(&plan, &covered).into_iter().next() else { return Ok(false) };
        tracing::info!(campaign = self.name, "global autofix: {}@{} for {} endpoints that came later", d.product, d.version, d.endpoints.len());
        let deployment = StoredDeployment { product: d.product, version: d.version, endpoints: d.endpoints };
        self.create_set(&loaded.row.month, (step, run, seq), &deployment, now).await?;
        Ok(true)
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

/// A set name within the 64 characters names allow: the campaign (shortened with a hash when
/// long), the month, step, run and package place.
fn set_name(campaign: &str, month: &str, step: usize, run: u32, seq: u32) -> String {
    let campaign = if campaign.len() <= 36 {
        campaign.to_owned()
    } else {
        let hash = hex::encode(&Sha256::digest(campaign.as_bytes())[..4]);
        format!("{}-{hash}", &campaign[..27])
    };
    format!("{campaign}.{}.s{step}.r{run}.p{seq}", month.replace('-', ""))
}

/// A set's seed from its name, so its order is the same on every replica.
fn seed_of(name: &str) -> u64 {
    let digest = Sha256::digest(name.as_bytes());
    u64::from_le_bytes(digest[..8].try_into().unwrap_or([0; 8]))
}

/// The advisories `month` of `campaign` collects.
pub async fn collected(
    store: &dyn Store,
    campaign: &ValidCampaign,
    month: YearMonth,
    first: YearMonth,
) -> anyhow::Result<Vec<AdvisoryRecord>> {
    let window = advisory_window(campaign, month, first)?;
    let records = store.list_advisories(&AdvisoryFilter { product: None, since: Some(window.from), cve: None }).await?;
    Ok(records
        .into_iter()
        .filter(|r| r.published_at.or(r.updated_at).is_some_and(|at| window.contains(at)))
        .filter(|r| campaign.products().is_empty() || r.products.iter().any(|p| campaign.includes_product(p)))
        .filter(|r| campaign.severities().is_empty() || campaign.severities().iter().any(|s| has_severity(r, *s)))
        .collect())
}

/// Whether `r` has `severity`: as the advisory list filters it (rating word or CVSS band), or
/// through a publisher's own word for it (`important`, `moderate`).
pub fn has_severity(r: &AdvisoryRecord, severity: Severity) -> bool {
    severity_matches(r, severity.as_str()) || r.rating.as_deref().and_then(Severity::of_rating) == Some(severity)
}

/// A conflict error from the store, for callers that retry.
pub fn is_conflict(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<StoreError>(), Some(StoreError::Conflict(_)))
}
