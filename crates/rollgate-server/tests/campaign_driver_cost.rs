//! What one campaign driver tick costs on a large fleet: a measurement, not a check (it asserts
//! only that the driver did its work), ignored by default because it takes a minute to set up.
//!
//! ```sh
//! cargo test --release -p rollgate-server --test campaign_driver_cost -- --ignored --nocapture
//! ROLLGATE_COST_ENDPOINTS=100000 cargo test --release -p rollgate-server --test campaign_driver_cost -- --ignored --nocapture
//! ```
//!
//! A SQLite store holds N enrolled endpoints (all seen a moment ago) and one campaign month
//! whose running step deploys one package to all of them through one Upgrade Set; the driver
//! then ticks as it does every `--campaign-tick-ms`: it reads the month, the step's run, the
//! set and its N members, the endpoints' last-seen times and the patch-health reports, tallies
//! and judges the gate. Printed: the set-up time and each tick's duration.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use rollgate_core::campaign::month::{step_plans, Month, MonthEvent};
use rollgate_core::campaign::schedule::YearMonth;
use rollgate_pki::Ca;
use rollgate_server::packages::PackageStore;
use rollgate_server::{AppState, ServerConfig};
use rollgate_store::{EndpointRecord, MonthRow, NewSet, PackageRecord, SqlStore, StepRunRow, Store, TransitionRow};
use tokio::sync::Notify;

const CAMPAIGN: &str = r#"
name = "cost"
time_zone = "UTC"
patch_tuesday_offset_days = 0
start_time = "00:00"
first_month_lookback_days = 30
[[steps]]
name = "everyone"
targets = "all"
max_in_flight = 1000
soak = "1d"
progression = "auto"
[steps.acceptance]
min_sample = 10
min_success_rate = 0.9
"#;

fn endpoint(i: usize, now: Timestamp) -> EndpointRecord {
    EndpointRecord {
        id: format!("ep-{i:07}"),
        hostname: format!("host-{i:07}"),
        os: "linux".into(),
        os_id: Some("debian".into()),
        os_version: Some("12".into()),
        labels: BTreeMap::from([("site".to_string(), format!("site-{}", i % 20))]),
        products: BTreeMap::from([("tool".to_string(), "1.0".to_string())]),
        cert_fingerprint: format!("{i:064x}"),
        public_key_sha256: None,
        enrolled_at: now,
        last_seen: Some(now),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture, in release"]
async fn one_driver_tick_on_a_large_fleet() {
    let n: usize = std::env::var("ROLLGATE_COST_ENDPOINTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqlStore::open_sqlite(&dir.path().join("rollgate.db")).await.unwrap());
    let now = Timestamp::from_millisecond(Timestamp::now().as_millisecond()).unwrap();
    let started = Instant::now();

    let endpoints: Vec<EndpointRecord> = (0..n).map(|i| endpoint(i, now)).collect();
    for chunk in endpoints.chunks(5_000) {
        store.enroll_batch(chunk).await.unwrap();
    }
    let seen: Vec<(String, Timestamp)> = endpoints.iter().map(|e| (e.id.clone(), now)).collect();
    store.touch_endpoints(&seen).await.unwrap();
    let package = PackageRecord {
        product: "tool".into(),
        version: "2.0".into(),
        module: "files".into(),
        sha256: "0".repeat(64),
        size: 1,
        min_from: None,
        created_at: now,
    };
    store.insert_package(&package).await.unwrap();

    // A month started now, its step planned for every endpoint, its one set created.
    store.put_campaign("cost", CAMPAIGN, now).await.unwrap();
    let valid = rollgate_server::campaign_months::parse(CAMPAIGN).unwrap();
    let mut month = Month::new(YearMonth::new(2026, 12).unwrap(), now, step_plans(&valid)).unwrap();
    let t = month.apply(now, MonthEvent::StartEarly).unwrap();
    let row = MonthRow {
        campaign: "cost".into(),
        month: "2026-12".into(),
        state: "active".into(),
        snapshot: serde_json::to_string(&month.snapshot()).unwrap(),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    let first = TransitionRow { at: now, from: "created".into(), to: "active".into(), step: 0, reason: t.reason };
    store.create_month(&row, &first).await.unwrap();
    let ids: Vec<String> = endpoints.iter().map(|e| e.id.clone()).collect();
    let plan = serde_json::json!({"deployments": [{"product": "tool", "version": "2.0", "endpoints": ids}], "needs_package": []});
    let run = StepRunRow { step: 0, run: 1, started_at: now, plan: plan.to_string(), sets: Vec::new() };
    store.start_step_run("cost", "2026-12", &run).await.unwrap();
    let set = NewSet {
        name: "cost.202612.s0.r1.p0".into(),
        product: "tool".into(),
        version: "2.0".into(),
        selector: "campaign cost".into(),
        max_in_flight: 1000,
        max_attempts: 3,
        start_at: None,
        window: None,
        seed: 1,
        backoff_secs: 30,
        stuck_timeout_secs: 900,
        step_timeout_secs: 600,
        watch_secs: 86_400,
    };
    let members: Vec<(String, u32)> = ids.iter().cloned().zip(0u32..).collect();
    store.create_campaign_set("cost", "2026-12", (0, 1, 0), &set, &members, now).await.unwrap();
    println!("cost: set-up of {n} endpoints took {:.1} s", started.elapsed().as_secs_f64());

    let config = ServerConfig::new(dir.path().to_path_buf(), "127.0.0.1:0".parse().unwrap());
    let tuf = rollgate_server::tuf::Tuf::open(&config.tuf_dir(), None).unwrap();
    let hot = rollgate_server::hot::Hot::load(store.clone()).await.unwrap();
    let state = AppState {
        store: store.clone(),
        ca: Arc::new(Ca::generate("cost CA").unwrap()),
        admin_token_sha256: "unused".into(),
        packages: Arc::new(PackageStore::open(&dir.path().join("packages")).unwrap()),
        config: Arc::new(config),
        hot,
        wake_scheduler: Arc::new(Notify::new()),
        replica_id: "cost".into(),
        tuf: Arc::new(tuf),
        notifier: rollgate_server::notify::Notifier::new(None).unwrap(),
        campaigns: Default::default(),
    };
    let timed = Instant::now();
    let listed = store.list_endpoints().await.unwrap().len();
    let list_ms = timed.elapsed().as_secs_f64() * 1000.0;
    let timed = Instant::now();
    let set_id = store.step_runs("cost", "2026-12").await.unwrap()[0].sets[0].1;
    let members = store.set_members(set_id).await.unwrap().len();
    let members_ms = timed.elapsed().as_secs_f64() * 1000.0;
    println!("cost: list_endpoints ({listed}) {list_ms:.0} ms, set_members ({members}) {members_ms:.0} ms");
    let mut ticks_ms = Vec::new();
    for _ in 0..5 {
        let tick = Instant::now();
        state.campaigns.tick(&state, Timestamp::now()).await;
        ticks_ms.push(tick.elapsed().as_secs_f64() * 1000.0);
    }
    println!("cost: {n} endpoints, one step, one set of {n} members: driver ticks {ticks_ms:.0?} ms");
    // The tick did its work: the month still runs its step (soaking a day), the next month is
    // not created early, and nothing failed.
    let months = store.campaign_months("cost").await.unwrap();
    assert_eq!(months.len(), 1, "{months:?}");
    assert_eq!(months[0].state, "active");
}
