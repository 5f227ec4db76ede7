//! Version order per packaging ecosystem, for matching security advisories against installed software.
//!
//! CSAF, OSV, Microsoft CVRF and NVD CPE ranges name a fixed or last affected version in the
//! vocabulary of one ecosystem, and each ecosystem orders versions its own way: dpkg sorts
//! `1.0~rc1` before `1.0`, rpm sorts `1.0^git1` after `1.0`, semantic versioning ignores build
//! metadata. Comparing with the wrong order misses vulnerable machines or flags patched ones, so
//! every comparison names its [`Ecosystem`]. The lenient product order in [`crate::version`] is the
//! [`Ecosystem::Generic`] fallback.
//!
//! Every order here is total over all strings: malformed input never panics and never errors,
//! because an advisory feed is untrusted input and one bad record must not stop a scan.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A family of version strings that share one ordering rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    /// Debian and Ubuntu packages: Debian policy §5.6.12 (`epoch:upstream-revision`).
    Dpkg,
    /// RPM packages (Red Hat family, SUSE): `rpmvercmp` over `epoch:version-release`.
    Rpm,
    /// Semantic Versioning 2.0 precedence, tolerating a leading `v` and missing minor or patch.
    Semver,
    /// Windows build numbers such as `10.0.19045.4529`, compared numerically per dotted segment.
    #[serde(rename = "msbuild")]
    MicrosoftBuild,
    /// The lenient product order of [`crate::version::compare`], for everything else.
    Generic,
}

/// OSV ecosystem names (the part before any `:`) and the order each one uses.
///
/// Ecosystems absent here use [`Ecosystem::Generic`]. Notable choices:
/// - Maven maps to `Generic`: Maven's `ComparableVersion` has its own qualifier ranking
///   (`alpha` < `beta` < `milestone` < `rc` < `snapshot` < release < `sp`) and allows any number of
///   segments, so strict semver would reject many real versions (`2.12.7.1`, `5.4.2.Final`).
/// - PyPI maps to `Generic`: PEP 440 is its own order (`1!` epochs, `.devN` before pre-releases,
///   `.postN` after the release). The generic order gets ordinary releases and `rcN`/`.postN`
///   right but not `.devN`; a PEP 440 order would be a new [`Ecosystem`] variant.
/// - Alpine, Wolfi, Chainguard, MinimOS and Alpaquita use apk's order, RubyGems and Packagist
///   their own; all map to `Generic` until they get a variant of their own.
/// - NuGet maps to `Semver`: four-part NuGet versions are not semver and fall back to `Generic`
///   inside [`compare`].
const OSV_ECOSYSTEMS: &[(&str, Ecosystem)] = &[
    ("Debian", Ecosystem::Dpkg),
    ("Ubuntu", Ecosystem::Dpkg),
    ("Red Hat", Ecosystem::Rpm),
    ("AlmaLinux", Ecosystem::Rpm),
    ("Rocky Linux", Ecosystem::Rpm),
    ("openSUSE", Ecosystem::Rpm),
    ("SUSE", Ecosystem::Rpm),
    ("Mageia", Ecosystem::Rpm),
    ("openEuler", Ecosystem::Rpm),
    ("Azure Linux", Ecosystem::Rpm),
    ("Photon OS", Ecosystem::Rpm),
    ("npm", Ecosystem::Semver),
    ("crates.io", Ecosystem::Semver),
    ("Go", Ecosystem::Semver),
    ("Hex", Ecosystem::Semver),
    ("Pub", Ecosystem::Semver),
    ("NuGet", Ecosystem::Semver),
    ("SwiftURL", Ecosystem::Semver),
    ("Bitnami", Ecosystem::Semver),
    ("Julia", Ecosystem::Semver),
    ("VSCode", Ecosystem::Semver),
    ("GitHub Actions", Ecosystem::Semver),
];

impl Ecosystem {
    /// Every ecosystem, in declaration order.
    pub const ALL: [Ecosystem; 5] =
        [Ecosystem::Dpkg, Ecosystem::Rpm, Ecosystem::Semver, Ecosystem::MicrosoftBuild, Ecosystem::Generic];

    /// The stable lower-case name, as accepted by [`FromStr`].
    pub fn as_str(self) -> &'static str {
        match self {
            Ecosystem::Dpkg => "dpkg",
            Ecosystem::Rpm => "rpm",
            Ecosystem::Semver => "semver",
            Ecosystem::MicrosoftBuild => "msbuild",
            Ecosystem::Generic => "generic",
        }
    }

    /// Maps an OSV `affected[].package.ecosystem` string to the order its versions use.
    ///
    /// A release suffix is ignored (`Debian:7`, `Ubuntu:22.04:LTS`, `Red Hat:enterprise_linux:9`),
    /// and the name matches without regard to ASCII case so that hand-written feeds still match.
    /// Unknown ecosystems get [`Ecosystem::Generic`] rather than an error, because OSV adds
    /// ecosystems over time and a scan should degrade, not stop.
    pub fn for_osv(ecosystem: &str) -> Ecosystem {
        let name = ecosystem.split_once(':').map_or(ecosystem, |(name, _)| name).trim();
        OSV_ECOSYSTEMS
            .iter()
            .find(|(osv, _)| osv.eq_ignore_ascii_case(name))
            .map_or(Ecosystem::Generic, |&(_, ecosystem)| ecosystem)
    }
}

impl fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of `dpkg`, `rpm`, `semver`, `msbuild` or `generic`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown version ecosystem `{0}`: expected dpkg, rpm, semver, msbuild or generic")]
pub struct UnknownEcosystem(pub String);

impl FromStr for Ecosystem {
    type Err = UnknownEcosystem;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ecosystem::ALL.into_iter().find(|e| e.as_str() == s).ok_or_else(|| UnknownEcosystem(s.to_string()))
    }
}

/// Orders two versions of the same ecosystem. Total over all strings; never panics.
pub fn compare(ecosystem: Ecosystem, a: &str, b: &str) -> Ordering {
    match ecosystem {
        Ecosystem::Dpkg => dpkg_compare(a, b),
        Ecosystem::Rpm => rpm_compare(a, b),
        Ecosystem::Semver => semver_compare(a, b),
        Ecosystem::MicrosoftBuild => msbuild_compare(a, b),
        Ecosystem::Generic => crate::version::compare(a, b),
    }
}

/// One affected range of an advisory, in OSV's terms.
///
/// The bounds are owned so that a parsed advisory can keep its ranges; [`in_range`] is the same
/// test over borrowed strings.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Range {
    /// First affected version; `None` or `"0"` means affected since the beginning.
    pub introduced: Option<String>,
    /// First version that is no longer affected (exclusive upper bound).
    pub fixed: Option<String>,
    /// Last version known to be affected (inclusive upper bound).
    pub last_affected: Option<String>,
}

impl Range {
    /// Whether `version` falls inside this range under the order of `ecosystem`.
    pub fn contains(&self, ecosystem: Ecosystem, version: &str) -> bool {
        in_range(ecosystem, version, self.introduced.as_deref(), self.fixed.as_deref(), self.last_affected.as_deref())
    }
}

/// Whether `version` is affected: at or after `introduced`, before `fixed` and at or before
/// `last_affected`, each bound applying only when given.
///
/// `introduced` of `None` or `"0"` means "from the beginning": OSV writes `"0"` for that, and in
/// dpkg and rpm order `"0"` is not the least version (`~1` sorts below it), so it is special-cased
/// rather than compared. With no upper bound at all every later version is affected, as in OSV.
pub fn in_range(
    ecosystem: Ecosystem,
    version: &str,
    introduced: Option<&str>,
    fixed: Option<&str>,
    last_affected: Option<&str>,
) -> bool {
    let after_start = match introduced {
        None | Some("0") => true,
        Some(start) => compare(ecosystem, version, start) != Ordering::Less,
    };
    let before_fix = fixed.is_none_or(|fix| compare(ecosystem, version, fix) == Ordering::Less);
    let up_to_last = last_affected.is_none_or(|last| compare(ecosystem, version, last) != Ordering::Greater);
    after_start && before_fix && up_to_last
}

/// Compares two runs of ASCII digits as unbounded non-negative integers, so that a 30-digit
/// snapshot date cannot overflow. Leading zeros are ignored; an empty run counts as zero.
fn cmp_digits(a: &[u8], b: &[u8]) -> Ordering {
    let a = strip_leading_zeros(a);
    let b = strip_leading_zeros(b);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn strip_leading_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&c| c == b'0').count();
    &digits[zeros..]
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

/// The longest prefix of `s[start..]` whose bytes satisfy `class`.
fn run(s: &[u8], start: usize, class: fn(&u8) -> bool) -> &[u8] {
    let rest = s.get(start..).unwrap_or_default();
    let len = rest.iter().take_while(|c| class(c)).count();
    &rest[..len]
}

/// Splits `epoch:rest` where the epoch is a (possibly empty) run of digits, as dpkg and rpm do.
/// Without such a prefix the epoch is empty, which [`cmp_digits`] reads as 0, and a colon later
/// in the string stays part of the version.
fn split_epoch(v: &str) -> (&str, &str) {
    match v.split_once(':') {
        Some((epoch, rest)) if epoch.bytes().all(|c| c.is_ascii_digit()) => (epoch, rest),
        _ => ("", v),
    }
}

/// Splits `upstream-revision` at the last hyphen, as dpkg does; no hyphen means an empty revision.
fn split_revision(v: &str) -> (&str, &str) {
    v.rsplit_once('-').unwrap_or((v, ""))
}

// ---------------------------------------------------------------------------------------------
// dpkg

/// Debian policy §5.6.12: epochs numerically, then upstream version, then Debian revision, each
/// by [`dpkg_verrevcmp`]. A missing revision is empty, which compares equal to `0`, as in dpkg.
fn dpkg_compare(a: &str, b: &str) -> Ordering {
    let (a_epoch, a_rest) = split_epoch(a);
    let (b_epoch, b_rest) = split_epoch(b);
    let (a_upstream, a_revision) = split_revision(a_rest);
    let (b_upstream, b_revision) = split_revision(b_rest);
    cmp_digits(a_epoch.as_bytes(), b_epoch.as_bytes())
        .then_with(|| dpkg_verrevcmp(a_upstream, b_upstream))
        .then_with(|| dpkg_verrevcmp(a_revision, b_revision))
}

/// dpkg's character weight: digits and the end of the string weigh 0 (the non-digit part ended),
/// `~` weighs less than that so it sorts before even the end, letters weigh their code, and other
/// characters weigh more than every letter.
fn dpkg_weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`: alternately a non-digit run compared character by character with
/// [`dpkg_weight`], then a digit run compared numerically.
fn dpkg_verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        loop {
            let (x, y) = (a.get(i).copied(), b.get(j).copied());
            if !(x.is_some_and(|c| !c.is_ascii_digit()) || y.is_some_and(|c| !c.is_ascii_digit())) {
                break;
            }
            // Weights are distinct for distinct non-digits, so equal weights mean both sides
            // still hold the same character and both indices stay in bounds.
            match dpkg_weight(x).cmp(&dpkg_weight(y)) {
                Ordering::Equal => (i, j) = (i + 1, j + 1),
                other => return other,
            }
        }
        let a_digits = run(a, i, u8::is_ascii_digit);
        let b_digits = run(b, j, u8::is_ascii_digit);
        match cmp_digits(a_digits, b_digits) {
            Ordering::Equal => (i, j) = (i + a_digits.len(), j + b_digits.len()),
            other => return other,
        }
    }
    Ordering::Equal
}

// ---------------------------------------------------------------------------------------------
// rpm

/// rpm's `epoch:version-release` order, as `rpmverCmp` in rpm ≥ 4.16: epochs numerically
/// (missing = 0), then version and release by [`rpmvercmp`].
///
/// A missing release sorts before every release, even an empty or `~` one (`1.0` < `1.0-` <
/// `1.0-1`), exactly as `rpmverCmp` does. rpm's dependency matching instead lets a missing release
/// match every release, but that is not a total order; rpm advisories always state the release.
fn rpm_compare(a: &str, b: &str) -> Ordering {
    let (a_epoch, a_rest) = split_epoch(a);
    let (b_epoch, b_rest) = split_epoch(b);
    let (a_version, a_release) = split_rpm_release(a_rest);
    let (b_version, b_release) = split_rpm_release(b_rest);
    cmp_digits(a_epoch.as_bytes(), b_epoch.as_bytes())
        .then_with(|| rpmvercmp(a_version, b_version))
        .then_with(|| rpm_release_cmp(a_release, b_release))
}

fn rpm_release_cmp(a: Option<&str>, b: Option<&str>) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => rpmvercmp(x, y),
        _ => a.is_some().cmp(&b.is_some()),
    }
}

/// Splits `version-release` at the last hyphen, as rpm does; `None` when there is no release.
fn split_rpm_release(v: &str) -> (&str, Option<&str>) {
    v.rsplit_once('-').map_or((v, None), |(version, release)| (version, Some(release)))
}

fn is_rpm_separator(c: &u8) -> bool {
    !c.is_ascii_alphanumeric() && *c != b'~' && *c != b'^'
}

/// rpm's `rpmvercmp` (rpm ≥ 4.15, with the caret), transcribed step by step from `rpmvercmp.c`.
///
/// Separators only delimit segments; `~` sorts before anything, even the end; `^` sorts after
/// the end but before anything else; a digit segment beats an alphabetic one; digit segments
/// compare numerically, alphabetic ones bytewise; with all segments equal, the longer wins.
fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    loop {
        i += run(a, i, is_rpm_separator).len();
        j += run(b, j, is_rpm_separator).len();
        let (x, y) = (a.get(i).copied(), b.get(j).copied());
        if x == Some(b'~') || y == Some(b'~') {
            match (x, y) {
                (Some(b'~'), Some(b'~')) => (i, j) = (i + 1, j + 1),
                (Some(b'~'), _) => return Ordering::Less,
                _ => return Ordering::Greater,
            }
            continue;
        }
        if x == Some(b'^') || y == Some(b'^') {
            match (x, y) {
                (None, _) => return Ordering::Less,
                (_, None) => return Ordering::Greater,
                (Some(b'^'), Some(b'^')) => (i, j) = (i + 1, j + 1),
                (Some(b'^'), _) => return Ordering::Less,
                _ => return Ordering::Greater,
            }
            continue;
        }
        let Some(first) = x.filter(|_| y.is_some()) else { break };
        let numeric = first.is_ascii_digit();
        let class: fn(&u8) -> bool = if numeric { u8::is_ascii_digit } else { u8::is_ascii_alphabetic };
        let a_seg = run(a, i, class);
        let b_seg = run(b, j, class);
        if b_seg.is_empty() {
            // Segments of different kinds: the numeric one is newer.
            return if numeric { Ordering::Greater } else { Ordering::Less };
        }
        let order = if numeric { cmp_digits(a_seg, b_seg) } else { a_seg.cmp(b_seg) };
        if order != Ordering::Equal {
            return order;
        }
        (i, j) = (i + a_seg.len(), j + b_seg.len());
    }
    (i < a.len()).cmp(&(j < b.len()))
}

// ---------------------------------------------------------------------------------------------
// semver

/// A semantic version borrowed from its text: the three core numbers (missing ones read as `0`)
/// and the dot-separated pre-release identifiers, if any. Build metadata is dropped.
struct Semver<'a> {
    core: [&'a str; 3],
    pre: Option<&'a str>,
}

/// SemVer 2.0 precedence, or the generic order when either side is not a (tolerated) semver.
///
/// Hand-written rather than the `semver` crate: advisories and registries write `v1.2`, `1.2`
/// and `1.2.3` for the same family, and the crate rejects the first two; the core crate also
/// keeps its dependency list short. The fallback makes the order total, though a mix of semver
/// and non-semver strings is only as consistent as the generic order.
fn semver_compare(a: &str, b: &str) -> Ordering {
    match (parse_semver(a), parse_semver(b)) {
        (Some(x), Some(y)) => semver_precedence(&x, &y),
        _ => crate::version::compare(a, b),
    }
}

/// Parses `[v]MAJOR[.MINOR[.PATCH]][-PRE][+BUILD]`. Leading zeros are tolerated and ignored.
fn parse_semver(v: &str) -> Option<Semver<'_>> {
    let v = v.strip_prefix(['v', 'V']).unwrap_or(v);
    let (v, build) = v.split_once('+').map_or((v, None), |(v, build)| (v, Some(build)));
    let (core, pre) = v.split_once('-').map_or((v, None), |(core, pre)| (core, Some(pre)));
    if !build.is_none_or(valid_identifiers) || !pre.is_none_or(valid_identifiers) {
        return None;
    }
    let mut numbers = ["0"; 3];
    let mut parts = core.split('.');
    for slot in &mut numbers {
        match parts.next() {
            Some(part) if all_digits(part) => *slot = part,
            Some(_) => return None,
            None => break,
        }
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Semver { core: numbers, pre })
}

/// Dot-separated, non-empty identifiers of ASCII letters, digits and hyphens.
fn valid_identifiers(s: &str) -> bool {
    s.split('.').all(|id| !id.is_empty() && id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
}

fn semver_precedence(a: &Semver<'_>, b: &Semver<'_>) -> Ordering {
    let core = a.core.iter().zip(b.core).map(|(x, y)| cmp_digits(x.as_bytes(), y.as_bytes()));
    core.fold(Ordering::Equal, Ordering::then).then_with(|| match (a.pre, b.pre) {
        (None, None) => Ordering::Equal,
        // A pre-release sorts before its release.
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => pre_release_precedence(x, y),
    })
}

/// SemVer §11.4: identifier by identifier; a longer list wins when one is a prefix of the other.
fn pre_release_precedence(a: &str, b: &str) -> Ordering {
    let mut xs = a.split('.');
    let mut ys = b.split('.');
    loop {
        match (xs.next(), ys.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => match identifier_precedence(x, y) {
                Ordering::Equal => {}
                other => return other,
            },
        }
    }
}

/// Numeric identifiers compare numerically and sort before alphanumeric ones, which compare in
/// ASCII order.
fn identifier_precedence(x: &str, y: &str) -> Ordering {
    match (all_digits(x), all_digits(y)) {
        (true, true) => cmp_digits(x.as_bytes(), y.as_bytes()),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => x.cmp(y),
    }
}

// ---------------------------------------------------------------------------------------------
// Microsoft build numbers

/// Dotted numeric build numbers, segment by segment, missing segments read as 0
/// (`10.0.19045` == `10.0.19045.0`). Anything that is not purely dotted digits falls back to
/// the generic order, so the result stays total.
fn msbuild_compare(a: &str, b: &str) -> Ordering {
    if !is_build_number(a) || !is_build_number(b) {
        return crate::version::compare(a, b);
    }
    let mut xs = a.split('.');
    let mut ys = b.split('.');
    loop {
        match (xs.next(), ys.next()) {
            (None, None) => return Ordering::Equal,
            (x, y) => match cmp_digits(x.unwrap_or("0").as_bytes(), y.unwrap_or("0").as_bytes()) {
                Ordering::Equal => {}
                other => return other,
            },
        }
    }
}

fn is_build_number(v: &str) -> bool {
    v.split('.').all(all_digits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    /// Asserts `compare(a, b) == want` and the mirrored `compare(b, a) == want.reverse()`.
    fn check(ecosystem: Ecosystem, cases: &[(&str, &str, Ordering)]) {
        for &(a, b, want) in cases {
            assert_eq!(compare(ecosystem, a, b), want, "{ecosystem}: {a} vs {b}");
            assert_eq!(compare(ecosystem, b, a), want.reverse(), "{ecosystem}: {b} vs {a}");
        }
    }

    /// Asserts that `ascending` is strictly increasing under `ecosystem`, over every pair, which
    /// also exercises antisymmetry and transitivity.
    fn check_ascending(ecosystem: Ecosystem, ascending: &[&str]) {
        for (i, a) in ascending.iter().enumerate() {
            for (j, b) in ascending.iter().enumerate() {
                assert_eq!(compare(ecosystem, a, b), i.cmp(&j), "{ecosystem}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn dpkg_hard_cases() {
        check(
            Ecosystem::Dpkg,
            &[
                ("1:1.0", "2.0", Greater),
                ("0:1.0", "1.0", Equal),
                ("1.0~rc1", "1.0", Less),
                ("1.0~~", "1.0~", Less),
                ("1.0~~a", "1.0~", Less),
                ("1.2.1-2.2+wheezy3", "1.2.1-2.2+wheezy2", Greater),
                ("1.2.1-2.2+wheezy3", "1.2.1-2.2", Greater),
                ("1.0-1", "1.0", Greater),
                ("1.0-0", "1.0", Equal),
                ("1.0a", "1.0+", Less),
                ("1.0a", "1.0", Greater),
                ("1.0+", "1.0", Greater),
                ("1.0.1", "1.0a", Greater),
                ("1.10", "1.9", Greater),
                ("1.001", "1.1", Equal),
                ("2:1.0", "10:0.1", Less),
                ("1.0-1ubuntu1", "1.0-1", Greater),
                ("1.0-1~bpo1", "1.0-1", Less),
                ("1:2.3-4-5", "1:2.3-4", Greater),
                ("1.2.3-1+deb12u1", "1.2.3-1+deb12u10", Less),
                ("7.88.1-10+deb12u5", "7.88.1-10+deb12u12", Less),
                ("A", "a", Less),
            ],
        );
    }

    #[test]
    fn dpkg_ascending() {
        check_ascending(
            Ecosystem::Dpkg,
            &[
                "~~",
                "~~a",
                "~",
                "",
                "0.9",
                "1.0~~",
                "1.0~",
                "1.0~rc1",
                "1.0",
                "1.0-1~bpo1",
                "1.0-1",
                "1.0-1+b1",
                "1.0-1.1",
                "1.0a",
                "1.0+",
                "1.0.1",
                "1.10",
                "2.0",
                "1:0.1",
                "1:1.0",
                "2:0",
            ],
        );
    }

    #[test]
    fn rpm_hard_cases() {
        check(
            Ecosystem::Rpm,
            &[
                ("1.1.1k-7.el8_6", "1.1.1k-12.el8_9", Less),
                ("2.02-0.86.el7", "2.02-0.87.el7", Less),
                ("1.0~rc1", "1.0", Less),
                ("1.0~rc1-1", "1.0-1", Less),
                ("1.0^git1", "1.0", Greater),
                ("1.0^git1", "1.0.1", Less),
                ("1.0^git1", "1.0^git2", Less),
                ("1.0^", "1.0", Greater),
                ("1.0~rc1^git1", "1.0~rc1", Greater),
                ("1:1.0-1", "2.0-1", Greater),
                ("0:1.0-1", "1.0-1", Equal),
                ("1.0-1", "1.0", Greater),
                ("1.0-", "1.0", Greater),
                ("1.0-~1", "1.0", Greater),
                ("1.0-~1", "1.0-", Less),
                ("1.0", "1.0", Equal),
                ("1.0.", "1.0", Equal),
                ("1.0_1", "1.0.1", Equal),
                ("1.01", "1.1", Equal),
                ("1.0a", "1.0", Greater),
                ("1.0.1", "1.0a", Greater),
                ("1.a", "1.1", Less),
                ("2.0.0", "2.0", Greater),
                ("5.14.0-362.8.1.el9_3", "5.14.0-362.13.1.el9_3", Less),
                ("1.0-1.el8", "1.0-1.el9", Less),
                ("xyz10", "xyz1.0", Greater),
                ("a+", "a_", Equal),
            ],
        );
    }

    #[test]
    fn rpm_ascending() {
        check_ascending(
            Ecosystem::Rpm,
            &[
                "1.0~~",
                "1.0~rc1",
                "1.0~rc2",
                "1.0",
                "1.0-1",
                "1.0-1.el8",
                "1.0-2",
                "1.0^",
                "1.0^git1",
                "1.0^git2",
                "1.0a",
                "1.0.1",
                "1.0.10",
                "2.0",
                "1:0.1",
                "1:1.0-1",
                "2:0",
            ],
        );
    }

    #[test]
    fn semver_spec_precedence() {
        check_ascending(
            Ecosystem::Semver,
            &[
                "1.0.0-alpha",
                "1.0.0-alpha.1",
                "1.0.0-alpha.beta",
                "1.0.0-beta",
                "1.0.0-beta.2",
                "1.0.0-beta.11",
                "1.0.0-rc.1",
                "1.0.0",
                "1.0.1",
                "1.1.0",
                "1.10.0",
                "2.0.0",
            ],
        );
    }

    #[test]
    fn semver_tolerance_and_fallback() {
        check(
            Ecosystem::Semver,
            &[
                ("1.2", "1.2.0", Equal),
                ("v1.2.3", "1.2.3", Equal),
                ("1", "1.0.0", Equal),
                ("1.2.3+build.5", "1.2.3", Equal),
                ("1.2.3-rc.1+b", "1.2.3-rc.1", Equal),
                ("1.2-rc.1", "1.2.0", Less),
                ("01.2.3", "1.2.3", Equal),
                ("1.0.0-alpha-1", "1.0.0-alpha", Greater),
                ("v0.0.0-20230101120000-abcdef123456", "v0.0.0-20240101120000-abcdef123456", Less),
                ("v0.0.0-20230101120000-abcdef123456", "v0.1.0", Less),
                ("99999999999999999999999.0.0", "99999999999999999999998.0.0", Greater),
                // Not semver: four parts and a word segment use the generic order.
                ("1.2.3.4", "1.2.3", Greater),
                ("1.2.3.4", "1.2.3.10", Less),
                ("1.2.x", "1.2.0", Less),
                ("1.2.3-", "1.2.3", Less),
            ],
        );
    }

    #[test]
    fn msbuild_cases() {
        check(
            Ecosystem::MicrosoftBuild,
            &[
                ("10.0.19045.4529", "10.0.19045.4651", Less),
                ("10.0.19045.4529", "10.0.19044.9999", Greater),
                ("10.0.22631.3880", "10.0.19045.4651", Greater),
                ("10.0.19045", "10.0.19045.0", Equal),
                ("10.0.19045", "10.0.19045.1", Less),
                ("6.3.9600.21620", "10.0.10240.20000", Less),
                ("10.0.017763.1", "10.0.17763.1", Equal),
                ("16.11.34", "16.9.2", Greater),
            ],
        );
    }

    #[test]
    fn generic_delegates() {
        for (a, b) in [("1.10.0", "1.9.2"), ("2.0.0-rc1", "2.0.0"), ("1.0", "1.0.0"), ("x", "y")] {
            assert_eq!(compare(Ecosystem::Generic, a, b), crate::version::compare(a, b), "{a} vs {b}");
        }
    }

    /// Antisymmetry and reflexivity for every ecosystem over ordinary and malformed inputs, none
    /// of which may panic.
    #[test]
    fn antisymmetric_everywhere() {
        let versions = [
            "",
            "0",
            "1",
            "1.0",
            "1.0.0",
            "v1.0.0",
            "1.0-1",
            "1:1.0-1",
            ":1.0",
            "1:",
            "a:1.0",
            "1.0~rc1",
            "1.0~~",
            "1.0^git1",
            "1.0^",
            "1.0+",
            "1.0a",
            "1.0-",
            "-",
            "~",
            "^",
            ".",
            "..",
            "1..2",
            "1.0.0-alpha.1",
            "1.0.0+build",
            "10.0.19045.4529",
            "1.2.3.4.5",
            "1.0-1.el8_9",
            "1.2.1-2.2+wheezy3",
            "99999999999999999999999",
            "ünï.1",
            "1.0 beta",
        ];
        for ecosystem in Ecosystem::ALL {
            for a in versions {
                assert_eq!(compare(ecosystem, a, a), Equal, "{ecosystem}: {a:?} vs itself");
                for b in versions {
                    assert_eq!(
                        compare(ecosystem, a, b),
                        compare(ecosystem, b, a).reverse(),
                        "{ecosystem}: {a:?} vs {b:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for ecosystem in Ecosystem::ALL {
            assert_eq!(ecosystem.to_string().parse::<Ecosystem>(), Ok(ecosystem));
        }
        assert_eq!("msbuild".parse::<Ecosystem>(), Ok(Ecosystem::MicrosoftBuild));
        assert_eq!("Dpkg".parse::<Ecosystem>(), Err(UnknownEcosystem("Dpkg".to_string())));
        assert_eq!(
            UnknownEcosystem("deb".to_string()).to_string(),
            "unknown version ecosystem `deb`: expected dpkg, rpm, semver, msbuild or generic"
        );
    }

    #[test]
    fn osv_ecosystems() {
        let cases = [
            ("Debian", Ecosystem::Dpkg),
            ("Debian:7", Ecosystem::Dpkg),
            ("Ubuntu:22.04:LTS", Ecosystem::Dpkg),
            ("Ubuntu:Pro:18.04:LTS", Ecosystem::Dpkg),
            ("Red Hat:enterprise_linux:9::appstream", Ecosystem::Rpm),
            ("AlmaLinux:8", Ecosystem::Rpm),
            ("Rocky Linux:9", Ecosystem::Rpm),
            ("openSUSE:Leap 15.5", Ecosystem::Rpm),
            ("SUSE:Linux Enterprise Server 15 SP5", Ecosystem::Rpm),
            ("Azure Linux:3", Ecosystem::Rpm),
            ("npm", Ecosystem::Semver),
            ("crates.io", Ecosystem::Semver),
            ("Go", Ecosystem::Semver),
            ("NuGet", Ecosystem::Semver),
            ("Maven", Ecosystem::Generic),
            ("PyPI", Ecosystem::Generic),
            ("Alpine:v3.19", Ecosystem::Generic),
            ("RubyGems", Ecosystem::Generic),
            ("debian:12", Ecosystem::Dpkg),
            ("", Ecosystem::Generic),
            ("NoSuchEcosystem", Ecosystem::Generic),
        ];
        for (name, want) in cases {
            assert_eq!(Ecosystem::for_osv(name), want, "{name}");
        }
    }

    #[test]
    fn in_range_cases() {
        let dpkg = Ecosystem::Dpkg;
        // From the beginning, fixed in 1.2.1-2.2+wheezy3.
        assert!(in_range(dpkg, "1.2.1-2.2+wheezy2", Some("0"), Some("1.2.1-2.2+wheezy3"), None));
        assert!(!in_range(dpkg, "1.2.1-2.2+wheezy3", Some("0"), Some("1.2.1-2.2+wheezy3"), None));
        assert!(!in_range(dpkg, "1.2.1-2.2+wheezy4", None, Some("1.2.1-2.2+wheezy3"), None));
        // "0" means the beginning even though `~1` sorts below `0` in dpkg.
        assert!(in_range(dpkg, "~1", Some("0"), Some("1.0"), None));
        assert!(!in_range(dpkg, "~1", Some("0.1"), Some("1.0"), None));
        // Introduced is inclusive, fixed exclusive, last_affected inclusive.
        let semver = Ecosystem::Semver;
        assert!(in_range(semver, "1.2.0", Some("1.2.0"), Some("1.4.0"), None));
        assert!(!in_range(semver, "1.1.9", Some("1.2.0"), Some("1.4.0"), None));
        assert!(in_range(semver, "1.4.0-rc.1", Some("1.2.0"), Some("1.4.0"), None));
        assert!(in_range(semver, "1.3.5", Some("1.2"), None, Some("1.3.5")));
        assert!(!in_range(semver, "1.3.6", Some("1.2"), None, Some("1.3.5")));
        // No upper bound: every later version is affected.
        assert!(in_range(semver, "9.0.0", Some("1.0.0"), None, None));
        assert!(in_range(semver, "0.0.1", None, None, None));
        // Both upper bounds must hold.
        assert!(!in_range(semver, "1.3.0", None, Some("2.0.0"), Some("1.2.0")));
        // rpm: the RHEL openssl fix.
        let rpm = Ecosystem::Rpm;
        assert!(in_range(rpm, "1:1.1.1k-7.el8_6", None, Some("1:1.1.1k-12.el8_9"), None));
        assert!(!in_range(rpm, "1:1.1.1k-12.el8_9", None, Some("1:1.1.1k-12.el8_9"), None));
        // Windows cumulative update.
        let ms = Ecosystem::MicrosoftBuild;
        assert!(in_range(ms, "10.0.19045.4529", Some("10.0.19045.0"), Some("10.0.19045.4651"), None));
        assert!(!in_range(ms, "10.0.22631.3880", Some("10.0.19045.0"), Some("10.0.19045.4651"), None));
    }

    #[test]
    fn range_contains_matches_in_range() {
        let range =
            Range { introduced: Some("1.0".to_string()), fixed: Some("1.0-3".to_string()), last_affected: None };
        for version in ["0.9", "1.0", "1.0-2", "1.0-3", "1.0-3~bpo1", "2.0"] {
            assert_eq!(
                range.contains(Ecosystem::Dpkg, version),
                in_range(Ecosystem::Dpkg, version, Some("1.0"), Some("1.0-3"), None),
                "{version}"
            );
        }
        assert!(range.contains(Ecosystem::Dpkg, "1.0-3~bpo1"));
        assert!(!range.contains(Ecosystem::Dpkg, "1.0-3"));
        assert!(Range::default().contains(Ecosystem::Generic, "anything"));
    }
}
