//! The CVRF reader against Microsoft's published documents in `shared/advisories`: the full
//! January 2017 guide (BOM, four vulnerabilities, one an `ADV` id, empty elements) and the
//! June 2024 excerpt for CVE-2024-30080 (no-zone dates, fixed builds, a hotpatch alternative).
//!
//! The facts asserted come from reading the documents (research notes §6.14 and §6.15). When
//! the shared directory is absent the tests say so and pass.

#![allow(clippy::unwrap_used)]

mod common;

use std::str::FromStr;

use rollgate_advisories::{cvrf, parse, Advisory, Document, Format, Remediation, RemediationKind, Restart};
use rollgate_core::ecosystem::Ecosystem;

/// The parsed document, or None (after saying so) when the shared documents are not here.
fn read(file: &str) -> Option<Advisory> {
    let bytes = common::shared_bytes(file)?;
    Some(cvrf::parse(&bytes).unwrap())
}

fn june_2024() -> Option<Advisory> {
    read("msrc_cvrf_2024-Jun_CVE-2024-30080_EXCERPT.xml")
}

fn january_2017() -> Option<Advisory> {
    read("msrc_cvrf_2017-Jan_full.xml")
}

/// The remediations carrying KB `kb`, in document order.
fn by_kb<'a>(advisory: &'a Advisory, kb: &str) -> Vec<&'a Remediation> {
    advisory.remediations.iter().filter(|r| r.kb.as_deref() == Some(kb)).collect()
}

/// The lowest fixed build recorded for the affected product named `product`.
fn fixed_build<'a>(advisory: &'a Advisory, vulnerability: &str, product: &str) -> Option<&'a str> {
    let affected = advisory
        .affected
        .iter()
        .find(|a| a.product == product && a.vulnerabilities == [vulnerability])
        .unwrap_or_else(|| panic!("{product} is not affected by {vulnerability}"));
    affected.ranges.first().and_then(|r| r.fixed.as_deref())
}

#[test]
fn june_2024_header() {
    let Some(advisory) = june_2024() else { return };
    assert_eq!(advisory.id, "2024-Jun");
    assert_eq!(advisory.format, Format::Cvrf);
    assert_eq!(advisory.title, "June 2024 Security Updates");
    assert_eq!(advisory.publisher, "Microsoft");
    assert_eq!(advisory.published.unwrap().to_string(), "2024-06-11T07:00:00Z", "no zone: UTC");
    assert_eq!(advisory.updated.unwrap().to_string(), "2024-06-13T00:00:00Z");
    assert_eq!(advisory.revision.as_deref(), Some("3"));
    assert_eq!(advisory.rating.as_deref(), Some("Critical"));
}

#[test]
fn june_2024_vulnerability_and_its_one_distinct_score() {
    let Some(advisory) = june_2024() else { return };
    assert_eq!(advisory.vulnerabilities.len(), 1);
    let vulnerability = &advisory.vulnerabilities[0];
    assert_eq!(vulnerability.id, "CVE-2024-30080");
    assert_eq!(
        vulnerability.title.as_deref(),
        Some("Microsoft Message Queuing (MSMQ) Remote Code Execution Vulnerability")
    );
    assert_eq!(vulnerability.rating.as_deref(), Some("Critical"));
    assert!(!vulnerability.known_exploited, "Exploited:No");
    assert_eq!(vulnerability.cvss.len(), 1, "36 score sets, one vector");
    let cvss = &vulnerability.cvss[0];
    assert_eq!(cvss.vector, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:U/RL:O/RC:C");
    assert_eq!((cvss.version.as_str(), cvss.base_score), ("3.1", Some(9.8)));
    // The model keeps the base score only; the stated temporal score follows from the vector.
    let temporal = cvss::v3::Vector::from_str(&cvss.vector).unwrap().temporal_score().value();
    assert_eq!(temporal, 8.5);
}

#[test]
fn june_2024_affects_36_products_each_below_its_fixed_build() {
    let Some(advisory) = june_2024() else { return };
    assert_eq!(advisory.affected.len(), 36);
    for affected in &advisory.affected {
        assert_eq!(affected.ecosystem, Ecosystem::MicrosoftBuild, "{}", affected.product);
        assert_eq!(affected.platform, None, "the name already says the platform");
        assert_eq!(affected.ranges.len(), 1, "{} has a fixed build", affected.product);
        assert_eq!(affected.vulnerabilities, ["CVE-2024-30080"]);
    }
    let names: std::collections::BTreeSet<&str> = advisory.affected.iter().map(|a| a.product.as_str()).collect();
    assert_eq!(names.len(), 36, "each product once, although the tree lists it twice");
    let cve = "CVE-2024-30080";
    assert_eq!(fixed_build(&advisory, cve, "Windows 10 Version 1809 for 32-bit Systems"), Some("10.0.17763.5936"));
    assert_eq!(fixed_build(&advisory, cve, "Windows 10 Version 21H2 for 32-bit Systems"), Some("10.0.19044.4529"));
    assert_eq!(fixed_build(&advisory, cve, "Windows 10 Version 22H2 for 32-bit Systems"), Some("10.0.19045.4529"));
    assert_eq!(
        fixed_build(&advisory, cve, "Windows Server 2008 for 32-bit Systems Service Pack 2"),
        Some("6.0.6003.22720")
    );
    // Server 2022 has a Security Update (…2527) and a Hotpatch (…2522): the lower one.
    assert_eq!(fixed_build(&advisory, cve, "Windows Server 2022"), Some("10.0.20348.2522"));
}

#[test]
fn june_2024_keeps_every_vendor_fix_including_alternatives() {
    let Some(advisory) = june_2024() else { return };
    let vendor_fixes = advisory.remediations.iter().filter(|r| r.category == RemediationKind::VendorFix).count();
    assert_eq!(vendor_fixes, 17);
    let mitigations = advisory.remediations.iter().filter(|r| r.category == RemediationKind::Mitigation).count();
    assert_eq!(mitigations, 1);
    assert_eq!(advisory.remediations.len(), 18, "the 5 Known Issue entries are not remediations");

    let kb5039217 = by_kb(&advisory, "5039217");
    assert_eq!(kb5039217.len(), 1);
    let fix = kb5039217[0];
    assert_eq!(fix.fixed_version.as_deref(), Some("10.0.17763.5936"));
    assert_eq!(fix.supersedes.as_deref(), Some("5037765"));
    assert_eq!(fix.restart, Some(Restart::Yes));
    assert_eq!(fix.url.as_deref(), Some("https://catalog.update.microsoft.com/v7/site/Search.aspx?q=KB5039217"));
    assert_eq!(fix.details.as_deref(), Some("Security Update"));
    assert_eq!(fix.products.len(), 5);
    assert!(fix.products.contains(&"Windows Server 2019".to_string()), "{:?}", fix.products);
    assert_eq!(fix.vulnerabilities, ["CVE-2024-30080"]);

    let hotpatch = by_kb(&advisory, "5039330")[0];
    assert_eq!(hotpatch.fixed_version.as_deref(), Some("10.0.20348.2522"));
    assert_eq!(hotpatch.details.as_deref(), Some("Security Hotpatch Update"));
    assert_eq!(hotpatch.supersedes.as_deref(), Some("5037848"));
    assert_eq!(hotpatch.products, by_kb(&advisory, "5039227")[0].products, "an alternative for the same products");

    let builds: Vec<_> = by_kb(&advisory, "5039211").iter().map(|r| r.fixed_version.clone().unwrap()).collect();
    assert_eq!(builds, ["10.0.19044.4529", "10.0.19045.4529"], "one KB, two builds");

    let security_only = by_kb(&advisory, "5039266")[0];
    assert_eq!((security_only.details.as_deref(), security_only.supersedes.as_deref()), (Some("Security Only"), None));
    assert!(advisory
        .remediations
        .iter()
        .all(|r| r.category != RemediationKind::VendorFix || r.restart == Some(Restart::Yes)));
}

#[test]
fn january_2017_header_and_vulnerabilities_in_document_order() {
    let Some(advisory) = january_2017() else { return };
    assert_eq!(advisory.id, "2017-Jan");
    assert_eq!(advisory.title, "January 2017 Security Updates");
    assert_eq!(advisory.published.unwrap().to_string(), "2017-01-10T08:00:00Z");
    assert_eq!(advisory.updated.unwrap().to_string(), "2017-04-12T07:00:00Z");
    assert_eq!(advisory.revision.as_deref(), Some("2"));
    let ids: Vec<&str> = advisory.vulnerabilities.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["CVE-2017-0003", "CVE-2017-0004", "ADV170001", "CVE-2017-0002"]);
    let ratings: Vec<Option<&str>> = advisory.vulnerabilities.iter().map(|v| v.rating.as_deref()).collect();
    assert_eq!(ratings, [Some("Important"), Some("Important"), Some("Critical"), Some("Important")]);
    assert!(advisory.vulnerabilities.iter().all(|v| !v.known_exploited));
    assert_eq!(advisory.rating.as_deref(), Some("Critical"));
    assert_eq!(advisory.vulnerabilities[2].title.as_deref(), Some("January 2017 Adobe Flash Security Update"));
}

#[test]
fn january_2017_scores() {
    let Some(advisory) = january_2017() else { return };
    let scores = |index: usize| -> Vec<(String, Option<f64>)> {
        advisory.vulnerabilities[index].cvss.iter().map(|c| (c.vector.clone(), c.base_score)).collect()
    };
    assert!(scores(0).is_empty(), "empty <vuln:CVSSScoreSets />");
    assert_eq!(scores(1), [("CVSS:3.0/AV:N/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:H/E:P/RL:O/RC:R".to_string(), Some(6.5))]);
    assert!(scores(2).is_empty());
    let edge = scores(3);
    assert_eq!(edge.len(), 2, "6 × 5.4 and 1 × 3.5, each vector once");
    assert_eq!(edge[0], ("CVSS:3.0/AV:N/AC:L/PR:N/UI:R/S:U/C:L/I:L/A:N/E:P/RL:O/RC:C".to_string(), Some(5.4)));
    assert_eq!(edge[1].1, Some(3.5));
    assert!(edge[1].0.contains("PR:H"));
}

#[test]
fn january_2017_affected_products_have_no_ranges() {
    let Some(advisory) = january_2017() else { return };
    let count = |id: &str| advisory.affected.iter().filter(|a| a.vulnerabilities == [id]).count();
    assert_eq!(
        [count("CVE-2017-0003"), count("CVE-2017-0004"), count("ADV170001"), count("CVE-2017-0002")],
        [3, 12, 12, 7]
    );
    assert!(advisory.affected.iter().all(|a| a.ranges.is_empty() && a.versions.is_empty()), "no FixedBuild in 2017");
    let office: Vec<&str> = advisory
        .affected
        .iter()
        .filter(|a| a.vulnerabilities == ["CVE-2017-0003"])
        .map(|a| a.product.as_str())
        .collect();
    assert_eq!(
        office,
        [
            "Microsoft Word 2016 (32-bit edition)",
            "Microsoft Word 2016 (64-bit edition)",
            "Microsoft SharePoint Enterprise Server 2016"
        ]
    );
    assert!(advisory.affected.iter().any(|a| a.product == "Adobe Flash Player on Windows 8.1 for 32-bit systems"));
}

#[test]
fn january_2017_kbs_restarts_and_alternative_fixes() {
    let Some(advisory) = january_2017() else { return };
    assert_eq!(advisory.remediations.len(), 41, "39 Vendor Fix, 1 Mitigation, 1 Workaround");

    let word = by_kb(&advisory, "3128057");
    assert_eq!(word.len(), 2);
    assert_eq!((word[0].restart, word[0].supersedes.as_deref()), (Some(Restart::Maybe), Some("3118331")));
    assert_eq!(word[0].products, ["Microsoft Word 2016 (32-bit edition)"]);
    assert_eq!(by_kb(&advisory, "3141486")[0].supersedes, None);

    let win7 = "Windows 7 for 32-bit Systems Service Pack 1";
    let fixes: Vec<(&str, &str, Option<&str>, Option<Restart>)> = advisory
        .remediations
        .iter()
        .filter(|r| r.products == [win7])
        .map(|r| (r.kb.as_deref().unwrap(), r.details.as_deref().unwrap(), r.supersedes.as_deref(), r.restart))
        .collect();
    assert_eq!(
        fixes,
        [
            ("3212646", "Monthly Rollup", Some("3207752"), Some(Restart::Yes)),
            ("3212642", "Security Only", None, Some(Restart::Yes))
        ]
    );
    let win7_x64_rollup = by_kb(&advisory, "3212646")
        .into_iter()
        .find(|r| r.products == ["Windows 7 for x64-based Systems Service Pack 1"])
        .unwrap();
    assert_eq!(win7_x64_rollup.restart, None, "empty <vuln:RestartRequired />");
    assert_eq!(win7_x64_rollup.supersedes.as_deref(), Some("3212642"));
    assert_eq!(by_kb(&advisory, "3216775").len(), 7);
    assert_eq!(by_kb(&advisory, "3216775")[0].supersedes.as_deref(), Some("3198483"));
    assert_eq!(by_kb(&advisory, "3213986")[0].supersedes.as_deref(), Some("3206632"));
    assert_eq!(by_kb(&advisory, "3210720").len(), 2);
    assert_eq!(by_kb(&advisory, "3210721").len(), 2);
}

#[test]
fn january_2017_flash_advisory_with_its_mitigation_and_workaround() {
    let Some(advisory) = january_2017() else { return };
    let flash = by_kb(&advisory, "3214628");
    assert_eq!(flash.len(), 12);
    assert!(flash.iter().all(|r| r.supersedes.as_deref() == Some("3209498") && r.vulnerabilities == ["ADV170001"]));
    let rt = flash.iter().find(|r| r.products == ["Adobe Flash Player on Windows RT 8.1"]).unwrap();
    assert_eq!(rt.url, None, "empty <vuln:URL />");
    for kind in [RemediationKind::Mitigation, RemediationKind::Workaround] {
        let text = advisory.remediations.iter().find(|r| r.category == kind).unwrap();
        assert!(text.products.is_empty() && text.kb.is_none());
        let details = text.details.as_deref().unwrap();
        assert!(!details.contains('<'), "HTML is reduced to text: {details}");
    }
}

#[test]
fn detection_routes_both_documents_to_this_reader() {
    let Some(dir) = common::shared_dir() else { return };
    for file in ["msrc_cvrf_2017-Jan_full.xml", "msrc_cvrf_2024-Jun_CVE-2024-30080_EXCERPT.xml"] {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let Document::Advisory(advisory) = parse(&bytes).unwrap() else { panic!("{file} is not an advisory") };
        assert_eq!(advisory, cvrf::parse(&bytes).unwrap());
    }
}
