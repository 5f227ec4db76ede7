//! Signed updates on the agent: before anything is downloaded, the package the server directs
//! this endpoint to install must match a target signed by the repository's targets role
//! (`rollgate_tuf::verify`). The server is trusted to direct, never to vouch for bytes.
//!
//! Where trust starts: the TUF root given with `--root FILE`, or else the one the server sent
//! at enrollment over the channel the agent already trusted (the CA it was given), or else,
//! for an agent enrolled before the server had a repository, the server's first root seen over
//! that same channel. Once an agent holds a root it never installs an unsigned package again.
//! An agent with no root at all installs what the server directs, checking only the SHA-256
//! the server gives, and says so in its log on every attempt.
//!
//! ```text
//! STATE/tuf/root.json        the root trust starts from (tough's chain goes on from it)
//! STATE/tuf/datastore/       tough's state: newest verified root, timestamp, snapshot
//! STATE/tuf/releases.json    product -> signed release counter of the installed version
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use rollgate_tuf::verify::{Directed, Refusal, TrustStore};
use rollgate_wire::Assignment;
use tough::{TransportError, TransportErrorKind, TransportStream};

use crate::client::Client;
use crate::state::{self, StateDir};

/// The root trust starts from, if this agent has one.
pub fn trusted_root(state: &StateDir) -> anyhow::Result<Option<Vec<u8>>> {
    let path = root_path(state);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("while reading {}", path.display())),
    }
}

fn root_path(state: &StateDir) -> std::path::PathBuf {
    state.root().join("tuf").join("root.json")
}

/// Keeps `bytes` as the root trust starts from, unless the agent has one already (a root is
/// only ever replaced by the verified chain in the datastore, never by the server's word).
pub fn keep_root_if_none(state: &StateDir, bytes: &[u8], from: &str) -> anyhow::Result<()> {
    if trusted_root(state)?.is_some() {
        return Ok(());
    }
    rollgate_tuf::targets::parse::<tough::schema::Root>("root.json", bytes)
        .with_context(|| format!("the TUF root {from} is not a root"))?;
    std::fs::create_dir_all(state.root().join("tuf"))?;
    state::write_atomic(&root_path(state), bytes)?;
    tracing::info!("trusting the TUF root {from}");
    Ok(())
}

/// Signed release counters of installed products.
pub fn installed_releases(state: &StateDir) -> anyhow::Result<BTreeMap<String, u64>> {
    Ok(state.read_json("tuf/releases.json")?.unwrap_or_default())
}

/// Records the signed release counter of the version now installed (None: installed unsigned,
/// or reverted to a version whose counter is unknown).
pub fn set_installed_release(state: &StateDir, product: &str, release: Option<u64>) -> anyhow::Result<()> {
    let mut releases = installed_releases(state)?;
    match release {
        Some(r) => releases.insert(product.to_string(), r),
        None => releases.remove(product),
    };
    std::fs::create_dir_all(state.root().join("tuf"))?;
    state.write_json("tuf/releases.json", &releases)
}

/// What became of the check of an assignment.
#[derive(Debug)]
pub enum Verdict {
    /// A signed target matches; its release counter.
    Signed(u64),
    /// This agent holds no root and the server publishes none: nothing to check against.
    NoRoot,
}

/// Why a check did not approve an assignment.
#[derive(Debug)]
pub enum CheckError {
    /// The server or the network failed: try again (within the attempt).
    Transient(String),
    /// The assignment is refused, or the agent's own state is unusable.
    Refused(String),
}

impl From<String> for CheckError {
    fn from(reason: String) -> CheckError {
        CheckError::Refused(reason)
    }
}

/// Checks `assignment` against the signed repository.
pub async fn check(state: &StateDir, client: &Arc<Client>, assignment: &Assignment) -> Result<Verdict, CheckError> {
    let root = match trusted_root(state).map_err(|e| format!("{e:#}"))? {
        Some(root) => root,
        None => match adopt_servers_root(state, client).await? {
            Some(root) => root,
            None => return Ok(Verdict::NoRoot),
        },
    };
    let store = TrustStore { datastore: &state.root().join("tuf").join("datastore"), initial_root: &root };
    let base = url::Url::parse(&format!("{}/", client.base())).map_err(|e| format!("bad server URL: {e}"))?;
    let join = |path: &str| base.join(path).map_err(|e| format!("bad server URL: {e}"));
    let repo = store
        .load(join("v1/tuf/metadata/")?, join("v1/tuf/targets/")?, AgentTransport { client: client.clone() })
        .await
        .map_err(|r| match r {
            Refusal::Unreachable(_) => CheckError::Transient(r.to_string()),
            other => CheckError::Refused(other.to_string()),
        })?;
    let installed = installed_releases(state).map_err(|e| format!("{e:#}"))?.get(&assignment.product).copied();
    let directed = Directed {
        product: &assignment.product,
        version: &assignment.version,
        module: &assignment.module,
        sha256: &assignment.sha256,
        size: assignment.size,
        os: std::env::consts::OS,
        hardware: std::env::consts::ARCH,
    };
    rollgate_tuf::verify::check(&repo, &directed, installed)
        .map(|r| Verdict::Signed(r.release))
        .map_err(|r: Refusal| CheckError::Refused(r.to_string()))
}

/// For an agent that holds no root: the server's first root, fetched over the mutual-TLS
/// channel the agent trusts, kept from now on. None when the server publishes no repository.
async fn adopt_servers_root(state: &StateDir, client: &Client) -> Result<Option<Vec<u8>>, CheckError> {
    match client.get_bytes("/v1/tuf/metadata/1.root.json", rollgate_tuf::verify::LIMITS.max_root_size).await {
        Ok(Some(bytes)) => {
            keep_root_if_none(state, &bytes, "the server published (first use)")
                .map_err(|e| CheckError::Refused(format!("{e:#}")))?;
            Ok(Some(bytes))
        }
        Ok(None) => Ok(None),
        Err(e @ crate::client::ApiFailure::Refused { .. }) => {
            Err(CheckError::Refused(format!("the server refused to give its TUF root: {e}")))
        }
        Err(e) => Err(CheckError::Transient(format!("could not ask the server for its TUF root: {e}"))),
    }
}

/// tough's transport over the agent's own mutual-TLS client: whatever server tough's URL
/// names, the path is asked of the server the client currently uses (so fail-over works as for
/// every other request), with the client's timeouts and a size cap.
#[derive(Clone, Debug)]
struct AgentTransport {
    client: Arc<Client>,
}

/// Largest file the transport reads (tough's own limits are lower for every metadata file).
const MAX_FETCH_BYTES: u64 = 16 * 1024 * 1024 + 1;

#[async_trait::async_trait]
impl tough::Transport for AgentTransport {
    async fn fetch(&self, url: url::Url) -> Result<TransportStream, TransportError> {
        let path = url.path().to_string();
        match self.client.get_bytes(&path, MAX_FETCH_BYTES).await {
            Ok(Some(bytes)) => {
                let chunk: Result<bytes::Bytes, TransportError> = Ok(bytes.into());
                Ok(Box::pin(futures_util::stream::iter([chunk])))
            }
            Ok(None) => Err(TransportError::new(TransportErrorKind::FileNotFound, url)),
            Err(e) => Err(TransportError::new_with_cause(TransportErrorKind::Other, url, e)),
        }
    }
}
