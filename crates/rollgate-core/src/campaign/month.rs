//! One campaign month: its state machine, step progression, soak clock and vulnerability
//! approvals.
//!
//! ```text
//!                 Pause                       Resume (not started yet)
//!  Scheduled ───────────────────► Paused ─────────────────────► Scheduled
//!      │ Start (at its time)        ▲ │ Resume / ApproveStep / RetryStep
//!      ▼                   drained  │ ▼
//!    Active ──Pause, StepGateFailed──► Pausing (installs in flight) ──InFlightDrained──► Paused
//!      │ last step passed or approved
//!      ▼
//!  Completed          Scheduled | Active | Pausing | Paused ──Stop──► Failed
//! ```
//!
//! Within Active the month walks its steps in order. A step is *running* (deploying and soaking)
//! until its gate is judged: a passed gate starts the next step (`auto`) or leaves the step
//! *awaiting approval* (`manual`) until `ApproveStep`; a failed gate pauses the month with the
//! gate's reason, and only the operator moves on from there: approve anyway (advance), retry
//! the step (its soak starts over), or stop the month (Failed). Plain `Resume` is refused after
//! a failed gate, because the gate would only fail again.
//!
//! **Honest pause:** pausing with installs in flight goes to Pausing (requested state Paused,
//! effective state still draining: no new dispatch, in-flight installs finish), then to Paused
//! on `InFlightDrained`. The step's soak clock runs only while the month is effectively Active
//! with the step running, so a pause never counts as observation time.
//!
//! Every accepted event yields a [`Transition`] with its reason, for the shell to record in the
//! same transaction as the new state; a refused event is an error and changes nothing. Time is
//! always a parameter (`now`); nothing here reads a clock.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;

use super::gate::GateResult;
use super::schedule::YearMonth;
use super::spec::{Progression, ValidCampaign};

/// Most per-vulnerability decisions one month keeps (a busy Patch Tuesday has a few hundred
/// advisories); resets free their slot.
pub const MAX_VULN_DECISIONS: usize = 10_000;
/// Longest advisory id accepted in a decision.
const MAX_ADVISORY_ID_LEN: usize = 128;

/// Where a campaign month is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MonthState {
    /// Waiting for its start time, collecting advisories.
    Scheduled,
    /// Running its steps.
    Active,
    /// Asked to pause; no new dispatch, in-flight installs still finishing.
    Pausing,
    /// Nothing dispatched until an operator acts.
    Paused,
    /// Every step passed or was approved.
    Completed,
    /// Stopped by an operator.
    Failed,
}

impl MonthState {
    /// True once nothing more will happen to the month.
    pub fn is_terminal(self) -> bool {
        matches!(self, MonthState::Completed | MonthState::Failed)
    }

    /// What was asked for when this is the effective state: Paused while Pausing (installs
    /// still draining), else the state itself.
    pub fn requested(self) -> MonthState {
        match self {
            MonthState::Pausing => MonthState::Paused,
            state => state,
        }
    }

    /// The name used in storage, on the wire and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            MonthState::Scheduled => "scheduled",
            MonthState::Active => "active",
            MonthState::Pausing => "pausing",
            MonthState::Paused => "paused",
            MonthState::Completed => "completed",
            MonthState::Failed => "failed",
        }
    }
}

impl fmt::Display for MonthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MonthState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "scheduled" => MonthState::Scheduled,
            "active" => MonthState::Active,
            "pausing" => MonthState::Pausing,
            "paused" => MonthState::Paused,
            "completed" => MonthState::Completed,
            "failed" => MonthState::Failed,
            other => return Err(format!("unknown campaign month state `{other}`")),
        })
    }
}

/// Where the current step is, while the month is Active, Pausing or Paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepPhase {
    /// Deploying and soaking until its gate is judged.
    Running,
    /// Its gate passed; a `manual` step waits for `ApproveStep`.
    AwaitingApproval,
}

impl StepPhase {
    /// The name used in storage and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            StepPhase::Running => "running",
            StepPhase::AwaitingApproval => "awaiting-approval",
        }
    }
}

/// Why a month is pausing or paused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hold {
    /// An operator paused it; `Resume` continues.
    Operator,
    /// The current step failed its gate; the operator must approve anyway, retry or stop.
    GateFailed {
        /// The gate's reason.
        reason: String,
    },
}

/// What a month needs to know of one step, copied from the campaign when the month is created
/// so that editing the campaign does not change a month already under way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepPlan {
    /// The step's name.
    pub name: String,
    /// What happens once its gate passed.
    pub progression: Progression,
    /// How long it runs (while Active) before its gate may pass.
    pub soak_secs: u64,
}

/// The step plans of `campaign`, in order.
pub fn step_plans(campaign: &ValidCampaign) -> Vec<StepPlan> {
    campaign
        .steps()
        .iter()
        .map(|s| StepPlan { name: s.name().to_owned(), progression: s.progression(), soak_secs: s.soak_secs() })
        .collect()
}

/// What can happen to a month. Step events name the step index they are about, so that a stale
/// command (an approval typed after the month moved on) is refused instead of skipping a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MonthEvent {
    /// The month's start time has come.
    Start,
    /// An operator starts the month before its scheduled start (an urgent month).
    StartEarly,
    /// The step's gate passed ([`GateResult::Passed`]).
    StepGatePassed {
        /// The step judged.
        step: usize,
        /// The gate's summary.
        summary: String,
    },
    /// The step's gate failed ([`GateResult::Failed`]).
    StepGateFailed {
        /// The step judged.
        step: usize,
        /// The gate's reason.
        reason: String,
        /// Installs still in flight, which the pause lets finish.
        in_flight: u32,
    },
    /// An operator approved the step: after a passed `manual` gate, or anyway after a failed one.
    ApproveStep {
        /// The step approved.
        step: usize,
    },
    /// An operator asked to run the step again after its gate failed.
    RetryStep {
        /// The step retried.
        step: usize,
    },
    /// An operator paused the month.
    Pause {
        /// Installs in flight, which finish before the month is Paused.
        in_flight: u32,
    },
    /// The last in-flight install of a pausing month finished.
    InFlightDrained,
    /// An operator resumed the month.
    Resume,
    /// An operator stopped the month for good.
    Stop,
}

impl MonthEvent {
    /// The event a gate verdict calls for: `Passed` and `Failed` move the month, `Waiting` and
    /// `Soaking` do not.
    pub fn from_gate(step: usize, result: &GateResult, in_flight: u32) -> Option<MonthEvent> {
        match result {
            GateResult::Passed { summary } => Some(MonthEvent::StepGatePassed { step, summary: summary.clone() }),
            GateResult::Failed { reason } => {
                Some(MonthEvent::StepGateFailed { step, reason: reason.clone(), in_flight })
            }
            GateResult::Waiting { .. } | GateResult::Soaking => None,
        }
    }
}

/// An accepted change, to be recorded with the month's new state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: MonthState,
    /// The state after.
    pub to: MonthState,
    /// The current step after the change.
    pub step: usize,
    /// When it happened.
    pub at: Timestamp,
    /// Why, in words an operator reads.
    pub reason: String,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}: {}", self.from, self.to, self.reason)
    }
}

/// The operator's word on one vulnerability of a month.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VulnDecision {
    /// Deploy it (explicitly).
    Approve,
    /// Neither deploy nor count it.
    Disapprove,
    /// Back to the campaign's filters deciding.
    Reset,
}

/// Where a vulnerability stands in a month.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VulnApproval {
    /// Nobody decided; the campaign's filters admitted it, so it is deployed.
    Unreviewed,
    /// An operator approved it.
    Approved,
    /// An operator disapproved it: not deployed, not counted.
    Disapproved,
}

impl VulnApproval {
    /// The name used in storage and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            VulnApproval::Unreviewed => "unreviewed",
            VulnApproval::Approved => "approved",
            VulnApproval::Disapproved => "disapproved",
        }
    }
}

/// A recorded vulnerability decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VulnChange {
    /// The advisory decided on.
    pub advisory: String,
    /// Its approval before.
    pub from: VulnApproval,
    /// Its approval after.
    pub to: VulnApproval,
}

/// Why a month refused an event or a decision. Refusals change nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MonthError {
    /// The event is not allowed now; `why` says what is allowed instead.
    #[error("cannot {event} in campaign month {month}: {why}")]
    Refused {
        /// The month.
        month: YearMonth,
        /// Its state when the event came.
        state: MonthState,
        /// The event, in words.
        event: String,
        /// Why not, and what to do instead.
        why: String,
    },
    /// A month was created with no steps.
    #[error("a campaign month needs at least one step")]
    EmptyPlan,
    /// The advisory id is empty, too long, or holds spaces or control characters.
    #[error("bad advisory id `{id}`: expected 1 to {MAX_ADVISORY_ID_LEN} characters without spaces")]
    BadAdvisoryId {
        /// The id as given.
        id: String,
    },
    /// The month already holds [`MAX_VULN_DECISIONS`] decisions.
    #[error("campaign month {month} already holds {MAX_VULN_DECISIONS} vulnerability decisions; reset some first")]
    TooManyDecisions {
        /// The month.
        month: YearMonth,
    },
}

/// The soak clock of the current step: accumulated time plus the running stretch, if any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct SoakClock {
    accumulated_ms: u64,
    running_since: Option<Timestamp>,
}

impl SoakClock {
    /// A clock at zero, running from `now`.
    fn started(now: Timestamp) -> SoakClock {
        SoakClock { accumulated_ms: 0, running_since: Some(now) }
    }

    fn elapsed_ms_at(&self, now: Timestamp) -> u64 {
        let running = self.running_since.map_or(0, |since| millis_between(since, now));
        self.accumulated_ms.saturating_add(running)
    }

    fn stop(&mut self, now: Timestamp) {
        self.accumulated_ms = self.elapsed_ms_at(now);
        self.running_since = None;
    }

    fn resume(&mut self, now: Timestamp) {
        if self.running_since.is_none() {
            self.running_since = Some(now);
        }
    }
}

/// Milliseconds from `from` to `to`, zero if `to` is earlier: a clock that steps back (another
/// replica's, slightly behind) must not make the soak clock run backwards or panic.
fn millis_between(from: Timestamp, to: Timestamp) -> u64 {
    u64::try_from(to.as_millisecond().saturating_sub(from.as_millisecond())).unwrap_or(0)
}

/// One campaign month instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Month {
    month: YearMonth,
    start_at: Timestamp,
    plan: Vec<StepPlan>,
    state: MonthState,
    /// Index into `plan`; meaningful once started.
    step: usize,
    phase: StepPhase,
    /// Set exactly while Pausing or Paused.
    hold: Option<Hold>,
    /// False until `Start`, so that resuming a month paused before its start schedules it again.
    started: bool,
    /// How many times the current step ran: 1, plus one per retry.
    step_run: u32,
    soak: SoakClock,
    reason: String,
    changed_at: Option<Timestamp>,
    vulns: BTreeMap<String, VulnApproval>,
}

impl Month {
    /// A Scheduled month that starts at `start_at` (see `schedule::month_start`) and runs `plan`.
    pub fn new(month: YearMonth, start_at: Timestamp, plan: Vec<StepPlan>) -> Result<Month, MonthError> {
        if plan.is_empty() {
            return Err(MonthError::EmptyPlan);
        }
        Ok(Month {
            month,
            start_at,
            plan,
            state: MonthState::Scheduled,
            step: 0,
            phase: StepPhase::Running,
            hold: None,
            started: false,
            step_run: 0,
            soak: SoakClock::default(),
            reason: "scheduled".to_owned(),
            changed_at: None,
            vulns: BTreeMap::new(),
        })
    }

    /// The calendar month.
    pub fn month(&self) -> YearMonth {
        self.month
    }
    /// When the month starts (or started).
    pub fn start_at(&self) -> Timestamp {
        self.start_at
    }
    /// The steps, in order.
    pub fn plan(&self) -> &[StepPlan] {
        &self.plan
    }
    /// The effective state: what is happening now.
    pub fn effective(&self) -> MonthState {
        self.state
    }
    /// The requested state: what was asked for. It differs from the effective state only while
    /// Pausing, where Paused was requested and installs are still draining.
    pub fn requested(&self) -> MonthState {
        self.state.requested()
    }
    /// The reason of the last change.
    pub fn reason(&self) -> &str {
        &self.reason
    }
    /// When the last change happened; `None` before any.
    pub fn changed_at(&self) -> Option<Timestamp> {
        self.changed_at
    }
    /// The current step's index.
    pub fn step(&self) -> usize {
        self.step
    }
    /// The current step's plan.
    pub fn current_step(&self) -> &StepPlan {
        // `new` refuses an empty plan and `step` only grows up to the last index.
        &self.plan[self.step.min(self.plan.len() - 1)]
    }
    /// Where the current step is.
    pub fn phase(&self) -> StepPhase {
        self.phase
    }
    /// Why the month is pausing or paused, if it is.
    pub fn hold(&self) -> Option<&Hold> {
        self.hold.as_ref()
    }
    /// How many times the current step ran (0 before the start, then 1 plus one per retry).
    pub fn step_run(&self) -> u32 {
        self.step_run
    }

    /// True when the month may dispatch new installs: effectively Active with a running step.
    pub fn dispatching(&self) -> bool {
        self.state == MonthState::Active && self.phase == StepPhase::Running
    }

    /// True when `Start` would be accepted at `now`.
    pub fn due_to_start(&self, now: Timestamp) -> bool {
        self.state == MonthState::Scheduled && now >= self.start_at
    }

    /// How long the current step has soaked by `now`. The clock runs only while the month
    /// dispatches (see [`Month::dispatching`]) and restarts from zero with each step and retry.
    pub fn soak_elapsed_at(&self, now: Timestamp) -> Duration {
        Duration::from_millis(self.soak.elapsed_ms_at(now))
    }

    /// True when the current step's soak time has run out by `now`: the `soak_done` the gate
    /// needs.
    pub fn soak_done_at(&self, now: Timestamp) -> bool {
        self.soak.elapsed_ms_at(now) >= self.current_step().soak_secs.saturating_mul(1000)
    }

    /// When the current step's soak runs out if nothing pauses it, for the scheduler's next
    /// wake-up; `None` when the clock is stopped.
    pub fn soak_due_at(&self) -> Option<Timestamp> {
        let since = self.soak.running_since?;
        let left_ms = self.current_step().soak_secs.saturating_mul(1000).saturating_sub(self.soak.accumulated_ms);
        let left_ms = i64::try_from(left_ms).unwrap_or(i64::MAX);
        Some(since.saturating_add(jiff::SignedDuration::from_millis(left_ms)).unwrap_or(Timestamp::MAX))
    }

    /// Applies `event` at `now`. On success the month changed and the returned transition
    /// (with its reason) is to be recorded; on error nothing changed.
    pub fn apply(&mut self, now: Timestamp, event: MonthEvent) -> Result<Transition, MonthError> {
        let mut next = self.clone();
        let reason = next.decide(now, &event)?;
        next.reason.clone_from(&reason);
        next.changed_at = Some(now);
        let transition = Transition { from: self.state, to: next.state, step: next.step, at: now, reason };
        *self = next;
        Ok(transition)
    }

    /// The transition table. Each arm's helper checks its step and mutates `self` (a scratch
    /// copy in [`Month::apply`]), returning the reason.
    fn decide(&mut self, now: Timestamp, event: &MonthEvent) -> Result<String, MonthError> {
        use MonthEvent as E;
        use MonthState::*;
        match (self.state, event) {
            (Scheduled, E::Start) => self.start(now),
            (Scheduled, E::StartEarly) => Ok(self.start_early(now)),
            (Scheduled, E::Pause { .. }) => Ok(self.pause_before_start()),
            (Active, E::StepGatePassed { step, summary }) => self.gate_passed(now, *step, summary),
            (Active, E::StepGateFailed { step, reason, in_flight }) => self.gate_failed(now, *step, reason, *in_flight),
            (Active, E::ApproveStep { step }) => self.approve(now, *step),
            (Pausing | Paused, E::ApproveStep { step }) => self.approve_anyway(now, *step),
            (Pausing | Paused, E::RetryStep { step }) => self.retry(now, *step),
            (Active, E::Pause { in_flight }) => Ok(self.pause(now, *in_flight)),
            (Pausing, E::InFlightDrained) => Ok(self.drained()),
            (Pausing | Paused, E::Resume) => self.resume(now, event),
            (Scheduled | Active | Pausing | Paused, E::Stop) => Ok(self.stop(now)),
            (state, event) => Err(self.refused(event, format!("it is {state}"))),
        }
    }

    fn start(&mut self, now: Timestamp) -> Result<String, MonthError> {
        if now < self.start_at {
            return Err(self.refused(&MonthEvent::Start, format!("it starts at {}", self.start_at)));
        }
        self.state = MonthState::Active;
        self.started = true;
        self.begin_step(now, 0);
        Ok(format!("month {} started; {}", self.month, self.running_words()))
    }

    fn start_early(&mut self, now: Timestamp) -> String {
        let scheduled = self.start_at;
        self.state = MonthState::Active;
        self.started = true;
        self.begin_step(now, 0);
        format!("month {} started by operator (scheduled for {scheduled}); {}", self.month, self.running_words())
    }

    fn pause_before_start(&mut self) -> String {
        self.state = MonthState::Paused;
        self.hold = Some(Hold::Operator);
        "paused by operator before its start".to_owned()
    }

    fn gate_passed(&mut self, now: Timestamp, step: usize, summary: &str) -> Result<String, MonthError> {
        let event = MonthEvent::StepGatePassed { step, summary: summary.to_owned() };
        self.expect_running_step(&event, step)?;
        if !self.soak_done_at(now) {
            let why = format!(
                "step {} has soaked {} s of {} s; a gate passes only after the soak",
                self.current_step().name,
                self.soak.elapsed_ms_at(now) / 1000,
                self.current_step().soak_secs
            );
            return Err(self.refused(&event, why));
        }
        let passed = format!("step {} passed its gate ({summary})", self.current_step().name);
        match self.current_step().progression {
            Progression::Auto => Ok(format!("{passed}; {}", self.advance(now))),
            Progression::Manual => {
                self.phase = StepPhase::AwaitingApproval;
                self.soak.stop(now);
                let then = match self.plan.get(step + 1) {
                    Some(next) => format!("start step {}", next.name),
                    None => "complete the month".to_owned(),
                };
                Ok(format!("{passed}; waiting for approval to {then}"))
            }
        }
    }

    fn gate_failed(&mut self, now: Timestamp, step: usize, reason: &str, in_flight: u32) -> Result<String, MonthError> {
        let event = MonthEvent::StepGateFailed { step, reason: reason.to_owned(), in_flight };
        self.expect_running_step(&event, step)?;
        self.hold = Some(Hold::GateFailed { reason: reason.to_owned() });
        let failed = format!("step {} failed its gate: {reason}", self.current_step().name);
        Ok(format!("{failed}{}", self.enter_pause(now, in_flight)))
    }

    fn approve(&mut self, now: Timestamp, step: usize) -> Result<String, MonthError> {
        let event = MonthEvent::ApproveStep { step };
        self.expect_step(&event, step)?;
        if self.phase != StepPhase::AwaitingApproval {
            let why = format!("step {} is still running; its gate has not passed", self.current_step().name);
            return Err(self.refused(&event, why));
        }
        let approved = format!("operator approved step {}", self.current_step().name);
        Ok(format!("{approved}; {}", self.advance(now)))
    }

    fn approve_anyway(&mut self, now: Timestamp, step: usize) -> Result<String, MonthError> {
        let event = MonthEvent::ApproveStep { step };
        let reason = self.gate_failure(&event, step)?;
        let approved =
            format!("operator approved step {} despite its failed gate ({reason})", self.current_step().name);
        Ok(format!("{approved}; {}", self.advance(now)))
    }

    fn retry(&mut self, now: Timestamp, step: usize) -> Result<String, MonthError> {
        let event = MonthEvent::RetryStep { step };
        self.gate_failure(&event, step)?;
        let run = self.step_run.saturating_add(1);
        self.state = MonthState::Active;
        self.hold = None;
        self.begin_step(now, step);
        self.step_run = run;
        Ok(format!("operator retried step {} (run {run}); its soak starts over", self.current_step().name))
    }

    fn pause(&mut self, now: Timestamp, in_flight: u32) -> String {
        self.hold = Some(Hold::Operator);
        format!("paused by operator{}", self.enter_pause(now, in_flight))
    }

    /// Stops dispatch and the soak clock; Pausing while installs are in flight, else Paused.
    fn enter_pause(&mut self, now: Timestamp, in_flight: u32) -> String {
        self.soak.stop(now);
        if in_flight > 0 {
            self.state = MonthState::Pausing;
            format!("; pausing until {in_flight} installs in flight finish")
        } else {
            self.state = MonthState::Paused;
            String::new()
        }
    }

    fn drained(&mut self) -> String {
        self.state = MonthState::Paused;
        format!("in-flight installs finished; {}", self.hold_words())
    }

    fn resume(&mut self, now: Timestamp, event: &MonthEvent) -> Result<String, MonthError> {
        if let Some(Hold::GateFailed { .. }) = self.hold {
            let why = format!(
                "step {} failed its gate; approve it anyway, retry it, or stop the month",
                self.current_step().name
            );
            return Err(self.refused(event, why));
        }
        self.hold = None;
        if !self.started {
            self.state = MonthState::Scheduled;
            return Ok(format!("resumed by operator; starts at {}", self.start_at));
        }
        self.state = MonthState::Active;
        if self.phase == StepPhase::Running {
            self.soak.resume(now);
        }
        Ok(format!("resumed by operator; {}", self.running_words()))
    }

    fn stop(&mut self, now: Timestamp) -> String {
        self.soak.stop(now);
        let during = if self.started { format!(" during step {}", self.current_step().name) } else { String::new() };
        self.state = MonthState::Failed;
        self.hold = None;
        format!("stopped by operator{during}")
    }

    /// Moves past the current step: to the next one, running, or to Completed after the last.
    fn advance(&mut self, now: Timestamp) -> String {
        self.hold = None;
        if self.step + 1 < self.plan.len() {
            self.state = MonthState::Active;
            self.begin_step(now, self.step + 1);
            self.running_words()
        } else {
            self.soak.stop(now);
            self.state = MonthState::Completed;
            format!("all {} steps done", self.plan.len())
        }
    }

    fn begin_step(&mut self, now: Timestamp, step: usize) {
        self.step = step;
        self.phase = StepPhase::Running;
        self.step_run = 1;
        self.soak = SoakClock::started(now);
    }

    fn running_words(&self) -> String {
        match self.phase {
            StepPhase::Running => format!("step {} is running", self.current_step().name),
            StepPhase::AwaitingApproval => format!("step {} is waiting for approval", self.current_step().name),
        }
    }

    fn hold_words(&self) -> String {
        match &self.hold {
            Some(Hold::GateFailed { reason }) => {
                format!("paused after step {} failed its gate: {reason}", self.current_step().name)
            }
            Some(Hold::Operator) | None => "paused by operator".to_owned(),
        }
    }

    /// Checks that `step` is the current step.
    fn expect_step(&self, event: &MonthEvent, step: usize) -> Result<(), MonthError> {
        if step == self.step {
            return Ok(());
        }
        let why = match self.plan.get(step) {
            None => format!("there is no step {step}; the campaign has {} steps", self.plan.len()),
            Some(_) => format!("the current step is {} ({})", self.step, self.current_step().name),
        };
        Err(self.refused(event, why))
    }

    /// Checks that `step` is current and running, as a gate verdict about it requires.
    fn expect_running_step(&self, event: &MonthEvent, step: usize) -> Result<(), MonthError> {
        self.expect_step(event, step)?;
        if self.phase == StepPhase::AwaitingApproval {
            let why = format!("step {} already passed its gate and is waiting for approval", self.current_step().name);
            return Err(self.refused(event, why));
        }
        Ok(())
    }

    /// The reason of the current step's failed gate, or a refusal when the month is held for
    /// another reason.
    fn gate_failure(&self, event: &MonthEvent, step: usize) -> Result<String, MonthError> {
        self.expect_step(event, step)?;
        match &self.hold {
            Some(Hold::GateFailed { reason }) => Ok(reason.clone()),
            _ => Err(self.refused(event, "it was paused by an operator, not by a failed gate; resume it".to_owned())),
        }
    }

    fn refused(&self, event: &MonthEvent, why: String) -> MonthError {
        MonthError::Refused { month: self.month, state: self.state, event: self.event_words(event), why }
    }

    /// The event as an operator would say it, naming the step.
    fn event_words(&self, event: &MonthEvent) -> String {
        let step_name = |step: &usize| self.plan.get(*step).map_or_else(|| format!("#{step}"), |s| s.name.clone());
        match event {
            MonthEvent::Start => "start".to_owned(),
            MonthEvent::StartEarly => "start early".to_owned(),
            MonthEvent::StepGatePassed { step, .. } => format!("pass the gate of step {}", step_name(step)),
            MonthEvent::StepGateFailed { step, .. } => format!("fail the gate of step {}", step_name(step)),
            MonthEvent::ApproveStep { step } => format!("approve step {}", step_name(step)),
            MonthEvent::RetryStep { step } => format!("retry step {}", step_name(step)),
            MonthEvent::Pause { .. } => "pause".to_owned(),
            MonthEvent::InFlightDrained => "finish draining".to_owned(),
            MonthEvent::Resume => "resume".to_owned(),
            MonthEvent::Stop => "stop".to_owned(),
        }
    }

    /// Records an operator's decision on one advisory of this month. Allowed until the month is
    /// over; a decision that changes nothing is accepted and reported as such (`from == to`).
    pub fn decide_vuln(&mut self, advisory: &str, decision: VulnDecision) -> Result<VulnChange, MonthError> {
        if self.state.is_terminal() {
            let event = match decision {
                VulnDecision::Approve => "approve",
                VulnDecision::Disapprove => "disapprove",
                VulnDecision::Reset => "reset",
            };
            return Err(MonthError::Refused {
                month: self.month,
                state: self.state,
                event: format!("{event} vulnerability {advisory}"),
                why: format!("it is {}", self.state),
            });
        }
        let id_ok = !advisory.is_empty()
            && advisory.len() <= MAX_ADVISORY_ID_LEN
            && !advisory.chars().any(|c| c.is_whitespace() || c.is_control());
        if !id_ok {
            return Err(MonthError::BadAdvisoryId { id: advisory.to_owned() });
        }
        let from = self.vuln_approval(advisory);
        let to = match decision {
            VulnDecision::Approve => VulnApproval::Approved,
            VulnDecision::Disapprove => VulnApproval::Disapproved,
            VulnDecision::Reset => VulnApproval::Unreviewed,
        };
        if to == VulnApproval::Unreviewed {
            self.vulns.remove(advisory);
        } else {
            if !self.vulns.contains_key(advisory) && self.vulns.len() >= MAX_VULN_DECISIONS {
                return Err(MonthError::TooManyDecisions { month: self.month });
            }
            self.vulns.insert(advisory.to_owned(), to);
        }
        Ok(VulnChange { advisory: advisory.to_owned(), from, to })
    }

    /// Where `advisory` stands in this month.
    pub fn vuln_approval(&self, advisory: &str) -> VulnApproval {
        self.vulns.get(advisory).copied().unwrap_or(VulnApproval::Unreviewed)
    }

    /// The advisories among `advisories` (the ones the month's window and filters collected)
    /// that are deployed and counted: all but the disapproved ones, in the given order.
    pub fn deployable<'a>(&self, advisories: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
        advisories.into_iter().filter(|id| self.vuln_approval(id) != VulnApproval::Disapproved).collect()
    }
}

mod snapshot;
pub use snapshot::{HoldSnapshot, MonthSnapshot, RestoreError, StepPlanSnapshot};

#[cfg(test)]
mod tests;
