//! The KEV reader against the catalog excerpt in `shared/advisories` (51 entries of the
//! 2025.08.25 catalog, whose `count` still says 1404 and which adds an `_excerpt_note` key).
//!
//! The facts asserted come from reading the document (research notes §6.13). When the shared
//! directory is absent the tests say so and pass.

#![allow(clippy::unwrap_used)]

mod common;

use rollgate_advisories::{kev, nvd, parse, Document, KevCatalog, KevEntry};

const CATALOG: &str = "kev_catalog_EXCERPT_2025-08-25.json";

fn catalog() -> Option<KevCatalog> {
    common::shared_bytes(CATALOG).map(|b| kev::parse(&b).unwrap())
}

fn entry<'a>(catalog: &'a KevCatalog, cve: &str) -> &'a KevEntry {
    catalog.entries.iter().find(|e| e.cve == cve).unwrap_or_else(|| panic!("{cve} is not in the catalog"))
}

#[test]
fn catalog_header_and_every_entry_despite_the_stated_count() {
    let Some(catalog) = catalog() else { return };
    assert_eq!(catalog.version, "2025.08.25");
    assert_eq!(catalog.released.unwrap().to_string(), "2025-08-25T17:04:19.9796Z");
    assert_eq!(catalog.entries.len(), 51, "the excerpt's count (1404) is the full catalog's");
    let ransomware =
        |value: &str| catalog.entries.iter().filter(|e| e.facts.ransomware.as_deref() == Some(value)).count();
    assert_eq!((ransomware("Known"), ransomware("Unknown")), (7, 44));
    assert!(catalog.entries.iter().all(|e| e.facts.due_date.is_some() && e.facts.required_action.is_some()));
}

#[test]
fn log4shell_entry() {
    let Some(catalog) = catalog() else { return };
    let log4j = entry(&catalog, "CVE-2021-44228");
    assert_eq!((log4j.vendor.as_str(), log4j.product.as_str()), ("Apache", "Log4j2"));
    assert_eq!(log4j.facts.date_added.to_string(), "2021-12-10");
    assert_eq!(log4j.facts.due_date.unwrap().to_string(), "2021-12-24");
    assert_eq!(log4j.facts.ransomware.as_deref(), Some("Known"));
    assert!(log4j.name.as_deref().unwrap().contains("Log4j2"));
}

#[test]
fn libwebp_entry_agrees_with_nvd() {
    let Some(catalog) = catalog() else { return };
    let webp = entry(&catalog, "CVE-2023-4863");
    assert_eq!((webp.vendor.as_str(), webp.product.as_str()), ("Google", "Chromium WebP"));
    assert_eq!(webp.facts.date_added.to_string(), "2023-09-13");
    assert_eq!(webp.facts.due_date.unwrap().to_string(), "2023-10-04");
    assert_eq!(webp.facts.ransomware.as_deref(), Some("Unknown"));
    let Some(nvd_bytes) = common::shared_bytes("nvd_api2_CVE-2023-4863_libwebp.json") else { return };
    let from_nvd = nvd::parse(&nvd_bytes).unwrap().remove(0).kev.unwrap();
    assert_eq!((from_nvd.date_added, from_nvd.due_date), (webp.facts.date_added, webp.facts.due_date));
    assert_eq!(from_nvd.required_action, webp.facts.required_action);
}

#[test]
fn other_entries_and_trimmed_names() {
    let Some(catalog) = catalog() else { return };
    let heartbleed = entry(&catalog, "CVE-2014-0160");
    assert_eq!(
        (heartbleed.facts.date_added.to_string(), heartbleed.facts.due_date.unwrap().to_string()),
        ("2022-05-04".to_string(), "2022-05-25".to_string())
    );
    let sharepoint = entry(&catalog, "CVE-2024-38094");
    assert_eq!((sharepoint.vendor.as_str(), sharepoint.product.as_str()), ("Microsoft", "SharePoint"));
    assert_eq!(sharepoint.facts.ransomware.as_deref(), Some("Known"));
    let kernel = entry(&catalog, "CVE-2024-35250");
    assert_eq!(kernel.facts.date_added.to_string(), "2024-12-16");
    let name = kernel.name.as_deref().unwrap();
    assert!(name.ends_with("Vulnerability"), "the published trailing space is trimmed: {name:?}");
}

#[test]
fn detection_routes_the_catalog_to_this_reader() {
    let Some(bytes) = common::shared_bytes(CATALOG) else { return };
    let Document::Kev(catalog) = parse(&bytes).unwrap() else { panic!("the catalog is not read as KEV") };
    assert_eq!(catalog, kev::parse(&bytes).unwrap());
}

#[test]
fn a_truncated_catalog_or_one_without_version_is_invalid() {
    let Some(bytes) = common::shared_bytes(CATALOG) else { return };
    for cut in [1, bytes.len() / 2, bytes.len() - 2] {
        let error = kev::parse(&bytes[..cut]).unwrap_err().to_string();
        assert!(error.starts_with("kev document: the JSON does not parse"), "{error}");
    }
    let mut catalog: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    catalog.as_object_mut().unwrap().remove("catalogVersion");
    let error = kev::parse(catalog.to_string().as_bytes()).unwrap_err().to_string();
    assert!(error.starts_with("kev document: catalogVersion is missing"), "{error}");
    let mut catalog: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    catalog["vulnerabilities"][3].as_object_mut().unwrap().remove("cveID");
    let error = kev::parse(catalog.to_string().as_bytes()).unwrap_err().to_string();
    assert_eq!(error, "kev document: vulnerabilities[3].cveID is missing or empty");
}
