//! End to end: three server replicas on one PostgreSQL database serve one fleet. Any replica
//! answers any agent or operator; the set's limit holds across replicas while one replica is
//! killed and another restarted mid-rollout; no report is lost or counted twice.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::Value;

#[test]
fn three_replicas_serve_one_fleet_while_one_dies_and_another_restarts() {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        println!("e2e cluster: SKIPPED: DATABASE_URL is not set (CI sets it)");
        return;
    };
    let schema = Arc::new(PgSchema::new(&url));
    let shared = tempfile::tempdir().unwrap();
    // The key every replica is given; in production a file from the operator's secret store.
    std::fs::write(shared.path().join("secret.key"), format!("{}\n", "5a".repeat(32))).unwrap();
    let mut replicas: Vec<Server> = (0..3).map(|_| Server::replica(&schema, shared.path())).collect();

    // One installation: the same CA and admin token on every replica.
    let ca = std::fs::read_to_string(replicas[0].ca()).unwrap();
    let token_file = std::fs::read_to_string(replicas[0].data().join("admin.token")).unwrap();
    for r in &replicas[1..] {
        assert_eq!(std::fs::read_to_string(r.ca()).unwrap(), ca);
        assert_eq!(std::fs::read_to_string(r.data().join("admin.token")).unwrap(), token_file);
    }
    // The CA's key is not in any data directory, and the database holds it sealed only.
    for r in &replicas {
        assert!(!r.data().join("ca-key.pem").exists());
    }

    let token = replicas[2].token(12);
    let urls: Vec<String> = replicas.iter().map(Server::url).collect();
    let agents: Vec<Agent> = (0..12)
        .map(|i| {
            // Each agent prefers a different replica and fails over to the others in turn.
            let order = [urls[i % 3].as_str(), urls[(i + 1) % 3].as_str(), urls[(i + 2) % 3].as_str()].join(",");
            replicas[i % 3].agent_via(&format!("host-{i:02}"), &token, &order)
        })
        .collect();
    let endpoints = replicas[2].wait_endpoints(12);
    let ids: Vec<String> = endpoints.iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();

    // Bytes uploaded through one replica are served by all of them.
    let pkg = sample_package(shared.path(), "1.0.0", 1.0, false);
    replicas[0].add_package(&pkg, "sample", "1.0.0", &[]);
    replicas[1].json(&[
        "sets",
        "create",
        "--name",
        "fleet",
        "--product",
        "sample",
        "--version",
        "1.0.0",
        "--max-in-flight",
        "3",
    ]);

    let counts = |r: &Server| -> Value { r.json(&["sets", "show", "fleet"])["counts"].clone() };
    wait_for("the rollout to be under way", Duration::from_secs(60), || {
        counts(&replicas[2])["succeeded"].as_u64().unwrap() >= 2
    });
    replicas[0].kill();
    println!("killed replica 0 at {}", counts(&replicas[2]));
    wait_for("more endpoints to finish", Duration::from_secs(60), || {
        counts(&replicas[2])["succeeded"].as_u64().unwrap() >= 6
    });
    replicas[1].kill();
    replicas[1].spawn();
    println!("restarted replica 1 at {}", counts(&replicas[1]));

    let set = replicas[1].wait_set("fleet", Duration::from_secs(180));
    assert_eq!(set["counts"]["succeeded"], 12, "{set:#}");
    let peak = peak_in_flight(&replicas[2], "fleet", &ids);
    assert!(peak <= 3, "attempts overlapped {peak} at a time across replicas; limit 3");
    assert!(peak >= 2, "the rollout ran in parallel (peak {peak})");
    for id in &ids {
        let detail = replicas[2].json(&["endpoints", "show", id]);
        let attempts: Vec<&Value> =
            detail["history"].as_array().unwrap().iter().filter(|a| a["set"] == "fleet").collect();
        assert_eq!(attempts.len(), 1, "one attempt, recorded once, for {id}: {attempts:#?}");
        assert_eq!(attempts[0]["outcome"], "succeeded");
        assert_eq!(detail["products"]["sample"], "1.0.0");
    }
    // Agents that preferred the dead replica moved on to the others.
    let moved = agents.iter().filter(|a| a.log().contains("switching to server")).count();
    assert!(moved >= 1, "some agent failed over");
    // Exactly one replica runs the scheduler at a time; the lease passed on when its holder died.
    let took: Vec<usize> = replicas.iter().map(|r| r.log().matches("took the scheduler lease").count()).collect();
    println!("scheduler lease taken per replica: {took:?}");
    assert!(took.iter().sum::<usize>() >= 1);
    if took[0] > 0 {
        // Replica 0 led and was killed: the set still finished, so another replica took over.
        assert!(took[1] + took[2] >= 1, "the lease passed on after its holder died: {took:?}");
    }
    drop(agents);
}

#[test]
fn a_held_poll_on_one_replica_wakes_when_another_replica_releases_its_endpoint() {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        println!("e2e cluster: SKIPPED: DATABASE_URL is not set (CI sets it)");
        return;
    };
    let schema = Arc::new(PgSchema::new(&url));
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join("secret.key"), format!("{}\n", "a5".repeat(32))).unwrap();
    // Polls are held for two minutes: work can reach the agent sooner only if the replica
    // holding its poll hears of the release made by the other one.
    let start = |schema: &Arc<PgSchema>| {
        let mut r = Server::replica(schema, shared.path());
        r.args.extend(["--long-poll-max-secs".to_string(), "120".to_string()]);
        r.kill();
        r.spawn();
        r
    };
    let leader = start(&schema);
    wait_for("the first replica to take the scheduler lease", Duration::from_secs(30), || {
        leader.log().contains("took the scheduler lease")
    });
    let follower = start(&schema);
    let token = follower.token(1);
    let mut agent = follower.agent_via("host-0", &token, &follower.url());
    agent.extra = vec!["--poll-interval".into(), "120".into()];
    agent.proc = None;
    agent.spawn();
    follower.wait_endpoints(1);
    let pkg = sample_package(shared.path(), "1.0.0", 0.0, false);
    leader.add_package(&pkg, "sample", "1.0.0", &[]);
    // Let the agent settle into a held poll on the follower, which never runs the scheduler.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!follower.log().contains("took the scheduler lease"));
    leader.json(&["sets", "create", "--name", "wake", "--product", "sample", "--version", "1.0.0"]);
    let set = follower.wait_set("wake", Duration::from_secs(60));
    assert_eq!(set["counts"]["succeeded"], 1, "{set:#}");
}
