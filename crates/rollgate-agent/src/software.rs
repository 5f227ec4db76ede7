//! The endpoint's installed software (dpkg or rpm packages) and operating system facts, for the
//! server to match security advisories against.
//!
//! The list is large (1–5 MB of dpkg status, thousands of packages) and rarely changes, so the
//! agent sends it as a [`SoftwareDelta`] against the list the server last accepted (kept in
//! `STATE/software.json`), and rescans only when the package database's modification time
//! changes: an idle agent stats one file (or a dozen in an rpm database directory) per poll and
//! reads nothing.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use rollgate_core::ecosystem::{compare, Ecosystem};
use rollgate_wire::SoftwareDelta;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::client::{ApiFailure, Client};
use crate::state::StateDir;
use crate::Agent;

/// The digest of a software list, by which a delta names the list it applies to: SHA-256 over
/// `name\tversion\n` lines in name order, lower-case hex. Only the agent computes it; the
/// server stores and compares it.
pub fn software_digest(software: &BTreeMap<String, String>) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for (name, version) in software {
        hasher.update(name.as_bytes());
        hasher.update(b"\t");
        hasher.update(version.as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

/// dpkg's database of installed packages (Debian, Ubuntu and their derivatives).
const DPKG_STATUS: &str = "/var/lib/dpkg/status";

/// Where rpm keeps its database: the traditional place, and the one Fedora and openSUSE moved
/// to (often one is a symbolic link to the other).
const RPM_DATABASE_DIRS: [&str; 2] = ["/var/lib/rpm", "/usr/lib/sysimage/rpm"];

/// os-release(5): `/etc/os-release`, or `/usr/lib/os-release` when the former is missing.
const OS_RELEASE_FILES: [&str; 2] = ["/etc/os-release", "/usr/lib/os-release"];

/// The query whose output [`parse_rpm_query`] reads.
const RPM_QUERY_FORMAT: &str = "%{NAME}\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\t%{ARCH}\n";

/// The prefix of the keys under which [`parse_dpkg_status`] lists source packages. dpkg
/// package names cannot contain `:`, so these keys collide with no binary package (only with
/// the `name:arch` key of a package named `src`, which Debian and Ubuntu do not have).
pub const DPKG_SOURCE_PREFIX: &str = "src:";

/// How long `rpm -qa` may take; a database locked by a running transaction must not hold the
/// agent for longer.
const RPM_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest dpkg status file read (real ones are 1–5 MB).
const MAX_DPKG_STATUS_BYTES: u64 = 64 * 1024 * 1024;

/// Largest `rpm -qa` output read (about 60 bytes a package).
const MAX_RPM_OUTPUT_BYTES: u64 = 16 * 1024 * 1024;

/// The file in the state directory holding the [`Acknowledged`] list.
const ACKNOWLEDGED_FILE: &str = "software.json";

/// The error code with which the server refuses a delta whose base it does not hold.
const BASE_MISMATCH: &str = "software_base_mismatch";

/// First wait before retrying a failed report although the database did not change; doubled
/// after each further failure up to [`MAX_RETRY_SECS`].
const FIRST_RETRY_SECS: u64 = 60;

/// Longest wait between retries of a failed report.
const MAX_RETRY_SECS: u64 = 3600;

// ---------------------------------------------------------------- os-release

/// `(ID, VERSION_ID)` from the text of an os-release file: unquoted (double quotes with shell
/// escapes, or single quotes), ID lower-cased, None when absent or empty (Debian sid and Arch
/// have no `VERSION_ID`).
pub fn os_release_facts(text: &str) -> (Option<String>, Option<String>) {
    let mut id = None;
    let mut version_id = None;
    for line in text.lines() {
        let Some((key, raw_value)) = line.trim().split_once('=') else { continue };
        match key {
            "ID" => id = os_release_value(raw_value).map(|v| v.to_lowercase()),
            "VERSION_ID" => version_id = os_release_value(raw_value),
            _ => {}
        }
    }
    (id, version_id)
}

/// [`os_release_facts`] of the running system; (None, None) when it has no os-release file.
pub fn os_facts() -> (Option<String>, Option<String>) {
    OS_RELEASE_FILES
        .iter()
        .find_map(|path| fs::read_to_string(path).ok())
        .map_or((None, None), |text| os_release_facts(&text))
}

/// One value of an os-release assignment, quotes removed; None when empty.
fn os_release_value(raw_value: &str) -> Option<String> {
    let raw_value = raw_value.trim();
    let value = if let Some(inner) = strip_quotes(raw_value, '"') {
        unescape_double_quoted(inner)
    } else if let Some(inner) = strip_quotes(raw_value, '\'') {
        inner.to_string()
    } else {
        raw_value.to_string()
    };
    Some(value).filter(|v| !v.is_empty())
}

/// The text between a leading and a trailing `quote`, if `value` is quoted so.
fn strip_quotes(value: &str, quote: char) -> Option<&str> {
    value.strip_prefix(quote)?.strip_suffix(quote)
}

/// Undoes the shell escapes os-release(5) allows inside double quotes (`\"`, `\\`, `\$`,
/// `` \` ``); any other backslash stays.
fn unescape_double_quoted(inner: &str) -> String {
    let mut unescaped = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            unescaped.push(c);
            continue;
        }
        match chars.next() {
            Some(next @ ('"' | '\\' | '$' | '`')) => unescaped.push(next),
            Some(next) => {
                unescaped.push('\\');
                unescaped.push(next);
            }
            None => unescaped.push('\\'),
        }
    }
    unescaped
}

// ---------------------------------------------------------------- dpkg

/// The installed packages of a dpkg status file: package name -> version, verbatim (with its
/// epoch, `1:2.38.1-5`).
///
/// A package counts when its files are on disk: `Status:` state `installed` with any wanted
/// action (`install`, `hold`, and `deinstall`/`purge`, selected for removal but not removed
/// yet: still vulnerable); removed packages whose configuration files remain
/// (`deinstall ok config-files`), half-installed ones and packages dpkg flags for reinstall
/// are left out. Paragraphs without a
/// `Package` or `Version` are skipped; continuation lines, CRLF line ends and field names in
/// any case are accepted.
///
/// Multi-Arch: a package installed for several architectures at the same version is one entry
/// under its name. When those versions differ (during a partial upgrade), the instance of the
/// native architecture (or `all`) keeps the plain name and every other instance is keyed
/// `name:arch`; when no instance is native, all are keyed `name:arch`. The status file does not
/// say which architecture is native, so it is taken to be the most common one among installed
/// packages (`all` aside, ties to the alphabetically first): every native system has far more
/// native than foreign packages, and this keeps the function free of IO.
///
/// Source packages: Debian's advisories (OSV, DSA) name the source package (`openssl`,
/// `linux`), while the endpoint has binary packages built from it (`libssl3`,
/// `linux-image-6.1.0-18-amd64`). So every installed package also yields an entry
/// `src:SOURCE` -> source version, from its `Source:` field: `Source: openssl` (the source
/// version is the package's own `Version`), `Source: foo (1.0-1)` (binNMUs and packages
/// versioned apart from their source: the version in parentheses), or no `Source:` (the source
/// is the package itself, at its `Version`). When the binaries of one source disagree (a partial
/// upgrade left `openssl` behind `libssl3`), the lowest source version by dpkg's order is kept:
/// the machine is vulnerable while any binary of the old build is installed, so that is the
/// version an advisory's fixed version must be compared with.
pub fn parse_dpkg_status(text: &str) -> BTreeMap<String, String> {
    let debs = installed_debs(text);
    let native = native_architecture(&debs);
    let mut software = key_debs(&debs, native);
    software.extend(source_versions(&debs));
    software
}

/// The fields of one dpkg status paragraph that the inventory needs.
#[derive(Debug, Default)]
struct DpkgParagraph<'a> {
    package: Option<&'a str>,
    status: Option<&'a str>,
    version: Option<&'a str>,
    architecture: Option<&'a str>,
    source: Option<&'a str>,
}

impl<'a> DpkgParagraph<'a> {
    /// Takes in one line of the paragraph; continuation lines (of descriptions, conffiles)
    /// start with white space and belong to fields not needed here.
    fn absorb(&mut self, line: &'a str) {
        if line.starts_with([' ', '\t', '#']) {
            return;
        }
        let Some((field, value)) = line.split_once(':') else { return };
        let value = Some(value.trim());
        let field = field.trim();
        if field.eq_ignore_ascii_case("Package") {
            self.package = value;
        } else if field.eq_ignore_ascii_case("Status") {
            self.status = value;
        } else if field.eq_ignore_ascii_case("Version") {
            self.version = value;
        } else if field.eq_ignore_ascii_case("Architecture") {
            self.architecture = value;
        } else if field.eq_ignore_ascii_case("Source") {
            self.source = value;
        }
    }

    /// The installed package this paragraph describes, if it describes one.
    fn installed(&self) -> Option<InstalledDeb<'a>> {
        let name = self.package.filter(|p| !p.is_empty())?;
        let version = self.version.filter(|v| !v.is_empty())?;
        if !self.status.is_some_and(is_installed_status) {
            return None;
        }
        let (source, source_version) = deb_source(self.source, name, version);
        Some(InstalledDeb { name, architecture: self.architecture.unwrap_or(""), version, source, source_version })
    }
}

/// One installed instance of a package (one architecture of it).
#[derive(Debug)]
struct InstalledDeb<'a> {
    name: &'a str,
    architecture: &'a str,
    version: &'a str,
    /// The source package it was built from.
    source: &'a str,
    /// The version of that source package.
    source_version: &'a str,
}

/// The source package and source version of the binary package `package` at `version`, from
/// its `Source:` field: `name` (at `version`), `name (source version)`, or absent or empty (the
/// package itself at `version`). An empty name or parenthesis falls back the same way, so a
/// malformed field still yields an entry.
fn deb_source<'a>(field: Option<&'a str>, package: &'a str, version: &'a str) -> (&'a str, &'a str) {
    let field = field.map(str::trim).unwrap_or("");
    let (name, source_version) = match field.split_once('(') {
        Some((name, rest)) => (name.trim(), rest.trim_end().trim_end_matches(')').trim()),
        None => (field, ""),
    };
    let or = |value: &'a str, fallback: &'a str| if value.is_empty() { fallback } else { value };
    (or(name, package), or(source_version, version))
}

/// True for state `installed` without an error flag, whatever is wanted of the package (want,
/// error flag, state).
fn is_installed_status(status: &str) -> bool {
    let words: Vec<&str> = status.split_whitespace().collect();
    matches!(words.as_slice(), [want, "ok", "installed"] if matches!(*want, "install" | "hold" | "deinstall" | "purge"))
}

/// Every installed package instance, in file order.
fn installed_debs(text: &str) -> Vec<InstalledDeb<'_>> {
    let mut installed = Vec::new();
    let mut paragraph = DpkgParagraph::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            installed.extend(std::mem::take(&mut paragraph).installed());
        } else {
            paragraph.absorb(line);
        }
    }
    installed.extend(paragraph.installed());
    installed
}

/// The most common architecture among `debs` other than `all` (ties to the alphabetically
/// first); None when there is none.
fn native_architecture<'a>(debs: &[InstalledDeb<'a>]) -> Option<&'a str> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for deb in debs.iter().filter(|d| !matches!(d.architecture, "" | "all")) {
        *counts.entry(deb.architecture).or_default() += 1;
    }
    // `max_by_key` keeps the last maximum; iterating in reverse makes that the first name.
    counts.into_iter().rev().max_by_key(|(_, count)| *count).map(|(architecture, _)| architecture)
}

/// The name -> version map, with the Multi-Arch rule of [`parse_dpkg_status`].
fn key_debs(debs: &[InstalledDeb<'_>], native: Option<&str>) -> BTreeMap<String, String> {
    let mut by_name: BTreeMap<&str, Vec<&InstalledDeb<'_>>> = BTreeMap::new();
    for deb in debs {
        by_name.entry(deb.name).or_default().push(deb);
    }
    let mut software = BTreeMap::new();
    for (name, instances) in by_name {
        let same_version = instances.iter().all(|d| d.version == instances[0].version);
        for deb in instances {
            let plain = same_version || Some(deb.architecture) == native || matches!(deb.architecture, "" | "all");
            let key = if plain { name.to_string() } else { format!("{name}:{}", deb.architecture) };
            software.insert(key, deb.version.to_string());
        }
    }
    software
}

/// The `src:SOURCE` -> source version entries of [`parse_dpkg_status`], the lowest version of
/// each source among `debs`.
fn source_versions(debs: &[InstalledDeb<'_>]) -> BTreeMap<String, String> {
    let mut lowest: BTreeMap<&str, &str> = BTreeMap::new();
    for deb in debs {
        keep_lowest(&mut lowest, deb.source, deb.source_version, Ecosystem::Dpkg);
    }
    lowest.into_iter().map(|(source, version)| (format!("{DPKG_SOURCE_PREFIX}{source}"), version.to_string())).collect()
}

/// Records `version` under `key` unless a version that sorts lower (by [`is_lower`]) is already
/// there.
fn keep_lowest<'a, K: Ord>(lowest: &mut BTreeMap<K, &'a str>, key: K, version: &'a str, ecosystem: Ecosystem) {
    let kept = lowest.entry(key).or_insert(version);
    if is_lower(ecosystem, version, kept) {
        *kept = version;
    }
}

/// Whether `a` sorts before `b` in `ecosystem`'s order. Versions the order holds equal but that
/// are spelled differently (`1.010`, `1.10`) are ordered as text, so that which one is kept does
/// not depend on the database's order (and the list's digest does not change when it does).
fn is_lower(ecosystem: Ecosystem, a: &str, b: &str) -> bool {
    compare(ecosystem, a, b).then_with(|| a.cmp(b)) == Ordering::Less
}

// ---------------------------------------------------------------- rpm

/// The installed packages from the output of
/// `rpm -qa --qf '%{NAME}\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\t%{ARCH}\n'`: name ->
/// `VERSION-RELEASE`, or `EPOCH:VERSION-RELEASE` when the epoch is not 0.
///
/// `gpg-pubkey` entries (imported signing keys, not software) and malformed lines are skipped.
///
/// rpm installs some packages several times: kernels (several versions of one architecture)
/// and multilib packages (`x86_64` and `i686`). When all copies have one version, it is one
/// entry under the plain name. Otherwise the plain name holds the lowest version by rpm's
/// order, and every architecture whose own lowest copy differs (is newer) is listed as
/// `name:arch`, with that copy's version; newer copies of one architecture are left out. The
/// lowest wins because the list is matched against advisories and every copy on disk can run (a
/// 32-bit program loads the `i686` library, an older kernel can be booted): listing the newest
/// would hide a vulnerable copy until it is removed. The result does not depend on the
/// database's order.
pub fn parse_rpm_query(text: &str) -> BTreeMap<String, String> {
    // Name -> architecture -> lowest version of that architecture.
    let mut copies: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    for rpm in text.lines().filter_map(rpm_line) {
        keep_lowest(copies.entry(rpm.name).or_default(), rpm.arch, rpm.version, Ecosystem::Rpm);
    }
    let mut software = BTreeMap::new();
    for (name, lowest_by_arch) in copies {
        key_rpm_copies(&mut software, name, &lowest_by_arch);
    }
    software
}

/// One line of the rpm query.
#[derive(Debug)]
struct InstalledRpm<'a> {
    name: &'a str,
    /// `VERSION-RELEASE`, or `EPOCH:VERSION-RELEASE` when the epoch is not 0.
    version: &'a str,
    arch: &'a str,
}

/// One line `NAME\tEPOCH:VERSION-RELEASE\tARCH`; None for `gpg-pubkey` and malformed lines.
fn rpm_line(line: &str) -> Option<InstalledRpm<'_>> {
    let mut fields = line.trim_end_matches('\r').split('\t').map(str::trim);
    let (name, evr, arch) = (fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some() || name.is_empty() || name == "gpg-pubkey" || arch.is_empty() {
        return None;
    }
    let (epoch, version_release) = evr.split_once(':')?;
    let epoch: u64 = epoch.parse().ok()?;
    // Neither version nor release may contain `-`, so the last one separates them.
    let (version, release) = version_release.rsplit_once('-')?;
    if version.is_empty() || release.is_empty() {
        return None;
    }
    let version = if epoch == 0 { version_release } else { evr };
    Some(InstalledRpm { name, version, arch })
}

/// Adds the entries of one package name, installed as `lowest_by_arch` (architecture -> its
/// lowest version), under the rule of [`parse_rpm_query`].
fn key_rpm_copies(software: &mut BTreeMap<String, String>, name: &str, lowest_by_arch: &BTreeMap<&str, &str>) {
    let lowest = lowest_by_arch.values().copied().reduce(|a, b| if is_lower(Ecosystem::Rpm, b, a) { b } else { a });
    let Some(lowest) = lowest else { return };
    software.insert(name.to_string(), lowest.to_string());
    for (arch, version) in lowest_by_arch.iter().filter(|(_, version)| **version != lowest) {
        software.insert(format!("{name}:{arch}"), version.to_string());
    }
}

// ---------------------------------------------------------------- scanning

/// The installed software: `("dpkg", list)` when the dpkg database exists, else `("rpm",
/// list)` when an rpm database exists and `rpm -qa` answers within 60 s, else None (also when
/// reading failed, which is logged). The reading runs off the agent's single runtime thread.
pub async fn scan() -> Option<(String, BTreeMap<String, String>)> {
    match try_scan().await {
        Ok(found) => found,
        Err(err) => {
            tracing::warn!("could not read the installed software: {err:#}");
            None
        }
    }
}

/// [`scan`], with its failure.
async fn try_scan() -> anyhow::Result<Option<(String, BTreeMap<String, String>)>> {
    if Path::new(DPKG_STATUS).exists() {
        let software = tokio::task::spawn_blocking(|| read_dpkg_status(Path::new(DPKG_STATUS)))
            .await
            .context("while reading the dpkg status file")??;
        return Ok(Some(("dpkg".to_string(), software)));
    }
    if RPM_DATABASE_DIRS.iter().any(|dir| Path::new(dir).is_dir()) {
        return Ok(Some(("rpm".to_string(), query_rpm().await?)));
    }
    Ok(None)
}

/// Reads and parses a dpkg status file (blocking). Bytes that are not UTF-8 (old Latin-1
/// descriptions) are replaced, not refused.
fn read_dpkg_status(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let size = fs::metadata(path).with_context(|| format!("while reading {}", path.display()))?.len();
    if size > MAX_DPKG_STATUS_BYTES {
        bail!("{} is {size} bytes, more than the {MAX_DPKG_STATUS_BYTES} read", path.display());
    }
    let bytes = fs::read(path).with_context(|| format!("while reading {}", path.display()))?;
    Ok(parse_dpkg_status(&String::from_utf8_lossy(&bytes)))
}

/// Runs `rpm -qa` (killed after [`RPM_TIMEOUT`]) and parses its output.
async fn query_rpm() -> anyhow::Result<BTreeMap<String, String>> {
    let output = tokio::time::timeout(RPM_TIMEOUT, rpm_output())
        .await
        .map_err(|_| anyhow::anyhow!("rpm -qa did not finish within {} s", RPM_TIMEOUT.as_secs()))??;
    Ok(parse_rpm_query(&String::from_utf8_lossy(&output)))
}

/// The standard output of `rpm -qa` with [`RPM_QUERY_FORMAT`]; the process is killed when
/// this future is dropped (on timeout).
async fn rpm_output() -> anyhow::Result<Vec<u8>> {
    let mut child = tokio::process::Command::new("rpm")
        .args(["-qa", "--qf", RPM_QUERY_FORMAT])
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("while starting rpm -qa")?;
    let mut output = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        stdout.take(MAX_RPM_OUTPUT_BYTES + 1).read_to_end(&mut output).await.context("while reading rpm -qa")?;
    }
    if output.len() as u64 > MAX_RPM_OUTPUT_BYTES {
        bail!("rpm -qa wrote more than {MAX_RPM_OUTPUT_BYTES} bytes");
    }
    let status = child.wait().await.context("while waiting for rpm -qa")?;
    if !status.success() {
        bail!("rpm -qa failed ({status})");
    }
    Ok(output)
}

/// The newest modification time of the package database [`scan`] would read: the dpkg status
/// file, or the rpm database directories and their entries (an rpm transaction rewrites files
/// inside the directory, which does not always touch the directory itself). None when there is
/// no database. Costs a few `stat` calls and reads no file.
pub fn database_stamp() -> Option<SystemTime> {
    if let Ok(metadata) = fs::metadata(DPKG_STATUS) {
        return metadata.modified().ok();
    }
    RPM_DATABASE_DIRS.iter().filter_map(|dir| newest_modification(Path::new(dir))).max()
}

/// The newest modification time of `dir` and its direct entries.
fn newest_modification(dir: &Path) -> Option<SystemTime> {
    let own = fs::metadata(dir).ok()?.modified().ok();
    let entries = fs::read_dir(dir).ok()?.filter_map(|entry| entry.ok()?.metadata().ok()?.modified().ok());
    own.into_iter().chain(entries).max()
}

// ---------------------------------------------------------------- delta and report

/// The software list the server last accepted, kept in `STATE/software.json`: written only
/// after the server answered 204, so its digest is what the server holds (unless the server
/// lost it, which its 409 tells).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Acknowledged {
    /// `dpkg` or `rpm`.
    pub source: String,
    /// [`software_digest`] of `software`.
    pub digest: String,
    /// Package name -> version.
    pub software: BTreeMap<String, String>,
}

/// What to send so that the server's list becomes `current`: None when it already is (same
/// source, same digest); a change relative to the acknowledged list (`base` its digest) when
/// there is one from the same source; otherwise the whole list (`base` None).
pub fn delta(
    acknowledged: Option<&Acknowledged>,
    source: &str,
    current: &BTreeMap<String, String>,
) -> Option<SoftwareDelta> {
    let digest = software_digest(current);
    let Some(acknowledged) = acknowledged.filter(|a| a.source == source) else {
        return Some(whole_list(source, digest, current));
    };
    if acknowledged.digest == digest {
        return None;
    }
    let upsert = current
        .iter()
        .filter(|(name, version)| acknowledged.software.get(*name) != Some(*version))
        .map(|(name, version)| (name.clone(), version.clone()))
        .collect();
    let remove = acknowledged.software.keys().filter(|name| !current.contains_key(*name)).cloned().collect();
    Some(SoftwareDelta { base: Some(acknowledged.digest.clone()), digest, source: source.to_string(), upsert, remove })
}

/// A delta that replaces the server's list with `current` whatever it holds.
fn whole_list(source: &str, digest: String, current: &BTreeMap<String, String>) -> SoftwareDelta {
    SoftwareDelta { base: None, digest, source: source.to_string(), upsert: current.clone(), remove: Vec::new() }
}

/// When the software must be scanned again: kept by the agent's loop between cycles, in memory
/// only (a restarted agent scans once, and sends nothing if the list is what the server holds).
#[derive(Debug, Default)]
pub struct SoftwareWatch {
    /// [`database_stamp`] at the last scan; None before the first.
    scanned_stamp: Option<Option<SystemTime>>,
    /// After a failed report: when to try again although the database did not change.
    retry_at: Option<Instant>,
    /// Failed reports in a row.
    failures: u32,
}

impl SoftwareWatch {
    /// True at start, when the database changed since the last scan, or when a failed report
    /// is due to be retried.
    pub fn needs_scan(&self, stamp: Option<SystemTime>, now: Instant) -> bool {
        self.scanned_stamp != Some(stamp) || self.retry_at.is_some_and(|at| now >= at)
    }

    /// Records a scan of the database at `stamp` and whether its report succeeded; after a
    /// failure, the next retry waits 1 min, doubled per failure in a row up to 1 h.
    pub fn record(&mut self, stamp: Option<SystemTime>, succeeded: bool, now: Instant) {
        self.scanned_stamp = Some(stamp);
        if succeeded {
            self.failures = 0;
            self.retry_at = None;
        } else {
            self.failures = self.failures.saturating_add(1);
            self.retry_at = Some(now + retry_delay(self.failures));
        }
    }
}

/// The wait before retrying after `failures` failed reports in a row.
fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    Duration::from_secs((FIRST_RETRY_SECS << doublings).min(MAX_RETRY_SECS))
}

/// Scans and reports the installed software if the package database changed since the last
/// scan (or at start, or when a failed report is due again); otherwise only stats the database.
pub async fn report_if_changed(agent: &Agent, watch: &mut SoftwareWatch) -> anyhow::Result<()> {
    let now = Instant::now();
    // Taken before scanning: a change during the scan is seen at the next call.
    let stamp = database_stamp();
    if !watch.needs_scan(stamp, now) {
        return Ok(());
    }
    let outcome = scan_and_report(agent).await;
    watch.record(stamp, outcome.is_ok(), now);
    outcome
}

/// Scans, then [`report`]s what it found (nothing when there is no package database).
async fn scan_and_report(agent: &Agent) -> anyhow::Result<()> {
    match try_scan().await? {
        Some((source, current)) => report(&agent.state, &agent.client, &source, &current).await,
        None => Ok(()),
    }
}

/// Sends the server the change from the acknowledged list to `current`, if any; when the server
/// holds another list than the acknowledged one (409 `software_base_mismatch`), sends the whole
/// list once. Stores `current` as acknowledged after the server accepted it.
pub async fn report(
    state: &StateDir,
    client: &Client,
    source: &str,
    current: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let acknowledged = load_acknowledged(state);
    let Some(change) = delta(acknowledged.as_ref(), source, current) else { return Ok(()) };
    let digest = change.digest.clone();
    match client.software(&change).await {
        Err(ApiFailure::Refused { code, .. }) if code == BASE_MISMATCH && change.base.is_some() => {
            tracing::info!("the server holds another software list than the one it accepted last; sending all of it");
            let whole = whole_list(source, digest.clone(), current);
            client.software(&whole).await.context("while sending the whole software list")?;
        }
        sent => sent.context("while sending the software change")?,
    }
    let accepted = Acknowledged { source: source.to_string(), digest, software: current.clone() };
    state.write_json(ACKNOWLEDGED_FILE, &accepted)
}

/// The acknowledged list; None when there is none or it cannot be read (then the whole list is
/// sent, which replaces whatever the server holds).
fn load_acknowledged(state: &StateDir) -> Option<Acknowledged> {
    state.read_json(ACKNOWLEDGED_FILE).unwrap_or_else(|err| {
        tracing::warn!("ignoring the acknowledged software list: {err:#}");
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn facts(id: Option<&str>, version: Option<&str>) -> (Option<String>, Option<String>) {
        (id.map(str::to_string), version.map(str::to_string))
    }

    #[test]
    fn os_release_values_are_unquoted_and_the_id_lower_cased() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nID=debian\n";
        assert_eq!(os_release_facts(debian), facts(Some("debian"), Some("12")));
        let rhel = "NAME='Red Hat Enterprise Linux'\r\nID='RHEL'\r\nVERSION_ID='7.6'\r\n";
        assert_eq!(os_release_facts(rhel), facts(Some("rhel"), Some("7.6")));
        let ubuntu = "# comment\nID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"22.04\"\n";
        assert_eq!(os_release_facts(ubuntu), facts(Some("ubuntu"), Some("22.04")));
    }

    #[test]
    fn os_release_without_version_id_has_none() {
        let sid = "PRETTY_NAME=\"Debian GNU/Linux trixie/sid\"\nNAME=\"Debian GNU/Linux\"\nID=debian\n";
        assert_eq!(os_release_facts(sid), facts(Some("debian"), None));
        let arch = "NAME=\"Arch Linux\"\nID=arch\nBUILD_ID=rolling\n";
        assert_eq!(os_release_facts(arch), facts(Some("arch"), None));
        assert_eq!(os_release_facts(""), facts(None, None));
        assert_eq!(os_release_facts("ID=\"\"\nVERSION_ID=\n"), facts(None, None));
    }

    #[test]
    fn os_release_double_quotes_take_shell_escapes() {
        assert_eq!(os_release_value(r#""a\"b\\c\$d""#).as_deref(), Some(r#"a"b\c$d"#));
        assert_eq!(os_release_value(r#""a\nb""#).as_deref(), Some(r"a\nb"));
    }

    #[test]
    fn only_packages_whose_files_are_on_disk_count() {
        let text = "Package: a\nStatus: install ok installed\nVersion: 1\n\n\
                    Package: b\nStatus: hold ok installed\nVersion: 2\n\n\
                    Package: c\nStatus: deinstall ok config-files\nVersion: 3\n\n\
                    Package: d\nStatus: install ok half-installed\nVersion: 4\n\n\
                    Package: e\nStatus: purge ok not-installed\n\n\
                    Package: f\nStatus: install reinstreq installed\nVersion: 6\n\n\
                    Package: g\nStatus: deinstall ok installed\nVersion: 7\n";
        let expected = map(&[("a", "1"), ("b", "2"), ("g", "7"), ("src:a", "1"), ("src:b", "2"), ("src:g", "7")]);
        assert_eq!(parse_dpkg_status(text), expected);
    }

    #[test]
    fn paragraphs_without_package_version_or_status_are_skipped() {
        let text = "Status: install ok installed\nVersion: 1\n\nPackage: b\nStatus: install ok installed\n\n\
                    Package: c\nVersion: 3\n\nPackage: d\nStatus: install ok installed\nVersion: 4";
        assert_eq!(parse_dpkg_status(text), map(&[("d", "4"), ("src:d", "4")]));
    }

    #[test]
    fn continuation_lines_crlf_and_field_case_are_handled() {
        let text = "package: a\r\nstatus: install ok installed\r\nDescription: x\r\n Version: 9\r\n .\r\n\
                    VERSION:  1:2.0-1 \r\n\r\n \r\nPackage: b\r\nStatus: install ok installed\r\nVersion: 2\r\n";
        let expected = map(&[("a", "1:2.0-1"), ("b", "2"), ("src:a", "1:2.0-1"), ("src:b", "2")]);
        assert_eq!(parse_dpkg_status(text), expected);
    }

    #[test]
    fn multi_arch_instances_are_keyed_by_architecture_only_when_versions_differ() {
        let paragraph = |name: &str, arch: &str, version: &str| {
            format!("Package: {name}\nStatus: install ok installed\nArchitecture: {arch}\nVersion: {version}\n\n")
        };
        let text = [
            paragraph("libc6", "amd64", "2.36-9"),
            paragraph("libc6", "i386", "2.36-8"),
            paragraph("zlib1g", "amd64", "1:1.2.13"),
            paragraph("zlib1g", "i386", "1:1.2.13"),
            paragraph("bash", "amd64", "5.2"),
            paragraph("coreutils", "amd64", "9.1"),
            paragraph("libfoo", "i386", "1"),
            paragraph("libfoo", "armhf", "2"),
        ]
        .concat();
        let expected = map(&[
            ("bash", "5.2"),
            ("coreutils", "9.1"),
            ("libc6", "2.36-9"),
            ("libc6:i386", "2.36-8"),
            ("libfoo:armhf", "2"),
            ("libfoo:i386", "1"),
            ("src:bash", "5.2"),
            ("src:coreutils", "9.1"),
            ("src:libc6", "2.36-8"),
            ("src:libfoo", "1"),
            ("src:zlib1g", "1:1.2.13"),
            ("zlib1g", "1:1.2.13"),
        ]);
        assert_eq!(parse_dpkg_status(&text), expected);
    }

    #[test]
    fn the_native_architecture_is_the_most_common_one() {
        let deb =
            |architecture| InstalledDeb { name: "x", architecture, version: "1", source: "x", source_version: "1" };
        let debs = [deb("all"), deb("all"), deb("all"), deb("i386"), deb("amd64"), deb("amd64")];
        assert_eq!(native_architecture(&debs), Some("amd64"));
        assert_eq!(native_architecture(&[deb("i386"), deb("amd64")]), Some("amd64"));
        assert_eq!(native_architecture(&[deb("all")]), None);
    }

    #[test]
    fn the_source_field_names_the_source_and_maybe_its_version() {
        let cases = [
            (None, ("nginx-full", "1.22.1-9")),
            (Some("nginx"), ("nginx", "1.22.1-9")),
            (Some("nginx (1.22.1-8)"), ("nginx", "1.22.1-8")),
            (Some("  nginx   ( 1:1.22.1-8 ) "), ("nginx", "1:1.22.1-8")),
            (Some("nginx ()"), ("nginx", "1.22.1-9")),
            (Some("nginx (1.22.1-8"), ("nginx", "1.22.1-8")),
            (Some("(1.22.1-8)"), ("nginx-full", "1.22.1-8")),
            (Some(""), ("nginx-full", "1.22.1-9")),
        ];
        for (field, expected) in cases {
            assert_eq!(deb_source(field, "nginx-full", "1.22.1-9"), expected, "{field:?}");
        }
    }

    #[test]
    fn of_disagreeing_binaries_the_lowest_source_version_by_dpkg_order_is_kept() {
        let paragraph = |name: &str, source: &str, version: &str| {
            format!("Package: {name}\nStatus: install ok installed\nSource: {source}\nVersion: {version}\n\n")
        };
        // By text, `1.0-10` < `1.0-9` and `2.0` < `2.0~rc1`; dpkg orders them the other way.
        let text = [
            paragraph("a1", "a", "1.0-9"),
            paragraph("a2", "a", "1.0-10"),
            paragraph("b1", "b", "2.0"),
            paragraph("b2", "b", "2.0~rc1"),
            paragraph("c1", "c (1:0.5-1)", "3"),
            paragraph("c2", "c", "2:0.1-1"),
        ]
        .concat();
        let sources: BTreeMap<String, String> =
            parse_dpkg_status(&text).into_iter().filter(|(name, _)| name.starts_with(DPKG_SOURCE_PREFIX)).collect();
        assert_eq!(sources, map(&[("src:a", "1.0-9"), ("src:b", "2.0~rc1"), ("src:c", "1:0.5-1")]));
    }

    #[test]
    fn rpm_versions_carry_the_epoch_only_when_it_is_not_zero() {
        let text = "bash\t0:5.1.8-6.el9\tx86_64\nopenssl\t1:3.0.7-27.el9\tx86_64\r\n\
                    gpg-pubkey\t0:fd431d51-4ae0493b\t(none)\nbroken line\nnoepoch\t:1-2\tx86_64\n\
                    norelease\t0:1\tx86_64\nnoarch\t0:1-2\nemptyarch\t0:1-2\t\nextra\t0:1-2\tx86_64\tx\n\n";
        assert_eq!(parse_rpm_query(text), map(&[("bash", "5.1.8-6.el9"), ("openssl", "1:3.0.7-27.el9")]));
    }

    #[test]
    fn of_several_copies_of_one_rpm_architecture_the_lowest_is_kept() {
        let text = "kernel\t0:5.14.0-362.el9\tx86_64\nkernel\t0:5.14.0-427.el9\tx86_64\n\
                    kernel\t0:5.14.0-70.el9\tx86_64\ntzdata\t0:2024a-1.el9\tnoarch\n\
                    foo\t1:1.0-1\tx86_64\nfoo\t0:9.0-1\tx86_64\n";
        let expected = map(&[("foo", "9.0-1"), ("kernel", "5.14.0-70.el9"), ("tzdata", "2024a-1.el9")]);
        assert_eq!(parse_rpm_query(text), expected);
    }

    #[test]
    fn rpm_architectures_newer_than_the_lowest_copy_are_keyed_by_architecture() {
        let text = "same\t0:1-1\tx86_64\nsame\t0:1-1\ti686\n\
                    multi\t0:2-1\tx86_64\nmulti\t0:1-1\ti686\nmulti\t0:3-1\taarch64\n\
                    mixed\t0:1-1\tx86_64\nmixed\t0:2-1\tx86_64\nmixed\t0:1-1\ti686\n";
        let expected = map(&[
            ("mixed", "1-1"),
            ("multi", "1-1"),
            ("multi:aarch64", "3-1"),
            ("multi:x86_64", "2-1"),
            ("same", "1-1"),
        ]);
        assert_eq!(parse_rpm_query(text), expected);
        let reversed: String = text.lines().rev().map(|line| format!("{line}\n")).collect();
        assert_eq!(parse_rpm_query(&reversed), expected);
    }

    #[test]
    fn the_lowest_rpm_copy_follows_rpm_order() {
        // Each pair is (older, newer) by rpmvercmp; text order disagrees for most of them.
        let pairs = [
            ("1.0-1", "1.0.1-1"),
            ("2.9-1", "2.10-1"),
            ("1.0-1", "1.0a-1"),
            ("1.a-1", "1.1-1"),
            ("1.0~rc1-1", "1.0-1"),
            ("1.0~rc1-1", "1.0~rc2-1"),
            ("1.0-1", "1.0^git1-1"),
            ("1.0^git1-1", "1.0.1-1"),
            ("1.0^-1", "1.0^git1-1"),
            ("abc-1", "abd-1"),
            ("1.0-9.el9", "1.0-10.el9"),
            ("9.0-1", "1:1.0-1"),
        ];
        for (older, newer) in pairs {
            let line = |version: &str| {
                let evr = if version.contains(':') { version.to_string() } else { format!("0:{version}") };
                format!("p\t{evr}\tx86_64\n")
            };
            for text in [line(older) + &line(newer), line(newer) + &line(older)] {
                assert_eq!(parse_rpm_query(&text), map(&[("p", older)]), "{older} vs {newer}");
            }
        }
    }

    #[test]
    fn versions_rpm_holds_equal_are_kept_the_same_whatever_the_order() {
        for text in ["p\t0:1.010-1\tx86_64\np\t0:1.10-1\tx86_64\n", "p\t0:1.10-1\tx86_64\np\t0:1.010-1\tx86_64\n"] {
            assert_eq!(parse_rpm_query(text), map(&[("p", "1.010-1")]));
        }
    }

    fn acknowledged(source: &str, software: &BTreeMap<String, String>) -> Acknowledged {
        Acknowledged { source: source.to_string(), digest: software_digest(software), software: software.clone() }
    }

    #[test]
    fn an_unchanged_list_needs_no_delta() {
        let current = map(&[("a", "1"), ("b", "2")]);
        assert_eq!(delta(Some(&acknowledged("dpkg", &current)), "dpkg", &current), None);
    }

    #[test]
    fn a_change_is_sent_against_the_acknowledged_list() {
        let before = map(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let current = map(&[("a", "1"), ("b", "2.1"), ("d", "4")]);
        let ack = acknowledged("dpkg", &before);
        let change = delta(Some(&ack), "dpkg", &current);
        let expected = SoftwareDelta {
            base: Some(ack.digest.clone()),
            digest: software_digest(&current),
            source: "dpkg".to_string(),
            upsert: map(&[("b", "2.1"), ("d", "4")]),
            remove: vec!["c".to_string()],
        };
        assert_eq!(change, Some(expected));
    }

    #[test]
    fn without_an_acknowledged_list_or_with_another_source_the_whole_list_is_sent() {
        let current = map(&[("a", "1")]);
        let whole = SoftwareDelta {
            base: None,
            digest: software_digest(&current),
            source: "rpm".to_string(),
            upsert: current.clone(),
            remove: Vec::new(),
        };
        assert_eq!(delta(None, "rpm", &current), Some(whole.clone()));
        assert_eq!(delta(Some(&acknowledged("dpkg", &current)), "rpm", &current), Some(whole));
    }

    #[test]
    fn the_watch_scans_at_start_on_change_and_when_a_retry_is_due() {
        let start = Instant::now();
        let stamp = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1000));
        let mut watch = SoftwareWatch::default();
        assert!(watch.needs_scan(stamp, start));
        watch.record(stamp, true, start);
        assert!(!watch.needs_scan(stamp, start + Duration::from_secs(86_400)));
        let changed = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(2000));
        assert!(watch.needs_scan(changed, start));
        assert!(watch.needs_scan(None, start));

        watch.record(stamp, false, start);
        assert!(!watch.needs_scan(stamp, start + Duration::from_secs(59)));
        assert!(watch.needs_scan(stamp, start + Duration::from_secs(60)));
        watch.record(stamp, false, start);
        assert!(!watch.needs_scan(stamp, start + Duration::from_secs(119)));
        assert!(watch.needs_scan(stamp, start + Duration::from_secs(120)));
        watch.record(stamp, true, start);
        assert!(!watch.needs_scan(stamp, start + Duration::from_secs(86_400)));
    }

    #[test]
    fn the_retry_delay_doubles_up_to_an_hour() {
        let secs: Vec<u64> = [1, 2, 3, 6, 7, 100, u32::MAX].into_iter().map(|f| retry_delay(f).as_secs()).collect();
        assert_eq!(secs, [60, 120, 240, 1920, 3600, 3600, 3600]);
    }
}
