//! OSV records (Debian DSA/DLA, Ubuntu USN and UBUNTU-CVE, GitHub GHSA and the rest of
//! osv.dev) read into an [`Advisory`].
//!
//! The ecosystem stays a string (`Debian:7`, `Ubuntu:Pro:14.04:LTS`): it becomes the platform
//! as written, and [`Ecosystem::for_osv`] picks the version order, so an ecosystem OSV adds
//! later degrades to the generic order instead of failing the record. Ubuntu keeps its most
//! useful data outside the standard fields, and it is read too: the CVEs of a USN are in
//! `upstream` (`UBUNTU-CVE-2024-2511`), per-CVE CVSS vectors and priorities in
//! `affected[].database_specific.cves_map`, and the binary packages built from the source
//! package in `affected[].ecosystem_specific.binaries`.

use rollgate_core::ecosystem::{Ecosystem, Range};
use serde::Deserialize;
use serde_json::Value;

use crate::model::*;
use crate::{dates, score, shorten, ParseError};

/// Longest title made from `details` when a record has no summary.
const MAX_TITLE_CHARS: usize = 120;

/// Reads an OSV record.
///
/// Fails when the bytes are not JSON of the OSV shape, when `id` is missing, or when a date
/// does not parse.
pub fn parse(bytes: &[u8]) -> Result<Advisory, ParseError> {
    let record: OsvRecord =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("not an OSV JSON record: {e}")))?;
    let id = non_empty(record.id.as_deref()).ok_or_else(|| invalid("`id` is missing or empty"))?;
    let rating = record_rating(&record);
    let affected: Vec<Affected> = record.affected.iter().filter_map(affected).collect();
    let advisory_url = advisory_url(&record.references);
    Ok(Advisory {
        format: Format::Osv,
        title: title(&record, &id),
        publisher: publisher(&id, &record.affected),
        published: date(record.published.as_deref(), "published")?,
        updated: date(record.modified.as_deref(), "modified")?,
        withdrawn: date(record.withdrawn.as_deref(), "withdrawn")?,
        revision: None,
        vulnerabilities: vulnerabilities(&record, &id, rating.as_deref()),
        remediations: affected.iter().flat_map(|a| vendor_fixes(a, advisory_url.as_deref())).collect(),
        references: references(&record.references),
        rating,
        affected,
        id,
    })
}

fn invalid(reason: impl std::fmt::Display) -> ParseError {
    ParseError::invalid(Format::Osv, reason)
}

fn non_empty(text: Option<&str>) -> Option<String> {
    text.map(str::trim).filter(|t| !t.is_empty()).map(str::to_string)
}

fn date(text: Option<&str>, field: &str) -> Result<Option<jiff::Timestamp>, ParseError> {
    dates::optional(text).map_err(|e| invalid(format!("`{field}`: {e}")))
}

// ---------------------------------------------------------------------------------------------
// The subset of the OSV schema that is read. Permissive on purpose: unknown fields are
// ignored, every optional section defaults, and the free-form `*_specific` objects are read
// field by field so that an unexpected shape there loses that field, not the record.

#[derive(Deserialize)]
struct OsvRecord {
    id: Option<String>,
    summary: Option<String>,
    details: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    upstream: Vec<String>,
    published: Option<String>,
    modified: Option<String>,
    withdrawn: Option<String>,
    #[serde(default)]
    severity: Vec<Severity>,
    #[serde(default)]
    affected: Vec<OsvAffected>,
    #[serde(default)]
    references: Vec<OsvReference>,
    #[serde(default)]
    database_specific: Value,
}

#[derive(Clone, Deserialize)]
struct Severity {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    score: String,
}

#[derive(Deserialize)]
struct OsvAffected {
    package: Option<Package>,
    #[serde(default)]
    severity: Vec<Severity>,
    #[serde(default)]
    ranges: Vec<OsvRange>,
    #[serde(default)]
    versions: Vec<String>,
    #[serde(default)]
    ecosystem_specific: Value,
    #[serde(default)]
    database_specific: Value,
}

#[derive(Deserialize)]
struct Package {
    #[serde(default)]
    ecosystem: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct OsvRange {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    events: Vec<Event>,
}

#[derive(Deserialize)]
struct Event {
    introduced: Option<String>,
    fixed: Option<String>,
    last_affected: Option<String>,
}

#[derive(Deserialize)]
struct OsvReference {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    url: String,
}

/// Ubuntu's `affected[].database_specific.cves_map`.
#[derive(Deserialize)]
struct CvesMap {
    #[serde(default)]
    cves: Vec<CveSeverity>,
}

#[derive(Deserialize)]
struct CveSeverity {
    id: String,
    #[serde(default)]
    severity: Vec<Severity>,
}

/// One entry of Ubuntu's `affected[].ecosystem_specific.binaries`.
#[derive(Deserialize)]
struct Binary {
    binary_name: String,
}

impl OsvAffected {
    /// Ubuntu's per-CVE severities for this package, empty for other sources.
    fn cves_map(&self) -> Vec<CveSeverity> {
        let map = self.database_specific.get("cves_map").cloned().unwrap_or(Value::Null);
        serde_json::from_value::<CvesMap>(map).map(|m| m.cves).unwrap_or_default()
    }

    /// Binary package names built from this source package (Ubuntu).
    fn binaries(&self) -> Vec<String> {
        let listed = self.ecosystem_specific.get("binaries").cloned().unwrap_or(Value::Null);
        let binaries = serde_json::from_value::<Vec<Binary>>(listed).unwrap_or_default();
        let mut names: Vec<String> = Vec::new();
        for name in binaries.into_iter().filter_map(|b| non_empty(Some(&b.binary_name))) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }
}

// ---------------------------------------------------------------------------------------------
// The advisory.

fn title(record: &OsvRecord, id: &str) -> String {
    non_empty(record.summary.as_deref())
        .or_else(|| non_empty(record.details.as_deref()).map(|d| shorten(&d, MAX_TITLE_CHARS)))
        .unwrap_or_else(|| id.to_string())
}

/// Who published the record: known id prefixes first, else the ecosystem of the first affected
/// package (`Red Hat`, `Maven`), else the id's prefix.
fn publisher(id: &str, affected: &[OsvAffected]) -> String {
    let prefix = id.split_once('-').map_or(id, |(prefix, _)| prefix);
    let known = match prefix.to_ascii_uppercase().as_str() {
        "DSA" | "DLA" | "DTSA" => Some("Debian"),
        "USN" | "UBUNTU" | "LSN" => Some("Ubuntu"),
        "GHSA" => Some("GitHub"),
        _ => None,
    };
    let ecosystem = || {
        let first = affected.iter().find_map(|a| a.package.as_ref())?;
        non_empty(first.ecosystem.split(':').next())
    };
    known.map(str::to_string).or_else(ecosystem).unwrap_or_else(|| prefix.to_string())
}

/// The qualitative rating of the whole record: Ubuntu's priority or GitHub's severity.
fn record_rating(record: &OsvRecord) -> Option<String> {
    qualitative(&record.severity)
        .or_else(|| non_empty(record.database_specific.get("severity").and_then(Value::as_str)))
}

/// A severity entry that is not CVSS (`{"type": "Ubuntu", "score": "medium"}`).
fn qualitative(severities: &[Severity]) -> Option<String> {
    severities.iter().find(|s| !is_cvss(s)).and_then(|s| non_empty(Some(&s.score)))
}

fn is_cvss(severity: &Severity) -> bool {
    matches!(severity.kind.as_str(), "CVSS_V2" | "CVSS_V3" | "CVSS_V4")
}

fn cvss_of(severities: &[Severity]) -> impl Iterator<Item = Cvss> + '_ {
    severities.iter().filter(|s| is_cvss(s) && !s.score.trim().is_empty()).map(|s| score::cvss(&s.score, None))
}

/// The ADVISORY references first: the record names no "self" link, and the advisory page is
/// the one a person wants.
fn references(references: &[OsvReference]) -> Vec<String> {
    let advisories = references.iter().filter(|r| r.kind == "ADVISORY");
    let others = references.iter().filter(|r| r.kind != "ADVISORY");
    let mut urls: Vec<String> = Vec::new();
    for url in advisories.chain(others).filter_map(|r| non_empty(Some(&r.url))) {
        if !urls.contains(&url) {
            urls.push(url);
        }
    }
    urls
}

fn advisory_url(references: &[OsvReference]) -> Option<String> {
    references.iter().filter(|r| r.kind == "ADVISORY").find_map(|r| non_empty(Some(&r.url)))
}

// ---------------------------------------------------------------------------------------------
// Vulnerabilities.

/// The vulnerability ids a record covers: its CVE aliases, else its `upstream` CVEs (Ubuntu
/// lists them there, as `UBUNTU-CVE-…` in a USN), else the record's own id.
fn vulnerability_ids(record: &OsvRecord, id: &str) -> Vec<String> {
    let from_aliases = cve_ids(record.aliases.iter().map(String::as_str));
    if !from_aliases.is_empty() {
        return from_aliases;
    }
    let from_upstream = cve_ids(record.upstream.iter().map(|u| u.trim().strip_prefix("UBUNTU-").unwrap_or(u)));
    if !from_upstream.is_empty() {
        return from_upstream;
    }
    vec![id.to_string()]
}

fn cve_ids<'a>(candidates: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for candidate in candidates.map(str::trim).filter(|c| c.starts_with("CVE-")) {
        if !ids.iter().any(|known| known == candidate) {
            ids.push(candidate.to_string());
        }
    }
    ids
}

/// The record's vulnerabilities. Record-level and package-level CVSS vectors describe the
/// record as a whole, so every vulnerability gets them; Ubuntu's `cves_map` entries go to
/// their own CVE (and add it when the record did not list it).
fn vulnerabilities(record: &OsvRecord, id: &str, rating: Option<&str>) -> Vec<Vulnerability> {
    let ids = vulnerability_ids(record, id);
    let single_title = if ids.len() == 1 { non_empty(record.summary.as_deref()) } else { None };
    let shared: Vec<Cvss> =
        cvss_of(&record.severity).chain(record.affected.iter().flat_map(|a| cvss_of(&a.severity))).collect();
    let mut read: Vec<Vulnerability> = ids
        .into_iter()
        .map(|id| Vulnerability {
            id,
            title: single_title.clone(),
            cvss: Vec::new(),
            rating: rating.map(str::to_string),
            known_exploited: false,
        })
        .collect();
    for vulnerability in &mut read {
        shared.iter().for_each(|c| add_cvss(&mut vulnerability.cvss, c.clone()));
    }
    for cve in record.affected.iter().flat_map(OsvAffected::cves_map) {
        attach_cve_severity(&mut read, cve);
    }
    read
}

fn attach_cve_severity(vulnerabilities: &mut Vec<Vulnerability>, cve: CveSeverity) {
    let at = match vulnerabilities.iter().position(|v| v.id == cve.id) {
        Some(at) => at,
        None => {
            let rating = None;
            vulnerabilities.push(Vulnerability {
                id: cve.id,
                title: None,
                cvss: Vec::new(),
                rating,
                known_exploited: false,
            });
            vulnerabilities.len() - 1
        }
    };
    let vulnerability = &mut vulnerabilities[at];
    cvss_of(&cve.severity).for_each(|c| add_cvss(&mut vulnerability.cvss, c));
    if let Some(priority) = qualitative(&cve.severity) {
        vulnerability.rating = Some(priority);
    }
}

fn add_cvss(scores: &mut Vec<Cvss>, cvss: Cvss) {
    if !scores.contains(&cvss) {
        scores.push(cvss);
    }
}

// ---------------------------------------------------------------------------------------------
// Affected packages and their fixes.

/// One affected package. Entries without a package (git-only ones) name no installable
/// software and are skipped; so is a package whose only ranges are GIT ranges, since reading
/// it as "every version" would flag every machine that has it.
fn affected(entry: &OsvAffected) -> Option<Affected> {
    let package = entry.package.as_ref()?;
    let product = non_empty(Some(&package.name))?;
    let ecosystem_name = package.ecosystem.trim();
    let ranges: Vec<Range> = entry.ranges.iter().filter(|r| r.kind != "GIT").flat_map(|r| ranges(&r.events)).collect();
    let only_git = !entry.ranges.is_empty() && entry.ranges.iter().all(|r| r.kind == "GIT");
    if only_git && entry.versions.is_empty() {
        return None;
    }
    let cves: Vec<String> = entry.cves_map().into_iter().map(|c| c.id).collect();
    Some(Affected {
        product,
        package_names: entry.binaries(),
        platform: non_empty(Some(ecosystem_name)),
        ecosystem: Ecosystem::for_osv(ecosystem_name),
        ranges,
        versions: entry.versions.iter().filter_map(|v| non_empty(Some(v))).collect(),
        vulnerabilities: cves,
    })
}

/// A range's events as [`Range`]s: each `introduced` opens one, `fixed` or `last_affected`
/// closes it, and one still open at the end is unbounded (unfixed). `introduced: "0"` is kept
/// as written; [`Range`] reads it as "from the beginning".
fn ranges(events: &[Event]) -> Vec<Range> {
    let mut read = Vec::new();
    let mut open: Option<Range> = None;
    for event in events {
        if let Some(introduced) = non_empty(event.introduced.as_deref()) {
            read.extend(open.take());
            open = Some(Range { introduced: Some(introduced), ..Range::default() });
        } else if let Some(fixed) = non_empty(event.fixed.as_deref()) {
            read.push(Range { fixed: Some(fixed), ..open.take().unwrap_or_default() });
        } else if let Some(last) = non_empty(event.last_affected.as_deref()) {
            read.push(Range { last_affected: Some(last), ..open.take().unwrap_or_default() });
        }
    }
    read.extend(open);
    read
}

/// One vendor fix per distinct fixed version of an affected package.
fn vendor_fixes(affected: &Affected, url: Option<&str>) -> Vec<Remediation> {
    let mut fixed_versions: Vec<&String> = Vec::new();
    for fixed in affected.ranges.iter().filter_map(|r| r.fixed.as_ref()) {
        if !fixed_versions.contains(&fixed) {
            fixed_versions.push(fixed);
        }
    }
    fixed_versions
        .into_iter()
        .map(|fixed| Remediation {
            category: RemediationKind::VendorFix,
            products: vec![affected.product.clone()],
            fixed_version: Some(fixed.clone()),
            kb: None,
            url: url.map(str::to_string),
            restart: None,
            supersedes: None,
            details: None,
            vulnerabilities: affected.vulnerabilities.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(result: Result<Advisory, ParseError>) -> String {
        match result {
            Err(ParseError::Invalid { format, reason }) => {
                assert_eq!(format, "osv");
                reason
            }
            other => panic!("expected an invalid-document error, got {other:?}"),
        }
    }

    #[test]
    fn truncated_json_is_an_invalid_record() {
        let message = reason(parse(br#"{"id": "DSA-1-1", "modified": "2024-01-0"#));
        assert!(message.contains("not an OSV JSON record"), "{message}");
    }

    #[test]
    fn a_missing_id_or_a_bad_date_is_named() {
        let message = reason(parse(br#"{"modified": "2024-01-01T00:00:00Z"}"#));
        assert!(message.contains("`id`"), "{message}");
        let message = reason(parse(br#"{"id": "X-1", "modified": "yesterday"}"#));
        assert!(message.contains("`modified`"), "{message}");
    }

    #[test]
    fn events_become_ranges() {
        let events: Vec<Event> = serde_json::from_str(
            r#"[{"introduced": "0"}, {"fixed": "1.2"}, {"introduced": "2.0"}, {"last_affected": "2.3"}, {"introduced": "3.0"}]"#,
        )
        .unwrap();
        let range = |i: Option<&str>, f: Option<&str>, l: Option<&str>| Range {
            introduced: i.map(Into::into),
            fixed: f.map(Into::into),
            last_affected: l.map(Into::into),
        };
        assert_eq!(
            ranges(&events),
            [
                range(Some("0"), Some("1.2"), None),
                range(Some("2.0"), None, Some("2.3")),
                range(Some("3.0"), None, None)
            ]
        );
    }

    #[test]
    fn git_ranges_are_skipped_and_a_git_only_package_is_not_every_version() {
        let record = br#"{"id": "OSV-2024-1", "modified": "2024-01-01T00:00:00Z", "affected": [
            {"package": {"ecosystem": "OSS-Fuzz", "name": "lib"},
             "ranges": [{"type": "GIT", "repo": "https://x", "events": [{"introduced": "abc"}, {"fixed": "def"}]}]},
            {"package": {"ecosystem": "PyPI", "name": "pkg"},
             "ranges": [{"type": "GIT", "events": [{"introduced": "abc"}]}, {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.1"}]}]}]}"#;
        let advisory = parse(record).unwrap();
        assert_eq!(advisory.affected.len(), 1);
        assert_eq!(advisory.affected[0].product, "pkg");
        assert_eq!(advisory.affected[0].ecosystem, Ecosystem::Generic);
        assert_eq!(advisory.affected[0].ranges.len(), 1);
        assert_eq!(advisory.publisher, "OSS-Fuzz");
        assert_eq!(advisory.vulnerabilities[0].id, "OSV-2024-1");
    }

    #[test]
    fn an_unexpected_shape_in_free_form_fields_loses_only_that_field() {
        let record = br#"{"id": "USN-1-1", "affected": [{"package": {"ecosystem": "Ubuntu:24.04:LTS", "name": "x"},
            "ecosystem_specific": {"binaries": "libx"}, "database_specific": {"cves_map": [1, 2]}}],
            "database_specific": {"severity": 3}}"#;
        let advisory = parse(record).unwrap();
        assert!(advisory.affected[0].package_names.is_empty());
        assert_eq!(advisory.rating, None);
        assert_eq!(advisory.publisher, "Ubuntu");
    }
}
