//! End to end: what must be refused is refused, over the real binary and real TLS: expired,
//! wrong and used-up enrollment tokens, plain HTTP, agent routes without a client certificate
//! or with one from another CA, and bad input on the management commands (which also changes
//! nothing).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::*;

fn enroll_once(server: &Server, name: &str, token: &str) -> std::process::Output {
    let state = server.dir.path().join("agents").join(name);
    let mut child = Command::new(EXE)
        .args(["agent", "--server", &server.url(), "--enroll-token", token, "--hostname", name])
        .arg("--ca")
        .arg(server.ca())
        .arg("--state-dir")
        .arg(&state)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A refused agent exits by itself; one that enrolled keeps running and is stopped here.
    for _ in 0..100 {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if state.join("identity/endpoint_id").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn enrollment_tokens_expired_wrong_and_used_up_are_refused() {
    for backend in backends() {
        enrollment_tokens_expired_wrong_and_used_up_are_refused_on(&backend);
    }
}

fn enrollment_tokens_expired_wrong_and_used_up_are_refused_on(backend: &Backend) {
    let server = Server::start_on(backend);
    let expiring = server.json(&["enroll-token", "create", "--ttl", "1s"])["token"].as_str().unwrap().to_string();
    let once = server.token(1);
    std::thread::sleep(Duration::from_millis(1500));

    let out = enroll_once(&server, "expired", &expiring);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("token expired"), "{}", stderr(&out));

    let out = enroll_once(&server, "wrong", "0123456789abcdef");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unknown token"), "{}", stderr(&out));

    enroll_once(&server, "first", &once);
    assert!(server.dir.path().join("agents/first/identity/cert.pem").exists());
    let out = enroll_once(&server, "second", &once);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no uses left"), "{}", stderr(&out));
    assert!(!server.dir.path().join("agents/second/identity/cert.pem").exists());

    let endpoints = server.json(&["endpoints", "list"]);
    assert_eq!(endpoints.as_array().unwrap().len(), 1, "only the first agent enrolled: {endpoints:#}");
}

#[test]
fn plain_http_gets_no_working_answer() {
    let server = Server::start();
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    tcp.write_all(b"GET /v1/sets HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/"), "plain HTTP was answered: {:?}", String::from_utf8_lossy(&answer));

    let out = server.cli(&["sets", "list", "--server", &format!("http://127.0.0.1:{}", server.port)]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("https://"), "{}", stderr(&out));
}

fn client(ca: &std::path::Path, identity: Option<reqwest::Identity>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    let mut builder =
        reqwest::Client::builder().use_rustls_tls().tls_built_in_root_certs(false).add_root_certificate(ca);
    if let Some(id) = identity {
        builder = builder.identity(id);
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn agent_routes_need_a_certificate_from_the_servers_ca() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = Server::start();
    let url = format!("{}/v1/agent/work", server.url());

    let response = client(&server.ca(), None).get(&url).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "client_certificate_required");

    // A certificate naming a plausible endpoint, signed by a CA the server does not trust.
    let rogue = rollgate_pki::Ca::generate("Rogue CA").unwrap();
    let (key, csr) = rollgate_pki::new_client_key_and_csr("rogue").unwrap();
    let cert = rogue.sign_client_csr(&csr, "ep-0000000000000000", 30).unwrap();
    let identity = reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes()).unwrap();
    let refused = client(&server.ca(), Some(identity)).get(&url).send().await;
    assert!(refused.is_err(), "a foreign client certificate must fail the TLS handshake: {refused:?}");

    let response = client(&server.ca(), None).get(format!("{}/v1/sets", server.url())).send().await.unwrap();
    assert_eq!(response.status(), 401, "management needs the admin token");
    let response =
        client(&server.ca(), None).get(format!("{}/v1/sets", server.url())).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(response.status(), 401);
}

#[test]
fn bad_input_on_management_commands_is_refused_and_changes_nothing() {
    for backend in backends() {
        bad_input_on_management_commands_is_refused_and_changes_nothing_on(&backend);
    }
}

fn bad_input_on_management_commands_is_refused_and_changes_nothing_on(backend: &Backend) {
    let server = Server::start_on(backend);
    let token = server.token(2);
    let _a = server.agent("host-a", &token, &["site=berlin"]);
    let endpoints = server.wait_endpoints(1);
    let id = endpoints[0]["id"].as_str().unwrap().to_string();
    let pkg = sample_package(server.dir.path(), "1.0.0", 0.0, false);
    server.add_package(&pkg, "sample", "1.0.0", &[]);
    server.json(&[
        "sets",
        "create",
        "--name",
        "ok",
        "--product",
        "sample",
        "--version",
        "1.0.0",
        "--start-at",
        "2099-01-01T00:00:00Z",
    ]);

    let set = |extra: &[&str]| {
        let mut args = vec!["sets", "create", "--name", "new", "--product", "sample", "--version", "1.0.0"];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let pkg_path = pkg.to_str().unwrap().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["sets", "create", "--name", "x", "--product", "nope", "--version", "1"]
                .into_iter()
                .map(String::from)
                .collect(),
            "package nope@1 not found",
        ),
        (set(&["--window", "Mon-Fry 01:00-02:00"]), "bad window"),
        (set(&["--target", "site=berlin,ep-1"]), "mixes endpoint ids and label matches"),
        (set(&["--target", "ep-doesnotexist"]), "unknown endpoint id"),
        (set(&["--target", "site=nowhere"]), "matches no enrolled endpoint"),
        (set(&["--max-in-flight", "0"]), "max-in-flight must be 1"),
        (set(&["--max-attempts", "99"]), "max-attempts must be 1 to 20"),
        (set(&["--start-at", "tomorrow"]), "bad start time"),
        (set(&["--backoff", "5x"]), "bad duration unit"),
        (
            vec!["sets", "create", "--name", "ok", "--product", "sample", "--version", "1.0.0"]
                .into_iter()
                .map(String::from)
                .collect(),
            "exists already",
        ),
        (vec!["sets".into(), "show".into(), "missing".into()], "upgrade set `missing` not found"),
        (vec!["sets".into(), "resume".into(), "ok".into()], "cannot resume a set that is scheduled"),
        (vec!["sets".into(), "show".into(), "../etc".into()], "bad set or endpoint name"),
        (vec!["endpoints".into(), "show".into(), "ep-nope".into()], "endpoint `ep-nope` not found"),
        (
            vec![
                "packages".into(),
                "add".into(),
                "/nonexistent.tar".into(),
                "--product".into(),
                "x".into(),
                "--version".into(),
                "1".into(),
            ],
            "cannot read /nonexistent.tar",
        ),
        (
            vec![
                "packages".into(),
                "add".into(),
                pkg_path.clone(),
                "--product".into(),
                "sample".into(),
                "--version".into(),
                "1.0.0".into(),
            ],
            "versions are immutable",
        ),
        (
            vec![
                "packages".into(),
                "add".into(),
                pkg_path.clone(),
                "--product".into(),
                "../x".into(),
                "--version".into(),
                "1".into(),
            ],
            "bad product name",
        ),
        (
            vec![
                "packages".into(),
                "add".into(),
                pkg_path.clone(),
                "--product".into(),
                "x".into(),
                "--version".into(),
                "1 0".into(),
            ],
            "bad version",
        ),
        (vec!["enroll-token".into(), "create".into(), "--ttl".into(), "1000d".into()], "ttl must be"),
        (vec!["enroll-token".into(), "create".into(), "--uses".into(), "0".into()], "uses must be 1"),
        (vec!["sets".into(), "list".into(), "--token".into(), "wrong".into()], "wrong admin token"),
    ];
    for (args, expected) in &cases {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = server.cli(&refs);
        assert!(!out.status.success(), "rollgate {refs:?} should fail");
        assert!(stderr(&out).contains(expected), "rollgate {refs:?}: expected `{expected}` in: {}", stderr(&out));
    }
    let sets = server.json(&["sets", "list"]);
    assert_eq!(sets.as_array().unwrap().len(), 1, "{sets:#}");
    assert_eq!(sets[0]["state"], "scheduled");
    let packages = server.json(&["packages", "list"]);
    assert_eq!(packages.as_array().unwrap().len(), 1);
    let stored: Vec<_> = std::fs::read_dir(server.data().join("packages/sha256")).unwrap().collect();
    assert_eq!(stored.len(), 1, "no stray package files");
    assert_eq!(server.json(&["endpoints", "show", &id])["history"].as_array().unwrap().len(), 0);

    // Clap-level mistakes exit with status 2 and a usage message.
    let out = server.cli(&["sets", "create", "--name", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--product"), "{}", stderr(&out));
}
