//! What a campaign step deploys, and how its endpoints are counted for the gate.
//!
//! [`plan`] turns the findings of a month's deployable advisories on a step's targeted endpoints
//! into deployments: for each endpoint and affected product, the *lowest* package in the package
//! store that is at least every fixed version the endpoint needs (the smallest change that fixes
//! everything approved), grouped by package so that each group becomes one Upgrade Set. A
//! product with no such package is reported as *needing a package*; the endpoint is then not
//! targeted for it.
//!
//! [`tally`] folds the per-endpoint, per-package progress the shell read from those sets into the
//! gate's [`StepTally`]: an endpoint has attempted when any of its installs started, succeeded
//! when all of them did, failed when any failed for good, and is a no-show when it attempted
//! nothing and was not seen since the step started.
//!
//! [`set_settled`] says when a package's set has done what it can (nothing in flight, only
//! offline endpoints left waiting), so that the step's next package may start: one endpoint
//! that stays offline must not hold back the rest of the step.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use super::gate::StepTally;
use crate::member::MemberState;
use crate::version;

/// One finding of a deployable advisory on a targeted endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Need {
    /// The endpoint.
    pub endpoint: String,
    /// The advisory.
    pub advisory: String,
    /// The product (or package) name as the endpoint's inventory spells it; a leading `src:`
    /// (a Debian source package) is ignored when looking for a package.
    pub software: String,
    /// The version that fixes it, if the advisory says.
    pub fixed_version: Option<String>,
}

/// One package to install on some endpoints: one Upgrade Set.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deployment {
    /// The package's product, as stored.
    pub product: String,
    /// The package's version.
    pub version: String,
    /// The endpoints that get it, sorted.
    pub endpoints: Vec<String>,
}

/// What a step deploys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepPlan {
    /// Deployments, by product and version.
    pub deployments: Vec<Deployment>,
    /// (advisory, software) pairs for which the package store has no fixing package.
    pub needs_package: BTreeSet<(String, String)>,
    /// (advisory, `product@version`) pairs: the packages chosen to fix each advisory.
    pub fixes: BTreeSet<(String, String)>,
}

impl StepPlan {
    /// The endpoints that get at least one package: the step's targeted endpoints.
    pub fn targeted(&self) -> BTreeSet<&str> {
        self.deployments.iter().flat_map(|d| d.endpoints.iter().map(String::as_str)).collect()
    }
}

/// The store's package name for an inventory name: lower-case, without `src:`.
fn product_key(software: &str) -> String {
    software.strip_prefix("src:").unwrap_or(software).to_lowercase()
}

/// Plans a step. `packages` maps each stored product (any case) to its stored versions.
pub fn plan(needs: &[Need], packages: &BTreeMap<String, Vec<String>>) -> StepPlan {
    let by_key: BTreeMap<String, (&String, &Vec<String>)> =
        packages.iter().map(|(product, versions)| (product.to_lowercase(), (product, versions))).collect();
    let mut wanted: BTreeMap<(&str, String), Wanted<'_>> = BTreeMap::new();
    for need in needs {
        let entry = wanted.entry((need.endpoint.as_str(), product_key(&need.software))).or_default();
        entry.advisories.push((need.advisory.as_str(), need.software.as_str()));
        entry.floor = highest(entry.floor, need.fixed_version.as_deref());
    }
    let mut out = StepPlan::default();
    let mut groups: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for ((endpoint, key), Wanted { advisories, floor }) in wanted {
        match by_key.get(&key).and_then(|(product, versions)| lowest_at_least(versions, floor).map(|v| (*product, v))) {
            Some((product, version)) => {
                for (advisory, _) in &advisories {
                    out.fixes.insert(((*advisory).to_owned(), format!("{product}@{version}")));
                }
                groups.entry((product.clone(), version.to_owned())).or_default().push(endpoint.to_owned());
            }
            None => {
                for (advisory, software) in advisories {
                    out.needs_package.insert((advisory.to_owned(), software.to_owned()));
                }
            }
        }
    }
    out.deployments = groups
        .into_iter()
        .map(|((product, version), mut endpoints)| {
            endpoints.sort();
            endpoints.dedup();
            Deployment { product, version, endpoints }
        })
        .collect();
    out
}

/// What one endpoint needs of one product: the (advisory, software) pairs asking for it and the
/// highest fixed version among them.
#[derive(Default)]
struct Wanted<'a> {
    advisories: Vec<(&'a str, &'a str)>,
    floor: Option<&'a str>,
}

/// Global autofix: the deployments of a fresh `plan` of the last step restricted to endpoints
/// that no set of the step covers yet for that package (`covered` holds `(product, version,
/// endpoint)`): endpoints that enrolled, or came to need the patch, after the step planned.
pub fn late(plan: &StepPlan, covered: &BTreeSet<(String, String, String)>) -> Vec<Deployment> {
    plan.deployments
        .iter()
        .filter_map(|d| {
            let endpoints: Vec<String> = d
                .endpoints
                .iter()
                .filter(|e| !covered.contains(&(d.product.clone(), d.version.clone(), (*e).clone())))
                .cloned()
                .collect();
            (!endpoints.is_empty()).then(|| Deployment {
                product: d.product.clone(),
                version: d.version.clone(),
                endpoints,
            })
        })
        .collect()
}

fn highest<'a>(a: Option<&'a str>, b: Option<&'a str>) -> Option<&'a str> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if version::compare(a, b) == Ordering::Less { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// The lowest of `versions` at least `floor`; with no floor (the advisory names no fixed
/// version) the highest, the best a package store can offer.
fn lowest_at_least<'a>(versions: &'a [String], floor: Option<&str>) -> Option<&'a str> {
    match floor {
        Some(floor) => versions
            .iter()
            .filter(|v| version::compare(v, floor) != Ordering::Less)
            .min_by(|a, b| version::compare(a, b))
            .map(String::as_str),
        None => versions.iter().max_by(|a, b| version::compare(a, b)).map(String::as_str),
    }
}

/// Where one endpoint's install of one package of the step stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallProgress {
    /// Not started (its set may not even exist yet).
    NotStarted,
    /// Never started, and never will in this run: its set ended (moved on while the endpoint
    /// was offline).
    Missed,
    /// Started and not finished.
    Running,
    /// Installed and healthy.
    Succeeded,
    /// Failed for good (failed, rolled back, timed out).
    Failed,
}

/// What the shell knows of one targeted endpoint in a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointProgress {
    /// One entry per package the plan gives it.
    pub installs: Vec<InstallProgress>,
    /// When it last talked to the server.
    pub last_seen: Option<Timestamp>,
    /// Its agent watched the patched product through the soak and saw it healthy.
    pub reported_good: bool,
    /// Its agent or an operator reported the patch bad.
    pub reported_bad: bool,
}

/// The gate's tally of a step that started at `step_started_at`.
pub fn tally(endpoints: &[EndpointProgress], step_started_at: Timestamp) -> StepTally {
    let mut t = StepTally { targeted: count(endpoints.len()), ..StepTally::default() };
    for e in endpoints {
        let attempted = e.installs.iter().any(|i| !matches!(i, InstallProgress::NotStarted | InstallProgress::Missed));
        if !attempted {
            if e.last_seen.is_none_or(|seen| seen < step_started_at) {
                t.no_shows += 1;
            }
            continue;
        }
        t.attempted += 1;
        if e.installs.contains(&InstallProgress::Failed) {
            t.failed += 1;
        } else if e.installs.contains(&InstallProgress::Missed) {
            t.missed += 1;
        } else if e.installs.iter().all(|i| *i == InstallProgress::Succeeded) {
            t.succeeded += 1;
            if e.reported_bad {
                t.good_patch.bad += 1;
            } else if e.reported_good {
                t.good_patch.good += 1;
            }
        }
    }
    t
}

/// Whether a set of a step has done what it can, so the step's next package may start: nothing
/// in flight, and every endpoint still waiting has not been seen for `offline_after_secs`
/// (an offline endpoint must not hold back everyone else's next patch). `members` holds each
/// member's state and its endpoint's last-seen time.
pub fn set_settled(members: &[(MemberState, Option<Timestamp>)], now: Timestamp, offline_after_secs: u64) -> bool {
    let offline_after_ms = i64::try_from(offline_after_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    members.iter().all(|(state, last_seen)| match state {
        MemberState::InProgress => false,
        MemberState::Pending => {
            last_seen.is_none_or(|seen| now.as_millisecond().saturating_sub(seen.as_millisecond()) >= offline_after_ms)
        }
        MemberState::Succeeded | MemberState::Failed | MemberState::RolledBack | MemberState::TimedOut => true,
    })
}

/// Installs of the step running now, over all endpoints.
pub fn in_flight(endpoints: &[EndpointProgress]) -> u32 {
    count(endpoints.iter().flat_map(|e| &e.installs).filter(|i| **i == InstallProgress::Running).count())
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
