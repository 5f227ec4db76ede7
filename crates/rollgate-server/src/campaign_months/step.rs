//! A campaign step on the fleet: its runs (one, plus one per retry), their Upgrade Sets, the
//! tally of their members for the gate, and the sets following the month's state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use anyhow::Context;
use jiff::Timestamp;
use rollgate_core::campaign::dispatch::{self, EndpointProgress, InstallProgress};
use rollgate_core::campaign::gate::{self, GateResult, StepTally};
use rollgate_core::campaign::month::{MonthEvent, MonthState};
use rollgate_core::member::MemberState;
use rollgate_core::set::{SetEvent, SetState};
use rollgate_store::{NewSet, SetRecord, StepRunRow};
use sha2::{Digest, Sha256};

use super::{current_place, load_months, step_u32, Ctx, Loaded, StoredDeployment, StoredPlan};

/// A set's members: each endpoint and its member state, by rank.
pub type Members = Arc<Vec<(String, MemberState)>>;

/// What the driver read of one step run: its plan, sets and members.
pub struct RunFacts {
    /// The stored run.
    pub run: StepRunRow,
    /// Its plan.
    pub plan: StoredPlan,
    /// Each created set's record and members, by `seq` (autofix sets come after the plan's).
    pub sets: BTreeMap<u32, (SetRecord, Members)>,
}

impl RunFacts {
    /// Per endpoint of the run, the progress of each of its installs: planned packages in plan
    /// order, then any autofix set that added it.
    fn installs(&self) -> BTreeMap<&str, Vec<InstallProgress>> {
        let mut per: BTreeMap<&str, Vec<InstallProgress>> = BTreeMap::new();
        for (seq, d) in (0u32..).zip(&self.plan.deployments) {
            // Looked up by endpoint: a step's set can hold every endpoint of the fleet.
            let members: HashMap<&str, InstallProgress> = self.sets.get(&seq).map_or_else(HashMap::new, |(set, ms)| {
                ms.iter().map(|(endpoint, state)| (endpoint.as_str(), install_progress(set.state, *state))).collect()
            });
            for e in &d.endpoints {
                per.entry(e).or_default().push(members.get(e.as_str()).copied().unwrap_or(InstallProgress::NotStarted));
            }
        }
        let planned = u32::try_from(self.plan.deployments.len()).unwrap_or(u32::MAX);
        for (set, members) in self.sets.range(planned..).map(|(_, v)| v) {
            for (endpoint, state) in members.iter() {
                per.entry(endpoint).or_default().push(install_progress(set.state, *state));
            }
        }
        per
    }

    /// Ids of its sets.
    pub fn set_ids(&self) -> Vec<i64> {
        self.sets.values().map(|(s, _)| s.id).collect()
    }

    /// Installs of the run in flight now.
    pub fn in_flight(&self) -> u32 {
        let n = self
            .sets
            .values()
            .flat_map(|(_, ms)| ms.iter())
            .filter(|(_, state)| *state == MemberState::InProgress)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// True once every planned package has its set.
    fn all_planned_sets_exist(&self) -> bool {
        self.sets.len() >= self.plan.deployments.len()
    }
}

/// A member's progress; a member still pending in a set that ended will never start.
fn install_progress(set: SetState, member: MemberState) -> InstallProgress {
    match member {
        MemberState::Pending if set.is_terminal() => InstallProgress::Missed,
        MemberState::Pending => InstallProgress::NotStarted,
        MemberState::InProgress => InstallProgress::Running,
        MemberState::Succeeded => InstallProgress::Succeeded,
        MemberState::Failed | MemberState::RolledBack | MemberState::TimedOut => InstallProgress::Failed,
    }
}

/// A step's standing over all its runs, for the gate and the views.
pub struct StepStanding {
    /// The gate's counts: per endpoint, its latest run's progress (an endpoint patched in an
    /// earlier run stays patched).
    pub tally: StepTally,
    /// Installs of the step in flight now, over all runs.
    pub in_flight: u32,
    /// The step's latest run.
    pub latest: Option<RunFacts>,
}

impl Ctx<'_> {
    /// The runs of step `step` of the month recorded so far, oldest first; reads only.
    pub async fn runs_of(&self, loaded: &Loaded, step: usize) -> anyhow::Result<Vec<RunFacts>> {
        let mut out = Vec::new();
        for run in self.store().step_runs(self.name, &loaded.row.month).await? {
            if run.step == step_u32(step) {
                out.push(self.run_facts_of(run).await?);
            }
        }
        Ok(out)
    }

    /// What a stored run's sets say now.
    pub async fn run_facts_of(&self, run: StepRunRow) -> anyhow::Result<RunFacts> {
        let plan: StoredPlan = serde_json::from_str(&run.plan).context("a stored step plan is damaged")?;
        let mut sets = BTreeMap::new();
        for (seq, set_id) in &run.sets {
            let set = self.store().get_set(*set_id).await?;
            let members = self.members_of(*set_id).await?;
            sets.insert(*seq, (set, members));
        }
        Ok(RunFacts { run, plan, sets })
    }

    /// The month's current step run, planned now if it was not. Only for a started month.
    pub(super) async fn current_run(&self, loaded: &Loaded) -> anyhow::Result<Option<RunFacts>> {
        if !loaded.started() {
            return Ok(None);
        }
        let (step, run) = current_place(&loaded.month);
        let runs = self.runs_of(loaded, step).await?;
        if let Some(found) = runs.into_iter().find(|r| r.run.run == run) {
            return Ok(Some(found));
        }
        let plan = self.plan_step(&loaded.month, step).await?;
        let row = StepRunRow {
            step: step_u32(step),
            run,
            started_at: loaded.month.changed_at().unwrap_or_else(Timestamp::now),
            plan: serde_json::to_string(&plan)?,
            sets: Vec::new(),
        };
        if self.store().start_step_run(self.name, &loaded.row.month, &row).await? {
            let installs: usize = plan.deployments.iter().map(|d| d.endpoints.len()).sum();
            tracing::info!(campaign = self.name, month = %loaded.row.month, step, run, "step planned: {} packages, {installs} installs", plan.deployments.len());
        }
        let runs = self.runs_of(loaded, step).await?;
        runs.into_iter().find(|r| r.run.run == run).map(Some).context("the step run just recorded is missing")
    }

    /// The standing of step `step` of the month over all its runs.
    pub async fn standing(&self, loaded: &Loaded, step: usize) -> anyhow::Result<StepStanding> {
        let mut runs = self.runs_of(loaded, step).await?;
        let last_seen = self.last_seen().await?;
        let set_ids: Vec<i64> = runs.iter().flat_map(RunFacts::set_ids).collect();
        let (bad, good) = self.health(&set_ids).await?;
        let mut per: BTreeMap<String, Vec<InstallProgress>> = BTreeMap::new();
        for run in &runs {
            for (endpoint, installs) in run.installs() {
                per.insert(endpoint.to_owned(), installs);
            }
        }
        let progress: Vec<EndpointProgress> = per
            .iter()
            .map(|(e, installs)| EndpointProgress {
                installs: installs.clone(),
                last_seen: last_seen.get(e).copied().flatten(),
                reported_good: good.contains(e),
                reported_bad: bad.contains(e),
            })
            .collect();
        // Offline for the whole step means since its first run started.
        let started_at = runs.first().map_or_else(Timestamp::now, |r| r.run.started_at);
        let tally = dispatch::tally(&progress, started_at);
        let in_flight = runs.iter().map(RunFacts::in_flight).sum();
        Ok(StepStanding { tally, in_flight, latest: runs.pop() })
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
        good.retain(|e| !bad.contains(e));
        Ok((bad, good))
    }

    /// Installs of the month in flight now, over all its sets; reads only.
    pub async fn in_flight_now(&self, loaded: &Loaded) -> anyhow::Result<u32> {
        let mut in_flight = 0u32;
        for run in self.store().step_runs(self.name, &loaded.row.month).await? {
            in_flight = in_flight.saturating_add(self.run_facts_of(run).await?.in_flight());
        }
        Ok(in_flight)
    }

    /// Plans, dispatches and judges the running step.
    pub(super) async fn drive_step(&self, loaded: &Loaded, now: Timestamp) -> anyhow::Result<bool> {
        let mut changed = self.create_next_set(loaded, now).await?;
        changed |= self.autofix_if_last(loaded, now).await?;
        let step = loaded.month.step();
        let standing = self.standing(loaded, step).await?;
        let Some(latest) = &standing.latest else { return Ok(changed) };
        let soak_done = loaded.month.soak_done_at(now);
        let verdict = if latest.plan.deployments.is_empty() {
            self.empty_step_verdict(loaded, step, soak_done).await?
        } else {
            let verdict = gate::evaluate(self.step_of(&loaded.month, step)?.acceptance(), &standing.tally, soak_done);
            // The rest of the plan deploys before the step may pass.
            match verdict {
                GateResult::Passed { .. } if !latest.all_planned_sets_exist() => None,
                verdict => Some(verdict),
            }
        };
        let event = verdict.and_then(|v| MonthEvent::from_gate(step, &v, standing.in_flight));
        if let Some(event) = event {
            self.apply(loaded, event, now).await?;
            changed = true;
        }
        Ok(changed)
    }

    /// The verdict on a step that has nothing to deploy, once soaked: it passes when no later
    /// step has anything either; otherwise it fails, since passing would send the later steps'
    /// patches out untested by this ring.
    async fn empty_step_verdict(
        &self,
        loaded: &Loaded,
        step: usize,
        soak_done: bool,
    ) -> anyhow::Result<Option<GateResult>> {
        if !soak_done {
            return Ok(None);
        }
        let name = &loaded.month.plan()[step].name;
        for later in step + 1..loaded.month.plan().len() {
            let plan = self.plan_step(&loaded.month, later).await?;
            if let Some(d) = plan.deployments.first() {
                let reason = format!(
                    "step {name} has nothing to deploy (no targeted endpoint needs an approved patch the package store has), \
                     but step {} would deploy {}@{} untested; approve step {name} anyway to go on",
                    loaded.month.plan()[later].name, d.product, d.version
                );
                return Ok(Some(GateResult::Failed { reason }));
            }
        }
        Ok(Some(GateResult::Passed { summary: "nothing to deploy in this step or after it".to_owned() }))
    }

    /// Creates the run's next set once the previous one has done what it can (nothing in
    /// flight, only offline endpoints left waiting, which it then cancels): one package at a
    /// time, so the step never has more installs in flight than its limit.
    pub(super) async fn create_next_set(&self, loaded: &Loaded, now: Timestamp) -> anyhow::Result<bool> {
        if loaded.month.effective() != MonthState::Active {
            return Ok(false);
        }
        let Some(facts) = self.current_run(loaded).await? else { return Ok(false) };
        let seq = u32::try_from(facts.sets.len()).unwrap_or(u32::MAX);
        let Some(deployment) = facts.plan.deployments.get(seq as usize) else { return Ok(false) };
        if !self.earlier_runs_drained(loaded, facts.run.run).await? {
            return Ok(false);
        }
        if let Some((set, members)) = facts.sets.values().next_back() {
            if !set.state.is_terminal() {
                if !self.settled(members, now).await? {
                    return Ok(false);
                }
                let waiting = members.iter().filter(|(_, state)| *state == MemberState::Pending).count();
                let reason = format!(
                    "campaign {} moves on to its next package; {waiting} offline endpoints missed this one",
                    self.name
                );
                self.store().change_set_state(&set.spec.name, SetEvent::Cancel, &reason, now).await?;
            }
        }
        let (step, run) = current_place(&loaded.month);
        self.create_set(loaded, (step, run, seq), deployment, now).await?;
        Ok(true)
    }

    /// True when no set of an earlier run of the month's current step has an install in
    /// flight: a retry's first set waits for them, to keep the step's limit.
    async fn earlier_runs_drained(&self, loaded: &Loaded, run: u32) -> anyhow::Result<bool> {
        let runs = self.runs_of(loaded, loaded.month.step()).await?;
        Ok(runs.iter().filter(|r| r.run.run < run).all(|r| r.in_flight() == 0))
    }

    /// Whether a set's members leave nothing more to wait for (see `dispatch::set_settled`).
    pub(super) async fn settled(&self, members: &[(String, MemberState)], now: Timestamp) -> anyhow::Result<bool> {
        let last_seen = self.last_seen().await?;
        let facts: Vec<(MemberState, Option<Timestamp>)> =
            members.iter().map(|(endpoint, state)| (*state, last_seen.get(endpoint).copied().flatten())).collect();
        Ok(dispatch::set_settled(&facts, now, self.state.config.offline_after_secs))
    }

    /// Creates package `seq` of a step run as an Upgrade Set; if the month changed meanwhile
    /// (an operator paused or stopped it since it was read), the new set follows it at once.
    pub(super) async fn create_set(
        &self,
        loaded: &Loaded,
        (step, run, seq): (usize, u32, u32),
        deployment: &StoredDeployment,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        let spec = self.step_of(&loaded.month, step)?;
        let month = loaded.row.month.as_str();
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
        let members: Vec<(String, u32)> =
            rollgate_core::order::release_order(new.seed, &deployment.endpoints).into_iter().zip(0u32..).collect();
        self.store().create_campaign_set(self.name, month, (step_u32(step), run, seq), &new, &members, now).await?;
        tracing::info!(campaign = self.name, month, set = %name, "created set for {}@{} on {} endpoints", deployment.product, deployment.version, members.len());
        let now_stored = load_months(self.store(), self.name).await?.into_iter().find(|l| l.row.month == month);
        if let Some(current) = now_stored.filter(|l| l.row.version != loaded.row.version) {
            self.reconcile_sets(&current, now).await?;
        }
        self.state.wake_scheduler.notify_one();
        Ok(())
    }

    /// Brings the month's sets in line with its state: paused while it is held, running while it
    /// is active or completed, cancelled once it failed; sets of a retried step's older runs are
    /// cancelled. Returns whether any set changed.
    pub async fn reconcile_sets(&self, loaded: &Loaded, now: Timestamp) -> anyhow::Result<bool> {
        let month_state = loaded.month.effective();
        let (current_step, current_run) = current_place(&loaded.month);
        let mut changed = false;
        for run in self.store().step_runs(self.name, &loaded.row.month).await? {
            let superseded = run.step == step_u32(current_step) && run.run < current_run && !month_state.is_terminal();
            for (_, set_id) in &run.sets {
                let set = self.store().get_set(*set_id).await?;
                let wanted = match month_state {
                    _ if superseded => SetEvent::Cancel,
                    MonthState::Pausing | MonthState::Paused => SetEvent::Pause,
                    MonthState::Active | MonthState::Completed => SetEvent::Resume,
                    MonthState::Failed => SetEvent::Cancel,
                    MonthState::Scheduled => continue,
                };
                // Illegal moves (resuming an active set, pausing a paused one) are refused by the
                // set's own state machine: those sets are already where they should be.
                if set.state.apply(wanted).is_err() {
                    continue;
                }
                let reason = format!("campaign {} month {}: {}", self.name, loaded.row.month, loaded.month.reason());
                match self.store().change_set_state(&set.spec.name, wanted, &reason, now).await {
                    Ok(_) => changed = true,
                    Err(e) => tracing::warn!(set = %set.spec.name, "could not {wanted:?} the campaign's set: {e}"),
                }
            }
        }
        if changed {
            self.state.wake_scheduler.notify_one();
            self.state.announce_change();
        }
        Ok(changed)
    }

    /// Pauses every live set of the month now (before an operator's pause is recorded, so the
    /// in-flight count it records cannot grow); the next tick resumes them if the pause is not
    /// recorded after all.
    pub async fn pause_sets_now(&self, loaded: &Loaded, now: Timestamp) -> anyhow::Result<()> {
        for run in self.store().step_runs(self.name, &loaded.row.month).await? {
            for (_, set_id) in &run.sets {
                let set = self.store().get_set(*set_id).await?;
                if set.state == SetState::Active {
                    let reason = format!("campaign {} month {}: pausing", self.name, loaded.row.month);
                    self.store().change_set_state(&set.spec.name, SetEvent::Pause, &reason, now).await?;
                }
            }
        }
        Ok(())
    }
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
