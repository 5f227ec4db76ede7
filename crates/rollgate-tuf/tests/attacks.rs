//! The attacks of issue 5 against a real repository made with this crate's keys, targets
//! signing and publishing, read by the agent's verification through tough over `file://`:
//! each is refused with a clear reason, and the honest case is accepted.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use rollgate_tuf::keys::{self, Initialized};
use rollgate_tuf::publish::{OnlineKeys, Repo};
use rollgate_tuf::release::{target_name, Release};
use rollgate_tuf::targets::{self, Addition};
use rollgate_tuf::verify::{check, Directed, Refusal, TrustStore};
use tough::schema::RoleType;
use tough::{FilesystemTransport, Repository};
use url::Url;

const PACKAGE: &[u8] = b"the bytes of agent 2.0.0, a package the targets key signs";

struct Fixture {
    dir: tempfile::TempDir,
    keys: Initialized,
    repo: Repo,
    package: PathBuf,
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

fn release(version: &str, counter: u64) -> Release {
    Release {
        product: "agent".into(),
        version: version.into(),
        module: "files".into(),
        release: counter,
        hardware: vec![],
        os: vec![],
        rollback: false,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

impl Fixture {
    /// Keys (3 root keys, threshold 2), root published, agent 2.0.0 (release 2) signed and
    /// published, its bytes under `targets/<sha256>.agent-2.0.0`.
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys::init(&dir.path().join("keys"), 3, 2, now()).await.unwrap();
        let repo = Repo::open(&dir.path().join("repo")).unwrap();
        repo.add_root(&std::fs::read(&keys.root).unwrap()).unwrap();
        let package = dir.path().join("agent-2.0.0.pkg");
        std::fs::write(&package, PACKAGE).unwrap();
        let fixture = Fixture { dir, keys, repo, package };
        fixture.sign_and_publish(&[(&fixture.package, release("2.0.0", 2))], &fixture.keys.targets_key.clone()).await;
        fixture
    }

    fn online(&self) -> OnlineKeys {
        OnlineKeys::from_files(&self.keys.snapshot_key, &self.keys.timestamp_key)
    }

    fn targets_dir(&self) -> PathBuf {
        self.dir.path().join("targets")
    }

    /// Signs a new targets version adding `packages` with `targets_key`, publishes it, and
    /// places the packages where the targets URL points.
    async fn sign_and_publish(&self, packages: &[(&Path, Release)], targets_key: &Path) {
        let bytes = self.sign(packages, targets_key).await;
        self.repo.publish_targets(&bytes, &self.online(), now()).await.unwrap();
    }

    async fn sign(&self, packages: &[(&Path, Release)], targets_key: &Path) -> Vec<u8> {
        let root = self.repo.latest_root().unwrap();
        let previous = self.repo.targets().unwrap();
        let additions: Vec<Addition<'_>> =
            packages.iter().map(|(p, r)| Addition { package: p, release: r.clone() }).collect();
        let (_, bytes) = targets::sign(&root, previous.as_ref(), &additions, targets_key, 90, now()).await.unwrap();
        std::fs::create_dir_all(self.targets_dir()).unwrap();
        for (path, r) in packages {
            let data = std::fs::read(path).unwrap();
            let name = format!("{}.{}", sha256_hex(&data), target_name(&r.product, &r.version));
            std::fs::write(self.targets_dir().join(name), data).unwrap();
        }
        bytes
    }

    fn datastore(&self) -> PathBuf {
        self.dir.path().join("agent-tuf")
    }

    async fn load(&self) -> Result<Repository, Refusal> {
        self.load_with_root(&std::fs::read(&self.keys.root).unwrap()).await
    }

    async fn load_with_root(&self, root: &[u8]) -> Result<Repository, Refusal> {
        let datastore = self.datastore();
        let store = TrustStore { datastore: &datastore, initial_root: root };
        let metadata = Url::from_directory_path(self.repo.dir()).unwrap();
        let targets = Url::from_directory_path(self.targets_dir()).unwrap();
        store.load(metadata, targets, FilesystemTransport).await
    }
}

fn directed(sha256: &str, size: u64) -> Directed<'_> {
    Directed { product: "agent", version: "2.0.0", module: "files", sha256, size, os: "linux", hardware: "x86_64" }
}

fn metadata_refusal(result: Result<Repository, Refusal>) -> String {
    match result {
        Err(Refusal::Metadata(reason)) => reason,
        Err(other) => panic!("expected a metadata refusal, got {other:?}"),
        Ok(_) => panic!("the repository was trusted"),
    }
}

#[tokio::test]
async fn the_signed_package_is_accepted() {
    let f = Fixture::new().await;
    let repo = f.load().await.unwrap();
    let sha = sha256_hex(PACKAGE);
    let signed = check(&repo, &directed(&sha, PACKAGE.len() as u64), Some(1)).unwrap();
    assert_eq!(signed, release("2.0.0", 2));
    // The target bytes themselves verify through tough too.
    let name = tough::TargetName::new("agent-2.0.0").unwrap();
    let stream = repo.read_target(&name).await.unwrap().unwrap();
    assert_eq!(tough::IntoVec::into_vec(stream).await.unwrap(), PACKAGE);
}

#[tokio::test]
async fn a_package_the_server_directs_but_nobody_signed_is_refused() {
    let f = Fixture::new().await;
    let repo = f.load().await.unwrap();
    let evil = sha256_hex(b"malware");
    let refusal = check(&repo, &directed(&evil, PACKAGE.len() as u64), None).unwrap_err();
    assert!(matches!(&refusal, Refusal::Mismatch(why) if why.contains("SHA-256")), "{refusal}");
    let refusal = check(&repo, &directed(&sha256_hex(PACKAGE), 9_999), None).unwrap_err();
    assert!(matches!(&refusal, Refusal::Mismatch(why) if why.contains("bytes")), "{refusal}");
    let unsigned = Directed { version: "6.6.6", ..directed(&evil, 7) };
    assert_eq!(
        check(&repo, &unsigned, None).unwrap_err(),
        Refusal::NotSigned { product: "agent".into(), version: "6.6.6".into() }
    );
    let good = sha256_hex(PACKAGE);
    let other_module = Directed { module: "script", ..directed(&good, PACKAGE.len() as u64) };
    assert!(matches!(check(&repo, &other_module, None).unwrap_err(), Refusal::Mismatch(_)));
}

#[tokio::test]
async fn targets_signed_with_a_key_root_does_not_name_are_refused() {
    let f = Fixture::new().await;
    let evil = f.dir.path().join("evil.pkg");
    std::fs::write(&evil, b"malware").unwrap();
    // The server holds the snapshot key; it cannot pass for the targets key.
    let root = f.repo.latest_root().unwrap();
    let additions = [Addition { package: &evil, release: release("6.6.6", 99) }];
    let result =
        targets::sign(&root, f.repo.targets().unwrap().as_ref(), &additions, &f.keys.snapshot_key, 90, now()).await;
    assert!(result.is_err(), "tough refuses to sign targets with a key root does not list for targets");
    // Hand-made targets signed by the snapshot key, published bypassing the server's checks
    // (what a compromised server would write): the agent refuses the whole repository.
    let forged = forge_targets_signed_by(&f, &f.keys.snapshot_key).await;
    assert!(f.repo.publish_targets(&forged, &f.online(), now()).await.is_err(), "the server's own check refuses it");
    publish_without_checks(&f, &forged).await;
    let reason = metadata_refusal(f.load().await);
    assert!(reason.contains("signature"), "{reason}");
}

/// A targets role (version 2), signed by `key` as if root named it the targets key.
async fn forge_targets_signed_by(f: &Fixture, key: &Path) -> Vec<u8> {
    use tough::editor::signed::SignedRole;
    use tough::schema::KeyHolder;
    let root = f.repo.latest_root().unwrap();
    let mut fake_root = root.signed.clone();
    fake_root.roles.remove(&RoleType::Targets);
    keys::add_key(&mut fake_root, RoleType::Targets, key).await.unwrap();
    let mut targets = f.repo.targets().unwrap().unwrap().signed;
    targets.version = std::num::NonZeroU64::new(2).unwrap();
    let signed = SignedRole::new(
        targets,
        &KeyHolder::Root(fake_root),
        &[keys::key_source(key)],
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .await
    .unwrap();
    signed.buffer().clone()
}

/// Writes `targets` as the next version with a fresh snapshot and timestamp, signed with the
/// real online keys, without the server's check of the targets signature.
async fn publish_without_checks(f: &Fixture, targets: &[u8]) {
    let parsed: tough::schema::Signed<tough::schema::Targets> = serde_json::from_slice(targets).unwrap();
    let version = parsed.signed.version.get();
    std::fs::write(f.repo.dir().join(format!("{version}.targets.json")), targets).unwrap();
    rollgate_tuf::publish::publish_unchecked_for_tests(&f.repo, version, targets, &f.online(), now()).await.unwrap();
}

#[tokio::test]
async fn expired_metadata_is_refused() {
    let f = Fixture::new().await;
    // A timestamp signed two days ago has expired (it lives one day).
    f.repo.refresh_timestamp(&f.online(), now() - jiff::SignedDuration::from_hours(48)).await.unwrap();
    let reason = metadata_refusal(f.load().await);
    assert!(reason.contains("timestamp metadata has expired"), "{reason}");
}

#[tokio::test]
async fn a_replayed_old_timestamp_is_refused() {
    let f = Fixture::new().await;
    let old = std::fs::read(f.repo.dir().join("timestamp.json")).unwrap();
    f.repo.refresh_timestamp(&f.online(), now()).await.unwrap();
    f.load().await.expect("the newer timestamp is trusted and remembered");
    std::fs::write(f.repo.dir().join("timestamp.json"), old).unwrap();
    let reason = metadata_refusal(f.load().await);
    assert!(reason.contains("older than the trusted version") && reason.contains("replay"), "{reason}");
}

#[tokio::test]
async fn metadata_from_different_snapshots_is_refused() {
    let f = Fixture::new().await;
    let pkg = f.dir.path().join("agent-2.1.0.pkg");
    std::fs::write(&pkg, b"agent 2.1.0").unwrap();
    f.sign_and_publish(&[(&pkg, release("2.1.0", 3))], &f.keys.targets_key).await;
    // The timestamp names snapshot 2; serve snapshot 1's bytes under that name.
    let one = std::fs::read(f.repo.dir().join("1.snapshot.json")).unwrap();
    std::fs::write(f.repo.dir().join("2.snapshot.json"), one).unwrap();
    let reason = metadata_refusal(f.load().await);
    assert!(reason.contains("hash mismatch") || reason.contains("different snapshots"), "{reason}");
}

#[tokio::test]
async fn a_target_longer_than_signed_is_cut_off() {
    let f = Fixture::new().await;
    let name = format!("{}.agent-2.0.0", sha256_hex(PACKAGE));
    let mut longer = PACKAGE.to_vec();
    longer.extend_from_slice(b" and then some more bytes the targets key never saw");
    std::fs::write(f.targets_dir().join(name), longer).unwrap();
    let repo = f.load().await.unwrap();
    let target = tough::TargetName::new("agent-2.0.0").unwrap();
    let stream = repo.read_target(&target).await.unwrap().unwrap();
    let err = tough::IntoVec::into_vec(stream).await.unwrap_err();
    let reason = rollgate_tuf::verify::reason(&err);
    assert!(reason.contains("over its size limit"), "{reason}");
}

#[tokio::test]
async fn a_metadata_file_over_its_size_limit_is_refused() {
    let f = Fixture::new().await;
    let path = f.repo.dir().join("timestamp.json");
    let mut padded = std::fs::read(&path).unwrap();
    padded.extend(std::iter::repeat_n(b' ', 64 * 1024));
    std::fs::write(&path, padded).unwrap();
    let reason = metadata_refusal(f.load().await);
    assert!(reason.contains("size limit"), "{reason}");
}

#[tokio::test]
async fn a_root_below_its_threshold_is_refused() {
    let f = Fixture::new().await;
    let root = f.repo.latest_root().unwrap();
    // Version 2 signed by one of the two required root keys.
    let mut next = root.signed.clone();
    next.version = std::num::NonZeroU64::new(2).unwrap();
    let one_key = [keys::key_source(&f.keys.root_keys[0])];
    let bytes = keys::sign_root(next, &one_key).await.unwrap();
    assert!(f.repo.add_root(&bytes).is_err(), "the server refuses to publish it");
    // Given to an agent as its trusted root, it is refused too.
    let reason = metadata_refusal(f.load_with_root(&bytes).await);
    assert!(reason.contains("signature") || reason.contains("threshold"), "{reason}");
}

#[tokio::test]
async fn downgrades_are_refused_unless_a_signed_rollback_says_so() {
    let f = Fixture::new().await;
    let repo = f.load().await.unwrap();
    let sha = sha256_hex(PACKAGE);
    assert_eq!(
        check(&repo, &directed(&sha, PACKAGE.len() as u64), Some(5)).unwrap_err(),
        Refusal::Downgrade { installed: 5, offered: 2 }
    );
    let old = f.dir.path().join("agent-1.9.0.pkg");
    std::fs::write(&old, b"agent 1.9.0").unwrap();
    f.sign_and_publish(&[(&old, Release { rollback: true, ..release("1.9.0", 1) })], &f.keys.targets_key).await;
    let repo = f.load().await.unwrap();
    let old_sha = sha256_hex(b"agent 1.9.0");
    let rollback = Directed { version: "1.9.0", ..directed(&old_sha, 11) };
    assert!(check(&repo, &rollback, Some(5)).unwrap().rollback);
}

#[tokio::test]
async fn rotated_targets_and_online_keys_are_followed_through_the_root_chain() {
    let f = Fixture::new().await;
    f.load().await.expect("the agent trusts version 1");
    let root = f.repo.latest_root().unwrap();
    let two_root_keys = f.keys.root_keys[..2].to_vec();
    let (bytes, new_keys) = keys::rotate(
        &f.dir.path().join("keys"),
        &root,
        &two_root_keys,
        &[RoleType::Targets, RoleType::Snapshot, RoleType::Timestamp],
        now(),
    )
    .await
    .unwrap();
    f.repo.add_root(&bytes).unwrap();
    let key = |role: RoleType| new_keys.iter().find(|(r, _)| *r == role).unwrap().1.clone();
    let online = OnlineKeys::from_files(&key(RoleType::Snapshot), &key(RoleType::Timestamp));
    let pkg = f.dir.path().join("agent-3.0.0.pkg");
    std::fs::write(&pkg, b"agent 3.0.0").unwrap();
    // The old targets key is no longer accepted.
    let root2 = f.repo.latest_root().unwrap();
    let additions = [Addition { package: &pkg, release: release("3.0.0", 3) }];
    assert!(targets::sign(&root2, None, &additions, &f.keys.targets_key, 90, now()).await.is_err());
    // Neither are the old online keys.
    assert!(f.repo.refresh_timestamp(&f.online(), now()).await.is_err());
    // The operator re-signs the list with the new key: version 2, old entries kept.
    let previous = f.repo.targets().unwrap();
    let (version, signed) =
        targets::sign(&root2, previous.as_ref(), &additions, &key(RoleType::Targets), 90, now()).await.unwrap();
    assert_eq!(version, 2);
    std::fs::create_dir_all(f.targets_dir()).unwrap();
    std::fs::write(f.targets_dir().join(format!("{}.agent-3.0.0", sha256_hex(b"agent 3.0.0"))), b"agent 3.0.0")
        .unwrap();
    f.repo.publish_targets(&signed, &online, now()).await.unwrap();
    // The agent, started from root version 1, follows the chain to version 2.
    let repo = f.load().await.expect("the agent follows the root chain");
    assert_eq!(repo.root().signed.version.get(), 2);
    let sha = sha256_hex(b"agent 3.0.0");
    let directed3 = Directed { version: "3.0.0", ..directed(&sha, 11) };
    assert_eq!(check(&repo, &directed3, Some(2)).unwrap().release, 3);
}

#[tokio::test]
async fn a_package_signed_for_other_platforms_is_refused() {
    let f = Fixture::new().await;
    let pkg = f.dir.path().join("agent-3.0.0.pkg");
    std::fs::write(&pkg, b"agent 3.0.0").unwrap();
    let windows_arm = Release { os: vec!["windows".into()], hardware: vec!["aarch64".into()], ..release("3.0.0", 3) };
    f.sign_and_publish(&[(&pkg, windows_arm)], &f.keys.targets_key).await;
    let repo = f.load().await.unwrap();
    let sha = sha256_hex(b"agent 3.0.0");
    let on_linux = Directed { version: "3.0.0", ..directed(&sha, 11) };
    let refusal = check(&repo, &on_linux, None).unwrap_err();
    assert!(matches!(&refusal, Refusal::Mismatch(why) if why.contains("windows only")), "{refusal}");
    let on_windows_x86 = Directed { os: "windows", ..on_linux.clone() };
    let refusal = check(&repo, &on_windows_x86, None).unwrap_err();
    assert!(matches!(&refusal, Refusal::Mismatch(why) if why.contains("aarch64 hardware only")), "{refusal}");
    let on_windows_arm = Directed { hardware: "aarch64", ..on_windows_x86 };
    assert_eq!(check(&repo, &on_windows_arm, None).unwrap().release, 3);
}

/// A transport whose server never answers.
#[derive(Clone, Debug)]
struct Down(tough::TransportErrorKind);

#[async_trait::async_trait]
impl tough::Transport for Down {
    async fn fetch(&self, url: Url) -> Result<tough::TransportStream, tough::TransportError> {
        Err(tough::TransportError::new(self.0, url))
    }
}

#[tokio::test]
async fn an_unreachable_repository_is_told_apart_from_refused_metadata() {
    let f = Fixture::new().await;
    let root = std::fs::read(&f.keys.root).unwrap();
    let datastore = f.datastore();
    let store = TrustStore { datastore: &datastore, initial_root: &root };
    let url = Url::parse("https://repo.invalid/metadata/").unwrap();
    let down = store.load(url.clone(), url.clone(), Down(tough::TransportErrorKind::Other)).await;
    assert!(matches!(down, Err(Refusal::Unreachable(_))), "a network failure is worth retrying");
    let missing = store.load(url.clone(), url, Down(tough::TransportErrorKind::FileNotFound)).await;
    assert!(matches!(missing, Err(Refusal::Metadata(_))), "a missing timestamp is a refusal");
}
