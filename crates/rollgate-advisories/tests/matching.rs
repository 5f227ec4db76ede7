//! Matching against the published documents in `shared/advisories` and hand-built advisories:
//! each test states which endpoints (OS, release, distribution packages, managed products) an
//! advisory affects and asserts the complete list of findings, so that a missed machine and a
//! wrongly flagged one both fail.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use rollgate_advisories::matching::{cve_findings, findings, platform_matches, Finding, Inventory};
use rollgate_advisories::{cve, nvd, osv, parse, Advisory, Affected, CveRecord, Document, Format, Vulnerability};
use rollgate_core::ecosystem::{Ecosystem, Range};

/// Reads one shared advisory, or None (with a note) where the shared directory is absent.
fn load(name: &str) -> Option<Advisory> {
    let bytes = common::shared_bytes(name)?;
    match parse(&bytes).unwrap() {
        Document::Advisory(advisory) => Some(advisory),
        other => panic!("{name} is not an advisory: {other:?}"),
    }
}

/// An endpoint's os-release `ID` and `VERSION_ID`.
type Os<'a> = (Option<&'a str>, Option<&'a str>);

/// The findings of `advisory` on an endpoint running `os` with the distribution `packages` and
/// no managed products.
fn on(advisory: &Advisory, os: Os<'_>, packages: &[(&str, &str)]) -> Vec<Finding> {
    with(advisory, os, packages, &[])
}

/// The findings of `advisory` on an endpoint running `os` with the managed `products` and no
/// distribution packages.
fn managed(advisory: &Advisory, os: Os<'_>, products: &[(&str, &str)]) -> Vec<Finding> {
    with(advisory, os, &[], products)
}

fn with(advisory: &Advisory, os: Os<'_>, packages: &[(&str, &str)], products: &[(&str, &str)]) -> Vec<Finding> {
    let (packages, products) = (listed(packages), listed(products));
    findings(advisory, &Inventory { os_id: os.0, os_version: os.1, packages: &packages, products: &products })
}

fn cve_on(record: &CveRecord, os: Os<'_>, packages: &[(&str, &str)]) -> Vec<Finding> {
    cve_with(record, os, packages, &[])
}

fn cve_managed(record: &CveRecord, os: Os<'_>, products: &[(&str, &str)]) -> Vec<Finding> {
    cve_with(record, os, &[], products)
}

fn cve_with(record: &CveRecord, os: Os<'_>, packages: &[(&str, &str)], products: &[(&str, &str)]) -> Vec<Finding> {
    let (packages, products) = (listed(packages), listed(products));
    cve_findings(record, &Inventory { os_id: os.0, os_version: os.1, packages: &packages, products: &products })
}

fn listed(installed: &[(&str, &str)]) -> BTreeMap<String, String> {
    installed.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

/// An endpoint with a known OS.
fn os<'a>(id: &'a str, version: &'a str) -> Os<'a> {
    (Some(id), Some(version))
}

const UNKNOWN_OS: Os<'static> = (None, None);

fn finding(
    advisory: &str,
    (software, installed_version): (&str, &str),
    fixed_version: Option<&str>,
    platform: Option<&str>,
    vulnerabilities: &[&str],
) -> Finding {
    Finding {
        advisory: advisory.to_string(),
        software: software.to_string(),
        installed_version: installed_version.to_string(),
        fixed_version: fixed_version.map(str::to_string),
        platform: platform.map(str::to_string),
        vulnerabilities: vulnerabilities.iter().map(|v| v.to_string()).collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Published documents

#[test]
fn dsa_3029_affects_wheezy_nginx_before_wheezy3() {
    let Some(dsa) = load("osv_debian_DSA-3029-1_nginx.json") else { return };
    let old = [("nginx", "1.2.1-2.2+wheezy2")];
    assert_eq!(
        on(&dsa, os("debian", "7"), &old),
        [finding("DSA-3029-1", old[0], Some("1.2.1-2.2+wheezy3"), Some("Debian:7"), &["CVE-2014-3616"])]
    );
    assert_eq!(on(&dsa, os("debian", "7.11"), &old).len(), 1, "a point release is the same release");
    for fixed in ["1.2.1-2.2+wheezy3", "1.2.1-2.2+wheezy4"] {
        assert_eq!(on(&dsa, os("debian", "7"), &[("nginx", fixed)]), [], "{fixed}");
    }
    assert_eq!(on(&dsa, os("debian", "8"), &old), [], "another Debian release");
    assert_eq!(on(&dsa, os("ubuntu", "22.04"), &old), [], "another distribution");
    assert_eq!(on(&dsa, (Some("debian"), None), &old), [], "release unknown");
    assert_eq!(on(&dsa, UNKNOWN_OS, &old), [], "OS unknown");
    assert_eq!(managed(&dsa, os("debian", "7"), &old), [], "an OS entry is not a managed product");
}

#[test]
fn dsa_3029_names_the_source_package_that_the_agent_reports() {
    let Some(dsa) = load("osv_debian_DSA-3029-1_nginx.json") else { return };
    let binary = ("nginx-full", "1.2.1-2.2+wheezy2");
    assert_eq!(on(&dsa, os("debian", "7"), &[binary]), [], "the DSA names the source package only");
    let source = ("src:nginx", "1.2.1-2.2+wheezy2");
    assert_eq!(
        on(&dsa, os("debian", "7"), &[binary, source]),
        [finding("DSA-3029-1", source, Some("1.2.1-2.2+wheezy3"), Some("Debian:7"), &["CVE-2014-3616"])]
    );
    assert_eq!(on(&dsa, os("debian", "7"), &[binary, ("src:nginx", "1.2.1-2.2+wheezy3")]), [], "fixed source");
    assert_eq!(on(&dsa, os("debian", "8"), &[binary, source]), [], "another Debian release");
}

const USN_22_04_CVES: [&str; 4] = ["CVE-2024-2511", "CVE-2024-4603", "CVE-2024-4741", "CVE-2024-5535"];

#[test]
fn usn_6937_1_affects_the_openssl_binaries_of_each_ubuntu_release() {
    let Some(usn) = load("osv_ubuntu_USN-6937-1_openssl.json") else { return };
    let jammy = os("ubuntu", "22.04");
    let libssl3 = ("libssl3", "3.0.2-0ubuntu1.16");
    assert_eq!(
        on(&usn, jammy, &[libssl3]),
        [finding("USN-6937-1", libssl3, Some("3.0.2-0ubuntu1.17"), Some("Ubuntu:22.04:LTS"), &USN_22_04_CVES)]
    );
    assert_eq!(on(&usn, jammy, &[("libssl3", "3.0.2-0ubuntu1.17")]), []);
    let source = ("src:openssl", "3.0.2-0ubuntu1.16");
    assert_eq!(
        on(&usn, jammy, &[source]),
        [finding("USN-6937-1", source, Some("3.0.2-0ubuntu1.17"), Some("Ubuntu:22.04:LTS"), &USN_22_04_CVES)],
        "the source package is looked up besides the binaries"
    );

    // Every installed binary of the source package is a finding of its own.
    let openssl = ("openssl", "3.0.2-0ubuntu1.16");
    let fixed = ("zlib1g", "1:1.2.11.dfsg-2ubuntu9.2");
    assert_eq!(
        on(&usn, jammy, &[libssl3, openssl, fixed]),
        [
            finding("USN-6937-1", libssl3, Some("3.0.2-0ubuntu1.17"), Some("Ubuntu:22.04:LTS"), &USN_22_04_CVES),
            finding("USN-6937-1", openssl, Some("3.0.2-0ubuntu1.17"), Some("Ubuntu:22.04:LTS"), &USN_22_04_CVES),
        ]
    );

    let libssl3t64 = ("libssl3t64", "3.0.13-0ubuntu3.1");
    assert_eq!(
        on(&usn, os("ubuntu", "24.04"), &[libssl3t64]),
        [finding("USN-6937-1", libssl3t64, Some("3.0.13-0ubuntu3.2"), Some("Ubuntu:24.04:LTS"), &USN_22_04_CVES)]
    );
    assert_eq!(on(&usn, os("ubuntu", "24.04"), &[("libssl3t64", "3.0.13-0ubuntu3.2")]), []);
    assert_eq!(on(&usn, os("ubuntu", "20.04"), &[libssl3]), [], "focal's entry names libssl1.1, not libssl3");
    assert_eq!(on(&usn, os("debian", "12"), &[libssl3]), []);

    let libssl11 = ("libssl1.1", "1.1.1f-1ubuntu2.22");
    assert_eq!(
        on(&usn, os("ubuntu", "20.04"), &[libssl11]),
        [finding(
            "USN-6937-1",
            libssl11,
            Some("1.1.1f-1ubuntu2.23"),
            Some("Ubuntu:20.04:LTS"),
            &["CVE-2024-2511", "CVE-2024-4741", "CVE-2024-5535"]
        )]
    );
}

const RHEL_7_6: [&str; 3] = [
    "Red Hat Enterprise Linux Server AUS (v. 7.6)",
    "Red Hat Enterprise Linux Server E4S (v. 7.6)",
    "Red Hat Enterprise Linux Server TUS (v. 7.6)",
];

/// The RHSA-2022:0011 findings for `installed` on each of its three RHEL 7.6 platforms.
fn telnet_findings(installed: (&str, &str)) -> Vec<Finding> {
    RHEL_7_6
        .iter()
        .map(|p| finding("RHSA-2022:0011", installed, Some("1:0.17-65.el7_6"), Some(p), &["CVE-2020-10188"]))
        .collect()
}

#[test]
fn rhsa_2022_0011_affects_rhel_7_telnet_by_rpm_order_with_epochs() {
    let Some(rhsa) = load("csaf20_rhsa-2022_0011.json") else { return };
    let rhel76 = os("rhel", "7.6");
    let with_epoch = ("telnet", "1:0.17-64.el7");
    assert_eq!(on(&rhsa, rhel76, &[with_epoch]), telnet_findings(with_epoch));
    // rpm reports the epoch whenever the package has one, so none means epoch 0, below 1.
    let without_epoch = ("telnet", "0.17-64.el7");
    assert_eq!(on(&rhsa, rhel76, &[without_epoch]), telnet_findings(without_epoch));
    let newer_without_epoch = ("telnet", "0.17-66.el7");
    assert_eq!(on(&rhsa, rhel76, &[newer_without_epoch]), telnet_findings(newer_without_epoch));

    for patched in ["1:0.17-65.el7_6", "1:0.17-66.el7"] {
        assert_eq!(on(&rhsa, rhel76, &[("telnet", patched)]), [], "{patched}");
    }
    assert_eq!(on(&rhsa, os("rhel", "7.9"), &[with_epoch]), telnet_findings(with_epoch), "same major release");
    assert_eq!(on(&rhsa, os("rhel", "8.6"), &[with_epoch]), []);
    assert_eq!(on(&rhsa, os("rhel", "8"), &[with_epoch]), []);
    assert_eq!(on(&rhsa, (Some("rhel"), None), &[with_epoch]), [], "release unknown");
    assert_eq!(on(&rhsa, os("centos", "7"), &[with_epoch]), [], "only RHEL");
    assert_eq!(on(&rhsa, os("almalinux", "7.6"), &[with_epoch]), [], "only RHEL");
    assert_eq!(on(&rhsa, os("debian", "7"), &[("telnet", "0.17-36")]), []);
    assert_eq!(on(&rhsa, UNKNOWN_OS, &[with_epoch]), []);
    assert_eq!(managed(&rhsa, rhel76, &[with_epoch]), [], "an OS entry is not a managed product");

    let server = ("telnet-server", "1:0.17-64.el7");
    let mut both: Vec<Finding> = telnet_findings(with_epoch);
    both.extend(
        RHEL_7_6
            .iter()
            .map(|p| finding("RHSA-2022:0011", server, Some("1:0.17-65.el7_6"), Some(p), &["CVE-2020-10188"])),
    );
    assert_eq!(on(&rhsa, rhel76, &[with_epoch, server]), both);
}

#[test]
fn rhsa_2021_5186_openshift_images_are_not_matched_against_os_packages() {
    let Some(rhsa) = load("csaf20_rhsa-2021_5186.json") else { return };
    let image = ("openshift4/ose-metering-hive", "v4.6.0-202112010000.p0.assembly.stream");
    assert_eq!(on(&rhsa, os("rhel", "8.6"), &[image]), []);
    assert_eq!(on(&rhsa, UNKNOWN_OS, &[image]), []);
}

#[test]
fn ghsa_any23_maven_matches_nothing_until_there_is_a_language_package_inventory() {
    let Some(ghsa) = load("osv_ghsa_GHSA-838r-hvwh-24h8_maven.json") else { return };
    let old = ("org.apache.any23:apache-any23", "2.4");
    for endpoint in [UNKNOWN_OS, os("debian", "12"), os("windows", "10.0.19045"), os("rhel", "9.4")] {
        assert_eq!(with(&ghsa, endpoint, &[old], &[old]), [], "{endpoint:?}");
    }
}

#[test]
fn an_npm_package_is_not_the_os_package_of_the_same_name() {
    let mut npm_tar = below("tar", Ecosystem::Semver, "6.2.1");
    npm_tar.platform = Some("npm".to_string());
    let ghsa = advisory(&["CVE-2024-28863"], vec![npm_tar]);
    let dpkg_tar = [("tar", "1.34+dfsg-1.2"), ("src:tar", "1.34+dfsg-1.2")];
    assert_eq!(on(&ghsa, os("debian", "12"), &dpkg_tar), []);
    assert_eq!(on(&ghsa, UNKNOWN_OS, &[("tar", "6.2.0")]), [], "even a version in the range");
    assert_eq!(managed(&ghsa, UNKNOWN_OS, &[("tar", "6.2.0")]), []);
}

#[test]
fn siemens_sinema_releases_before_v3_2_are_affected_by_one_or_both_cves() {
    let Some(ssa) = load("csaf20_cisa_icsa-24-074-03_siemens_sinema_rc_server.json") else { return };
    let v30 = ("SINEMA Remote Connect Server", "V3.0");
    assert_eq!(
        managed(&ssa, UNKNOWN_OS, &[v30]),
        [
            finding("ICSA-24-074-03", v30, Some("V3.1"), None, &["CVE-2020-23064"]),
            finding("ICSA-24-074-03", v30, Some("V3.2"), None, &["CVE-2022-32257"]),
        ]
    );
    let v31 = ("SINEMA Remote Connect Server", "V3.1");
    assert_eq!(
        managed(&ssa, os("windows", "10.0.20348"), &[v31]),
        [finding("ICSA-24-074-03", v31, Some("V3.2"), None, &["CVE-2022-32257"])]
    );
    assert_eq!(managed(&ssa, UNKNOWN_OS, &[("SINEMA Remote Connect Server", "V3.2")]), []);
    assert_eq!(managed(&ssa, UNKNOWN_OS, &[("SINEMA Remote Connect Client", "V3.0")]), []);
}

#[test]
fn siemens_sinema_is_looked_up_only_among_managed_products() {
    let Some(ssa) = load("csaf20_cisa_icsa-24-074-03_siemens_sinema_rc_server.json") else { return };
    let v30 = ("SINEMA Remote Connect Server", "V3.0");
    assert_eq!(on(&ssa, UNKNOWN_OS, &[v30]), [], "not a distribution package");
    assert_eq!(on(&ssa, os("debian", "12"), &[v30]), []);
    assert_eq!(with(&ssa, UNKNOWN_OS, &[v30], &[v30]).len(), 2);
}

#[test]
fn cisco_ios_listed_releases_are_affected_and_others_not() {
    let Some(cisco) = load("csaf20_cisco-sa-20180328-smi2.json") else { return };
    let listed = ("Cisco IOS", "12.2(55)SE");
    assert_eq!(
        managed(&cisco, UNKNOWN_OS, &[listed]),
        [finding("cisco-sa-20180328-smi2", listed, None, None, &["CVE-2018-0171"])]
    );
    assert_eq!(managed(&cisco, UNKNOWN_OS, &[("Cisco IOS", "99.9(9)ZZ")]), []);
    assert_eq!(on(&cisco, UNKNOWN_OS, &[listed]), [], "not a distribution package");
}

#[test]
fn cve_5_xz_affects_the_two_backdoored_releases_of_a_managed_product() {
    let Some(bytes) = common::shared_bytes("cve5_CVE-2024-3094_xz.json") else { return };
    let record = cve::parse(&bytes).unwrap();
    let backdoored = ("xz", "5.6.1");
    assert_eq!(
        cve_managed(&record, os("debian", "12"), &[backdoored]),
        [finding("CVE-2024-3094", backdoored, None, None, &["CVE-2024-3094"])]
    );
    assert_eq!(cve_managed(&record, UNKNOWN_OS, &[("xz", "5.6.0")]).len(), 1);
    assert_eq!(cve_managed(&record, UNKNOWN_OS, &[("xz", "5.4.6")]), []);
    assert_eq!(cve_managed(&record, UNKNOWN_OS, &[("xz", "5.6.2")]), []);
    // The CNA's entries have no platform: upstream releases, not any distribution's package.
    assert_eq!(cve_on(&record, os("debian", "12"), &[backdoored, ("src:xz-utils", "5.6.1-1")]), []);
}

#[test]
fn nvd_cpe_ranges_are_not_matched_against_packages() {
    let Some(bytes) = common::shared_bytes("nvd_api2_CVE-2023-4863_libwebp.json") else { return };
    let records = nvd::parse(&bytes).unwrap();
    assert!(!records[0].cpes.is_empty());
    let installed = [("libwebp", "1.0.0"), ("libwebp7", "1.2.4-0.2")];
    assert_eq!(cve_with(&records[0], os("debian", "12"), &installed, &installed), []);
}

// ---------------------------------------------------------------------------------------------
// Hand-built advisories

fn advisory(vulnerabilities: &[&str], affected: Vec<Affected>) -> Advisory {
    Advisory {
        id: "TEST-1".to_string(),
        format: Format::Osv,
        title: "test".to_string(),
        publisher: "test".to_string(),
        published: None,
        updated: None,
        revision: None,
        rating: None,
        vulnerabilities: vulnerabilities
            .iter()
            .map(|id| Vulnerability {
                id: id.to_string(),
                title: None,
                cvss: Vec::new(),
                rating: None,
                known_exploited: false,
            })
            .collect(),
        affected,
        remediations: Vec::new(),
        references: Vec::new(),
        withdrawn: None,
    }
}

/// `product` in `ecosystem`, everywhere, affected below `fixed`.
fn below(product: &str, ecosystem: Ecosystem, fixed: &str) -> Affected {
    Affected {
        product: product.to_string(),
        package_names: Vec::new(),
        platform: None,
        ecosystem,
        ranges: vec![Range { introduced: None, fixed: Some(fixed.to_string()), last_affected: None }],
        versions: Vec::new(),
        vulnerabilities: Vec::new(),
    }
}

/// `entry` on `platform`.
fn on_platform(platform: &str, mut entry: Affected) -> Affected {
    entry.platform = Some(platform.to_string());
    entry
}

const DEBIAN_12: Option<&str> = Some("Debian:12");

#[test]
fn dpkg_epochs_and_tildes_follow_debian_policy() {
    let bookworm = os("debian", "12");
    let fixed_in_2 = advisory(&["CVE-1"], vec![on_platform("Debian:12", below("pkg", Ecosystem::Dpkg, "2.0"))]);
    assert_eq!(on(&fixed_in_2, bookworm, &[("pkg", "1:1.0")]), [], "an epoch outranks any version");
    let plain = ("pkg", "1.9");
    assert_eq!(on(&fixed_in_2, bookworm, &[plain]), [finding("TEST-1", plain, Some("2.0"), DEBIAN_12, &["CVE-1"])]);

    let fixed_in_1 = advisory(&["CVE-1"], vec![on_platform("Debian:12", below("pkg", Ecosystem::Dpkg, "1.0"))]);
    let candidate = ("pkg", "1.0~rc1");
    assert_eq!(
        on(&fixed_in_1, bookworm, &[candidate]),
        [finding("TEST-1", candidate, Some("1.0"), DEBIAN_12, &["CVE-1"])],
        "a tilde sorts before the release"
    );
    assert_eq!(on(&fixed_in_1, bookworm, &[("pkg", "0:1.0")]), [], "epoch 0 is no epoch");
    assert_eq!(on(&fixed_in_1, bookworm, &[("pkg", "1.0+b1")]), []);
}

#[test]
fn rpm_epochs_and_tildes_follow_rpmvercmp() {
    let fixed = advisory(&["CVE-1"], vec![on_platform("Red Hat", below("pkg", Ecosystem::Rpm, "1:2.0-1.el9"))]);
    let rhel9 = os("rhel", "9.4");
    for affected in ["2.0-1.el9", "3.0-1.el9", "1:2.0~rc1-1.el9", "1:1.9-9.el9"] {
        let installed = ("pkg", affected);
        assert_eq!(
            on(&fixed, rhel9, &[installed]),
            [finding("TEST-1", installed, Some("1:2.0-1.el9"), Some("Red Hat"), &["CVE-1"])],
            "{affected}"
        );
    }
    for patched in ["1:2.0-1.el9", "1:2.0-2.el9", "2:0.1-1.el9", "1:2.0^git1-1.el9"] {
        assert_eq!(on(&fixed, rhel9, &[("pkg", patched)]), [], "{patched}");
    }
    assert_eq!(on(&fixed, rhel9, &[("src:pkg", "2.0-1.el9")]), [], "only dpkg entries name source packages");
}

#[test]
fn listed_versions_compare_in_the_ecosystem_order_and_carry_no_fix() {
    let mut entry = on_platform("Debian:12", below("pkg", Ecosystem::Dpkg, "1.0"));
    entry.ranges.clear();
    entry.versions = vec!["1:2.0-1".to_string(), "2.1-1".to_string()];
    let listed = advisory(&["CVE-1"], vec![entry]);
    let bookworm = os("debian", "12");
    let same = ("pkg", "01:2.0-1");
    assert_eq!(on(&listed, bookworm, &[same]), [finding("TEST-1", same, None, DEBIAN_12, &["CVE-1"])]);
    assert_eq!(on(&listed, bookworm, &[("pkg", "2.0-1")]), [], "epoch 0 is not epoch 1");
    assert_eq!(on(&listed, bookworm, &[("pkg", "2.1-1+b1")]), []);
}

#[test]
fn an_entry_without_ranges_or_versions_affects_every_version() {
    let mut entry = below("Widget", Ecosystem::Generic, "1.0");
    entry.ranges.clear();
    let every = advisory(&["CVE-2", "CVE-1"], vec![entry]);
    let installed = ("widget", "99");
    assert_eq!(
        managed(&every, UNKNOWN_OS, &[installed]),
        [finding("TEST-1", installed, None, None, &["CVE-1", "CVE-2"])],
        "the advisory's vulnerabilities, sorted, when the entry names none"
    );
    assert_eq!(on(&every, UNKNOWN_OS, &[installed]), [], "an entry without a platform names a product");
}

#[test]
fn package_names_replace_the_product_and_the_source_package_is_looked_up_too() {
    let mut entry = on_platform("Debian:12", below("openssl", Ecosystem::Dpkg, "3.0.2-2"));
    entry.package_names = vec!["libssl3".to_string()];
    let source = advisory(&["CVE-1"], vec![entry]);
    let bookworm = os("debian", "12");
    assert_eq!(on(&source, bookworm, &[("openssl", "3.0.2-1")]), [], "a binary it does not name");
    let binary = ("LibSSL3", "3.0.2-1");
    assert_eq!(on(&source, bookworm, &[binary]), [finding("TEST-1", binary, Some("3.0.2-2"), DEBIAN_12, &["CVE-1"])]);
    let src = ("src:openssl", "3.0.2-1");
    assert_eq!(
        on(&source, bookworm, &[binary, src]),
        [
            finding("TEST-1", binary, Some("3.0.2-2"), DEBIAN_12, &["CVE-1"]),
            finding("TEST-1", src, Some("3.0.2-2"), DEBIAN_12, &["CVE-1"]),
        ],
        "one finding per inventory name"
    );
}

#[test]
fn findings_of_one_fix_merge_their_vulnerabilities() {
    let mut first = on_platform("Debian:12", below("pkg", Ecosystem::Dpkg, "1.5"));
    first.vulnerabilities = vec!["CVE-3".to_string(), "CVE-1".to_string()];
    let mut second = on_platform("Debian:12", below("pkg", Ecosystem::Dpkg, "1.5"));
    second.vulnerabilities = vec!["CVE-2".to_string(), "CVE-1".to_string()];
    let mut later = on_platform("Debian:12", below("pkg", Ecosystem::Dpkg, "2.0"));
    later.vulnerabilities = vec!["CVE-4".to_string()];
    let every_release = on_platform("Debian", below("pkg", Ecosystem::Dpkg, "1.5"));
    let split = advisory(&["CVE-1", "CVE-2", "CVE-3", "CVE-4", "CVE-5"], vec![first, second, later, every_release]);
    let installed = ("pkg", "1.0");
    let all = ["CVE-1", "CVE-2", "CVE-3", "CVE-4", "CVE-5"];
    assert_eq!(
        on(&split, os("debian", "12"), &[installed]),
        [
            finding("TEST-1", installed, Some("1.5"), Some("Debian"), &all),
            finding("TEST-1", installed, Some("1.5"), DEBIAN_12, &["CVE-1", "CVE-2", "CVE-3"]),
            finding("TEST-1", installed, Some("2.0"), DEBIAN_12, &["CVE-4"]),
        ]
    );
    assert_eq!(
        on(&split, os("debian", "11"), &[installed]),
        [finding("TEST-1", installed, Some("1.5"), Some("Debian"), &all)]
    );
    let newer = ("pkg", "1.7");
    assert_eq!(
        on(&split, os("debian", "12"), &[newer]),
        [finding("TEST-1", newer, Some("2.0"), DEBIAN_12, &["CVE-4"])]
    );
}

#[test]
fn the_first_range_containing_the_version_names_the_fix() {
    let mut branches = below("pkg", Ecosystem::Semver, "1.4.2");
    branches.ranges = vec![
        Range { introduced: Some("1.0.0".into()), fixed: Some("1.4.2".into()), last_affected: None },
        Range { introduced: Some("2.0.0".into()), fixed: Some("2.1.1".into()), last_affected: None },
        Range { introduced: Some("3.0.0".into()), fixed: None, last_affected: None },
    ];
    let branched = advisory(&["CVE-1"], vec![branches]);
    for (version, fix) in [("1.3.0", Some("1.4.2")), ("2.0.5", Some("2.1.1")), ("3.2.0", None)] {
        let installed = ("pkg", version);
        assert_eq!(managed(&branched, UNKNOWN_OS, &[installed]), [finding("TEST-1", installed, fix, None, &["CVE-1"])]);
    }
    for version in ["0.9.0", "1.4.2", "2.1.1", "2.5.0"] {
        assert_eq!(managed(&branched, UNKNOWN_OS, &[("pkg", version)]), [], "{version}");
    }
}

#[test]
fn withdrawn_advisories_match_nothing() {
    let record = |withdrawn: &str| {
        format!(
            r#"{{"id": "DSA-9999-1", "modified": "2024-02-01T00:00:00Z", {withdrawn}
                "aliases": ["CVE-2099-1"],
                "affected": [{{"package": {{"ecosystem": "Debian:12", "name": "nginx"}},
                  "ranges": [{{"type": "ECOSYSTEM", "events": [{{"introduced": "0"}}, {{"fixed": "1.22.1-9+deb12u1"}}]}}]}}]}}"#
        )
    };
    let installed = ("src:nginx", "1.22.1-9");
    let live = osv::parse(record("").as_bytes()).unwrap();
    assert_eq!(live.withdrawn, None);
    assert_eq!(on(&live, os("debian", "12"), &[installed]).len(), 1);

    let withdrawn = osv::parse(record(r#""withdrawn": "2024-02-01T00:00:00Z","#).as_bytes()).unwrap();
    assert_eq!(withdrawn.withdrawn, Some("2024-02-01T00:00:00Z".parse().unwrap()));
    assert_eq!(on(&withdrawn, os("debian", "12"), &[installed]), []);
    assert_eq!(withdrawn.product_names(), live.product_names(), "its names are kept");

    let mut by_hand = advisory(&["CVE-1"], vec![below("widget", Ecosystem::Semver, "2.0.0")]);
    by_hand.withdrawn = withdrawn.withdrawn;
    assert_eq!(managed(&by_hand, UNKNOWN_OS, &[("widget", "1.0.0")]), []);
}

#[test]
fn cve_records_name_their_own_id_and_match_managed_products() {
    let record = CveRecord {
        id: "CVE-2099-0001".to_string(),
        format: Format::Cve5,
        published: None,
        updated: None,
        title: None,
        description: None,
        cvss: Vec::new(),
        rating: None,
        affected: vec![below("widget", Ecosystem::Semver, "2.0.0")],
        cpes: Vec::new(),
        kev: None,
    };
    let installed = ("widget", "1.9.9");
    assert_eq!(
        cve_managed(&record, UNKNOWN_OS, &[installed]),
        [finding("CVE-2099-0001", installed, Some("2.0.0"), None, &["CVE-2099-0001"])]
    );
    assert_eq!(cve_on(&record, os("debian", "12"), &[installed]), [], "not a distribution package");
    let mut on_linux = record.clone();
    on_linux.affected[0].platform = Some("Linux, Windows".to_string());
    assert_eq!(cve_managed(&on_linux, os("debian", "12"), &[installed]), [], "free text that does not name the OS");
    assert_eq!(cve_managed(&on_linux, os("windows", "10.0.19045"), &[installed]).len(), 1);
    assert_eq!(cve_on(&on_linux, os("windows", "10.0.19045"), &[installed]), []);
}

// ---------------------------------------------------------------------------------------------
// Platforms

/// A platform, an endpoint's os-release `ID` and `VERSION_ID`, and whether the platform applies.
type PlatformCase<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, bool);

/// Asserts `platform_matches(platform, id, version) == want` for each case.
fn check_platforms(cases: &[PlatformCase<'_>]) {
    for &(platform, id, version, want) in cases {
        assert_eq!(platform_matches(platform, id, version), want, "{platform:?} on {id:?} {version:?}");
    }
}

#[test]
fn no_platform_applies_everywhere() {
    check_platforms(&[
        (None, None, None, true),
        (None, Some("debian"), Some("12"), true),
        (Some("  "), None, None, true),
    ]);
}

#[test]
fn package_ecosystems_apply_everywhere() {
    let mut cases = Vec::new();
    for platform in ["Maven", "npm", "PyPI", "crates.io", "Go", "NuGet", "RubyGems", "Packagist", "pypi"] {
        cases.push((Some(platform), None, None, true));
        cases.push((Some(platform), Some("debian"), Some("12"), true));
        cases.push((Some(platform), Some("windows"), None, true));
    }
    cases.push((Some("Maven:https://repo.maven.apache.org/maven2"), None, None, true));
    check_platforms(&cases);
}

#[test]
fn osv_os_releases_match_version_id_and_its_point_releases() {
    check_platforms(&[
        (Some("Debian:7"), Some("debian"), Some("7"), true),
        (Some("Debian:7"), Some("debian"), Some("7.11"), true),
        (Some("Debian:7"), Some("debian"), Some("70"), false),
        (Some("Debian:7"), Some("debian"), Some("8"), false),
        (Some("Debian:7"), Some("ubuntu"), Some("7"), false),
        (Some("Debian:7"), Some("debian"), None, false),
        (Some("Debian:7"), None, None, false),
        (Some("debian:7"), Some("DEBIAN"), Some("7"), true),
        (Some("Ubuntu:22.04:LTS"), Some("ubuntu"), Some("22.04"), true),
        (Some("Ubuntu:22.04:LTS"), Some("ubuntu"), Some("22.10"), false),
        (Some("Ubuntu:22.04:LTS"), Some("ubuntu"), Some("20.04"), false),
        (Some("Ubuntu:Pro:14.04:LTS"), Some("ubuntu"), Some("14.04"), true),
        (Some("Ubuntu:Pro:FIPS-updates:20.04:LTS"), Some("ubuntu"), Some("20.04"), true),
        (Some("AlmaLinux:8"), Some("almalinux"), Some("8.9"), true),
        (Some("AlmaLinux:8"), Some("rhel"), Some("8.9"), false),
        (Some("Rocky Linux:9"), Some("rocky"), Some("9.3"), true),
        (Some("Rocky Linux:9"), Some("almalinux"), Some("9.3"), false),
        (Some("Alpine:v3.18"), Some("alpine"), Some("3.18.4"), true),
        (Some("Alpine:v3.18"), Some("alpine"), Some("3.19.1"), false),
        (Some("Alpine:v3.1"), Some("alpine"), Some("3.18.4"), false),
        (Some("openEuler:22.03-LTS-SP1"), Some("openEuler"), Some("22.03"), true),
        (Some("Azure Linux:3"), Some("azurelinux"), Some("3.0"), true),
    ]);
}

#[test]
fn osv_os_names_without_a_release_apply_to_every_release() {
    check_platforms(&[
        (Some("Debian"), Some("debian"), Some("12"), true),
        (Some("Debian"), Some("debian"), None, true),
        (Some("Debian"), Some("ubuntu"), Some("22.04"), false),
        (Some("Debian"), None, None, false),
        (Some("Ubuntu"), Some("ubuntu"), Some("24.04"), true),
        // A suffix with no release to compare cannot be matched.
        (Some("Debian:sid"), Some("debian"), Some("12"), false),
        (Some("Debian:sid"), Some("debian"), None, false),
    ]);
}

#[test]
fn osv_red_hat_ecosystems_are_rhel_products_only() {
    check_platforms(&[
        (Some("Red Hat:enterprise_linux:9::appstream"), Some("rhel"), Some("9.4"), true),
        (Some("Red Hat:enterprise_linux:9::appstream"), Some("rhel"), Some("8.10"), false),
        (Some("Red Hat:enterprise_linux:9::appstream"), Some("almalinux"), Some("9.4"), false),
        (Some("Red Hat:rhel_aus:7.6::server"), Some("rhel"), Some("7.6"), true),
        (Some("Red Hat:rhel_aus:7.6::server"), Some("rhel"), Some("7.9"), false),
        (Some("Red Hat:openshift:4.13::el8"), Some("rhel"), Some("4.13"), false),
        (Some("Red Hat"), Some("rhel"), Some("9.4"), true),
    ]);
}

#[test]
fn osv_suse_ecosystems_name_edition_and_service_pack() {
    check_platforms(&[
        (Some("SUSE:Linux Enterprise Server 15 SP5"), Some("sles"), Some("15.5"), true),
        (Some("SUSE:Linux Enterprise Server 15 SP5"), Some("sles"), Some("15.4"), false),
        (Some("SUSE:Linux Enterprise Server 15 SP5"), Some("sled"), Some("15.5"), false),
        (Some("SUSE:Linux Enterprise Server 15 SP5-LTSS"), Some("sles"), Some("15.5"), true),
        (Some("SUSE:Linux Enterprise Server 15"), Some("sles"), Some("15"), true),
        (Some("SUSE:Linux Enterprise Server 15"), Some("sles"), Some("15.5"), false),
        (Some("SUSE:Linux Enterprise Desktop 15 SP5"), Some("sled"), Some("15.5"), true),
        (Some("SUSE:Linux Enterprise Server for SAP Applications 15 SP5"), Some("sles_sap"), Some("15.5"), true),
        (Some("SUSE:Linux Enterprise Module for Basesystem 15 SP5"), Some("sles"), Some("15.5"), true),
        (Some("SUSE:Linux Enterprise Module for Basesystem 15 SP5"), Some("sled"), Some("15.5"), true),
        (Some("SUSE:Linux Enterprise Micro 5.5"), Some("sle-micro"), Some("5.5"), true),
        (Some("SUSE:Linux Enterprise Micro 5.5"), Some("sles"), Some("5.5"), false),
        (Some("openSUSE:Leap 15.5"), Some("opensuse-leap"), Some("15.5"), true),
        (Some("openSUSE:Leap 15.5"), Some("opensuse-leap"), Some("15.6"), false),
        (Some("openSUSE:Leap 15.5"), Some("opensuse-tumbleweed"), Some("20240101"), false),
        (Some("openSUSE:Leap Micro 5.5"), Some("opensuse-leap-micro"), Some("5.5"), true),
        (Some("openSUSE:Leap Micro 5.5"), Some("opensuse-leap"), Some("5.5"), false),
        (Some("openSUSE:Tumbleweed"), Some("opensuse-tumbleweed"), Some("20240101"), true),
        (Some("openSUSE:Tumbleweed"), Some("opensuse-leap"), Some("15.5"), false),
        (Some("openSUSE"), Some("opensuse-leap"), Some("15.5"), true),
    ]);
}

#[test]
fn red_hat_csaf_products_match_rhel_in_the_same_major_release() {
    check_platforms(&[
        (Some("Red Hat Enterprise Linux Server AUS (v. 7.6)"), Some("rhel"), Some("7.6"), true),
        (Some("Red Hat Enterprise Linux Server AUS (v. 7.6)"), Some("rhel"), Some("7.9"), true),
        (Some("Red Hat Enterprise Linux Server AUS (v. 7.6)"), Some("rhel"), Some("7"), true),
        (Some("Red Hat Enterprise Linux Server AUS (v. 7.6)"), Some("rhel"), Some("8.6"), false),
        (Some("Red Hat Enterprise Linux Server AUS (v. 7.6)"), Some("rhel"), Some("70.1"), false),
        (Some("Red Hat Enterprise Linux Server AUS (v. 7.6)"), Some("rhel"), None, false),
        (Some("Red Hat Enterprise Linux Server AUS (v. 7.6)"), Some("almalinux"), Some("7.6"), false),
        (Some("Red Hat Enterprise Linux Server AUS (v. 7.6)"), Some("rocky"), Some("7.6"), false),
        (Some("Red Hat Enterprise Linux Server AUS (v. 7.6)"), None, None, false),
        (Some("Red Hat Enterprise Linux AppStream (v. 8)"), Some("rhel"), Some("8.10"), true),
        (Some("Red Hat Enterprise Linux AppStream (v. 8)"), Some("rhel"), Some("9.4"), false),
        (Some("Red Hat Enterprise Linux 9"), Some("rhel"), Some("9.4"), true),
        (Some("Red Hat Enterprise Linux for x86_64 - Extended Update Support 8.6"), Some("rhel"), Some("8.6"), true),
        (Some("Red Hat CodeReady Linux Builder (v. 9)"), Some("rhel"), Some("9.2"), true),
        (Some("Red Hat Enterprise Linux"), Some("rhel"), Some("6.10"), true),
        // `(v.` without the space, as some product names write it.
        (Some("Red Hat Enterprise Linux AppStream EUS (v.8.4)"), Some("rhel"), Some("8.4"), true),
        (Some("Red Hat Enterprise Linux AppStream EUS (v.8.4)"), Some("rhel"), Some("8.10"), true),
        (Some("Red Hat Enterprise Linux AppStream EUS (v.8.4)"), Some("rhel"), Some("9.2"), false),
        // A `(v` whose release cannot be read applies nowhere, not to every release.
        (Some("Red Hat Enterprise Linux Server (v. next)"), Some("rhel"), Some("7.9"), false),
        (Some("Red Hat Enterprise Linux Server (v.)"), Some("rhel"), Some("7.9"), false),
        (Some("Red Hat OpenShift Container Platform 4.6"), Some("rhel"), Some("8.6"), false),
        (Some("Red Hat OpenShift Container Platform 4.6"), Some("rhel"), Some("4.6"), false),
        (Some("Red Hat JBoss Enterprise Application Platform 7"), Some("rhel"), Some("7.9"), false),
    ]);
}

#[test]
fn other_free_text_matches_only_an_os_it_names() {
    check_platforms(&[
        (Some("Windows 10 Version 1607 for x64-based Systems"), Some("windows"), None, true),
        (Some("Windows 10 Version 1607 for x64-based Systems"), Some("debian"), Some("12"), false),
        (Some("Windows 10 Version 1607 for x64-based Systems"), None, None, false),
        (Some("Linux, Windows"), Some("windows"), Some("10.0.19045"), true),
        (Some("Linux, Windows"), Some("debian"), Some("12"), false),
        (Some("Debian GNU/Linux 12"), Some("debian"), Some("12"), true),
        (Some("Linux"), Some("ubuntu"), Some("22.04"), false),
        (Some("Android"), Some("ubuntu"), Some("22.04"), false),
        // The ID must be a whole word of the text.
        (Some("Windowsill Controller"), Some("windows"), None, false),
        (Some("opensuse-leap-micro 5.5"), Some("opensuse-leap"), Some("5.5"), false),
        (Some("SUSE Linux Enterprise Server 15 SP5"), Some("sles"), Some("15.5"), false),
    ]);
}
