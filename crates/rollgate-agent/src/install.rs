//! Install modules: unpack a verified package onto the endpoint, activate it, check its health
//! and revert to the previous version when anything goes wrong.
//!
//! This is where the agent touches the endpoint's files and runs package-supplied programs, so
//! it is the part that upholds the invariant "an endpoint is never left without a working
//! version". Everything here operates on real files and real processes; deciding *whether* to
//! install, retry or give up belongs to the caller.
//!
//! Layout under `products_dir` (one directory per product):
//!
//! ```text
//! <product>/versions/<version>/   an unpacked version
//! <product>/current               symlink to versions/<version> (the `files` module only)
//! <product>/.staging/new/<v>      a version being unpacked (never visible under versions/)
//! <product>/.staging/old/<v>      an earlier unpack of <v> being replaced
//! ```
//!
//! Two modules exist. `files` unpacks, switches `current` atomically and runs the package's
//! `rollgate-health`; on failure it switches `current` back. `script` unpacks and hands control
//! to the package's own `install`, `health` and `rollback` programs; it never touches `current`.
//!
//! Callers must not run two installs of the same product at once: the staging directories and
//! the `current` switch assume one writer per product.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Component, Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// Default cap on the total size of the files in one package once unpacked.
pub const MAX_UNPACKED_BYTES: u64 = 8 * 1024 * 1024 * 1024;
/// Default cap on the number of entries in one package archive.
pub const MAX_ARCHIVE_ENTRIES: u64 = 1_000_000;
/// How much of a failing process's output (stdout and stderr, interleaved) goes into the reason.
pub const OUTPUT_TAIL_BYTES: usize = 2048;

/// The health check program of a `files` package, at the root of the archive.
pub const FILES_HEALTH_PROGRAM: &str = "rollgate-health";
/// The install program of a `script` package, at the root of the archive.
pub const SCRIPT_INSTALL_PROGRAM: &str = "install";
/// The optional health check program of a `script` package.
pub const SCRIPT_HEALTH_PROGRAM: &str = "health";
/// The optional rollback program of a `script` package.
pub const SCRIPT_ROLLBACK_PROGRAM: &str = "rollback";

/// How long to keep collecting output after a process ended. A background child that inherited
/// the pipes could otherwise keep them open, and the install waiting, forever.
const OUTPUT_DRAIN_MS: u64 = 500;
/// How often to retry a spawn that failed with ETXTBSY, and how long to wait between tries.
/// Another thread of this process may fork while a just-unpacked program's write descriptor is
/// open; the child holds it until it execs, and exec of that program fails meanwhile.
const SPAWN_BUSY_RETRIES: u32 = 20;
const SPAWN_BUSY_BACKOFF_MS: u64 = 25;
/// ETXTBSY on Linux and the BSDs; std has no stable `ErrorKind` for it yet.
const ETXTBSY: i32 = 26;
/// Symlink chains deeper than this are refused, like the kernel's ELOOP limit.
const MAX_SYMLINK_DEPTH: u32 = 40;

/// Directory names inside a product directory.
const VERSIONS_DIR: &str = "versions";
const CURRENT_LINK: &str = "current";
const STAGING_DIR: &str = ".staging";

/// Distinguishes temporary symlink names when several products switch at once.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How a package is installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Module {
    /// Unpack and switch the `current` symlink; health from `rollgate-health`.
    Files,
    /// Unpack and run the package's `install`, `health` and `rollback` programs.
    Script,
}

impl Module {
    /// The name used in package metadata and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Module::Files => "files",
            Module::Script => "script",
        }
    }
}

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A module name that is neither `files` nor `script`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown install module `{0}`: expected `files` or `script`")]
pub struct UnknownModule(pub String);

impl FromStr for Module {
    type Err = UnknownModule;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "files" => Ok(Module::Files),
            "script" => Ok(Module::Script),
            other => Err(UnknownModule(other.to_owned())),
        }
    }
}

/// Caps applied while unpacking, so that a hostile or broken archive cannot fill the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Total size of all files, as declared by their headers.
    pub max_unpacked_bytes: u64,
    /// Number of archive entries of any kind.
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits { max_unpacked_bytes: MAX_UNPACKED_BYTES, max_entries: MAX_ARCHIVE_ENTRIES }
    }
}

/// Everything [`install`] needs to install one version of one product.
#[derive(Clone, Debug)]
pub struct InstallRequest<'a> {
    /// Directory holding one subdirectory per product.
    pub products_dir: &'a Path,
    /// Product name; a single path component that does not start with `.`.
    pub product: &'a str,
    /// Version to install; a single path component that does not start with `.`.
    pub version: &'a str,
    /// The version the endpoint runs now, as the caller knows it. Passed to the package's
    /// programs; for `files` the `current` symlink, not this, decides where to revert to.
    pub from_version: Option<&'a str>,
    /// Install module named by the package.
    pub module: Module,
    /// The package archive, already verified (hash and signature) by the caller.
    pub archive: &'a Path,
    /// Extra environment for every program run; cannot override the `ROLLGATE_*` variables.
    pub env: &'a [(String, String)],
    /// Time limit for each install, health and rollback process (not for the whole install).
    pub step_timeout: Duration,
}

/// Which phase failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading or unpacking the archive, or a refused archive.
    Unpack,
    /// Activating the version: switching `current` (files) or running `install` (script).
    Install,
    /// The new version's health check.
    Health,
    /// Reverting after an install or health failure; the endpoint may need attention.
    Rollback,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Unpack => "unpack",
            Phase::Install => "install",
            Phase::Health => "health",
            Phase::Rollback => "rollback",
        })
    }
}

/// Why an install did not succeed, and what state it left the endpoint in.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{phase} failed: {reason}")]
pub struct InstallFailure {
    /// The phase that failed. `Rollback` means reverting itself failed after an install or
    /// health failure (the reason names both), so the endpoint may run a broken version.
    pub phase: Phase,
    /// Human-readable cause, including the tail of a failing program's output.
    pub reason: String,
    /// True when the attempt changed the endpoint (switched `current` or ran `install`) and then
    /// reverted it.
    pub reverted: bool,
    /// Some(true/false) if the previous version's health was checked after reverting.
    pub previous_healthy: Option<bool>,
    /// The version the endpoint was reverted to (files: where `current` points again; script:
    /// `from_version`). None when there was no previous version or nothing was reverted.
    pub previous_version: Option<String>,
}

impl InstallFailure {
    fn new(phase: Phase, reason: impl Into<String>) -> Self {
        InstallFailure { phase, reason: reason.into(), reverted: false, previous_healthy: None, previous_version: None }
    }

    fn unpack(reason: impl Into<String>) -> Self {
        Self::new(Phase::Unpack, reason)
    }
}

/// A successful install.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    /// Absolute path of `versions/<version>`.
    pub version_dir: PathBuf,
    /// The version that was active before (files: the old `current`; script: `from_version`).
    pub previous_version: Option<String>,
}

/// Installs, checks health, and on failure reverts to the previous version. Never leaves
/// `current` pointing at an unhealthy version.
///
/// The archive must already be verified. On success, version directories other than the new
/// one, the previous one and whatever `current` points to are pruned (failures to prune are
/// logged, not returned). Refuses to reinstall the version `current` points to, because its
/// directory is in use; a failed earlier attempt at the same version is replaced.
pub async fn install(req: &InstallRequest<'_>) -> Result<Installed, InstallFailure> {
    validate_name("product", req.product).map_err(InstallFailure::unpack)?;
    validate_name("version", req.version).map_err(InstallFailure::unpack)?;
    // Programs run with the version dir as cwd, so every path handed to them must be absolute.
    let products_dir = std::path::absolute(req.products_dir).map_err(|e| {
        InstallFailure::unpack(format!("cannot resolve products dir {}: {e}", req.products_dir.display()))
    })?;
    tracing::info!(
        product = req.product,
        version = req.version,
        module = %req.module,
        "installing"
    );
    let result = match req.module {
        Module::Files => install_files(req, &products_dir).await,
        Module::Script => install_script(req, &products_dir).await,
    };
    match &result {
        Ok(installed) => {
            let mut keep: Vec<&str> = vec![req.version];
            keep.extend(installed.previous_version.as_deref());
            keep.extend(req.from_version);
            if let Err(e) = prune_versions(&products_dir, req.product, &keep) {
                tracing::warn!(product = req.product, error = %e, "could not prune old versions");
            }
            tracing::info!(product = req.product, version = req.version, "installed");
        }
        Err(failure) => tracing::warn!(
            product = req.product,
            version = req.version,
            phase = %failure.phase,
            reverted = failure.reverted,
            reason = %failure.reason,
            "install failed"
        ),
    }
    result
}

async fn install_files(req: &InstallRequest<'_>, products_dir: &Path) -> Result<Installed, InstallFailure> {
    // The symlink, not the caller's idea of the version, is what the endpoint runs now.
    let previous = current_version(products_dir, req.product);
    if let (Some(prev), Some(from)) = (previous.as_deref(), req.from_version) {
        if prev != from {
            tracing::warn!(
                product = req.product,
                current = prev,
                from_version = from,
                "`current` differs from the caller's from_version; reverting would use `current`"
            );
        }
    }
    let from_version = req.from_version.or(previous.as_deref());
    let version_dir =
        unpack_version_with_limits(products_dir, req.product, req.version, req.archive, UnpackLimits::default())
            .await?;

    // Checked before switching: a health program that cannot run must not cost a switch.
    let health = optional_program(&version_dir, FILES_HEALTH_PROGRAM)
        .map_err(|reason| InstallFailure::new(Phase::Health, reason))?;

    switch_current(products_dir, req.product, Some(req.version))
        .map_err(|e| InstallFailure::new(Phase::Install, format!("could not switch `current`: {e}")))?;

    let Some(health) = health else {
        return Ok(Installed { version_dir, previous_version: previous });
    };
    let env = child_env(req, req.version, from_version, &version_dir);
    let Err(health_reason) = run_program(&health, &version_dir, &env, req.step_timeout).await else {
        return Ok(Installed { version_dir, previous_version: previous });
    };

    let health_reason = format!("`{FILES_HEALTH_PROGRAM}` of {}: {health_reason}", req.version);
    if let Err(e) = switch_current(products_dir, req.product, previous.as_deref()) {
        return Err(InstallFailure {
            phase: Phase::Rollback,
            reason: format!(
                "could not switch `current` back after the health check failed: {e}; \
                 health failure: {health_reason}"
            ),
            reverted: false,
            previous_healthy: None,
            previous_version: previous,
        });
    }

    let mut failure = InstallFailure {
        phase: Phase::Health,
        reason: health_reason,
        reverted: true,
        previous_healthy: None,
        previous_version: previous.clone(),
    };
    match previous.as_deref() {
        None => failure.reason.push_str("; removed `current` (no previous version)"),
        Some(prev) => {
            let prev_dir = version_path(products_dir, req.product, prev);
            let env = child_env(req, prev, Some(req.version), &prev_dir);
            check_previous(&mut failure, prev, &prev_dir, FILES_HEALTH_PROGRAM, &env, req).await;
        }
    }
    Err(failure)
}

async fn install_script(req: &InstallRequest<'_>, products_dir: &Path) -> Result<Installed, InstallFailure> {
    let version_dir =
        unpack_version_with_limits(products_dir, req.product, req.version, req.archive, UnpackLimits::default())
            .await?;

    // All three programs are looked up before anything runs, so a broken package is refused
    // before it changes the endpoint.
    let lookup =
        |name: &str| optional_program(&version_dir, name).map_err(|reason| InstallFailure::new(Phase::Install, reason));
    let install = lookup(SCRIPT_INSTALL_PROGRAM)?.ok_or_else(|| {
        InstallFailure::new(
            Phase::Install,
            format!(
                "the package has no `{SCRIPT_INSTALL_PROGRAM}` program at its root; a `script` \
                 package must carry an executable `{SCRIPT_INSTALL_PROGRAM}`"
            ),
        )
    })?;
    let health = lookup(SCRIPT_HEALTH_PROGRAM)?;
    let rollback = lookup(SCRIPT_ROLLBACK_PROGRAM)?;

    let env = child_env(req, req.version, req.from_version, &version_dir);
    let installed =
        Installed { version_dir: version_dir.clone(), previous_version: req.from_version.map(str::to_owned) };
    let (phase, reason) = match run_program(&install, &version_dir, &env, req.step_timeout).await {
        Err(reason) => (Phase::Install, format!("`{SCRIPT_INSTALL_PROGRAM}`: {reason}")),
        Ok(()) => match &health {
            None => return Ok(installed),
            Some(health) => match run_program(health, &version_dir, &env, req.step_timeout).await {
                Ok(()) => return Ok(installed),
                Err(reason) => (Phase::Health, format!("`{SCRIPT_HEALTH_PROGRAM}`: {reason}")),
            },
        },
    };

    let Some(rollback) = rollback else {
        return Err(InstallFailure::new(
            phase,
            format!("{reason}; not reverted: the package has no `{SCRIPT_ROLLBACK_PROGRAM}` program"),
        ));
    };
    if let Err(rollback_reason) = run_program(&rollback, &version_dir, &env, req.step_timeout).await {
        return Err(InstallFailure::new(
            Phase::Rollback,
            format!("`{SCRIPT_ROLLBACK_PROGRAM}`: {rollback_reason}; after {phase} failed: {reason}"),
        ));
    }

    let mut failure = InstallFailure {
        phase,
        reason,
        reverted: true,
        previous_healthy: None,
        previous_version: req.from_version.map(str::to_owned),
    };
    if let Some(prev) = req.from_version {
        let prev_dir = version_path(products_dir, req.product, prev);
        let env = child_env(req, prev, Some(req.version), &prev_dir);
        check_previous(&mut failure, prev, &prev_dir, SCRIPT_HEALTH_PROGRAM, &env, req).await;
    }
    Err(failure)
}

/// Runs the previous version's health program, if it has one, and records the result.
async fn check_previous(
    failure: &mut InstallFailure,
    prev: &str,
    prev_dir: &Path,
    program: &str,
    env: &[(String, String)],
    req: &InstallRequest<'_>,
) {
    let health = match optional_program(prev_dir, program) {
        Ok(Some(health)) => health,
        Ok(None) => {
            failure.reason.push_str(&format!("; reverted to {prev} (it has no health check)"));
            return;
        }
        Err(reason) => {
            failure.previous_healthy = Some(false);
            failure.reason.push_str(&format!("; reverted to {prev}, which is unhealthy: {reason}"));
            return;
        }
    };
    match run_program(&health, prev_dir, env, req.step_timeout).await {
        Ok(()) => {
            failure.previous_healthy = Some(true);
            failure.reason.push_str(&format!("; reverted to {prev}, which is healthy"));
        }
        Err(reason) => {
            failure.previous_healthy = Some(false);
            failure.reason.push_str(&format!("; reverted to {prev}, which is unhealthy: `{program}`: {reason}"));
        }
    }
}

/// Environment for a package program: the caller's pairs, then the `ROLLGATE_*` variables, which
/// come last so that a caller's pair cannot contradict them.
fn child_env(
    req: &InstallRequest<'_>,
    version: &str,
    from_version: Option<&str>,
    version_dir: &Path,
) -> Vec<(String, String)> {
    program_env(req.env, req.product, version, from_version, version_dir)
}

/// [`child_env`] without an install request: `base`, then the `ROLLGATE_*` variables.
fn program_env(
    base: &[(String, String)],
    product: &str,
    version: &str,
    from_version: Option<&str>,
    version_dir: &Path,
) -> Vec<(String, String)> {
    let mut env = base.to_vec();
    env.push(("ROLLGATE_PRODUCT".into(), product.into()));
    env.push(("ROLLGATE_VERSION".into(), version.into()));
    env.push(("ROLLGATE_FROM_VERSION".into(), from_version.unwrap_or("").into()));
    env.push(("ROLLGATE_VERSION_DIR".into(), version_dir.to_string_lossy().into_owned()));
    env
}

/// An installed version whose health to check again, after its install (see
/// [`check_installed_health`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct HealthTarget<'a> {
    /// Directory holding one subdirectory per product.
    pub products_dir: &'a Path,
    /// Product name.
    pub product: &'a str,
    /// The installed version.
    pub version: &'a str,
    /// The version it replaced, passed to the program as during the install.
    pub from_version: Option<&'a str>,
    /// The module that installed it: it names the health program.
    pub module: Module,
    /// Extra environment, as for the install.
    pub env: &'a [(String, String)],
    /// Time limit of one run.
    pub step_timeout: Duration,
}

/// What one run of an installed version's health program said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum InstalledHealth {
    /// The version has no health program (or no longer exists): nothing was run.
    NoProgram,
    /// The program exited with status 0 within the step timeout.
    Healthy,
    /// It exited otherwise, was killed, timed out or could not run. The reason names the
    /// program, the version, how it ended and at most `max_output_chars` of its output's end.
    Unhealthy(String),
}

impl Module {
    /// The program at the root of a version directory that judges its health.
    pub(crate) fn health_program(self) -> &'static str {
        match self {
            Module::Files => FILES_HEALTH_PROGRAM,
            Module::Script => SCRIPT_HEALTH_PROGRAM,
        }
    }
}

/// Whether the installed version ships a health program; an error when it ships one that
/// cannot run (not a regular executable file).
pub(crate) fn has_health_program(target: &HealthTarget<'_>) -> Result<bool, String> {
    let dir = version_path(target.products_dir, target.product, target.version);
    optional_program(&dir, target.module.health_program()).map(|program| program.is_some())
}

/// Runs the health program of an installed version once, as the install module ran it (same
/// program, working directory, environment and step timeout). Changes nothing on the endpoint.
pub(crate) async fn check_installed_health(target: &HealthTarget<'_>, max_output_chars: usize) -> InstalledHealth {
    let name = target.module.health_program();
    let named = |why: &dyn fmt::Display| format!("`{name}` of {} {}: {why}", target.product, target.version);
    let products_dir = match std::path::absolute(target.products_dir) {
        Ok(dir) => dir,
        Err(e) => return InstalledHealth::Unhealthy(named(&format!("cannot resolve the products dir: {e}"))),
    };
    let version_dir = version_path(&products_dir, target.product, target.version);
    let program = match optional_program(&version_dir, name) {
        Ok(Some(program)) => program,
        Ok(None) => return InstalledHealth::NoProgram,
        Err(reason) => return InstalledHealth::Unhealthy(named(&reason)),
    };
    let env = program_env(target.env, target.product, target.version, target.from_version, &version_dir);
    match run_program(&program, &version_dir, &env, target.step_timeout).await {
        Ok(()) => InstalledHealth::Healthy,
        Err(failure) => {
            let output = last_chars(&failure.output, max_output_chars);
            InstalledHealth::Unhealthy(named(&ProgramFailure { how: failure.how, output }))
        }
    }
}

/// The last `max_chars` characters of `text`, marked with a leading `…` when cut.
fn last_chars(text: &str, max_chars: usize) -> String {
    let skip = text.chars().count().saturating_sub(max_chars);
    if skip == 0 {
        return text.to_owned();
    }
    let mut tail = String::from("…");
    tail.extend(text.chars().skip(skip));
    tail
}

/// Unpacks only (used by the agent's self-upgrade, which does its own switch/health): returns the
/// version dir.
///
/// Uses the default [`UnpackLimits`]. See [`unpack_version_with_limits`].
pub async fn unpack_version(
    products_dir: &Path,
    product: &str,
    version: &str,
    archive: &Path,
) -> Result<PathBuf, InstallFailure> {
    unpack_version_with_limits(products_dir, product, version, archive, UnpackLimits::default()).await
}

/// Unpacks `archive` (tar, tar.gz or tar.zst, told apart by magic bytes) into
/// `products_dir/<product>/versions/<version>` and returns that directory as an absolute path.
///
/// The archive is unpacked into a staging directory first and renamed into place, so a
/// half-unpacked version never appears under `versions/`. Refused, with nothing left behind:
/// absolute paths, `..` components, symlinks or hard links that resolve outside the version
/// directory, device and FIFO entries, and archives over `limits`. An existing directory for
/// the same version (an earlier failed attempt) is replaced, unless `current` points to it.
/// Does not touch `current`. Runs on the blocking thread pool.
pub async fn unpack_version_with_limits(
    products_dir: &Path,
    product: &str,
    version: &str,
    archive: &Path,
    limits: UnpackLimits,
) -> Result<PathBuf, InstallFailure> {
    validate_name("product", product).map_err(InstallFailure::unpack)?;
    validate_name("version", version).map_err(InstallFailure::unpack)?;
    let products_dir = std::path::absolute(products_dir)
        .map_err(|e| InstallFailure::unpack(format!("cannot resolve products dir {}: {e}", products_dir.display())))?;
    let product = product.to_owned();
    let version = version.to_owned();
    let archive = archive.to_owned();
    tokio::task::spawn_blocking(move || unpack_blocking(&products_dir, &product, &version, &archive, limits))
        .await
        .map_err(|e| InstallFailure::unpack(format!("unpack task failed: {e}")))?
        .map_err(InstallFailure::unpack)
}

fn unpack_blocking(
    products_dir: &Path,
    product: &str,
    version: &str,
    archive: &Path,
    limits: UnpackLimits,
) -> Result<PathBuf, String> {
    if current_version(products_dir, product).as_deref() == Some(version) {
        return Err(format!(
            "{product} {version} is the current version; refusing to replace the directory \
             `current` points to"
        ));
    }
    let product_dir = products_dir.join(product);
    let versions_dir = product_dir.join(VERSIONS_DIR);
    let staging_new = product_dir.join(STAGING_DIR).join("new");
    let staging_old = product_dir.join(STAGING_DIR).join("old");
    for dir in [&versions_dir, &staging_new, &staging_old] {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }

    // A leftover from an attempt that crashed; nothing else uses it (one writer per product).
    let staging = staging_new.join(version);
    remove_path(&staging).map_err(|e| format!("cannot clear {}: {e}", staging.display()))?;
    fs::create_dir(&staging).map_err(|e| format!("cannot create {}: {e}", staging.display()))?;

    let unpacked = extract(archive, &staging, limits).and_then(|()| seal(&staging));
    if let Err(reason) = unpacked {
        if let Err(e) = remove_path(&staging) {
            tracing::warn!(dir = %staging.display(), error = %e, "could not remove staging dir");
        }
        return Err(reason);
    }

    let dest = versions_dir.join(version);
    if fs::symlink_metadata(&dest).is_ok() {
        // Moved aside rather than deleted in place, so `versions/<version>` is either the old
        // or the new tree, never a partly deleted one.
        let old = staging_old.join(version);
        remove_path(&old).map_err(|e| format!("cannot clear {}: {e}", old.display()))?;
        fs::rename(&dest, &old).map_err(|e| format!("cannot move aside the earlier {}: {e}", dest.display()))?;
        if let Err(e) = remove_path(&old) {
            tracing::warn!(dir = %old.display(), error = %e, "could not remove replaced version");
        }
    }
    fs::rename(&staging, &dest).map_err(|e| format!("cannot move {} into place: {e}", staging.display()))?;
    sync_dir(&versions_dir).map_err(|e| format!("cannot sync {}: {e}", versions_dir.display()))?;
    Ok(dest)
}

/// The compression of an archive, told by its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

fn detect_compression(magic: &[u8]) -> Compression {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Unpacks every entry of `archive` into `dest`, checking each one before it is written.
fn extract(archive: &Path, dest: &Path, limits: UnpackLimits) -> Result<(), String> {
    use tar::EntryType as T;

    let mut file = File::open(archive).map_err(|e| format!("cannot open {}: {e}", archive.display()))?;
    let mut magic = [0u8; 4];
    let mut filled = 0;
    while filled < magic.len() {
        match file.read(&mut magic[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read {}: {e}", archive.display())),
        }
    }
    file.seek(SeekFrom::Start(0)).map_err(|e| format!("cannot read {}: {e}", archive.display()))?;
    let reader: Box<dyn Read> = match detect_compression(&magic[..filled]) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(file))),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(file).map_err(|e| format!("cannot start zstd decoder: {e}"))?)
        }
        Compression::None => Box::new(io::BufReader::new(file)),
    };

    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(false);
    tar.set_preserve_ownerships(false);
    tar.set_unpack_xattrs(false);
    tar.set_overwrite(true);

    let mut entries_seen: u64 = 0;
    let mut bytes_declared: u64 = 0;
    let entries = tar.entries().map_err(|e| format!("cannot read archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("cannot read archive entry: {e}"))?;
        entries_seen += 1;
        if entries_seen > limits.max_entries {
            return Err(format!("archive has more than {} entries; refusing it", limits.max_entries));
        }
        let path = entry.path().map_err(|e| format!("archive entry has an invalid path: {e}"))?.into_owned();
        let shown = path.display().to_string();
        check_entry_path(&path).map_err(|why| format!("refusing entry `{shown}`: {why}"))?;

        let kind = entry.header().entry_type();
        match kind {
            T::Regular | T::Continuous | T::GNUSparse | T::Directory => {}
            T::Symlink | T::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| format!("entry `{shown}` has an invalid link target: {e}"))?
                    .ok_or_else(|| format!("link entry `{shown}` has no target"))?
                    .into_owned();
                let lexical = if kind == T::Symlink {
                    check_symlink_target(&path, &target)
                } else {
                    // Hard link targets are named from the archive root, not the link's dir.
                    check_entry_path(&target)
                };
                lexical.map_err(|why| format!("refusing link `{shown}` -> `{}`: {why}", target.display()))?;
            }
            // Metadata-only entries that tar applies to the entries after them.
            T::XGlobalHeader => continue,
            other => {
                return Err(format!("refusing entry `{shown}`: unsupported entry type {other:?}"));
            }
        }

        bytes_declared = bytes_declared.saturating_add(entry.size());
        if bytes_declared > limits.max_unpacked_bytes {
            return Err(format!("archive unpacks to more than {} bytes; refusing it", limits.max_unpacked_bytes));
        }
        // `unpack_in` silently skips (returns false) entries with `..`; those were refused above,
        // so a false here is unexpected and is treated as a refusal too.
        let written = entry.unpack_in(dest).map_err(|e| format!("cannot unpack `{shown}`: {e}"))?;
        if !written {
            return Err(format!("refusing entry `{shown}`: it would land outside the package"));
        }
    }
    Ok(())
}

/// Refuses absolute paths and `..` components. `unpack_in` would strip a leading `/` and skip
/// `..` silently; a package that tries either is broken or hostile and is refused as a whole.
fn check_entry_path(path: &Path) -> Result<(), &'static str> {
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => return Err("absolute path"),
            Component::ParentDir => return Err("`..` in path"),
            Component::CurDir | Component::Normal(_) => {}
        }
    }
    Ok(())
}

/// Refuses symlink targets that are absolute or climb above the archive root, judged by the
/// names alone. Chains through other symlinks are checked on disk by [`seal`].
fn check_symlink_target(link: &Path, target: &Path) -> Result<(), &'static str> {
    let mut depth: usize =
        link.parent().map(|p| p.components().filter(|c| matches!(c, Component::Normal(_))).count()).unwrap_or(0);
    for component in target.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => return Err("absolute link target"),
            Component::ParentDir => {
                depth = depth.checked_sub(1).ok_or("link target points outside the package")?;
            }
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
        }
    }
    Ok(())
}

/// Checks the unpacked tree as a whole and makes it durable: every symlink must resolve inside
/// `root` (names checked per entry can still escape through a chain such as `a -> .` and
/// `a/a/b -> ../..`), and every file and directory is synced, so that a power cut after
/// `current` is switched cannot leave empty files behind.
fn seal(root: &Path) -> Result<(), String> {
    let root = root.canonicalize().map_err(|e| format!("cannot resolve {}: {e}", root.display()))?;
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
            let shown = || path.strip_prefix(&root).unwrap_or(&path).display().to_string();
            if kind.is_symlink() {
                match resolve_symlink(&root, &path, 0) {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        return Err(format!("refusing link `{}`: it resolves outside the package", shown()));
                    }
                    Err(e) => {
                        return Err(format!("refusing link `{}`: cannot resolve it: {e}", shown()));
                    }
                }
            } else if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() {
                File::open(&path)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| format!("cannot sync {}: {e}", path.display()))?;
            }
        }
        sync_dir(&dir).map_err(|e| format!("cannot sync {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Resolves the symlink at `link` (whose parent is already free of symlinks) step by step,
/// following nested symlinks, and returns where it ends up, or None if any step leaves `root`.
/// A missing component ends the physical walk; the rest is resolved by name, which can only
/// under-approximate what the kernel would reach (it would fail with ENOENT instead).
fn resolve_symlink(root: &Path, link: &Path, depth: u32) -> io::Result<Option<PathBuf>> {
    if depth > MAX_SYMLINK_DEPTH {
        return Err(io::Error::other("too many levels of symbolic links"));
    }
    let target = fs::read_link(link)?;
    let mut cur = link.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut missing = false;
    for component in target.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => return Ok(None),
            Component::CurDir => {}
            Component::ParentDir => {
                cur.pop();
            }
            Component::Normal(name) => {
                cur.push(name);
                if !missing {
                    match fs::symlink_metadata(&cur) {
                        Ok(meta) if meta.file_type().is_symlink() => match resolve_symlink(root, &cur, depth + 1)? {
                            Some(resolved) => cur = resolved,
                            None => return Ok(None),
                        },
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => missing = true,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        // Leaving the root even for one step is refused: the way back would go through a
        // directory name outside the package's control.
        if !cur.starts_with(root) {
            return Ok(None);
        }
    }
    Ok(Some(cur))
}

/// Atomically points products_dir/<product>/current at versions/<version> (or removes it when
/// version is None).
///
/// The new symlink is created under a temporary name in the same directory and renamed over
/// `current`, so readers see either the old or the new target, never neither. The link is
/// relative (`versions/<version>`), so the products dir can be moved. Fails with `NotFound`
/// if the version directory does not exist. The directory is synced so the switch survives a
/// power cut.
pub fn switch_current(products_dir: &Path, product: &str, version: Option<&str>) -> io::Result<()> {
    let invalid =
        |what, name: &str| validate_name(what, name).map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why));
    invalid("product", product)?;
    let product_dir = products_dir.join(product);
    let current = product_dir.join(CURRENT_LINK);
    let Some(version) = version else {
        match fs::remove_file(&current) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        return sync_dir(&product_dir);
    };
    invalid("version", version)?;
    let relative = Path::new(VERSIONS_DIR).join(version);
    if !product_dir.join(&relative).is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is not an unpacked version", product_dir.join(&relative).display()),
        ));
    }
    let temp = product_dir.join(format!(
        ".{CURRENT_LINK}.tmp.{}.{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    remove_path(&temp)?;
    std::os::unix::fs::symlink(&relative, &temp)?;
    if let Err(e) = fs::rename(&temp, &current) {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(&product_dir)
}

/// The version `products_dir/<product>/current` points to, or None if there is no such symlink
/// (no version installed through the `files` module, or it was removed by a revert).
pub fn current_version(products_dir: &Path, product: &str) -> Option<String> {
    let target = fs::read_link(products_dir.join(product).join(CURRENT_LINK)).ok()?;
    target.file_name()?.to_str().map(str::to_owned)
}

/// Removes version dirs other than `keep` (e.g. current and previous).
///
/// The version `current` points to is always kept, whether or not it is in `keep`. Stops at
/// the first directory it cannot remove.
pub fn prune_versions(products_dir: &Path, product: &str, keep: &[&str]) -> io::Result<()> {
    let versions_dir = products_dir.join(product).join(VERSIONS_DIR);
    let mut kept: BTreeSet<String> = keep.iter().map(|v| (*v).to_owned()).collect();
    kept.extend(current_version(products_dir, product));
    let entries = match fs::read_dir(&versions_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_str().is_some_and(|name| kept.contains(name)) {
            continue;
        }
        tracing::info!(product, version = %name.to_string_lossy(), "pruning old version");
        remove_path(&entry.path())?;
    }
    Ok(())
}

/// The path of an unpacked version (which may not exist).
fn version_path(products_dir: &Path, product: &str, version: &str) -> PathBuf {
    products_dir.join(product).join(VERSIONS_DIR).join(version)
}

/// Product and version names become path components, so they must be exactly one component.
/// A leading `.` is refused so they can never collide with the agent's own hidden entries.
fn validate_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && name != CURRENT_LINK;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {what} name `{}`: it must be one path component, not start with `.` and \
             not be `{CURRENT_LINK}`",
            name.escape_debug()
        ))
    }
}

/// Removes a file, symlink or directory tree; a missing path is not an error.
fn remove_path(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Looks up a package program at the root of `dir`: None if absent, an error if present but
/// not an executable file (a package that ships one clearly meant it to run).
fn optional_program(dir: &Path, name: &str) -> Result<Option<PathBuf>, String> {
    let path = dir.join(name);
    match fs::metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot inspect `{name}`: {e}")),
        Ok(meta) if !meta.is_file() => Err(format!("`{name}` is not a regular file")),
        Ok(meta) if meta.permissions().mode() & 0o111 == 0 => {
            Err(format!("`{name}` is not executable (mode {:o})", meta.permissions().mode() & 0o7777))
        }
        Ok(_) => Ok(Some(path)),
    }
}

/// Why a package program failed: how it ended, and the tail of its output (at most
/// [`OUTPUT_TAIL_BYTES`]). Shown as `<how>; output: <tail>`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ProgramFailure {
    /// `exited with status 3`, `was killed by signal 9`, `timed out after …`, `could not start: …`.
    how: String,
    /// The end of its stdout and stderr, interleaved and trimmed; may be empty.
    output: String,
}

impl ProgramFailure {
    fn without_output(how: String) -> Self {
        ProgramFailure { how, output: String::new() }
    }
}

impl fmt::Display for ProgramFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.output.is_empty() {
            f.write_str(&self.how)
        } else {
            write!(f, "{}; output: {}", self.how, self.output)
        }
    }
}

/// Runs one package program to completion with `cwd` as working directory and a time limit.
/// On timeout the program's whole process group is killed. Returns why it failed, including
/// the tail of its output.
async fn run_program(
    program: &Path,
    cwd: &Path,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<(), ProgramFailure> {
    let mut command = Command::new(program);
    command
        .current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so that a timeout can kill what the program started as well.
        .process_group(0)
        .kill_on_drop(true);
    tracing::debug!(program = %program.display(), timeout_secs = timeout.as_secs_f64(), "running package program");
    let mut child =
        spawn(&mut command).await.map_err(|e| ProgramFailure::without_output(format!("could not start: {e}")))?;
    let pid = child.id();

    let tail = Arc::new(Mutex::new(Vec::with_capacity(OUTPUT_TAIL_BYTES)));
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(out, Arc::clone(&tail))));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(err, Arc::clone(&tail))));
    }

    let outcome = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => Outcome::Exited(status),
        Ok(Err(e)) => Outcome::WaitFailed(e),
        Err(_elapsed) => {
            if let Some(pid) = pid {
                kill_process_group(pid).await;
            }
            // The group kill covers the leader too; this is for when `kill` is unavailable.
            let _ = child.start_kill();
            let _ = child.wait().await;
            Outcome::TimedOut
        }
    };

    let drain = Duration::from_millis(OUTPUT_DRAIN_MS);
    let aborts: Vec<_> = pumps.iter().map(|p| p.abort_handle()).collect();
    let _ = tokio::time::timeout(drain, join_pumps(pumps)).await;
    for abort in aborts {
        abort.abort();
    }

    let how = match outcome {
        Outcome::Exited(status) if status.success() => return Ok(()),
        Outcome::Exited(status) => describe_status(status),
        Outcome::WaitFailed(e) => format!("could not wait for it: {e}"),
        Outcome::TimedOut => {
            format!("timed out after {}s and was killed", timeout.as_secs_f64())
        }
    };
    let output = {
        let tail = tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        String::from_utf8_lossy(&tail).trim().to_owned()
    };
    Err(ProgramFailure { how, output })
}

enum Outcome {
    Exited(ExitStatus),
    WaitFailed(io::Error),
    TimedOut,
}

fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended abnormally ({status})"),
    }
}

/// Waits for all output readers to reach the end of their pipes.
async fn join_pumps(handles: Vec<tokio::task::JoinHandle<()>>) {
    for handle in handles {
        let _ = handle.await;
    }
}

/// Spawns, retrying while the program is busy being written (see [`SPAWN_BUSY_RETRIES`]).
async fn spawn(command: &mut Command) -> io::Result<tokio::process::Child> {
    let mut attempt = 0;
    loop {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && attempt < SPAWN_BUSY_RETRIES => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(SPAWN_BUSY_BACKOFF_MS)).await;
            }
            result => return result,
        }
    }
}

/// Sends SIGKILL to the process group `pgid`, so that children a script started die with it.
/// `rustix` wraps `kill(2)` safely; the workspace denies `unsafe` (one reviewed exception:
/// `crate::trim`).
async fn kill_process_group(pgid: u32) {
    let Some(pid) = i32::try_from(pgid).ok().and_then(rustix::process::Pid::from_raw) else {
        tracing::warn!(pgid, "not a valid process group id");
        return;
    };
    if let Err(e) = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL) {
        // ESRCH: the group is already gone, which is what we wanted.
        if e != rustix::io::Errno::SRCH {
            tracing::warn!(pgid, error = %e, "kill of a timed-out process group failed");
        }
    }
}

/// Copies a pipe into the shared tail buffer, keeping only the last [`OUTPUT_TAIL_BYTES`].
async fn pump(mut reader: impl AsyncRead + Unpin, tail: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 4096];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut tail = tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > OUTPUT_TAIL_BYTES {
            let excess = tail.len() - OUTPUT_TAIL_BYTES;
            tail.drain(..excess);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_round_trips_through_its_name() {
        for module in [Module::Files, Module::Script] {
            assert_eq!(module.to_string().parse::<Module>(), Ok(module));
        }
        assert_eq!("rpm".parse::<Module>(), Err(UnknownModule("rpm".into())));
    }

    #[test]
    fn compression_is_told_by_magic_bytes() {
        assert_eq!(detect_compression(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(detect_compression(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(detect_compression(b"ustar"), Compression::None);
        assert_eq!(detect_compression(&[]), Compression::None);
    }

    #[test]
    fn symlink_targets_are_judged_from_the_links_directory() {
        let ok = |link: &str, target: &str| check_symlink_target(Path::new(link), Path::new(target));
        assert!(ok("a/b/link", "../c").is_ok());
        assert!(ok("a/b/link", "../../c").is_ok());
        assert!(ok("a/b/link", "../../../c").is_err());
        assert!(ok("link", "/etc/passwd").is_err());
        assert!(ok("link", "./x/../y").is_ok());
    }

    #[test]
    fn output_tails_keep_the_last_characters() {
        assert_eq!(last_chars("worker crashed", 100), "worker crashed");
        assert_eq!(last_chars("abcdef", 3), "…def");
        assert_eq!(last_chars("ééé", 2), "…éé");
        assert_eq!(last_chars("", 0), "");
    }

    #[test]
    fn names_must_be_one_plain_component() {
        for bad in ["", ".", "..", ".hidden", "a/b", "current", "a\0b"] {
            assert!(validate_name("version", bad).is_err(), "{bad:?} accepted");
        }
        for good in ["1.0.0", "2024-06_rc1", "agent"] {
            assert!(validate_name("version", good).is_ok(), "{good:?} refused");
        }
    }
}
