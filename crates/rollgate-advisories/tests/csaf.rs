//! The CSAF reader against the published documents in `shared/advisories`: each test asserts
//! what one document states (ids, dates, CVEs, scores, products, platforms, fixed versions), so
//! a change in how product trees are resolved shows up as a concrete wrong fact.

#![allow(clippy::unwrap_used)]

mod common;

use rollgate_advisories::{csaf, Advisory, Affected, Format, RemediationKind};
use rollgate_core::ecosystem::{Ecosystem, Range};

/// Reads one shared document, or None (with a note) where the shared directory is absent.
fn load(name: &str) -> Option<Advisory> {
    let bytes = common::shared_bytes(name)?;
    let advisory = csaf::parse(&bytes).unwrap();
    let detected = rollgate_advisories::parse(&bytes).unwrap();
    assert_eq!(detected, rollgate_advisories::Document::Advisory(advisory.clone()), "detection picks CSAF");
    Some(advisory)
}

fn time(t: Option<jiff::Timestamp>) -> String {
    t.map(|t| t.to_string()).unwrap_or_default()
}

fn below(version: &str) -> Range {
    Range { introduced: None, fixed: Some(version.to_string()), last_affected: None }
}

fn on_platform<'a>(advisory: &'a Advisory, product: &str, platform: &str) -> &'a Affected {
    let found = advisory.affected.iter().find(|a| a.product == product && a.platform.as_deref() == Some(platform));
    found.unwrap_or_else(|| panic!("{product} on {platform} in {:#?}", advisory.affected))
}

#[test]
fn rhsa_2022_0011_fixes_telnet_on_three_rhel_platforms() {
    let Some(advisory) = load("csaf20_rhsa-2022_0011.json") else { return };
    assert_eq!(advisory.id, "RHSA-2022:0011");
    assert_eq!(advisory.format, Format::Csaf);
    assert_eq!(advisory.title, "Red Hat Security Advisory: telnet security update");
    assert_eq!(advisory.publisher, "Red Hat Product Security");
    assert_eq!(time(advisory.published), "2022-01-04T08:38:00Z");
    assert_eq!(time(advisory.updated), "2022-01-04T08:38:00Z");
    assert_eq!(advisory.revision.as_deref(), Some("1"));
    assert_eq!(advisory.rating.as_deref(), Some("Important"));

    assert_eq!(advisory.vulnerabilities.len(), 1);
    let cve = &advisory.vulnerabilities[0];
    assert_eq!(cve.id, "CVE-2020-10188");
    assert_eq!(cve.rating.as_deref(), Some("Important"));
    assert!(cve.cvss.is_empty(), "the CVSS is only in prose");
    assert!(!cve.known_exploited);

    let platforms = [
        "Red Hat Enterprise Linux Server AUS (v. 7.6)",
        "Red Hat Enterprise Linux Server E4S (v. 7.6)",
        "Red Hat Enterprise Linux Server TUS (v. 7.6)",
    ];
    for platform in platforms {
        for package in ["telnet", "telnet-server", "telnet-debuginfo"] {
            let affected = on_platform(&advisory, package, platform);
            assert_eq!(affected.ecosystem, Ecosystem::Rpm);
            assert_eq!(affected.ranges, [below("1:0.17-65.el7_6")]);
            assert!(affected.versions.is_empty());
            assert_eq!(affected.vulnerabilities, ["CVE-2020-10188"]);
        }
    }
    assert_eq!(advisory.affected.len(), 9, "architectures collapse into one entry per package and platform");
    let telnet = on_platform(&advisory, "telnet", platforms[0]);
    assert!(telnet.ranges[0].contains(Ecosystem::Rpm, "1:0.17-64.el7"));
    assert!(!telnet.ranges[0].contains(Ecosystem::Rpm, "1:0.17-65.el7_6"));

    assert_eq!(advisory.remediations.len(), 1);
    let fix = &advisory.remediations[0];
    assert_eq!(fix.category, RemediationKind::VendorFix);
    assert_eq!(fix.fixed_version.as_deref(), Some("1:0.17-65.el7_6"));
    assert_eq!(fix.products, ["telnet", "telnet-debuginfo", "telnet-server"]);
    assert_eq!(fix.url.as_deref(), Some("https://access.redhat.com/errata/RHSA-2022:0011"));
    assert!(fix.details.as_deref().unwrap().contains("https://access.redhat.com/articles/11258"));
    assert_eq!(fix.restart, None);
    assert_eq!(advisory.references[0], "https://access.redhat.com/errata/RHSA-2022:0011");
}

#[test]
fn rhsa_2021_5186_known_not_affected_images_are_not_affected() {
    let Some(advisory) = load("csaf20_rhsa-2021_5186.json") else { return };
    assert_eq!(advisory.id, "RHSA-2021:5186");
    assert_eq!(advisory.title, "Red Hat Security Advisory: OpenShift Container Platform 4.6.52 security update");
    assert_eq!(time(advisory.published), "2021-12-16T22:34:00Z");
    assert_eq!(advisory.rating.as_deref(), Some("Critical"));
    let ratings: Vec<_> =
        advisory.vulnerabilities.iter().map(|v| (v.id.as_str(), v.rating.as_deref().unwrap_or(""))).collect();
    assert_eq!(ratings, [("CVE-2021-4104", "Moderate"), ("CVE-2021-4125", "Critical")]);

    assert_eq!(advisory.affected.len(), 1, "{:#?}", advisory.affected);
    let hive = on_platform(&advisory, "openshift4/ose-metering-hive", "Red Hat OpenShift Container Platform 4.6");
    assert_eq!(hive.ranges, [below("v4.6.0-202112160147.p0.gf139e12.assembly.stream")]);
    assert_eq!(hive.vulnerabilities, ["CVE-2021-4104", "CVE-2021-4125"]);
    assert!(advisory.affected.iter().all(|a| !a.product.contains("ansible-operator")));

    let fixed: Vec<_> = advisory.remediations.iter().filter(|r| r.fixed_version.is_some()).collect();
    assert_eq!(fixed.len(), 1);
    assert_eq!(fixed[0].products, ["openshift4/ose-metering-hive"]);
    assert_eq!(fixed[0].url.as_deref(), Some("https://access.redhat.com/errata/RHSA-2021:5186"));
    assert!(advisory.remediations.iter().all(|r| r.category == RemediationKind::VendorFix));
    assert!(advisory
        .references
        .iter()
        .any(|r| r == "https://access.redhat.com/security/vulnerabilities/RHSB-2021-009"));
}

#[test]
fn cisco_smart_install_lists_259_affected_releases_and_a_workaround() {
    let Some(advisory) = load("csaf20_cisco-sa-20180328-smi2.json") else { return };
    assert_eq!(advisory.id, "cisco-sa-20180328-smi2");
    assert_eq!(advisory.title, "Cisco IOS and IOS XE Software Smart Install Remote Code Execution Vulnerability");
    assert_eq!(advisory.publisher, "Cisco PSIRT");
    assert_eq!(time(advisory.published), "2018-03-28T16:00:00Z");
    assert_eq!(time(advisory.updated), "2018-04-17T15:08:41Z");
    assert_eq!(advisory.revision.as_deref(), Some("3.0.0"));
    assert_eq!(advisory.rating, None);

    let cve = &advisory.vulnerabilities[0];
    assert_eq!(cve.id, "CVE-2018-0171");
    assert_eq!(cve.cvss.len(), 1);
    assert_eq!(cve.cvss[0].version, "3.0");
    assert_eq!(cve.cvss[0].vector, "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H");
    assert_eq!(cve.cvss[0].base_score, Some(9.8));

    let products: Vec<_> = advisory.affected.iter().map(|a| (a.product.as_str(), a.versions.len())).collect();
    assert_eq!(products, [("Cisco IOS", 180), ("Cisco IOS XE Software", 79)]);
    for affected in &advisory.affected {
        assert_eq!((affected.platform.as_deref(), affected.ecosystem), (None, Ecosystem::Generic));
        assert!(affected.ranges.is_empty());
    }
    assert!(advisory.affected[0].versions.iter().any(|v| v == "12.2(55)SE"));
    assert!(advisory.affected[0].versions.iter().any(|v| v == "12.2(55)EY"));
    assert!(advisory.affected[1].versions.iter().any(|v| v == "3.2.0SE"));

    assert_eq!(advisory.remediations.len(), 1);
    let workaround = &advisory.remediations[0];
    assert_eq!(workaround.category, RemediationKind::Workaround);
    assert_eq!(workaround.products, ["Cisco IOS", "Cisco IOS XE Software"]);
    assert_eq!((workaround.fixed_version.as_deref(), workaround.url.as_deref()), (None, None));
    let details = workaround.details.as_deref().unwrap();
    assert!(details.contains("no vstack"), "{details}");
    assert!(details.chars().count() <= 301, "shortened: {}", details.chars().count());
    assert_eq!(
        advisory.references[0],
        "https://tools.cisco.com/security/center/content/CiscoSecurityAdvisory/cisco-sa-20180328-smi2"
    );
}

#[test]
fn siemens_sinema_version_ranges_and_scores() {
    let Some(advisory) = load("csaf20_cisa_icsa-24-074-03_siemens_sinema_rc_server.json") else { return };
    assert_eq!(advisory.id, "ICSA-24-074-03");
    assert_eq!(advisory.title, "Siemens SINEMA Remote Connect Server");
    assert_eq!(advisory.publisher, "CISA");
    assert_eq!(time(advisory.published), "2024-03-12T00:00:00Z");
    assert_eq!(time(advisory.updated), "2024-03-12T00:00:00Z");

    let scores: Vec<_> = advisory
        .vulnerabilities
        .iter()
        .map(|v| (v.id.as_str(), v.cvss[0].version.as_str(), v.cvss[0].base_score))
        .collect();
    assert_eq!(scores, [("CVE-2020-23064", "3.1", Some(6.1)), ("CVE-2022-32257", "3.1", Some(9.8))]);
    assert_eq!(
        advisory.vulnerabilities[1].cvss[0].vector,
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P/RL:O/RC:C"
    );

    let ranges: Vec<_> =
        advisory.affected.iter().map(|a| (a.product.as_str(), a.ranges.clone(), a.vulnerabilities.clone())).collect();
    assert_eq!(
        ranges,
        [
            ("SINEMA Remote Connect Server", vec![below("V3.1")], vec!["CVE-2020-23064".to_string()]),
            ("SINEMA Remote Connect Server", vec![below("V3.2")], vec!["CVE-2022-32257".to_string()]),
        ]
    );
    assert!(advisory.affected.iter().all(|a| a.ecosystem == Ecosystem::Generic && a.platform.is_none()));
    assert!(advisory.affected[1].ranges[0].contains(Ecosystem::Generic, "V3.1"));
    assert!(!advisory.affected[1].ranges[0].contains(Ecosystem::Generic, "V3.2"));

    let fixes: Vec<_> = advisory
        .remediations
        .iter()
        .map(|r| (r.category, r.fixed_version.as_deref(), r.details.as_deref(), r.url.as_deref()))
        .collect();
    assert_eq!(
        fixes,
        [
            (
                RemediationKind::VendorFix,
                Some("V3.1"),
                Some("Update to V3.1 or later version"),
                Some("https://support.industry.siemens.com/cs/ww/en/view/109811169/")
            ),
            (
                RemediationKind::VendorFix,
                Some("V3.2"),
                Some("Update to V3.2 or later version"),
                Some("https://support.industry.siemens.com/cs/ww/en/view/109826375/")
            ),
        ]
    );
    assert!(advisory
        .references
        .iter()
        .any(|r| r == "https://cert-portal.siemens.com/productcert/csaf/ssa-576771.json"));
}

#[test]
fn vex_fixed_product_is_not_affected() {
    let Some(advisory) = load("csaf20_vex_2022-evd-uc-01-f-001.json") else { return };
    assert_eq!(advisory.id, "2022-EVD-UC-01-F-001");
    assert_eq!(advisory.title, "Example VEX Document Use Case 1 - Fixed");
    assert_eq!(advisory.publisher, "Example Company ProductCERT");
    assert_eq!(time(advisory.published), "2022-03-03T11:00:00Z");
    assert_eq!(advisory.vulnerabilities.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), ["CVE-2021-44228"]);
    for affected in &advisory.affected {
        assert!(!affected.versions.iter().any(|v| v == "1.1"));
        assert!(!affected.ranges.iter().any(|r| r.contains(affected.ecosystem, "1.1")), "{affected:#?}");
    }
    // The fix in 1.1 implies that earlier releases of the product were affected.
    assert_eq!(advisory.affected.len(), 1);
    assert_eq!(advisory.affected[0].product, "Example Company DEF");
    assert_eq!(advisory.affected[0].ranges, [below("1.1")]);
    assert!(advisory.remediations.is_empty());
}
