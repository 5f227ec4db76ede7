//! The watch of a patched product (`rollgate_agent::watch`) against real packages and real
//! processes: each product is installed from a real archive by the install module, its health
//! program is a real `#!/bin/sh` script that counts its runs in a file of an `OUT` directory
//! passed through the environment, and the watch's reports are read from its channel. The
//! sending of reports is checked against a real TLS listener on loopback answering scripted
//! HTTP/1.1 responses.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rollgate_agent::client::Client;
use rollgate_agent::install::{self, InstallRequest, Module};
use rollgate_agent::state::StateDir;
use rollgate_agent::watch::{
    forward_reports, send_patch_health, Delivery, SendPolicy, WatchRequest, Watcher, REPORT_QUEUE_LEN,
};
use rollgate_wire::PatchHealth;
use tokio::sync::mpsc;
use tokio::time::Instant;

const PRODUCT: &str = "app";
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a test waits for its watches to end before it fails.
const TEST_LIMIT: Duration = Duration::from_secs(60);

/// A health program that passes its first `passing_runs` runs (the install's own check is the
/// first), then prints "worker crashed" and exits with status 3.
fn health_failing_after(passing_runs: u32) -> String {
    format!(
        r#"n=$(cat "$OUT/runs" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "$OUT/runs"
if [ "$n" -le {passing_runs} ]; then echo "run $n: all workers up"; exit 0; fi
echo "run $n: worker crashed" >&2
exit 3"#
    )
}

/// A health program that always passes and counts its runs.
const HEALTH_ALWAYS_PASSING: &str = r#"n=$(cat "$OUT/runs" 2>/dev/null || echo 0)
echo "$((n + 1))" > "$OUT/runs"
echo "all workers up""#;

/// One endpoint's state directory and the `OUT` directory its package programs write to.
struct Endpoint {
    _dir: tempfile::TempDir,
    state: StateDir,
    out: PathBuf,
}

impl Endpoint {
    fn new() -> Endpoint {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("state")).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        Endpoint { _dir: dir, state, out }
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![("OUT".to_string(), self.out.display().to_string())]
    }

    /// How many times a health program ran.
    fn health_runs(&self) -> u32 {
        std::fs::read_to_string(self.out.join("runs")).map_or(0, |n| n.trim().parse().unwrap())
    }

    /// Installs `version` from a real archive of `scripts` (name, body) through the install
    /// module, and records it as installed, as the job does on success.
    async fn install(&self, module: Module, version: &str, scripts: &[(&str, &str)]) {
        let archive = self.out.join(format!("{version}.tar"));
        std::fs::write(&archive, tar_of_scripts(scripts)).unwrap();
        let env = self.env();
        let request = InstallRequest {
            products_dir: &self.state.products(),
            product: PRODUCT,
            version,
            from_version: None,
            module,
            archive: &archive,
            env: &env,
            step_timeout: STEP_TIMEOUT,
        };
        install::install(&request).await.unwrap();
        self.state.set_installed(PRODUCT, Some(version)).unwrap();
    }

    fn watch(&self, set_id: i64, module: Module, version: &str, watch_secs: u64) -> WatchRequest {
        WatchRequest {
            set_id,
            product: PRODUCT.to_string(),
            version: version.to_string(),
            from_version: None,
            module,
            watch_secs,
            step_timeout: STEP_TIMEOUT,
            env: self.env(),
        }
    }
}

/// A plain tar archive of `#!/bin/sh` scripts with mode 0755.
fn tar_of_scripts(scripts: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, body) in scripts {
        let data = format!("#!/bin/sh\n{body}\n");
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o755);
        header.set_size(data.len() as u64);
        header.set_mtime(1_700_000_000);
        builder.append_data(&mut header, name, data.as_bytes()).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Every report of the watches `watcher` started, with when each arrived since `since`, once
/// they have all ended: the watcher is dropped, so the channel closes with the last watch.
async fn reports_until_all_ended(
    watcher: Watcher,
    mut reports: mpsc::Receiver<PatchHealth>,
    since: Instant,
) -> Vec<(PatchHealth, Duration)> {
    drop(watcher);
    let mut received = Vec::new();
    while let Some(health) = tokio::time::timeout(TEST_LIMIT, reports.recv()).await.expect("the watches end") {
        received.push((health, since.elapsed()));
    }
    received
}

fn watcher(endpoint: &Endpoint) -> (Watcher, mpsc::Receiver<PatchHealth>) {
    let (sender, receiver) = mpsc::channel(REPORT_QUEUE_LEN);
    (Watcher::new(endpoint.state.clone(), sender), receiver)
}

#[tokio::test]
async fn a_product_whose_health_check_starts_failing_is_reported_unhealthy_at_once() {
    let endpoint = Endpoint::new();
    // Run 1 is the install's own check, run 2 the watch's first; run 3 crashes.
    let health = health_failing_after(2);
    endpoint.install(Module::Files, "2.0", &[("rollgate-health", &health)]).await;
    let (watcher, reports) = watcher(&endpoint);
    let watch_secs = 10;

    let started = Instant::now();
    watcher.start(endpoint.watch(7, Module::Files, "2.0", watch_secs));
    let received = reports_until_all_ended(watcher, reports, started).await;

    assert_eq!(received.len(), 1, "{received:?}");
    let (health, after) = &received[0];
    assert_eq!((health.set_id, health.version.as_str(), health.healthy), (7, "2.0", false));
    let reason = health.reason.as_deref().unwrap();
    for part in ["`rollgate-health` of app 2.0", "exited with status 3", "worker crashed"] {
        assert!(reason.contains(part), "{part:?} not in {reason:?}");
    }
    // Two checks, a second apart (a tenth of the watch), then the report: long before its end.
    assert!(*after >= Duration::from_secs(2), "reported after {after:?}");
    assert!(*after < Duration::from_secs(watch_secs / 2), "reported after {after:?}");
    assert_eq!(endpoint.health_runs(), 3, "the watch stops checking after the first failure");
    health.at.parse::<jiff::Timestamp>().unwrap();
}

#[tokio::test]
async fn a_product_that_stays_healthy_is_reported_healthy_once_at_the_end_of_the_watch() {
    let endpoint = Endpoint::new();
    let scripts = [("install", "exit 0"), ("health", HEALTH_ALWAYS_PASSING)];
    endpoint.install(Module::Script, "3.1", &scripts).await;
    let (watcher, reports) = watcher(&endpoint);
    let watch_secs = 2;

    let started = Instant::now();
    watcher.start(endpoint.watch(8, Module::Script, "3.1", watch_secs));
    let received = reports_until_all_ended(watcher, reports, started).await;

    assert_eq!(received.len(), 1, "{received:?}");
    let (health, after) = &received[0];
    assert_eq!((health.set_id, health.version.as_str(), health.healthy), (8, "3.1", true));
    assert_eq!(health.reason, None);
    assert!(*after >= Duration::from_secs(watch_secs), "reported after {after:?}");
    assert!(*after < Duration::from_secs(watch_secs + 5), "reported after {after:?}");
    // The install's check, then one a second for two seconds.
    assert_eq!(endpoint.health_runs(), 3);
}

#[tokio::test]
async fn a_product_without_a_health_program_is_not_watched_and_nothing_is_reported() {
    let endpoint = Endpoint::new();
    endpoint.install(Module::Files, "1.0", &[("bin", "echo serving")]).await;
    let (watcher, reports) = watcher(&endpoint);

    let started = Instant::now();
    watcher.start(endpoint.watch(9, Module::Files, "1.0", 30));
    let received = reports_until_all_ended(watcher, reports, started).await;

    assert!(received.is_empty(), "{received:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "a watch without a program must end at once");
}

#[tokio::test]
async fn a_new_install_of_the_product_ends_the_earlier_watch_without_a_report() {
    let endpoint = Endpoint::new();
    endpoint.install(Module::Files, "1.0", &[("rollgate-health", HEALTH_ALWAYS_PASSING)]).await;
    let (watcher, reports) = watcher(&endpoint);
    let started = Instant::now();
    watcher.start(endpoint.watch(1, Module::Files, "1.0", 30));

    // As the job does: the watch ends before the next install changes the product.
    assert!(watcher.cancel(PRODUCT));
    assert!(!watcher.cancel(PRODUCT), "only one watch per product");
    endpoint.install(Module::Files, "2.0", &[("rollgate-health", HEALTH_ALWAYS_PASSING)]).await;
    watcher.start(endpoint.watch(2, Module::Files, "2.0", 2));
    // Starting a watch also ends the product's earlier one.
    watcher.start(endpoint.watch(3, Module::Files, "2.0", 2));
    let received = reports_until_all_ended(watcher, reports, started).await;

    let sets: Vec<(i64, bool)> = received.iter().map(|(h, _)| (h.set_id, h.healthy)).collect();
    assert_eq!(sets, [(3, true)]);
}

#[tokio::test]
async fn a_watch_ends_without_a_report_once_another_version_is_current() {
    let endpoint = Endpoint::new();
    endpoint.install(Module::Files, "1.0", &[("rollgate-health", HEALTH_ALWAYS_PASSING)]).await;
    endpoint.install(Module::Files, "2.0", &[("rollgate-health", HEALTH_ALWAYS_PASSING)]).await;
    let (watcher, reports) = watcher(&endpoint);

    let started = Instant::now();
    watcher.start(endpoint.watch(4, Module::Files, "2.0", 30));
    // Someone else (an operator, another tool) points the product back at 1.0.
    install::switch_current(&endpoint.state.products(), PRODUCT, Some("1.0")).unwrap();
    let received = reports_until_all_ended(watcher, reports, started).await;

    assert!(received.is_empty(), "{received:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "the watch ends at its first check");
    assert_eq!(endpoint.health_runs(), 2, "only the two installs ran a health check");
}

// ---------------------------------------------------------------- sending reports

/// A scripted server (see `common`) and a client of it.
async fn scripted_server(ca: &rollgate_pki::Ca, answers: Vec<(u16, &'static str)>) -> (Client, common::Requests) {
    let (addr, requests) = common::scripted_server(ca, answers).await;
    (Client::anonymous(vec![format!("https://{addr}")], ca.cert_pem()).unwrap(), requests)
}

/// The requests received so far, decoded as patch-health reports.
fn decoded(requests: &common::Requests) -> Vec<(String, PatchHealth)> {
    let requests = requests.lock().unwrap();
    requests.iter().map(|(path, body)| (path.clone(), serde_json::from_slice(body).unwrap())).collect()
}

const NOT_A_MEMBER: &str = r#"{"error":{"code":"not_a_member","message":"endpoint did not install app@2.0"}}"#;

fn quick_policy(max_tries: u32) -> SendPolicy {
    SendPolicy { max_tries, backoff_initial: Duration::from_millis(10), backoff_max: Duration::from_millis(40) }
}

fn crashed() -> PatchHealth {
    PatchHealth {
        set_id: 7,
        version: "2.0".into(),
        healthy: false,
        reason: Some("`rollgate-health` of app 2.0: exited with status 3; output: worker crashed".into()),
        at: "2025-01-01T00:00:00Z".into(),
    }
}

#[tokio::test]
async fn reports_are_retried_on_server_errors_and_not_on_refusals() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = rollgate_pki::Ca::generate("test CA").unwrap();
    let report = crashed();
    let sent = |received: &common::Requests| received.lock().unwrap().len();

    let (client, received) = scripted_server(&ca, vec![(503, ""), (500, r#"{"error":"down"}"#), (204, "")]).await;
    assert_eq!(send_patch_health(&client, &report, quick_policy(5)).await, Delivery::Recorded);
    assert_eq!(sent(&received), 3);

    let (client, received) = scripted_server(&ca, vec![(409, NOT_A_MEMBER), (204, "")]).await;
    assert_eq!(send_patch_health(&client, &report, quick_policy(5)).await, Delivery::Refused);
    assert_eq!(sent(&received), 1);

    let (client, received) = scripted_server(&ca, vec![]).await;
    assert_eq!(send_patch_health(&client, &report, quick_policy(3)).await, Delivery::GaveUp);
    assert_eq!(sent(&received), 3);
}

#[tokio::test]
async fn forwarded_reports_are_posted_to_the_patch_health_route() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = rollgate_pki::Ca::generate("test CA").unwrap();
    let (client, received) = scripted_server(&ca, vec![(204, ""), (204, "")]).await;
    let healthy = PatchHealth { set_id: 8, version: "3.1".into(), healthy: true, reason: None, at: crashed().at };
    let (sender, to_send) = mpsc::channel(REPORT_QUEUE_LEN);
    sender.send(crashed()).await.unwrap();
    sender.send(healthy.clone()).await.unwrap();
    drop(sender);

    forward_reports(Arc::new(client), to_send, quick_policy(3)).await;

    let expected = [("/v1/agent/patch-health".to_string(), crashed()), ("/v1/agent/patch-health".to_string(), healthy)];
    assert_eq!(decoded(&received), expected);
}
