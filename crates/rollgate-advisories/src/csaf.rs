//! OASIS CSAF 2.0 documents (security advisories and VEX) read into an [`Advisory`].
//!
//! CSAF names products only by id; what an id stands for is spread over the product tree:
//! branches (vendor → product → version, any depth), `full_product_names`, and `relationships`
//! that put a component on a platform (Red Hat: an RPM on a RHEL release). [`ProductIndex`]
//! resolves an id to a product name, a platform and a version, and the product statuses of each
//! vulnerability become [`Affected`] entries from there. Versions exist only as branch names, in
//! vendor-specific shapes, so the resolver knows three of them:
//! - Red Hat RPM NEVRAs (`telnet-1:0.17-65.el7_6.x86_64`): product `telnet`, version
//!   `1:0.17-65.el7_6`, ordered as [`Ecosystem::Rpm`]; the architecture is dropped because a fix
//!   applies to every architecture alike.
//! - Red Hat container images (`openshift4/ose-metering-hive:v4.6.0-…`): the repository is the
//!   product and the tag its version.
//! - Anything else: the nearest `product_version`/`service_pack`/`patch_level` branch is an exact
//!   version, a `product_version_range` branch (Siemens `<V3.2`) is a range, and the product
//!   name is the leaf's name without those version names (`Cisco IOS 12.2SE 12.2(55)SE` →
//!   `Cisco IOS`).
//!
//! A `fixed`/`first_fixed` status implies that the same product on the same platform is affected
//! below that version: Red Hat lists only the fixed builds, never the affected ones.
//! `known_not_affected`, `under_investigation` and `recommended` never make a product affected
//! (Red Hat's remediations list not-affected products too, so remediations are not read as
//! affectedness either).

use std::collections::HashMap;

use rollgate_core::ecosystem::{Ecosystem, Range};
use serde::Deserialize;

use crate::model::*;
use crate::{dates, score, shorten, ParseError};

/// Longest remediation text kept; the document remains the source of the full text.
const MAX_DETAILS_CHARS: usize = 300;

/// Architectures a Red Hat NEVRA ends with; anything else after the last `.` is part of a
/// release, so the name is not read as a NEVRA.
const RPM_ARCHES: &[&str] = &[
    "src", "nosrc", "noarch", "x86_64", "i386", "i486", "i586", "i686", "aarch64", "ppc", "ppc64", "ppc64le", "s390",
    "s390x", "armv7hl", "ia64",
];

/// Branch categories whose names are versions (or version ranges) rather than product names.
const VERSION_CATEGORIES: &[&str] = &["product_version", "product_version_range", "service_pack", "patch_level"];

/// Branch categories whose names Cisco-style product names end with, after the product name.
const SUFFIX_CATEGORIES: &[&str] = &[
    "product_version",
    "product_version_range",
    "service_pack",
    "patch_level",
    "architecture",
    "language",
    "legacy",
    "specification",
    "host_name",
];

/// Reads a CSAF 2.0 document.
///
/// Fails when the bytes are not JSON of the CSAF shape, or when `document.tracking.id`,
/// `document.title` or `document.publisher.name` is missing or a date does not parse.
pub fn parse(bytes: &[u8]) -> Result<Advisory, ParseError> {
    let csaf: Csaf = serde_json::from_slice(bytes).map_err(|e| invalid(format!("not a CSAF JSON document: {e}")))?;
    let meta = csaf.document.ok_or_else(|| invalid("`document` is missing"))?;
    let tracking = meta.tracking.ok_or_else(|| invalid("`document.tracking` is missing"))?;
    let id = required(tracking.id, "document.tracking.id")?;
    let index = ProductIndex::new(&csaf.product_tree);
    let vulnerabilities: Vec<Vulnerability> =
        csaf.vulnerabilities.iter().enumerate().map(|(n, v)| vulnerability(v, &id, n)).collect();
    let mut affected = Vec::new();
    let mut remediations = Vec::new();
    for (wire, read) in csaf.vulnerabilities.iter().zip(&vulnerabilities) {
        affected.extend(affected_by(wire, &read.id, &index));
        remediations.extend(remediations_of(wire, &read.id, &index));
    }
    Ok(Advisory {
        id,
        format: Format::Csaf,
        title: required(meta.title, "document.title")?,
        publisher: required(meta.publisher.and_then(|p| p.name), "document.publisher.name")?,
        published: date(tracking.initial_release_date, "document.tracking.initial_release_date")?,
        updated: date(tracking.current_release_date, "document.tracking.current_release_date")?,
        revision: non_empty(tracking.version),
        rating: meta.aggregate_severity.and_then(|s| non_empty(s.text)),
        references: references(&meta.references, &csaf.vulnerabilities),
        vulnerabilities,
        affected: merge_across_vulnerabilities(affected),
        remediations: merge_across_vulnerabilities(remediations),
        withdrawn: None,
    })
}

fn invalid(reason: impl std::fmt::Display) -> ParseError {
    ParseError::invalid(Format::Csaf, reason)
}

fn non_empty(text: Option<String>) -> Option<String> {
    text.map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

/// A field the model cannot do without; `path` names it in the error.
fn required(text: Option<String>, path: &str) -> Result<String, ParseError> {
    non_empty(text).ok_or_else(|| invalid(format!("`{path}` is missing or empty")))
}

fn date(text: Option<String>, path: &str) -> Result<Option<jiff::Timestamp>, ParseError> {
    dates::optional(text.as_deref()).map_err(|e| invalid(format!("`{path}`: {e}")))
}

// ---------------------------------------------------------------------------------------------
// The subset of the CSAF 2.0 schema that is read. Permissive on purpose: unknown fields are
// ignored and every optional section defaults, because vendors extend the schema.

#[derive(Deserialize)]
struct Csaf {
    document: Option<DocumentMeta>,
    #[serde(default)]
    product_tree: ProductTree,
    #[serde(default)]
    vulnerabilities: Vec<CsafVulnerability>,
}

#[derive(Deserialize)]
struct DocumentMeta {
    title: Option<String>,
    publisher: Option<Publisher>,
    tracking: Option<Tracking>,
    aggregate_severity: Option<AggregateSeverity>,
    #[serde(default)]
    references: Vec<Reference>,
}

#[derive(Deserialize)]
struct Publisher {
    name: Option<String>,
}

#[derive(Deserialize)]
struct Tracking {
    id: Option<String>,
    initial_release_date: Option<String>,
    current_release_date: Option<String>,
    version: Option<String>,
}

#[derive(Deserialize)]
struct AggregateSeverity {
    text: Option<String>,
}

#[derive(Deserialize)]
struct Reference {
    category: Option<String>,
    url: Option<String>,
}

#[derive(Default, Deserialize)]
struct ProductTree {
    #[serde(default)]
    branches: Vec<Branch>,
    #[serde(default)]
    full_product_names: Vec<FullProductName>,
    #[serde(default)]
    relationships: Vec<Relationship>,
    #[serde(default)]
    product_groups: Vec<ProductGroup>,
}

#[derive(Deserialize)]
struct Branch {
    #[serde(default)]
    category: String,
    #[serde(default)]
    name: String,
    product: Option<FullProductName>,
    #[serde(default)]
    branches: Vec<Branch>,
}

#[derive(Deserialize)]
struct FullProductName {
    product_id: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct Relationship {
    product_reference: String,
    relates_to_product_reference: String,
    full_product_name: FullProductName,
}

#[derive(Deserialize)]
struct ProductGroup {
    group_id: String,
    #[serde(default)]
    product_ids: Vec<String>,
}

#[derive(Deserialize)]
struct CsafVulnerability {
    cve: Option<String>,
    #[serde(default)]
    ids: Vec<VulnerabilityId>,
    title: Option<String>,
    #[serde(default)]
    scores: Vec<Score>,
    #[serde(default)]
    threats: Vec<Threat>,
    #[serde(default)]
    product_status: ProductStatus,
    #[serde(default)]
    remediations: Vec<CsafRemediation>,
    #[serde(default)]
    references: Vec<Reference>,
}

#[derive(Deserialize)]
struct VulnerabilityId {
    text: String,
}

#[derive(Deserialize)]
struct Score {
    cvss_v3: Option<CvssJson>,
    cvss_v2: Option<CvssJson>,
}

#[derive(Deserialize)]
struct CvssJson {
    #[serde(rename = "vectorString")]
    vector_string: Option<String>,
    #[serde(rename = "baseScore")]
    base_score: Option<f64>,
}

#[derive(Deserialize)]
struct Threat {
    #[serde(default)]
    category: String,
    details: Option<String>,
}

#[derive(Default, Deserialize)]
struct ProductStatus {
    #[serde(default)]
    first_affected: Vec<String>,
    #[serde(default)]
    known_affected: Vec<String>,
    #[serde(default)]
    last_affected: Vec<String>,
    #[serde(default)]
    first_fixed: Vec<String>,
    #[serde(default)]
    fixed: Vec<String>,
}

impl ProductStatus {
    fn is_fixed(&self, id: &str) -> bool {
        self.fixed.iter().chain(&self.first_fixed).any(|f| f == id)
    }
}

#[derive(Deserialize)]
struct CsafRemediation {
    #[serde(default)]
    category: String,
    details: Option<String>,
    #[serde(default)]
    product_ids: Vec<String>,
    #[serde(default)]
    group_ids: Vec<String>,
    url: Option<String>,
    restart_required: Option<RestartRequired>,
}

#[derive(Deserialize)]
struct RestartRequired {
    #[serde(default)]
    category: String,
}

// ---------------------------------------------------------------------------------------------
// Resolving product ids.

/// What a product id stands for.
#[derive(Clone, Debug, PartialEq)]
struct Resolved {
    /// Package or product name, without version.
    product: String,
    /// The product it is a component of, by name, for relationship ids.
    platform: Option<String>,
    ecosystem: Ecosystem,
    version: VersionSpec,
}

/// The versions a resolved product id denotes.
#[derive(Clone, Debug, PartialEq)]
enum VersionSpec {
    /// The tree gives no version: the product as a whole.
    Unknown,
    /// One version (a `product_version` or `service_pack` branch, an RPM's EVR, an image tag).
    Exact(String),
    /// A `product_version_range` branch.
    Ranges(Vec<Range>),
}

/// A product of the tree with the branch path above it, as (category, name) pairs ending with
/// the branch that holds the product.
struct Leaf<'a> {
    name: &'a str,
    path: Vec<(&'a str, &'a str)>,
}

/// Product ids of one document, indexed for resolving.
struct ProductIndex<'a> {
    leaves: HashMap<&'a str, Leaf<'a>>,
    relationships: HashMap<&'a str, &'a Relationship>,
    groups: HashMap<&'a str, &'a [String]>,
}

impl<'a> ProductIndex<'a> {
    fn new(tree: &'a ProductTree) -> ProductIndex<'a> {
        let mut leaves = HashMap::new();
        let mut path = Vec::new();
        collect_leaves(&tree.branches, &mut path, &mut leaves);
        for full in &tree.full_product_names {
            leaves.entry(full.product_id.as_str()).or_insert(Leaf { name: &full.name, path: Vec::new() });
        }
        let relationships = tree.relationships.iter().map(|r| (r.full_product_name.product_id.as_str(), r)).collect();
        let groups = tree.product_groups.iter().map(|g| (g.group_id.as_str(), g.product_ids.as_slice())).collect();
        ProductIndex { leaves, relationships, groups }
    }

    /// Resolves `id`. Never fails: an id the tree does not define stands for itself (read as a
    /// NEVRA or image name where it looks like one), so a sloppy tree loses precision, not data.
    fn resolve(&self, id: &str) -> Resolved {
        match self.relationships.get(id) {
            // Red Hat ids contain colons (`7Server-7.6.AUS:telnet-1:0.17-…`): the relationship
            // says which part is which, so the id is never split.
            Some(relationship) => Resolved {
                platform: Some(self.display_name(&relationship.relates_to_product_reference)),
                ..self.component(&relationship.product_reference)
            },
            None => self.component(id),
        }
    }

    /// Product ids named by a remediation, with its groups expanded.
    fn expand(&self, product_ids: &'a [String], group_ids: &'a [String]) -> Vec<&'a str> {
        let grouped = group_ids.iter().flat_map(|g| self.groups.get(g.as_str()).copied().unwrap_or_default());
        product_ids.iter().chain(grouped).map(String::as_str).collect()
    }

    fn component(&self, id: &str) -> Resolved {
        match self.leaves.get(id) {
            Some(leaf) => describe_leaf(leaf),
            None => describe_package(id, None).unwrap_or_else(|| Resolved {
                product: id.to_string(),
                platform: None,
                ecosystem: Ecosystem::Generic,
                version: VersionSpec::Unknown,
            }),
        }
    }

    /// The human name of a platform product (`Red Hat Enterprise Linux Server AUS (v. 7.6)`).
    fn display_name(&self, id: &str) -> String {
        let from_leaf = self.leaves.get(id).map(|leaf| leaf.name).filter(|name| !name.is_empty());
        let from_relationship = || self.relationships.get(id).map(|r| r.full_product_name.name.as_str());
        from_leaf.or_else(from_relationship).unwrap_or(id).to_string()
    }
}

fn collect_leaves<'a>(
    branches: &'a [Branch],
    path: &mut Vec<(&'a str, &'a str)>,
    leaves: &mut HashMap<&'a str, Leaf<'a>>,
) {
    for branch in branches {
        path.push((branch.category.as_str(), branch.name.as_str()));
        if let Some(product) = &branch.product {
            let name = if product.name.is_empty() { branch.name.as_str() } else { product.name.as_str() };
            leaves.insert(product.product_id.as_str(), Leaf { name, path: path.clone() });
        }
        collect_leaves(&branch.branches, path, leaves);
        path.pop();
    }
}

fn describe_leaf(leaf: &Leaf) -> Resolved {
    let version_branch = leaf.path.iter().rev().find(|(category, _)| VERSION_CATEGORIES.contains(category));
    let architecture = leaf.path.iter().rev().find(|(category, _)| *category == "architecture").map(|(_, name)| *name);
    let package = version_branch.and_then(|(_, name)| describe_package(name, architecture));
    if let Some(package) = package.or_else(|| describe_package(leaf.name, architecture)) {
        return package;
    }
    let version = match version_branch {
        Some(&("product_version_range", name)) => version_range(name),
        Some((_, name)) => VersionSpec::Exact(name.to_string()),
        None => VersionSpec::Unknown,
    };
    Resolved { product: product_name(leaf), platform: None, ecosystem: Ecosystem::Generic, version }
}

/// Reads a package-style name: an RPM NEVRA or a container image reference.
fn describe_package(text: &str, architecture: Option<&str>) -> Option<Resolved> {
    if let Some((name, evr)) = nevra(text, architecture) {
        return Some(Resolved {
            product: name,
            platform: None,
            ecosystem: Ecosystem::Rpm,
            version: VersionSpec::Exact(evr),
        });
    }
    let (repository, tag) = container_image(text)?;
    Some(Resolved {
        product: repository,
        platform: None,
        ecosystem: Ecosystem::Generic,
        version: VersionSpec::Exact(tag),
    })
}

/// Splits `name-[epoch:]version-release.arch` into the name and `[epoch:]version-release`.
///
/// Only names ending with a known architecture (or the enclosing `architecture` branch) count,
/// so that product names with dashes and dots are not taken for packages.
fn nevra(text: &str, architecture: Option<&str>) -> Option<(String, String)> {
    if text.contains(char::is_whitespace) {
        return None;
    }
    let (name_version_release, arch) = text.rsplit_once('.')?;
    if !RPM_ARCHES.contains(&arch) && architecture != Some(arch) {
        return None;
    }
    let (name_version, release) = name_version_release.rsplit_once('-')?;
    let (name, version) = name_version.rsplit_once('-')?;
    let version_starts_with_digit = version.chars().next().is_some_and(|c| c.is_ascii_digit());
    if name.is_empty() || release.is_empty() || !version_starts_with_digit {
        return None;
    }
    Some((name.to_string(), format!("{version}-{release}")))
}

/// Splits `registry/path/name:tag` into the repository and the tag. A colon before the last
/// `/` is a registry port, not a tag; digests (`@sha256:`) are not versions and are refused.
fn container_image(text: &str) -> Option<(String, String)> {
    if text.contains(char::is_whitespace) || text.contains('@') {
        return None;
    }
    let last_slash = text.rfind('/')?;
    let (repository, tag) = text.rsplit_once(':')?;
    (repository.len() > last_slash && !tag.is_empty()).then(|| (repository.to_string(), tag.to_string()))
}

/// The product name of a generic leaf: its name without the version branch names it ends
/// with (Cisco), else the nearest `product_name`/`product_family` branch (Siemens, whose
/// products all share one name), else the leaf's name.
fn product_name(leaf: &Leaf) -> String {
    let mut name = leaf.name.trim();
    for (category, branch_name) in leaf.path.iter().rev() {
        if !SUFFIX_CATEGORIES.contains(category) {
            break;
        }
        match name.strip_suffix(branch_name).filter(|rest| rest.ends_with(' ')) {
            Some(rest) => name = rest.trim_end(),
            None => break,
        }
    }
    if !name.is_empty() && name != leaf.name.trim() {
        return name.to_string();
    }
    let named_branch =
        leaf.path.iter().rev().find(|(category, _)| matches!(*category, "product_name" | "product_family"));
    match named_branch {
        Some((_, branch_name)) if !branch_name.is_empty() => branch_name.to_string(),
        _ => leaf.name.to_string(),
    }
}

/// Reads a `product_version_range` name: a `vers:` string (`vers:generic/>=2.0|<3.2`) or the
/// looser form vendors write (`<V3.2`, `<= 2.1`, `>=1.0, <1.4`).
///
/// Constraints are read in order like OSV events: `>=` (and `>`, which the model cannot
/// express exclusively, so it is kept inclusive) opens a range, `<` closes it with a fixed
/// version and `<=` with a last affected one; a bare or `=` version is that version alone. A
/// name with no constraint at all (`all versions`) denotes every version.
fn version_range(text: &str) -> VersionSpec {
    let text = text.trim();
    let constraints = match text.strip_prefix("vers:") {
        Some(rest) => rest.split_once('/').map_or(rest, |(_, c)| c),
        None => text,
    };
    let mut ranges = Vec::new();
    let mut open: Option<Range> = None;
    for constraint in constraints.split(['|', ',']).map(str::trim).filter(|c| !c.is_empty()) {
        let (operator, version) = split_operator(constraint);
        let version = Some(version.to_string());
        match operator {
            ">=" | ">" => {
                ranges.extend(open.take());
                open = Some(Range { introduced: version, ..Range::default() });
            }
            "<" => ranges.push(Range { fixed: version, ..open.take().unwrap_or_default() }),
            "<=" => ranges.push(Range { last_affected: version, ..open.take().unwrap_or_default() }),
            _ if constraint.chars().any(|c| c.is_ascii_digit()) => {
                ranges.push(Range { introduced: version.clone(), fixed: None, last_affected: version })
            }
            _ => {}
        }
    }
    ranges.extend(open);
    if ranges.is_empty() {
        VersionSpec::Unknown
    } else {
        VersionSpec::Ranges(ranges)
    }
}

fn split_operator(constraint: &str) -> (&str, &str) {
    for operator in ["<=", ">=", "!=", "<", ">", "="] {
        if let Some(version) = constraint.strip_prefix(operator) {
            return (operator, version.trim());
        }
    }
    ("", constraint)
}

// ---------------------------------------------------------------------------------------------
// Vulnerabilities.

/// Reads one vulnerability; `n` numbers it within the advisory for an id of last resort.
fn vulnerability(wire: &CsafVulnerability, advisory_id: &str, n: usize) -> Vulnerability {
    let id = non_empty(wire.cve.clone())
        .or_else(|| wire.ids.iter().map(|i| i.text.trim()).find(|t| !t.is_empty()).map(str::to_string))
        .unwrap_or_else(|| format!("{advisory_id}#{}", n + 1));
    Vulnerability {
        id,
        title: non_empty(wire.title.clone()),
        cvss: cvss_scores(&wire.scores),
        rating: threat(wire, "impact").map(str::to_string),
        known_exploited: threat(wire, "exploit_status").is_some_and(says_exploited),
    }
}

fn threat<'w>(wire: &'w CsafVulnerability, category: &str) -> Option<&'w str> {
    wire.threats
        .iter()
        .filter(|t| t.category == category)
        .find_map(|t| t.details.as_deref().map(str::trim).filter(|d| !d.is_empty()))
}

/// Whether an `exploit_status` threat reports exploitation; CSAF leaves its wording free, so
/// negative phrasings ("not exploited", "no known exploitation") are looked for first.
fn says_exploited(details: &str) -> bool {
    let details = details.to_lowercase();
    let negative = ["not exploited", "no known", "not known", "not active", "inactive", "unproven", "none"];
    !negative.iter().any(|n| details.contains(n)) && (details.contains("exploited") || details.contains("active"))
}

/// CVSS v3 and v2 scores; the same vector is often repeated per product group, so duplicates
/// are dropped.
fn cvss_scores(scores: &[Score]) -> Vec<Cvss> {
    let mut found: Vec<Cvss> = Vec::new();
    for json in scores.iter().flat_map(|s| [&s.cvss_v3, &s.cvss_v2]).flatten() {
        let Some(vector) = json.vector_string.as_deref().filter(|v| !v.trim().is_empty()) else { continue };
        let read = score::cvss(vector, json.base_score);
        if !found.contains(&read) {
            found.push(read);
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// Product statuses to affected entries.

/// What one vulnerability's statuses say of one product on one platform.
#[derive(Default)]
struct Findings {
    every_version: bool,
    versions: Vec<String>,
    ranges: Vec<Range>,
}

impl Findings {
    fn add_version(&mut self, version: String) {
        if !self.versions.contains(&version) {
            self.versions.push(version);
        }
    }

    fn add_range(&mut self, range: Range) {
        if !self.ranges.contains(&range) {
            self.ranges.push(range);
        }
    }

    /// Closes the open range a `first_affected` status started, else adds "below `version`".
    fn add_fixed(&mut self, version: String) {
        let open =
            self.ranges.iter_mut().find(|r| r.introduced.is_some() && r.fixed.is_none() && r.last_affected.is_none());
        match open {
            Some(range) => range.fixed = Some(version),
            None => self.add_range(Range { fixed: Some(version), ..Range::default() }),
        }
    }
}

/// Which affected status a product id was listed under.
#[derive(Clone, Copy)]
enum AffectedStatus {
    Known,
    First,
    Last,
}

type ProductKey = (String, Option<String>, Ecosystem);

/// The affected entries one vulnerability's product statuses give.
fn affected_by(wire: &CsafVulnerability, vulnerability_id: &str, index: &ProductIndex) -> Vec<Affected> {
    let status = &wire.product_status;
    let listed = [
        (AffectedStatus::Known, &status.known_affected),
        (AffectedStatus::First, &status.first_affected),
        (AffectedStatus::Last, &status.last_affected),
    ];
    let mut findings: Vec<(ProductKey, Findings)> = Vec::new();
    for (kind, ids) in listed {
        for id in ids {
            let resolved = index.resolve(id);
            record_affected(findings_for(&mut findings, &resolved), kind, resolved.version);
        }
    }
    for id in status.fixed.iter().chain(&status.first_fixed) {
        let resolved = index.resolve(id);
        // A fixed product without a version says nothing about which versions were affected.
        if let VersionSpec::Exact(version) = resolved.version.clone() {
            findings_for(&mut findings, &resolved).add_fixed(version);
        }
    }
    findings.into_iter().map(|(key, found)| to_affected(key, found, vulnerability_id)).collect()
}

fn findings_for<'f>(findings: &'f mut Vec<(ProductKey, Findings)>, resolved: &Resolved) -> &'f mut Findings {
    let key = (resolved.product.clone(), resolved.platform.clone(), resolved.ecosystem);
    let at = match findings.iter().position(|(k, _)| *k == key) {
        Some(at) => at,
        None => {
            findings.push((key, Findings::default()));
            findings.len() - 1
        }
    };
    &mut findings[at].1
}

fn record_affected(found: &mut Findings, kind: AffectedStatus, version: VersionSpec) {
    match (kind, version) {
        (_, VersionSpec::Unknown) => found.every_version = true,
        (_, VersionSpec::Ranges(ranges)) => ranges.into_iter().for_each(|r| found.add_range(r)),
        (AffectedStatus::Known, VersionSpec::Exact(v)) => found.add_version(v),
        (AffectedStatus::First, VersionSpec::Exact(v)) => {
            found.add_range(Range { introduced: Some(v), ..Range::default() })
        }
        (AffectedStatus::Last, VersionSpec::Exact(v)) => {
            found.add_range(Range { last_affected: Some(v), ..Range::default() })
        }
    }
}

/// An affected entry; a product listed without a version means every version, unless a fixed
/// version bounds it.
fn to_affected((product, platform, ecosystem): ProductKey, found: Findings, vulnerability_id: &str) -> Affected {
    let every_version = found.every_version && found.ranges.is_empty();
    Affected {
        product,
        package_names: Vec::new(),
        platform,
        ecosystem,
        ranges: if every_version { Vec::new() } else { found.ranges },
        versions: if every_version { Vec::new() } else { found.versions },
        vulnerabilities: vec![vulnerability_id.to_string()],
    }
}

// ---------------------------------------------------------------------------------------------
// Remediations.

/// The remediations of one vulnerability. A vendor fix is split by fixed version so that each
/// [`Remediation`] states the version its products are fixed in.
fn remediations_of(wire: &CsafVulnerability, vulnerability_id: &str, index: &ProductIndex) -> Vec<Remediation> {
    let mut read = Vec::new();
    for remediation in &wire.remediations {
        let Some(category) = remediation_kind(&remediation.category) else { continue };
        let mut by_fixed_version: Vec<(Option<String>, Vec<String>)> = Vec::new();
        for id in index.expand(&remediation.product_ids, &remediation.group_ids) {
            let resolved = index.resolve(id);
            let fixed_version = match category {
                RemediationKind::VendorFix => fixed_version(&resolved, wire.product_status.is_fixed(id)),
                _ => None,
            };
            add_product(&mut by_fixed_version, fixed_version, resolved.product);
        }
        if by_fixed_version.is_empty() {
            by_fixed_version.push((None, Vec::new()));
        }
        read.extend(by_fixed_version.into_iter().map(|(fixed_version, products)| Remediation {
            category,
            products,
            fixed_version,
            kb: None,
            url: non_empty(remediation.url.clone()),
            restart: remediation.restart_required.as_ref().and_then(|r| restart(&r.category)),
            supersedes: None,
            details: non_empty(remediation.details.clone()).map(|d| shorten(&d, MAX_DETAILS_CHARS)),
            vulnerabilities: vec![vulnerability_id.to_string()],
        }));
    }
    read
}

/// The version a vendor fix brings a product to: the product's own version when the
/// vulnerability lists it as fixed, or the upper bound of its affected range (Siemens `<V3.1`
/// with "Update to V3.1 or later version").
fn fixed_version(resolved: &Resolved, listed_as_fixed: bool) -> Option<String> {
    match &resolved.version {
        VersionSpec::Exact(version) if listed_as_fixed => Some(version.clone()),
        VersionSpec::Ranges(ranges) => match ranges.as_slice() {
            [single] => single.fixed.clone(),
            _ => None,
        },
        _ => None,
    }
}

fn add_product(groups: &mut Vec<(Option<String>, Vec<String>)>, fixed_version: Option<String>, product: String) {
    let at = match groups.iter().position(|(v, _)| *v == fixed_version) {
        Some(at) => at,
        None => {
            groups.push((fixed_version, Vec::new()));
            groups.len() - 1
        }
    };
    if !groups[at].1.contains(&product) {
        groups[at].1.push(product);
    }
}

fn remediation_kind(category: &str) -> Option<RemediationKind> {
    match category.trim() {
        "vendor_fix" => Some(RemediationKind::VendorFix),
        "workaround" => Some(RemediationKind::Workaround),
        "mitigation" => Some(RemediationKind::Mitigation),
        "no_fix_planned" => Some(RemediationKind::NoFixPlanned),
        "none_available" => Some(RemediationKind::NoneAvailable),
        _ => None,
    }
}

/// CSAF's restart categories. Every category but `none` restarts something, even if only the
/// vulnerable component (a service), so all of them are a restart for campaign planning;
/// an unknown category is not guessed at.
fn restart(category: &str) -> Option<Restart> {
    match category.trim() {
        "none" => Some(Restart::No),
        "vulnerable_component"
        | "service"
        | "parent"
        | "dependencies"
        | "connected"
        | "machine"
        | "zone"
        | "system" => Some(Restart::Yes),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Merging and references.

/// Entries that carry the vulnerabilities they apply to.
trait PerVulnerability: Clone + PartialEq {
    fn vulnerabilities(&mut self) -> &mut Vec<String>;
}

impl PerVulnerability for Affected {
    fn vulnerabilities(&mut self) -> &mut Vec<String> {
        &mut self.vulnerabilities
    }
}

impl PerVulnerability for Remediation {
    fn vulnerabilities(&mut self) -> &mut Vec<String> {
        &mut self.vulnerabilities
    }
}

/// Joins entries that differ only in their vulnerabilities: CSAF repeats statuses and
/// remediations per vulnerability, the model states each once.
fn merge_across_vulnerabilities<T: PerVulnerability>(items: Vec<T>) -> Vec<T> {
    let mut merged: Vec<T> = Vec::new();
    for mut item in items {
        let ids = std::mem::take(item.vulnerabilities());
        let same = merged.iter_mut().find(|m| {
            let mut bare = (*m).clone();
            bare.vulnerabilities().clear();
            bare == item
        });
        match same {
            Some(existing) => {
                let known = existing.vulnerabilities();
                for id in ids {
                    if !known.contains(&id) {
                        known.push(id);
                    }
                }
            }
            None => {
                *item.vulnerabilities() = ids;
                merged.push(item);
            }
        }
    }
    merged
}

/// The document's links, its `self` references first, then the vulnerabilities' links.
fn references(document: &[Reference], vulnerabilities: &[CsafVulnerability]) -> Vec<String> {
    let is_self = |r: &&Reference| r.category.as_deref() == Some("self");
    let ordered = document
        .iter()
        .filter(is_self)
        .chain(document.iter().filter(|r| !is_self(r)))
        .chain(vulnerabilities.iter().flat_map(|v| &v.references));
    let mut urls: Vec<String> = Vec::new();
    for url in ordered.filter_map(|r| r.url.as_deref()).map(str::trim).filter(|u| !u.is_empty()) {
        if !urls.iter().any(|known| known == url) {
            urls.push(url.to_string());
        }
    }
    urls
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(result: Result<Advisory, ParseError>) -> String {
        match result {
            Err(ParseError::Invalid { format, reason }) => {
                assert_eq!(format, "csaf");
                reason
            }
            other => panic!("expected an invalid-document error, got {other:?}"),
        }
    }

    const MINIMAL: &str = r#"{"document": {"title": "T", "publisher": {"name": "P"},
        "tracking": {"id": "X-1", "initial_release_date": "2024-01-01T00:00:00Z"}}}"#;

    #[test]
    fn truncated_json_is_an_invalid_document() {
        let message = reason(parse(&MINIMAL.as_bytes()[..40]));
        assert!(message.contains("not a CSAF JSON document"), "{message}");
    }

    #[test]
    fn a_missing_tracking_id_is_named() {
        let message = reason(parse(MINIMAL.replace(r#""id": "X-1", "#, "").as_bytes()));
        assert!(message.contains("document.tracking.id"), "{message}");
        let message = reason(parse(br#"{"document": {"title": "T"}}"#));
        assert!(message.contains("document.tracking"), "{message}");
        let message = reason(parse(br#"{"product_tree": {}}"#));
        assert!(message.contains("`document`"), "{message}");
    }

    #[test]
    fn other_missing_or_malformed_fields_are_named() {
        let message = reason(parse(MINIMAL.replace(r#""title": "T", "#, "").as_bytes()));
        assert!(message.contains("document.title"), "{message}");
        let message = reason(parse(MINIMAL.replace("2024-01-01T00:00:00Z", "soon").as_bytes()));
        assert!(message.contains("initial_release_date"), "{message}");
        let message = reason(parse(MINIMAL.replace(r#"{"name": "P"}"#, "{}").as_bytes()));
        assert!(message.contains("document.publisher.name"), "{message}");
    }

    #[test]
    fn a_minimal_document_reads() {
        let advisory = parse(MINIMAL.as_bytes()).unwrap();
        assert_eq!((advisory.id.as_str(), advisory.title.as_str(), advisory.publisher.as_str()), ("X-1", "T", "P"));
        assert_eq!(advisory.updated, None);
        assert!(advisory.vulnerabilities.is_empty() && advisory.affected.is_empty());
    }

    #[test]
    fn nevras_split_into_name_and_epoch_version_release() {
        let read = |t| nevra(t, None);
        assert_eq!(read("telnet-1:0.17-65.el7_6.x86_64"), Some(("telnet".into(), "1:0.17-65.el7_6".into())));
        assert_eq!(read("telnet-server-0.17-65.el7_6.src"), Some(("telnet-server".into(), "0.17-65.el7_6".into())));
        assert_eq!(read("7Server-7.6.AUS"), None);
        assert_eq!(read("Red Hat Enterprise Linux Server AUS (v. 7.6)"), None);
        assert_eq!(read("openshift4/ose-metering-hive:v4.6.0-202112160147.p0.gf139e12.assembly.stream"), None);
        assert_eq!(nevra("foo-1.0-1.el9.riscv64", Some("riscv64")), Some(("foo".into(), "1.0-1.el9".into())));
    }

    #[test]
    fn image_references_split_at_the_tag_not_at_a_registry_port() {
        assert_eq!(
            container_image("openshift4/ose-hive:v4.6.0-1"),
            Some(("openshift4/ose-hive".into(), "v4.6.0-1".into()))
        );
        assert_eq!(container_image("registry:5000/ubi8"), None);
        assert_eq!(container_image("ubi8@sha256:abc"), None);
        assert_eq!(container_image("Cisco IOS 12.2(55)SE"), None);
    }

    #[test]
    fn version_range_names_become_ranges() {
        let fixed = |v: &str| Range { fixed: Some(v.into()), ..Range::default() };
        assert_eq!(version_range("<V3.2"), VersionSpec::Ranges(vec![fixed("V3.2")]));
        assert_eq!(
            version_range("vers:generic/>=2.0|<3.2"),
            VersionSpec::Ranges(vec![Range {
                introduced: Some("2.0".into()),
                fixed: Some("3.2".into()),
                last_affected: None
            }])
        );
        assert_eq!(
            version_range("<= 2.1"),
            VersionSpec::Ranges(vec![Range { last_affected: Some("2.1".into()), ..Range::default() }])
        );
        assert_eq!(version_range("All versions"), VersionSpec::Unknown);
    }

    #[test]
    fn restart_categories_map_to_yes_or_no() {
        assert_eq!(restart("none"), Some(Restart::No));
        assert_eq!(restart("vulnerable_component"), Some(Restart::Yes));
        assert_eq!(restart("machine"), Some(Restart::Yes));
        assert_eq!(restart("whenever"), None);
    }

    /// No shared document has `restart_required`, `product_groups`, `first_affected` or an
    /// exploit status, so they are read from this synthetic one.
    #[test]
    fn groups_restarts_first_affected_and_exploit_status_are_read() {
        let document = r#"{
          "document": {"title": "T", "publisher": {"name": "P"}, "tracking": {"id": "X-2"}},
          "product_tree": {
            "full_product_names": [{"product_id": "A", "name": "Acme Server"}],
            "branches": [{"category": "vendor", "name": "Acme", "branches": [
              {"category": "product_name", "name": "Gadget", "branches": [
                {"category": "product_version", "name": "2.0", "product": {"product_id": "G2", "name": "Acme Gadget 2.0"}},
                {"category": "product_version", "name": "2.4", "product": {"product_id": "G24", "name": "Acme Gadget 2.4"}}]}]}],
            "product_groups": [{"group_id": "ALL", "product_ids": ["A", "G24"]}]
          },
          "vulnerabilities": [{
            "ids": [{"system_name": "Acme", "text": "ACME-7"}],
            "threats": [{"category": "exploit_status", "details": "Exploited in the wild"}],
            "product_status": {"first_affected": ["G2"], "fixed": ["G24"], "known_affected": ["A"],
                               "known_not_affected": ["N"], "under_investigation": ["U"]},
            "remediations": [{"category": "vendor_fix", "group_ids": ["ALL"], "details": "Update",
                              "restart_required": {"category": "machine"}}]
          }]
        }"#;
        let advisory = parse(document.as_bytes()).unwrap();
        let vulnerability = &advisory.vulnerabilities[0];
        assert_eq!((vulnerability.id.as_str(), vulnerability.known_exploited), ("ACME-7", true));
        let products: Vec<_> = advisory.affected.iter().map(|a| a.product.as_str()).collect();
        assert_eq!(products, ["Acme Server", "Acme Gadget"], "not the not-affected or investigated ones");
        assert!(advisory.affected[0].ranges.is_empty() && advisory.affected[0].versions.is_empty());
        assert_eq!(
            advisory.affected[1].ranges,
            [Range { introduced: Some("2.0".into()), fixed: Some("2.4".into()), last_affected: None }]
        );
        let fixes: Vec<_> =
            advisory.remediations.iter().map(|r| (r.products.clone(), r.fixed_version.clone())).collect();
        assert_eq!(fixes, [(vec!["Acme Server".into()], None), (vec!["Acme Gadget".into()], Some("2.4".into()))]);
        assert!(advisory.remediations.iter().all(|r| r.restart == Some(Restart::Yes)));
    }

    #[test]
    fn exploit_status_wording_is_read_with_its_negations() {
        assert!(says_exploited("Active exploitation reported"));
        assert!(!says_exploited("Not exploited"));
        assert!(!says_exploited("No known exploitation"));
        assert!(!says_exploited("Proof of concept published"));
        assert!(!says_exploited("Inactive"), "`inactive` contains `active` but denies it");
    }
}
