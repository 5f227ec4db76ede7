//! The CVE JSON 5 and NVD API 2.0 readers against the records in `shared/advisories`: Red Hat's
//! CVE-2024-3094 (xz; a 5.2 record with a package-only entry and unaffected Red Hat products),
//! MITRE's CVE-2023-38408 (OpenSSH; a 5.0 record with no-zone dates and `n/a` placeholders)
//! and NVD's CVE-2023-4863 (libwebp; CPE ranges and CISA's KEV dates).
//!
//! The facts asserted come from reading the documents (research notes §6.10 to §6.12). When
//! the shared directory is absent the tests say so and pass.

#![allow(clippy::unwrap_used)]

mod common;

use rollgate_advisories::{cve, nvd, parse, CpeMatch, CveRecord, Document, Format};
use rollgate_core::ecosystem::Ecosystem;

fn xz() -> Option<CveRecord> {
    common::shared_bytes("cve5_CVE-2024-3094_xz.json").map(|b| cve::parse(&b).unwrap())
}

fn openssh() -> Option<CveRecord> {
    common::shared_bytes("cve5_CVE-2023-38408_openssh.json").map(|b| cve::parse(&b).unwrap())
}

fn libwebp() -> Option<Vec<CveRecord>> {
    common::shared_bytes("nvd_api2_CVE-2023-4863_libwebp.json").map(|b| nvd::parse(&b).unwrap())
}

/// The CPE criteria for `criteria`, in document order.
fn cpes<'a>(record: &'a CveRecord, criteria: &str) -> Vec<&'a CpeMatch> {
    record.cpes.iter().filter(|c| c.criteria == criteria).collect()
}

#[test]
fn xz_record_metadata_title_and_score() {
    let Some(record) = xz() else { return };
    assert_eq!((record.id.as_str(), record.format), ("CVE-2024-3094", Format::Cve5));
    assert_eq!(record.published.unwrap().to_string(), "2024-03-29T16:51:12.588Z");
    assert_eq!(record.updated.unwrap().to_string(), "2025-11-20T07:17:48.594Z");
    assert_eq!(record.title.as_deref(), Some("Xz: malicious code in distributed source"));
    assert!(record
        .description
        .as_deref()
        .unwrap()
        .starts_with("Malicious code was discovered in the upstream tarballs of xz"));
    assert_eq!(record.cvss.len(), 1, "the ADP containers add SSVC only");
    let cvss = &record.cvss[0];
    assert_eq!(cvss.vector, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H");
    assert_eq!((cvss.version.as_str(), cvss.base_score), ("3.1", Some(10.0)));
    assert_eq!(record.rating.as_deref(), Some("Critical"), "Red Hat severity rating");
    assert_eq!(record.kev, None);
}

#[test]
fn xz_affected_versions_are_the_two_upstream_releases() {
    let Some(record) = xz() else { return };
    assert_eq!(record.affected.len(), 1, "the six Red Hat products are unaffected (no versions, default unaffected)");
    let xz = &record.affected[0];
    assert_eq!(xz.product, "xz", "from packageName: the entry has no product");
    assert!(xz.package_names.is_empty(), "the package name is the product");
    assert_eq!(xz.platform, None);
    assert_eq!(xz.ecosystem, Ecosystem::Generic, "no versionType");
    assert_eq!(xz.versions, ["5.6.0", "5.6.1"]);
    assert!(xz.ranges.is_empty());
    assert!(record.cpes.is_empty(), "the Red Hat CPEs belong to unaffected entries");
}

#[test]
fn openssh_record_has_no_zone_dates_and_only_placeholders_for_products() {
    let Some(record) = openssh() else { return };
    assert_eq!(record.id, "CVE-2023-38408");
    assert_eq!(record.published.unwrap().to_string(), "2023-07-20T00:00:00Z");
    assert_eq!(record.updated.unwrap().to_string(), "2023-08-03T00:00:00Z");
    let description = record.description.as_deref().unwrap();
    assert!(description.starts_with("The PKCS#11 feature in ssh-agent in OpenSSH before 9.3p2"));
    let title = record.title.as_deref().unwrap();
    assert!(title.starts_with("The PKCS#11 feature") && title.ends_with('…'), "no CNA title: {title}");
    assert!(title.chars().count() < description.chars().count());
    assert!(record.affected.is_empty(), "vendor, product and version are all n/a");
    assert!(record.cvss.is_empty() && record.rating.is_none() && record.cpes.is_empty());
}

#[test]
fn nvd_libwebp_record() {
    let Some(records) = libwebp() else { return };
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!((record.id.as_str(), record.format), ("CVE-2023-4863", Format::Nvd));
    assert_eq!(record.published.unwrap().to_string(), "2023-09-12T15:15:24.327Z");
    assert_eq!(record.updated.unwrap().to_string(), "2023-10-28T19:15:38.643Z");
    assert!(record.description.as_deref().unwrap().starts_with("Heap buffer overflow in libwebp in Google Chrome"));
    assert_eq!(record.cvss.len(), 1);
    assert_eq!(record.cvss[0].vector, "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H");
    assert_eq!(record.cvss[0].base_score, Some(8.8));
    assert!(record.affected.is_empty(), "NVD names products by CPE only");
}

#[test]
fn nvd_libwebp_cpe_ranges() {
    let Some(records) = libwebp() else { return };
    let record = &records[0];
    assert_eq!(record.cpes.len(), 14);
    assert!(record.cpes.iter().all(|c| c.vulnerable));
    let end_excluding = |criteria: &str| -> Vec<Option<&str>> {
        cpes(record, criteria).iter().map(|c| c.end_excluding.as_deref()).collect()
    };
    assert_eq!(end_excluding("cpe:2.3:a:google:chrome:*:*:*:*:*:*:*:*"), [Some("116.0.5845.187")]);
    assert_eq!(end_excluding("cpe:2.3:a:webmproject:libwebp:*:*:*:*:*:*:*:*"), [Some("1.3.2")]);
    assert_eq!(end_excluding("cpe:2.3:a:mozilla:firefox:*:*:*:*:*:*:*:*"), [Some("117.0.1")]);
    assert_eq!(end_excluding("cpe:2.3:a:microsoft:edge:*:*:*:*:*:*:*:*"), [Some("117.0.2045.31")]);
    let esr = cpes(record, "cpe:2.3:a:mozilla:firefox_esr:*:*:*:*:*:*:*:*");
    assert_eq!((esr[0].start_including.as_deref(), esr[0].end_excluding.as_deref()), (None, Some("102.15.1")));
    assert_eq!((esr[1].start_including.as_deref(), esr[1].end_excluding.as_deref()), (Some("115.0"), Some("115.2.1")));
    let thunderbird = cpes(record, "cpe:2.3:a:mozilla:thunderbird:*:*:*:*:*:*:*:*");
    assert_eq!(
        (thunderbird[1].start_including.as_deref(), thunderbird[1].end_excluding.as_deref()),
        (Some("115.0"), Some("115.2.2"))
    );
    let fedora = cpes(record, "cpe:2.3:o:fedoraproject:fedora:37:*:*:*:*:*:*:*")[0];
    assert!(fedora.start_including.is_none() && fedora.start_excluding.is_none());
    assert!(fedora.end_including.is_none() && fedora.end_excluding.is_none(), "an exact version, no range");
    assert_eq!(cpes(record, "cpe:2.3:o:debian:debian_linux:12.0:*:*:*:*:*:*:*").len(), 1);
}

#[test]
fn nvd_libwebp_carries_cisa_kev_dates() {
    let Some(records) = libwebp() else { return };
    let kev = records[0].kev.clone().unwrap();
    assert_eq!(kev.date_added.to_string(), "2023-09-13");
    assert_eq!(kev.due_date.unwrap().to_string(), "2023-10-04");
    assert!(kev.required_action.unwrap().starts_with("Apply mitigations per vendor instructions"));
    assert_eq!(kev.ransomware, None, "NVD does not copy it");
}

#[test]
fn detection_routes_cve5_and_nvd_documents_to_these_readers() {
    for file in
        ["cve5_CVE-2024-3094_xz.json", "cve5_CVE-2023-38408_openssh.json", "nvd_api2_CVE-2023-4863_libwebp.json"]
    {
        let Some(bytes) = common::shared_bytes(file) else { return };
        let Document::Cves(records) = parse(&bytes).unwrap() else { panic!("{file} is not read as CVE records") };
        let expected =
            if file.starts_with("nvd") { nvd::parse(&bytes).unwrap() } else { vec![cve::parse(&bytes).unwrap()] };
        assert_eq!(records, expected, "{file}");
    }
}

#[test]
fn truncated_shared_documents_are_invalid_not_a_panic() {
    let Some(xz) = common::shared_bytes("cve5_CVE-2024-3094_xz.json") else { return };
    let Some(libwebp) = common::shared_bytes("nvd_api2_CVE-2023-4863_libwebp.json") else { return };
    for cut in [1, xz.len() / 3, xz.len() - 2] {
        let error = cve::parse(&xz[..cut]).unwrap_err().to_string();
        assert!(error.starts_with("cve5 document: the JSON does not parse"), "{error}");
    }
    for cut in [1, libwebp.len() / 2, libwebp.len() - 2] {
        let error = nvd::parse(&libwebp[..cut]).unwrap_err().to_string();
        assert!(error.starts_with("nvd document: the JSON does not parse"), "{error}");
    }
}

#[test]
fn shared_documents_without_their_id_are_invalid() {
    let Some(xz) = common::shared_bytes("cve5_CVE-2024-3094_xz.json") else { return };
    let Some(libwebp) = common::shared_bytes("nvd_api2_CVE-2023-4863_libwebp.json") else { return };
    let mut record: serde_json::Value = serde_json::from_slice(&xz).unwrap();
    record["cveMetadata"].as_object_mut().unwrap().remove("cveId");
    let error = cve::parse(record.to_string().as_bytes()).unwrap_err().to_string();
    assert_eq!(error, "cve5 document: cveMetadata.cveId is missing or empty");
    let mut response: serde_json::Value = serde_json::from_slice(&libwebp).unwrap();
    response["vulnerabilities"][0]["cve"]["id"] = serde_json::Value::String(String::new());
    let error = nvd::parse(response.to_string().as_bytes()).unwrap_err().to_string();
    assert_eq!(error, "nvd document: vulnerabilities[0].cve.id is missing or empty");
}
