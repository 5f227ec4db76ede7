//! `rollgate demo`: a server and N real agent processes in a temporary directory, two versions
//! of a sample product, a baseline rollout and an upgrade in which one endpoint's health check
//! fails and is rolled back, with a live progress bar and a summary. Everything is cleaned up.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rollgate_wire::{CreateEnrollToken, CreateSet, EndpointDetail, EndpointView, EnrollTokenCreated, SetView};
use tokio::process::{Child, Command};

use crate::manage::{Api, Conn};
use crate::output;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Number of local agents.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(2..=200))]
    endpoints: u32,
    /// Keep the temporary directory (with every log) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

const PRODUCT: &str = "hello-service";
const BROKEN_LABEL: &str = "broken-health";
const SITES: [&str; 3] = ["berlin", "lisbon", "austin"];

/// The health check: version 1.1.0 fails on the endpoint labelled demo=broken-health, as a
/// release with a bug that shows only on some machines would.
fn health_script(version: &str) -> String {
    let mut s = String::from("#!/bin/sh\n");
    if version != "1.0.0" {
        s.push_str(&format!(
            "if [ \"$ROLLGATE_LABEL_DEMO\" = \"{BROKEN_LABEL}\" ]; then\n  echo \"hello-service {version}: cannot open /var/lib/hello/db (schema too new)\" >&2\n  exit 1\nfi\n"
        ));
    }
    s.push_str("exec \"$ROLLGATE_VERSION_DIR/bin/hello\" >/dev/null\n");
    s
}

fn write_package(path: &Path, version: &str) -> anyhow::Result<()> {
    let file = std::fs::File::create(path)?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut add = |name: &str, body: &str| -> anyhow::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        tar.append_data(&mut header, name, body.as_bytes())?;
        Ok(())
    };
    add("bin/hello", &format!("#!/bin/sh\necho \"hello from {PRODUCT} {version}\"\n"))?;
    add("rollgate-health", &health_script(version))?;
    tar.into_inner()?.finish()?;
    Ok(())
}

struct Fleet {
    server: Child,
    agents: Vec<Child>,
}

impl Fleet {
    async fn stop(mut self) {
        for agent in &mut self.agents {
            let _ = agent.kill().await;
        }
        let _ = self.server.kill().await;
    }
}

async fn start_server(exe: &Path, dir: &Path) -> anyhow::Result<(Child, String)> {
    let data = dir.join("server");
    let log = std::fs::File::create(dir.join("server.log"))?;
    let child = Command::new(exe)
        .args(["server", "--listen", "127.0.0.1:0", "--tick-ms", "200", "--data-dir"])
        .arg(&data)
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("while starting the server")?;
    let url_file = data.join("server.url");
    for _ in 0..300 {
        if let Ok(url) = std::fs::read_to_string(&url_file) {
            return Ok((child, url.trim().to_string()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the server did not start within 15 s; see {}", dir.join("server.log").display())
}

fn spawn_agent(
    exe: &Path,
    dir: &Path,
    url: &str,
    ca: &Path,
    token: &str,
    i: u32,
    broken: bool,
) -> anyhow::Result<Child> {
    let state = dir.join("agents").join(format!("agent-{i:03}"));
    std::fs::create_dir_all(&state)?;
    let log = std::fs::File::create(state.with_extension("log"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("agent")
        .args(["--server", url, "--enroll-token", token, "--poll-interval", "2", "--hostname"])
        .arg(format!("demo-{i:03}"))
        .arg("--ca")
        .arg(ca)
        .arg("--state-dir")
        .arg(&state)
        .args(["--label", &format!("site={}", SITES[i as usize % SITES.len()])])
        .args(["--label", if i.is_multiple_of(4) { "network=remote" } else { "network=on-network" }]);
    if broken {
        cmd.args(["--label", &format!("demo={BROKEN_LABEL}")]);
    }
    Ok(cmd.stdout(log.try_clone()?).stderr(log).stdin(Stdio::null()).kill_on_drop(true).spawn()?)
}

async fn wait_enrolled(api: &Api, n: usize) -> anyhow::Result<Vec<EndpointView>> {
    for _ in 0..600 {
        let list: Vec<EndpointView> = api.get("/v1/endpoints").await?;
        let reported = list.iter().filter(|e| e.products.contains_key(rollgate_agent::AGENT_PRODUCT)).count();
        if reported >= n {
            return Ok(list);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("agents did not enroll within 60 s")
}

async fn run_set(api: &Api, body: CreateSet) -> anyhow::Result<SetView> {
    let name = body.name.clone();
    let created: SetView = api.post("/v1/sets", &body).await?;
    let total = created.endpoints.len() as u64;
    println!(
        "\nUpgrade Set `{name}`: {} -> {} on {total} endpoints, at most {} at once, {} attempts each",
        body.product, body.version, body.max_in_flight, body.max_attempts
    );
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("  {bar:32.green/white} {pos}/{len} done  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for _ in 0..3000 {
        let set: SetView = api.get(&format!("/v1/sets/{name}")).await?;
        let c = &set.counts;
        bar.set_position(c.succeeded + c.failed + c.rolled_back);
        bar.set_message(format!(
            "upgrading {}  ok {}  failed {}  rolled back {}",
            c.in_progress, c.succeeded, c.failed, c.rolled_back
        ));
        if set.state == "completed" {
            bar.finish();
            return Ok(set);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bar.abandon();
    bail!("set `{name}` did not complete within 10 minutes")
}

/// The most endpoints that were upgrading at the same moment, from the attempts' times.
fn peak_in_flight(histories: &[EndpointDetail], set: &str) -> usize {
    let mut events: Vec<(String, i32)> = Vec::new();
    for h in histories {
        let attempts: Vec<_> = h.history.iter().filter(|a| a.set == set).collect();
        let (Some(first), Some(last)) = (attempts.first(), attempts.last()) else { continue };
        events.push((first.started_at.clone(), 1));
        events.push((last.finished_at.clone().unwrap_or_else(|| "9999".into()), -1));
    }
    // Ends sort before starts at the same instant: a slot handed over is not two in flight.
    events.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, delta) in events {
        now += delta;
        peak = peak.max(now);
    }
    peak as usize
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("while finding the rollgate executable")?;
    let tmp = tempfile::Builder::new().prefix("rollgate-demo-").tempdir()?;
    let dir: PathBuf = tmp.path().to_path_buf();
    println!("Rollgate demo in {}", dir.display());
    let (server, url) = start_server(&exe, &dir).await?;
    println!("server {url} (logs: {})", dir.join("server.log").display());
    let mut fleet = Fleet { server, agents: Vec::new() };
    let result = tokio::select! {
        r = drive(&exe, &dir, &url, args.endpoints, &mut fleet) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    fleet.stop().await;
    if args.keep {
        println!("kept {}", tmp.keep().display());
    } else {
        drop(tmp);
        println!("cleaned up");
    }
    result
}

async fn drive(exe: &Path, dir: &Path, url: &str, n: u32, fleet: &mut Fleet) -> anyhow::Result<()> {
    let conn = Conn::for_data_dir(&dir.join("server"));
    let api = conn.connect()?;
    let token: EnrollTokenCreated =
        api.post("/v1/enroll-tokens", &CreateEnrollToken { uses: n, ttl_secs: 600 }).await?;
    let ca = dir.join("server").join("ca.pem");
    let broken = n / 2;
    for i in 0..n {
        fleet.agents.push(spawn_agent(exe, dir, url, &ca, &token.token, i, i == broken)?);
    }
    let endpoints = wait_enrolled(&api, n as usize).await?;
    println!("{n} agents enrolled over mutual TLS (one is labelled demo={BROKEN_LABEL})");

    for version in ["1.0.0", "1.1.0"] {
        let file = dir.join(format!("{PRODUCT}-{version}.tar.gz"));
        write_package(&file, version)?;
        let info = api.upload(&file, PRODUCT, version, "files", None, true).await?;
        println!("added package {} ({} bytes, sha256 {}…)", info.id, info.size, &info.sha256[..12]);
    }
    let set = |name: &str, version: &str, max_in_flight: u32| CreateSet {
        name: name.into(),
        product: PRODUCT.into(),
        version: version.into(),
        target: "all".into(),
        max_in_flight,
        max_attempts: 2,
        start_at: None,
        window: None,
        seed: Some(42),
        backoff_secs: Some(1),
        stuck_timeout_secs: Some(120),
        step_timeout_secs: Some(20),
    };
    run_set(&api, set("hello-baseline", "1.0.0", n)).await?;
    let upgrade = run_set(&api, set("hello-1.1.0", "1.1.0", 3)).await?;

    println!("\nSummary of `{}`:", upgrade.name);
    let rows: Vec<Vec<String>> = upgrade
        .endpoints
        .iter()
        .map(|e| {
            let host = endpoints.iter().find(|x| x.id == e.id).map_or("", |x| x.hostname.as_str());
            vec![
                e.id.clone(),
                host.to_string(),
                e.state.clone(),
                e.attempts.to_string(),
                e.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::table(&["ENDPOINT", "HOST", "STATE", "ATTEMPTS", "REASON"], &rows);
    let mut histories = Vec::new();
    for e in &upgrade.endpoints {
        histories.push(api.get::<EndpointDetail>(&format!("/v1/endpoints/{}", e.id)).await?);
    }
    println!(
        "\npeak upgrading at once: {} (limit {}); release order drawn from seed {}",
        peak_in_flight(&histories, &upgrade.name),
        upgrade.max_in_flight,
        upgrade.seed
    );
    for h in &histories {
        if h.endpoint.labels.get("demo").map(String::as_str) == Some(BROKEN_LABEL) {
            println!(
                "\n{} ({}) still runs {} {}; its history:",
                h.endpoint.id,
                h.endpoint.hostname,
                PRODUCT,
                h.endpoint.products.get(PRODUCT).map_or("?", String::as_str)
            );
            for a in h.history.iter().filter(|a| a.set == upgrade.name) {
                println!(
                    "  attempt {}: {} -> {}  {}  {}",
                    a.attempt,
                    a.from_version.as_deref().unwrap_or("-"),
                    a.to_version,
                    a.outcome,
                    a.reason.as_deref().unwrap_or("")
                );
            }
        }
    }
    let c = &upgrade.counts;
    if c.succeeded != u64::from(n) - 1 || c.rolled_back != 1 {
        bail!("unexpected outcome: {} succeeded, {} rolled back, {} failed", c.succeeded, c.rolled_back, c.failed);
    }
    Ok(())
}
