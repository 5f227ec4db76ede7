//! Which advisories affect an endpoint: an [`Advisory`] (or a [`CveRecord`]) held against what
//! the endpoint runs and has installed, giving one [`Finding`] per affected package or product.
//!
//! Pure: the inventory comes in as an argument and nothing is read or written. A false positive
//! sends an operator to patch a machine that is fine, and enough of them teach operators to
//! ignore findings, so every rule here errs on the side of "not affected" when a platform or a
//! version cannot be read with certainty; each rule says where it does so.
//!
//! **What is looked up where.** An [`Inventory`] has two lists, and each [`Affected`] entry is
//! looked up in at most one of them, chosen by the kind of its platform:
//! - An **operating system** platform (an OSV distribution ecosystem: `Debian:7`,
//!   `Ubuntu:22.04:LTS`, `Red Hat:enterprise_linux:9`, SUSE, openSUSE, Alpine…; or a Red Hat
//!   Enterprise Linux product name from a CSAF product tree) is looked up only in
//!   [`Inventory::packages`], the distribution's packages.
//! - A **language package** ecosystem (`npm`, `PyPI`, `Maven`, `crates.io`, `Go`, `RubyGems`,
//!   `NuGet`, `Packagist`, `Hex`, `Pub`…) matches nothing: Rollgate has no inventory of
//!   language packages yet, and looking their names up among OS packages gave false positives
//!   (npm's `tar` is not dpkg's `tar`).
//! - **No platform, or other free text** (vendor products: Cisco IOS, Siemens SINEMA, Windows
//!   names from CVRF, CVE 5 CNA products without platforms) is looked up only in
//!   [`Inventory::products`], the products Rollgate manages on the endpoint.
//! - A **withdrawn** advisory ([`Advisory::withdrawn`]) matches nothing.
//!
//! The rules, in the order they apply to each [`Affected`] entry:
//! 1. **Platform** ([`platform_matches`]): the entry's platform must apply to the endpoint's
//!    operating system and release; free text applies only where it names the endpoint's
//!    os-release `ID` as a word.
//! 2. **Names**: an entry names its software by [`Affected::package_names`] when there are any
//!    (binary packages built from a source package), else by [`Affected::product`]. A dpkg
//!    entry on an OS platform also names `src:<product>`, always: Debian's advisories name the
//!    source package only, and the agent lists each installed source package under that key
//!    with the source version (a binary's own version can differ, after a binNMU). Names are
//!    compared with inventory names without regard to case, and a finding names the inventory
//!    key that matched (`src:nginx`, `libssl3`).
//! 3. **Versions**: the installed version is affected when it lies in one of the entry's
//!    `ranges` ([`Range::contains`](rollgate_core::ecosystem::Range::contains)) or equals one of
//!    its `versions` under the entry's [`Ecosystem`] order (so `0:1.0` equals `1.0` in dpkg);
//!    with neither, every version is affected.
//!    Epochs are part of the order: an rpm or dpkg version without one has epoch 0, which is
//!    what inventories mean by leaving it out (rpm and dpkg report it whenever it is set).
//! 4. **One finding per fix**: findings with the same software, fix and platform are merged,
//!    their vulnerabilities united and sorted.
//!
//! CPE ranges ([`CveRecord::cpes`]) are not matched: CPE names vendors' products, not the
//! packages an inventory lists, and guessing the mapping would flag the wrong machines.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use rollgate_core::ecosystem::{compare, Ecosystem};
use serde::{Deserialize, Serialize};

use crate::model::{Advisory, Affected, CveRecord};

/// What an endpoint is and has, as far as matching needs.
#[derive(Clone, Copy, Debug)]
pub struct Inventory<'a> {
    /// os-release `ID` (`debian`, `ubuntu`, `rhel`, `almalinux`, `rocky`, `sles`,
    /// `opensuse-leap`, `windows`), lower-case; None when unknown.
    pub os_id: Option<&'a str>,
    /// os-release `VERSION_ID` (`12`, `22.04`, `7.6`); None when unknown.
    pub os_version: Option<&'a str>,
    /// Distribution packages (dpkg or rpm), name -> version. For dpkg, source packages are also
    /// listed under `src:<source name>` with the source version (the agent adds them).
    pub packages: &'a BTreeMap<String, String>,
    /// Products Rollgate manages on the endpoint (and the agent itself), name -> version.
    pub products: &'a BTreeMap<String, String>,
}

/// One reason an endpoint is affected by an advisory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The advisory's id (a CVE id for [`cve_findings`]).
    pub advisory: String,
    /// The inventory key that matched, as the inventory spells it (`libssl3`, `src:nginx`,
    /// `SINEMA Remote Connect Server`).
    pub software: String,
    /// Its installed version.
    pub installed_version: String,
    /// The version that fixes it: the `fixed` bound of the range the installed version is in.
    /// None when the version matched by listing, when every version is affected, or when the
    /// range has no fix.
    pub fixed_version: Option<String>,
    /// The platform of the [`Affected`] entry that matched.
    pub platform: Option<String>,
    /// The vulnerabilities (ids) the entry names, or all of the advisory's when it names none;
    /// sorted, each once.
    pub vulnerabilities: Vec<String>,
}

/// The findings of `advisory` on the endpoint `inventory` describes, ordered by software, fix
/// and platform; empty when the endpoint is not affected or the advisory is withdrawn.
pub fn findings(advisory: &Advisory, inventory: &Inventory<'_>) -> Vec<Finding> {
    if advisory.withdrawn.is_some() {
        return Vec::new();
    }
    collect(&advisory.id, &advisory.affected, &advisory.vulnerability_ids(), inventory)
}

/// The same for a CVE record's `affected` entries (CVE 5 vendor/product ranges; CPE ranges are
/// not matched). CNA entries carry no platform or free-text ones, so they are looked up among
/// the managed products only. Each finding names the record's CVE.
pub fn cve_findings(record: &CveRecord, inventory: &Inventory<'_>) -> Vec<Finding> {
    collect(&record.id, &record.affected, std::slice::from_ref(&record.id), inventory)
}

/// Whether `platform` (an [`Affected::platform`]) applies to the endpoint with os-release `ID`
/// `os_id` and `VERSION_ID` `os_version`.
///
/// - None (or blank) applies everywhere.
/// - An OSV package ecosystem (`Maven`, `npm`, `PyPI`, `crates.io`…, see
///   `PACKAGE_ECOSYSTEMS`) applies to every endpoint, even one whose OS is unknown: the
///   package is the same whatever it runs on. (Findings nevertheless never come from such an
///   entry, since there is no inventory of language packages to look it up in; see the module
///   doc.)
/// - An OSV operating system (`Debian:7`, `Ubuntu:22.04:LTS`, `Alpine:v3.18`, see `OSV_OSES`)
///   applies to the os-release IDs of that OS, in the release named: `VERSION_ID` equal to it
///   or starting with it and a dot (`Debian:7` matches `7` and `7.11`, `Alpine:v3.18` matches
///   `3.18.4`). The name alone (`Debian`) applies to every release. A suffix naming no release
///   that can be compared (`Debian:sid`) applies nowhere.
/// - Red Hat CSAF product names: see `red_hat_product`. Only `rhel`, in the same major
///   release, matches a Red Hat Enterprise Linux platform; other Red Hat products, and a
///   `(v` whose release cannot be read, apply nowhere.
/// - Any other text applies only to an endpoint whose `ID` it names as a word; see
///   `free_text_matches`.
///
/// An endpoint whose `ID` is unknown matches only None and package ecosystems; one whose
/// `VERSION_ID` is unknown matches no platform that names a release.
pub fn platform_matches(platform: Option<&str>, os_id: Option<&str>, os_version: Option<&str>) -> bool {
    let Some(platform) = platform.map(str::trim).filter(|p| !p.is_empty()) else { return true };
    match classify(platform) {
        Platform::PackageEcosystem => true,
        Platform::Os { ids, release } => {
            let id_matches = os_id.is_some_and(|id| ids.iter().any(|known| known.eq_ignore_ascii_case(id)));
            id_matches && release.is_none_or(|release| os_version.is_some_and(|v| release.matches(v)))
        }
        Platform::Nowhere => false,
        Platform::FreeText(text) => os_id.is_some_and(|id| free_text_matches(text, id)),
    }
}

// ---------------------------------------------------------------------------------------------
// Findings

/// Findings are merged on this: software, fix and platform.
type FindingKey = (String, Option<String>, Option<String>);

/// Whether one installed version is affected by one [`Affected`] entry.
#[derive(Debug, PartialEq)]
enum Verdict<'a> {
    /// Outside every range and listed version.
    NotAffected,
    /// Affected; the fix, when the range that matched names one.
    Affected { fixed_version: Option<&'a str> },
}

/// The findings of `affected` entries of the advisory `id`; `all_vulnerabilities` stands in
/// for an entry that names none.
fn collect(id: &str, affected: &[Affected], all_vulnerabilities: &[String], inventory: &Inventory<'_>) -> Vec<Finding> {
    let packages = InstalledByName::new(inventory.packages);
    let products = InstalledByName::new(inventory.products);
    let mut merged: BTreeMap<FindingKey, Finding> = BTreeMap::new();
    let on_this_platform =
        affected.iter().filter(|a| platform_matches(a.platform.as_deref(), inventory.os_id, inventory.os_version));
    for entry in on_this_platform {
        let installed = match looked_up_in(entry.platform.as_deref()) {
            Lookup::Packages => packages.named_by(&package_names(entry)),
            Lookup::Products => products.named_by(&entry_names(entry)),
            Lookup::Nowhere => continue,
        };
        let vulnerabilities =
            if entry.vulnerabilities.is_empty() { all_vulnerabilities } else { &entry.vulnerabilities };
        for (name, version) in installed {
            let Verdict::Affected { fixed_version } = verdict(entry, version) else { continue };
            let finding = Finding {
                advisory: id.to_string(),
                software: name.to_string(),
                installed_version: version.to_string(),
                fixed_version: fixed_version.map(str::to_string),
                platform: entry.platform.clone(),
                vulnerabilities: vulnerabilities.to_vec(),
            };
            merge(&mut merged, finding);
        }
    }
    merged.into_values().collect()
}

/// Which list of an [`Inventory`] an entry is looked up in.
#[derive(Debug, PartialEq)]
enum Lookup {
    /// [`Inventory::packages`]: the entry's platform is an operating system.
    Packages,
    /// [`Inventory::products`]: no platform, or free text naming a vendor's product.
    Products,
    /// Neither: a language package ecosystem (no such inventory yet), or a platform that
    /// applies nowhere.
    Nowhere,
}

/// Where an entry with `platform` is looked up; see the module doc for why.
fn looked_up_in(platform: Option<&str>) -> Lookup {
    let Some(platform) = platform.map(str::trim).filter(|p| !p.is_empty()) else { return Lookup::Products };
    match classify(platform) {
        Platform::Os { .. } => Lookup::Packages,
        Platform::FreeText(_) => Lookup::Products,
        Platform::PackageEcosystem | Platform::Nowhere => Lookup::Nowhere,
    }
}

/// The lower-cased names an OS entry is looked up by among packages: its binary package names
/// when it has any, else its product; and for dpkg also `src:<product>`, the source package,
/// which is what Debian's advisories name.
fn package_names(entry: &Affected) -> BTreeSet<String> {
    let mut names = entry_names(entry);
    if entry.ecosystem == Ecosystem::Dpkg {
        names.insert(format!("src:{}", entry.product.to_lowercase()));
    }
    names
}

/// The lower-cased names an entry names its software by: its package names when it has any,
/// else its product.
fn entry_names(entry: &Affected) -> BTreeSet<String> {
    if entry.package_names.is_empty() {
        BTreeSet::from([entry.product.to_lowercase()])
    } else {
        entry.package_names.iter().map(|n| n.to_lowercase()).collect()
    }
}

/// Adds `finding` to `merged`, uniting its vulnerabilities with those of an earlier finding for
/// the same software, fix and platform (two entries of one advisory often split the CVEs of one
/// fix).
fn merge(merged: &mut BTreeMap<FindingKey, Finding>, finding: Finding) {
    let key = (finding.software.clone(), finding.fixed_version.clone(), finding.platform.clone());
    let kept = merged.entry(key).or_insert_with(|| Finding { vulnerabilities: Vec::new(), ..finding.clone() });
    let united: BTreeSet<String> = kept.vulnerabilities.drain(..).chain(finding.vulnerabilities).collect();
    kept.vulnerabilities = united.into_iter().collect();
}

/// Whether `version` is affected by `entry`, under the entry's version order.
///
/// A range is tried before the listed versions because it names the fix. When ranges overlap
/// (rare: OSV writes one range per release branch) the first one containing the version, in the
/// entry's order, gives the fix.
fn verdict<'a>(entry: &'a Affected, version: &str) -> Verdict<'a> {
    if entry.ranges.is_empty() && entry.versions.is_empty() {
        return Verdict::Affected { fixed_version: None };
    }
    if let Some(range) = entry.ranges.iter().find(|r| r.contains(entry.ecosystem, version)) {
        return Verdict::Affected { fixed_version: range.fixed.as_deref() };
    }
    if is_listed(entry.ecosystem, &entry.versions, version) {
        return Verdict::Affected { fixed_version: None };
    }
    Verdict::NotAffected
}

/// Whether `version` equals one of `listed` in the order of `ecosystem` (not as strings:
/// `1:1.0` and `01:1.0` are one dpkg version).
fn is_listed(ecosystem: Ecosystem, listed: &[String], version: &str) -> bool {
    listed.iter().any(|v| compare(ecosystem, version, v) == Ordering::Equal)
}

/// The inventory indexed by lower-cased name, so that each entry's names are looked up instead
/// of compared with every installed package.
struct InstalledByName<'a> {
    /// Lower-cased name -> (name as installed, version); several when names differ only in case.
    by_name: BTreeMap<String, Vec<(&'a str, &'a str)>>,
}

impl<'a> InstalledByName<'a> {
    fn new(software: &'a BTreeMap<String, String>) -> Self {
        let mut by_name: BTreeMap<String, Vec<(&str, &str)>> = BTreeMap::new();
        for (name, version) in software {
            by_name.entry(name.to_lowercase()).or_default().push((name, version));
        }
        InstalledByName { by_name }
    }

    /// The installed (name, version) pairs under `names` (lower-case), each once.
    fn named_by(&self, names: &BTreeSet<String>) -> Vec<(&'a str, &'a str)> {
        names.iter().filter_map(|n| self.by_name.get(n)).flatten().copied().collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Platforms

/// What a platform string says about where it applies.
#[derive(Debug, PartialEq)]
enum Platform<'a> {
    /// A language package ecosystem: every endpoint, but nothing in an [`Inventory`] to look
    /// its packages up in.
    PackageEcosystem,
    /// An operating system: one of `ids` (os-release `ID`s), in `release` or (None) in every
    /// release.
    Os { ids: &'static [&'static str], release: Option<Release> },
    /// Something that is not an operating system we can match, or a release we cannot read.
    Nowhere,
    /// Text of no known form.
    FreeText(&'a str),
}

/// A release an OS platform names, to compare with `VERSION_ID`.
#[derive(Debug, PartialEq)]
struct Release {
    /// The release as `VERSION_ID` writes it (`7`, `22.04`, `15.5`).
    version: String,
    /// Only an equal `VERSION_ID` matches, not one that continues it (`15` is SLES 15 GA, not
    /// SLES 15 SP5, whose `VERSION_ID` is `15.5`).
    exact: bool,
}

impl Release {
    /// Whether `VERSION_ID` `os_version` is this release: equal, or (unless exact) starting
    /// with it and a dot (`7` is `7.11`, not `70`).
    fn matches(&self, os_version: &str) -> bool {
        let os_version = os_version.trim();
        os_version == self.version
            || (!self.exact && os_version.strip_prefix(self.version.as_str()).is_some_and(|rest| rest.starts_with('.')))
    }
}

/// OSV ecosystems of language and application packages: the same package whatever OS it is
/// installed on, so they apply everywhere (though nothing is looked up for them yet). `Linux` (the kernel's own ecosystem) and `Android`
/// are left out: they are systems, not packages an inventory lists by these names.
const PACKAGE_ECOSYSTEMS: &[&str] = &[
    "Bioconductor",
    "Bitnami",
    "CRAN",
    "ConanCenter",
    "crates.io",
    "GHC",
    "GitHub Actions",
    "Go",
    "Hackage",
    "Hex",
    "Julia",
    "Maven",
    "npm",
    "NuGet",
    "opam",
    "OSS-Fuzz",
    "Packagist",
    "Pub",
    "PyPI",
    "RubyGems",
    "SwiftURL",
    "VSCode",
];

/// An OSV ecosystem that is an operating system distribution.
#[derive(Debug)]
struct OsvOs {
    /// The OSV ecosystem name (the part before the first `:`).
    name: &'static str,
    /// The os-release `ID`s it covers when no edition word narrows them.
    ids: &'static [&'static str],
    /// Words of the suffix that name an edition, each with its `ID`s; the first one in this
    /// order that occurs decides (so `Leap Micro` is Leap Micro, not Leap).
    editions: &'static [(&'static str, &'static [&'static str])],
    /// When not empty, the suffix's first field must start with one of these, or the platform
    /// is not this OS (Red Hat's `Red Hat:openshift:4.13` is not RHEL 4).
    products: &'static [&'static str],
    /// Releases carry a service pack (`15 SP5`, whose `VERSION_ID` is `15.5`) and compare
    /// exactly, since SLES 15 GA's `VERSION_ID` is `15`.
    service_packs: bool,
}

const fn os(name: &'static str, ids: &'static [&'static str]) -> OsvOs {
    OsvOs { name, ids, editions: &[], products: &[], service_packs: false }
}

/// OSV operating system ecosystems and the os-release `ID`s each covers.
///
/// Red Hat is `rhel` only: AlmaLinux and Rocky Linux publish their own advisories with their
/// own release strings (`el8_6.alma`), and Red Hat's fixed versions would mislead on them.
const OSV_OSES: &[OsvOs] = &[
    os("Debian", &["debian"]),
    os("Ubuntu", &["ubuntu"]),
    OsvOs {
        name: "Red Hat",
        ids: &["rhel"],
        editions: &[],
        products: &["enterprise_linux", "rhel"],
        service_packs: false,
    },
    os("AlmaLinux", &["almalinux"]),
    os("Rocky Linux", &["rocky"]),
    OsvOs {
        name: "SUSE",
        ids: &["sles", "sled", "sles_sap"],
        editions: &[("Desktop", &["sled"]), ("Micro", &["sle-micro"]), ("SAP", &["sles_sap"]), ("Server", &["sles"])],
        products: &[],
        service_packs: true,
    },
    OsvOs {
        name: "openSUSE",
        ids: &["opensuse-leap", "opensuse-tumbleweed"],
        editions: &[
            ("Tumbleweed", &["opensuse-tumbleweed"]),
            ("Micro", &["opensuse-leap-micro"]),
            ("Leap", &["opensuse-leap"]),
        ],
        products: &[],
        service_packs: false,
    },
    os("Alpine", &["alpine"]),
    os("Alpaquita", &["alpaquita"]),
    os("Wolfi", &["wolfi"]),
    os("Chainguard", &["chainguard"]),
    os("MinimOS", &["minimos"]),
    os("Mageia", &["mageia"]),
    os("openEuler", &["openeuler"]),
    os("Azure Linux", &["azurelinux"]),
    os("Photon OS", &["photon"]),
];

/// Reads a (non-blank, trimmed) platform string.
fn classify(platform: &str) -> Platform<'_> {
    let (name, suffix) = match platform.split_once(':') {
        Some((name, suffix)) => (name.trim(), Some(suffix)),
        None => (platform, None),
    };
    if PACKAGE_ECOSYSTEMS.iter().any(|e| e.eq_ignore_ascii_case(name)) {
        return Platform::PackageEcosystem;
    }
    if let Some(os) = OSV_OSES.iter().find(|os| os.name.eq_ignore_ascii_case(name)) {
        return osv_os(os, suffix);
    }
    if starts_with_ignore_case(platform, "Red Hat ") {
        return red_hat_product(platform);
    }
    Platform::FreeText(platform)
}

/// An OSV OS platform: `os` with the `suffix` after its name (`7`, `22.04:LTS`,
/// `Linux Enterprise Server 15 SP5`, `enterprise_linux:9::appstream`), or None for the name alone.
///
/// The release is the first word of the suffix that starts with a digit (or `v` and a digit, as
/// Alpine writes it), cut to its leading digits and dots. A suffix with neither a release nor an
/// edition word (`Debian:sid`) cannot be compared with `VERSION_ID` and applies nowhere.
fn osv_os(os: &'static OsvOs, suffix: Option<&str>) -> Platform<'static> {
    let Some(suffix) = suffix else { return Platform::Os { ids: os.ids, release: None } };
    let first_field = suffix.split(':').next().unwrap_or_default().trim().to_ascii_lowercase();
    if !os.products.is_empty() && !os.products.iter().any(|p| first_field.starts_with(p)) {
        return Platform::Nowhere;
    }
    let words: Vec<&str> = suffix.split(|c: char| c == ':' || c.is_whitespace()).filter(|w| !w.is_empty()).collect();
    let edition = os.editions.iter().find(|(word, _)| words.iter().any(|w| w.eq_ignore_ascii_case(word)));
    let ids = edition.map_or(os.ids, |&(_, ids)| ids);
    match osv_release(&words, os.service_packs) {
        Some(release) => Platform::Os { ids, release: Some(release) },
        None if edition.is_some() => Platform::Os { ids, release: None },
        None => Platform::Nowhere,
    }
}

/// The release among `words`; with `service_packs`, a following `SPn` word makes `15 SP5` the
/// release `15.5` (as SUSE's `VERSION_ID` writes it), and the release compares exactly.
fn osv_release(words: &[&str], service_packs: bool) -> Option<Release> {
    let at = words.iter().position(|w| release_number(w).is_some())?;
    let number = release_number(words[at])?;
    let service_pack = words.get(at + 1).and_then(|w| service_pack(w)).filter(|_| service_packs);
    let version = match service_pack {
        Some(sp) => format!("{number}.{sp}"),
        None => number.to_string(),
    };
    Some(Release { version, exact: service_packs })
}

/// The release number a word starts with (`22.04`, `v3.18` -> `3.18`, `22.03-LTS` -> `22.03`),
/// without a trailing dot; None when it does not start with a digit.
fn release_number(word: &str) -> Option<&str> {
    let word = match word.strip_prefix(['v', 'V']) {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => rest,
        _ => word,
    };
    let end = word.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(word.len());
    let number = word[..end].trim_end_matches('.');
    number.starts_with(|c: char| c.is_ascii_digit()).then_some(number)
}

/// The number of a service-pack word (`SP5`, `SP5-LTSS` -> `5`).
fn service_pack(word: &str) -> Option<&str> {
    let rest = word.strip_prefix("SP").or_else(|| word.strip_prefix("sp"))?;
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

/// Product names from Red Hat's CSAF product trees that are Red Hat Enterprise Linux (its
/// variants and repositories: `Server AUS (v. 7.6)`, `AppStream (v. 8)`).
const RHEL_PRODUCTS: &[&str] = &["Red Hat Enterprise Linux", "Red Hat CodeReady Linux Builder"];

/// A Red Hat product name from a CSAF product tree.
///
/// Red Hat Enterprise Linux matches `ID` `rhel` only (not AlmaLinux or Rocky: see
/// `OSV_OSES`) in the same major release: `(v. 7.6)` (or `(v.7.6)`) is RHEL 7, whose fixes are
/// what a 7.x endpoint installs; a name without a release is every release. A `(v` whose
/// release cannot be read applies nowhere rather than to every release. Every other Red Hat
/// product (`Red Hat OpenShift Container Platform 4.6`, a layered product or container image)
/// applies nowhere: it is not the endpoint's OS, and matching its packages needs a product
/// inventory that endpoints do not report yet.
fn red_hat_product(platform: &str) -> Platform<'_> {
    let Some(rest) = RHEL_PRODUCTS.iter().find_map(|p| strip_prefix_ignore_case(platform, p)) else {
        return Platform::Nowhere;
    };
    let Some(release) = red_hat_release(rest) else { return Platform::Nowhere };
    let major = release.map(|n| n.split('.').next().unwrap_or(n));
    Platform::Os { ids: &["rhel"], release: major.map(|major| Release { version: major.to_string(), exact: false }) }
}

/// The release the rest of a RHEL product name gives: the number after `(v. ` or `(v.`, else
/// the first word that is a number (`Enterprise Linux 9`). `Some(None)` when it names none (all
/// releases); None when it has a `(v` with no readable number after it (applies nowhere).
fn red_hat_release(rest: &str) -> Option<Option<&str>> {
    let Some(at) = rest.find("(v").or_else(|| rest.find("(V")) else {
        return Some(rest.split_whitespace().find_map(release_number));
    };
    let after = rest[at + 2..].strip_prefix('.')?.trim_start();
    let number = after.split_whitespace().next().and_then(release_number)?;
    Some(Some(number))
}

/// Whether free text (`Windows 10 Version 1607 for x64-based Systems`, a CVE 5 `Linux, Windows`)
/// applies to an endpoint with `ID` `os_id`: only when the text names the ID as a whole word,
/// without regard to case.
///
/// Conservative in one direction only: text that does not name the endpoint's OS never matches
/// (`Linux` does not match `debian`). The release is not checked, because free text has no
/// common form for it, so `Windows 10` matches any Windows endpoint; readers that know their
/// platforms (CVRF) put the platform into the product name instead and leave this None.
fn free_text_matches(text: &str, os_id: &str) -> bool {
    let os_id = os_id.trim().to_lowercase();
    if os_id.is_empty() {
        return false;
    }
    let text = text.to_lowercase();
    let is_word_char = |c: char| c.is_alphanumeric() || c == '-' || c == '_';
    text.match_indices(&os_id).any(|(at, word)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_word_char) && !after.is_some_and(is_word_char)
    })
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    strip_prefix_ignore_case(text, prefix).is_some()
}

/// `text` after `prefix` compared without regard to ASCII case.
fn strip_prefix_ignore_case<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollgate_core::ecosystem::Range;

    #[test]
    fn release_numbers() {
        assert_eq!(release_number("22.04"), Some("22.04"));
        assert_eq!(release_number("v3.18"), Some("3.18"));
        assert_eq!(release_number("22.03-LTS-SP1"), Some("22.03"));
        assert_eq!(release_number("7.6)"), Some("7.6"));
        assert_eq!(release_number("9."), Some("9"));
        assert_eq!(release_number("x86_64"), None);
        assert_eq!(release_number("v"), None);
        assert_eq!(release_number("LTS"), None);
    }

    #[test]
    fn service_packs() {
        assert_eq!(service_pack("SP5"), Some("5"));
        assert_eq!(service_pack("SP5-LTSS"), Some("5"));
        assert_eq!(service_pack("SP"), None);
        assert_eq!(service_pack("SAP"), None);
    }

    #[test]
    fn verdict_prefers_the_range_that_names_the_fix() {
        let entry = Affected {
            product: "p".into(),
            package_names: Vec::new(),
            platform: None,
            ecosystem: Ecosystem::Dpkg,
            ranges: vec![Range { introduced: Some("0".into()), fixed: Some("1.2".into()), last_affected: None }],
            versions: vec!["1.1".into(), "1.5".into()],
            vulnerabilities: Vec::new(),
        };
        assert_eq!(verdict(&entry, "1.1"), Verdict::Affected { fixed_version: Some("1.2") });
        assert_eq!(verdict(&entry, "1.5"), Verdict::Affected { fixed_version: None });
        assert_eq!(verdict(&entry, "0:1.5"), Verdict::Affected { fixed_version: None });
        assert_eq!(verdict(&entry, "1.3"), Verdict::NotAffected);
    }

    #[test]
    fn platforms_choose_the_list_looked_up() {
        assert_eq!(looked_up_in(None), Lookup::Products);
        assert_eq!(looked_up_in(Some(" ")), Lookup::Products);
        assert_eq!(looked_up_in(Some("Debian:7")), Lookup::Packages);
        assert_eq!(looked_up_in(Some("Red Hat Enterprise Linux AppStream (v. 8)")), Lookup::Packages);
        assert_eq!(looked_up_in(Some("npm")), Lookup::Nowhere);
        assert_eq!(looked_up_in(Some("Red Hat OpenShift Container Platform 4.6")), Lookup::Nowhere);
        assert_eq!(looked_up_in(Some("Windows 10 Version 1607 for x64-based Systems")), Lookup::Products);
    }

    #[test]
    fn red_hat_releases() {
        assert_eq!(red_hat_release(" Server AUS (v. 7.6)"), Some(Some("7.6")));
        assert_eq!(red_hat_release(" AppStream EUS (v.8.4)"), Some(Some("8.4")));
        assert_eq!(red_hat_release(" 9"), Some(Some("9")));
        assert_eq!(red_hat_release(""), Some(None));
        assert_eq!(red_hat_release(" Server (v. unknown)"), None);
        assert_eq!(red_hat_release(" Server (v.)"), None);
    }
}
