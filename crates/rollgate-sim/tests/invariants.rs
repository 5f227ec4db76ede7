//! Seeded simulations over many random campaigns and fleets, each run to the end and checked
//! against the invariants of issue 7: max-in-flight never exceeded, no step starts before the
//! one below passed or was approved, and every targeted endpoint ends patched, failed with a
//! cause, or a no-show. A failing seed is a reproducible bug report.

#![allow(clippy::unwrap_used)]

mod common;

use rollgate_sim::report::Report;
use rollgate_sim::{simulate, SimError};

const SEEDS: u64 = 50;

fn run(seed: u64, relay: f64) -> (Report, String) {
    let mut r = common::rng(seed);
    let campaign = common::small_campaign(&mut r);
    let fleet = common::small_fleet(&mut r, relay);
    let report = simulate(&campaign, &fleet, seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    let text = report.to_text();
    (report, text)
}

#[test]
fn max_in_flight_is_never_exceeded() {
    for seed in 0..SEEDS {
        let (report, text) = run(seed, 0.5);
        for step in &report.steps {
            assert!(step.peak_in_flight <= step.max_in_flight, "seed {seed}, step {}:\n{text}", step.name);
            assert!(step.peak_in_flight >= 1 || step.attempted == 0, "seed {seed}, step {}", step.name);
        }
    }
}

#[test]
fn no_step_starts_before_the_one_below_passed_or_was_approved() {
    for seed in 0..SEEDS {
        let (report, text) = run(seed, 0.5);
        let times: Vec<i64> = report.timeline.iter().map(|e| e.at.after_secs).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "seed {seed}: timeline out of order\n{text}");
        for (i, step) in report.steps.iter().enumerate().skip(1) {
            let start = report
                .timeline
                .iter()
                .position(|e| e.event == "step-started" && e.step.as_deref() == Some(&step.name))
                .unwrap_or_else(|| panic!("seed {seed}: step {} never started\n{text}", step.name));
            let below = &report.steps[i - 1].name;
            let handed_over = report.timeline[..start]
                .iter()
                .rev()
                .find(|e| e.step.as_deref() == Some(below.as_str()))
                .unwrap_or_else(|| panic!("seed {seed}: nothing about {below} before {} started", step.name));
            assert!(
                matches!(handed_over.event.as_str(), "gate-passed" | "approved" | "approved-anyway"),
                "seed {seed}: step {} started after `{}` of {below}\n{text}",
                step.name,
                handed_over.event
            );
            // Passed, or approved anyway: a gate verdict came first either way.
            assert!(report.steps[i - 1].gate.is_some(), "seed {seed}: {below} was never judged");
        }
    }
}

#[test]
fn every_targeted_endpoint_ends_patched_failed_with_a_cause_or_a_no_show() {
    for seed in 0..SEEDS {
        let (report, text) = run(seed, 0.5);
        assert_eq!(report.final_state, "completed", "seed {seed}\n{text}");
        let t = &report.totals;
        assert_eq!(t.targeted, 2_000, "seed {seed}");
        assert_eq!((t.held, t.not_started), (0, 0), "seed {seed}\n{text}");
        assert_eq!(t.patched + t.failed + t.no_shows, t.targeted, "seed {seed}\n{text}");
        for s in &report.steps {
            assert_eq!(s.attempted, s.succeeded + s.failed, "seed {seed}, step {}", s.name);
            assert_eq!(s.targeted, s.attempted + s.no_shows, "seed {seed}, step {}", s.name);
        }
        let by_cause = |crash: bool| -> u64 {
            report
                .failures_by_cause
                .iter()
                .filter(|c| (c.cause == "crash after install") == crash)
                .map(|c| c.endpoints)
                .sum()
        };
        assert_eq!(by_cause(false), t.failed, "seed {seed}: failures without a cause\n{text}");
        assert_eq!(by_cause(true), t.bad_patches, "seed {seed}");
    }
}

#[test]
fn a_failing_relay_is_the_top_failure_cause() {
    for seed in 0..SEEDS {
        let (report, text) = run(seed, 0.9);
        let top = report.failures_by_cause.first().map(|c| c.cause.as_str());
        assert_eq!(top, Some("site relay lyon"), "seed {seed}\n{text}");
    }
}

#[test]
fn a_failed_gate_pauses_the_month_when_nobody_approves_it() {
    let mut r = common::rng(3);
    let campaign = common::small_campaign(&mut r);
    // Every attempt fails: the pilot's gate must fail and the month must stay paused there.
    let fleet = common::small_fleet(&mut r, 0.5)
        .replace("on_gate_failure = \"approve-anyway\"", "on_gate_failure = \"pause\"")
        .replacen("base = ", "base = 1.0 # ", 1);
    let report = simulate(&campaign, &fleet, 3).unwrap();
    let text = report.to_text();
    assert_eq!(report.final_state, "paused", "{text}");
    assert!(report.steps[0].gate.as_deref().unwrap().starts_with("failed"), "{text}");
    assert!(report.timeline.iter().all(|e| e.event != "step-started" || e.step.as_deref() == Some("pilot")), "{text}");
    assert_eq!(report.steps[0].succeeded, 0);
    assert_eq!(report.steps[2].not_started, report.steps[2].targeted);
    assert!(report.time_to_patch.iter().all(|m| m.reached.is_none()));
}

#[test]
fn manual_steps_are_approved_after_the_configured_delay() {
    let mut r = common::rng(5);
    let campaign = common::small_campaign(&mut r);
    let fleet = common::small_fleet(&mut r, 0.0);
    let delay: i64 =
        fleet.lines().find_map(|l| l.strip_prefix("manual_approval_delay_secs = ")).unwrap().parse().unwrap();
    let report = simulate(&campaign, &fleet, 5).unwrap();
    let at = |event: &str| {
        report
            .timeline
            .iter()
            .find(|e| e.event == event && e.step.as_deref() == Some("extended"))
            .map(|e| e.at.after_secs)
    };
    let (waiting, approved) = (at("awaiting-approval").unwrap(), at("approved").unwrap());
    assert_eq!(approved - waiting, delay, "{}", report.to_text());
}

#[test]
fn fleet_problems_are_all_reported_with_their_fields() {
    let mut r = common::rng(1);
    let campaign = common::small_campaign(&mut r);
    let fleet = common::small_fleet(&mut r, 0.5)
        .replace("step = { extended", "step = { extnded")
        .replace("site = { lyon", "site = { lyom")
        .replacen("crash = ", "crash = 2.0 # ", 1);
    let err = simulate(&campaign, &fleet, 1).unwrap_err();
    let SimError::Fleet { problems } = &err else { panic!("{err}") };
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["failures.crash", "failures.site.lyom", "failures.step.extnded"], "{err}");
}

#[test]
fn bad_files_are_refused_with_the_file_named() {
    let err = simulate("name = ", common::FLEET, 1).unwrap_err();
    assert!(err.to_string().starts_with("cannot read the campaign file"), "{err}");
    let err = simulate(common::CAMPAIGN, "month = \"2026-03\"\nunknown = 1", 1).unwrap_err();
    assert!(err.to_string().starts_with("cannot read the fleet file"), "{err}");
}
