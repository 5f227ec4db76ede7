//! End to end: the agent upgrades itself (swap, start the new binary, hand over), and restores
//! itself when the new binary never checks in.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

#[test]
fn agent_upgrades_itself_and_restores_itself_when_the_new_binary_fails() {
    for backend in backends() {
        agent_upgrades_itself_and_restores_itself_when_the_new_binary_fails_on(&backend);
    }
}

fn agent_upgrades_itself_and_restores_itself_when_the_new_binary_fails_on(backend: &Backend) {
    let server = Server::start_on(backend);
    let token = server.token(3);
    let mut good = server.agent("host-good", &token, &[]);
    let mut bad = server.agent("host-bad", &token, &[]);
    let mut hung = server.agent("host-hung", &token, &[]);
    hung.extra = vec!["--self-upgrade-grace".into(), "3".into()];
    hung.proc = None;
    hung.spawn();
    let endpoints = server.wait_endpoints(3);
    let id = |host: &str| endpoints.iter().find(|e| e["hostname"] == host).unwrap()["id"].as_str().unwrap().to_string();
    let original = endpoints[0]["products"]["rollgate-agent"].as_str().unwrap().to_string();

    // A real new agent: this very binary, shipped as a plain (uncompressed) tar.
    let new_agent = server.dir.path().join("agent-9.9.9.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&new_agent).unwrap());
    tar.append_path_with_name(EXE, "rollgate").unwrap();
    tar.into_inner().unwrap();
    server.add_package(&new_agent, "rollgate-agent", "9.9.9", &[]);
    // A broken new agent: it exits at once and never checks in.
    let broken = server.dir.path().join("agent-9.9.10.tar.gz");
    tar_gz(&broken, &[("rollgate", 0o755, b"#!/bin/sh\necho 'broken agent' >&2\nexit 3\n")]);
    server.add_package(&broken, "rollgate-agent", "9.9.10", &[]);
    // A new agent that starts but never checks in.
    let stuck = server.dir.path().join("agent-9.9.11.tar.gz");
    tar_gz(&stuck, &[("rollgate", 0o755, b"#!/bin/sh\necho $$ > \"$0.pid\"\nexec sleep 600\n")]);
    server.add_package(&stuck, "rollgate-agent", "9.9.11", &[]);

    let old_pid = good.pid().unwrap();
    let bad_pid = bad.pid().unwrap();
    let good_id = id("host-good");
    server.json(&[
        "sets",
        "create",
        "--name",
        "agent-up",
        "--product",
        "rollgate-agent",
        "--version",
        "9.9.9",
        "--target",
        &good_id,
        "--max-attempts",
        "1",
    ]);
    let bad_id = id("host-bad");
    server.json(&[
        "sets",
        "create",
        "--name",
        "agent-broken",
        "--product",
        "rollgate-agent",
        "--version",
        "9.9.10",
        "--target",
        &bad_id,
        "--max-attempts",
        "2",
        "--backoff",
        "1",
    ]);

    let hung_id = id("host-hung");
    let hung_pid = hung.pid().unwrap();
    server.json(&[
        "sets",
        "create",
        "--name",
        "agent-hung",
        "--product",
        "rollgate-agent",
        "--version",
        "9.9.11",
        "--target",
        &hung_id,
        "--max-attempts",
        "1",
    ]);

    let up = server.wait_set("agent-up", Duration::from_secs(90));
    assert_eq!(up["counts"]["succeeded"], 1, "{up:#}\n{}", good.log());
    wait_for("the old agent to exit", Duration::from_secs(30), || {
        good.proc.as_mut().unwrap().0.try_wait().unwrap().is_some()
    });
    let new_pid = good.pid().unwrap();
    assert_ne!(new_pid, old_pid, "a new process runs the agent");
    assert!(alive(new_pid));
    assert_eq!(good.current("rollgate-agent").as_deref(), Some("9.9.9"));
    let exe = std::fs::read_link(format!("/proc/{new_pid}/exe")).unwrap();
    assert!(exe.ends_with("products/rollgate-agent/versions/9.9.9/rollgate"), "new agent runs {}", exe.display());
    wait_for("the new agent to report its version", Duration::from_secs(30), || {
        server.json(&["endpoints", "show", &good_id])["products"]["rollgate-agent"] == "9.9.9"
    });

    let failed = server.wait_set("agent-broken", Duration::from_secs(90));
    assert_eq!(failed["counts"]["rolled_back"], 1, "{failed:#}\n{}", bad.log());
    let reason = failed["endpoints"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("exited with"), "{reason}");
    assert!(bad.proc.as_mut().unwrap().0.try_wait().unwrap().is_none(), "the old agent kept running");
    assert_eq!(bad.pid(), Some(bad_pid));
    assert_eq!(bad.current("rollgate-agent"), None, "current points back at the running binary (none was installed)");
    let detail = server.json(&["endpoints", "show", &bad_id]);
    assert_eq!(detail["products"]["rollgate-agent"], original.as_str());
    let history = detail["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1]["outcome"], "rolled_back");
    // And it still works: it keeps checking in.
    let seen = detail["last_seen"].as_str().unwrap().to_string();
    wait_for("the restored agent to check in again", Duration::from_secs(30), || {
        server.json(&["endpoints", "show", &bad_id])["last_seen"].as_str().unwrap() > seen.as_str()
    });

    // The silent new agent is given its grace period, then killed, and the old one carries on.
    let silent = server.wait_set("agent-hung", Duration::from_secs(90));
    assert_eq!(silent["counts"]["rolled_back"], 1, "{silent:#}\n{}", hung.log());
    let reason = silent["endpoints"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("did not check in within 3 s"), "{reason}");
    assert_eq!(hung.pid(), Some(hung_pid));
    assert!(hung.proc.as_mut().unwrap().0.try_wait().unwrap().is_none(), "the old agent kept running");
    let pid_file = hung.state.join("products/rollgate-agent/versions/9.9.11/rollgate.pid");
    let stuck_pid: i32 =
        std::fs::read_to_string(&pid_file).expect("the silent agent wrote its pid").trim().parse().unwrap();
    assert!(!alive(stuck_pid), "the silent new agent was killed");
    drop((good, bad, hung));
}
