//! Microsoft's monthly security update guide (MSRC CVRF 1.1 XML) read into an [`Advisory`].
//!
//! No crate reads CVRF, so the document is described by the serde structs in [`xml`], fed to
//! `quick-xml`. It matches local names, so the mixed `cvrf:`/`prod:`/`vuln:` prefixes of MSRC's
//! documents do not matter. Every element is optional in the structs and checked afterwards,
//! so that a document missing its id is reported as such rather than as a serde message.
//!
//! Mapping decisions (see the research notes on the 2017-Jan and 2024-Jun documents):
//! - A product is named by its full name (`Windows 10 Version 1809 for x64-based Systems`); the
//!   name already says the platform, so [`Affected::platform`] stays None.
//! - An affected product's range is "below the fixed build" when a Vendor Fix gives a
//!   `FixedBuild` for it. When several alternative fixes do (a Security Update and a Hotpatch),
//!   the lowest build is used: a machine at or above it has one of the fixes, while a machine
//!   below every fixed build has none of them.
//! - Every Vendor Fix, Workaround and Mitigation is kept, including alternatives for the same
//!   product (Monthly Rollup and Security Only). "Known Issue" entries are not remediations and
//!   are left out.

use std::collections::BTreeMap;

use rollgate_core::ecosystem::{compare, Ecosystem, Range};

use crate::model::*;
use crate::{dates, score, shorten, strip_bom, ParseError};

/// The publisher of every document this reader is written for.
const PUBLISHER: &str = "Microsoft";

/// Longest free text kept from a Mitigation or Workaround.
const MAX_DETAILS_CHARS: usize = 400;

/// Product statuses that mean "this product is affected".
const AFFECTED_STATUSES: [&str; 3] = ["Known Affected", "First Affected", "Last Affected"];

/// Reads an MSRC CVRF document.
///
/// Fails with [`ParseError::Invalid`] when the bytes are not UTF-8 XML of the CVRF shape, when
/// the document has no `DocumentTracking/Identification/ID`, when a vulnerability has no `CVE`
/// element, or when a release date is not a date.
pub fn parse(bytes: &[u8]) -> Result<Advisory, ParseError> {
    let text = std::str::from_utf8(strip_bom(bytes)).map_err(|e| invalid(format!("the document is not UTF-8: {e}")))?;
    let doc: xml::Doc =
        quick_xml::de::from_str(text).map_err(|e| invalid(format!("the XML does not parse as CVRF: {e}")))?;
    to_advisory(doc)
}

fn invalid(reason: impl std::fmt::Display) -> ParseError {
    ParseError::invalid(Format::Cvrf, reason)
}

fn to_advisory(doc: xml::Doc) -> Result<Advisory, ParseError> {
    let tracking = doc.tracking.unwrap_or_default();
    let id = tracking.identification.and_then(|i| non_empty(i.id)).ok_or_else(|| {
        invalid(
            "DocumentTracking/Identification/ID is missing or empty (MSRC writes the month there, as in `2024-Jun`)",
        )
    })?;
    let products = ProductNames::from_tree(&doc.product_tree.unwrap_or_default());
    let mut advisory = Advisory {
        id,
        format: Format::Cvrf,
        title: non_empty(doc.title).unwrap_or_default(),
        publisher: PUBLISHER.to_string(),
        published: release_date("InitialReleaseDate", tracking.initial_release_date)?,
        updated: release_date("CurrentReleaseDate", tracking.current_release_date)?,
        revision: last_revision(tracking.revision_history).or_else(|| non_empty(tracking.version)),
        rating: None,
        vulnerabilities: Vec::new(),
        affected: Vec::new(),
        remediations: Vec::new(),
        references: reference_urls(doc.references),
        withdrawn: None,
    };
    for (index, vulnerability) in doc.vulnerabilities.into_iter().enumerate() {
        add_vulnerability(&mut advisory, vulnerability, index, &products)?;
    }
    advisory.rating = most_severe(advisory.vulnerabilities.iter().filter_map(|v| v.rating.as_deref()));
    Ok(advisory)
}

fn release_date(element: &str, text: Option<String>) -> Result<Option<jiff::Timestamp>, ParseError> {
    dates::optional(text.as_deref()).map_err(|e| invalid(format!("DocumentTracking/{element}: {e}")))
}

/// The number of the last revision: MSRC bumps it on every re-release of the month's guide,
/// while `Version` stays `1.0`.
fn last_revision(history: Option<xml::RevisionHistory>) -> Option<String> {
    history?.revisions.into_iter().rev().find_map(|r| non_empty(r.number))
}

fn reference_urls(references: Option<xml::References>) -> Vec<String> {
    references.map(|r| r.references).unwrap_or_default().into_iter().filter_map(|r| non_empty(r.url)).collect()
}

/// Adds one `Vulnerability` element's vulnerability, affected products and remediations.
fn add_vulnerability(
    advisory: &mut Advisory,
    vulnerability: xml::Vulnerability,
    index: usize,
    products: &ProductNames,
) -> Result<(), ParseError> {
    let id = non_empty(vulnerability.cve.clone()).ok_or_else(|| {
        invalid(format!("Vulnerability #{} has no CVE element (an id such as CVE-2024-30080 or ADV170001)", index + 1))
    })?;
    let threats = vulnerability.threats.map(|t| t.threats).unwrap_or_default();
    let remediations = vulnerability.remediations.map(|r| r.remediations).unwrap_or_default();
    let statuses = vulnerability.product_statuses.map(|s| s.statuses).unwrap_or_default();
    advisory.vulnerabilities.push(Vulnerability {
        id: id.clone(),
        title: non_empty(vulnerability.title),
        cvss: distinct_scores(vulnerability.score_sets.map(|s| s.score_sets).unwrap_or_default()),
        rating: most_severe(threats.iter().filter(|t| is_type(&t.kind, "Severity")).filter_map(|t| t.text())),
        known_exploited: threats.iter().filter(|t| is_type(&t.kind, "Exploit Status")).any(says_exploited),
    });
    advisory.affected.extend(affected_products(&statuses, &remediations, &id, products));
    advisory.remediations.extend(remediations.iter().filter_map(|r| to_remediation(r, &id, products)));
    Ok(())
}

/// The CVSS vectors of the score sets, each once: MSRC repeats the same vector for every product.
fn distinct_scores(score_sets: Vec<xml::ScoreSet>) -> Vec<Cvss> {
    let mut scores: Vec<Cvss> = Vec::new();
    for set in score_sets {
        let Some(vector) = non_empty(set.vector) else { continue };
        let base_score = set.base_score.as_deref().and_then(|s| s.trim().parse::<f64>().ok());
        let cvss = score::cvss(&vector, base_score);
        if !scores.iter().any(|known| known.vector == cvss.vector) {
            scores.push(cvss);
        }
    }
    scores
}

fn is_type(kind: &str, wanted: &str) -> bool {
    kind.trim().eq_ignore_ascii_case(wanted)
}

/// MSRC's severities from least to most severe; unknown words rank below all of them.
fn severity_rank(rating: &str) -> usize {
    ["low", "moderate", "important", "critical"]
        .iter()
        .position(|known| rating.eq_ignore_ascii_case(known))
        .map_or(0, |position| position + 1)
}

/// The most severe of MSRC's ratings (they are given per product and can differ).
fn most_severe<'a>(ratings: impl Iterator<Item = &'a str>) -> Option<String> {
    ratings
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .fold(None, |best: Option<&str>, r| match best {
            Some(b) if severity_rank(b) >= severity_rank(r) => Some(b),
            _ => Some(r),
        })
        .map(str::to_string)
}

/// Whether an Exploit Status (`Publicly Disclosed:No;Exploited:Yes;…`) says exploited.
fn says_exploited(threat: &xml::Threat) -> bool {
    threat
        .text()
        .unwrap_or_default()
        .split(';')
        .filter_map(|pair| pair.split_once(':'))
        .any(|(key, value)| key.trim().eq_ignore_ascii_case("Exploited") && value.trim().eq_ignore_ascii_case("Yes"))
}

/// One [`Affected`] per affected product, in document order, each product once.
fn affected_products(
    statuses: &[xml::Status],
    remediations: &[xml::Remediation],
    vulnerability_id: &str,
    products: &ProductNames,
) -> Vec<Affected> {
    let mut product_ids: Vec<&str> = Vec::new();
    let affected_ids = statuses
        .iter()
        .filter(|s| AFFECTED_STATUSES.iter().any(|wanted| is_type(&s.kind, wanted)))
        .flat_map(|s| s.product_ids.iter().map(|p| p.trim()));
    for product_id in affected_ids {
        if !product_id.is_empty() && !product_ids.contains(&product_id) {
            product_ids.push(product_id);
        }
    }
    product_ids
        .into_iter()
        .map(|product_id| Affected {
            product: products.name(product_id),
            package_names: Vec::new(),
            platform: None,
            ecosystem: Ecosystem::MicrosoftBuild,
            ranges: lowest_fixed_build(remediations, product_id)
                .map(|build| vec![Range { introduced: None, fixed: Some(build), last_affected: None }])
                .unwrap_or_default(),
            versions: Vec::new(),
            vulnerabilities: vec![vulnerability_id.to_string()],
        })
        .collect()
}

/// The lowest `FixedBuild` of the Vendor Fixes for `product_id` (see the module doc for why).
fn lowest_fixed_build(remediations: &[xml::Remediation], product_id: &str) -> Option<String> {
    remediations
        .iter()
        .filter(|r| remediation_kind(&r.kind) == Some(RemediationKind::VendorFix))
        .filter(|r| r.product_ids.iter().any(|p| p.trim() == product_id))
        .filter_map(|r| non_empty(r.fixed_build.clone()))
        .min_by(|a, b| compare(Ecosystem::MicrosoftBuild, a, b).then_with(|| a.cmp(b)))
}

fn remediation_kind(kind: &str) -> Option<RemediationKind> {
    match kind.trim().to_ascii_lowercase().as_str() {
        "vendor fix" => Some(RemediationKind::VendorFix),
        "workaround" => Some(RemediationKind::Workaround),
        "mitigation" => Some(RemediationKind::Mitigation),
        "will not fix" => Some(RemediationKind::NoFixPlanned),
        "none available" => Some(RemediationKind::NoneAvailable),
        _ => None,
    }
}

/// A remediation, or None for types that are not one ("Known Issue").
fn to_remediation(
    remediation: &xml::Remediation,
    vulnerability_id: &str,
    products: &ProductNames,
) -> Option<Remediation> {
    let category = remediation_kind(&remediation.kind)?;
    let description = non_empty(remediation.description.clone());
    let kb = description.clone().filter(|d| d.chars().all(|c| c.is_ascii_digit()));
    let details = match kb {
        // For a KB the description is just its number; the subtype tells alternatives apart.
        Some(_) => non_empty(remediation.sub_type.clone()),
        None => description.map(|d| shorten(&plain_text(&d), MAX_DETAILS_CHARS)).filter(|d| !d.is_empty()),
    };
    Some(Remediation {
        category,
        products: remediation.product_ids.iter().map(|p| products.name(p.trim())).collect(),
        fixed_version: non_empty(remediation.fixed_build.clone()),
        kb,
        url: non_empty(remediation.url.clone()),
        restart: restart(remediation.restart_required.as_deref()),
        supersedes: non_empty(remediation.supercedence.clone()),
        details,
        vulnerabilities: vec![vulnerability_id.to_string()],
    })
}

fn restart(text: Option<&str>) -> Option<Restart> {
    match text.map(|t| t.trim().to_ascii_lowercase()).as_deref() {
        Some("yes") => Some(Restart::Yes),
        Some("no") => Some(Restart::No),
        Some("maybe") => Some(Restart::Maybe),
        _ => None,
    }
}

/// `html` without its tags and with runs of white space collapsed: MSRC's mitigation and
/// workaround texts are HTML, while the model keeps plain text.
fn plain_text(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn non_empty(text: Option<String>) -> Option<String> {
    text.map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

/// ProductID → full product name. Each product is listed twice in MSRC's tree (under its
/// family branch and again at the top level, where 2024 documents add a CPE); the first name
/// seen wins and the top level is read first.
struct ProductNames(BTreeMap<String, String>);

impl ProductNames {
    fn from_tree(tree: &xml::ProductTree) -> ProductNames {
        let mut names = ProductNames(BTreeMap::new());
        names.add(&tree.full_product_names);
        for branch in &tree.branches {
            names.add_branch(branch);
        }
        names
    }

    fn add_branch(&mut self, branch: &xml::Branch) {
        self.add(&branch.full_product_names);
        for child in &branch.branches {
            self.add_branch(child);
        }
    }

    fn add(&mut self, products: &[xml::FullProductName]) {
        for product in products {
            let (id, name) = (product.product_id.trim(), product.name.trim());
            if !id.is_empty() && !name.is_empty() {
                self.0.entry(id.to_string()).or_insert_with(|| name.to_string());
            }
        }
    }

    /// The product's name; its id when the tree does not name it, so that nothing is dropped.
    fn name(&self, product_id: &str) -> String {
        self.0.get(product_id).cloned().unwrap_or_else(|| product_id.to_string())
    }
}

/// The part of CVRF 1.1 that is read. Fields are optional so that missing parts are reported
/// by [`to_advisory`] with their path; repeated elements must be contiguous (quick-xml without
/// `overlapped-lists`), which the schema's element order guarantees.
mod xml {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    pub struct Doc {
        #[serde(rename = "DocumentTitle")]
        pub title: Option<String>,
        #[serde(rename = "DocumentTracking")]
        pub tracking: Option<Tracking>,
        #[serde(rename = "DocumentReferences")]
        pub references: Option<References>,
        #[serde(rename = "ProductTree")]
        pub product_tree: Option<ProductTree>,
        #[serde(rename = "Vulnerability", default)]
        pub vulnerabilities: Vec<Vulnerability>,
    }

    #[derive(Debug, Default, Deserialize)]
    pub struct Tracking {
        #[serde(rename = "Identification")]
        pub identification: Option<Identification>,
        #[serde(rename = "Version")]
        pub version: Option<String>,
        #[serde(rename = "RevisionHistory")]
        pub revision_history: Option<RevisionHistory>,
        #[serde(rename = "InitialReleaseDate")]
        pub initial_release_date: Option<String>,
        #[serde(rename = "CurrentReleaseDate")]
        pub current_release_date: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    pub struct Identification {
        #[serde(rename = "ID")]
        pub id: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    pub struct RevisionHistory {
        #[serde(rename = "Revision", default)]
        pub revisions: Vec<Revision>,
    }

    #[derive(Debug, Deserialize)]
    pub struct Revision {
        #[serde(rename = "Number")]
        pub number: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    pub struct References {
        #[serde(rename = "Reference", default)]
        pub references: Vec<Reference>,
    }

    #[derive(Debug, Deserialize)]
    pub struct Reference {
        #[serde(rename = "URL")]
        pub url: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    pub struct ProductTree {
        #[serde(rename = "Branch", default)]
        pub branches: Vec<Branch>,
        #[serde(rename = "FullProductName", default)]
        pub full_product_names: Vec<FullProductName>,
    }

    #[derive(Debug, Deserialize)]
    pub struct Branch {
        #[serde(rename = "Branch", default)]
        pub branches: Vec<Branch>,
        #[serde(rename = "FullProductName", default)]
        pub full_product_names: Vec<FullProductName>,
    }

    #[derive(Debug, Deserialize)]
    pub struct FullProductName {
        #[serde(rename = "@ProductID", default)]
        pub product_id: String,
        #[serde(rename = "$text", default)]
        pub name: String,
    }

    #[derive(Debug, Deserialize)]
    pub struct Vulnerability {
        #[serde(rename = "Title")]
        pub title: Option<String>,
        #[serde(rename = "CVE")]
        pub cve: Option<String>,
        #[serde(rename = "ProductStatuses")]
        pub product_statuses: Option<ProductStatuses>,
        #[serde(rename = "Threats")]
        pub threats: Option<Threats>,
        #[serde(rename = "CVSSScoreSets")]
        pub score_sets: Option<ScoreSets>,
        #[serde(rename = "Remediations")]
        pub remediations: Option<Remediations>,
    }

    #[derive(Debug, Deserialize)]
    pub struct ProductStatuses {
        #[serde(rename = "Status", default)]
        pub statuses: Vec<Status>,
    }

    #[derive(Debug, Deserialize)]
    pub struct Status {
        #[serde(rename = "@Type", default)]
        pub kind: String,
        #[serde(rename = "ProductID", default)]
        pub product_ids: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    pub struct Threats {
        #[serde(rename = "Threat", default)]
        pub threats: Vec<Threat>,
    }

    #[derive(Debug, Deserialize)]
    pub struct Threat {
        #[serde(rename = "@Type", default)]
        pub kind: String,
        #[serde(rename = "Description")]
        pub description: Option<String>,
    }

    impl Threat {
        pub fn text(&self) -> Option<&str> {
            self.description.as_deref()
        }
    }

    #[derive(Debug, Deserialize)]
    pub struct ScoreSets {
        #[serde(rename = "ScoreSet", default)]
        pub score_sets: Vec<ScoreSet>,
    }

    /// Scores are read as text: an empty or odd `BaseScore` loses that score, not the document.
    #[derive(Debug, Deserialize)]
    pub struct ScoreSet {
        #[serde(rename = "BaseScore")]
        pub base_score: Option<String>,
        #[serde(rename = "Vector")]
        pub vector: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    pub struct Remediations {
        #[serde(rename = "Remediation", default)]
        pub remediations: Vec<Remediation>,
    }

    #[derive(Debug, Deserialize)]
    pub struct Remediation {
        #[serde(rename = "@Type", default)]
        pub kind: String,
        #[serde(rename = "Description")]
        pub description: Option<String>,
        #[serde(rename = "URL")]
        pub url: Option<String>,
        #[serde(rename = "Supercedence")]
        pub supercedence: Option<String>,
        #[serde(rename = "ProductID", default)]
        pub product_ids: Vec<String>,
        #[serde(rename = "RestartRequired")]
        pub restart_required: Option<String>,
        #[serde(rename = "SubType")]
        pub sub_type: Option<String>,
        #[serde(rename = "FixedBuild")]
        pub fixed_build: Option<String>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"<cvrf:cvrfdoc xmlns:cvrf="http://www.icasi.org/CVRF/schema/cvrf/1.1"
        xmlns:prod="http://www.icasi.org/CVRF/schema/prod/1.1" xmlns:vuln="http://www.icasi.org/CVRF/schema/vuln/1.1">
      <cvrf:DocumentTitle>T</cvrf:DocumentTitle>
      <cvrf:DocumentTracking>
        <cvrf:Identification><cvrf:ID>2099-Jan</cvrf:ID></cvrf:Identification>
        <cvrf:Version>1.0</cvrf:Version>
        <cvrf:InitialReleaseDate>2099-01-10T08:00:00Z</cvrf:InitialReleaseDate>
      </cvrf:DocumentTracking>
      <prod:ProductTree><prod:FullProductName ProductID="1">Windows X</prod:FullProductName></prod:ProductTree>
      <vuln:Vulnerability Ordinal="0">
        <vuln:CVE>CVE-2099-0001</vuln:CVE>
        <vuln:ProductStatuses><vuln:Status Type="Known Affected"><vuln:ProductID>1</vuln:ProductID></vuln:Status></vuln:ProductStatuses>
        <vuln:Threats>
          <vuln:Threat Type="Severity"><vuln:Description>Important</vuln:Description><vuln:ProductID>1</vuln:ProductID></vuln:Threat>
          <vuln:Threat Type="Exploit Status"><vuln:Description>Publicly Disclosed:No;Exploited:Yes;DOS:N/A</vuln:Description></vuln:Threat>
        </vuln:Threats>
        <vuln:Remediations>
          <vuln:Remediation Type="Vendor Fix"><vuln:Description>1</vuln:Description><vuln:ProductID>1</vuln:ProductID>
            <vuln:RestartRequired>No</vuln:RestartRequired><vuln:FixedBuild>10.0.1.20</vuln:FixedBuild></vuln:Remediation>
          <vuln:Remediation Type="Vendor Fix"><vuln:Description>2</vuln:Description><vuln:ProductID>1</vuln:ProductID>
            <vuln:FixedBuild>10.0.1.9</vuln:FixedBuild></vuln:Remediation>
        </vuln:Remediations>
      </vuln:Vulnerability>
    </cvrf:cvrfdoc>"#;

    fn reason(result: Result<Advisory, ParseError>) -> String {
        match result {
            Err(ParseError::Invalid { format: "cvrf", reason }) => reason,
            other => panic!("expected an invalid CVRF document, got {other:?}"),
        }
    }

    #[test]
    fn a_minimal_document_is_read_with_the_lowest_of_alternative_fixed_builds() {
        let advisory = parse(MINIMAL.as_bytes()).unwrap();
        assert_eq!((advisory.id.as_str(), advisory.revision.as_deref()), ("2099-Jan", Some("1.0")));
        let vulnerability = &advisory.vulnerabilities[0];
        assert!(vulnerability.known_exploited);
        assert_eq!(vulnerability.rating.as_deref(), Some("Important"));
        assert_eq!(advisory.affected[0].product, "Windows X");
        assert_eq!(advisory.affected[0].ranges[0].fixed.as_deref(), Some("10.0.1.9"), "numeric, not text, order");
        assert_eq!(advisory.remediations[0].restart, Some(Restart::No));
    }

    #[test]
    fn truncated_xml_is_invalid() {
        let truncated = &MINIMAL[..MINIMAL.len() / 2];
        assert!(reason(parse(truncated.as_bytes())).contains("XML does not parse"));
    }

    #[test]
    fn a_document_without_id_is_invalid() {
        let without_id = MINIMAL.replace("<cvrf:ID>2099-Jan</cvrf:ID>", "");
        assert!(reason(parse(without_id.as_bytes())).contains("Identification/ID is missing"));
        let empty_id = MINIMAL.replace("2099-Jan", " ");
        assert!(reason(parse(empty_id.as_bytes())).contains("Identification/ID is missing"));
    }

    #[test]
    fn a_vulnerability_without_cve_and_a_bad_date_are_invalid() {
        let without_cve = MINIMAL.replace("<vuln:CVE>CVE-2099-0001</vuln:CVE>", "");
        assert!(reason(parse(without_cve.as_bytes())).contains("Vulnerability #1 has no CVE"));
        let bad_date = MINIMAL.replace("2099-01-10T08:00:00Z", "soon");
        assert!(reason(parse(bad_date.as_bytes())).contains("InitialReleaseDate"));
    }

    #[test]
    fn non_utf8_and_non_cvrf_input_is_invalid_not_a_panic() {
        assert!(reason(parse(b"<cvrfdoc>\xff\xfe</cvrfdoc>")).contains("not UTF-8"));
        assert!(reason(parse(b"")).contains("XML does not parse"));
        assert!(reason(parse(b"<cvrfdoc/>")).contains("ID is missing"));
    }

    #[test]
    fn ratings_html_and_restart_values_are_normalized() {
        assert_eq!(most_severe(["Important", "Critical", "Low"].into_iter()).as_deref(), Some("Critical"));
        assert_eq!(most_severe(["", " "].into_iter()), None);
        assert_eq!(plain_text("<p>Use <b>this</b>\n  setting.</p>"), "Use this setting.");
        assert_eq!(restart(Some("")), None);
        assert_eq!(restart(Some("Maybe")), Some(Restart::Maybe));
    }
}
