//! A step's gate: the acceptance math that decides whether a ring may widen.
//!
//! The gate is real where the products people use are not: it never passes on time alone (a
//! minimum sample must have attempted), never passes before the soak time ran out, and judges
//! rates only over endpoints that attempted. Its words:
//!
//! - **attempted**: targeted endpoints that started an install in this step. They are the
//!   sample and the denominator of both rates.
//! - **success rate** = succeeded / attempted. An attempt still running when the gate is judged
//!   has not succeeded, so it counts against the success rate (a step may pass with a few
//!   installs still running when the rest already meet the bar); but a gate never *fails* on
//!   installs still running: while their success could still make every criterion hold, it
//!   waits for them…
//! - **error rate** = failed / attempted. …but not as an error: only a failed (rolled back or
//!   timed out) install is one. That is what makes `max_error_rate` a separate criterion from
//!   `min_success_rate`: it bounds breakage, while the success rate also measures completeness.
//! - **no-show**: a targeted endpoint offline for the whole step. It is reported but is neither a
//!   failure nor part of the sample.
//! - **good-patch ratio** = (succeeded − bad reports) / succeeded, over endpoints whose install
//!   succeeded only. An endpoint is good unless its agent (crash or failed health check during
//!   the soak) or an operator reported the patch bad, as in the seed: "100 % if there are no
//!   detected crashes or manual reports".
//!
//! When the soak is over but the sample can no longer grow (every targeted endpoint attempted or
//! was a no-show), waiting would wait forever, so the gate fails with that reason instead and
//! the operator decides (approve anyway, retry, or stop).

use std::fmt;

use super::spec::Acceptance;

/// What the shell counted for one step, over its targeted endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepTally {
    /// Endpoints the step targets.
    pub targeted: u32,
    /// Endpoints that started an install in this step (the sample).
    pub attempted: u32,
    /// Endpoints whose install succeeded (all approved patches installed and healthy).
    pub succeeded: u32,
    /// Endpoints whose install failed for good (rolled back, or timed out).
    pub failed: u32,
    /// Endpoints offline for the whole step so far.
    pub no_shows: u32,
    /// Endpoints that attempted but will not finish in this run: a package's set moved on
    /// while they were offline. Neither succeeded nor failed, and not waited for.
    pub missed: u32,
    /// Good-patch reports about endpoints that succeeded.
    pub good_patch: GoodPatchReports,
}

/// Reports about successfully patched endpoints, each endpoint counted at most once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoodPatchReports {
    /// Endpoints whose agent watched the soak and reported the patch good. Shown in views; the
    /// ratio does not need it, since silence also means good.
    pub good: u32,
    /// Endpoints with a crash, failed health check or operator report after the install.
    pub bad: u32,
}

impl StepTally {
    /// Attempts that have neither succeeded nor failed yet, and may still.
    pub fn running(&self) -> u32 {
        self.attempted.saturating_sub(self.succeeded.saturating_add(self.failed).saturating_add(self.missed))
    }

    /// Explains why the counts cannot all be true, if so: each endpoint is in at most one of
    /// attempted or no-show, an attempt ends at most once, and only succeeded endpoints get
    /// good-patch reports. A gate never passes on counts that contradict each other.
    pub fn inconsistency(&self) -> Option<String> {
        let t = self;
        let wide = |n: u32| u64::from(n);
        if wide(t.attempted) + wide(t.no_shows) > wide(t.targeted) {
            return Some(format!(
                "{} attempted plus {} no-shows exceed {} targeted",
                t.attempted, t.no_shows, t.targeted
            ));
        }
        if wide(t.succeeded) + wide(t.failed) + wide(t.missed) > wide(t.attempted) {
            let missed = if t.missed > 0 { format!(" plus {} missed", t.missed) } else { String::new() };
            return Some(format!(
                "{} succeeded plus {} failed{missed} exceed {} attempted",
                t.succeeded, t.failed, t.attempted
            ));
        }
        if wide(t.good_patch.good) + wide(t.good_patch.bad) > wide(t.succeeded) {
            return Some(format!(
                "{} good plus {} bad patch reports exceed {} succeeded",
                t.good_patch.good, t.good_patch.bad, t.succeeded
            ));
        }
        None
    }
}

/// The gate's verdict at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GateResult {
    /// Fewer endpoints attempted than the minimum sample; more may still come.
    Waiting {
        /// Why, with the numbers.
        reason: String,
    },
    /// The sample is there, but the step's soak time has not run out yet.
    Soaking,
    /// Every criterion holds: the step may hand over to the next one.
    Passed {
        /// The measured values, for the record and notifications.
        summary: String,
    },
    /// At least one criterion does not hold: the month pauses with this reason.
    Failed {
        /// Every failing criterion with its numbers, joined by `; `.
        reason: String,
    },
}

impl fmt::Display for GateResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GateResult::Waiting { reason } => write!(f, "waiting: {reason}"),
            GateResult::Soaking => f.write_str("soaking"),
            GateResult::Passed { summary } => write!(f, "passed: {summary}"),
            GateResult::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

/// Judges a step's gate from its tally. `soak_done` says whether the step's soak time has run
/// out (see `Month::soak_done_at`); the gate itself reads no clock.
///
/// Order: contradictory counts fail; below the minimum sample the step waits (or fails, once
/// soaked, if no more endpoints can attempt); before the soak is done it soaks; then every
/// criterion is checked and all failing ones are reported together.
pub fn evaluate(acceptance: &Acceptance, tally: &StepTally, soak_done: bool) -> GateResult {
    if let Some(why) = tally.inconsistency() {
        return GateResult::Failed { reason: format!("inconsistent tally: {why}") };
    }
    if tally.attempted < acceptance.min_sample {
        return below_sample(acceptance, tally, soak_done);
    }
    if !soak_done {
        return GateResult::Soaking;
    }
    let failures = failures(acceptance, tally);
    if failures.is_empty() {
        return GateResult::Passed { summary: summary(acceptance, tally) };
    }
    // Not yet a verdict if the installs still running could make every criterion hold.
    let running = tally.running();
    let best_case = StepTally { succeeded: tally.succeeded + running, ..*tally };
    if running > 0 && self::failures(acceptance, &best_case).is_empty() {
        return GateResult::Waiting {
            reason: format!("{running} installs still running decide it ({})", failures.join("; ")),
        };
    }
    GateResult::Failed { reason: failures.join("; ") }
}

fn failures(acceptance: &Acceptance, tally: &StepTally) -> Vec<String> {
    criteria(acceptance, tally).into_iter().filter_map(|c| c.failure).collect()
}

fn below_sample(acceptance: &Acceptance, tally: &StepTally, soak_done: bool) -> GateResult {
    let counts = format!("{} attempted, {} no-shows of {} targeted", tally.attempted, tally.no_shows, tally.targeted);
    let can_grow = u64::from(tally.attempted) + u64::from(tally.no_shows) < u64::from(tally.targeted);
    if soak_done && !can_grow {
        GateResult::Failed {
            reason: format!(
                "sample {} can no longer reach the minimum {} ({counts})",
                tally.attempted, acceptance.min_sample
            ),
        }
    } else {
        GateResult::Waiting {
            reason: format!("sample {} is below the minimum {} ({counts})", tally.attempted, acceptance.min_sample),
        }
    }
}

/// One criterion's measured value, and why it fails if it does.
struct Criterion {
    measured: String,
    failure: Option<String>,
}

fn criteria(acceptance: &Acceptance, tally: &StepTally) -> Vec<Criterion> {
    let mut out = vec![success_rate(acceptance, tally)];
    if let Some(max) = acceptance.max_error_rate {
        out.push(error_rate(max, tally));
    }
    if let Some(min) = acceptance.min_good_patch_ratio {
        out.push(good_patch_ratio(min, tally));
    }
    out
}

fn success_rate(acceptance: &Acceptance, tally: &StepTally) -> Criterion {
    let rate = ratio(tally.succeeded, tally.attempted);
    let measured = format!("success rate {} ({} of {})", show_rate(rate), tally.succeeded, tally.attempted);
    let failure = (rate < acceptance.min_success_rate).then(|| {
        format!(
            "success rate {} is below {} ({} of {})",
            show_rate(rate),
            acceptance.min_success_rate,
            tally.succeeded,
            tally.attempted
        )
    });
    Criterion { measured, failure }
}

fn error_rate(max: f64, tally: &StepTally) -> Criterion {
    let rate = ratio(tally.failed, tally.attempted);
    let measured = format!("error rate {} ({} of {})", show_rate_up(rate), tally.failed, tally.attempted);
    let failure = (rate > max).then(|| {
        format!("error rate {} is above {max} ({} of {} failed)", show_rate_up(rate), tally.failed, tally.attempted)
    });
    Criterion { measured, failure }
}

fn good_patch_ratio(min: f64, tally: &StepTally) -> Criterion {
    if tally.succeeded == 0 {
        // No successful install, so nothing vouches for the patch.
        return Criterion {
            measured: "good-patch ratio unknown (no install succeeded)".to_owned(),
            failure: Some("good-patch ratio cannot be judged: no install succeeded".to_owned()),
        };
    }
    let good = tally.succeeded - tally.good_patch.bad.min(tally.succeeded);
    let rate = ratio(good, tally.succeeded);
    let measured = format!("good-patch ratio {} ({} of {})", show_rate(rate), good, tally.succeeded);
    let failure = (rate < min).then(|| {
        format!(
            "good-patch ratio {} is below {min} ({} bad of {} succeeded)",
            show_rate(rate),
            tally.good_patch.bad,
            tally.succeeded
        )
    });
    Criterion { measured, failure }
}

fn summary(acceptance: &Acceptance, tally: &StepTally) -> String {
    let mut parts: Vec<String> = criteria(acceptance, tally).into_iter().map(|c| c.measured).collect();
    parts.push(format!("{} no-shows of {} targeted", tally.no_shows, tally.targeted));
    if tally.running() > 0 {
        parts.push(format!("{} still running", tally.running()));
    }
    if tally.missed > 0 {
        parts.push(format!("{} missed a package while offline", tally.missed));
    }
    parts.join(", ")
}

/// `part / whole`, or 0 for an empty whole: no evidence is never a perfect score. (A whole of
/// zero only reaches here with a hand-built `min_sample` of 0; specs require at least 1.)
fn ratio(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        0.0
    } else {
        f64::from(part) / f64::from(whole)
    }
}

/// A measured rate rounded *down* to four decimals, so that a rate just below a threshold never
/// prints as equal to it (0.94995 shows as 0.9499, not 0.95).
fn show_rate(rate: f64) -> String {
    trim((rate * 10_000.0).floor() / 10_000.0)
}

/// A measured rate rounded *up*, for upper bounds, for the same reason.
fn show_rate_up(rate: f64) -> String {
    trim((rate * 10_000.0).ceil() / 10_000.0)
}

fn trim(rate: f64) -> String {
    let text = format!("{rate:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests;
