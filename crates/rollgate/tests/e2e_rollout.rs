//! End to end: a real server and real agents over mutual TLS roll out a package under a
//! max-in-flight limit, roll back a failing health check, refuse corrupt bytes, and finish
//! correctly after the server is killed mid-rollout.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

fn ids(endpoints: &[Value]) -> Vec<String> {
    endpoints.iter().map(|e| e["id"].as_str().unwrap().to_string()).collect()
}

fn create_set(server: &Server, name: &str, version: &str, extra: &[&str]) -> Value {
    let mut args =
        vec!["sets", "create", "--name", name, "--product", "sample", "--version", version, "--backoff", "1"];
    args.extend_from_slice(extra);
    server.json(&args)
}

#[test]
fn limit_holds_and_failing_health_rolls_back_to_the_previous_version() {
    for backend in backends() {
        limit_holds_and_failing_health_rolls_back_to_the_previous_version_on(&backend);
    }
}

fn limit_holds_and_failing_health_rolls_back_to_the_previous_version_on(backend: &Backend) {
    let server = Server::start_on(backend);
    let token = server.token(6);
    let agents: Vec<Agent> = (0..6)
        .map(|i| {
            let health = if i == 3 { "health=fail" } else { "health=ok" };
            server.agent(&format!("host-{i}"), &token, &["site=berlin", health])
        })
        .collect();
    let endpoints = server.wait_endpoints(6);
    let v1 = sample_package(server.dir.path(), "1.0.0", 0.0, false);
    let v2 = sample_package(server.dir.path(), "2.0.0", 1.0, true);
    let added = server.add_package(&v1, "sample", "1.0.0", &[]);
    assert_eq!(added["size"].as_u64().unwrap(), std::fs::metadata(&v1).unwrap().len());
    assert_eq!(added["sha256"].as_str().unwrap().len(), 64);
    server.add_package(&v2, "sample", "2.0.0", &["--min-from", "1.0.0"]);

    // The broken endpoint is fine on 1.0.0, whose health check always passes.
    create_set(&server, "base", "1.0.0", &["--max-in-flight", "6"]);
    let baseline = server.wait_set("base", Duration::from_secs(60));
    assert_eq!(baseline["counts"]["succeeded"], 6, "{baseline:#}");

    let created = create_set(&server, "up", "2.0.0", &["--max-in-flight", "2", "--max-attempts", "2", "--seed", "7"]);
    assert_eq!(created["max_in_flight"], 2);
    let set = server.wait_set("up", Duration::from_secs(120));
    assert_eq!(set["counts"]["succeeded"], 5, "{set:#}");
    assert_eq!(set["counts"]["rolled_back"], 1, "{set:#}");
    assert_eq!(set["counts"]["pending"], 0);
    assert_eq!(set["counts"]["in_progress"], 0);

    let peak = peak_in_flight(&server, "up", &ids(&endpoints));
    assert_eq!(peak, 2, "attempts of set `up` overlapped {peak} at a time; limit 2");

    let broken = &agents[3];
    let broken_id = endpoints.iter().find(|e| e["hostname"] == "host-3").unwrap()["id"].as_str().unwrap().to_string();
    let member = set["endpoints"].as_array().unwrap().iter().find(|e| e["id"] == broken_id.as_str()).unwrap();
    assert_eq!(member["state"], "rolled_back");
    assert_eq!(member["attempts"], 2);
    assert!(member["reason"].as_str().unwrap().contains("unhealthy here"), "{member}");
    assert_eq!(broken.current("sample").as_deref(), Some("1.0.0"), "previous version still in place");
    let detail = server.json(&["endpoints", "show", &broken_id]);
    assert_eq!(detail["products"]["sample"], "1.0.0");
    let history: Vec<&Value> = detail["history"].as_array().unwrap().iter().filter(|a| a["set"] == "up").collect();
    let outcomes: Vec<&str> = history.iter().map(|a| a["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["failed", "rolled_back"]);
    assert!(history.iter().all(|a| a["from_version"] == "1.0.0" && a["to_version"] == "2.0.0"));

    for (i, agent) in agents.iter().enumerate() {
        if i != 3 {
            assert_eq!(agent.current("sample").as_deref(), Some("2.0.0"), "agent {i}");
        }
    }
}

#[test]
fn corrupt_package_bytes_are_never_installed() {
    for backend in backends() {
        corrupt_package_bytes_are_never_installed_on(&backend);
    }
}

fn corrupt_package_bytes_are_never_installed_on(backend: &Backend) {
    let server = Server::start_on(backend);
    let token = server.token(1);
    let agent = server.agent("host-0", &token, &[]);
    server.wait_endpoints(1);
    let pkg = sample_package(server.dir.path(), "1.0.0", 0.0, false);
    let added = server.add_package(&pkg, "sample", "1.0.0", &[]);
    // What a damaged disk or a tampering intermediary would do: same size, different bytes.
    let stored = server.data().join("packages/sha256").join(added["sha256"].as_str().unwrap());
    let mut bytes = std::fs::read(&stored).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&stored, &bytes).unwrap();

    create_set(&server, "bad-bytes", "1.0.0", &["--max-attempts", "2"]);
    let set = server.wait_set("bad-bytes", Duration::from_secs(60));
    assert_eq!(set["counts"]["failed"], 1, "{set:#}");
    let member = &set["endpoints"][0];
    assert_eq!(member["attempts"], 2);
    let reason = member["reason"].as_str().unwrap();
    assert!(reason.contains("SHA-256 mismatch"), "{reason}");
    assert!(!agent.state.join("products/sample/versions/1.0.0").exists(), "nothing unpacked");
    assert_eq!(agent.current("sample"), None);
    let leftovers: Vec<_> = std::fs::read_dir(agent.state.join("downloads")).unwrap().collect();
    assert!(leftovers.is_empty(), "corrupt download deleted: {leftovers:?}");
}

#[test]
fn server_killed_mid_rollout_finishes_without_exceeding_the_limit() {
    for backend in backends() {
        server_killed_mid_rollout_finishes_without_exceeding_the_limit_on(&backend);
    }
}

fn server_killed_mid_rollout_finishes_without_exceeding_the_limit_on(backend: &Backend) {
    let mut server = Server::start_on(backend);
    let token = server.token(6);
    let _agents: Vec<Agent> = (0..6).map(|i| server.agent(&format!("host-{i}"), &token, &[])).collect();
    let endpoints = server.wait_endpoints(6);
    let pkg = sample_package(server.dir.path(), "1.0.0", 1.5, false);
    server.add_package(&pkg, "sample", "1.0.0", &[]);
    create_set(&server, "crash", "1.0.0", &["--max-in-flight", "2"]);

    wait_for("the rollout to be under way", Duration::from_secs(60), || {
        let set = server.json(&["sets", "show", "crash"]);
        set["counts"]["succeeded"].as_u64().unwrap() >= 1 && set["counts"]["in_progress"].as_u64().unwrap() >= 1
    });
    server.kill();
    // Agents keep installing and queue their reports while the server is down.
    std::thread::sleep(Duration::from_secs(2));
    server.spawn();

    let set = server.wait_set("crash", Duration::from_secs(120));
    assert_eq!(set["counts"]["succeeded"], 6, "{set:#}");
    let peak = peak_in_flight(&server, "crash", &ids(&endpoints));
    assert!(peak <= 2, "attempts overlapped {peak} at a time; limit 2");
    for id in ids(&endpoints) {
        let detail = server.json(&["endpoints", "show", &id]);
        let attempts: Vec<&Value> =
            detail["history"].as_array().unwrap().iter().filter(|a| a["set"] == "crash").collect();
        assert_eq!(attempts.len(), 1, "one attempt, recorded once, for {id}: {attempts:?}");
        assert_eq!(attempts[0]["outcome"], "succeeded");
    }
}

#[test]
fn downloads_resume_from_the_partial_file_and_a_restarted_agent_keeps_its_identity() {
    for backend in backends() {
        downloads_resume_from_the_partial_file_and_a_restarted_agent_keeps_its_identity_on(&backend);
    }
}

fn downloads_resume_from_the_partial_file_and_a_restarted_agent_keeps_its_identity_on(backend: &Backend) {
    let server = Server::start_on(backend);
    let token = server.token(1);
    let mut agent = server.agent("host-0", &token, &[]);
    let first = server.wait_endpoints(1);
    let pkg = sample_package(server.dir.path(), "1.0.0", 0.0, false);
    let added = server.add_package(&pkg, "sample", "1.0.0", &[]);
    let sha = added["sha256"].as_str().unwrap();

    // Restart the agent: its one-use token is spent, so only its saved identity lets it back in.
    agent.proc = None;
    agent.spawn();
    wait_for("the restarted agent to log its start", Duration::from_secs(30), || {
        agent.log().matches("running as endpoint").count() == 2
    });
    assert!(agent.log().contains(first[0]["id"].as_str().unwrap()));
    assert_eq!(server.json(&["endpoints", "list"]).as_array().unwrap().len(), 1);

    // A partial download whose first bytes are wrong: if the agent resumes from it (as it
    // should), the whole file fails verification, is deleted, and the next attempt fetches it
    // afresh. Without resuming, attempt 1 would simply succeed.
    let prefix = std::fs::read(&pkg).unwrap()[..64].iter().map(|b| b ^ 0x5a).collect::<Vec<u8>>();
    std::fs::write(agent.state.join("downloads").join(format!("{sha}.part")), prefix).unwrap();
    create_set(&server, "resume", "1.0.0", &["--max-attempts", "2"]);
    let set = server.wait_set("resume", Duration::from_secs(60));
    assert_eq!(set["counts"]["succeeded"], 1, "{set:#}");
    let detail = server.json(&["endpoints", "show", first[0]["id"].as_str().unwrap()]);
    let history = detail["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{history:#?}");
    assert_eq!(history[0]["outcome"], "failed");
    assert!(history[0]["reason"].as_str().unwrap().contains("SHA-256 mismatch"), "{history:#?}");
    assert_eq!(history[1]["outcome"], "succeeded");
    assert!(agent.log().contains("resuming the download"));
    assert_eq!(agent.current("sample").as_deref(), Some("1.0.0"));
}

#[test]
fn heartbeats_keep_a_long_install_in_its_slot() {
    for backend in backends() {
        heartbeats_keep_a_long_install_in_its_slot_on(&backend);
    }
}

fn heartbeats_keep_a_long_install_in_its_slot_on(backend: &Backend) {
    let server = Server::start_on(backend);
    let token = server.token(2);
    let _agents: Vec<Agent> = (0..2).map(|i| server.agent(&format!("host-{i}"), &token, &[])).collect();
    let endpoints = server.wait_endpoints(2);
    // The install outlasts the stuck timeout; only heartbeats keep the slot from being freed
    // (which would let the second endpoint start alongside the first).
    let pkg = sample_package(server.dir.path(), "1.0.0", 7.0, false);
    server.add_package(&pkg, "sample", "1.0.0", &[]);
    create_set(&server, "long", "1.0.0", &["--max-in-flight", "1", "--stuck-timeout", "5s", "--step-timeout", "60s"]);
    let set = server.wait_set("long", Duration::from_secs(90));
    assert_eq!(set["counts"]["succeeded"], 2, "{set:#}");
    assert_eq!(peak_in_flight(&server, "long", &ids(&endpoints)), 1);
}

#[test]
fn a_vanished_endpoint_loses_its_slot_after_the_stuck_timeout() {
    for backend in backends() {
        a_vanished_endpoint_loses_its_slot_after_the_stuck_timeout_on(&backend);
    }
}

fn a_vanished_endpoint_loses_its_slot_after_the_stuck_timeout_on(backend: &Backend) {
    let server = Server::start_on(backend);
    let token = server.token(2);
    let mut agents: Vec<Agent> = (0..2).map(|i| server.agent(&format!("host-{i}"), &token, &[])).collect();
    let endpoints = server.wait_endpoints(2);
    let pkg = sample_package(server.dir.path(), "1.0.0", 3.0, false);
    server.add_package(&pkg, "sample", "1.0.0", &[]);
    create_set(&server, "vanish", "1.0.0", &["--max-in-flight", "1", "--stuck-timeout", "5s"]);

    let mut first = String::new();
    wait_for("the first endpoint to start its attempt", Duration::from_secs(30), || {
        let set = server.json(&["sets", "show", "vanish"]);
        let running =
            set["endpoints"].as_array().unwrap().iter().find(|e| e["state"] == "in_progress" && e["attempts"] == 1);
        if let Some(e) = running {
            first = e["id"].as_str().unwrap().to_string();
        }
        !first.is_empty()
    });
    let host = endpoints.iter().find(|e| e["id"] == first.as_str()).unwrap()["hostname"].as_str().unwrap().to_string();
    let agent = agents.iter_mut().find(|a| a.name == host).unwrap();
    agent.proc = None; // SIGKILL mid-install: no more heartbeats, no outcome.

    let set = server.wait_set("vanish", Duration::from_secs(60));
    assert_eq!(set["counts"]["succeeded"], 1, "{set:#}");
    assert_eq!(set["counts"]["failed"], 1, "{set:#}");
    let gone = set["endpoints"].as_array().unwrap().iter().find(|e| e["id"] == first.as_str()).unwrap();
    assert!(gone["reason"].as_str().unwrap().contains("no report for"), "{gone}");
    assert_eq!(peak_in_flight(&server, "vanish", &ids(&endpoints)), 1);
}

#[test]
fn a_failure_reason_with_control_bytes_is_recorded() {
    for backend in backends() {
        a_failure_reason_with_control_bytes_is_recorded_on(&backend);
    }
}

fn a_failure_reason_with_control_bytes_is_recorded_on(backend: &Backend) {
    let server = Server::start_on(backend);
    let token = server.token(1);
    let agent = server.agent("host-0", &token, &[]);
    let endpoints = server.wait_endpoints(1);
    // PostgreSQL refuses NUL in text; a report carrying one must not jam the agent's outbox.
    let pkg = server.dir.path().join("nul.tar.gz");
    tar_gz(&pkg, &[("rollgate-health", 0o755, b"#!/bin/sh\nprintf 'bad\\000byte\\033[31m' >&2\nexit 1\n")]);
    server.add_package(&pkg, "sample", "1.0.0", &[]);
    create_set(&server, "nul", "1.0.0", &["--max-attempts", "1"]);
    let set = server.wait_set("nul", Duration::from_secs(60));
    assert_eq!(set["counts"]["rolled_back"], 1, "{set:#}\n{}", agent.log());
    let reason = set["endpoints"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("bad byte"), "{reason}");
    assert!(!reason.contains('\0'));
    let id = endpoints[0]["id"].as_str().unwrap();
    let history = server.json(&["endpoints", "show", id])["history"].clone();
    assert_eq!(history[0]["outcome"], "rolled_back", "{history:#}");
}

#[test]
fn a_server_outage_longer_than_the_stuck_timeout_frees_no_slot() {
    for backend in backends() {
        a_server_outage_longer_than_the_stuck_timeout_frees_no_slot_on(&backend);
    }
}

fn a_server_outage_longer_than_the_stuck_timeout_frees_no_slot_on(backend: &Backend) {
    let mut server = Server::start_on(backend);
    let token = server.token(2);
    let _agents: Vec<Agent> = (0..2).map(|i| server.agent(&format!("host-{i}"), &token, &[])).collect();
    let endpoints = server.wait_endpoints(2);
    let pkg = sample_package(server.dir.path(), "1.0.0", 9.0, false);
    server.add_package(&pkg, "sample", "1.0.0", &[]);
    create_set(&server, "outage", "1.0.0", &["--max-in-flight", "1", "--stuck-timeout", "5s", "--step-timeout", "60s"]);
    wait_for("the first attempt to start", Duration::from_secs(30), || {
        server.json(&["sets", "show", "outage"])["endpoints"].as_array().unwrap().iter().any(|e| e["attempts"] == 1)
    });
    // Down for longer than the stuck timeout: heartbeats cannot arrive, through no fault of
    // the endpoint, which keeps installing.
    server.kill();
    std::thread::sleep(Duration::from_secs(7));
    server.spawn();
    let set = server.wait_set("outage", Duration::from_secs(90));
    assert_eq!(set["counts"]["succeeded"], 2, "{set:#}");
    assert_eq!(peak_in_flight(&server, "outage", &ids(&endpoints)), 1, "the outage let a second endpoint start");
    for e in set["endpoints"].as_array().unwrap() {
        assert_eq!(e["attempts"], 1, "{e}");
    }
}
