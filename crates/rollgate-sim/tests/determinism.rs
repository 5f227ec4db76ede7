//! Same inputs and seed give the same report, byte for byte; another seed gives another one.

#![allow(clippy::unwrap_used)]

mod common;

use rollgate_sim::simulate;

#[test]
fn same_seed_same_bytes_in_text_and_json() {
    let mut r = common::rng(7);
    let (campaign, fleet) = (common::small_campaign(&mut r), common::small_fleet(&mut r, 0.7));
    let a = simulate(&campaign, &fleet, 11).unwrap();
    let b = simulate(&campaign, &fleet, 11).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.to_text(), b.to_text());
    assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
}

#[test]
fn example_is_reproducible() {
    let a = simulate(common::CAMPAIGN, common::FLEET, 42).unwrap();
    let b = simulate(common::CAMPAIGN, common::FLEET, 42).unwrap();
    assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
}

#[test]
fn different_seeds_differ() {
    let mut r = common::rng(7);
    let (campaign, fleet) = (common::small_campaign(&mut r), common::small_fleet(&mut r, 0.7));
    let a = simulate(&campaign, &fleet, 1).unwrap();
    let b = simulate(&campaign, &fleet, 2).unwrap();
    assert_ne!(a.to_text(), b.to_text());
    assert_ne!(a.steps, b.steps);
}
