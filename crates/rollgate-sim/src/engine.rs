//! The discrete-event engine: one campaign month over one fleet in virtual time.
//!
//! Every decision the server would make comes from `rollgate-core`: the month's start
//! (`schedule::month_start`), the step targets (`Selector::matches`), the seeded release order
//! (`order::release_order`), the agent's retries (`AttemptPolicy::after_failure`), maintenance
//! windows (`Window::is_open` / `next_open`), the gate (`gate::evaluate`) and the month's state
//! machine (`Month::apply`). What is simulated is only the fleet: when endpoints come online,
//! how long installs take, whether they fail and whether a patch crashes. Those draws come from
//! one ChaCha8 stream seeded by the caller, taken in event order, so a run is reproducible.
//!
//! Per-endpoint state lives in flat `Vec`s indexed by endpoint, events in one binary heap keyed
//! by (time, sequence number): a million endpoints cost a few events each, not one per poll.
//!
//! Model decisions (see the crate docs for the operator-facing list):
//! - An endpoint belongs to the first step whose selector matches it; later steps skip it, as an
//!   Upgrade Set skips an endpoint already at the target version.
//! - When its step starts, an endpoint's first online poll is drawn: a uniform phase within the
//!   poll interval plus a geometric number of missed polls. Once online it keeps polling, so it
//!   waits for a slot without dropping out. An endpoint not online before the horizon (the next
//!   month's start) is a no-show. The server learns that only at the horizon; the simulator
//!   knows it from the start, so the gate's no-show count is final from the beginning and a gate
//!   below its minimum sample waits for endpoints that will still come.
//! - Ready endpoints are released in the step's seeded order, up to its max-in-flight, only while
//!   the month dispatches (`Month::dispatching`) or after it completed (the rings stay deployed
//!   until the horizon, to reach late endpoints), and only while the step's window is open.
//! - The agent holds its slot through all attempts and backoffs of one release; each attempt
//!   draws its time and, in this order, a site relay, per-product, per-step and random failure.
//!   An endpoint that fails for good is counted under its last attempt's cause.
//! - A crash after a successful install is reported at once (within the soak), making the
//!   patch bad for the good-patch ratio; the endpoint still counts as patched.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use jiff::Timestamp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rollgate_core::campaign::gate::{self, GateResult, GoodPatchReports, StepTally};
use rollgate_core::campaign::month::{step_plans, Month, MonthEvent, MonthState, StepPhase};
use rollgate_core::campaign::schedule;
use rollgate_core::campaign::spec::ValidCampaign;
use rollgate_core::order::release_order;
use rollgate_core::policy::{AfterFailure, AttemptPolicy};
use rollgate_core::selector::Selector;

use crate::fleet::{Fleet, InstallTime, OnGateFailure};
use crate::report::{CauseCount, Instant, Milestone, Report, StepReport, TimelineEntry, Totals};
use crate::SimError;

/// No step: the endpoint is targeted by none.
const NO_STEP: u8 = u8::MAX;
/// Outcome codes of a finished release; smaller values are cause indexes of a failure.
const OUT_PATCHED: u16 = u16::MAX;
const OUT_BAD_PATCH: u16 = u16::MAX - 1;
/// Fixed cause indexes; sites, products and steps follow.
const CAUSE_RANDOM: u16 = 0;
const CAUSE_CRASH: u16 = 1;
/// Events allowed per endpoint (coming online, finishing) plus a margin for step events; a
/// bound, so that a bug cannot loop forever.
const EVENTS_PER_ENDPOINT: u64 = 4;
const EVENT_MARGIN: u64 = 1_000_000;
/// Milestones of the time-to-patch prediction, in percent.
const MILESTONES: [u32; 3] = [75, 90, 100];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// Not targeted, or in a step that has not started.
    Idle,
    /// Its step started; it has not been online yet.
    Offline,
    /// Online and waiting for a slot.
    Ready,
    InFlight,
    Patched,
    BadPatch,
    Failed,
    NoShow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Online(u32),
    Done { endpoint: u32, outcome: u16 },
    GateDue,
    Approve { step: usize, anyway: bool },
    WindowOpen(usize),
}

/// Ordered by time, then by the order of scheduling, so ties resolve the same way every run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    at_ms: i64,
    seq: u64,
    kind: Kind,
}

#[derive(Default)]
struct StepRun {
    /// Targeted endpoints, ascending.
    members: Vec<u32>,
    /// `order[rank]` is the endpoint released at that rank.
    order: Vec<u32>,
    /// Ranks of ready endpoints, lowest first.
    ready: BinaryHeap<Reverse<u32>>,
    in_flight: u32,
    peak_in_flight: u32,
    attempted: u32,
    succeeded: u32,
    failed: u32,
    bad: u32,
    no_shows: u32,
    window_wake_pending: bool,
    started_ms: Option<i64>,
    gate: Option<String>,
    gate_ms: Option<i64>,
    ended_ms: Option<i64>,
    last_install_ms: Option<i64>,
}

impl StepRun {
    fn tally(&self) -> StepTally {
        StepTally {
            targeted: u32::try_from(self.members.len()).unwrap_or(u32::MAX),
            attempted: self.attempted,
            succeeded: self.succeeded,
            failed: self.failed,
            no_shows: self.no_shows,
            // One package per endpoint here: nothing is missed while offline.
            missed: 0,
            // Agents that watched the soak without trouble report the patch good.
            good_patch: GoodPatchReports { good: self.succeeded - self.bad.min(self.succeeded), bad: self.bad },
        }
    }
}

pub(crate) struct Sim<'a> {
    campaign: &'a ValidCampaign,
    fleet: &'a Fleet,
    rng: ChaCha8Rng,
    policy: AttemptPolicy,
    id_width: usize,
    group_of: Vec<u32>,
    step_of: Vec<u8>,
    status: Vec<Status>,
    rank: Vec<u32>,
    /// Failure chances per attempt, per `group * steps + step`: (cause, probability) in draw
    /// order.
    chains: Vec<Vec<(u16, f64)>>,
    causes: Vec<String>,
    cause_counts: Vec<u64>,
    steps: Vec<StepRun>,
    heap: BinaryHeap<Reverse<Event>>,
    seq: u64,
    events: u64,
    max_events: u64,
    month: Month,
    start_ms: i64,
    horizon_ms: i64,
    in_flight: u32,
    timeline: Vec<TimelineEntry>,
    /// Completion times of successful installs, in time order.
    patched_ms: Vec<i64>,
    completed_ms: Option<i64>,
}

fn ts(ms: i64) -> Result<Timestamp, SimError> {
    Timestamp::from_millisecond(ms).map_err(|e| SimError::Time(e.to_string()))
}

impl<'a> Sim<'a> {
    pub(crate) fn new(campaign: &'a ValidCampaign, fleet: &'a Fleet, seed: u64) -> Result<Sim<'a>, SimError> {
        let start = schedule::month_start(campaign, fleet.month)?;
        let horizon = schedule::month_start(campaign, fleet.month.next()?)?;
        let month = Month::new(fleet.month, start, step_plans(campaign))?;
        let n = fleet.endpoints as usize;
        let n_steps = campaign.steps().len();
        let id_width = fleet.endpoints.to_string().len();

        let mut group_of = Vec::with_capacity(n);
        for (g, group) in fleet.groups.iter().enumerate() {
            let g = u32::try_from(g).unwrap_or(u32::MAX);
            group_of.extend(std::iter::repeat_n(g, group.count as usize));
        }
        // Label selectors are judged once per group; id selectors need each endpoint's id.
        let group_match: Vec<Vec<bool>> = fleet
            .groups
            .iter()
            .map(|g| campaign.steps().iter().map(|s| s.targets().matches("", &g.labels)).collect())
            .collect();
        let any_ids = campaign.steps().iter().any(|s| matches!(s.targets(), Selector::Ids(_)));
        let mut step_of = vec![NO_STEP; n];
        let mut steps: Vec<StepRun> = (0..n_steps).map(|_| StepRun::default()).collect();
        for (e, slot) in step_of.iter_mut().enumerate() {
            let g = group_of[e] as usize;
            let id = if any_ids { endpoint_id(e, id_width) } else { String::new() };
            let first = campaign.steps().iter().enumerate().position(|(s, step)| match step.targets() {
                Selector::Ids(_) => step.targets().matches(&id, &fleet.groups[g].labels),
                _ => group_match[g][s],
            });
            if let Some(s) = first {
                // `MAX_STEPS` is 16, far below `NO_STEP`.
                *slot = u8::try_from(s).unwrap_or(NO_STEP);
                steps[s].members.push(u32::try_from(e).unwrap_or(u32::MAX));
            }
        }

        let mut causes = vec!["random agent failure".to_owned(), "crash after install".to_owned()];
        let mut cause_of = |name: String| -> u16 {
            let i = causes.iter().position(|c| *c == name).unwrap_or_else(|| {
                causes.push(name);
                causes.len() - 1
            });
            u16::try_from(i).unwrap_or(CAUSE_RANDOM)
        };
        let f = &fleet.failures;
        let mut chains = Vec::with_capacity(fleet.groups.len() * n_steps);
        for group in &fleet.groups {
            for step in campaign.steps() {
                let mut chain = Vec::new();
                if let Some((site, p)) = group.labels.get("site").and_then(|s| f.site.get_key_value(s)) {
                    chain.push((cause_of(format!("site relay {site}")), *p));
                }
                for product in &fleet.products {
                    if let Some(p) = f.product.get(&product.name) {
                        chain.push((cause_of(format!("product {}", product.name)), *p));
                    }
                }
                if let Some(p) = f.step.get(step.name()) {
                    chain.push((cause_of(format!("step {}", step.name())), *p));
                }
                chain.push((CAUSE_RANDOM, f.base));
                chain.retain(|(_, p)| *p > 0.0);
                chains.push(chain);
            }
        }
        let cause_counts = vec![0; causes.len()];
        let max_events = u64::from(fleet.endpoints).saturating_mul(EVENTS_PER_ENDPOINT).saturating_add(EVENT_MARGIN);
        Ok(Sim {
            campaign,
            fleet,
            rng: ChaCha8Rng::seed_from_u64(seed),
            policy: AttemptPolicy {
                max_attempts: fleet.retry.max_attempts,
                backoff_initial_secs: fleet.retry.backoff_initial_secs,
                backoff_max_secs: fleet.retry.backoff_max_secs,
            },
            id_width,
            group_of,
            step_of,
            status: vec![Status::Idle; n],
            rank: vec![0; n],
            chains,
            causes,
            cause_counts,
            steps,
            heap: BinaryHeap::new(),
            seq: 0,
            events: 0,
            max_events,
            month,
            start_ms: start.as_millisecond(),
            horizon_ms: horizon.as_millisecond(),
            in_flight: 0,
            timeline: Vec::new(),
            patched_ms: Vec::new(),
            completed_ms: None,
        })
    }

    /// Runs the month to the end of all events and builds the report.
    pub(crate) fn run(mut self, seed: u64) -> Result<Report, SimError> {
        let now = self.start_ms;
        let t = self.month.apply(ts(now)?, MonthEvent::Start)?;
        self.record(now, "month-started", None, t.reason);
        self.begin_step(0, now)?;
        while let Some(Reverse(event)) = self.heap.pop() {
            self.events += 1;
            if self.events > self.max_events {
                return Err(SimError::TooManyEvents { limit: self.max_events });
            }
            let now = event.at_ms;
            match event.kind {
                Kind::Online(e) => self.online(e, now)?,
                Kind::Done { endpoint, outcome } => self.done(endpoint, outcome, now)?,
                Kind::GateDue => self.check_gate(now)?,
                Kind::Approve { step, anyway } => self.approve(step, anyway, now)?,
                Kind::WindowOpen(s) => {
                    self.steps[s].window_wake_pending = false;
                    self.dispatch(s, now)?;
                }
            }
        }
        self.report(seed)
    }

    fn push(&mut self, at_ms: i64, kind: Kind) {
        self.seq += 1;
        self.heap.push(Reverse(Event { at_ms, seq: self.seq, kind }));
    }

    fn record(&mut self, now: i64, event: &str, step: Option<usize>, detail: String) {
        let at = self.instant(now);
        let step = step.map(|s| self.campaign.steps()[s].name().to_owned());
        self.timeline.push(TimelineEntry { at, event: event.to_owned(), step, detail });
    }

    /// Starts step `s`: fixes its seeded order and draws when each of its endpoints comes online.
    fn begin_step(&mut self, s: usize, now: i64) -> Result<(), SimError> {
        let ids: Vec<String> = self.steps[s].members.iter().map(|&e| endpoint_id(e as usize, self.id_width)).collect();
        let order_seed: u64 = self.rng.random();
        let mut order = Vec::with_capacity(ids.len());
        for id in release_order(order_seed, &ids) {
            let e = id.get(3..).and_then(|digits| digits.parse::<u32>().ok()).ok_or(SimError::BadOrder(id))?;
            self.rank[e as usize] = u32::try_from(order.len()).unwrap_or(u32::MAX);
            order.push(e);
        }
        let members = std::mem::take(&mut self.steps[s].members);
        let mut no_shows = 0;
        for &e in &members {
            let p = self.fleet.groups[self.group_of[e as usize] as usize].online_probability;
            match self.online_delay_ms(p).map(|d| now.saturating_add(d)).filter(|&at| at < self.horizon_ms) {
                Some(at) => {
                    self.status[e as usize] = Status::Offline;
                    self.push(at, Kind::Online(e));
                }
                None => {
                    self.status[e as usize] = Status::NoShow;
                    no_shows += 1;
                }
            }
        }
        let step = &mut self.steps[s];
        step.members = members;
        step.order = order;
        step.no_shows = no_shows;
        step.started_ms = Some(now);
        let spec = &self.campaign.steps()[s];
        let detail = format!(
            "targets {}: {} endpoints ({} no-shows), max in flight {}, soak {} s, {}",
            spec.targets(),
            step.members.len(),
            no_shows,
            spec.max_in_flight(),
            spec.soak_secs(),
            spec.progression()
        );
        self.record(now, "step-started", Some(s), detail);
        if let Some(due) = self.month.soak_due_at() {
            self.push(due.as_millisecond(), Kind::GateDue);
        }
        Ok(())
    }

    /// Delay from a step's start to an endpoint's first online poll, or `None` if never.
    fn online_delay_ms(&mut self, p: f64) -> Option<i64> {
        if p <= 0.0 {
            return None;
        }
        let poll = self.fleet.poll_interval_ms;
        let phase = (self.rng.random::<f64>() * poll as f64) as i64;
        let missed = if p >= 1.0 {
            0.0
        } else {
            // Geometric: polls missed before the first online one.
            ((1.0 - self.rng.random::<f64>()).ln() / (1.0 - p).ln()).floor()
        };
        // Saturating float-to-int cast: a huge count lands beyond the horizon.
        Some(phase.saturating_add((missed * poll as f64) as i64))
    }

    fn online(&mut self, e: u32, now: i64) -> Result<(), SimError> {
        let s = self.step_of[e as usize] as usize;
        self.status[e as usize] = Status::Ready;
        let rank = self.rank[e as usize];
        self.steps[s].ready.push(Reverse(rank));
        self.dispatch(s, now)
    }

    fn may_dispatch(&self) -> bool {
        self.month.dispatching() || self.month.effective() == MonthState::Completed
    }

    fn dispatch_all(&mut self, now: i64) -> Result<(), SimError> {
        for s in 0..self.steps.len() {
            if self.steps[s].started_ms.is_some() {
                self.dispatch(s, now)?;
            }
        }
        Ok(())
    }

    /// Releases ready endpoints of step `s` in seeded order while slots are free.
    fn dispatch(&mut self, s: usize, now: i64) -> Result<(), SimError> {
        if !self.may_dispatch() || self.steps[s].ready.is_empty() {
            return Ok(());
        }
        let spec = &self.campaign.steps()[s];
        if let Some(window) = spec.window() {
            let at = ts(now)?;
            if !window.is_open(at) {
                if !self.steps[s].window_wake_pending {
                    if let Some(open) = window.next_open(at) {
                        self.steps[s].window_wake_pending = true;
                        self.push(open.as_millisecond().max(now + 1), Kind::WindowOpen(s));
                    }
                }
                return Ok(());
            }
        }
        let max = spec.max_in_flight();
        let mut released = false;
        while self.steps[s].in_flight < max {
            let Some(Reverse(rank)) = self.steps[s].ready.pop() else { break };
            let e = self.steps[s].order[rank as usize];
            self.release(e, s, now);
            released = true;
        }
        assert!(self.steps[s].in_flight <= max, "max-in-flight exceeded in step {s}");
        if released && self.month.step() == s {
            self.check_gate(now)?;
        }
        Ok(())
    }

    /// Gives `e` a slot and plays its agent's attempts to the end.
    fn release(&mut self, e: u32, s: usize, now: i64) {
        let chain_at = self.group_of[e as usize] as usize * self.steps.len() + s;
        let mut elapsed: i64 = 0;
        let mut failures: u32 = 0;
        let outcome = loop {
            elapsed = elapsed.saturating_add(self.install_ms());
            let failed = self.chains[chain_at].iter().find(|(_, p)| self.rng.random::<f64>() < *p).map(|(c, _)| *c);
            let Some(cause) = failed else {
                let crash = self.fleet.failures.crash > 0.0 && self.rng.random::<f64>() < self.fleet.failures.crash;
                break if crash { OUT_BAD_PATCH } else { OUT_PATCHED };
            };
            failures += 1;
            match self.policy.after_failure(failures) {
                AfterFailure::RetryAfter { secs } => {
                    elapsed = elapsed.saturating_add(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX));
                }
                AfterFailure::GiveUp => break cause,
            }
        };
        self.status[e as usize] = Status::InFlight;
        let step = &mut self.steps[s];
        step.attempted += 1;
        step.in_flight += 1;
        step.peak_in_flight = step.peak_in_flight.max(step.in_flight);
        self.in_flight += 1;
        self.push(now.saturating_add(elapsed), Kind::Done { endpoint: e, outcome });
    }

    fn install_ms(&mut self) -> i64 {
        match self.fleet.install {
            InstallTime::Lognormal { ln_median, sigma, max_ms } => {
                // Box-Muller; `u1` in (0, 1] keeps the logarithm finite.
                let u1 = 1.0 - self.rng.random::<f64>();
                let u2 = self.rng.random::<f64>();
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                let secs = (ln_median + sigma * z).exp();
                ((secs * 1000.0) as i64).clamp(1000, max_ms)
            }
            InstallTime::Uniform { min_ms, max_ms } => self.rng.random_range(min_ms..=max_ms),
        }
    }

    fn done(&mut self, e: u32, outcome: u16, now: i64) -> Result<(), SimError> {
        let s = self.step_of[e as usize] as usize;
        let step = &mut self.steps[s];
        step.in_flight -= 1;
        step.last_install_ms = Some(now);
        self.in_flight -= 1;
        let status = match outcome {
            OUT_PATCHED | OUT_BAD_PATCH => {
                step.succeeded += 1;
                self.patched_ms.push(now);
                if outcome == OUT_BAD_PATCH {
                    step.bad += 1;
                    self.cause_counts[CAUSE_CRASH as usize] += 1;
                    Status::BadPatch
                } else {
                    Status::Patched
                }
            }
            cause => {
                step.failed += 1;
                self.cause_counts[cause as usize] += 1;
                Status::Failed
            }
        };
        self.status[e as usize] = status;
        if self.month.effective() == MonthState::Pausing && self.in_flight == 0 {
            let step = self.month.step();
            let t = self.month.apply(ts(now)?, MonthEvent::InFlightDrained)?;
            self.record(now, "month-paused", Some(step), t.reason);
        }
        self.dispatch(s, now)?;
        if self.month.step() == s {
            self.check_gate(now)?;
        }
        Ok(())
    }

    /// Judges the current step's gate once its soak is done, and acts on a verdict.
    fn check_gate(&mut self, now: i64) -> Result<(), SimError> {
        if !self.month.dispatching() || !self.month.soak_done_at(ts(now)?) {
            return Ok(());
        }
        let s = self.month.step();
        let result = gate::evaluate(self.campaign.steps()[s].acceptance(), &self.steps[s].tally(), true);
        let Some(event) = MonthEvent::from_gate(s, &result, self.in_flight) else { return Ok(()) };
        self.steps[s].gate = Some(result.to_string());
        self.steps[s].gate_ms = Some(now);
        let t = self.month.apply(ts(now)?, event)?;
        match result {
            GateResult::Passed { .. } if self.month.phase() == StepPhase::AwaitingApproval => {
                self.record(now, "awaiting-approval", Some(s), t.reason);
                let delay = self.fleet.operator.manual_approval_delay_secs;
                self.push(now.saturating_add(delay as i64 * 1000), Kind::Approve { step: s, anyway: false });
            }
            GateResult::Passed { .. } => {
                self.record(now, "gate-passed", Some(s), t.reason);
                self.moved_past(s, now)?;
            }
            _ => {
                self.record(now, "gate-failed", Some(s), t.reason);
                if self.fleet.operator.on_gate_failure == OnGateFailure::ApproveAnyway {
                    let delay = self.fleet.operator.approve_anyway_delay_secs;
                    self.push(now.saturating_add(delay as i64 * 1000), Kind::Approve { step: s, anyway: true });
                }
            }
        }
        Ok(())
    }

    fn approve(&mut self, s: usize, anyway: bool, now: i64) -> Result<(), SimError> {
        let t = self.month.apply(ts(now)?, MonthEvent::ApproveStep { step: s })?;
        self.record(now, if anyway { "approved-anyway" } else { "approved" }, Some(s), t.reason);
        self.moved_past(s, now)
    }

    /// After the month left step `s`: start the next step or record the completion, then let
    /// every started step dispatch again.
    fn moved_past(&mut self, s: usize, now: i64) -> Result<(), SimError> {
        self.steps[s].ended_ms = Some(now);
        if self.month.effective() == MonthState::Completed {
            self.completed_ms = Some(now);
            let detail = format!("all {} steps done", self.steps.len());
            self.record(now, "month-completed", None, detail);
        } else {
            self.begin_step(self.month.step(), now)?;
        }
        self.dispatch_all(now)?;
        self.check_gate(now)
    }

    fn instant(&self, ms: i64) -> Instant {
        let at = Timestamp::from_millisecond(ms).map_or_else(
            |_| format!("{ms} ms"),
            |t| t.to_zoned(self.campaign.time_zone().clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        );
        Instant { at, after_secs: (ms - self.start_ms).div_euclid(1000) }
    }

    fn report(self, seed: u64) -> Result<Report, SimError> {
        let mut held = vec![0u64; self.steps.len()];
        let mut not_started = vec![0u64; self.steps.len()];
        for (e, &s) in self.step_of.iter().enumerate() {
            if s == NO_STEP {
                continue;
            }
            match self.status[e] {
                Status::Idle => not_started[s as usize] += 1,
                Status::Offline | Status::Ready | Status::InFlight => held[s as usize] += 1,
                Status::Patched | Status::BadPatch | Status::Failed | Status::NoShow => {}
            }
        }
        let opt = |ms: Option<i64>| ms.map(|ms| self.instant(ms));
        let steps: Vec<StepReport> = self
            .steps
            .iter()
            .zip(self.campaign.steps())
            .enumerate()
            .map(|(i, (run, spec))| StepReport {
                name: spec.name().to_owned(),
                targets: spec.targets().to_string(),
                max_in_flight: spec.max_in_flight(),
                peak_in_flight: run.peak_in_flight,
                targeted: run.members.len() as u64,
                attempted: run.attempted.into(),
                succeeded: run.succeeded.into(),
                failed: run.failed.into(),
                no_shows: run.no_shows.into(),
                held: held[i],
                not_started: not_started[i],
                bad_patches: run.bad.into(),
                success_rate: ratio(run.succeeded, run.attempted),
                good_patch_ratio: (run.succeeded > 0).then(|| ratio(run.succeeded - run.bad, run.succeeded)),
                started: opt(run.started_ms),
                gate: run.gate.clone(),
                gate_at: opt(run.gate_ms),
                ended: opt(run.ended_ms),
                last_install: opt(run.last_install_ms),
            })
            .collect();
        let sum = |f: fn(&StepReport) -> u64| steps.iter().map(f).sum::<u64>();
        let totals = Totals {
            targeted: sum(|s| s.targeted),
            patched: sum(|s| s.succeeded),
            bad_patches: sum(|s| s.bad_patches),
            failed: sum(|s| s.failed),
            no_shows: sum(|s| s.no_shows),
            held: sum(|s| s.held),
            not_started: sum(|s| s.not_started),
        };
        let time_to_patch = MILESTONES
            .iter()
            .map(|&percent| {
                let endpoints = (totals.targeted * u64::from(percent)).div_ceil(100);
                let reached = match endpoints {
                    0 => Some(self.start_ms),
                    n => self.patched_ms.get(n as usize - 1).copied(),
                };
                Milestone { percent, endpoints, reached: opt(reached) }
            })
            .collect();
        let mut failures_by_cause: Vec<CauseCount> = self
            .causes
            .iter()
            .zip(&self.cause_counts)
            .filter(|(_, &n)| n > 0)
            .map(|(cause, &endpoints)| CauseCount { cause: cause.clone(), endpoints })
            .collect();
        failures_by_cause.sort_by(|a, b| b.endpoints.cmp(&a.endpoints).then_with(|| a.cause.cmp(&b.cause)));
        Ok(Report {
            campaign: self.campaign.name().to_owned(),
            month: self.fleet.month.to_string(),
            seed,
            time_zone: self.campaign.time_zone_name().to_owned(),
            month_start: self.instant(self.start_ms),
            horizon: self.instant(self.horizon_ms),
            fleet_endpoints: self.fleet.endpoints.into(),
            products: self.fleet.products.iter().map(|p| format!("{} ({})", p.name, p.severity)).collect(),
            excluded_products: self.fleet.excluded_products.clone(),
            final_state: self.month.effective().to_string(),
            final_reason: self.month.reason().to_owned(),
            completed: opt(self.completed_ms),
            timeline: self.timeline.clone(),
            steps,
            time_to_patch,
            failures_by_cause,
            totals,
            events: self.events,
        })
    }
}

fn ratio(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        0.0
    } else {
        f64::from(part) / f64::from(whole)
    }
}

/// The simulated endpoint's id: `ep-` and its index, zero-padded so that ids sort like indexes.
fn endpoint_id(e: usize, width: usize) -> String {
    format!("ep-{e:0width$}")
}
