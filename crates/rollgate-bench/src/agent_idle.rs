//! Figure 7: one real `rollgate agent` process, enrolled with a token and polling a real
//! server: its resident memory and CPU while idle, and the stripped binary's size.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::server::Cluster;

/// What was measured.
#[derive(Clone, Debug, Serialize)]
pub struct AgentIdle {
    /// Seconds the agent was watched after it settled.
    pub seconds: f64,
    /// Resident memory at the end, MiB.
    pub rss_mib: f64,
    /// Of which anonymous memory (heap and stacks), MiB.
    pub rss_anon_mib: f64,
    /// Of which pages of the binary and libraries, MiB.
    pub rss_file_mib: f64,
    /// CPU used over the watch, percent of one core.
    pub cpu_percent: f64,
    /// The poll interval the agent was given, seconds.
    pub poll_secs: u64,
    /// Size of the `rollgate` binary once stripped, MiB.
    pub stripped_binary_mib: f64,
}

/// Starts an agent against `cluster`, lets it enroll and settle, then watches it for `watch`.
pub async fn measure(rollgate: &Path, cluster: &Cluster, watch: Duration) -> anyhow::Result<AgentIdle> {
    // Shorter than the default 30 s, so that the watch sees many polls: the figure is memory
    // and CPU while polling, not while asleep.
    const POLL_SECS: u64 = 5;
    let dir = cluster.scratch().join("agent");
    std::fs::create_dir_all(&dir)?;
    let response = cluster
        .admin(reqwest::Method::POST, "/v1/enroll-tokens")
        .json(&serde_json::json!({ "uses": 1, "ttl_secs": 600 }))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("creating an enrollment token failed: {}", response.text().await.unwrap_or_default());
    }
    let token: serde_json::Value = response.json().await?;
    let token = token["token"].as_str().context("no token in the answer")?.to_string();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &cluster.ca_pem)?;
    let log = std::fs::File::create(dir.join("agent.log"))?;
    let mut child = tokio::process::Command::new(rollgate)
        .args(["agent", "--server", &cluster.replicas[0].url, "--enroll-token", &token])
        .arg("--ca")
        .arg(&ca)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--poll-interval", &POLL_SECS.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("the agent exited at once")?;
    // Enrollment, inventory and the first poll happen in the first second or two; after the
    // first poll the agent gives back its start-up pages (`rollgate_agent::trim`).
    tokio::time::sleep(Duration::from_secs(3)).await;
    if let Some(status) = child.try_wait()? {
        bail!("the agent exited with {status}: {}", std::fs::read_to_string(dir.join("agent.log"))?);
    }
    let cpu_before = crate::proc::cpu_time(pid).context("reading the agent's CPU time")?;
    let watched = Instant::now();
    tokio::time::sleep(watch).await;
    let cpu = crate::proc::cpu_time(pid).context("reading the agent's CPU time")? - cpu_before;
    let seconds = watched.elapsed().as_secs_f64();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    if let Some(exit) = child.try_wait()? {
        bail!("the agent exited during the watch with {exit}: {}", std::fs::read_to_string(dir.join("agent.log"))?);
    }
    let field = |name: &str| -> anyhow::Result<f64> {
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse::<f64>().ok())
            .with_context(|| format!("no {name} in the agent's /proc status"))?;
        Ok(kib / 1024.0)
    };
    let stripped = dir.join("rollgate-stripped");
    std::fs::copy(rollgate, &stripped)?;
    let strip = std::process::Command::new("strip").arg(&stripped).status();
    let stripped_binary_mib = match strip {
        Ok(s) if s.success() => std::fs::metadata(&stripped)?.len() as f64 / (1024.0 * 1024.0),
        _ => f64::NAN,
    };
    Ok(AgentIdle {
        seconds,
        rss_mib: field("VmRSS:")?,
        rss_anon_mib: field("RssAnon:")?,
        rss_file_mib: field("RssFile:")?,
        cpu_percent: 100.0 * cpu.as_secs_f64() / seconds,
        poll_secs: POLL_SECS,
        stripped_binary_mib,
    })
}
