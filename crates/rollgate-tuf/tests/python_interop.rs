//! Interoperability with the reference TUF implementation (python-tuf, from PyPI): a repository
//! written by Rollgate is verified by python-tuf's client over HTTP, and one written by
//! python-tuf is trusted by Rollgate's verification. `.ci/run` installs python-tuf into
//! `target/python-tuf`; elsewhere set `ROLLGATE_PYTHON_TUF` to a Python that has it, or the test
//! says it was skipped.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use rollgate_tuf::publish::{OnlineKeys, Repo};
use rollgate_tuf::release::Release;
use rollgate_tuf::targets::{self, Addition};
use rollgate_tuf::verify::{check, Directed, TrustStore};

/// A Python with python-tuf, or `None` (the test then says it skipped).
fn python_with_tuf() -> Option<PathBuf> {
    let candidate = std::env::var_os("ROLLGATE_PYTHON_TUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/python-tuf/bin/python"));
    let works = Command::new(&candidate)
        .args(["-c", "import tuf.ngclient, securesystemslib.signer"])
        .status()
        .is_ok_and(|s| s.success());
    if works {
        Some(candidate)
    } else {
        println!(
            "python-tuf SKIPPED: no Python with the `tuf` package at {} (.ci/run installs it; or set ROLLGATE_PYTHON_TUF)",
            candidate.display()
        );
        None
    }
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(name)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

/// `python -m http.server` on a free loopback port, killed on drop.
struct HttpServer {
    child: Child,
    port: u16,
}

impl HttpServer {
    fn start(python: &Path, dir: &Path) -> HttpServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(python)
            .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // From here on the guard kills and reaps the child, even if it never listens.
        let server = HttpServer { child, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("python's http.server did not start");
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_repository_written_by_rollgate_is_verified_by_python_tuf() {
    let Some(python) = python_with_tuf() else { return };
    let dir = tempfile::tempdir().unwrap();
    let now = jiff::Timestamp::now();
    let keys = rollgate_tuf::keys::init(&dir.path().join("keys"), 3, 2, now).await.unwrap();
    let serve = dir.path().join("serve");
    let repo = Repo::open(&serve.join("metadata")).unwrap();
    repo.add_root(&std::fs::read(&keys.root).unwrap()).unwrap();
    let package = dir.path().join("agent.pkg");
    let bytes = b"agent 2.0.0, signed by Rollgate";
    std::fs::write(&package, bytes).unwrap();
    let release = Release {
        product: "agent".into(),
        version: "2.0.0".into(),
        module: "files".into(),
        release: 2,
        hardware: vec!["x86_64".into()],
        os: vec![],
        rollback: false,
    };
    let root = repo.latest_root().unwrap();
    let additions = [Addition { package: &package, release: release.clone() }];
    let (_, signed) = targets::sign(&root, None, &additions, &keys.targets_key, 90, now).await.unwrap();
    let online = OnlineKeys::from_files(&keys.snapshot_key, &keys.timestamp_key);
    repo.publish_targets(&signed, &online, now).await.unwrap();
    // A second timestamp, so that the client walks more than the first versions.
    repo.refresh_timestamp(&online, now).await.unwrap();
    std::fs::create_dir_all(serve.join("targets")).unwrap();
    std::fs::write(serve.join("targets").join(format!("{}.agent-2.0.0", sha256_hex(bytes))), bytes).unwrap();

    let server = HttpServer::start(&python, &serve);
    let output = Command::new(&python)
        .arg(script("verify_repo.py"))
        .arg(format!("http://127.0.0.1:{}", server.port))
        .arg(&keys.root)
        .arg("agent-2.0.0")
        .output()
        .unwrap();
    assert!(output.status.success(), "python-tuf refused it: {}", String::from_utf8_lossy(&output.stderr));
    let verified: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(verified["bytes"], String::from_utf8_lossy(bytes).as_ref());
    assert_eq!(verified["length"], bytes.len());
    assert_eq!(verified["custom"]["rollgate"], release.to_custom().unwrap());
}

#[tokio::test]
async fn a_repository_written_by_python_tuf_is_trusted_by_rollgate() {
    let Some(python) = python_with_tuf() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("py");
    let bytes = "agent 3.0.0, signed by python-tuf";
    let release = serde_json::json!({"product": "agent", "version": "3.0.0", "module": "script", "release": 3});
    let status = Command::new(&python)
        .arg(script("make_repo.py"))
        .arg(&out)
        .args(["agent-3.0.0", bytes, &release.to_string()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "python-tuf could not write its repository");

    let root = std::fs::read(out.join("metadata/1.root.json")).unwrap();
    let datastore = dir.path().join("agent-tuf");
    let store = TrustStore { datastore: &datastore, initial_root: &root };
    let metadata = url::Url::from_directory_path(out.join("metadata")).unwrap();
    let targets_url = url::Url::from_directory_path(out.join("targets")).unwrap();
    let repo = store.load(metadata, targets_url, tough::FilesystemTransport).await.unwrap();
    let sha = sha256_hex(bytes.as_bytes());
    let directed = Directed {
        product: "agent",
        version: "3.0.0",
        module: "script",
        sha256: &sha,
        size: bytes.len() as u64,
        os: std::env::consts::OS,
        hardware: std::env::consts::ARCH,
    };
    assert_eq!(check(&repo, &directed, Some(2)).unwrap().release, 3);
    let name = tough::TargetName::new("agent-3.0.0").unwrap();
    let stream = repo.read_target(&name).await.unwrap().unwrap();
    assert_eq!(tough::IntoVec::into_vec(stream).await.unwrap(), bytes.as_bytes());
}
