//! `rollgate-bench`: runs the load harness against a real `rollgate` binary and Debian's nginx,
//! prints a table, and writes the table and a JSON file under `bench/results/`.
//!
//! ```text
//! bench/run                 # full size, installs nginx if missing (about ten minutes)
//! bench/run --small         # toy sizes, as CI runs it
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use rollgate_bench::{Plan, Results, Setup};
use serde::Serialize;

/// Rollgate's fleet load harness (issue 4): figures 1 to 7, side by side with nginx.
#[derive(Parser, Debug)]
struct Args {
    /// The rollgate binary to benchmark (build it with `cargo build --release -p rollgate`).
    #[arg(long, default_value = "target/release/rollgate")]
    rollgate: PathBuf,
    /// Toy sizes: checks that every figure can be measured, in well under a minute.
    #[arg(long)]
    small: bool,
    /// nginx binary (default: /usr/sbin/nginx, then PATH).
    #[arg(long)]
    nginx: Option<PathBuf>,
    /// Measure Rollgate alone, without the nginx baseline.
    #[arg(long, conflicts_with = "nginx")]
    no_baseline: bool,
    /// PostgreSQL URL for figures 1, 3 and 4 on server replicas (default: $DATABASE_URL).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    postgres: Option<String>,
    /// Skip PostgreSQL even when DATABASE_URL is set.
    #[arg(long)]
    no_postgres: bool,
    /// Skip the SQLite figures (to re-measure PostgreSQL alone).
    #[arg(long)]
    no_sqlite: bool,
    /// Figures to run, e.g. `1,2,5` (default: all).
    #[arg(long, value_delimiter = ',', default_values_t = [1u8, 2, 3, 4, 5, 6, 7])]
    figures: Vec<u8>,
    /// Where to write `<name>.json` and `<name>.md`.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// File name of the results (default: `latest` or `small`).
    #[arg(long)]
    name: Option<String>,
}

/// The results file: where, how and what.
#[derive(Serialize)]
struct Report<'a> {
    machine: Machine,
    command: String,
    git_commit: String,
    started_at: String,
    total_secs: f64,
    plan: &'a Plan,
    results: &'a Results,
}

#[derive(Serialize)]
struct Machine {
    cpu: String,
    cores: usize,
    memory_gib: f64,
    kernel: String,
    nginx: Option<String>,
    postgres: Option<String>,
}

fn machine(setup: &Setup) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_string()))
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let nginx = setup.nginx.as_ref().and_then(|n| {
        let out = std::process::Command::new(n).arg("-v").output().ok()?;
        Some(String::from_utf8_lossy(&out.stderr).trim().to_string())
    });
    Machine {
        cpu,
        cores: rollgate_bench::cores(),
        memory_gib: memory_kib / 1024.0 / 1024.0,
        kernel,
        nginx,
        postgres: setup.postgres.as_ref().map(|_| "PostgreSQL (from --postgres / DATABASE_URL)".to_string()),
    }
}

/// The commit measured, `-dirty` when the working tree differs from it.
fn git_commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_default();
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let plan = if args.small { Plan::small() } else { Plan::full() };
    SMALL.store(args.small, std::sync::atomic::Ordering::Relaxed);
    anyhow::ensure!(
        args.rollgate.is_file(),
        "{} not found: build it with `cargo build --release -p rollgate` or pass --rollgate",
        args.rollgate.display()
    );
    let nginx = if args.no_baseline { None } else { Some(rollgate_bench::nginx::find(args.nginx.as_deref())?) };
    let setup = Setup {
        rollgate: args.rollgate.clone(),
        nginx,
        sqlite: !args.no_sqlite,
        postgres: if args.no_postgres { None } else { args.postgres.clone() },
        figures: args.figures.clone(),
    };
    if setup.postgres.is_none() {
        eprintln!("[bench] PostgreSQL SKIPPED: set DATABASE_URL or --postgres for the replica figures");
    }
    let started_at = jiff::Timestamp::now();
    let clock = std::time::Instant::now();
    let results = rollgate_bench::run(&setup, &plan).await?;
    let report = Report {
        machine: machine(&setup),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        git_commit: git_commit(),
        started_at: started_at.to_string(),
        total_secs: clock.elapsed().as_secs_f64(),
        plan: &plan,
        results: &results,
    };
    let table = table(&report);
    println!("{table}");
    let name = args.name.clone().unwrap_or_else(|| if args.small { "small".into() } else { "latest".into() });
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let json = args.out.join(format!("{name}.json"));
    std::fs::write(&json, serde_json::to_string_pretty(&report)? + "\n")?;
    std::fs::write(args.out.join(format!("{name}.md")), &table)?;
    eprintln!("[bench] wrote {} and {name}.md in {:.0} s", json.display(), report.total_secs);
    if !results.failures.is_empty() {
        anyhow::bail!("{} part(s) failed:\n{}", results.failures.len(), results.failures.join("\n"));
    }
    Ok(())
}

fn verdict(met: bool) -> &'static str {
    if SMALL.load(std::sync::atomic::Ordering::Relaxed) {
        "toy sizes: no verdict"
    } else if met {
        "met"
    } else {
        "NOT met"
    }
}

/// Set for a small run, whose figures say only that each part works.
static SMALL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether every run of a figure finished without an error (a failing connection lowers its
/// server's rate, so a ratio means nothing without this).
fn no_errors(runs: &[rollgate_bench::load::Run]) -> bool {
    runs.iter().all(|r| r.errors == 0)
}

fn opt_ratio(r: Option<f64>) -> String {
    r.map_or("n/a (no baseline)".into(), |r| format!("{r:.2}"))
}

/// The results as a Markdown table, one row per figure and backend.
fn table(report: &Report<'_>) -> String {
    let r = report.results;
    let mut out = String::new();
    let m = &report.machine;
    let _ = writeln!(out, "# Rollgate load harness: {} run\n", report.plan.mode);
    let _ = writeln!(
        out,
        "Machine: {} ({} cores, {:.0} GiB), Linux {}; {}. Commit {}, {}; {:.0} s in all.\n\nCommand: `{}`\n",
        m.cpu,
        m.cores,
        m.memory_gib,
        m.kernel,
        m.nginx.as_deref().unwrap_or("no nginx"),
        report.git_commit,
        report.started_at,
        report.total_secs,
        report.command
    );
    let negotiated: std::collections::BTreeSet<String> = r
        .backends
        .iter()
        .flat_map(|b| b.kept_alive.iter().chain(&b.new_connections))
        .flat_map(|f| f.runs.iter().map(|run| format!("{}: {}", run.target, run.tls)))
        .collect();
    if !negotiated.is_empty() {
        let list: Vec<String> = negotiated.into_iter().collect();
        let _ = writeln!(out, "Negotiated: {}.\n", list.join("; "));
    }
    let _ = writeln!(out, "| Figure | Backend | Measured | Target | |\n|---|---|---|---|---|");
    for b in &r.backends {
        let label = format!("{} ×{}", b.backend, b.replicas);
        if let Some(f) = &b.kept_alive {
            let rate = |n: &str| f.mean_per_sec.get(n).map_or("–".into(), |v| format!("{v:.0}/s"));
            let _ = writeln!(
                out,
                "| 1. kept-alive check-ins | {label} | Rollgate {}, nginx {}, nginx+mTLS {}; ratio {} (vs mTLS {}) | ≥ 1.0 | {} |",
                rate("rollgate"),
                rate("nginx"),
                rate("nginx-mtls"),
                opt_ratio(f.ratio_vs_nginx),
                opt_ratio(f.ratio_vs_nginx_mtls),
                f.ratio_vs_nginx.map_or("", |x| verdict(x >= 1.0 && no_errors(&f.runs)))
            );
        }
        if let Some(f) = &b.new_connections {
            let rate = |n: &str| f.mean_per_sec.get(n).map_or("–".into(), |v| format!("{v:.0}/s"));
            let resumed: (u64, u64) = f
                .runs
                .iter()
                .filter(|x| x.target == "rollgate")
                .fold((0, 0), |(r, h), x| (r + x.resumed, h + x.handshakes));
            let _ = writeln!(
                out,
                "| 2. new mTLS connection per check-in | {label} | Rollgate {}, nginx+mTLS {}, nginx {}; ratio vs mTLS {} ({} of {} Rollgate handshakes resumed) | ≥ 0.8 | {} |",
                rate("rollgate"),
                rate("nginx-mtls"),
                rate("nginx"),
                opt_ratio(f.ratio_vs_nginx_mtls),
                resumed.0,
                resumed.1,
                f.ratio_vs_nginx_mtls.map_or("", |x| verdict(x >= 0.8 && no_errors(&f.runs)))
            );
        }
        for fleet in &b.fleets {
            let s = &fleet.steady;
            let _ = writeln!(
                out,
                "| 3. steady {:.0}/s, {} endpoints | {label} | p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, errors {} | p99 ≤ 20 ms | {} |",
                s.per_sec,
                fleet.endpoints,
                s.p50_ms,
                s.p99_ms,
                s.max_ms,
                s.errors,
                verdict(s.p99_ms <= 20.0 && s.errors == 0)
            );
        }
        for fleet in &b.fleets {
            let _ = writeln!(
                out,
                "| 4. server memory, {} endpoints | {label} | empty {:.1} MiB, idle {:.1} MiB ({:.0} B/endpoint), loaded {:.1} MiB ({:.0} B/endpoint; {} distinct endpoints checked in); enrolled in {:.1} s | ≤ 1024 B/endpoint | {} |",
                fleet.endpoints,
                fleet.rss_empty_kib as f64 / 1024.0,
                fleet.rss_idle_kib as f64 / 1024.0,
                fleet.idle_bytes_per_endpoint,
                fleet.rss_loaded_kib as f64 / 1024.0,
                fleet.loaded_bytes_per_endpoint,
                fleet.endpoints_checked_in,
                fleet.enroll_secs,
                verdict(fleet.idle_bytes_per_endpoint <= 1024.0 && fleet.loaded_bytes_per_endpoint <= 1024.0)
            );
        }
    }
    if let Some(h) = &r.handoff {
        let _ = writeln!(
            out,
            "| 5. slot hand-off | sqlite ×1 | {} endpoints, max {} in flight, {} s installs, {} s polls: {:.1} s vs ideal {:.0} s = {:.2}; vs the install time alone {:.2} (last report at {:.1} s, at most {} installing at once) | ≤ 1.2 | {} |",
            h.endpoints,
            h.max_in_flight,
            h.install_secs,
            h.poll_secs,
            h.finish_secs,
            h.ideal_secs,
            h.ratio,
            h.ratio_vs_install_time,
            h.last_report_secs,
            h.most_in_flight,
            verdict(h.ratio <= 1.2 && h.most_in_flight <= u64::from(h.max_in_flight))
        );
    }
    if let Some(d) = &r.downloads {
        let mean = |n: &str| {
            let v: Vec<&rollgate_bench::download::DownloadRun> = d.runs.iter().filter(|x| x.target == n).collect();
            (!v.is_empty()).then(|| {
                (
                    v.iter().map(|x| x.mib_per_sec).sum::<f64>() / v.len() as f64,
                    v.iter().map(|x| x.rss_peak_kib.saturating_sub(x.rss_before_kib)).max().unwrap_or(0),
                    v.iter().map(|x| x.errors).sum::<u64>(),
                )
            })
        };
        let show = |n: &str| {
            mean(n).map_or("–".to_string(), |(rate, grew, errors)| {
                format!("{rate:.0} MiB/s (memory +{:.1} MiB, errors {errors})", grew as f64 / 1024.0)
            })
        };
        let first = d.runs.first();
        let _ = writeln!(
            out,
            "| 6. downloads | sqlite ×1 | {} × {:.0} MB: Rollgate {}, nginx+mTLS {}; ratio {} | ≥ 0.9, flat memory | {} |",
            first.map_or(0, |x| x.downloads),
            first.map_or(0.0, |x| x.size_bytes as f64 / 1e6),
            show("rollgate"),
            show("nginx-mtls"),
            opt_ratio(d.ratio_vs_nginx),
            d.ratio_vs_nginx.map_or("", |x| verdict(x >= 0.9 && d.runs.iter().all(|r| r.errors == 0)))
        );
    }
    if let Some(a) = &r.agent {
        let _ = writeln!(
            out,
            "| 7. idle agent | – | {:.1} MiB resident ({:.1} MiB heap and stacks, {:.1} MiB binary pages), {:.3} % CPU over {:.0} s polling every {} s; stripped binary {:.1} MiB | ≤ 10 MB, ≤ 0.1 % | {} |",
            a.rss_mib,
            a.rss_anon_mib,
            a.rss_file_mib,
            a.cpu_percent,
            a.seconds,
            a.poll_secs,
            a.stripped_binary_mib,
            verdict(a.rss_mib * 1.048_576 <= 10.0 && a.cpu_percent <= 0.1)
        );
    }
    for failure in &r.failures {
        let _ = writeln!(out, "\nFAILED: {failure}");
    }
    out
}
