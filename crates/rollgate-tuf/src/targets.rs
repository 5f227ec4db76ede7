//! Signing the targets role on the operator's machine, with the targets key, which never reaches
//! the server: `rollgate packages sign`.

use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use tough::editor::signed::SignedRole;
use tough::schema::{KeyHolder, Root, Signed, Target, Targets};
use tough::TargetName;

use crate::release::{target_name, Release, CUSTOM_KEY};
use crate::{expires_after, non_zero, TufError, SPEC_VERSION};

/// How long a targets role is valid by default.
pub const TARGETS_VALID_DAYS: i64 = 90;

/// Reads a signed role from JSON bytes.
pub fn parse<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<Signed<T>, TufError> {
    serde_json::from_slice(bytes).map_err(|source| TufError::Json { what: what.to_string(), source })
}

/// A package to add: its file and what the targets key vouches for.
#[derive(Clone, Debug)]
pub struct Addition<'a> {
    /// The package file.
    pub package: &'a Path,
    /// Its Rollgate facts.
    pub release: Release,
}

/// Signs a new version of the targets role: `previous` (if any) plus `additions` (replacing
/// entries of the same name), valid for `valid_days`. Returns the signed JSON, to be uploaded
/// to the server as `<version>.targets.json`.
pub async fn sign(
    root: &Signed<Root>,
    previous: Option<&Signed<Targets>>,
    additions: &[Addition<'_>],
    targets_key: &Path,
    valid_days: i64,
    now: jiff::Timestamp,
) -> Result<(u64, Vec<u8>), TufError> {
    let version = previous.map_or(1, |p| p.signed.version.get() + 1);
    let mut targets = Targets::new(SPEC_VERSION.into(), non_zero(version)?, expires_after(now, valid_days * 86_400)?);
    // `previous` is the operator's own last signed list (its signature may be by a targets key
    // that a newer root rotated out, so it is not checked against `root` here; the caller checks
    // a list fetched from elsewhere against the root chain).
    if let Some(previous) = previous {
        targets.targets = previous.signed.targets.clone();
    }
    for addition in additions {
        let name = target_name(&addition.release.product, &addition.release.version);
        let name = TargetName::new(name.clone()).map_err(TufError::tough(format!("target name {name}")))?;
        let mut target = Target::from_path(addition.package)
            .await
            .map_err(|e| TufError::Invalid(format!("reading {}: {e}", addition.package.display())))?;
        let custom =
            addition.release.to_custom().map_err(|source| TufError::Json { what: "release".into(), source })?;
        target.custom.insert(CUSTOM_KEY.to_string(), custom);
        targets.add_target(name, target);
    }
    let signed = SignedRole::new(
        targets,
        &KeyHolder::Root(root.signed.clone()),
        &[crate::keys::key_source(targets_key)],
        &SystemRandom::new(),
    )
    .await
    .map_err(TufError::tough("signing targets.json (is this the targets key of this root?)"))?;
    Ok((version, signed.buffer().clone()))
}
