//! The load harness in its small mode, so that it cannot rot: a real server, batch-enrolled
//! identities, and check-ins over kept-alive mutual-TLS connections. Correctness only; speed
//! is measured by `cargo run --release -p rollgate-bench`, never asserted in tests.

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_harness_runs_in_small_mode() {
    let bench = rollgate_bench::CheckinBench {
        rollgate: env!("CARGO_BIN_EXE_rollgate").into(),
        endpoints: 50,
        connections: 4,
        duration: Duration::from_secs(2),
    };
    let result = rollgate_bench::checkins(&bench).await.expect("the harness runs");
    println!("{result:?}");
    assert_eq!(result.endpoints, 50);
    assert_eq!(result.unexpected, 0, "every check-in with nothing new is a 304");
    assert!(result.checkins > 0);
    assert!(result.p50_ms <= result.p99_ms);
}
