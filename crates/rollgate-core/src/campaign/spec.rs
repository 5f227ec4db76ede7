//! The campaign definition: what an operator writes (config as code) and what the core runs.
//!
//! [`CampaignSpec`] mirrors the TOML file field for field and derives `Deserialize`, the stated
//! exception to "core types are not serialized" (see the module above). It holds raw text and
//! wide integers on purpose: the deserializer only checks the file's shape, and
//! [`CampaignSpec::validate`] then checks every value and reports *all* problems at once, each
//! naming its field the way the file spells it (`steps[1].acceptance.min_success_rate`), so an
//! operator fixes a file in one round instead of one error at a time.
//!
//! [`ValidCampaign`] is the machine-facing form: time zone resolved, times and durations parsed,
//! selectors and windows parsed, limits checked. It cannot be built except through `validate`.

use std::collections::BTreeSet;
use std::fmt;

use jiff::civil::Time;
use jiff::tz::TimeZone;
use serde::Deserialize;

use crate::names;
use crate::selector::Selector;
use crate::window::Window;

/// Most steps a campaign may have; real ones have three to five rings.
pub const MAX_STEPS: usize = 16;
/// Most products a campaign may name (the same bound as an endpoint's inventory).
pub const MAX_PRODUCTS: usize = 1024;
/// Largest first-month lookback: a year of advisories is already a big first month.
pub const MAX_LOOKBACK_DAYS: u32 = 366;
/// Largest distance of a month's start from its Patch Tuesday, either way. Keeping it under four
/// weeks keeps a month's instance near its own Patch Tuesday (a bigger number is almost surely
/// a unit mistake) while still letting offsets cross month and year ends.
pub const MAX_OFFSET_DAYS: i64 = 27;
/// Longest soak of one step: a month holds all steps, so more than thirty days cannot fit.
pub const MAX_SOAK_SECS: u64 = 30 * 86_400;
/// Largest `max_in_flight`, the same bound as an Upgrade Set's.
pub const MAX_IN_FLIGHT: u32 = 100_000;
/// Largest `min_sample`.
pub const MAX_MIN_SAMPLE: u32 = 1_000_000;
/// Most email addresses, and separately most webhooks, one step may notify.
pub const MAX_RECIPIENTS: usize = 32;
/// Most install attempts a step allows per endpoint and package.
pub const MAX_ATTEMPTS: u32 = 10;
/// Longest retry backoff a step allows (a day).
pub const MAX_RETRY_BACKOFF_SECS: u64 = 86_400;
/// Longest email address (RFC 5321's path limit).
const MAX_EMAIL_LEN: usize = 254;
/// Longest webhook URL.
const MAX_URL_LEN: usize = 2048;

/// A campaign as written in its TOML file. Validate it with [`CampaignSpec::validate`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignSpec {
    /// The campaign's name, unique on a server; also used on the command line.
    pub name: String,
    /// IANA time zone in which the start time is read, e.g. `Europe/Berlin`.
    pub time_zone: String,
    /// Days after (or, when negative, before) Patch Tuesday on which each month starts.
    pub patch_tuesday_offset_days: i64,
    /// Local time of day at which each month starts, `HH:MM`.
    pub start_time: String,
    /// Products whose advisories are included; empty means all.
    #[serde(default)]
    pub products: Vec<String>,
    /// Severities included (`critical`, `high`, `medium`, `low`); empty means all.
    #[serde(default)]
    pub severities: Vec<String>,
    /// How far before its start the first month collects advisories. Required: a silent
    /// default of zero would make the first month deploy nothing.
    pub first_month_lookback_days: i64,
    /// The rings, in the order they run.
    pub steps: Vec<StepSpec>,
}

/// One step (ring) as written in the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// The step's name, unique within the campaign (`rollgate campaigns step approve C STEP`).
    pub name: String,
    /// Target selector text, as for Upgrade Sets: `all`, ids, or `key=value` label matches.
    pub targets: String,
    /// Most endpoints of this step installing at once.
    pub max_in_flight: i64,
    /// How long the step runs before its gate is judged.
    pub soak: SoakSpec,
    /// The gate.
    pub acceptance: AcceptanceSpec,
    /// `auto` or `manual`.
    pub progression: String,
    /// Who hears when the step completes, fails its gate or waits for approval.
    #[serde(default)]
    pub notify: NotifySpec,
    /// Maintenance window text (`Mon-Fri 01:00-05:00 Europe/Berlin`); without a time zone it is
    /// read in the campaign's time zone. No window means any time.
    #[serde(default)]
    pub window: Option<String>,
    /// Keep every targeted endpoint patched, including ones that enroll later. Last step only.
    #[serde(default)]
    pub global_autofix: bool,
    /// Install attempts per endpoint and package (1 to 10; 3 when absent): a failed attempt is
    /// retried after `retry_backoff`, doubled each time.
    #[serde(default)]
    pub max_attempts: Option<i64>,
    /// Wait before the first retry (`30s` when absent).
    #[serde(default)]
    pub retry_backoff: Option<SoakSpec>,
}

/// A soak time: whole seconds, or text such as `2h`, `30m`, `45s`, `1d12h`.
#[derive(Clone, Debug)]
pub enum SoakSpec {
    /// Seconds as a TOML integer.
    Secs(i64),
    /// Text parsed by [`parse_duration_secs`].
    Text(String),
}

/// Written by hand rather than `#[serde(untagged)]`, whose error ("data did not match any
/// variant") would not tell the operator what to write.
impl<'de> Deserialize<'de> for SoakSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<SoakSpec, D::Error> {
        deserializer.deserialize_any(SoakVisitor)
    }
}

struct SoakVisitor;

impl serde::de::Visitor<'_> for SoakVisitor {
    type Value = SoakSpec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("whole seconds or a duration such as \"2h\", \"30m\" or \"45s\"")
    }

    fn visit_i64<E: serde::de::Error>(self, secs: i64) -> Result<SoakSpec, E> {
        Ok(SoakSpec::Secs(secs))
    }

    fn visit_u64<E: serde::de::Error>(self, secs: u64) -> Result<SoakSpec, E> {
        i64::try_from(secs)
            .map(SoakSpec::Secs)
            .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(secs), &self))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<SoakSpec, E> {
        Ok(SoakSpec::Text(text.to_owned()))
    }
}

/// A step's acceptance criteria as written in the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptanceSpec {
    /// Fewest endpoints that must have attempted before the gate is judged.
    pub min_sample: i64,
    /// Lowest share of attempting endpoints whose install succeeded, 0 to 1.
    pub min_success_rate: f64,
    /// Lowest share of successfully patched endpoints with no bad-patch report, 0 to 1.
    #[serde(default)]
    pub min_good_patch_ratio: Option<f64>,
    /// Highest share of attempting endpoints whose install failed, 0 to 1.
    #[serde(default)]
    pub max_error_rate: Option<f64>,
}

/// Notification targets as written in the file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    /// Email addresses.
    #[serde(default)]
    pub emails: Vec<String>,
    /// Webhook URLs that receive a JSON POST.
    #[serde(default)]
    pub webhooks: Vec<String>,
}

/// Advisory severity, most severe first (the derived order sorts that way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// CVSS 9.0 and up, or a publisher's "critical".
    Critical,
    /// CVSS 7.0 to 8.9, or "high" / "important".
    High,
    /// CVSS 4.0 to 6.9, or "medium" / "moderate".
    Medium,
    /// Below 4.0, or "low".
    Low,
}

impl Severity {
    /// All severities, most severe first.
    pub const ALL: [Severity; 4] = [Severity::Critical, Severity::High, Severity::Medium, Severity::Low];

    /// Parses the word a campaign file uses (case-insensitive).
    pub fn parse(word: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| s.as_str().eq_ignore_ascii_case(word.trim()))
    }

    /// Maps a publisher's rating word to a severity, including the Microsoft and Red Hat words
    /// (`important`, `moderate`), so that filters written with the four campaign words match
    /// every feed.
    pub fn of_rating(word: &str) -> Option<Severity> {
        let word = word.trim();
        if word.eq_ignore_ascii_case("important") {
            return Some(Severity::High);
        }
        if word.eq_ignore_ascii_case("moderate") {
            return Some(Severity::Medium);
        }
        Severity::parse(word)
    }

    /// The word used in files, storage and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a step whose gate passed hands over to the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progression {
    /// The next step starts at once.
    Auto,
    /// The step waits for `rollgate campaigns step approve`.
    Manual,
}

impl Progression {
    /// The word used in files, storage and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            Progression::Auto => "auto",
            Progression::Manual => "manual",
        }
    }
}

impl fmt::Display for Progression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A step's gate. Rates are shares from 0 to 1; values coming from a [`CampaignSpec`] were
/// checked to lie in that range and `min_sample` to be at least 1.
#[derive(Clone, Debug, PartialEq)]
pub struct Acceptance {
    /// Fewest endpoints that must have attempted before the gate is judged.
    pub min_sample: u32,
    /// Lowest success rate (succeeded / attempted).
    pub min_success_rate: f64,
    /// Lowest good-patch ratio (succeeded without a bad report / succeeded), if any.
    pub min_good_patch_ratio: Option<f64>,
    /// Highest error rate (failed / attempted), if any.
    pub max_error_rate: Option<f64>,
}

/// Who hears about a step. Addresses and URLs were checked for shape, not reachability.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notify {
    /// Email addresses, sorted and without duplicates.
    pub emails: Vec<String>,
    /// Webhook URLs (`https://`, or `http://` to a loopback host), sorted and without duplicates.
    pub webhooks: Vec<String>,
}

/// A validated step.
#[derive(Clone, Debug)]
pub struct ValidStep {
    name: String,
    targets: Selector,
    max_in_flight: u32,
    soak_secs: u64,
    acceptance: Acceptance,
    progression: Progression,
    notify: Notify,
    window: Option<Window>,
    global_autofix: bool,
    max_attempts: u32,
    retry_backoff_secs: u64,
}

impl ValidStep {
    /// The step's name, unique within its campaign.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Which endpoints the step targets.
    pub fn targets(&self) -> &Selector {
        &self.targets
    }
    /// Most endpoints of this step installing at once, 1 to [`MAX_IN_FLIGHT`].
    pub fn max_in_flight(&self) -> u32 {
        self.max_in_flight
    }
    /// How long the step runs (while its month is active) before its gate is judged.
    pub fn soak_secs(&self) -> u64 {
        self.soak_secs
    }
    /// The gate.
    pub fn acceptance(&self) -> &Acceptance {
        &self.acceptance
    }
    /// What happens once the gate passed.
    pub fn progression(&self) -> Progression {
        self.progression
    }
    /// Who hears about the step.
    pub fn notify(&self) -> &Notify {
        &self.notify
    }
    /// When the step may start installs; `None` means any time.
    pub fn window(&self) -> Option<&Window> {
        self.window.as_ref()
    }
    /// True when the step keeps every targeted endpoint patched, late enrollments included.
    pub fn global_autofix(&self) -> bool {
        self.global_autofix
    }
    /// Install attempts per endpoint and package, 1 to [`MAX_ATTEMPTS`].
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
    /// Wait before the first retry of a failed attempt, seconds.
    pub fn retry_backoff_secs(&self) -> u64 {
        self.retry_backoff_secs
    }
}

/// A validated campaign, built only by [`CampaignSpec::validate`].
#[derive(Clone, Debug)]
pub struct ValidCampaign {
    name: String,
    time_zone: TimeZone,
    time_zone_name: String,
    patch_tuesday_offset_days: i64,
    start_time: Time,
    products: Vec<String>,
    severities: Vec<Severity>,
    first_month_lookback_days: u32,
    steps: Vec<ValidStep>,
}

impl ValidCampaign {
    /// The campaign's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The time zone in which months start.
    pub fn time_zone(&self) -> &TimeZone {
        &self.time_zone
    }
    /// The time zone's canonical IANA name, e.g. `Europe/Berlin`.
    pub fn time_zone_name(&self) -> &str {
        &self.time_zone_name
    }
    /// Days from Patch Tuesday to a month's start, within ±[`MAX_OFFSET_DAYS`].
    pub fn patch_tuesday_offset_days(&self) -> i64 {
        self.patch_tuesday_offset_days
    }
    /// Local time of day at which months start.
    pub fn start_time(&self) -> Time {
        self.start_time
    }
    /// Included products, sorted; empty means all.
    pub fn products(&self) -> &[String] {
        &self.products
    }
    /// Included severities, most severe first; empty means all.
    pub fn severities(&self) -> &[Severity] {
        &self.severities
    }
    /// How far before its start the first month collects advisories.
    pub fn first_month_lookback_days(&self) -> u32 {
        self.first_month_lookback_days
    }
    /// The steps, in order; never empty.
    pub fn steps(&self) -> &[ValidStep] {
        &self.steps
    }
    /// True when advisories for `product` belong in this campaign.
    pub fn includes_product(&self, product: &str) -> bool {
        self.products.is_empty() || self.products.binary_search_by(|p| p.as_str().cmp(product)).is_ok()
    }
    /// True when advisories of `severity` belong in this campaign.
    pub fn includes_severity(&self, severity: Severity) -> bool {
        self.severities.is_empty() || self.severities.contains(&severity)
    }
}

/// One thing wrong with a campaign file, naming its field as the file spells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The field's path, e.g. `steps[1].acceptance.min_success_rate`.
    pub field: String,
    /// What is wrong, phrased to follow the field name.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.message)
    }
}

/// Every problem found in a campaign file; never empty.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid campaign: {}", join_problems(.problems))]
pub struct SpecError {
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

fn join_problems(problems: &[Problem]) -> String {
    problems.iter().map(Problem::to_string).collect::<Vec<_>>().join("; ")
}

/// Collects problems while validation goes on, so that all of them are reported together.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { field: field.into(), message: message.into() });
    }

    /// Keeps the value of a check that passed, records the message of one that did not.
    fn take<T>(&mut self, field: impl Into<String>, checked: Result<T, String>) -> Option<T> {
        match checked {
            Ok(value) => Some(value),
            Err(message) => {
                self.push(field, message);
                None
            }
        }
    }
}

impl CampaignSpec {
    /// Checks every field and builds the machine-facing campaign, or returns every problem.
    pub fn validate(&self) -> Result<ValidCampaign, SpecError> {
        let mut p = Problems::default();
        let name = p.take("name", check_name("campaign", &self.name));
        let zone = p.take("time_zone", check_time_zone(&self.time_zone));
        let offset = p.take("patch_tuesday_offset_days", check_offset_days(self.patch_tuesday_offset_days));
        let start_time = p.take("start_time", parse_hh_mm(&self.start_time));
        let products = check_products(&mut p, &self.products);
        let severities = check_severities(&mut p, &self.severities);
        let lookback = p.take("first_month_lookback_days", check_lookback_days(self.first_month_lookback_days));
        // Windows without a zone are read in the campaign's; if the zone is bad, UTC keeps the
        // window's own problems visible (the zone's problem is already recorded).
        let zone_name = zone.as_ref().map_or("UTC", |(_, name)| name.as_str());
        let steps = check_steps(&mut p, &self.steps, zone_name);
        match (name, zone, offset, start_time, lookback) {
            (Some(name), Some((time_zone, time_zone_name)), Some(offset), Some(start_time), Some(lookback))
                if p.0.is_empty() =>
            {
                Ok(ValidCampaign {
                    name,
                    time_zone,
                    time_zone_name,
                    patch_tuesday_offset_days: offset,
                    start_time,
                    products,
                    severities,
                    first_month_lookback_days: lookback,
                    steps,
                })
            }
            _ => Err(SpecError { problems: p.0 }),
        }
    }
}

fn check_name(kind: &str, name: &str) -> Result<String, String> {
    names::validate(kind, name).map(|()| name.to_owned()).map_err(|e| format!("is invalid: {e}"))
}

fn check_time_zone(name: &str) -> Result<(TimeZone, String), String> {
    let zone = TimeZone::get(name.trim())
        .map_err(|_| format!("`{name}` is not an IANA time zone name such as `Europe/Berlin` or `UTC`"))?;
    // The database's spelling, so `europe/berlin` and `Europe/Berlin` are one campaign zone.
    let canonical = zone.iana_name().unwrap_or(name.trim()).to_owned();
    Ok((zone, canonical))
}

fn check_offset_days(days: i64) -> Result<i64, String> {
    if (-MAX_OFFSET_DAYS..=MAX_OFFSET_DAYS).contains(&days) {
        Ok(days)
    } else {
        Err(format!("must be between -{MAX_OFFSET_DAYS} and {MAX_OFFSET_DAYS} (got {days})"))
    }
}

fn check_lookback_days(days: i64) -> Result<u32, String> {
    match u32::try_from(days) {
        Ok(days) if days <= MAX_LOOKBACK_DAYS => Ok(days),
        _ => Err(format!("must be between 0 and {MAX_LOOKBACK_DAYS} (got {days})")),
    }
}

/// Parses a strict 24-hour `HH:MM`, the one form the file allows, so `9:5` is not guessed at.
fn parse_hh_mm(text: &str) -> Result<Time, String> {
    let bad = || format!("must be HH:MM from 00:00 to 23:59 (got `{text}`)");
    let (hh, mm) = text.split_once(':').ok_or_else(bad)?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(hh) || !two_digits(mm) {
        return Err(bad());
    }
    let hour: i8 = hh.parse().map_err(|_| bad())?;
    let minute: i8 = mm.parse().map_err(|_| bad())?;
    Time::new(hour, minute, 0, 0).map_err(|_| bad())
}

fn check_products(p: &mut Problems, products: &[String]) -> Vec<String> {
    if products.len() > MAX_PRODUCTS {
        p.push("products", format!("holds {} products, more than the limit of {MAX_PRODUCTS}", products.len()));
        return Vec::new();
    }
    let mut valid = BTreeSet::new();
    for (i, product) in products.iter().enumerate() {
        if let Some(product) = p.take(format!("products[{i}]"), check_name("product", product)) {
            valid.insert(product);
        }
    }
    valid.into_iter().collect()
}

fn check_severities(p: &mut Problems, words: &[String]) -> Vec<Severity> {
    let mut valid = BTreeSet::new();
    for (i, word) in words.iter().enumerate() {
        match Severity::parse(word) {
            Some(severity) => {
                valid.insert(severity);
            }
            None => p.push(format!("severities[{i}]"), format!("must be critical, high, medium or low (got `{word}`)")),
        }
    }
    valid.into_iter().collect()
}

fn check_steps(p: &mut Problems, steps: &[StepSpec], zone_name: &str) -> Vec<ValidStep> {
    if steps.is_empty() {
        p.push("steps", "must hold at least one step");
        return Vec::new();
    }
    if steps.len() > MAX_STEPS {
        p.push("steps", format!("holds {} steps, more than the limit of {MAX_STEPS}", steps.len()));
        return Vec::new();
    }
    let mut valid = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        if let Some(first) = steps[..i].iter().position(|s| s.name == step.name) {
            p.push(format!("steps[{i}].name"), format!("`{}` is already used by steps[{first}]", step.name));
        }
        if step.global_autofix && i + 1 != steps.len() {
            p.push(format!("steps[{i}].global_autofix"), "is only allowed on the last step");
        }
        if let Some(step) = check_step(p, &format!("steps[{i}]"), step, zone_name) {
            valid.push(step);
        }
    }
    valid
}

fn check_step(p: &mut Problems, at: &str, step: &StepSpec, zone_name: &str) -> Option<ValidStep> {
    let name = p.take(format!("{at}.name"), check_name("step", &step.name));
    let targets = p.take(
        format!("{at}.targets"),
        Selector::parse(&step.targets).map_err(|e| format!("is not a valid selector: {e}")),
    );
    let max_in_flight = p.take(format!("{at}.max_in_flight"), check_in_range(step.max_in_flight, 1, MAX_IN_FLIGHT));
    let soak_secs = p.take(format!("{at}.soak"), check_soak(&step.soak));
    let acceptance = check_acceptance(p, &format!("{at}.acceptance"), &step.acceptance);
    let progression = p.take(format!("{at}.progression"), parse_progression(&step.progression));
    let notify = check_notify(p, &format!("{at}.notify"), &step.notify);
    let window = match &step.window {
        None => Some(None),
        Some(text) => p.take(format!("{at}.window"), parse_window(text, zone_name).map(Some)),
    };
    let max_attempts =
        p.take(format!("{at}.max_attempts"), check_in_range(step.max_attempts.unwrap_or(3), 1, MAX_ATTEMPTS));
    let retry_backoff_secs = match &step.retry_backoff {
        None => Some(30),
        Some(spec) => p.take(format!("{at}.retry_backoff"), check_backoff(spec)),
    };
    Some(ValidStep {
        name: name?,
        targets: targets?,
        max_in_flight: max_in_flight?,
        soak_secs: soak_secs?,
        acceptance: acceptance?,
        progression: progression?,
        notify,
        window: window?,
        global_autofix: step.global_autofix,
        max_attempts: max_attempts?,
        retry_backoff_secs: retry_backoff_secs?,
    })
}

fn check_backoff(spec: &SoakSpec) -> Result<u64, String> {
    let secs = match spec {
        SoakSpec::Secs(secs) => u64::try_from(*secs).map_err(|_| format!("must not be negative (got {secs})"))?,
        SoakSpec::Text(text) => parse_duration_secs(text)?,
    };
    if !(1..=MAX_RETRY_BACKOFF_SECS).contains(&secs) {
        return Err(format!("must be between 1 s and a day ({MAX_RETRY_BACKOFF_SECS} s), got {secs} s"));
    }
    Ok(secs)
}

fn check_in_range(value: i64, min: u32, max: u32) -> Result<u32, String> {
    match u32::try_from(value) {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(format!("must be between {min} and {max} (got {value})")),
    }
}

fn check_soak(soak: &SoakSpec) -> Result<u64, String> {
    let secs = match soak {
        SoakSpec::Secs(secs) => u64::try_from(*secs).map_err(|_| format!("must not be negative (got {secs})"))?,
        SoakSpec::Text(text) => parse_duration_secs(text)?,
    };
    if secs > MAX_SOAK_SECS {
        return Err(format!("must be at most 30 days ({MAX_SOAK_SECS} s), got {secs} s"));
    }
    Ok(secs)
}

/// Parses a duration written as `2h`, `30m`, `45s`, `1d` or a combination in that order
/// (`1h30m`, `2d12h`), into seconds. Each unit may appear once, largest first, so that a typo
/// like `30m1h` is refused rather than silently added up.
pub fn parse_duration_secs(text: &str) -> Result<u64, String> {
    let bad = || format!("`{text}` is not a duration: expected seconds or text like `2h`, `30m`, `45s` or `1h30m`");
    const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits_end = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (digits, tail) = rest.split_at(digits_end);
        // Nine digits are more than any allowed soak, and never overflow below.
        if digits.is_empty() || digits.len() > 9 {
            return Err(bad());
        }
        let unit = tail.chars().next().ok_or_else(bad)?;
        let offset = UNITS[next_unit..].iter().position(|(u, _)| *u == unit).ok_or_else(bad)?;
        let (_, unit_secs) = UNITS[next_unit + offset];
        next_unit += offset + 1;
        let count: u64 = digits.parse().map_err(|_| bad())?;
        total += count * unit_secs;
        rest = &tail[unit.len_utf8()..];
    }
    Ok(total)
}

fn check_rate(value: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("must be between 0 and 1 (got {value})"))
    }
}

fn check_acceptance(p: &mut Problems, at: &str, spec: &AcceptanceSpec) -> Option<Acceptance> {
    let min_sample = p.take(format!("{at}.min_sample"), check_in_range(spec.min_sample, 1, MAX_MIN_SAMPLE));
    let min_success_rate = p.take(format!("{at}.min_success_rate"), check_rate(spec.min_success_rate));
    let min_good_patch_ratio =
        p.take(format!("{at}.min_good_patch_ratio"), spec.min_good_patch_ratio.map(check_rate).transpose());
    let max_error_rate = p.take(format!("{at}.max_error_rate"), spec.max_error_rate.map(check_rate).transpose());
    Some(Acceptance {
        min_sample: min_sample?,
        min_success_rate: min_success_rate?,
        min_good_patch_ratio: min_good_patch_ratio?,
        max_error_rate: max_error_rate?,
    })
}

fn parse_progression(word: &str) -> Result<Progression, String> {
    match word.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(Progression::Auto),
        "manual" => Ok(Progression::Manual),
        _ => Err(format!("must be `auto` or `manual` (got `{word}`)")),
    }
}

fn parse_window(text: &str, zone_name: &str) -> Result<Window, String> {
    // `DAYS HH:MM-HH:MM` without a zone means the campaign's zone, not the window parser's UTC
    // default: operators write a campaign in one local time.
    let text = if text.split_whitespace().count() == 2 { format!("{text} {zone_name}") } else { text.to_owned() };
    Window::parse(&text).map_err(|e| format!("is not a valid maintenance window: {e}"))
}

fn check_notify(p: &mut Problems, at: &str, spec: &NotifySpec) -> Notify {
    let mut notify = Notify::default();
    if spec.emails.len() > MAX_RECIPIENTS {
        p.push(
            format!("{at}.emails"),
            format!("holds {} addresses, more than the limit of {MAX_RECIPIENTS}", spec.emails.len()),
        );
    } else {
        for (i, email) in spec.emails.iter().enumerate() {
            if let Some(email) = p.take(format!("{at}.emails[{i}]"), check_email(email)) {
                notify.emails.push(email);
            }
        }
    }
    if spec.webhooks.len() > MAX_RECIPIENTS {
        p.push(
            format!("{at}.webhooks"),
            format!("holds {} URLs, more than the limit of {MAX_RECIPIENTS}", spec.webhooks.len()),
        );
    } else {
        for (i, url) in spec.webhooks.iter().enumerate() {
            if let Some(url) = p.take(format!("{at}.webhooks[{i}]"), check_webhook(url)) {
                notify.webhooks.push(url);
            }
        }
    }
    for list in [&mut notify.emails, &mut notify.webhooks] {
        list.sort();
        list.dedup();
    }
    notify
}

/// Checks the shape of an address (one `@`, a plain domain); whether it receives mail is the
/// SMTP server's business.
fn check_email(address: &str) -> Result<String, String> {
    let bad = || format!("`{address}` is not an email address like `ops@example.com`");
    if address.len() > MAX_EMAIL_LEN {
        return Err(bad());
    }
    let (local, domain) = address.split_once('@').ok_or_else(bad)?;
    let local_ok = !local.is_empty() && local.chars().all(|c| c.is_ascii_graphic() && !"@<>()[],;:\"\\".contains(c));
    let domain_ok = !domain.is_empty()
        && domain
            .split('.')
            .all(|label| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if local_ok && domain_ok {
        Ok(address.to_owned())
    } else {
        Err(bad())
    }
}

/// Checks a webhook URL. HTTPS only, as everywhere in Rollgate; plain HTTP is allowed to a
/// loopback host, where nothing crosses a network (local relays, tests). Credentials in the URL
/// are refused because the campaign file is not a secret store.
fn check_webhook(url: &str) -> Result<String, String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("is longer than {MAX_URL_LEN} characters"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{url}` must not contain spaces or control characters"));
    }
    let not_https = || format!("`{url}` must be an https:// URL");
    let (scheme, rest) = url.split_once("://").ok_or_else(not_https)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!("`{url}` must not hold credentials; put a secret in the URL path or a header instead"));
    }
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(url.to_owned()),
        "http" if is_loopback_host(host) => Ok(url.to_owned()),
        "http" => Err(format!("`{url}` must use https:// (plain http:// is allowed only to a loopback host)")),
        _ => Err(not_https()),
    }
}

fn is_loopback_host(host: &str) -> bool {
    // Parsed, not prefix-matched: `127.example.com` is not loopback.
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests;
