//! Signed updates through the real binary, as an operator works: `keys init` on the operator's
//! machine, a server given only the online keys, `keys push-root`, `packages add`,
//! `packages sign` offline with the targets key, `packages publish-targets`; the server
//! publishes a consistent snapshot; agents check every package the server directs against the
//! signed targets before downloading it, and stay on their version when the server lies.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

#[test]
fn an_operator_signs_offline_and_the_server_publishes_with_online_keys_only() {
    let operator = tempfile::tempdir().unwrap();
    let keys_dir = operator.path().join("keys-out");
    let out = std::process::Command::new(EXE)
        .args(["keys", "init", "--root-keys", "3", "--root-threshold", "2", "--out"])
        .arg(&keys_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "keys init: {}", stderr(&out));
    let path = |p: &str| keys_dir.join(p).display().to_string();
    let server = Server::start_with(&[
        "--tuf-snapshot-key".into(),
        path("keys/snapshot.der"),
        "--tuf-timestamp-key".into(),
        path("keys/timestamp.der"),
    ]);

    let out = server.cli(&["keys", "push-root", &path("1.root.json")]);
    assert!(out.status.success(), "push-root: {}", stderr(&out));
    let package = sample_package(operator.path(), "2.0.0", 0.0, false);
    server.add_package(&package, "demo-app", "2.0.0", &[]);

    let sign = |key: &str| {
        server.cli(&[
            "packages",
            "sign",
            &package.display().to_string(),
            "--product",
            "demo-app",
            "--version",
            "2.0.0",
            "--release",
            "2",
            "--root",
            &path("1.root.json"),
            "--targets-key",
            &path(key),
            "--out",
            &operator.path().display().to_string(),
        ])
    };
    // The snapshot key cannot sign targets.
    let refused = sign("keys/snapshot.der");
    assert!(!refused.status.success());
    let out = sign("keys/targets.der");
    assert!(out.status.success(), "packages sign: {}", stderr(&out));
    let targets = operator.path().join("1.targets.json");
    let out = server.cli(&["packages", "publish-targets", &targets.display().to_string()]);
    assert!(out.status.success(), "publish-targets: {}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("targets version 1"));

    let repo = server.data().join("tuf");
    for file in ["1.root.json", "1.targets.json", "1.snapshot.json", "timestamp.json"] {
        assert!(repo.join(file).exists(), "{file} published");
    }
    assert_eq!(std::fs::read(repo.join("1.targets.json")).unwrap(), std::fs::read(&targets).unwrap());
    // The server holds no offline key.
    let offline = ["root-1.der", "root-2.der", "root-3.der", "targets.der"];
    for entry in walk(&server.data()) {
        let name = entry.file_name().unwrap().to_string_lossy().to_string();
        assert!(!offline.contains(&name.as_str()), "{} is on the server", entry.display());
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// An operator's signing machine: `keys init` output, and the signed targets roles so far.
struct Operator {
    dir: tempfile::TempDir,
    targets_version: u64,
    /// The newest root and the targets key, relative to `dir` (they change on rotation).
    root: String,
    targets_key: String,
}

impl Operator {
    fn new() -> Operator {
        Operator::with_root_keys(1, 1)
    }

    fn with_root_keys(keys: u8, threshold: u8) -> Operator {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(EXE)
            .args(["keys", "init", "--root-keys", &keys.to_string(), "--root-threshold", &threshold.to_string()])
            .arg("--out")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "keys init: {}", stderr(&out));
        Operator { dir, targets_version: 0, root: "1.root.json".into(), targets_key: "keys/targets.der".into() }
    }

    fn path(&self, p: &str) -> String {
        self.dir.path().join(p).display().to_string()
    }

    fn server(&self) -> Server {
        let server = self.server_without_root();
        self.push_root(&server);
        server
    }

    fn push_root(&self, server: &Server) {
        let out = server.cli(&["keys", "push-root", &self.path("1.root.json")]);
        assert!(out.status.success(), "push-root: {}", stderr(&out));
    }

    fn server_without_root(&self) -> Server {
        Server::start_with(&[
            "--tuf-snapshot-key".into(),
            self.path("keys/snapshot.der"),
            "--tuf-timestamp-key".into(),
            self.path("keys/timestamp.der"),
        ])
    }

    /// Signs `package` as `demo-app` `version` with release counter `release` (keeping the
    /// packages signed before) and publishes the new targets role.
    fn sign_and_publish(&mut self, server: &Server, package: &Path, version: &str, release: u64) {
        let signed = self.sign(server, package, version, release);
        let out = server.cli(&["packages", "publish-targets", &signed]);
        assert!(out.status.success(), "publish-targets: {}", stderr(&out));
    }

    /// Signs (offline) a new targets role adding `package`; returns its path.
    fn sign(&mut self, server: &Server, package: &Path, version: &str, release: u64) -> String {
        let previous = self.path(&format!("{}.targets.json", self.targets_version));
        let release = release.to_string();
        let mut args = vec![
            "packages".to_string(),
            "sign".into(),
            package.display().to_string(),
            "--product".into(),
            "demo-app".into(),
            "--version".into(),
            version.into(),
            "--release".into(),
            release,
            "--root".into(),
            self.path(&self.root),
            "--targets-key".into(),
            self.path(&self.targets_key),
            "--out".into(),
            self.dir.path().display().to_string(),
        ];
        if self.targets_version > 0 {
            args.extend(["--previous".into(), previous]);
        }
        let out = server.cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "packages sign: {}", stderr(&out));
        self.targets_version += 1;
        self.path(&format!("{}.targets.json", self.targets_version))
    }
}

fn package(dir: &Path, version: &str) -> PathBuf {
    let sub = dir.join(format!("pkg-{version}"));
    std::fs::create_dir_all(&sub).unwrap();
    sample_package(&sub, version, 0.0, false)
}

fn create_set(server: &Server, name: &str, version: &str) {
    server.json(&[
        "sets",
        "create",
        "--name",
        name,
        "--product",
        "demo-app",
        "--version",
        version,
        "--max-attempts",
        "1",
    ]);
}

fn only_member_reason(set: &serde_json::Value) -> String {
    assert_eq!(set["counts"]["failed"], 1, "{set:#}");
    set["endpoints"][0]["reason"].as_str().unwrap().to_string()
}

/// What a server compromise would do: the database row of a signed package is pointed at other
/// bytes (which the attacker put in the package store), then the repository's fresh timestamp
/// is replaced with an old one. The endpoint refuses both, downloads nothing, stays on its
/// healthy version, and the set says why.
#[test]
fn a_server_whose_database_points_a_set_at_unsigned_bytes_installs_nothing() {
    let mut operator = Operator::new();
    let server = operator.server();
    let work = operator.dir.path().join("work");
    let token = server.token(1);
    let agent = server.agent("host-0", &token, &[]);
    server.wait_endpoints(1);
    assert!(agent.state.join("tuf/root.json").exists(), "the root came with the enrollment answer");

    // The honest path: a signed package installs, and its release counter is recorded.
    let v2 = package(&work, "2.0.0");
    server.add_package(&v2, "demo-app", "2.0.0", &[]);
    operator.sign_and_publish(&server, &v2, "2.0.0", 2);
    create_set(&server, "signed", "2.0.0");
    let set = server.wait_set("signed", Duration::from_secs(60));
    assert_eq!(set["counts"]["succeeded"], 1, "{set:#}");
    assert_eq!(agent.current("demo-app").as_deref(), Some("2.0.0"));
    let releases: serde_json::Value =
        serde_json::from_slice(&std::fs::read(agent.state.join("tuf/releases.json")).unwrap()).unwrap();
    assert_eq!(releases["demo-app"], 2);
    let first_timestamp = std::fs::read(server.data().join("tuf/timestamp.json")).unwrap();

    // 3.0.0 is signed; then the database is altered to point it at bytes nobody signed.
    let v3 = package(&work, "3.0.0");
    let added = server.add_package(&v3, "demo-app", "3.0.0", &[]);
    operator.sign_and_publish(&server, &v3, "3.0.0", 3);
    let evil = work.join("evil.tar.gz");
    tar_gz(&evil, &[("rollgate-health", 0o755, b"#!/bin/sh\ntouch /tmp/rollgate-owned\nexit 0\n")]);
    let evil_bytes = std::fs::read(&evil).unwrap();
    let evil_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&evil_bytes));
    let store = server.data().join("packages/sha256");
    std::fs::write(store.join(&evil_sha), &evil_bytes).unwrap();
    alter_package_row(&server.data().join("rollgate.db"), "3.0.0", &evil_sha, evil_bytes.len());
    assert_ne!(added["sha256"].as_str().unwrap(), evil_sha);
    create_set(&server, "tampered", "3.0.0");
    let set = server.wait_set("tampered", Duration::from_secs(60));
    let reason = only_member_reason(&set);
    assert!(reason.contains("differs from the signed target") && reason.contains("SHA-256"), "{reason}");
    assert!(reason.contains("nothing was downloaded"), "{reason}");
    assert_eq!(agent.current("demo-app").as_deref(), Some("2.0.0"), "still on its healthy version");
    assert!(!agent.state.join("products/demo-app/versions/3.0.0").exists());
    let downloads: Vec<_> = std::fs::read_dir(agent.state.join("downloads")).unwrap().flatten().collect();
    assert!(downloads.is_empty(), "the unsigned bytes were never fetched: {downloads:?}");

    // The row is put back, but the server now replays the timestamp of the first publication
    // (a rollback: the endpoint has seen a newer one).
    alter_package_row(&server.data().join("rollgate.db"), "3.0.0", added["sha256"].as_str().unwrap(), v3_len(&v3));
    std::fs::write(server.data().join("tuf/timestamp.json"), &first_timestamp).unwrap();
    create_set(&server, "replayed", "3.0.0");
    let set = server.wait_set("replayed", Duration::from_secs(60));
    let reason = only_member_reason(&set);
    assert!(reason.contains("signed metadata refused") && reason.contains("replay"), "{reason}");
    assert_eq!(agent.current("demo-app").as_deref(), Some("2.0.0"), "still on its healthy version");
}

fn v3_len(path: &Path) -> usize {
    std::fs::read(path).unwrap().len()
}

/// Changes the bytes a package row names, directly in the server's SQLite database.
fn alter_package_row(db: &Path, version: &str, sha256: &str, size: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        use sqlx::Connection;
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(db).busy_timeout(Duration::from_secs(10));
        let mut db = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
        let changed =
            sqlx::query("UPDATE packages SET sha256 = ?1, size = ?2 WHERE product = 'demo-app' AND version = ?3")
                .bind(sha256)
                .bind(i64::try_from(size).unwrap())
                .bind(version)
                .execute(&mut db)
                .await
                .unwrap();
        assert_eq!(changed.rows_affected(), 1);
    });
}

/// A server taken over before an endpoint enrolled can send it any root. An agent given the
/// operator's root with `--root` refuses everything the impostor's keys signed; an agent
/// without `--root` trusts the root its server sent (the documented limit of that choice).
#[test]
fn an_agent_pinned_with_root_refuses_an_impostors_repository() {
    let operator = Operator::new();
    let mut impostor = Operator::new();
    let server = impostor.server();
    let token = server.token(2);
    let mut pinned = unspawned_agent(&server, "host-pinned", &token);
    pinned.extra = vec!["--root".into(), operator.path("1.root.json")];
    pinned.spawn();
    let trusting = server.agent("host-trusting", &token, &[]);
    server.wait_endpoints(2);

    let work = impostor.dir.path().join("work");
    let v2 = package(&work, "2.0.0");
    server.add_package(&v2, "demo-app", "2.0.0", &[]);
    impostor.sign_and_publish(&server, &v2, "2.0.0", 2);
    create_set(&server, "impostor", "2.0.0");
    let set = server.wait_set("impostor", Duration::from_secs(60));
    assert_eq!(set["counts"]["failed"], 1, "{set:#}");
    assert_eq!(set["counts"]["succeeded"], 1, "{set:#}");
    let pinned_id = std::fs::read_to_string(pinned.state.join("identity/endpoint_id")).unwrap();
    let refused = set["endpoints"].as_array().unwrap().iter().find(|e| e["id"] == pinned_id.trim()).unwrap();
    let reason = refused["reason"].as_str().unwrap();
    assert!(reason.contains("signed metadata refused") && reason.contains("signature"), "{reason}");
    assert_eq!(pinned.current("demo-app"), None, "nothing installed on the pinned endpoint");
    assert_eq!(trusting.current("demo-app").as_deref(), Some("2.0.0"));
}

/// An agent enrolled before the server published a repository adopts the server's root at
/// its next job, and from then on checks every package against it.
#[test]
fn an_agent_enrolled_before_the_repository_existed_adopts_its_root() {
    let mut operator = Operator::new();
    let server = operator.server_without_root();
    let token = server.token(1);
    let agent = server.agent("host-0", &token, &[]);
    server.wait_endpoints(1);
    assert!(!agent.state.join("tuf/root.json").exists(), "no repository yet, no root");

    operator.push_root(&server);
    let work = operator.dir.path().join("work");
    let v2 = package(&work, "2.0.0");
    server.add_package(&v2, "demo-app", "2.0.0", &[]);
    operator.sign_and_publish(&server, &v2, "2.0.0", 2);
    create_set(&server, "adopt", "2.0.0");
    let set = server.wait_set("adopt", Duration::from_secs(60));
    assert_eq!(set["counts"]["succeeded"], 1, "{set:#}");
    assert!(agent.state.join("tuf/root.json").exists(), "the root was adopted");
    assert!(agent.log().contains("matches its signed target"), "{}", agent.log());

    // From now on an unsigned package is refused.
    let v3 = package(&work, "3.0.0");
    server.add_package(&v3, "demo-app", "3.0.0", &[]);
    create_set(&server, "unsigned", "3.0.0");
    let reason = only_member_reason(&server.wait_set("unsigned", Duration::from_secs(60)));
    assert!(reason.contains("no signed target for demo-app 3.0.0"), "{reason}");
    assert_eq!(agent.current("demo-app").as_deref(), Some("2.0.0"));
}

fn unspawned_agent(server: &Server, name: &str, token: &str) -> Agent {
    let state = server.dir.path().join("agents").join(name);
    std::fs::create_dir_all(&state).unwrap();
    Agent {
        state,
        name: name.to_string(),
        url: server.url(),
        ca: server.ca(),
        token: token.to_string(),
        labels: Vec::new(),
        proc: None,
        extra: Vec::new(),
    }
}

/// Key rotation as an operator does it: `keys rotate` (refused below the root threshold),
/// `keys push-root`, the server restarted with the new online keys, targets signed with the new
/// targets key. The endpoint follows the root chain and installs; the old targets key is done.
#[test]
fn rotated_keys_are_followed_through_the_root_chain() {
    let mut operator = Operator::with_root_keys(2, 2);
    let mut server = operator.server();
    let token = server.token(1);
    let agent = server.agent("host-0", &token, &[]);
    server.wait_endpoints(1);
    let work = operator.dir.path().join("work");
    let v2 = package(&work, "2.0.0");
    server.add_package(&v2, "demo-app", "2.0.0", &[]);
    operator.sign_and_publish(&server, &v2, "2.0.0", 2);
    create_set(&server, "before", "2.0.0");
    assert_eq!(server.wait_set("before", Duration::from_secs(60))["counts"]["succeeded"], 1);

    let dir = operator.dir.path().display().to_string();
    let rotate = |root_keys: &[&str]| {
        let mut args = vec!["keys", "rotate", "--dir", &dir, "--role", "targets", "--role", "snapshot"];
        args.extend(["--role", "timestamp"]);
        let keys: Vec<String> = root_keys.iter().map(|k| operator.path(k)).collect();
        for key in &keys {
            args.extend(["--root-key", key.as_str()]);
        }
        server.cli(&args)
    };
    let refused = rotate(&["keys/root-1.der"]);
    assert!(!refused.status.success(), "one of two root keys is below the threshold");
    assert!(stderr(&refused).contains("threshold"), "{}", stderr(&refused));
    let out = rotate(&["keys/root-1.der", "keys/root-2.der"]);
    assert!(out.status.success(), "keys rotate: {}", stderr(&out));
    let out = server.cli(&["keys", "push-root", &operator.path("2.root.json")]);
    assert!(out.status.success(), "push-root: {}", stderr(&out));
    server.args = vec![
        "--tuf-snapshot-key".into(),
        operator.path("keys/snapshot-v2.der"),
        "--tuf-timestamp-key".into(),
        operator.path("keys/timestamp-v2.der"),
    ];
    server.kill();
    server.spawn();

    // Targets signed with the old key (against the old root) are refused by the server...
    let v3 = package(&work, "3.0.0");
    server.add_package(&v3, "demo-app", "3.0.0", &[]);
    let stale = operator.sign(&server, &v3, "3.0.0", 3);
    let out = server.cli(&["packages", "publish-targets", &stale]);
    assert!(!out.status.success(), "targets signed with the rotated-out key were published");
    // ...and ones signed with the new key are published and installed.
    operator.targets_version -= 1;
    operator.root = "2.root.json".into();
    operator.targets_key = "keys/targets-v2.der".into();
    operator.sign_and_publish(&server, &v3, "3.0.0", 3);
    create_set(&server, "after", "3.0.0");
    let set = server.wait_set("after", Duration::from_secs(60));
    assert_eq!(set["counts"]["succeeded"], 1, "{set:#}");
    assert_eq!(agent.current("demo-app").as_deref(), Some("3.0.0"));
    let trusted: serde_json::Value =
        serde_json::from_slice(&std::fs::read(agent.state.join("tuf/datastore/root.json")).unwrap()).unwrap();
    assert_eq!(trusted["signed"]["version"], 2, "the agent followed the chain to root 2");
}
