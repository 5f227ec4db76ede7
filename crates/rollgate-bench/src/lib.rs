//! Rollgate's load harness (issue 4): many virtual agents in one process, each a real enrolled
//! endpoint with its own client certificate, speaking the agent protocol over real mutual TLS
//! to real `rollgate server` processes, side by side with Debian's nginx serving the same bytes
//! on the same machine, driven by the same load generator in the same run.
//!
//! The figures (numbered as in the issue):
//! 1. check-ins per second on kept-alive connections, Rollgate ÷ nginx;
//! 2. check-ins per second with a new mutual-TLS connection each (sessions resumed), Rollgate ÷
//!    nginx verifying client certificates;
//! 3. latency at a steady 3,400 check-ins per second;
//! 4. server memory with 100,000 and 1,000,000 endpoints, idle and under the load of 3;
//! 5. slot hand-off time ÷ the ideal;
//! 6. concurrent downloads of a large package, Rollgate ÷ nginx, with the server's memory;
//! 7. the agent's idle memory and CPU, and the binary's size.
//!
//! 1, 3 and 4 run on SQLite and, given a PostgreSQL URL, on two replicas sharing PostgreSQL.
//! [`Plan::small`] is the same run at toy sizes, for CI: it checks that every figure can still
//! be measured and that nothing failed, never how fast.

pub mod agent_idle;
pub mod agents;
pub mod download;
pub mod handoff;
pub mod load;
pub mod nginx;
pub mod proc;
pub mod server;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::load::{Run, Target};
use crate::server::{Backend, Cluster, ServerFlags, SharedKey};

/// Sizes and durations of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// `full` or `small`.
    pub mode: &'static str,
    /// Connections for figures 1 and 2 (the same for Rollgate and nginx).
    pub connections: u32,
    /// Seconds each target is driven per round in figures 1 and 2.
    pub round_secs: u64,
    /// Rounds alternating between the targets.
    pub rounds: u32,
    /// Figure 3's rate.
    pub steady_per_sec: u32,
    /// Figure 3's duration, seconds.
    pub steady_secs: u64,
    /// Figure 4's fleet sizes (ascending); the first is also the number of distinct virtual
    /// agents figure 3 cycles through.
    pub fleet_sizes: Vec<u32>,
    /// Figure 5.
    pub handoff: handoff::Handoff,
    /// Figure 6: concurrent downloads.
    pub downloads: u32,
    /// Figure 6: package size in bytes.
    pub download_bytes: u64,
    /// Figure 7: seconds the idle agent is watched.
    pub agent_watch_secs: u64,
    /// Server replicas on PostgreSQL.
    pub pg_replicas: usize,
}

impl Plan {
    /// The sizes the issue asks for; about ten minutes on a 2-core machine with PostgreSQL.
    pub fn full() -> Plan {
        Plan {
            mode: "full",
            connections: 64,
            round_secs: 10,
            rounds: 2,
            steady_per_sec: 3_400,
            steady_secs: 30,
            fleet_sizes: vec![100_000, 1_000_000],
            handoff: handoff::Handoff { endpoints: 10_000, max_in_flight: 500, install_secs: 2, poll_secs: 60 },
            downloads: 1_000,
            download_bytes: 50_000_000,
            agent_watch_secs: 60,
            pg_replicas: 2,
        }
    }

    /// Toy sizes: every code path of the full run in well under a minute.
    pub fn small() -> Plan {
        Plan {
            mode: "small",
            connections: 8,
            round_secs: 1,
            rounds: 1,
            steady_per_sec: 200,
            steady_secs: 2,
            fleet_sizes: vec![500, 2_000],
            handoff: handoff::Handoff { endpoints: 60, max_in_flight: 20, install_secs: 1, poll_secs: 60 },
            downloads: 8,
            download_bytes: 1_000_000,
            agent_watch_secs: 2,
            pg_replicas: 2,
        }
    }
}

/// What to run against.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The `rollgate` binary.
    pub rollgate: PathBuf,
    /// The nginx binary, or none to measure Rollgate alone.
    pub nginx: Option<PathBuf>,
    /// Measure on SQLite (figures 1 to 4, and 2, 6, 7 which run only there).
    pub sqlite: bool,
    /// PostgreSQL for the replica figures, if any.
    pub postgres: Option<String>,
    /// Figures to run (1 to 7).
    pub figures: Vec<u8>,
}

/// Everything one run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Results {
    /// Figures 1 to 4 on SQLite, and on PostgreSQL if it was given.
    pub backends: Vec<BackendResults>,
    /// Figure 5.
    pub handoff: Option<handoff::HandoffResult>,
    /// Figure 6.
    pub downloads: Option<DownloadFigure>,
    /// Figure 7.
    pub agent: Option<agent_idle::AgentIdle>,
    /// Parts that failed, with why; the others were still measured.
    pub failures: Vec<String>,
}

/// Figures 1 to 4 on one backend.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BackendResults {
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// Server processes.
    pub replicas: usize,
    /// Figure 1.
    pub kept_alive: Option<CheckinFigure>,
    /// Figure 2.
    pub new_connections: Option<CheckinFigure>,
    /// Figures 3 and 4, one entry per fleet size.
    pub fleets: Vec<FleetResults>,
}

/// One check-in figure: every run of every target, and the means and ratios.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckinFigure {
    /// Each run, in the order driven (alternating).
    pub runs: Vec<Run>,
    /// Mean check-ins per second of each target.
    pub mean_per_sec: BTreeMap<String, f64>,
    /// Rollgate ÷ nginx without client-certificate verification.
    pub ratio_vs_nginx: Option<f64>,
    /// Rollgate ÷ nginx verifying client certificates.
    pub ratio_vs_nginx_mtls: Option<f64>,
}

/// Figures 3 and 4 at one fleet size.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FleetResults {
    /// Registered endpoints.
    pub endpoints: u32,
    /// Seconds it took to enroll them (this step's share).
    pub enroll_secs: f64,
    /// Resident memory of the server(s) with no endpoints, KiB.
    pub rss_empty_kib: u64,
    /// Resident memory once enrolled, before any load, KiB.
    pub rss_idle_kib: u64,
    /// Largest resident memory during the steady load, KiB.
    pub rss_loaded_kib: u64,
    /// (idle − empty) ÷ endpoints, bytes (target ≤ 1024).
    pub idle_bytes_per_endpoint: f64,
    /// (loaded − empty) ÷ endpoints, bytes (target ≤ 1024).
    pub loaded_bytes_per_endpoint: f64,
    /// Distinct endpoints that had checked in before the loaded reading.
    pub endpoints_checked_in: u32,
    /// The first check-in of every virtual agent (full handshakes), if made at this size.
    pub sweep: Option<Run>,
    /// Figure 3 at this size.
    pub steady: Run,
}

/// Figure 6.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DownloadFigure {
    /// Each round, alternating.
    pub runs: Vec<download::DownloadRun>,
    /// Rollgate's mean MiB/s ÷ nginx's.
    pub ratio_vs_nginx: Option<f64>,
}

/// Progress for people, on standard error.
fn say(what: impl std::fmt::Display) {
    eprintln!("[bench] {what}");
}

/// Runs every figure of `setup.figures` at the sizes of `plan`. A part that fails is recorded
/// in [`Results::failures`] and the others still run: a ten-minute run is not thrown away for
/// one broken figure.
pub async fn run(setup: &Setup, plan: &Plan) -> anyhow::Result<Results> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let open_files = proc::raise_open_files_limit();
    // One socket per virtual agent of the largest figure, and some for files and the rest.
    let needed = u64::from(plan.handoff.endpoints.max(plan.downloads)) + 64;
    if open_files < needed {
        bail!("the open-file limit is {open_files}; this plan needs {needed} (raise it with ulimit -n)");
    }
    let key = SharedKey::generate()?;
    let nginx_ca = rollgate_pki::Ca::generate("rollgate-bench nginx CA")?;
    let mut results = Results::default();
    let wants = |f: u8| setup.figures.contains(&f);
    let mut backends = Vec::new();
    if setup.sqlite {
        backends.push((Backend::Sqlite, 1));
    }
    if let Some(url) = &setup.postgres {
        backends.push((Backend::Postgres(url.clone()), plan.pg_replicas));
    }
    for (backend, replicas) in backends {
        let postgres = matches!(backend, Backend::Postgres(_));
        if !(wants(1) || wants(3) || wants(4) || (!postgres && (wants(2) || wants(6) || wants(7)))) {
            continue;
        }
        let mut figures = BackendResults { backend: backend.name().into(), replicas, ..Default::default() };
        if let Err(err) =
            backend_figures(setup, plan, &backend, replicas, &key, &nginx_ca, &mut figures, &mut results).await
        {
            say(format!("{}: FAILED: {err:#}", backend.name()));
            results.failures.push(format!("{}: {err:#}", backend.name()));
        }
        results.backends.push(figures);
    }
    if wants(5) {
        say("figure 5: slot hand-off");
        let flags = ServerFlags(vec!["--long-poll-max-secs".into(), plan.handoff.poll_secs.to_string()]);
        let handoff = async {
            let cluster = Cluster::start(&setup.rollgate, &Backend::Sqlite, 1, &flags).await?;
            handoff::run(&cluster, &key, &plan.handoff).await
        };
        match handoff.await {
            Ok(h) => results.handoff = Some(h),
            Err(err) => {
                say(format!("figure 5: FAILED: {err:#}"));
                results.failures.push(format!("figure 5: {err:#}"));
            }
        }
    }
    Ok(results)
}

/// Figures 1 to 4 on one backend (and 2, 6 and 7 on SQLite), into `figures` and `results`.
#[allow(clippy::too_many_arguments)]
async fn backend_figures(
    setup: &Setup,
    plan: &Plan,
    backend: &Backend,
    replicas: usize,
    key: &SharedKey,
    nginx_ca: &rollgate_pki::Ca,
    figures: &mut BackendResults,
    results: &mut Results,
) -> anyhow::Result<()> {
    let wants = |f: u8| setup.figures.contains(&f);
    let postgres = matches!(backend, Backend::Postgres(_));
    say(format!("{}: starting {replicas} server(s)", backend.name()));
    let cluster = Cluster::start(&setup.rollgate, backend, replicas, &ServerFlags::default()).await?;
    if wants(1) || (!postgres && wants(2)) {
        let pair = CheckinTargets::start(setup, plan, &cluster, key, nginx_ca).await?;
        if wants(1) {
            say(format!("{}: figure 1, kept-alive check-ins", backend.name()));
            figures.kept_alive = Some(pair.figure(plan, false).await);
        }
        if !postgres && wants(2) {
            say(format!("{}: figure 2, a new mutual-TLS connection per check-in", backend.name()));
            figures.new_connections = Some(pair.figure(plan, true).await);
        }
    }
    if !postgres && wants(6) {
        results.downloads = Some(downloads_figure(setup, plan, &cluster, key, nginx_ca).await?);
    }
    if !postgres && wants(7) {
        say("figure 7: an idle agent");
        results.agent =
            Some(agent_idle::measure(&setup.rollgate, &cluster, Duration::from_secs(plan.agent_watch_secs)).await?);
    }
    drop(cluster);
    if wants(3) || wants(4) {
        fleet_figures(setup, plan, backend, replicas, key, &mut figures.fleets).await?;
    }
    Ok(())
}

/// Rollgate and the two nginx baselines, ready for figures 1 and 2.
struct CheckinTargets {
    targets: Vec<Target>,
    _nginx: Vec<nginx::Nginx>,
}

impl CheckinTargets {
    async fn start(
        setup: &Setup,
        plan: &Plan,
        cluster: &Cluster,
        key: &SharedKey,
        nginx_ca: &rollgate_pki::Ca,
    ) -> anyhow::Result<CheckinTargets> {
        let identities = cluster.enroll(key, plan.connections, "checkin-", &BTreeMap::new(), |_| {}).await?;
        let roots = format!("{}\n{}", cluster.ca_pem, nginx_ca.cert_pem());
        let agents = Arc::new(agents::configs(&roots, key, &identities)?);
        let rollgate = Target { name: "rollgate".into(), addrs: cluster.addrs(), agents: agents.clone() };
        let mut targets = vec![rollgate.clone()];
        let mut running = Vec::new();
        if let Some(binary) = &setup.nginx {
            let root = cluster.scratch().join("nginx-root");
            write_nothing_new_answer(&rollgate, &root).await?;
            for (name, client_ca) in [("nginx", None), ("nginx-mtls", Some(cluster.ca_pem.clone()))] {
                let site = nginx::Site { root: root.clone(), client_ca_pem: client_ca };
                let server = nginx::Nginx::start(binary, nginx_ca, &site, cores()).await?;
                targets.push(Target { name: name.into(), addrs: vec![server.addr], agents: agents.clone() });
                running.push(server);
            }
        }
        Ok(CheckinTargets { targets, _nginx: running })
    }

    /// Drives each target in turn, `plan.rounds` times, with the same connection count.
    async fn figure(&self, plan: &Plan, reconnect: bool) -> CheckinFigure {
        let mut figure = CheckinFigure::default();
        for _ in 0..plan.rounds {
            for target in &self.targets {
                let duration = Duration::from_secs(plan.round_secs);
                let run = if reconnect {
                    load::reconnecting(target, plan.connections, duration).await
                } else {
                    load::kept_alive(target, plan.connections, duration).await
                };
                say(format!(
                    "  {:<10} {:>8.0}/s  p50 {:.2} ms  p99 {:.2} ms  errors {}  resumed {}/{}",
                    run.target, run.per_sec, run.p50_ms, run.p99_ms, run.errors, run.resumed, run.handshakes
                ));
                figure.runs.push(run);
            }
        }
        for target in &self.targets {
            let rates: Vec<f64> = figure.runs.iter().filter(|r| r.target == target.name).map(|r| r.per_sec).collect();
            figure.mean_per_sec.insert(target.name.clone(), rates.iter().sum::<f64>() / rates.len() as f64);
        }
        let ratio = |base: &str| Some(figure.mean_per_sec.get("rollgate")? / figure.mean_per_sec.get(base)?);
        figure.ratio_vs_nginx = ratio("nginx");
        figure.ratio_vs_nginx_mtls = ratio("nginx-mtls");
        figure
    }
}

/// Writes, under `root`, a file holding exactly Rollgate's current answer to the check-in of a
/// virtual agent of `rollgate`, at the check-in's path, for nginx to serve.
async fn write_nothing_new_answer(rollgate: &Target, root: &std::path::Path) -> anyhow::Result<()> {
    let (mut conn, _, _) = load::connect(rollgate.agents[0].clone(), rollgate.addrs[0]).await?;
    let path = load::CHECKIN_PATH.split('?').next().unwrap_or_default();
    let body = conn.get_body(load::CHECKIN_PATH).await?;
    let file = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(file.parent().context("the path has a parent")?)?;
    std::fs::write(file, body)?;
    Ok(())
}

/// Figure 6 on `cluster`: Rollgate and nginx (verifying client certificates, as Rollgate does)
/// serve the same package file, alternating.
async fn downloads_figure(
    setup: &Setup,
    plan: &Plan,
    cluster: &Cluster,
    key: &SharedKey,
    nginx_ca: &rollgate_pki::Ca,
) -> anyhow::Result<DownloadFigure> {
    say(format!("figure 6: {} concurrent downloads of {} bytes", plan.downloads, plan.download_bytes));
    let file = cluster.scratch().join("package.bin");
    download::random_file(&file, plan.download_bytes)?;
    let sha256 = {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        std::io::copy(&mut std::fs::File::open(&file)?, &mut hasher)?;
        hex::encode(hasher.finalize())
    };
    let response = cluster
        .admin(reqwest::Method::PUT, "/v1/packages/bench-download/1.0.0?module=files")
        .header("x-rollgate-sha256", &sha256)
        .body(tokio::fs::read(&file).await?)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("uploading the download package failed: {}", response.text().await.unwrap_or_default());
    }
    let identities = cluster.enroll(key, plan.downloads, "download-", &BTreeMap::new(), |_| {}).await?;
    let roots = format!("{}\n{}", cluster.ca_pem, nginx_ca.cert_pem());
    let agents = agents::configs(&roots, key, &identities)?;
    let path = format!("/v1/agent/packages/{sha256}");
    let mut nginx_server = None;
    if let Some(binary) = &setup.nginx {
        let root = cluster.scratch().join("nginx-downloads");
        let served = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(served.parent().context("the path has a parent")?)?;
        std::fs::hard_link(&file, &served).or_else(|_| std::fs::copy(&file, &served).map(|_| ()))?;
        let site = nginx::Site { root, client_ca_pem: Some(cluster.ca_pem.clone()) };
        nginx_server = Some(nginx::Nginx::start(binary, nginx_ca, &site, cores()).await?);
    }
    let mut figure = DownloadFigure::default();
    let pids = cluster.pids();
    for _ in 0..plan.rounds {
        let pids = pids.clone();
        let rollgate = download::round(
            "rollgate",
            cluster.addrs()[0],
            &agents,
            &path,
            plan.download_bytes,
            plan.downloads,
            move || proc::total_rss_kib(&pids),
        )
        .await;
        say(format!("  rollgate   {:>8.0} MiB/s  errors {}", rollgate.mib_per_sec, rollgate.errors));
        figure.runs.push(rollgate);
        if let Some(server) = &nginx_server {
            let (addr, pid) = (server.addr, server.pid);
            let nginx =
                download::round("nginx-mtls", addr, &agents, &path, plan.download_bytes, plan.downloads, move || {
                    nginx::rss_of_tree(pid)
                })
                .await;
            say(format!("  nginx-mtls {:>8.0} MiB/s  errors {}", nginx.mib_per_sec, nginx.errors));
            figure.runs.push(nginx);
        }
    }
    let mean = |name: &str| -> Option<f64> {
        let rates: Vec<f64> = figure.runs.iter().filter(|r| r.target == name).map(|r| r.mib_per_sec).collect();
        (!rates.is_empty()).then(|| rates.iter().sum::<f64>() / rates.len() as f64)
    };
    figure.ratio_vs_nginx = mean("rollgate").zip(mean("nginx-mtls")).map(|(r, n)| r / n);
    Ok(figure)
}

/// Figures 3 and 4 on a fresh cluster: memory empty, then at each fleet size idle and under the
/// steady load of figure 3.
async fn fleet_figures(
    setup: &Setup,
    plan: &Plan,
    backend: &Backend,
    replicas: usize,
    key: &SharedKey,
    out: &mut Vec<FleetResults>,
) -> anyhow::Result<()> {
    let cluster = Cluster::start(&setup.rollgate, backend, replicas, &ServerFlags::default()).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_empty_kib = proc::total_rss_kib(&cluster.pids());
    let mut enrolled = 0u32;
    let mut target: Option<Target> = None;
    for &size in &plan.fleet_sizes {
        say(format!("{}: figure 4, enrolling up to {size} endpoints", backend.name()));
        let started = std::time::Instant::now();
        let from = enrolled;
        let identities = cluster
            .enroll(key, size - enrolled, &format!("fleet{size}-"), &BTreeMap::new(), |done| {
                if done % 100_000 == 0 {
                    say(format!("  {} enrolled", from + done));
                }
            })
            .await?;
        let enroll_secs = started.elapsed().as_secs_f64();
        enrolled = size;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss_idle_kib = proc::total_rss_kib(&cluster.pids());
        let mut sweep = None;
        if target.is_none() {
            // The first fleet's endpoints are the virtual agents of figure 3: each checks in
            // once (a full handshake that leaves it a session ticket), then the steady load
            // cycles through them.
            let agents = Arc::new(agents::configs(&cluster.ca_pem, key, &identities)?);
            let t = Target { name: "rollgate".into(), addrs: cluster.addrs(), agents };
            say(format!("{}: first check-in of {} virtual agents", backend.name(), t.agents.len()));
            let run = load::sweep(&t, 64, |done| {
                if done % 20_000 == 0 {
                    say(format!("  {done} checked in"));
                }
            })
            .await;
            say(format!("  {:.0} full handshakes + check-ins/s, errors {}", run.per_sec, run.errors));
            sweep = Some(run);
            target = Some(t);
        }
        drop(identities);
        let target = target.as_ref().expect("set above");
        say(format!(
            "{}: figure 3, {} check-ins/s for {} s at {size} endpoints",
            backend.name(),
            plan.steady_per_sec,
            plan.steady_secs
        ));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let sampler = tokio::spawn(proc::peak_rss_kib(cluster.pids(), Duration::from_millis(200), stop_rx));
        let steady = load::steady(target, plan.steady_per_sec, Duration::from_secs(plan.steady_secs)).await;
        let _ = stop_tx.send(true);
        let rss_loaded_kib = sampler.await?;
        say(format!(
            "  {:.0}/s p50 {:.2} ms p99 {:.2} ms errors {}; memory idle {} MiB, loaded {} MiB (empty {} MiB)",
            steady.per_sec,
            steady.p50_ms,
            steady.p99_ms,
            steady.errors,
            rss_idle_kib / 1024,
            rss_loaded_kib / 1024,
            rss_empty_kib / 1024
        ));
        let per_endpoint = |kib: u64| kib.saturating_sub(rss_empty_kib) as f64 * 1024.0 / f64::from(size);
        out.push(FleetResults {
            endpoints: size,
            enroll_secs,
            rss_empty_kib,
            rss_idle_kib,
            rss_loaded_kib,
            idle_bytes_per_endpoint: per_endpoint(rss_idle_kib),
            loaded_bytes_per_endpoint: per_endpoint(rss_loaded_kib),
            endpoints_checked_in: target.agents.len() as u32,
            sweep,
            steady,
        });
    }
    Ok(())
}

/// Cores of this machine: nginx gets one worker per core, as Rollgate gets one async worker
/// per core.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
