//! The vulnerability download phase through the real binary: a CSAF provider served over
//! HTTPS by a small file server in this test (ETags, 304 answers, a log of every request), a
//! `rollgate server` polling it on its schedule, and runs that fetch only what changed.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every request the file server answered: (path, status).
type Log = Arc<Mutex<Vec<(String, u16)>>>;

/// Serves `root` over HTTPS on loopback with a certificate from `ca`; ETag = SHA-256 of the
/// file, `If-None-Match` answered 304. Returns the port.
fn https_file_server(root: PathBuf, ca: &rollgate_pki::Ca, log: Log) -> u16 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (cert, key) = ca.issue_server_cert(&["127.0.0.1".to_string()]).unwrap();
    let mut config = (*rollgate_pki::server_config(&cert, &key, ca.cert_pem()).unwrap()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (acceptor, root, log) = (acceptor.clone(), root.clone(), log.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve_connection(tls, &root, &log).await;
                    }
                });
            }
        });
    });
    port
}

async fn serve_connection(mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>, root: &Path, log: &Log) {
    loop {
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&request).to_string();
        let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
        let if_none_match = text
            .lines()
            .find_map(|l| l.to_ascii_lowercase().starts_with("if-none-match:").then(|| l[14..].trim().to_string()));
        let (status, body, etag) = match std::fs::read(root.join(path.trim_start_matches('/'))) {
            Ok(bytes) => {
                let etag = format!("\"{}\"", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)));
                if if_none_match.as_deref() == Some(etag.as_str()) {
                    (304, Vec::new(), Some(etag))
                } else {
                    (200, bytes, Some(etag))
                }
            }
            Err(_) => (404, b"not found".to_vec(), None),
        };
        log.lock().unwrap().push((path, status));
        let reason = match status {
            200 => "OK",
            304 => "Not Modified",
            _ => "Not Found",
        };
        let mut head = format!("HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\n", body.len());
        if let Some(etag) = etag {
            head.push_str(&format!("ETag: {etag}\r\n"));
        }
        head.push_str("\r\n");
        if tls.write_all(head.as_bytes()).await.is_err() || tls.write_all(&body).await.is_err() {
            return;
        }
        let _ = tls.flush().await;
    }
}

const DOCUMENTS: [(&str, &str); 3] = [
    ("csaf20_rhsa-2022_0011.json", "2022/rhsa-2022_0011.json"),
    ("csaf20_rhsa-2021_5186.json", "2021/rhsa-2021_5186.json"),
    ("csaf20_cisa_icsa-24-074-03_siemens_sinema_rc_server.json", "2024/icsa-24-074-03.json"),
];

fn write_changes(root: &Path, lines: &[(&str, &str)]) {
    let text: String = lines.iter().map(|(path, time)| format!("\"{path}\",\"{time}\"\n")).collect();
    std::fs::write(root.join("csaf/changes.csv"), text).unwrap();
}

fn runs(server: &Server) -> Vec<serde_json::Value> {
    server.json(&["feeds", "runs", "provider"]).as_array().unwrap().clone()
}

fn requested(log: &Log) -> Vec<(String, u16)> {
    std::mem::take(&mut *log.lock().unwrap())
}

#[test]
fn a_csaf_provider_is_polled_and_a_second_run_downloads_nothing() {
    let shared = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/advisories"));
    if !shared.is_dir() {
        println!("SKIPPED: ../shared/advisories not found");
        return;
    }
    let ca = rollgate_pki::Ca::generate("feed test CA").unwrap();
    let site = tempfile::tempdir().unwrap();
    let root = site.path().to_path_buf();
    let log: Log = Arc::default();
    let port = https_file_server(root.clone(), &ca, log.clone());
    let base = format!("https://127.0.0.1:{port}");
    std::fs::create_dir_all(root.join(".well-known/csaf")).unwrap();
    let metadata = serde_json::json!({
        "canonical_url": format!("{base}/.well-known/csaf/provider-metadata.json"),
        "distributions": [
            {"directory_url": format!("{base}/csaf/")},
            {"rolie": {"feeds": [{"tlp_label": "WHITE", "url": format!("{base}/rolie/white.json")}]}}
        ],
        "metadata_version": "2.0",
        "publisher": {"category": "vendor", "name": "Test Provider", "namespace": base},
        "role": "csaf_provider"
    });
    std::fs::write(root.join(".well-known/csaf/provider-metadata.json"), metadata.to_string()).unwrap();
    let mut changes = Vec::new();
    for (name, path) in DOCUMENTS {
        let target = root.join("csaf").join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(shared.join(name), &target).unwrap();
        changes.push((path, "2024-01-01T00:00:00Z"));
    }
    write_changes(&root, &changes);
    // The ROLIE feed names its document relative to itself.
    std::fs::create_dir_all(root.join("rolie")).unwrap();
    std::fs::create_dir_all(root.join("vex")).unwrap();
    std::fs::copy(shared.join("csaf20_vex_2022-evd-uc-01-f-001.json"), root.join("vex/vex-001.json")).unwrap();
    let rolie = serde_json::json!({"feed": {"id": "white", "title": "TLP:WHITE", "entry": [
        {"id": "2022-EVD-UC-01-F-001", "updated": "2022-03-03T11:00:00Z", "content": {"src": "../vex/vex-001.json"}}
    ]}});
    std::fs::write(root.join("rolie/white.json"), rolie.to_string()).unwrap();
    let ca_file = site.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();

    let server = Server::start();
    let url = format!("{base}/.well-known/csaf/provider-metadata.json");
    let out = server.cli(&["feeds", "add", "provider", "--kind", "csaf", "--url", &url, "--every", "1h", "--feed-ca"]);
    assert!(!out.status.success(), "--feed-ca needs a file");
    let out = server.cli(&[
        "feeds",
        "add",
        "provider",
        "--kind",
        "csaf",
        "--url",
        &url,
        "--every",
        "1h",
        "--feed-ca",
        ca_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "feeds add: {}", stderr(&out));

    // The first run is the server's own, on its schedule.
    wait_for("the scheduled run", Duration::from_secs(90), || !runs(&server).is_empty());
    let first = &runs(&server)[0];
    assert_eq!((first["imported"].as_u64(), first["failed"].as_u64()), (Some(4), Some(0)), "{first:#}");
    assert_eq!(server.json(&["advisories", "show", "2022-EVD-UC-01-F-001"])[0]["format"], "csaf");
    assert_eq!(server.json(&["advisories", "show", "RHSA-2022:0011"])[0]["cves"][0], "CVE-2020-10188");
    requested(&log);

    // Nothing changed: three conditional requests (metadata, changes.csv, the ROLIE feed), all
    // 304, no document fetched.
    let second = server.json(&["feeds", "run", "provider"]);
    assert_eq!((second["downloaded"].as_u64(), second["imported"].as_u64()), (Some(0), Some(0)), "{second:#}");
    assert_eq!(
        requested(&log),
        [
            ("/.well-known/csaf/provider-metadata.json".to_string(), 304),
            ("/csaf/changes.csv".to_string(), 304),
            ("/rolie/white.json".to_string(), 304)
        ]
    );

    // One document is revised: only it is fetched, and it supersedes the stored revision.
    let revised_path = root.join("csaf/2022/rhsa-2022_0011.json");
    let mut revised: serde_json::Value = serde_json::from_slice(&std::fs::read(&revised_path).unwrap()).unwrap();
    revised["document"]["title"] = "Red Hat Security Advisory: telnet security update (revised)".into();
    revised["document"]["tracking"]["current_release_date"] = "2024-06-01T00:00:00Z".into();
    std::fs::write(&revised_path, revised.to_string()).unwrap();
    changes[0].1 = "2024-06-01T00:00:00Z";
    write_changes(&root, &changes);
    let third = server.json(&["feeds", "run", "provider"]);
    assert_eq!((third["imported"].as_u64(), third["failed"].as_u64()), (Some(1), Some(0)), "{third:#}");
    let fetched: Vec<String> = requested(&log).into_iter().filter(|(_, s)| *s == 200).map(|(p, _)| p).collect();
    assert_eq!(fetched, ["/csaf/changes.csv", "/csaf/2022/rhsa-2022_0011.json"]);
    let shown = server.json(&["advisories", "show", "RHSA-2022:0011"]);
    assert!(shown[0]["title"].as_str().unwrap().ends_with("(revised)"), "{shown:#}");

    // A damaged document fails with its reason, the others stay, and it is tried again.
    std::fs::create_dir_all(root.join("csaf/2099")).unwrap();
    std::fs::write(root.join("csaf/2099/broken.json"), b"{\"document\": {\"csaf_version\": ").unwrap();
    changes.push(("2099/broken.json", "2099-01-01T00:00:00Z"));
    write_changes(&root, &changes);
    let fourth = server.json(&["feeds", "run", "provider"]);
    assert_eq!(fourth["failed"], 1, "{fourth:#}");
    assert!(fourth["errors"][0].as_str().unwrap().contains("broken.json"), "{fourth:#}");
    requested(&log);
    let fifth = server.json(&["feeds", "run", "provider"]);
    assert_eq!(fifth["failed"], 1);
    assert!(requested(&log).iter().any(|(p, _)| p == "/csaf/2099/broken.json"), "the failed document is tried again");
    let listed = server.json(&["feeds", "list"]);
    assert_eq!(listed[0]["last_run"]["failed"], 1);
}

fn osv_record(id: &str, modified: &str, fixed: &str) -> String {
    serde_json::json!({
        "id": id, "summary": format!("{id} summary"), "modified": modified, "published": "2024-01-01T00:00:00Z",
        "aliases": [format!("CVE-2099-{}", &id[4..])],
        "affected": [{"package": {"ecosystem": "Debian:12", "name": "demo"},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}]
    })
    .to_string()
}

fn write_zip(path: &Path, members: &[(&str, String)]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, body) in members {
        zip.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        std::io::Write::write_all(&mut zip, body.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
}

/// An OSV archive over HTTPS and a directory on the server: each imported when it changed,
/// untouched otherwise.
#[test]
fn osv_archives_and_directories_are_imported_when_they_change() {
    let ca = rollgate_pki::Ca::generate("feed test CA").unwrap();
    let site = tempfile::tempdir().unwrap();
    let log: Log = Arc::default();
    let port = https_file_server(site.path().to_path_buf(), &ca, log.clone());
    write_zip(
        &site.path().join("all.zip"),
        &[("TST-1001.json", osv_record("TST-1001", "2024-01-01T00:00:00Z", "1.1")), ("README", "not a record".into())],
    );
    let ca_file = site.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let server = Server::start();
    let url = format!("https://127.0.0.1:{port}/all.zip");
    let add = |name: &str, kind: &str, url: &str| {
        let out = server.cli(&[
            "feeds",
            "add",
            name,
            "--kind",
            kind,
            "--url",
            url,
            "--every",
            "1h",
            "--feed-ca",
            ca_file.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "feeds add {name}: {}", stderr(&out));
    };
    add("osv", "osv", &url);
    let first = server.json(&["feeds", "run", "osv"]);
    assert_eq!((first["imported"].as_u64(), first["failed"].as_u64()), (Some(1), Some(0)), "{first:#}");
    requested(&log);
    let second = server.json(&["feeds", "run", "osv"]);
    assert_eq!((second["downloaded"].as_u64(), second["imported"].as_u64()), (Some(0), Some(0)), "{second:#}");
    assert_eq!(requested(&log), [("/all.zip".to_string(), 304)]);
    write_zip(
        &site.path().join("all.zip"),
        &[
            ("TST-1001.json", osv_record("TST-1001", "2024-01-01T00:00:00Z", "1.1")),
            ("TST-1002.json", osv_record("TST-1002", "2024-02-01T00:00:00Z", "2.0")),
        ],
    );
    let third = server.json(&["feeds", "run", "osv"]);
    assert_eq!((third["imported"].as_u64(), third["unchanged"].as_u64()), (Some(1), Some(1)), "{third:#}");
    assert_eq!(server.json(&["advisories", "show", "TST-1002"])[0]["cves"][0], "CVE-2099-1002");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.json"), osv_record("TST-2001", "2024-01-01T00:00:00Z", "1.0")).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    add("local", "dir", dir.path().to_str().unwrap());
    let first = server.json(&["feeds", "run", "local"]);
    assert_eq!((first["downloaded"].as_u64(), first["imported"].as_u64()), (Some(1), Some(1)), "{first:#}");
    let second = server.json(&["feeds", "run", "local"]);
    assert_eq!((second["downloaded"].as_u64(), second["imported"].as_u64()), (Some(0), Some(0)), "{second:#}");
    std::fs::write(dir.path().join("a.json"), osv_record("TST-2001", "2024-03-01T00:00:00Z", "1.1")).unwrap();
    std::fs::write(dir.path().join("b.json"), "{ truncated").unwrap();
    let third = server.json(&["feeds", "run", "local"]);
    assert_eq!((third["imported"].as_u64(), third["failed"].as_u64()), (Some(1), Some(1)), "{third:#}");
    let bad = server.cli(&["feeds", "add", "rel", "--kind", "dir", "--url", "relative/path"]);
    assert!(!bad.status.success() && stderr(&bad).contains("absolute"), "{}", stderr(&bad));
}
