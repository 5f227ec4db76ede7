//! The shipped example files: they parse and validate, and the 100,000-endpoint run tells the
//! story the fleet file describes (the Lyon relay is the top failure cause).

#![allow(clippy::unwrap_used)]

mod common;

use rollgate_core::campaign::spec::CampaignSpec;
use rollgate_sim::{simulate, FleetSpec};

#[test]
fn example_campaign_validates_with_three_steps() {
    let spec: CampaignSpec = toml::from_str(common::CAMPAIGN).unwrap();
    let campaign = spec.validate().unwrap();
    let names: Vec<&str> = campaign.steps().iter().map(|s| s.name()).collect();
    assert_eq!(names, ["pilot", "extended-pilot", "production"]);
}

#[test]
fn example_fleet_parses_with_100_000_endpoints() {
    let fleet: FleetSpec = toml::from_str(common::FLEET).unwrap();
    assert_eq!(fleet.groups.iter().map(|g| g.count).sum::<u64>(), 100_000);
    let sites: std::collections::BTreeSet<&str> = fleet.groups.iter().map(|g| g.labels["site"].as_str()).collect();
    assert!(sites.len() >= 4, "{sites:?}");
}

#[test]
fn example_run_completes_and_blames_the_lyon_relay() {
    let started = std::time::Instant::now();
    let report = simulate(common::CAMPAIGN, common::FLEET, 42).unwrap();
    eprintln!("100,000 endpoints simulated in {:.2?}", started.elapsed());
    assert_eq!(report.totals.targeted, 100_000);
    assert_eq!(report.final_state, "completed", "{}", report.to_text());
    assert_eq!(report.failures_by_cause[0].cause, "site relay lyon", "{}", report.to_text());
    for step in &report.steps {
        assert!(step.peak_in_flight <= step.max_in_flight, "{}", step.name);
    }
    assert!(report.time_to_patch.iter().take(2).all(|m| m.reached.is_some()), "{}", report.to_text());
}
