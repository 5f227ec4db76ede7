//! Tests of the gate: one line per situation, each with its verdict.

use expect_test::expect;

use super::*;

/// Pilot-like criteria: 50 endpoints, 95 % success, at most 3 % errors, 98 % good patches.
fn strict() -> Acceptance {
    Acceptance { min_sample: 50, min_success_rate: 0.95, min_good_patch_ratio: Some(0.98), max_error_rate: Some(0.03) }
}

/// Only the required criteria.
fn plain() -> Acceptance {
    Acceptance { min_sample: 10, min_success_rate: 0.9, min_good_patch_ratio: None, max_error_rate: None }
}

/// Parses `targeted=.. attempted=.. ...`; missing counts are zero.
fn tally(text: &str) -> StepTally {
    let mut t = StepTally::default();
    for item in text.split_whitespace() {
        let (key, value) = item.split_once('=').unwrap();
        let value: u32 = value.parse().unwrap();
        match key {
            "targeted" => t.targeted = value,
            "attempted" => t.attempted = value,
            "succeeded" => t.succeeded = value,
            "failed" => t.failed = value,
            "no_shows" => t.no_shows = value,
            "good" => t.good_patch.good = value,
            "bad" => t.good_patch.bad = value,
            other => panic!("unknown count {other}"),
        }
    }
    t
}

/// A named situation: criteria, counts (see [`tally`]) and whether the soak is done.
type Case<'a> = (&'a str, fn() -> Acceptance, &'a str, bool);

fn run(cases: &[Case]) -> String {
    cases
        .iter()
        .map(|(name, acceptance, counts, soak_done)| {
            let soak = if *soak_done { "soaked" } else { "soaking" };
            format!("{name} [{soak}]: {}\n", evaluate(&acceptance(), &tally(counts), *soak_done))
        })
        .collect()
}

#[test]
fn passing() {
    let out = run(&[
        ("all good", strict, "targeted=60 attempted=60 succeeded=60 good=55", true),
        ("at the thresholds", strict, "targeted=100 attempted=100 succeeded=95 failed=3 bad=1", true),
        ("plain", plain, "targeted=10 attempted=10 succeeded=9 failed=1", true),
        ("sample met, still soaking", strict, "targeted=60 attempted=60 succeeded=60", false),
        ("failing numbers are not judged before the soak ends", strict, "targeted=60 attempted=60 failed=60", false),
    ]);
    expect![[r#"
        all good [soaked]: passed: success rate 1 (60 of 60), error rate 0 (0 of 60), good-patch ratio 1 (60 of 60), 0 no-shows of 60 targeted
        at the thresholds [soaked]: passed: success rate 0.95 (95 of 100), error rate 0.03 (3 of 100), good-patch ratio 0.9894 (94 of 95), 0 no-shows of 100 targeted, 2 still running
        plain [soaked]: passed: success rate 0.9 (9 of 10), 0 no-shows of 10 targeted
        sample met, still soaking [soaking]: soaking
        failing numbers are not judged before the soak ends [soaking]: soaking
    "#]]
    .assert_eq(&out);
}

#[test]
fn failing_each_criterion() {
    let out = run(&[
        ("success rate, installs still running", strict, "targeted=50 attempted=50 succeeded=41 failed=1", true),
        ("success rate, all done", strict, "targeted=50 attempted=50 succeeded=41 failed=9", true),
        ("error rate", strict, "targeted=100 attempted=100 succeeded=96 failed=4", true),
        ("good-patch ratio", strict, "targeted=100 attempted=100 succeeded=100 bad=3", true),
        ("all three", strict, "targeted=50 attempted=50 succeeded=40 failed=10 bad=5", true),
        (
            "nothing succeeded, rate 0 allowed",
            || Acceptance { min_success_rate: 0.0, ..strict() },
            "targeted=50 attempted=50 failed=50",
            true,
        ),
        (
            "just below, shown rounded down",
            || Acceptance { min_sample: 1, ..plain() },
            "targeted=20000 attempted=20000 succeeded=17999 failed=2001",
            true,
        ),
        ("contradictory counts", plain, "targeted=10 attempted=10 succeeded=8 failed=5", true),
        ("contradictory, even while soaking", plain, "targeted=10 attempted=10 succeeded=10 good=9 bad=2", false),
        ("more attempted than targeted", plain, "targeted=5 attempted=10 succeeded=10", true),
    ]);
    expect![[r#"
        success rate, installs still running [soaked]: waiting: 8 installs still running decide it (success rate 0.82 is below 0.95 (41 of 50))
        success rate, all done [soaked]: failed: success rate 0.82 is below 0.95 (41 of 50); error rate 0.18 is above 0.03 (9 of 50 failed)
        error rate [soaked]: failed: error rate 0.04 is above 0.03 (4 of 100 failed)
        good-patch ratio [soaked]: failed: good-patch ratio 0.97 is below 0.98 (3 bad of 100 succeeded)
        all three [soaked]: failed: success rate 0.8 is below 0.95 (40 of 50); error rate 0.2 is above 0.03 (10 of 50 failed); good-patch ratio 0.875 is below 0.98 (5 bad of 40 succeeded)
        nothing succeeded, rate 0 allowed [soaked]: failed: error rate 1 is above 0.03 (50 of 50 failed); good-patch ratio cannot be judged: no install succeeded
        just below, shown rounded down [soaked]: failed: success rate 0.8999 is below 0.9 (17999 of 20000)
        contradictory counts [soaked]: failed: inconsistent tally: 8 succeeded plus 5 failed exceed 10 attempted
        contradictory, even while soaking [soaking]: failed: inconsistent tally: 9 good plus 2 bad patch reports exceed 10 succeeded
        more attempted than targeted [soaked]: failed: inconsistent tally: 10 attempted plus 0 no-shows exceed 5 targeted
    "#]]
    .assert_eq(&out);
}

#[test]
fn waiting_for_the_sample() {
    let out = run(&[
        ("few attempted so far", strict, "targeted=200 attempted=12 succeeded=12", false),
        ("soak over, more can still come", strict, "targeted=200 attempted=49 succeeded=49 no_shows=100", true),
        ("zero attempts", strict, "targeted=200", false),
        ("zero attempts, soaked", strict, "targeted=200", true),
        ("everyone offline for the whole step", strict, "targeted=200 no_shows=200", true),
        ("fewer targeted than the sample", strict, "targeted=30 attempted=30 succeeded=30", true),
        ("nothing targeted", strict, "", true),
        (
            "the sample reached with the last endpoint",
            strict,
            "targeted=60 attempted=50 succeeded=50 no_shows=10",
            true,
        ),
    ]);
    expect![[r#"
        few attempted so far [soaking]: waiting: sample 12 is below the minimum 50 (12 attempted, 0 no-shows of 200 targeted)
        soak over, more can still come [soaked]: waiting: sample 49 is below the minimum 50 (49 attempted, 100 no-shows of 200 targeted)
        zero attempts [soaking]: waiting: sample 0 is below the minimum 50 (0 attempted, 0 no-shows of 200 targeted)
        zero attempts, soaked [soaked]: waiting: sample 0 is below the minimum 50 (0 attempted, 0 no-shows of 200 targeted)
        everyone offline for the whole step [soaked]: failed: sample 0 can no longer reach the minimum 50 (0 attempted, 200 no-shows of 200 targeted)
        fewer targeted than the sample [soaked]: failed: sample 30 can no longer reach the minimum 50 (30 attempted, 0 no-shows of 30 targeted)
        nothing targeted [soaked]: failed: sample 0 can no longer reach the minimum 50 (0 attempted, 0 no-shows of 0 targeted)
        the sample reached with the last endpoint [soaked]: passed: success rate 1 (50 of 50), error rate 0 (0 of 50), good-patch ratio 1 (50 of 50), 10 no-shows of 60 targeted
    "#]]
    .assert_eq(&out);
}

/// No-shows change neither the sample nor the rates: the same attempts give the same verdict
/// whatever the number of endpoints that never came online.
#[test]
fn no_shows_are_excluded() {
    let with = evaluate(&plain(), &tally("targeted=1000 attempted=20 succeeded=18 failed=2 no_shows=980"), true);
    let without = evaluate(&plain(), &tally("targeted=20 attempted=20 succeeded=18 failed=2"), true);
    // The summaries differ only in their last part, the no-show count.
    let without_no_shows = |r: &GateResult| r.to_string().rsplit_once(", ").unwrap().0.to_owned();
    assert!(matches!(with, GateResult::Passed { .. }), "{with}");
    assert_eq!(without_no_shows(&with), without_no_shows(&without));
    expect!["passed: success rate 0.9 (18 of 20), 980 no-shows of 1000 targeted"].assert_eq(&with.to_string());
}

/// Still-running attempts count against the success rate but are not errors.
#[test]
fn running_attempts_are_not_errors() {
    let acceptance = Acceptance { min_success_rate: 0.8, ..strict() };
    let result = evaluate(&acceptance, &tally("targeted=100 attempted=100 succeeded=85 failed=2"), true);
    expect!["passed: success rate 0.85 (85 of 100), error rate 0.02 (2 of 100), good-patch ratio 1 (85 of 85), 0 no-shows of 100 targeted, 13 still running"]
        .assert_eq(&result.to_string());
    let result = evaluate(&strict(), &tally("targeted=100 attempted=100 succeeded=85 failed=2"), true);
    expect!["waiting: 13 installs still running decide it (success rate 0.85 is below 0.95 (85 of 100))"]
        .assert_eq(&result.to_string());
}

/// A gate does not fail while the installs still running could make it pass; it fails once
/// they cannot.
#[test]
fn running_installs_decide_a_gate_that_would_fail_without_them() {
    let acceptance =
        Acceptance { min_sample: 2, min_success_rate: 0.9, min_good_patch_ratio: None, max_error_rate: None };
    let tally = |succeeded, failed| StepTally { targeted: 2, attempted: 2, succeeded, failed, ..StepTally::default() };
    expect!["waiting: 2 installs still running decide it (success rate 0 is below 0.9 (0 of 2))"]
        .assert_eq(&evaluate(&acceptance, &tally(0, 0), true).to_string());
    expect!["failed: success rate 0.5 is below 0.9 (1 of 2)"]
        .assert_eq(&evaluate(&acceptance, &tally(1, 1), true).to_string());
    expect!["failed: success rate 0 is below 0.9 (0 of 2)"]
        .assert_eq(&evaluate(&acceptance, &tally(0, 1), true).to_string());
}
