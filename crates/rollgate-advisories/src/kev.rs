//! CISA's Known Exploited Vulnerabilities catalog (`known_exploited_vulnerabilities.json`)
//! read into a [`KevCatalog`].
//!
//! No crate reads it. Only what the published schema requires plus the ransomware field is
//! read; unknown keys are ignored (excerpts add `_excerpt_note`) and `count` is not checked
//! against the entries, since an excerpt keeps the full catalog's count.

use serde::Deserialize;

use crate::model::*;
use crate::nvd::non_empty;
use crate::{dates, strip_bom, ParseError};

/// Reads a KEV catalog.
///
/// Fails with [`ParseError::Invalid`] when the JSON does not parse, has no `catalogVersion` or
/// `vulnerabilities`, or holds an entry without `cveID` or with a date that is not a date.
pub fn parse(bytes: &[u8]) -> Result<KevCatalog, ParseError> {
    let catalog: Catalog = serde_json::from_slice(strip_bom(bytes))
        .map_err(|e| invalid(format!("the JSON does not parse as a KEV catalog: {e}")))?;
    let version = non_empty(catalog.catalog_version.as_deref()).ok_or_else(|| {
        invalid("catalogVersion is missing or empty (CISA writes the release date there, as in `2025.08.25`)")
    })?;
    let entries = catalog.vulnerabilities.ok_or_else(|| invalid("there is no `vulnerabilities` array"))?;
    Ok(KevCatalog {
        version,
        released: dates::optional(catalog.date_released.as_deref())
            .map_err(|e| invalid(format!("dateReleased: {e}")))?,
        entries: entries
            .into_iter()
            .enumerate()
            .map(|(index, entry)| to_entry(entry, index))
            .collect::<Result<_, _>>()?,
    })
}

fn invalid(reason: impl std::fmt::Display) -> ParseError {
    ParseError::invalid(Format::Kev, reason)
}

fn to_entry(entry: Entry, index: usize) -> Result<KevEntry, ParseError> {
    let cve = non_empty(entry.cve_id.as_deref())
        .ok_or_else(|| invalid(format!("vulnerabilities[{index}].cveID is missing or empty")))?;
    let at = |field: &str, e: String| invalid(format!("vulnerabilities[{index}] ({cve}): {field}: {e}"));
    let added = non_empty(entry.date_added.as_deref()).ok_or_else(|| at("dateAdded", "is missing".to_string()))?;
    let due_date = match non_empty(entry.due_date.as_deref()) {
        Some(due) => Some(dates::date(&due).map_err(|e| at("dueDate", e))?),
        None => None,
    };
    let facts = KevFacts {
        date_added: dates::date(&added).map_err(|e| at("dateAdded", e))?,
        due_date,
        required_action: non_empty(entry.required_action.as_deref()),
        ransomware: non_empty(entry.known_ransomware_campaign_use.as_deref()),
    };
    Ok(KevEntry {
        vendor: non_empty(entry.vendor_project.as_deref()).unwrap_or_default(),
        product: non_empty(entry.product.as_deref()).unwrap_or_default(),
        // Names are trimmed: some carry a trailing space (CVE-2024-35250).
        name: non_empty(entry.vulnerability_name.as_deref()),
        facts,
        cve,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Catalog {
    catalog_version: Option<String>,
    date_released: Option<String>,
    vulnerabilities: Option<Vec<Entry>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    #[serde(rename = "cveID")]
    cve_id: Option<String>,
    vendor_project: Option<String>,
    product: Option<String>,
    vulnerability_name: Option<String>,
    date_added: Option<String>,
    due_date: Option<String>,
    required_action: Option<String>,
    known_ransomware_campaign_use: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"title":"t","catalogVersion":"2099.01.02","dateReleased":"2099-01-02T17:04:19.9796Z","count":9,
        "vulnerabilities":[{"cveID":"CVE-2099-0001","vendorProject":"Acme","product":"Widget","vulnerabilityName":"Bug ",
        "dateAdded":"2099-01-01","dueDate":"2099-01-22","requiredAction":"Patch.","knownRansomwareCampaignUse":"Known","cwes":[]}]}"#;

    fn reason(result: Result<KevCatalog, ParseError>) -> String {
        match result {
            Err(ParseError::Invalid { format: "kev", reason }) => reason,
            other => panic!("expected an invalid KEV catalog, got {other:?}"),
        }
    }

    #[test]
    fn a_minimal_catalog_is_read_without_checking_its_count() {
        let catalog = parse(MINIMAL.as_bytes()).unwrap();
        assert_eq!((catalog.version.as_str(), catalog.entries.len()), ("2099.01.02", 1));
        let entry = &catalog.entries[0];
        assert_eq!(entry.name.as_deref(), Some("Bug"));
        assert_eq!(entry.facts.due_date.unwrap().to_string(), "2099-01-22");
        assert_eq!(entry.facts.ransomware.as_deref(), Some("Known"));
    }

    #[test]
    fn truncated_json_is_invalid() {
        assert!(reason(parse(&MINIMAL.as_bytes()[..120])).contains("does not parse"));
    }

    #[test]
    fn missing_ids_and_bad_dates_are_invalid() {
        let without_version = MINIMAL.replace(r#""catalogVersion":"2099.01.02","#, "");
        assert!(reason(parse(without_version.as_bytes())).starts_with("catalogVersion is missing"));
        let without_cve = MINIMAL.replace(r#""cveID":"CVE-2099-0001","#, "");
        assert_eq!(reason(parse(without_cve.as_bytes())), "vulnerabilities[0].cveID is missing or empty");
        let bad_date = MINIMAL.replace("2099-01-22", "soon");
        assert!(reason(parse(bad_date.as_bytes())).starts_with("vulnerabilities[0] (CVE-2099-0001): dueDate"));
        let without_added = MINIMAL.replace(r#""dateAdded":"2099-01-01","#, "");
        assert_eq!(
            reason(parse(without_added.as_bytes())),
            "vulnerabilities[0] (CVE-2099-0001): dateAdded: is missing"
        );
        assert!(reason(parse(br#"{"catalogVersion":"1"}"#)).contains("no `vulnerabilities` array"));
    }
}
