//! The simulation's result: the report a person reads (`to_text`) or a program reads (JSON).
//!
//! These types are the simulator's output boundary, so unlike core types they derive
//! `Serialize`. Every collection is a `Vec` in a fixed order (timeline by time, steps in campaign
//! order, causes by count then name), so the same run always serializes to the same bytes.

use std::fmt::Write as _;

use serde::Serialize;

/// One instant of the simulated month.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Instant {
    /// The instant in the campaign's time zone, RFC 3339 with the zone's offset.
    pub at: String,
    /// Seconds since the month started.
    pub after_secs: i64,
}

/// What happened to the month or one of its steps, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TimelineEntry {
    /// When.
    pub at: Instant,
    /// `month-started`, `step-started`, `gate-passed`, `awaiting-approval`, `gate-failed`,
    /// `month-paused`, `approved`, `approved-anyway`, `month-completed`.
    pub event: String,
    /// The step it is about, if any.
    pub step: Option<String>,
    /// The core's own words for the change (the month transition's reason).
    pub detail: String,
}

/// What one step did over the whole simulation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepReport {
    /// The step's name.
    pub name: String,
    /// Its target selector.
    pub targets: String,
    /// Its max-in-flight limit.
    pub max_in_flight: u32,
    /// The most of its endpoints ever installing at once.
    pub peak_in_flight: u32,
    /// Endpoints it deploys to (matched by its selector and by no earlier step).
    pub targeted: u64,
    /// Endpoints that started an install.
    pub attempted: u64,
    /// Endpoints whose install succeeded.
    pub succeeded: u64,
    /// Endpoints whose install failed for good (every attempt failed).
    pub failed: u64,
    /// Endpoints offline from the step's start to the month's horizon.
    pub no_shows: u64,
    /// Endpoints that came online but were never dispatched because the month stayed paused.
    pub held: u64,
    /// Endpoints of a step that never started.
    pub not_started: u64,
    /// Successful installs that reported a crash (bad patches).
    pub bad_patches: u64,
    /// succeeded / attempted at the end of the simulation.
    pub success_rate: f64,
    /// (succeeded − bad) / succeeded, when anything succeeded.
    pub good_patch_ratio: Option<f64>,
    /// When the step started.
    pub started: Option<Instant>,
    /// The gate's deciding verdict (passed or failed), as the core words it.
    pub gate: Option<String>,
    /// When that verdict came.
    pub gate_at: Option<Instant>,
    /// When the month moved past the step (next step or completion).
    pub ended: Option<Instant>,
    /// When the step's last install finished.
    pub last_install: Option<Instant>,
}

/// When a share of the campaign's targeted endpoints was patched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Milestone {
    /// The share, in percent.
    pub percent: u32,
    /// How many patched endpoints that share means.
    pub endpoints: u64,
    /// When it was reached; `None` if never.
    pub reached: Option<Instant>,
}

/// Endpoints that ended with one cause.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CauseCount {
    /// `site relay <site>`, `product <name>`, `step <name>`, `random agent failure`, or
    /// `crash after install` (patched, but a bad patch).
    pub cause: String,
    /// How many endpoints.
    pub endpoints: u64,
}

/// Totals over all targeted endpoints; they add up to `targeted`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Endpoints some step targets.
    pub targeted: u64,
    /// Patched (bad patches included).
    pub patched: u64,
    /// Patched, but crashed afterwards.
    pub bad_patches: u64,
    /// Failed for good, each with a cause.
    pub failed: u64,
    /// Offline the whole time.
    pub no_shows: u64,
    /// Online, but held by a paused month.
    pub held: u64,
    /// In a step that never started.
    pub not_started: u64,
}

/// The result of one simulation. Same inputs and seed, same report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The campaign's name.
    pub campaign: String,
    /// The simulated month, `YYYY-MM`.
    pub month: String,
    /// The seed.
    pub seed: u64,
    /// The campaign's time zone.
    pub time_zone: String,
    /// When the month started (Patch Tuesday plus the campaign's offset).
    pub month_start: Instant,
    /// The next month's start: endpoints offline until then are no-shows.
    pub horizon: Instant,
    /// Endpoints in the fleet.
    pub fleet_endpoints: u64,
    /// Products deployed, `name (severity)`.
    pub products: Vec<String>,
    /// Products in the fleet file that the campaign's filters leave out.
    pub excluded_products: Vec<String>,
    /// The month's effective state at the end.
    pub final_state: String,
    /// The reason of the month's last change.
    pub final_reason: String,
    /// When the month completed, if it did.
    pub completed: Option<Instant>,
    /// What happened, in order.
    pub timeline: Vec<TimelineEntry>,
    /// Per step, in campaign order.
    pub steps: Vec<StepReport>,
    /// Time to patch 75, 90 and 100 % of the targeted endpoints.
    pub time_to_patch: Vec<Milestone>,
    /// Failed and bad-patch endpoints by cause, most first.
    pub failures_by_cause: Vec<CauseCount>,
    /// Totals.
    pub totals: Totals,
    /// Events the simulation processed.
    pub events: u64,
}

/// `3d 04h 05m` from seconds.
fn span(secs: i64) -> String {
    let sign = if secs < 0 { "-" } else { "" };
    let secs = secs.unsigned_abs();
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    if d > 0 {
        format!("{sign}{d}d {h:02}h {m:02}m")
    } else {
        format!("{sign}{h:02}h {m:02}m")
    }
}

fn when(at: &Instant) -> String {
    format!("{} (+{})", at.at, span(at.after_secs))
}

fn opt_when(at: Option<&Instant>) -> String {
    at.map_or_else(|| "-".to_owned(), when)
}

fn percent(rate: f64) -> String {
    format!("{:.2} %", rate * 100.0)
}

impl Report {
    /// The report as plain text for a terminal, in a fixed layout.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_text(&mut out);
        out
    }

    fn write_text(&self, out: &mut String) -> std::fmt::Result {
        writeln!(out, "Campaign {} · month {} · seed {}", self.campaign, self.month, self.seed)?;
        writeln!(out, "Month start {} ({}); horizon {}", self.month_start.at, self.time_zone, when(&self.horizon))?;
        writeln!(out, "Fleet {} endpoints; deploying {}", self.fleet_endpoints, self.products.join(", "))?;
        if !self.excluded_products.is_empty() {
            writeln!(out, "Left out by the campaign's filters: {}", self.excluded_products.join(", "))?;
        }
        writeln!(out, "Final state: {} ({})", self.final_state, self.final_reason)?;

        writeln!(out, "\nTimeline")?;
        for e in &self.timeline {
            let step = e.step.as_deref().map_or_else(String::new, |s| format!(" [{s}]"));
            writeln!(out, "  {:<41} {:<17}{step} {}", when(&e.at), e.event, e.detail)?;
        }

        writeln!(out, "\nSteps")?;
        for s in &self.steps {
            writeln!(
                out,
                "  {} ({}; max in flight {}, peak {})",
                s.name, s.targets, s.max_in_flight, s.peak_in_flight
            )?;
            writeln!(
                out,
                "    targeted {}, attempted {}, succeeded {}, failed {}, no-shows {}, held {}, not started {}",
                s.targeted, s.attempted, s.succeeded, s.failed, s.no_shows, s.held, s.not_started
            )?;
            let good = s.good_patch_ratio.map_or_else(|| "-".to_owned(), percent);
            writeln!(
                out,
                "    success rate {}, good-patch ratio {good} ({} bad)",
                percent(s.success_rate),
                s.bad_patches
            )?;
            writeln!(
                out,
                "    started {}, gate {}, ended {}, last install {}",
                opt_when(s.started.as_ref()),
                opt_when(s.gate_at.as_ref()),
                opt_when(s.ended.as_ref()),
                opt_when(s.last_install.as_ref())
            )?;
            if let Some(gate) = &s.gate {
                writeln!(out, "    gate: {gate}")?;
            }
        }

        writeln!(out, "\nTime to patch ({} targeted endpoints)", self.totals.targeted)?;
        for m in &self.time_to_patch {
            let reached = m.reached.as_ref().map_or_else(|| "not reached".to_owned(), when);
            writeln!(out, "  {:>3} % ({} endpoints): {reached}", m.percent, m.endpoints)?;
        }

        writeln!(out, "\nFailures by cause")?;
        if self.failures_by_cause.is_empty() {
            writeln!(out, "  none")?;
        }
        for c in &self.failures_by_cause {
            writeln!(out, "  {:>8}  {}", c.endpoints, c.cause)?;
        }
        let t = &self.totals;
        writeln!(
            out,
            "\nTotals: targeted {}, patched {} ({} bad), failed {}, no-shows {}, held {}, not started {}; {} events",
            t.targeted, t.patched, t.bad_patches, t.failed, t.no_shows, t.held, t.not_started, self.events
        )
    }
}
