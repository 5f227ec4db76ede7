//! A month as stored: [`MonthSnapshot`], plain data with serde, and the checks that turn it back
//! into a [`Month`].
//!
//! This is the module's one serialized type besides the raw spec (see the `campaign` docs): the
//! server keeps each month instance in the database between ticks and across replicas, and a
//! restore must refuse a snapshot that breaks the month's invariants (a step past the plan, a
//! hold without a pause) rather than run a state the machine could never have reached.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Hold, Month, MonthState, SoakClock, StepPhase, StepPlan, VulnApproval};
use crate::campaign::schedule::YearMonth;
use crate::campaign::spec::Progression;

/// The storage form of a [`Month`]. Field names are the stored JSON's; add fields only with
/// `#[serde(default)]` so older rows still load.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonthSnapshot {
    /// `YYYY-MM`.
    pub month: String,
    /// When the month starts.
    pub start_at: Timestamp,
    /// The steps as copied from the campaign when the month was created.
    pub plan: Vec<StepPlanSnapshot>,
    /// Effective state (`scheduled`, `active`, …).
    pub state: String,
    /// Current step index.
    pub step: usize,
    /// `running` or `awaiting-approval`.
    pub phase: String,
    /// Why the month is held: absent, `operator`, or the failed gate's reason.
    pub hold: Option<HoldSnapshot>,
    /// Whether `Start` happened.
    pub started: bool,
    /// Runs of the current step.
    pub step_run: u32,
    /// Soak time accumulated before the running stretch, milliseconds.
    pub soak_accumulated_ms: u64,
    /// Start of the running soak stretch, if the clock runs.
    pub soak_running_since: Option<Timestamp>,
    /// Reason of the last change.
    pub reason: String,
    /// When the last change happened.
    pub changed_at: Option<Timestamp>,
    /// Operator decisions: advisory id → `approved` / `disapproved`.
    pub vulns: BTreeMap<String, String>,
}

/// One step of a stored plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepPlanSnapshot {
    /// Name.
    pub name: String,
    /// `auto` or `manual`.
    pub progression: String,
    /// Soak time, seconds.
    pub soak_secs: u64,
}

/// A stored hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum HoldSnapshot {
    /// Paused by an operator.
    Operator,
    /// Paused by a failed gate.
    GateFailed {
        /// The gate's reason.
        reason: String,
    },
}

/// Why a snapshot could not be restored: the stored row is damaged or was written by a
/// version with other states.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("stored campaign month {month} cannot be restored: {why}")]
pub struct RestoreError {
    /// The month as stored.
    pub month: String,
    /// What is wrong.
    pub why: String,
}

impl Month {
    /// The month's storage form.
    pub fn snapshot(&self) -> MonthSnapshot {
        MonthSnapshot {
            month: self.month.to_string(),
            start_at: self.start_at,
            plan: self
                .plan
                .iter()
                .map(|p| StepPlanSnapshot {
                    name: p.name.clone(),
                    progression: p.progression.as_str().to_owned(),
                    soak_secs: p.soak_secs,
                })
                .collect(),
            state: self.state.as_str().to_owned(),
            step: self.step,
            phase: self.phase.as_str().to_owned(),
            hold: self.hold.as_ref().map(|h| match h {
                Hold::Operator => HoldSnapshot::Operator,
                Hold::GateFailed { reason } => HoldSnapshot::GateFailed { reason: reason.clone() },
            }),
            started: self.started,
            step_run: self.step_run,
            soak_accumulated_ms: self.soak.accumulated_ms,
            soak_running_since: self.soak.running_since,
            reason: self.reason.clone(),
            changed_at: self.changed_at,
            vulns: self.vulns.iter().map(|(id, a)| (id.clone(), a.as_str().to_owned())).collect(),
        }
    }

    /// The month a snapshot describes, after checking every invariant the state machine keeps.
    pub fn restore(s: &MonthSnapshot) -> Result<Month, RestoreError> {
        let bad = |why: String| RestoreError { month: s.month.clone(), why };
        let month: YearMonth = s.month.parse().map_err(|e| bad(format!("{e}")))?;
        let plan = s.plan.iter().map(|p| restore_step(p).map_err(bad)).collect::<Result<Vec<_>, _>>()?;
        let state: MonthState = s.state.parse().map_err(bad)?;
        let phase = match s.phase.as_str() {
            "running" => StepPhase::Running,
            "awaiting-approval" => StepPhase::AwaitingApproval,
            other => return Err(bad(format!("unknown step phase `{other}`"))),
        };
        let hold = s.hold.as_ref().map(|h| match h {
            HoldSnapshot::Operator => Hold::Operator,
            HoldSnapshot::GateFailed { reason } => Hold::GateFailed { reason: reason.clone() },
        });
        let vulns = s
            .vulns
            .iter()
            .map(|(id, a)| restore_approval(a).map(|a| (id.clone(), a)).map_err(bad))
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        let restored = Month {
            month,
            start_at: s.start_at,
            plan,
            state,
            step: s.step,
            phase,
            hold,
            started: s.started,
            step_run: s.step_run,
            soak: SoakClock { accumulated_ms: s.soak_accumulated_ms, running_since: s.soak_running_since },
            reason: s.reason.clone(),
            changed_at: s.changed_at,
            vulns,
        };
        restored.invariant_violation().map_or(Ok(restored), |why| Err(bad(why)))
    }

    /// The first invariant this month breaks, if any: what no sequence of events can produce.
    fn invariant_violation(&self) -> Option<String> {
        let held = matches!(self.state, MonthState::Pausing | MonthState::Paused);
        if self.plan.is_empty() {
            Some("its plan has no steps".to_owned())
        } else if self.step >= self.plan.len() {
            Some(format!("step {} is past its {} steps", self.step, self.plan.len()))
        } else if held != self.hold.is_some() {
            Some(format!("it is {} with hold {:?}", self.state, self.hold))
        } else if self.soak.running_since.is_some() && !self.dispatching() {
            Some(format!("its soak clock runs while it is {} ({})", self.state, self.phase.as_str()))
        } else if !self.started
            && !matches!(self.state, MonthState::Scheduled | MonthState::Paused | MonthState::Failed)
        {
            Some(format!("it is {} but never started", self.state))
        } else if self.vulns.values().any(|a| *a == VulnApproval::Unreviewed) {
            Some("a stored decision says `unreviewed`".to_owned())
        } else {
            None
        }
    }
}

fn restore_step(p: &StepPlanSnapshot) -> Result<StepPlan, String> {
    let progression = match p.progression.as_str() {
        "auto" => Progression::Auto,
        "manual" => Progression::Manual,
        other => return Err(format!("step {} has unknown progression `{other}`", p.name)),
    };
    Ok(StepPlan { name: p.name.clone(), progression, soak_secs: p.soak_secs })
}

fn restore_approval(word: &str) -> Result<VulnApproval, String> {
    match word {
        "approved" => Ok(VulnApproval::Approved),
        "disapproved" => Ok(VulnApproval::Disapproved),
        other => Err(format!("unknown vulnerability approval `{other}`")),
    }
}
