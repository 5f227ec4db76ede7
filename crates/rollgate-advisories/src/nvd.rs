//! NVD API 2.0 responses (`/rest/json/cves/2.0`) read into [`CveRecord`]s.
//!
//! NVD adds to a CVE what matching by CPE needs: configurations of CPE match criteria with
//! version bounds, its own CVSS scores, and CISA's KEV dates. Its date-times have no zone and
//! are UTC by NVD's documentation ([`crate::dates`] reads them so). The CPE structs here are
//! shared with CVE 5's `cpeApplicability`, which copies NVD's shape.

use serde::Deserialize;

use crate::model::*;
use crate::{dates, score, shorten, strip_bom, ParseError};

/// Longest title taken from the start of a description (NVD has no titles).
pub(crate) const MAX_TITLE_CHARS: usize = 120;

/// Reads an NVD API 2.0 response: one record per `vulnerabilities[].cve`.
///
/// Fails with [`ParseError::Invalid`] when the JSON does not parse, has no `vulnerabilities`
/// array, or holds a CVE without an id or with a date that is not one.
pub fn parse(bytes: &[u8]) -> Result<Vec<CveRecord>, ParseError> {
    let response: Response = serde_json::from_slice(strip_bom(bytes))
        .map_err(|e| invalid(format!("the JSON does not parse as an NVD API 2.0 response: {e}")))?;
    let items = response
        .vulnerabilities
        .ok_or_else(|| invalid("there is no `vulnerabilities` array (an NVD API 2.0 response always has one)"))?;
    items.into_iter().enumerate().map(|(index, item)| to_record(item.cve, index)).collect()
}

fn invalid(reason: impl std::fmt::Display) -> ParseError {
    ParseError::invalid(Format::Nvd, reason)
}

fn to_record(cve: Cve, index: usize) -> Result<CveRecord, ParseError> {
    let id = non_empty(cve.id.as_deref())
        .ok_or_else(|| invalid(format!("vulnerabilities[{index}].cve.id is missing or empty")))?;
    let at = |field: &str, e: String| invalid(format!("{id}: {field}: {e}"));
    let description = english(&cve.descriptions);
    Ok(CveRecord {
        format: Format::Nvd,
        published: dates::optional(cve.published.as_deref()).map_err(|e| at("published", e))?,
        updated: dates::optional(cve.last_modified.as_deref()).map_err(|e| at("lastModified", e))?,
        title: description.as_deref().map(|d| shorten(d, MAX_TITLE_CHARS)),
        description,
        cvss: cve.metrics.map(Metrics::scores).unwrap_or_default(),
        // NVD's only qualitative ratings are CVSS severities, which the scores already carry.
        rating: None,
        affected: Vec::new(),
        cpes: cve.configurations.iter().flat_map(Configuration::matches).collect(),
        kev: kev_facts(&cve.cisa).map_err(|e| at("cisaExploitAdd/cisaActionDue", e))?,
        id,
    })
}

/// The English text among NVD's or CVE 5's descriptions (`en`, `en-US`), else the first one.
pub(crate) fn english(descriptions: &[LangText]) -> Option<String> {
    let is_english = |d: &&LangText| d.lang.as_deref().is_some_and(|l| l.to_ascii_lowercase().starts_with("en"));
    descriptions.iter().find(is_english).or(descriptions.first()).and_then(|d| non_empty(d.value.as_deref()))
}

/// The KEV facts NVD copies from CISA's catalog; None when the CVE is not in it. NVD does not
/// copy the ransomware field.
fn kev_facts(cisa: &CisaFields) -> Result<Option<KevFacts>, String> {
    let Some(added) = non_empty(cisa.exploit_add.as_deref()) else { return Ok(None) };
    let due_date = match non_empty(cisa.action_due.as_deref()) {
        Some(due) => Some(dates::date(&due)?),
        None => None,
    };
    Ok(Some(KevFacts {
        date_added: dates::date(&added)?,
        due_date,
        required_action: non_empty(cisa.required_action.as_deref()),
        ransomware: None,
    }))
}

pub(crate) fn non_empty(text: Option<&str>) -> Option<String> {
    text.map(str::trim).filter(|t| !t.is_empty()).map(str::to_string)
}

#[derive(Debug, Deserialize)]
struct Response {
    vulnerabilities: Option<Vec<Item>>,
}

#[derive(Debug, Deserialize)]
struct Item {
    cve: Cve,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cve {
    id: Option<String>,
    published: Option<String>,
    last_modified: Option<String>,
    #[serde(default)]
    descriptions: Vec<LangText>,
    metrics: Option<Metrics>,
    #[serde(default)]
    configurations: Vec<Configuration>,
    #[serde(flatten)]
    cisa: CisaFields,
}

#[derive(Debug, Default, Deserialize)]
struct CisaFields {
    #[serde(rename = "cisaExploitAdd")]
    exploit_add: Option<String>,
    #[serde(rename = "cisaActionDue")]
    action_due: Option<String>,
    #[serde(rename = "cisaRequiredAction")]
    required_action: Option<String>,
}

/// A text with its language (`descriptions[]` in NVD and CVE 5).
#[derive(Debug, Deserialize)]
pub(crate) struct LangText {
    lang: Option<String>,
    value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Metrics {
    #[serde(rename = "cvssMetricV40", default)]
    v40: Vec<Metric>,
    #[serde(rename = "cvssMetricV31", default)]
    v31: Vec<Metric>,
    #[serde(rename = "cvssMetricV30", default)]
    v30: Vec<Metric>,
    #[serde(rename = "cvssMetricV2", default)]
    v2: Vec<Metric>,
}

impl Metrics {
    /// Every distinct vector, newest CVSS version first (NVD and the CNA often give the same).
    fn scores(self) -> Vec<Cvss> {
        let all = [self.v40, self.v31, self.v30, self.v2].into_iter().flatten();
        distinct(all.filter_map(|m| m.cvss_data).filter_map(|data| data.to_cvss()))
    }
}

/// `scores` without repeated vectors, in order.
pub(crate) fn distinct(scores: impl Iterator<Item = Cvss>) -> Vec<Cvss> {
    let mut kept: Vec<Cvss> = Vec::new();
    for cvss in scores {
        if !kept.iter().any(|known| known.vector == cvss.vector) {
            kept.push(cvss);
        }
    }
    kept
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metric {
    cvss_data: Option<CvssData>,
}

/// A CVSS object as NVD (`cvssData`) and CVE 5 (`cvssV3_1`…) write it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CvssData {
    vector_string: Option<String>,
    base_score: Option<f64>,
}

impl CvssData {
    pub(crate) fn to_cvss(&self) -> Option<Cvss> {
        non_empty(self.vector_string.as_deref()).map(|vector| score::cvss(&vector, self.base_score))
    }
}

/// One configuration (NVD) or applicability statement (CVE 5): nodes of CPE match criteria.
#[derive(Debug, Deserialize)]
pub(crate) struct Configuration {
    #[serde(default)]
    nodes: Vec<Node>,
}

impl Configuration {
    /// The match criteria of every node. A negated node ("not on this platform") names what
    /// is excluded, so its criteria are left out rather than read as vulnerable.
    pub(crate) fn matches(&self) -> impl Iterator<Item = CpeMatch> + '_ {
        self.nodes
            .iter()
            .filter(|node| !node.negate)
            .flat_map(|node| node.cpe_match.iter().filter_map(CpeMatchJson::to_model))
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Node {
    #[serde(default)]
    negate: bool,
    #[serde(default)]
    cpe_match: Vec<CpeMatchJson>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CpeMatchJson {
    criteria: Option<String>,
    /// Required by both schemas; when absent the criterion is taken as vulnerable, since
    /// missing a vulnerable product costs more than a spurious match.
    #[serde(default = "vulnerable_by_default")]
    vulnerable: bool,
    version_start_including: Option<String>,
    version_start_excluding: Option<String>,
    version_end_including: Option<String>,
    version_end_excluding: Option<String>,
}

fn vulnerable_by_default() -> bool {
    true
}

impl CpeMatchJson {
    fn to_model(&self) -> Option<CpeMatch> {
        Some(CpeMatch {
            criteria: non_empty(self.criteria.as_deref())?,
            vulnerable: self.vulnerable,
            start_including: non_empty(self.version_start_including.as_deref()),
            start_excluding: non_empty(self.version_start_excluding.as_deref()),
            end_including: non_empty(self.version_end_including.as_deref()),
            end_excluding: non_empty(self.version_end_excluding.as_deref()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"resultsPerPage":1,"totalResults":1,"vulnerabilities":[{"cve":{
        "id":"CVE-2099-0001","published":"2099-01-02T03:04:05.678","lastModified":"2099-02-01T00:00:00.000",
        "cisaExploitAdd":"2099-01-03","cisaActionDue":"2099-01-24","cisaRequiredAction":"Patch.",
        "descriptions":[{"lang":"es","value":"Hola"},{"lang":"en","value":"Hello"}],
        "metrics":{"cvssMetricV31":[{"cvssData":{"vectorString":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H","baseScore":9.8}},
                                    {"cvssData":{"vectorString":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H","baseScore":9.8}}]},
        "configurations":[{"nodes":[{"operator":"OR","negate":false,"cpeMatch":[
            {"vulnerable":true,"criteria":"cpe:2.3:a:x:y:*:*:*:*:*:*:*:*","versionStartExcluding":"1.0","versionEndIncluding":"1.5"}]},
            {"operator":"OR","negate":true,"cpeMatch":[{"vulnerable":false,"criteria":"cpe:2.3:o:x:z:1:*:*:*:*:*:*:*"}]}]}]}}]}"#;

    fn reason(result: Result<Vec<CveRecord>, ParseError>) -> String {
        match result {
            Err(ParseError::Invalid { format: "nvd", reason }) => reason,
            other => panic!("expected an invalid NVD response, got {other:?}"),
        }
    }

    #[test]
    fn a_minimal_response_is_read() {
        let record = parse(MINIMAL.as_bytes()).unwrap().remove(0);
        assert_eq!(record.description.as_deref(), Some("Hello"));
        assert_eq!(record.cvss.len(), 1, "repeated vectors are kept once");
        assert_eq!(record.cpes.len(), 1, "negated nodes are left out");
        assert_eq!(record.cpes[0].start_excluding.as_deref(), Some("1.0"));
        assert_eq!(record.cpes[0].end_including.as_deref(), Some("1.5"));
        let kev = record.kev.unwrap();
        assert_eq!((kev.date_added.to_string(), kev.ransomware), ("2099-01-03".to_string(), None));
        assert_eq!(record.updated.unwrap().to_string(), "2099-02-01T00:00:00Z");
    }

    #[test]
    fn truncated_json_is_invalid() {
        assert!(reason(parse(&MINIMAL.as_bytes()[..200])).contains("does not parse"));
        assert!(reason(parse(b"")).contains("does not parse"));
    }

    #[test]
    fn a_cve_without_id_or_a_response_without_vulnerabilities_is_invalid() {
        let without_id = MINIMAL.replace(r#""id":"CVE-2099-0001","#, "");
        assert_eq!(reason(parse(without_id.as_bytes())), "vulnerabilities[0].cve.id is missing or empty");
        assert!(reason(parse(br#"{"totalResults":0}"#)).contains("no `vulnerabilities` array"));
        assert_eq!(parse(br#"{"totalResults":0,"vulnerabilities":[]}"#).unwrap(), Vec::new());
    }

    #[test]
    fn a_bad_kev_date_names_the_cve() {
        let bad = MINIMAL.replace("2099-01-24", "next month");
        assert!(reason(parse(bad.as_bytes())).starts_with("CVE-2099-0001: cisaExploitAdd/cisaActionDue"));
    }
}
