//! Shared fixtures: the shipped example files and a generator of small seeded fleets.

#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The example campaign shipped in the repository.
pub const CAMPAIGN: &str = include_str!("../../../../examples/campaign.toml");
/// The example fleet shipped in the repository (100,000 endpoints).
pub const FLEET: &str = include_str!("../../../../examples/fleet.toml");

/// A three-step campaign for small fleets; `production` has a window and `extended` is manual.
pub fn small_campaign(rng: &mut ChaCha8Rng) -> String {
    let pilot_max = rng.random_range(1..=20);
    let ext_max = rng.random_range(5..=100);
    let prod_max = rng.random_range(10..=300);
    format!(
        r#"
name = "sim-test"
time_zone = "Europe/Berlin"
patch_tuesday_offset_days = {offset}
start_time = "18:00"
severities = ["critical", "high"]
first_month_lookback_days = 30

[[steps]]
name = "pilot"
targets = "ring=pilot"
max_in_flight = {pilot_max}
soak = "{pilot_soak}h"
progression = "auto"
[steps.acceptance]
min_sample = {pilot_sample}
min_success_rate = 0.9
max_error_rate = 0.1
min_good_patch_ratio = 0.95

[[steps]]
name = "extended"
targets = "ring=early"
max_in_flight = {ext_max}
soak = "1d"
progression = "manual"
[steps.acceptance]
min_sample = 100
min_success_rate = 0.9

[[steps]]
name = "production"
targets = "all"
max_in_flight = {prod_max}
soak = "12h"
progression = "auto"
window = "Mon-Fri 19:00-06:00"
global_autofix = true
[steps.acceptance]
min_sample = 500
min_success_rate = 0.85
"#,
        offset = rng.random_range(-3..=7),
        pilot_soak = rng.random_range(0..=24),
        pilot_sample = rng.random_range(10..=60),
    )
}

/// A fleet of `2_000` endpoints with seed-chosen behaviour; `lyon` sits behind a relay that fails
/// `relay` of all attempts. The operator approves failed gates anyway, so every step runs.
pub fn small_fleet(rng: &mut ChaCha8Rng, relay: f64) -> String {
    let online = |rng: &mut ChaCha8Rng| rng.random_range(0.05..=1.0);
    format!(
        r#"
month = "2026-{month:02}"
poll_interval_secs = {poll}
online_probability = {default_online}

[operator]
manual_approval_delay_secs = {manual}
on_gate_failure = "approve-anyway"
approve_anyway_delay_secs = {anyway}

[install]
{install}

[retry]
max_attempts = {attempts}
backoff_initial_secs = 300
backoff_max_secs = 1800

[failures]
base = {base}
crash = {crash}
site = {{ lyon = {relay} }}
product = {{ openssl = {product} }}
step = {{ extended = {step} }}

[[products]]
name = "openssl"
severity = "high"
[[products]]
name = "firefox"
severity = "critical"

[[groups]]
count = 100
online_probability = {o1}
labels = {{ site = "berlin", business_unit = "it", network = "office", ring = "pilot" }}
[[groups]]
count = 300
online_probability = {o2}
labels = {{ site = "munich", business_unit = "sales", network = "remote", ring = "early" }}
[[groups]]
count = 900
online_probability = {o3}
labels = {{ site = "berlin", business_unit = "engineering", network = "office", ring = "broad" }}
[[groups]]
count = 500
labels = {{ site = "lyon", business_unit = "operations", network = "office", ring = "broad" }}
[[groups]]
count = 200
online_probability = 0.001
labels = {{ site = "hamburg", business_unit = "it", network = "storage", ring = "spare" }}
"#,
        month = rng.random_range(1..=12),
        poll = rng.random_range(600..=7200),
        default_online = online(rng),
        manual = rng.random_range(0..=86_400),
        anyway = rng.random_range(0..=86_400),
        install = install(rng),
        attempts = rng.random_range(1..=4),
        base = rng.random_range(0.0..0.1),
        crash = rng.random_range(0.0..0.02),
        product = rng.random_range(0.0..0.05),
        step = rng.random_range(0.0..0.05),
        o1 = online(rng),
        o2 = online(rng),
        o3 = online(rng),
    )
}

fn install(rng: &mut ChaCha8Rng) -> &'static str {
    if rng.random() {
        "distribution = \"lognormal\"\nmedian_secs = 600\nsigma = 0.8\nmax_secs = 7200"
    } else {
        "distribution = \"uniform\"\nmin_secs = 60\nmax_secs = 3600"
    }
}

/// A generator seeded for one test case.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}
