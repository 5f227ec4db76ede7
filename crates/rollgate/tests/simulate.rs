//! `rollgate simulate` through the real binary, on the example campaign and fleet the README
//! shows: it runs, says what the month did, and gives the same bytes for the same seed.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;

fn simulate(seed: &str, json: bool) -> std::process::Output {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let mut cmd = std::process::Command::new(EXE);
    cmd.args(["simulate", "--campaign", &format!("{root}/campaign.toml"), "--fleet", &format!("{root}/fleet.toml")]);
    cmd.args(["--seed", seed]);
    if json {
        cmd.arg("--json");
    }
    cmd.output().unwrap()
}

#[test]
fn the_example_simulation_is_deterministic_and_explains_itself() {
    let first = simulate("42", false);
    assert!(first.status.success(), "{}", stderr(&first));
    let text = String::from_utf8(first.stdout.clone()).unwrap();
    for expected in ["Timeline", "gate-passed", "Time to patch", " 75 % ", "Failures by cause", "site relay lyon"] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert_eq!(simulate("42", false).stdout, first.stdout, "same seed, same bytes");
    assert_ne!(simulate("43", false).stdout, first.stdout, "another seed, another month");
    let json: serde_json::Value = serde_json::from_slice(&simulate("42", true).stdout).unwrap();
    assert!(json.is_object());
    let missing = std::process::Command::new(EXE)
        .args(["simulate", "--campaign", "/nonexistent.toml", "--fleet", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert!(!missing.status.success() && stderr(&missing).contains("/nonexistent.toml"));
}
