//! Signed updates for Rollgate: The Update Framework (TUF) on the `tough` crate, with the Uptane
//! split between a signed package repository and the server that directs each endpoint.
//!
//! Who holds which key (issue 5; see ARCHITECTURE.md for the trust model):
//! - **root** (several keys, a threshold of them must sign): offline; signs `root.json`, which
//!   names every role's keys. Made by [`keys::init`].
//! - **targets**: offline, on the operator's machine; signs the list of packages with their
//!   hashes, lengths and Rollgate facts ([`release::Release`]). See [`targets::sign`].
//! - **snapshot** and **timestamp**: online, on the server; they only say which targets list is
//!   current and that the repository is fresh. See [`publish::publish`].
//!
//! An agent trusts nothing the server says about a package unless a targets-signed entry agrees
//! ([`verify`]). A server that is taken over can withhold updates or replay what was signed
//! before (within the metadata's expiry), but cannot make an endpoint install bytes the targets
//! key did not sign, nor an older release than the one installed.
//!
//! Conventions kept for interoperability with other TUF implementations: ed25519 keys, whole
//! seconds in `expires`, `spec_version` 1.0.0, SHA-256 hashes only, consistent snapshots, and
//! flat target names (`<product>-<version>`).

pub mod keys;
pub mod publish;
pub mod release;
pub mod targets;
pub mod verify;

use std::num::NonZeroU64;

/// The TUF specification version written into every role.
pub const SPEC_VERSION: &str = "1.0.0";

/// Something went wrong making, signing or reading TUF metadata.
#[derive(Debug, thiserror::Error)]
pub enum TufError {
    /// A file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What the file is.
        what: &'static str,
        /// Where.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// tough refused or failed.
    #[error("{context}: {source}")]
    Tough {
        /// What was being done.
        context: String,
        /// tough's error (boxed: it is large, and errors are rare).
        source: Box<tough::error::Error>,
    },
    /// A key could not be generated or loaded.
    #[error("{0}")]
    Key(String),
    /// The input does not make sense (a bad threshold, a target without Rollgate facts...).
    #[error("{0}")]
    Invalid(String),
    /// Metadata could not be parsed.
    #[error("{what}: {source}")]
    Json {
        /// What was being parsed.
        what: String,
        /// Why.
        source: serde_json::Error,
    },
}

impl TufError {
    pub(crate) fn io(what: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TufError {
        let path = path.to_path_buf();
        move |source| TufError::Io { what, path, source }
    }

    pub(crate) fn tough(context: impl Into<String>) -> impl FnOnce(tough::error::Error) -> TufError {
        let context = context.into();
        move |source| TufError::Tough { context, source: Box::new(source) }
    }
}

/// `n`, which callers guarantee is not zero.
pub(crate) fn non_zero(n: u64) -> Result<NonZeroU64, TufError> {
    NonZeroU64::new(n).ok_or_else(|| TufError::Invalid("a TUF version or threshold must not be 0".into()))
}

/// `now + secs`, cut to whole seconds (other TUF clients reject fractional seconds).
pub(crate) fn expires_after(now: jiff::Timestamp, secs: i64) -> Result<jiff::Timestamp, TufError> {
    jiff::Timestamp::from_second(now.as_second().saturating_add(secs))
        .map_err(|e| TufError::Invalid(format!("expiry out of range: {e}")))
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that a reader never sees
/// half a file.
pub(crate) fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<(), TufError> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).map_err(TufError::io("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(TufError::io("renaming into place", path))
}
