//! Rollgate's campaign simulator: one campaign month against a simulated fleet, in virtual time.
//!
//! [`simulate`] takes the campaign file and the fleet file as text and a seed, and returns a
//! [`Report`]: the timeline (each step's start, gate verdict and end, the month's completion),
//! the predicted time to patch 75, 90 and 100 % of the targeted endpoints, failures by cause and
//! per-step counts. It does no IO and reads no clock; the same inputs and seed give the same
//! report, byte for byte, in text ([`Report::to_text`]) and in JSON (`Report: Serialize`).
//!
//! The month is run by `rollgate-core`'s own campaign code (schedule, selectors, release order,
//! attempt policy, windows, gate, month state machine), so the simulator predicts the decisions
//! the server makes. Only the fleet is modelled; `engine` lists the model's assumptions.
//!
//! **The simulated operator** (the `[operator]` table of the fleet file):
//! - A `manual` step whose gate passed is approved `manual_approval_delay_secs` later (0, the
//!   default, approves at once).
//! - After a failed gate the month pauses (the core lets in-flight installs finish first). With
//!   `on_gate_failure = "pause"` (the default) nobody acts: the report ends with the month
//!   paused, and the endpoints it would still have reached are counted as held or not started.
//!   With `"approve-anyway"` the operator approves the step despite its gate
//!   `approve_anyway_delay_secs` later, to show the rest of the month. The simulated operator
//!   never retries or stops a month.

mod engine;
pub mod fleet;
pub mod report;

use rollgate_core::campaign::month::MonthError;
use rollgate_core::campaign::schedule::ScheduleError;
use rollgate_core::campaign::spec::{CampaignSpec, SpecError};

pub use fleet::{FleetProblem, FleetSpec};
pub use report::Report;

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The campaign file is not valid TOML of the campaign's shape.
    #[error("cannot read the campaign file: {0}")]
    CampaignSyntax(toml::de::Error),
    /// The campaign file's values are invalid.
    #[error(transparent)]
    Campaign(#[from] SpecError),
    /// The fleet file is not valid TOML of the fleet's shape.
    #[error("cannot read the fleet file: {0}")]
    FleetSyntax(toml::de::Error),
    /// The fleet file's values are invalid, or do not fit the campaign.
    #[error("invalid fleet: {}", .problems.iter().map(FleetProblem::to_string).collect::<Vec<_>>().join("; "))]
    Fleet {
        /// Every problem, in file order.
        problems: Vec<FleetProblem>,
    },
    /// The month's start or horizon cannot be computed.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// The core refused an event the simulator sent: a simulator bug.
    #[error("the campaign month refused a simulated event (a simulator bug): {0}")]
    Month(#[from] MonthError),
    /// An instant fell outside the supported time range.
    #[error("simulated time out of range: {0}")]
    Time(String),
    /// The run processed more events than its bound: a simulator bug.
    #[error("the simulation exceeded its bound of {limit} events (a simulator bug)")]
    TooManyEvents {
        /// The bound.
        limit: u64,
    },
    /// The release order returned an id the simulator did not make: a simulator bug.
    #[error("the release order returned the unknown endpoint id `{0}` (a simulator bug)")]
    BadOrder(String),
}

/// Parses and checks both files, then runs the campaign's month named in the fleet file over
/// the fleet with `seed`. Pure: no IO, no clock.
pub fn simulate(campaign_toml: &str, fleet_toml: &str, seed: u64) -> Result<Report, SimError> {
    let campaign: CampaignSpec = toml::from_str(campaign_toml).map_err(SimError::CampaignSyntax)?;
    let campaign = campaign.validate()?;
    let fleet: FleetSpec = toml::from_str(fleet_toml).map_err(SimError::FleetSyntax)?;
    let fleet = fleet.check(&campaign).map_err(|problems| SimError::Fleet { problems })?;
    engine::Sim::new(&campaign, &fleet, seed)?.run(seed)
}
