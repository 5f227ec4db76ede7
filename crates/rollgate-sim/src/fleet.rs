//! The simulated fleet: what the operator writes (`fleet.toml`) and the checked form the engine
//! runs.
//!
//! Like the campaign file, the fleet file is parsed in two stages: [`FleetSpec`] mirrors the TOML
//! field for field (serde checks only its shape), and [`FleetSpec::check`] checks every value
//! against the campaign it will run with, reporting all problems at once with the field named as
//! the file spells it (`failures.site.lyon`). A typo in a what-if file silently simulating
//! something else would be worse than an error, so unknown fields, sites, products and step
//! names are refused.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rollgate_core::campaign::schedule::YearMonth;
use rollgate_core::campaign::spec::{Severity, ValidCampaign};
use rollgate_core::selector;
use serde::Deserialize;

/// Most endpoints one simulation may hold (ten times the performance target).
pub const MAX_ENDPOINTS: u64 = 10_000_000;
/// Most endpoint groups.
pub const MAX_GROUPS: usize = 10_000;
/// Most products one month may deploy.
pub const MAX_PRODUCTS: usize = 256;
/// Shortest poll interval: a minute. Shorter would only make more events.
pub const MIN_POLL_INTERVAL_SECS: u64 = 60;
/// Longest poll interval or operator delay: a week.
pub const MAX_DELAY_SECS: u64 = 7 * 86_400;
/// Longest single install attempt: a day.
pub const MAX_INSTALL_SECS: u64 = 86_400;

/// A fleet file as written. Check it with [`FleetSpec::check`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    /// The campaign month to simulate, `YYYY-MM`.
    pub month: String,
    /// How often an agent polls; each poll it is online with its group's probability.
    pub poll_interval_secs: u64,
    /// Default chance that an endpoint is online at one poll, 0 to 1.
    pub online_probability: f64,
    /// How the simulated operator acts.
    #[serde(default)]
    pub operator: OperatorSpec,
    /// How long one install attempt takes.
    pub install: InstallSpec,
    /// Retries by the agent after a failed attempt (the Upgrade Set attempt policy).
    pub retry: RetrySpec,
    /// Failure and crash probabilities.
    #[serde(default)]
    pub failures: FailureSpec,
    /// What the month deploys: one package per product.
    pub products: Vec<ProductSpec>,
    /// The endpoints, in groups that share labels and behaviour.
    pub groups: Vec<GroupSpec>,
}

/// What the simulated operator does where the campaign needs a person.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorSpec {
    /// Seconds from a passed `manual` gate to the operator's approval; 0 approves at once.
    #[serde(default)]
    pub manual_approval_delay_secs: u64,
    /// What happens after a failed gate.
    #[serde(default)]
    pub on_gate_failure: OnGateFailure,
    /// Seconds from a failed gate to the approval anyway, with `approve-anyway`.
    #[serde(default)]
    pub approve_anyway_delay_secs: u64,
}

impl Default for OperatorSpec {
    fn default() -> OperatorSpec {
        OperatorSpec {
            manual_approval_delay_secs: 0,
            on_gate_failure: OnGateFailure::Pause,
            approve_anyway_delay_secs: 0,
        }
    }
}

/// The simulated operator's answer to a failed gate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnGateFailure {
    /// Leave the month paused: the report ends there, as the real month would wait.
    #[default]
    Pause,
    /// Approve the step anyway after `approve_anyway_delay_secs`, to see the rest of the month.
    ApproveAnyway,
}

/// Install time of one attempt.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "distribution", rename_all = "lowercase", deny_unknown_fields)]
pub enum InstallSpec {
    /// Log-normal with this median and shape, cut at `max_secs`: most installs are quick, a few
    /// take very long (slow disks, big downloads).
    Lognormal {
        /// The median attempt, in seconds.
        median_secs: u64,
        /// The standard deviation of the logarithm; 0.5 to 1 is typical.
        sigma: f64,
        /// No attempt takes longer (the agent's own timeout).
        max_secs: u64,
    },
    /// Uniform between the two bounds, inclusive.
    Uniform {
        /// Shortest attempt, in seconds.
        min_secs: u64,
        /// Longest attempt, in seconds.
        max_secs: u64,
    },
}

/// The agent's retry policy, as an Upgrade Set carries it.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Attempts in all, the first included, 1 to `policy::MAX_ATTEMPTS_LIMIT`.
    pub max_attempts: u32,
    /// Wait after the first failure, doubled after each further one.
    pub backoff_initial_secs: u64,
    /// Cap of the wait.
    pub backoff_max_secs: u64,
}

/// Probabilities that one install attempt fails, by cause, and that a patch crashes.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureSpec {
    /// Random agent failure of any attempt anywhere.
    #[serde(default)]
    pub base: f64,
    /// Failure of an attempt at a site (its relay), by the `site` label's value.
    #[serde(default)]
    pub site: BTreeMap<String, f64>,
    /// Failure of an attempt because of one product's package, by product name.
    #[serde(default)]
    pub product: BTreeMap<String, f64>,
    /// Failure of an attempt in one step (a misconfigured policy), by step name.
    #[serde(default)]
    pub step: BTreeMap<String, f64>,
    /// Chance that a successfully patched endpoint reports a crash during its soak (a bad patch).
    #[serde(default)]
    pub crash: f64,
}

/// One product the month deploys.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductSpec {
    /// The product's name, as the campaign's `products` filter spells it.
    pub name: String,
    /// The severity of its worst advisory this month.
    pub severity: String,
}

/// A group of endpoints that share labels and behaviour.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// How many endpoints.
    pub count: u64,
    /// Their labels (`site`, `business_unit`, `network`, `ring`, ...), matched by step targets.
    pub labels: BTreeMap<String, String>,
    /// Their chance to be online at one poll; the fleet's default when absent.
    #[serde(default)]
    pub online_probability: Option<f64>,
}

/// One thing wrong with a fleet file, naming its field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetProblem {
    /// The field's path, e.g. `groups[2].count`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FleetProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.message)
    }
}

/// The install time model, checked.
#[derive(Clone, Copy, Debug)]
pub(crate) enum InstallTime {
    /// `exp(ln(median) + sigma * N(0, 1))` seconds, at most `max_ms`.
    Lognormal { ln_median: f64, sigma: f64, max_ms: i64 },
    /// Uniform in `min_ms..=max_ms`.
    Uniform { min_ms: i64, max_ms: i64 },
}

/// A checked group.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub count: u32,
    pub labels: BTreeMap<String, String>,
    pub online_probability: f64,
}

/// A product the campaign deploys this month (after its product and severity filters).
#[derive(Clone, Debug)]
pub(crate) struct Product {
    pub name: String,
    pub severity: Severity,
}

/// The checked fleet.
#[derive(Clone, Debug)]
pub(crate) struct Fleet {
    pub month: YearMonth,
    pub poll_interval_ms: i64,
    pub operator: OperatorSpec,
    pub install: InstallTime,
    pub retry: RetrySpec,
    pub failures: FailureSpec,
    /// Deployed products only; never empty.
    pub products: Vec<Product>,
    /// Products of the file the campaign's filters left out, for the report.
    pub excluded_products: Vec<String>,
    pub groups: Vec<Group>,
    pub endpoints: u32,
}

#[derive(Default)]
struct Problems(Vec<FleetProblem>);

impl Problems {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FleetProblem { field: field.into(), message: message.into() });
    }

    fn probability(&mut self, field: impl Into<String>, p: f64) {
        if !(0.0..=1.0).contains(&p) {
            self.push(field, format!("must be a probability between 0 and 1 (got {p})"));
        }
    }

    fn secs(&mut self, field: &str, secs: u64, min: u64, max: u64) {
        if !(min..=max).contains(&secs) {
            self.push(field, format!("must be between {min} and {max} seconds (got {secs})"));
        }
    }
}

fn ms(secs: u64) -> i64 {
    // Every caller checked `secs` against a bound far below `i64::MAX / 1000`.
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

impl FleetSpec {
    /// Checks every value, including the names that must agree with `campaign` (step names in
    /// `failures.step`) and with the file itself (sites, products), and filters the products by
    /// the campaign's product and severity filters. Returns every problem at once.
    pub(crate) fn check(&self, campaign: &ValidCampaign) -> Result<Fleet, Vec<FleetProblem>> {
        let mut p = Problems::default();
        let month = match self.month.parse::<YearMonth>() {
            Ok(m) => Some(m),
            Err(e) => {
                p.push("month", format!("is invalid: {e}"));
                None
            }
        };
        p.secs("poll_interval_secs", self.poll_interval_secs, MIN_POLL_INTERVAL_SECS, MAX_DELAY_SECS);
        p.probability("online_probability", self.online_probability);
        p.secs("operator.manual_approval_delay_secs", self.operator.manual_approval_delay_secs, 0, MAX_DELAY_SECS);
        p.secs("operator.approve_anyway_delay_secs", self.operator.approve_anyway_delay_secs, 0, MAX_DELAY_SECS);
        let install = self.check_install(&mut p);
        let max_attempts = rollgate_core::policy::MAX_ATTEMPTS_LIMIT;
        if !(1..=max_attempts).contains(&self.retry.max_attempts) {
            p.push(
                "retry.max_attempts",
                format!("must be between 1 and {max_attempts} (got {})", self.retry.max_attempts),
            );
        }
        p.secs("retry.backoff_initial_secs", self.retry.backoff_initial_secs, 0, MAX_DELAY_SECS);
        p.secs("retry.backoff_max_secs", self.retry.backoff_max_secs, 0, MAX_DELAY_SECS);

        let (products, excluded_products) = self.check_products(&mut p, campaign);
        let groups = self.check_groups(&mut p);
        let endpoints: u64 = groups.iter().map(|g| u64::from(g.count)).sum();
        if endpoints == 0 && !self.groups.is_empty() {
            p.push("groups", "hold no endpoints");
        }
        self.check_failures(&mut p, campaign);

        match (month, install) {
            (Some(month), Some(install)) if p.0.is_empty() => Ok(Fleet {
                month,
                poll_interval_ms: ms(self.poll_interval_secs),
                operator: self.operator.clone(),
                install,
                retry: self.retry,
                failures: self.failures.clone(),
                products,
                excluded_products,
                groups,
                // `check_groups` bounded the sum by `MAX_ENDPOINTS`, which fits.
                endpoints: u32::try_from(endpoints).unwrap_or(u32::MAX),
            }),
            _ => Err(p.0),
        }
    }

    fn check_install(&self, p: &mut Problems) -> Option<InstallTime> {
        match self.install {
            InstallSpec::Lognormal { median_secs, sigma, max_secs } => {
                p.secs("install.median_secs", median_secs, 1, MAX_INSTALL_SECS);
                p.secs("install.max_secs", max_secs, 1, MAX_INSTALL_SECS);
                if !(0.0..=5.0).contains(&sigma) {
                    p.push("install.sigma", format!("must be between 0 and 5 (got {sigma})"));
                }
                (median_secs >= 1 && median_secs <= max_secs && max_secs <= MAX_INSTALL_SECS).then(|| {
                    // `median_secs` is at most a day, exactly representable.
                    #[allow(clippy::cast_precision_loss)]
                    let ln_median = (median_secs as f64).ln();
                    InstallTime::Lognormal { ln_median, sigma, max_ms: ms(max_secs) }
                })
            }
            InstallSpec::Uniform { min_secs, max_secs } => {
                p.secs("install.min_secs", min_secs, 1, MAX_INSTALL_SECS);
                p.secs("install.max_secs", max_secs, 1, MAX_INSTALL_SECS);
                if min_secs > max_secs {
                    p.push("install.min_secs", format!("must not exceed max_secs ({min_secs} > {max_secs})"));
                }
                (min_secs >= 1 && min_secs <= max_secs && max_secs <= MAX_INSTALL_SECS)
                    .then(|| InstallTime::Uniform { min_ms: ms(min_secs), max_ms: ms(max_secs) })
            }
        }
    }

    fn check_products(&self, p: &mut Problems, campaign: &ValidCampaign) -> (Vec<Product>, Vec<String>) {
        if self.products.is_empty() || self.products.len() > MAX_PRODUCTS {
            p.push("products", format!("must hold 1 to {MAX_PRODUCTS} products (got {})", self.products.len()));
        }
        let mut seen = BTreeSet::new();
        let (mut deployed, mut excluded) = (Vec::new(), Vec::new());
        for (i, product) in self.products.iter().enumerate() {
            if let Err(e) = rollgate_core::names::validate("product", &product.name) {
                p.push(format!("products[{i}].name"), format!("is invalid: {e}"));
            }
            if !seen.insert(product.name.as_str()) {
                p.push(format!("products[{i}].name"), format!("`{}` is listed twice", product.name));
            }
            match Severity::of_rating(&product.severity) {
                None => p.push(
                    format!("products[{i}].severity"),
                    format!("must be critical, high, medium or low (got `{}`)", product.severity),
                ),
                Some(severity) if campaign.includes_product(&product.name) && campaign.includes_severity(severity) => {
                    deployed.push(Product { name: product.name.clone(), severity });
                }
                Some(_) => excluded.push(product.name.clone()),
            }
        }
        if !self.products.is_empty() && deployed.is_empty() && p.0.is_empty() {
            p.push(
                "products",
                "holds no product the campaign's product and severity filters include, so nothing deploys",
            );
        }
        (deployed, excluded)
    }

    fn check_groups(&self, p: &mut Problems) -> Vec<Group> {
        if self.groups.is_empty() || self.groups.len() > MAX_GROUPS {
            p.push("groups", format!("must hold 1 to {MAX_GROUPS} groups (got {})", self.groups.len()));
            return Vec::new();
        }
        let mut total: u64 = 0;
        let mut groups = Vec::with_capacity(self.groups.len());
        for (i, group) in self.groups.iter().enumerate() {
            total = total.saturating_add(group.count);
            for (key, value) in &group.labels {
                if selector::parse_label(&format!("{key}={value}")).is_err() {
                    p.push(
                        format!("groups[{i}].labels.{key}"),
                        format!("`{key}={value}` is not a label: keys and values may hold letters, digits, `-`, `_`, `.` and `:`"),
                    );
                }
            }
            let online = group.online_probability.unwrap_or(self.online_probability);
            p.probability(format!("groups[{i}].online_probability"), online);
            groups.push(Group {
                count: u32::try_from(group.count).unwrap_or(u32::MAX),
                labels: group.labels.clone(),
                online_probability: online,
            });
        }
        if total > MAX_ENDPOINTS {
            p.push("groups", format!("hold {total} endpoints, more than the limit of {MAX_ENDPOINTS}"));
        }
        groups
    }

    fn check_failures(&self, p: &mut Problems, campaign: &ValidCampaign) {
        let f = &self.failures;
        p.probability("failures.base", f.base);
        p.probability("failures.crash", f.crash);
        let sites: BTreeSet<&str> =
            self.groups.iter().filter_map(|g| g.labels.get("site").map(String::as_str)).collect();
        for (site, prob) in &f.site {
            p.probability(format!("failures.site.{site}"), *prob);
            if !sites.contains(site.as_str()) {
                p.push(format!("failures.site.{site}"), "names no group's `site` label");
            }
        }
        for (product, prob) in &f.product {
            p.probability(format!("failures.product.{product}"), *prob);
            if !self.products.iter().any(|x| &x.name == product) {
                p.push(format!("failures.product.{product}"), "names no product of `products`");
            }
        }
        for (step, prob) in &f.step {
            p.probability(format!("failures.step.{step}"), *prob);
            if !campaign.steps().iter().any(|s| s.name() == step) {
                p.push(format!("failures.step.{step}"), "names no step of the campaign");
            }
        }
    }
}
