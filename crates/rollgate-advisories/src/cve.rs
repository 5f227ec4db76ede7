//! CVE JSON 5 records (as published by cve.org and the CVE Program's cvelistV5) read into a
//! [`CveRecord`].
//!
//! The record is what a CNA says of a CVE: its description, scores and the products it listed.
//! Only the fields used here are described, each optional, so that records of any 5.x version
//! are read (the `cve` crate rejects versions it does not know). Dates without a zone (5.0
//! records) are UTC.
//!
//! Mapping decisions for `containers.cna.affected[]`:
//! - The product is `product`, or `packageName` when `product` is absent or a placeholder
//!   (`n/a`); a `packageName` that differs from the product goes to
//!   [`Affected::package_names`], since that is the name found among installed software.
//! - The platform is CVE 5's own `platforms[]` (joined) when given. The vendor is not a
//!   platform (Chrome's vendor is not where Chrome runs) and `collectionURL` names a package
//!   repository, so neither is used; the model has no vendor field to keep them in.
//! - An entry is affected when it lists affected versions or its `defaultStatus` is
//!   `affected` (then, with no affected versions, every version). Versions listed as
//!   `unaffected` inside an affected default are exceptions the model cannot express; they are
//!   not kept, which errs towards reporting too much.
//! - CPEs come from the entries found affected (Red Hat lists CPEs on entries that are not),
//!   and from `cpeApplicability` with their version bounds.

use rollgate_core::ecosystem::{Ecosystem, Range};
use serde::Deserialize;

use crate::model::*;
use crate::nvd::{distinct, english, non_empty, Configuration, CvssData, LangText, MAX_TITLE_CHARS};
use crate::{dates, shorten, strip_bom, ParseError};

/// Values CNAs write where they have nothing to say.
const PLACEHOLDERS: [&str; 4] = ["n/a", "unspecified", "unknown", "*"];

/// Reads one CVE JSON 5 record.
///
/// Fails with [`ParseError::Invalid`] when the JSON does not parse or does not follow the
/// record's shape, when `cveMetadata.cveId` is missing, or when a date is not a date.
pub fn parse(bytes: &[u8]) -> Result<CveRecord, ParseError> {
    let record: Record = serde_json::from_slice(strip_bom(bytes))
        .map_err(|e| invalid(format!("the JSON does not parse as a CVE 5 record: {e}")))?;
    to_record(record)
}

fn invalid(reason: impl std::fmt::Display) -> ParseError {
    ParseError::invalid(Format::Cve5, reason)
}

fn to_record(record: Record) -> Result<CveRecord, ParseError> {
    let metadata = record.cve_metadata.unwrap_or_default();
    let id = non_empty(metadata.cve_id.as_deref()).ok_or_else(|| invalid("cveMetadata.cveId is missing or empty"))?;
    let containers = record.containers.unwrap_or_default();
    let cna = containers.cna.unwrap_or_default();
    let cna_updated = cna.provider_metadata.and_then(|p| p.date_updated);
    let at = |field: &str, e: String| invalid(format!("{id}: {field}: {e}"));
    let published = dates::optional(metadata.date_published.as_deref().or(cna_updated.as_deref()))
        .map_err(|e| at("cveMetadata.datePublished", e))?;
    let updated = dates::optional(metadata.date_updated.as_deref().or(cna_updated.as_deref()))
        .map_err(|e| at("cveMetadata.dateUpdated", e))?;
    let description = english(&cna.descriptions);
    let metrics = || cna.metrics.iter().chain(containers.adp.iter().flat_map(|adp| &adp.metrics));
    let affected_entries: Vec<&AffectedJson> = cna.affected.iter().filter(|a| a.is_affected()).collect();
    let mut cpes: Vec<CpeMatch> = affected_entries.iter().flat_map(|a| a.cpe_matches()).collect();
    cpes.extend(cna.cpe_applicability.iter().flat_map(Configuration::matches));
    Ok(CveRecord {
        format: Format::Cve5,
        published,
        updated,
        title: non_empty(cna.title.as_deref()).or_else(|| description.as_deref().map(|d| shorten(d, MAX_TITLE_CHARS))),
        description,
        cvss: distinct(metrics().flat_map(Metric::scores)),
        rating: metrics().find_map(Metric::rating),
        affected: affected_entries.into_iter().filter_map(AffectedJson::to_model).collect(),
        cpes,
        kev: None,
        id,
    })
}

fn is_placeholder(text: &str) -> bool {
    PLACEHOLDERS.iter().any(|p| text.trim().eq_ignore_ascii_case(p))
}

/// `text` trimmed, unless empty or a placeholder.
fn meaningful(text: Option<&str>) -> Option<String> {
    non_empty(text).filter(|t| !is_placeholder(t))
}

/// The order a CVE 5 `versionType` names.
fn ecosystem_of(version_type: Option<&str>) -> Ecosystem {
    match version_type.map(|t| t.trim().to_ascii_lowercase()).as_deref() {
        Some("semver") => Ecosystem::Semver,
        Some("rpm") => Ecosystem::Rpm,
        Some("dpkg" | "deb" | "debian") => Ecosystem::Dpkg,
        _ => Ecosystem::Generic,
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    cve_metadata: Option<Metadata>,
    containers: Option<Containers>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    cve_id: Option<String>,
    date_published: Option<String>,
    date_updated: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Containers {
    cna: Option<Cna>,
    #[serde(default)]
    adp: Vec<Adp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cna {
    title: Option<String>,
    provider_metadata: Option<ProviderMetadata>,
    #[serde(default)]
    descriptions: Vec<LangText>,
    #[serde(default)]
    affected: Vec<AffectedJson>,
    #[serde(default)]
    metrics: Vec<Metric>,
    #[serde(default)]
    cpe_applicability: Vec<Configuration>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProviderMetadata {
    date_updated: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Adp {
    #[serde(default)]
    metrics: Vec<Metric>,
}

#[derive(Debug, Deserialize)]
struct Metric {
    #[serde(rename = "cvssV4_0")]
    v40: Option<CvssData>,
    #[serde(rename = "cvssV3_1")]
    v31: Option<CvssData>,
    #[serde(rename = "cvssV3_0")]
    v30: Option<CvssData>,
    #[serde(rename = "cvssV2_0")]
    v20: Option<CvssData>,
    other: Option<OtherMetric>,
}

impl Metric {
    fn scores(&self) -> impl Iterator<Item = Cvss> + '_ {
        [&self.v40, &self.v31, &self.v30, &self.v20].into_iter().flatten().filter_map(CvssData::to_cvss)
    }

    /// A qualitative rating such as Red Hat's `{"type": "Red Hat severity rating", "content":
    /// {"value": "Critical"}}`. Other metrics of this kind (CISA's SSVC decision points) have
    /// no `value` and are not ratings.
    fn rating(&self) -> Option<String> {
        let content = &self.other.as_ref()?.content;
        non_empty(content.get("value").and_then(serde_json::Value::as_str))
    }
}

#[derive(Debug, Deserialize)]
struct OtherMetric {
    #[serde(default)]
    content: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AffectedJson {
    product: Option<String>,
    package_name: Option<String>,
    default_status: Option<String>,
    #[serde(default)]
    versions: Vec<VersionJson>,
    #[serde(default)]
    cpes: Vec<String>,
    #[serde(default)]
    platforms: Vec<String>,
}

impl AffectedJson {
    fn affected_versions(&self) -> impl Iterator<Item = &VersionJson> {
        self.versions.iter().filter(|v| v.status.as_deref().is_some_and(|s| s.trim().eq_ignore_ascii_case("affected")))
    }

    /// Whether the entry says something is affected (placeholder versions such as `n/a` say
    /// nothing).
    fn is_affected(&self) -> bool {
        let default_affected =
            self.default_status.as_deref().is_some_and(|s| s.trim().eq_ignore_ascii_case("affected"));
        default_affected || self.affected_versions().any(VersionJson::is_meaningful)
    }

    fn cpe_matches(&self) -> impl Iterator<Item = CpeMatch> + '_ {
        self.cpes.iter().filter_map(|cpe| non_empty(Some(cpe))).map(|criteria| CpeMatch {
            criteria,
            vulnerable: true,
            start_including: None,
            start_excluding: None,
            end_including: None,
            end_excluding: None,
        })
    }

    /// The entry as an [`Affected`]; None when it names no product (`n/a` placeholders).
    fn to_model(&self) -> Option<Affected> {
        let package = meaningful(self.package_name.as_deref());
        let product = meaningful(self.product.as_deref()).or_else(|| package.clone())?;
        let versions: Vec<&VersionJson> = self.affected_versions().filter(|v| v.is_meaningful()).collect();
        let platforms: Vec<String> = self.platforms.iter().filter_map(|p| meaningful(Some(p))).collect();
        Some(Affected {
            package_names: package.into_iter().filter(|p| *p != product).collect(),
            product,
            platform: (!platforms.is_empty()).then(|| platforms.join(", ")),
            ecosystem: ecosystem_of(versions.iter().find_map(|v| v.version_type.as_deref())),
            ranges: versions.iter().filter_map(|v| v.range()).collect(),
            versions: versions
                .iter()
                .filter(|v| v.range().is_none())
                .filter_map(|v| meaningful(v.version.as_deref()))
                .collect(),
            vulnerabilities: Vec::new(),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VersionJson {
    version: Option<String>,
    status: Option<String>,
    version_type: Option<String>,
    less_than: Option<String>,
    less_than_or_equal: Option<String>,
}

impl VersionJson {
    fn is_meaningful(&self) -> bool {
        self.range().is_some() || meaningful(self.version.as_deref()).is_some()
    }

    /// The range this entry spans, when it has an upper bound (`lessThan` or
    /// `lessThanOrEqual`). A bound of `*` means "no upper bound"; `0` and `*` as the start
    /// mean "from the beginning".
    fn range(&self) -> Option<Range> {
        if self.less_than.is_none() && self.less_than_or_equal.is_none() {
            return None;
        }
        Some(Range {
            introduced: meaningful(self.version.as_deref()),
            fixed: meaningful(self.less_than.as_deref()),
            last_affected: meaningful(self.less_than_or_equal.as_deref()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"dataType":"CVE_RECORD","dataVersion":"5.1",
        "cveMetadata":{"cveId":"CVE-2099-0001","datePublished":"2099-01-02T00:00:00"},
        "containers":{"cna":{
            "providerMetadata":{"orgId":"x","dateUpdated":"2099-03-04T00:00:00Z"},
            "descriptions":[{"lang":"en-US","value":"A bug in widget before 2.0."}],
            "affected":[
              {"vendor":"Acme","product":"widget","packageName":"libwidget","defaultStatus":"unaffected",
               "platforms":["Linux","Windows"],"cpes":["cpe:2.3:a:acme:widget:*:*:*:*:*:*:*:*"],
               "versions":[{"version":"1.0","lessThan":"2.0","status":"affected","versionType":"semver"},
                           {"version":"0","lessThanOrEqual":"0.9.9","status":"affected","versionType":"semver"},
                           {"version":"3.1","status":"affected","versionType":"semver"},
                           {"version":"2.0","status":"unaffected","versionType":"semver"}]},
              {"vendor":"Acme","product":"gadget","defaultStatus":"affected"},
              {"vendor":"Acme","product":"gizmo","defaultStatus":"unaffected","cpes":["cpe:/a:acme:gizmo"]},
              {"vendor":"n/a","product":"n/a","versions":[{"version":"n/a","status":"affected"}]}],
            "metrics":[{"cvssV4_0":{"vectorString":"CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N","baseScore":9.3}}],
            "cpeApplicability":[{"nodes":[{"operator":"OR","negate":false,"cpeMatch":[
              {"vulnerable":true,"criteria":"cpe:2.3:a:acme:widget:*:*:*:*:*:*:*:*","versionEndExcluding":"2.0"}]}]}]},
          "adp":[{"metrics":[{"other":{"type":"ssvc","content":{"options":[]}}},
                             {"other":{"type":"Vendor rating","content":{"value":"Moderate"}}}]}]}}"#;

    fn reason(result: Result<CveRecord, ParseError>) -> String {
        match result {
            Err(ParseError::Invalid { format: "cve5", reason }) => reason,
            other => panic!("expected an invalid CVE 5 record, got {other:?}"),
        }
    }

    #[test]
    fn affected_entries_map_to_ranges_versions_and_every_version() {
        let record = parse(MINIMAL.as_bytes()).unwrap();
        let products: Vec<&str> = record.affected.iter().map(|a| a.product.as_str()).collect();
        assert_eq!(products, ["widget", "gadget"], "unaffected and placeholder entries are left out");
        let widget = &record.affected[0];
        assert_eq!(
            (widget.ecosystem, widget.package_names.clone()),
            (Ecosystem::Semver, vec!["libwidget".to_string()])
        );
        assert_eq!(widget.platform.as_deref(), Some("Linux, Windows"));
        assert_eq!(
            widget.ranges[0],
            Range { introduced: Some("1.0".into()), fixed: Some("2.0".into()), last_affected: None }
        );
        assert_eq!(widget.ranges[1].last_affected.as_deref(), Some("0.9.9"));
        assert_eq!(widget.versions, ["3.1"]);
        let gadget = &record.affected[1];
        assert!(gadget.ranges.is_empty() && gadget.versions.is_empty(), "every version");
        assert_eq!(record.cpes.len(), 2, "the widget's CPE and the applicability statement; not the gizmo's");
        assert_eq!(record.cpes[1].end_excluding.as_deref(), Some("2.0"));
    }

    #[test]
    fn dates_title_scores_and_rating_fall_back_sensibly() {
        let record = parse(MINIMAL.as_bytes()).unwrap();
        assert_eq!(record.published.unwrap().to_string(), "2099-01-02T00:00:00Z");
        assert_eq!(record.updated.unwrap().to_string(), "2099-03-04T00:00:00Z", "the CNA's dateUpdated");
        assert_eq!(record.title.as_deref(), Some("A bug in widget before 2.0."));
        assert_eq!((record.cvss[0].version.as_str(), record.cvss[0].base_score), ("4.0", Some(9.3)));
        assert_eq!(record.rating.as_deref(), Some("Moderate"), "SSVC content has no value and is skipped");
    }

    #[test]
    fn truncated_json_and_wrong_shapes_are_invalid() {
        assert!(reason(parse(&MINIMAL.as_bytes()[..150])).contains("does not parse"));
        assert!(reason(parse(br#"{"cveMetadata":{"cveId":42}}"#)).contains("does not parse"));
        assert!(reason(parse(b"[]")).contains("does not parse"));
    }

    #[test]
    fn a_record_without_id_is_invalid() {
        let without_id = MINIMAL.replace(r#""cveId":"CVE-2099-0001","#, "");
        assert_eq!(reason(parse(without_id.as_bytes())), "cveMetadata.cveId is missing or empty");
        assert_eq!(reason(parse(b"{}")), "cveMetadata.cveId is missing or empty");
    }

    #[test]
    fn a_bad_date_names_the_field() {
        let bad = MINIMAL.replace("2099-01-02T00:00:00", "yesterday");
        assert!(reason(parse(bad.as_bytes())).starts_with("CVE-2099-0001: cveMetadata.datePublished"));
    }
}
