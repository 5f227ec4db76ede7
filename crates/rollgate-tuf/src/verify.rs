//! The agent's part: load the repository through tough (root chain, timestamp, snapshot,
//! targets; signatures, thresholds, versions, expiry, sizes), keeping TUF state across restarts
//! in a datastore, and decide whether what the server directs this endpoint to install matches
//! a target the targets key signed.

use std::path::Path;

use tough::{ExpirationEnforcement, Limits, Repository, RepositoryLoader, TargetName, Transport};
use url::Url;

use crate::release::{target_name, Release};

/// Metadata size limits: far above what Rollgate writes, far below what could hurt an agent.
pub const LIMITS: Limits = Limits {
    max_root_size: 512 * 1024,
    max_targets_size: 16 * 1024 * 1024,
    max_timestamp_size: 16 * 1024,
    max_snapshot_size: 1024 * 1024,
    max_root_updates: 256,
};

/// Why an endpoint refuses what it was directed to install. Its `Display` is the reason the
/// endpoint reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The repository's metadata could not be trusted (signatures, expiry, rollback, size...).
    #[error("signed metadata refused: {0}")]
    Metadata(String),
    /// The repository could not be reached (network, server error): worth trying again.
    #[error("the signed repository could not be reached: {0}")]
    Unreachable(String),
    /// No target signed for this product and version.
    #[error("no signed target for {product} {version}")]
    NotSigned {
        /// Product directed.
        product: String,
        /// Version directed.
        version: String,
    },
    /// The signed target differs from what the server directed.
    #[error("the server's package differs from the signed target: {0}")]
    Mismatch(String),
    /// The signed release counter is lower than the installed one, and it is not a signed
    /// rollback.
    #[error("downgrade refused: signed release {offered} is below the installed release {installed}")]
    Downgrade {
        /// Installed counter.
        installed: u64,
        /// Offered counter.
        offered: u64,
    },
}

/// Where the agent keeps its TUF state: the datastore tough writes (timestamp and snapshot for
/// rollback checks, the newest verified `root.json`, the latest time seen).
pub struct TrustStore<'a> {
    /// The datastore directory (created if missing).
    pub datastore: &'a Path,
    /// The root the agent was given at enrollment (or `--root`); used until a newer verified
    /// root is in the datastore.
    pub initial_root: &'a [u8],
}

impl TrustStore<'_> {
    /// The root to start from: the newest one tough verified and stored, else the initial one.
    /// (tough writes `root.json` into its datastore but does not read it back.)
    fn trusted_root(&self) -> Vec<u8> {
        std::fs::read(self.datastore.join("root.json")).unwrap_or_else(|_| self.initial_root.to_vec())
    }

    /// Loads and verifies the repository at `metadata_url` / `targets_url` through `transport`.
    pub async fn load<T: Transport + Send + Sync + 'static>(
        &self,
        metadata_url: Url,
        targets_url: Url,
        transport: T,
    ) -> Result<Repository, Refusal> {
        std::fs::create_dir_all(self.datastore)
            .map_err(|e| Refusal::Metadata(format!("cannot create {}: {e}", self.datastore.display())))?;
        let root = self.trusted_root();
        RepositoryLoader::new(&root, metadata_url, targets_url)
            .transport(transport)
            .limits(LIMITS)
            .datastore(self.datastore)
            .expiration_enforcement(ExpirationEnforcement::Safe)
            .load()
            .await
            .map_err(
                |e| if is_unreachable(&e) { Refusal::Unreachable(chain(&e)) } else { Refusal::Metadata(reason(&e)) },
            )
    }
}

/// What the server directs an endpoint to install.
#[derive(Clone, Debug)]
pub struct Directed<'a> {
    /// Product.
    pub product: &'a str,
    /// Version.
    pub version: &'a str,
    /// Install module.
    pub module: &'a str,
    /// SHA-256 of the package, lowercase hex.
    pub sha256: &'a str,
    /// Size in bytes.
    pub size: u64,
    /// The endpoint's operating system (`std::env::consts::OS`), checked against the signed
    /// list when the target has one.
    pub os: &'a str,
    /// The endpoint's hardware (`std::env::consts::ARCH`), likewise.
    pub hardware: &'a str,
}

/// Checks `directed` against the signed target of its product and version in `repo`; returns
/// the signed release when it matches and is not a downgrade from `installed_release`.
pub fn check(repo: &Repository, directed: &Directed<'_>, installed_release: Option<u64>) -> Result<Release, Refusal> {
    let not_signed =
        || Refusal::NotSigned { product: directed.product.to_string(), version: directed.version.to_string() };
    let name = TargetName::new(target_name(directed.product, directed.version)).map_err(|_| not_signed())?;
    let target = repo.targets().signed.find_target(&name, false).map_err(|_| not_signed())?;
    let release = match Release::from_custom(&target.custom) {
        Some(Ok(release)) => release,
        Some(Err(e)) => {
            return Err(Refusal::Mismatch(format!("the signed target's rollgate facts are unreadable: {e}")))
        }
        None => return Err(Refusal::Mismatch("the signed target carries no rollgate facts".into())),
    };
    let signed_sha256 = hex::encode(&*target.hashes.sha256);
    let mismatch = if release.product != directed.product || release.version != directed.version {
        Some(format!("signed for {} {}", release.product, release.version))
    } else if signed_sha256 != directed.sha256 {
        Some(format!("SHA-256 {} is signed, {} directed", signed_sha256, directed.sha256))
    } else if target.length != directed.size {
        Some(format!("{} bytes are signed, {} directed", target.length, directed.size))
    } else if release.module != directed.module {
        Some(format!("module {} is signed, {} directed", release.module, directed.module))
    } else if !release.os.is_empty() && !release.os.iter().any(|os| os == directed.os) {
        Some(format!("signed for {} only, this endpoint runs {}", release.os.join(", "), directed.os))
    } else if !release.hardware.is_empty() && !release.hardware.iter().any(|hw| hw == directed.hardware) {
        Some(format!(
            "signed for {} hardware only, this endpoint is {}",
            release.hardware.join(", "),
            directed.hardware
        ))
    } else {
        None
    };
    if let Some(what) = mismatch {
        return Err(Refusal::Mismatch(what));
    }
    if let Some(installed) = installed_release {
        if release.release < installed && !release.rollback {
            return Err(Refusal::Downgrade { installed, offered: release.release });
        }
    }
    Ok(release)
}

/// Whether `error` comes from a transport failure other than a missing file: the network or
/// the server failed, not the metadata.
fn is_unreachable(error: &tough::error::Error) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(err) = current {
        if let Some(t) = err.downcast_ref::<tough::TransportError>() {
            // tough reports a file over its size limit or with the wrong hash as a transport
            // error too, caused by one of its own errors: that is refused metadata, not a
            // network failure.
            return t.kind() == tough::TransportErrorKind::Other && !caused_by_tough(t);
        }
        current = err.source();
    }
    false
}

/// Whether one of `error`'s causes is a tough error (a verification failure).
fn caused_by_tough(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = error.source();
    while let Some(err) = current {
        if err.downcast_ref::<tough::error::Error>().is_some() {
            return true;
        }
        current = err.source();
    }
    false
}

/// A reason for people from a tough error: the innermost tough error that says what was wrong.
pub fn reason(error: &tough::error::Error) -> String {
    use tough::error::Error as E;
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut best: Option<String> = None;
    while let Some(err) = current {
        if let Some(t) = err.downcast_ref::<E>() {
            let said = match t {
                E::ExpiredMetadata { role, .. } => Some(format!("{role} metadata has expired")),
                E::OlderMetadata { role, current_version, new_version, .. } => Some(format!(
                    "{role} version {new_version} is older than the trusted version {current_version} (a replay)"
                )),
                E::OlderSnapshotInTimestamp { .. } | E::SnapshotRoleRollback { .. } => {
                    Some(format!("rollback of signed metadata: {t}"))
                }
                E::VersionMismatch { .. } => Some(format!("metadata from different snapshots: {t}")),
                E::HashMismatch { .. } => Some(format!("hash mismatch: {t}")),
                E::MaxSizeExceeded { .. } => Some(format!("over its size limit: {t}")),
                E::VerifyMetadata { .. } | E::VerifyTrustedMetadata { .. } => {
                    Some(format!("signature check failed: {}", chain(t)))
                }
                E::MaxUpdatesExceeded { .. } | E::SystemTimeSteppedBackward { .. } => Some(t.to_string()),
                _ => None,
            };
            if said.is_some() {
                best = said;
            }
        }
        current = err.source();
    }
    best.unwrap_or_else(|| chain(error))
}

/// An error and its sources on one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(err) = current {
        let next = err.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        current = err.source();
    }
    text
}
