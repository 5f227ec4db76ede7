//! The load harness in its small mode, so that it cannot rot: every figure of issue 4 measured at
//! toy sizes against this build's `rollgate` (and nginx, and PostgreSQL replicas, where the
//! machine has them; `.ci/run` provides both). Correctness only: no figure's speed is asserted
//! here (speed is measured by `bench/run`, never in tests on shared machines).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_harness_measures_every_figure_in_small_mode() {
    let nginx = rollgate_bench::nginx::find(None).ok();
    if nginx.is_none() {
        println!("nginx SKIPPED: not installed (`.ci/run` installs it); measuring Rollgate alone");
    }
    let postgres = std::env::var("DATABASE_URL").ok();
    if postgres.is_none() {
        println!("PostgreSQL SKIPPED: DATABASE_URL is not set; the replica figures are not run");
    }
    let setup = rollgate_bench::Setup {
        rollgate: env!("CARGO_BIN_EXE_rollgate").into(),
        nginx: nginx.clone(),
        sqlite: true,
        postgres: postgres.clone(),
        figures: vec![1, 2, 3, 4, 5, 6, 7],
    };
    let plan = rollgate_bench::Plan::small();
    let results = rollgate_bench::run(&setup, &plan).await.expect("the harness runs");
    println!("{}", serde_json::to_string_pretty(&results).unwrap());
    assert!(results.failures.is_empty(), "{:?}", results.failures);

    let expected_targets = if nginx.is_some() { 3 } else { 1 };
    assert_eq!(results.backends.len(), if postgres.is_some() { 2 } else { 1 });
    for backend in &results.backends {
        let kept = backend.kept_alive.as_ref().expect("figure 1 ran");
        assert_eq!(kept.runs.len(), expected_targets);
        for run in &kept.runs {
            assert_eq!(run.errors, 0, "{run:?}");
            assert!(run.checkins > 0, "{run:?}");
            assert!(run.tls.contains("TLSv1_3"), "both servers speak TLS 1.3 with the same client: {run:?}");
            // "Nothing new" is a 304 for every check-in after a connection's first.
            assert!(run.not_modified + u64::from(plan.connections) >= run.checkins, "{run:?}");
        }
        assert_eq!(backend.fleets.len(), plan.fleet_sizes.len());
        for (fleet, size) in backend.fleets.iter().zip(&plan.fleet_sizes) {
            assert_eq!(fleet.endpoints, *size);
            assert_eq!(fleet.steady.errors, 0, "{fleet:?}");
            assert!(fleet.steady.checkins > 0);
            // The steady load reconnects for each check-in: after the sweep every one resumes.
            assert_eq!(fleet.steady.resumed, fleet.steady.handshakes, "{fleet:?}");
            assert!(fleet.rss_idle_kib > 0 && fleet.rss_empty_kib > 0);
        }
        let sweep = backend.fleets[0].sweep.as_ref().expect("the first fleet is swept");
        assert_eq!(sweep.checkins, u64::from(plan.fleet_sizes[0]), "every virtual agent checked in once");
    }
    let sqlite = &results.backends[0];
    let fresh = sqlite.new_connections.as_ref().expect("figure 2 ran");
    for run in &fresh.runs {
        assert_eq!(run.errors, 0, "{run:?}");
        assert!(run.handshakes > u64::from(plan.connections), "{run:?}");
        // A virtual agent's first handshake is full; every later one resumes its session.
        assert!(run.resumed + u64::from(plan.connections) >= run.handshakes, "sessions resume: {run:?}");
    }
    let handoff = results.handoff.as_ref().expect("figure 5 ran");
    assert_eq!(handoff.installs, u64::from(plan.handoff.endpoints));
    assert!(handoff.most_in_flight <= u64::from(plan.handoff.max_in_flight), "{handoff:?}");
    let downloads = results.downloads.as_ref().expect("figure 6 ran");
    assert_eq!(downloads.runs.len(), if nginx.is_some() { 2 } else { 1 });
    assert!(downloads.runs.iter().all(|r| r.errors == 0), "{downloads:?}");
    let agent = results.agent.as_ref().expect("figure 7 ran");
    assert!(agent.rss_mib > 0.0);
}
