//! Tests of step planning (which package fixes what, where) and of the step tally.

use super::*;
use crate::campaign::gate::GoodPatchReports;
use crate::member::MemberState;

fn need(endpoint: &str, advisory: &str, software: &str, fixed: Option<&str>) -> Need {
    Need {
        endpoint: endpoint.to_owned(),
        advisory: advisory.to_owned(),
        software: software.to_owned(),
        fixed_version: fixed.map(str::to_owned),
    }
}

fn store(entries: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    entries.iter().map(|(p, vs)| ((*p).to_owned(), vs.iter().map(|v| (*v).to_owned()).collect())).collect()
}

#[test]
fn the_lowest_package_fixing_every_approved_advisory_is_chosen() {
    let packages = store(&[("Acme-Agent", &["1.9.0", "2.0.1", "2.1.0", "10.0.0"]), ("openssl", &["3.0.13"])]);
    let needs = [
        need("e1", "ADV-1", "acme-agent", Some("2.0.0")),
        need("e1", "ADV-2", "acme-agent", Some("2.0.1")),
        need("e2", "ADV-1", "acme-agent", Some("2.0.0")),
        need("e3", "ADV-3", "src:openssl", Some("3.0.13")),
        need("e3", "ADV-4", "libfoo", Some("1.0")),
        need("e4", "ADV-5", "acme-agent", Some("11.0")),
    ];
    let plan = plan(&needs, &packages);
    let got: Vec<String> =
        plan.deployments.iter().map(|d| format!("{}@{} -> {}", d.product, d.version, d.endpoints.join(","))).collect();
    assert_eq!(got, ["Acme-Agent@2.0.1 -> e1,e2", "openssl@3.0.13 -> e3"]);
    let needs_package: Vec<String> = plan.needs_package.iter().map(|(a, s)| format!("{a} {s}")).collect();
    assert_eq!(needs_package, ["ADV-4 libfoo", "ADV-5 acme-agent"], "nothing stored at 11.0 or above, no libfoo");
    assert!(plan.fixes.contains(&("ADV-1".to_owned(), "Acme-Agent@2.0.1".to_owned())));
    assert_eq!(plan.targeted().into_iter().collect::<Vec<_>>(), ["e1", "e2", "e3"]);
}

#[test]
fn without_a_fixed_version_the_newest_package_is_chosen() {
    let plan = plan(&[need("e1", "ADV-1", "tool", None)], &store(&[("tool", &["1.2", "1.10", "1.9"])]));
    assert_eq!(plan.deployments[0].version, "1.10");
}

fn endpoint(installs: &[InstallProgress], seen_min: Option<i64>, good: bool, bad: bool) -> EndpointProgress {
    EndpointProgress {
        installs: installs.to_vec(),
        last_seen: seen_min.map(at),
        reported_good: good,
        reported_bad: bad,
    }
}

fn at(min: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + min * 60).unwrap()
}

#[test]
fn the_tally_counts_endpoints_not_installs() {
    use InstallProgress::*;
    let endpoints = [
        endpoint(&[Succeeded, Succeeded], Some(5), true, false),
        endpoint(&[Succeeded, NotStarted], Some(5), false, false),
        endpoint(&[Succeeded, Failed], Some(5), false, false),
        endpoint(&[Running], Some(5), false, false),
        endpoint(&[Succeeded], Some(5), false, true),
        endpoint(&[NotStarted], Some(5), false, false),
        endpoint(&[NotStarted], Some(-5), false, false),
        endpoint(&[NotStarted], None, false, false),
        endpoint(&[Succeeded, Missed], Some(5), false, false),
        endpoint(&[Missed], None, false, false),
    ];
    let t = tally(&endpoints, at(0));
    assert_eq!(
        t,
        StepTally {
            targeted: 10,
            attempted: 6,
            succeeded: 2,
            failed: 1,
            no_shows: 3,
            missed: 1,
            good_patch: GoodPatchReports { good: 1, bad: 1 },
        }
    );
    assert_eq!(t.inconsistency(), None);
    assert_eq!(in_flight(&endpoints), 1);
}

#[test]
fn global_autofix_catches_a_late_endpoint() {
    let packages = store(&[("tool", &["2.0"])]);
    // The step planned for e1 and e2; e3 enrolled later, e2 was covered by an earlier set.
    let first = plan(&[need("e1", "ADV-1", "tool", Some("2.0")), need("e2", "ADV-1", "tool", Some("2.0"))], &packages);
    let covered: BTreeSet<(String, String, String)> =
        first.deployments[0].endpoints.iter().map(|e| ("tool".to_owned(), "2.0".to_owned(), e.clone())).collect();
    // A later scan: e1 patched (no longer affected), e2 still running, e3 new.
    let rescan = plan(&[need("e2", "ADV-1", "tool", Some("2.0")), need("e3", "ADV-1", "tool", Some("2.0"))], &packages);
    let late = late(&rescan, &covered);
    assert_eq!(
        late,
        [Deployment { product: "tool".to_owned(), version: "2.0".to_owned(), endpoints: vec!["e3".to_owned()] }]
    );
    assert_eq!(super::late(&first, &covered), [], "nothing late when every endpoint is covered");
}

#[test]
fn a_set_settles_when_only_offline_endpoints_wait() {
    use MemberState::*;
    let now = at(100);
    let online = Some(at(99));
    let offline = Some(at(90));
    let settled = |members: &[(MemberState, Option<Timestamp>)]| set_settled(members, now, 300);
    assert!(settled(&[(Succeeded, online), (Failed, online), (RolledBack, offline)]));
    assert!(settled(&[(Succeeded, online), (Pending, offline), (Pending, None)]), "offline 10 min, or never seen");
    assert!(!settled(&[(Succeeded, online), (Pending, online)]), "an online endpoint will still be released");
    assert!(!settled(&[(InProgress, offline)]), "an install in flight, whatever its endpoint's silence");
    assert!(settled(&[]));
}
