//! The OSV reader against the published records in `shared/advisories` (Debian, GitHub and two
//! Ubuntu records): each test asserts what one record states, including the Ubuntu data kept
//! outside the standard fields (upstream CVEs, per-CVE severities, binary packages).

#![allow(clippy::unwrap_used)]

mod common;

use rollgate_advisories::{osv, Advisory, Affected, Format, RemediationKind};
use rollgate_core::ecosystem::{Ecosystem, Range};

/// Reads one shared record, or None (with a note) where the shared directory is absent.
fn load(name: &str) -> Option<Advisory> {
    let bytes = common::shared_bytes(name)?;
    let advisory = osv::parse(&bytes).unwrap();
    let detected = rollgate_advisories::parse(&bytes).unwrap();
    assert_eq!(detected, rollgate_advisories::Document::Advisory(advisory.clone()), "detection picks OSV");
    Some(advisory)
}

fn time(t: Option<jiff::Timestamp>) -> String {
    t.map(|t| t.to_string()).unwrap_or_default()
}

fn from_zero_to(fixed: &str) -> Range {
    Range { introduced: Some("0".into()), fixed: Some(fixed.into()), last_affected: None }
}

fn on(advisory: &Advisory, platform: &str) -> Affected {
    let found = advisory.affected.iter().find(|a| a.platform.as_deref() == Some(platform));
    found.cloned().unwrap_or_else(|| panic!("{platform} in {:#?}", advisory.affected))
}

#[test]
fn debian_dsa_3029_fixes_nginx_in_wheezy() {
    let Some(advisory) = load("osv_debian_DSA-3029-1_nginx.json") else { return };
    assert_eq!(advisory.id, "DSA-3029-1");
    assert_eq!(advisory.format, Format::Osv);
    assert_eq!(advisory.title, "nginx - security update");
    assert_eq!(advisory.publisher, "Debian");
    assert_eq!(time(advisory.published), "2014-09-20T00:00:00Z");
    assert_eq!(time(advisory.updated), "2014-09-20T08:18:07Z");
    assert_eq!(advisory.rating, None);
    assert_eq!(advisory.vulnerabilities.len(), 1);
    assert_eq!(advisory.vulnerabilities[0].id, "CVE-2014-3616");
    assert!(advisory.vulnerabilities[0].cvss.is_empty());

    assert_eq!(advisory.affected.len(), 1);
    let nginx = on(&advisory, "Debian:7");
    assert_eq!((nginx.product.as_str(), nginx.ecosystem), ("nginx", Ecosystem::Dpkg));
    assert_eq!(nginx.ranges, [from_zero_to("1.2.1-2.2+wheezy3")]);
    assert!(nginx.package_names.is_empty() && nginx.versions.is_empty());
    assert!(nginx.ranges[0].contains(Ecosystem::Dpkg, "1.2.1-2.2+wheezy2"));
    assert!(!nginx.ranges[0].contains(Ecosystem::Dpkg, "1.2.1-2.2+wheezy3"));

    assert_eq!(advisory.remediations.len(), 1);
    let fix = &advisory.remediations[0];
    assert_eq!(fix.category, RemediationKind::VendorFix);
    assert_eq!(
        (fix.products.as_slice(), fix.fixed_version.as_deref()),
        (&["nginx".to_string()][..], Some("1.2.1-2.2+wheezy3"))
    );
    assert_eq!(fix.url.as_deref(), Some("https://www.debian.org/security/2014/dsa-3029"));
    assert_eq!(advisory.references, ["https://www.debian.org/security/2014/dsa-3029"]);
}

#[test]
fn ghsa_any23_is_critical_and_fixed_in_2_5() {
    let Some(advisory) = load("osv_ghsa_GHSA-838r-hvwh-24h8_maven.json") else { return };
    assert_eq!(advisory.id, "GHSA-838r-hvwh-24h8");
    assert_eq!(advisory.title, "XML Injection in Any23");
    assert_eq!(advisory.publisher, "GitHub");
    assert_eq!(time(advisory.published), "2021-09-13T20:06:31Z");
    assert_eq!(time(advisory.updated), "2021-09-24T13:10:05Z");
    assert_eq!(advisory.rating.as_deref(), Some("CRITICAL"));

    let cve = &advisory.vulnerabilities[0];
    assert_eq!((advisory.vulnerabilities.len(), cve.id.as_str()), (1, "CVE-2021-38555"));
    assert_eq!(cve.rating.as_deref(), Some("CRITICAL"));
    assert_eq!(cve.cvss.len(), 1);
    assert_eq!(cve.cvss[0].vector, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:N");
    assert_eq!((cve.cvss[0].version.as_str(), cve.cvss[0].base_score), ("3.1", Some(9.1)));

    let any23 = on(&advisory, "Maven");
    assert_eq!(any23.product, "org.apache.any23:apache-any23");
    assert_eq!(any23.ecosystem, Ecosystem::Generic);
    assert_eq!(any23.ranges, [from_zero_to("2.5")]);
    assert_eq!(advisory.remediations[0].fixed_version.as_deref(), Some("2.5"));
    assert_eq!(advisory.remediations[0].url.as_deref(), Some("https://nvd.nist.gov/vuln/detail/CVE-2021-38555"));
    assert_eq!(advisory.references.len(), 3);
}

#[test]
fn usn_6937_1_fixes_openssl_in_three_ubuntu_releases() {
    let Some(advisory) = load("osv_ubuntu_USN-6937-1_openssl.json") else { return };
    assert_eq!(advisory.id, "USN-6937-1");
    assert_eq!(advisory.title, "openssl vulnerabilities");
    assert_eq!(advisory.publisher, "Ubuntu");
    assert_eq!(time(advisory.published), "2024-07-31T15:46:50Z");
    assert_eq!(time(advisory.updated), "2026-04-27T14:11:35Z");

    let scores: Vec<_> = advisory
        .vulnerabilities
        .iter()
        .map(|v| (v.id.as_str(), v.cvss.iter().map(|c| c.base_score).collect::<Vec<_>>(), v.rating.as_deref()))
        .collect();
    assert_eq!(
        scores,
        [
            ("CVE-2024-2511", vec![Some(5.9)], Some("low")),
            ("CVE-2024-4603", vec![Some(5.3)], Some("low")),
            ("CVE-2024-4741", vec![Some(7.5)], Some("low")),
            ("CVE-2024-5535", vec![Some(9.1)], Some("low")),
        ]
    );

    let releases = [
        ("Ubuntu:20.04:LTS", "1.1.1f-1ubuntu2.23", "libssl1.1", 24),
        ("Ubuntu:22.04:LTS", "3.0.2-0ubuntu1.17", "libssl3", 18),
        ("Ubuntu:24.04:LTS", "3.0.13-0ubuntu3.2", "libssl3t64", 7),
    ];
    assert_eq!(advisory.affected.len(), 3);
    for (platform, fixed, library, version_count) in releases {
        let openssl = on(&advisory, platform);
        assert_eq!((openssl.product.as_str(), openssl.ecosystem), ("openssl", Ecosystem::Dpkg));
        assert_eq!(openssl.ranges, [from_zero_to(fixed)], "{platform}");
        assert_eq!(openssl.package_names, [library, "openssl"], "{platform}");
        assert_eq!(openssl.versions.len(), version_count, "{platform}");
        let fix = advisory.remediations.iter().find(|r| r.fixed_version.as_deref() == Some(fixed)).unwrap();
        assert_eq!(fix.products, ["openssl"]);
        assert_eq!(fix.url.as_deref(), Some("https://ubuntu.com/security/notices/USN-6937-1"));
        assert_eq!(fix.vulnerabilities, openssl.vulnerabilities);
    }
    assert_eq!(advisory.remediations.len(), 3);
    assert_eq!(on(&advisory, "Ubuntu:20.04:LTS").vulnerabilities, ["CVE-2024-2511", "CVE-2024-4741", "CVE-2024-5535"]);
    assert_eq!(on(&advisory, "Ubuntu:22.04:LTS").vulnerabilities.len(), 4);
    assert_eq!(advisory.references[0], "https://ubuntu.com/security/notices/USN-6937-1");
}

#[test]
fn ubuntu_cve_2025_38094_is_unfixed_in_trusty_esm() {
    let Some(advisory) = load("osv_ubuntu_UBUNTU-CVE-2025-38094_linux.json") else { return };
    assert_eq!(advisory.id, "UBUNTU-CVE-2025-38094");
    assert_eq!(advisory.publisher, "Ubuntu");
    assert!(advisory.title.starts_with("In the Linux kernel"), "no summary: the start of the details");
    assert_eq!(time(advisory.published), "2025-07-04T00:00:00Z");
    assert_eq!(time(advisory.updated), "2025-07-04T00:00:00Z");
    assert_eq!(advisory.rating.as_deref(), Some("medium"));
    let cve = &advisory.vulnerabilities[0];
    assert_eq!((advisory.vulnerabilities.len(), cve.id.as_str()), (1, "CVE-2025-38094"));
    assert_eq!(cve.rating.as_deref(), Some("medium"));
    assert!(cve.cvss.is_empty(), "the Ubuntu priority is not CVSS");

    let linux = on(&advisory, "Ubuntu:Pro:14.04:LTS");
    assert_eq!((linux.product.as_str(), linux.ecosystem), ("linux", Ecosystem::Dpkg));
    assert_eq!(linux.ranges, [Range { introduced: Some("0".into()), fixed: None, last_affected: None }]);
    assert_eq!(linux.versions.len(), 180);
    assert_eq!(linux.versions.first().map(String::as_str), Some("3.11.0-12.19"));
    assert_eq!(linux.versions.last().map(String::as_str), Some("3.13.0-206.257"));
    assert!(advisory.remediations.is_empty(), "unfixed");
    assert_eq!(advisory.references.len(), 10);
}
