//! `rollgate keys init`: the repository's keys and its first signed `root.json`.
//!
//! Layout of the output directory:
//!
//! ```text
//! 1.root.json            the signed root (give it to agents: `--root`, or at enrollment)
//! root.json              the same bytes
//! keys/root-<n>.der      root keys (offline; keep apart, a threshold of them signs a new root)
//! keys/targets.der       the targets key (offline, on the operator's machine)
//! keys/snapshot.der      online: copy to the server
//! keys/timestamp.der     online: copy to the server
//! ```
//!
//! Keys are ed25519 in PKCS#8 DER, files created 0600.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use tough::editor::signed::SignedRole;
use tough::key_source::{KeySource, LocalKeySource};
use tough::schema::{KeyHolder, RoleKeys, RoleType, Root};

use crate::{expires_after, non_zero, TufError, SPEC_VERSION};

/// How long the first root is valid.
pub const ROOT_VALID_DAYS: i64 = 365;

/// What `init` made.
#[derive(Debug, Clone)]
pub struct Initialized {
    /// The signed root.
    pub root: PathBuf,
    /// The root keys.
    pub root_keys: Vec<PathBuf>,
    /// The targets key.
    pub targets_key: PathBuf,
    /// The snapshot key (online).
    pub snapshot_key: PathBuf,
    /// The timestamp key (online).
    pub timestamp_key: PathBuf,
}

/// Generates an ed25519 key in PKCS#8 DER and writes it to `path` (0600, never overwriting).
pub fn generate_key(path: &Path) -> Result<(), TufError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|e| TufError::Key(format!("generating an ed25519 key: {e}")))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(TufError::io("creating key file", path))?;
    file.write_all(pkcs8.as_ref()).map_err(TufError::io("writing key file", path))
}

/// Creates `dir` (and its parents) readable by its owner only.
fn create_private_dir(dir: &Path) -> Result<(), TufError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(TufError::io("creating", dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(TufError::io("protecting", dir))
}

/// A key file as tough reads it.
pub fn key_source(path: &Path) -> Box<dyn KeySource> {
    Box::new(LocalKeySource { path: path.to_path_buf() })
}

/// The public TUF key of the key file at `path`.
pub async fn public_key(path: &Path) -> Result<tough::schema::key::Key, TufError> {
    let signer = key_source(path).as_sign().await.map_err(|e| TufError::Key(format!("{}: {e}", path.display())))?;
    Ok(signer.tuf_key())
}

/// Creates the keys and the signed root in `out` (which must not hold keys already):
/// `root_keys` root keys of which `root_threshold` must sign a root, one key for each other role.
pub async fn init(
    out: &Path,
    root_keys: u8,
    root_threshold: u8,
    now: jiff::Timestamp,
) -> Result<Initialized, TufError> {
    if root_keys == 0 || root_threshold == 0 || root_threshold > root_keys {
        return Err(TufError::Invalid(format!(
            "the root threshold must be 1 to the number of root keys ({root_keys}), not {root_threshold}"
        )));
    }
    let key_dir = out.join("keys");
    create_private_dir(&key_dir)?;
    let made = Initialized {
        root: out.join("1.root.json"),
        root_keys: (1..=root_keys).map(|n| key_dir.join(format!("root-{n}.der"))).collect(),
        targets_key: key_dir.join("targets.der"),
        snapshot_key: key_dir.join("snapshot.der"),
        timestamp_key: key_dir.join("timestamp.der"),
    };
    for path in made.root_keys.iter().chain([&made.targets_key, &made.snapshot_key, &made.timestamp_key]) {
        generate_key(path)?;
    }
    let mut root = Root {
        spec_version: SPEC_VERSION.into(),
        consistent_snapshot: true,
        version: non_zero(1)?,
        expires: expires_after(now, ROOT_VALID_DAYS * 86_400)?,
        keys: HashMap::new(),
        roles: HashMap::new(),
        _extra: HashMap::new(),
    };
    for path in &made.root_keys {
        add_key(&mut root, RoleType::Root, path).await?;
    }
    add_key(&mut root, RoleType::Targets, &made.targets_key).await?;
    add_key(&mut root, RoleType::Snapshot, &made.snapshot_key).await?;
    add_key(&mut root, RoleType::Timestamp, &made.timestamp_key).await?;
    if let Some(role) = root.roles.get_mut(&RoleType::Root) {
        role.threshold = non_zero(u64::from(root_threshold))?;
    }
    let signers: Vec<Box<dyn KeySource>> = made.root_keys.iter().map(|p| key_source(p)).collect();
    let bytes = sign_root(root, &signers).await?;
    crate::write_atomic(&made.root, &bytes)?;
    crate::write_atomic(&out.join("root.json"), &bytes)?;
    Ok(made)
}

/// Adds the public key of `path` to `role` in `root`, with threshold 1 until said otherwise.
pub async fn add_key(root: &mut Root, role: RoleType, path: &Path) -> Result<(), TufError> {
    let key = public_key(path).await?;
    let id = key.key_id().map_err(|e| TufError::Key(format!("key id of {}: {e}", path.display())))?;
    root.keys.insert(id.clone(), key);
    let entry = root.roles.entry(role).or_insert(RoleKeys {
        keyids: Vec::new(),
        threshold: non_zero(1)?,
        _extra: HashMap::new(),
    });
    if !entry.keyids.contains(&id) {
        entry.keyids.push(id);
    }
    Ok(())
}

/// Signs `root` with each of `signers` (root keys of this root); returns the JSON.
pub async fn sign_root(root: Root, signers: &[Box<dyn KeySource>]) -> Result<Vec<u8>, TufError> {
    let holder = KeyHolder::Root(root.clone());
    let signed = SignedRole::new(root, &holder, signers, &SystemRandom::new())
        .await
        .map_err(TufError::tough("signing root.json"))?;
    Ok(signed.buffer().clone())
}

/// Rotates the keys of `roles` (not root) through a new root: new key files `keys/<role>-v<n>.der`
/// in `out`, root version + 1 signed by `root_keys` (a threshold of the current root keys,
/// which stay the root keys). Returns the new root's JSON and the new key files by role.
pub async fn rotate(
    out: &Path,
    previous: &tough::schema::Signed<Root>,
    root_keys: &[PathBuf],
    roles: &[RoleType],
    now: jiff::Timestamp,
) -> Result<(Vec<u8>, Vec<(RoleType, PathBuf)>), TufError> {
    let mut root = previous.signed.clone();
    let version = root.version.get() + 1;
    root.version = non_zero(version)?;
    root.expires = expires_after(now, ROOT_VALID_DAYS * 86_400)?;
    let key_dir = out.join("keys");
    create_private_dir(&key_dir)?;
    let mut made = Vec::new();
    for role in roles {
        if *role == RoleType::Root {
            return Err(TufError::Invalid("rotating root keys is not supported here; rotate the other roles".into()));
        }
        let path = key_dir.join(format!("{role}-v{version}.der"));
        generate_key(&path)?;
        if let Some(keys) = root.roles.get_mut(role) {
            keys.keyids.clear();
        }
        add_key(&mut root, *role, &path).await?;
        made.push((*role, path));
    }
    // Drop keys no role uses any more.
    let used: std::collections::HashSet<_> = root.roles.values().flat_map(|r| r.keyids.iter().cloned()).collect();
    root.keys.retain(|id, _| used.contains(id));
    let signers: Vec<Box<dyn KeySource>> = root_keys.iter().map(|p| key_source(p)).collect();
    let signed = sign_and_check_next_root(previous, root, &signers).await;
    let bytes = match signed {
        Ok(bytes) => bytes,
        Err(e) => {
            // Nothing is kept from a rotation that did not happen, so that it can be retried.
            for (_, path) in &made {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
    };
    crate::write_atomic(&out.join(format!("{version}.root.json")), &bytes)?;
    Ok((bytes, made))
}

/// Signs `next` and checks that `previous` accepts it: a root signed below the current
/// threshold would be refused by every agent.
async fn sign_and_check_next_root(
    previous: &tough::schema::Signed<Root>,
    next: Root,
    signers: &[Box<dyn KeySource>],
) -> Result<Vec<u8>, TufError> {
    let bytes = sign_root(next, signers).await?;
    let parsed: tough::schema::Signed<Root> = crate::targets::parse("root.json", &bytes)?;
    previous.signed.verify_role(&parsed).map_err(|e| {
        TufError::Invalid(format!("the new root is not signed by a threshold of the current root keys: {e}"))
    })?;
    Ok(bytes)
}
