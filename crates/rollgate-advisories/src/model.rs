//! The normalized model every format is read into. It keeps what matching, campaigns and
//! reports need, and no more: the original document stays the source of truth (its SHA-256
//! is recorded with each import).

use jiff::Timestamp;
use rollgate_core::ecosystem::{Ecosystem, Range};
use serde::{Deserialize, Serialize};

/// What one document holds.
// Not boxed: a document is read, stored and dropped one at a time, so the few hundred bytes an
// unboxed `Advisory` adds to the other variants cost nothing, while a `Box` would change every
// caller's pattern.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Document {
    /// A vendor or distribution advisory (CSAF, OSV, CVRF).
    Advisory(Advisory),
    /// CVE records (CVE JSON 5, NVD API 2.0): what a CVE is, and which CPE ranges it names.
    Cves(Vec<CveRecord>),
    /// The CISA Known Exploited Vulnerabilities catalog.
    Kev(KevCatalog),
}

/// The format a document was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// OASIS CSAF 2.0 (security advisory or VEX).
    Csaf,
    /// Open Source Vulnerability format.
    Osv,
    /// Microsoft's monthly CVRF 1.x security update guide.
    Cvrf,
    /// CVE JSON 5 record.
    Cve5,
    /// NVD API 2.0 response.
    Nvd,
    /// CISA KEV catalog.
    Kev,
}

impl Format {
    /// The name used on the command line and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csaf => "csaf",
            Format::Osv => "osv",
            Format::Cvrf => "cvrf",
            Format::Cve5 => "cve5",
            Format::Nvd => "nvd",
            Format::Kev => "kev",
        }
    }
}

/// A normalized advisory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    /// The publisher's id: `RHSA-2022:0011`, `DSA-3029-1`, `USN-6937-1`, `2024-Jun`...
    pub id: String,
    /// Format it was read from.
    pub format: Format,
    /// Title or summary.
    pub title: String,
    /// Who published it (`Red Hat Product Security`, `Debian`, `Microsoft`...).
    pub publisher: String,
    /// First published.
    pub published: Option<Timestamp>,
    /// Last updated (equal to `published` when never revised).
    pub updated: Option<Timestamp>,
    /// The publisher's revision label (`1`, `3.0.0`, `2.1`), when the format has one.
    pub revision: Option<String>,
    /// The publisher's qualitative rating of the whole advisory (`Important`, `Critical`).
    pub rating: Option<String>,
    /// Each vulnerability the advisory covers.
    pub vulnerabilities: Vec<Vulnerability>,
    /// What is affected, on which platform, in which versions.
    pub affected: Vec<Affected>,
    /// How to fix or mitigate.
    pub remediations: Vec<Remediation>,
    /// Links (the advisory itself first when the format says which one that is).
    pub references: Vec<String>,
    /// When the publisher withdrew it (OSV's `withdrawn`): a withdrawn advisory was published
    /// in error and affects nothing, so matching finds nothing for it. None for formats that
    /// cannot say so, and in advisories stored before this field existed.
    #[serde(default)]
    pub withdrawn: Option<Timestamp>,
}

/// One vulnerability of an advisory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Vulnerability {
    /// `CVE-…` where there is one, else the publisher's id (`ADV170001`, `GHSA-…`).
    pub id: String,
    /// Title, when the format gives one per vulnerability.
    pub title: Option<String>,
    /// CVSS scores given for it (several: per product, per version of CVSS).
    pub cvss: Vec<Cvss>,
    /// The publisher's qualitative rating (`Critical`, `Moderate`, `low`).
    pub rating: Option<String>,
    /// The source says it is exploited in the wild.
    pub known_exploited: bool,
}

/// A CVSS vector with its base score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cvss {
    /// `2.0`, `3.0`, `3.1`, `4.0`.
    pub version: String,
    /// The vector as published (trimmed).
    pub vector: String,
    /// Base score: the one published, else computed from the vector; None when neither.
    pub base_score: Option<f64>,
}

/// Something the advisory says is affected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Affected {
    /// Package or product name (a source package for distributions).
    pub product: String,
    /// Names to look for among installed software, when they differ from `product` (binary
    /// packages built from a source package: `libssl3`, `openssl`). Empty: `product` itself.
    pub package_names: Vec<String>,
    /// Where this applies: `Debian:7`, `Ubuntu:22.04:LTS`, `Red Hat Enterprise Linux Server
    /// AUS (v. 7.6)`, `Windows 10 Version 1607 for x64-based Systems`. None: everywhere.
    pub platform: Option<String>,
    /// How this product's versions are ordered.
    pub ecosystem: Ecosystem,
    /// Affected version ranges (an empty list with empty `versions`: every version).
    pub ranges: Vec<Range>,
    /// Versions listed one by one as affected.
    pub versions: Vec<String>,
    /// The vulnerabilities (ids) this applies to; empty: all of the advisory's.
    pub vulnerabilities: Vec<String>,
}

/// A fix, workaround or mitigation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Remediation {
    /// What kind.
    pub category: RemediationKind,
    /// Products (names as in [`Affected::product`] or platform names) it applies to.
    pub products: Vec<String>,
    /// The version that fixes it, where stated (a package version or a build number).
    pub fixed_version: Option<String>,
    /// Microsoft KB article number (`5039217`), where the fix is a KB.
    pub kb: Option<String>,
    /// Where to get it.
    pub url: Option<String>,
    /// Whether applying it needs a restart, where stated.
    pub restart: Option<Restart>,
    /// The update this one replaces (a KB number), where stated.
    pub supersedes: Option<String>,
    /// Free text from the publisher, shortened.
    pub details: Option<String>,
    /// The vulnerabilities (ids) it fixes; empty: all of the advisory's.
    pub vulnerabilities: Vec<String>,
}

/// Kinds of remediation (CSAF's categories; CVRF's types map onto them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemediationKind {
    /// An update from the vendor.
    VendorFix,
    /// A configuration change that avoids the problem.
    Workaround,
    /// Something that lowers the risk.
    Mitigation,
    /// No fix is planned.
    NoFixPlanned,
    /// No fix yet.
    NoneAvailable,
}

/// Whether a restart is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Restart {
    /// Yes.
    Yes,
    /// No.
    No,
    /// It depends (Microsoft's "Maybe").
    Maybe,
}

/// A CVE record (CVE JSON 5 or NVD API 2.0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CveRecord {
    /// `CVE-2024-3094`.
    pub id: String,
    /// Which format it came from.
    pub format: Format,
    /// Published.
    pub published: Option<Timestamp>,
    /// Last updated.
    pub updated: Option<Timestamp>,
    /// The CNA's title, else the start of the description.
    pub title: Option<String>,
    /// English description.
    pub description: Option<String>,
    /// CVSS scores.
    pub cvss: Vec<Cvss>,
    /// Qualitative ratings found (`Critical` from a CNA's "other" metric).
    pub rating: Option<String>,
    /// Affected products as the CNA listed them (vendor/product with version ranges).
    pub affected: Vec<Affected>,
    /// Affected CPE ranges (NVD configurations, or CPEs in a CVE 5 record).
    pub cpes: Vec<CpeMatch>,
    /// CISA's KEV facts, where the record carries them (NVD does).
    pub kev: Option<KevFacts>,
}

/// A CPE match criterion with its version bounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CpeMatch {
    /// `cpe:2.3:a:webmproject:libwebp:*:*:*:*:*:*:*:*`.
    pub criteria: String,
    /// True for a vulnerable configuration (false: a platform it runs on).
    pub vulnerable: bool,
    /// Lower bound, inclusive.
    pub start_including: Option<String>,
    /// Lower bound, exclusive.
    pub start_excluding: Option<String>,
    /// Upper bound, inclusive.
    pub end_including: Option<String>,
    /// Upper bound, exclusive.
    pub end_excluding: Option<String>,
}

/// What the KEV catalog says of a CVE.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KevFacts {
    /// Added to the catalog.
    pub date_added: jiff::civil::Date,
    /// Federal agencies' remediation due date.
    pub due_date: Option<jiff::civil::Date>,
    /// Required action.
    pub required_action: Option<String>,
    /// `Known` or `Unknown` use in ransomware campaigns.
    pub ransomware: Option<String>,
}

/// The CISA KEV catalog.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KevCatalog {
    /// Catalog version (`2025.08.25`).
    pub version: String,
    /// When CISA released this version.
    pub released: Option<Timestamp>,
    /// Its entries.
    pub entries: Vec<KevEntry>,
}

/// One KEV entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KevEntry {
    /// The CVE.
    pub cve: String,
    /// Vendor or project.
    pub vendor: String,
    /// Product.
    pub product: String,
    /// CISA's name for the vulnerability.
    pub name: Option<String>,
    /// The KEV facts.
    pub facts: KevFacts,
}

impl Advisory {
    /// The CVE (or other) ids of its vulnerabilities, sorted, each once.
    pub fn vulnerability_ids(&self) -> Vec<String> {
        let ids: std::collections::BTreeSet<&String> = self.vulnerabilities.iter().map(|v| &v.id).collect();
        ids.into_iter().cloned().collect()
    }

    /// The names installed software is looked up by: every affected product and package name,
    /// lower-case, sorted, each once.
    pub fn product_names(&self) -> Vec<String> {
        let names: std::collections::BTreeSet<String> = self
            .affected
            .iter()
            .flat_map(|a| std::iter::once(&a.product).chain(&a.package_names))
            .map(|n| n.to_lowercase())
            .collect();
        names.into_iter().collect()
    }

    /// The highest CVSS base score of its vulnerabilities.
    pub fn max_score(&self) -> Option<f64> {
        crate::score::max_score(self.vulnerabilities.iter().flat_map(|v| &v.cvss))
    }

    /// Whether any of its vulnerabilities is said to be exploited.
    pub fn known_exploited(&self) -> bool {
        self.vulnerabilities.iter().any(|v| v.known_exploited)
    }
}

impl CveRecord {
    /// The highest CVSS base score.
    pub fn max_score(&self) -> Option<f64> {
        crate::score::max_score(&self.cvss)
    }
}
