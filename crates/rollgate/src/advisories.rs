//! `rollgate advisories`: import documents (files and directories, format detected by the
//! server), list advisories, show one with the endpoints it affects.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use rollgate_wire::{AdvisoryDetail, AdvisoryImport, AdvisorySummary};

use crate::manage::Conn;
use crate::output;

/// `rollgate advisories`
#[derive(Subcommand, Debug)]
pub enum AdvisoriesCommand {
    /// Import CSAF, OSV, CVRF, CVE JSON 5, NVD API 2.0 or KEV documents (files or directories).
    Import {
        /// Files and directories (directories are read recursively, `.json` and `.xml` files).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// List advisories, newest first.
    List {
        /// Only those naming this product or package.
        #[arg(long)]
        product: Option<String>,
        /// `critical`, `high`, `medium`, `low`, or a publisher's word (`important`).
        #[arg(long)]
        severity: Option<String>,
        /// Only those updated since (a date or an RFC 3339 time).
        #[arg(long)]
        since: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show what is known of a CVE: its record (CVE JSON 5 or NVD), KEV facts, advisories.
    Cve {
        /// `CVE-2024-3094`.
        id: String,
        /// Also list the endpoints its record's affected products match now.
        #[arg(long)]
        affected: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show an advisory (every publisher's with that id).
    Show {
        /// Advisory id (`RHSA-2022:0011`, `DSA-3029-1`).
        id: String,
        /// Also list the endpoints it affects now.
        #[arg(long)]
        affected: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

/// What became of one file.
#[derive(Debug, serde::Serialize)]
struct FileResult {
    file: String,
    /// `imported`, `skipped` or `error`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    import: Option<AdvisoryImport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Runs an `advisories` command.
pub async fn run(cmd: AdvisoriesCommand) -> anyhow::Result<()> {
    match cmd {
        AdvisoriesCommand::Import { paths, json, conn } => import(&paths, json, &conn).await,
        AdvisoriesCommand::List { product, severity, since, json, conn } => {
            let mut query = Vec::new();
            for (key, value) in [("product", product), ("severity", severity), ("since", since)] {
                if let Some(v) = value {
                    query.push(format!("{key}={}", encode(&v)));
                }
            }
            let path =
                if query.is_empty() { "/v1/advisories".into() } else { format!("/v1/advisories?{}", query.join("&")) };
            let list: Vec<AdvisorySummary> = conn.connect()?.get(&path).await?;
            if json {
                return output::json(&list);
            }
            print_list(&list);
            Ok(())
        }
        AdvisoriesCommand::Cve { id, affected, json, conn } => {
            let path = format!("/v1/cves/{}{}", encode(&id), if affected { "?affected=true" } else { "" });
            let cve: rollgate_wire::CveDetail = conn.connect()?.get(&path).await?;
            if json {
                return output::json(&cve);
            }
            print_cve(&cve);
            Ok(())
        }
        AdvisoriesCommand::Show { id, affected, json, conn } => {
            let path = format!("/v1/advisories/{}{}", encode(&id), if affected { "?affected=true" } else { "" });
            let details: Vec<AdvisoryDetail> = conn.connect()?.get(&path).await?;
            if json {
                return output::json(&details);
            }
            for d in &details {
                print_detail(d);
            }
            Ok(())
        }
    }
}

/// Percent-encodes a query or path value (ids hold `:`; products may hold anything).
pub(crate) fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The files to import: named files as given; directories walked in name order, keeping
/// `.json` and `.xml` files (as a `dir` feed does; symbolic links to directories are not
/// followed). The bool says whether the file was named (then a document of no
/// known format is an error, not a skip).
fn files(paths: &[PathBuf]) -> anyhow::Result<Vec<(PathBuf, bool)>> {
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
        if meta.is_dir() {
            out.extend(rollgate_server::feeds::list_documents(path)?.into_iter().map(|p| (p, false)));
        } else {
            out.push((path.clone(), true));
        }
    }
    Ok(out)
}

async fn import(paths: &[PathBuf], json: bool, conn: &Conn) -> anyhow::Result<()> {
    let api = conn.connect()?;
    let files = files(paths)?;
    let bar = ProgressBar::new(files.len() as u64);
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")?);
    if json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut results = Vec::with_capacity(files.len());
    for (path, named) in files {
        bar.set_message(path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        let result = import_one(&api, &path, named).await?;
        if !json {
            bar.suspend(|| print_result(&result));
        }
        results.push(result);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let errors = results.iter().filter(|r| r.status == "error").count();
    if json {
        output::json(&results)?;
    } else {
        let imported = results.iter().filter(|r| r.status == "imported").count();
        let skipped = results.iter().filter(|r| r.status == "skipped").count();
        println!("{imported} imported, {skipped} skipped, {errors} failed");
    }
    if errors > 0 {
        anyhow::bail!("{errors} file(s) could not be imported");
    }
    Ok(())
}

async fn import_one(api: &crate::manage::Api, path: &Path, named: bool) -> anyhow::Result<FileResult> {
    let file = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return Ok(FileResult { file, status: "error", import: None, reason: Some(e.to_string()) }),
    };
    Ok(match api.post_bytes_or_refusal::<AdvisoryImport>("/v1/advisories", bytes).await? {
        Ok(import) => FileResult { file, status: "imported", import: Some(import), reason: None },
        Err((code, message)) if code == "unknown_format" && !named => {
            FileResult { file, status: "skipped", import: None, reason: Some(message) }
        }
        Err((_, message)) => FileResult { file, status: "error", import: None, reason: Some(message) },
    })
}

fn print_result(r: &FileResult) {
    match (&r.import, &r.reason) {
        (Some(import), _) => {
            let mut counts = std::collections::BTreeMap::<&str, usize>::new();
            for item in &import.items {
                *counts.entry(item.outcome.as_str()).or_default() += 1;
            }
            let counts: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
            let first = import.items.first().map(|i| i.id.as_str()).unwrap_or("");
            let what =
                if import.items.len() == 1 { first.to_string() } else { format!("{} records", import.items.len()) };
            println!("{}: {} {what} ({})", r.file, import.format, counts.join(", "));
        }
        (None, Some(reason)) if r.status == "skipped" => println!("{}: skipped ({reason})", r.file),
        (None, reason) => eprintln!("{}: error: {}", r.file, reason.as_deref().unwrap_or("unknown")),
    }
}

fn score(s: Option<f64>) -> String {
    s.map(|s| format!("{s:.1}")).unwrap_or_default()
}

fn print_list(list: &[AdvisorySummary]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|a| {
            vec![
                a.id.clone(),
                a.publisher.clone(),
                a.updated.clone().or_else(|| a.published.clone()).unwrap_or_default(),
                a.rating.clone().unwrap_or_default(),
                score(a.max_score),
                if a.known_exploited { "yes".into() } else { String::new() },
                a.cves.len().to_string(),
                a.title.chars().take(60).collect(),
            ]
        })
        .collect();
    output::table(&["ID", "PUBLISHER", "UPDATED", "RATING", "CVSS", "EXPLOITED", "CVES", "TITLE"], &rows);
}

fn print_detail(d: &AdvisoryDetail) {
    let s = &d.summary;
    println!("{} ({}, {}): {}", s.id, s.publisher, s.format, s.title);
    println!("published {}, updated {}", s.published.as_deref().unwrap_or("-"), s.updated.as_deref().unwrap_or("-"));
    println!("rating {}, highest CVSS {}", s.rating.as_deref().unwrap_or("-"), score(s.max_score));
    println!("CVEs: {}", s.cves.join(", "));
    for (cve, kev) in &d.kev {
        println!(
            "known exploited: {cve} (KEV since {}, due {})",
            kev.date_added,
            kev.due_date.as_deref().unwrap_or("-")
        );
    }
    if let Some(affected) = d.document.get("affected").and_then(|a| a.as_array()) {
        let rows: Vec<Vec<String>> = affected
            .iter()
            .map(|a| {
                let text = |k: &str| a.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
                let fixed: Vec<String> = a
                    .get("ranges")
                    .and_then(|r| r.as_array())
                    .map(|r| {
                        r.iter().filter_map(|r| r.get("fixed").and_then(|f| f.as_str()).map(str::to_string)).collect()
                    })
                    .unwrap_or_default();
                vec![text("product"), text("platform"), text("ecosystem"), fixed.join(", ")]
            })
            .collect();
        output::table(&["PRODUCT", "PLATFORM", "VERSION ORDER", "FIXED IN"], &rows);
    }
    if let Some(endpoints) = &d.affected {
        println!("{} endpoint(s) affected now", endpoints.len());
        let rows: Vec<Vec<String>> = endpoints
            .iter()
            .flat_map(|e| {
                e.findings.iter().map(move |f| {
                    let text = |k: &str| f.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
                    vec![
                        e.endpoint.clone(),
                        e.hostname.clone(),
                        text("software"),
                        text("installed_version"),
                        text("fixed_version"),
                    ]
                })
            })
            .collect();
        output::table(&["ENDPOINT", "HOST", "SOFTWARE", "INSTALLED", "FIXED IN"], &rows);
    }
}

/// `rollgate feeds`
#[derive(Subcommand, Debug)]
pub enum FeedsCommand {
    /// Add a feed for the server to poll.
    Add {
        /// Unique name.
        name: String,
        /// `csaf` (a provider-metadata.json URL), `osv` (a zip archive URL) or `dir` (a directory on the server).
        #[arg(long, value_parser = ["csaf", "osv", "dir"])]
        kind: String,
        /// The URL (or, for `dir`, the absolute path on the server).
        #[arg(long)]
        url: String,
        /// Time between runs (`6h`, `30m`).
        #[arg(long, default_value = "6h", value_parser = crate::manage::parse_duration_secs)]
        every: u64,
        /// A CA certificate (PEM) to trust for this feed besides the public roots.
        #[arg(long)]
        feed_ca: Option<PathBuf>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List feeds and their last runs.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Run a feed now and show what it did.
    Run {
        /// Feed name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// A feed's recent runs, newest first.
    Runs {
        /// Feed name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Runs a `feeds` command.
pub async fn feeds(cmd: FeedsCommand) -> anyhow::Result<()> {
    use rollgate_wire::{CreateFeed, FeedRunView, FeedView};
    match cmd {
        FeedsCommand::Add { name, kind, url, every, feed_ca, conn } => {
            let ca_pem = feed_ca
                .map(|p| std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display())))
                .transpose()?;
            let created: FeedView = conn
                .connect()?
                .post("/v1/feeds", &CreateFeed { name, kind, url, ca_pem, interval_secs: every })
                .await?;
            println!("feed {} added; first run {}", created.name, created.next_run_at);
            Ok(())
        }
        FeedsCommand::List { json, conn } => {
            let list: Vec<FeedView> = conn.connect()?.get("/v1/feeds").await?;
            if json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|f| {
                    let last = f.last_run.as_ref().map(run_summary).unwrap_or_else(|| "never run".into());
                    vec![f.name.clone(), f.kind.clone(), f.url.clone(), f.next_run_at.clone(), last]
                })
                .collect();
            output::table(&["NAME", "KIND", "URL", "NEXT RUN", "LAST RUN"], &rows);
            Ok(())
        }
        FeedsCommand::Run { name, json, conn } => {
            let path = format!("/v1/feeds/{}/run", encode(&name));
            let run: FeedRunView = conn.connect()?.post(&path, &serde_json::json!({})).await?;
            if json {
                return output::json(&run);
            }
            println!("{}", run_summary(&run));
            for e in &run.errors {
                eprintln!("error: {e}");
            }
            Ok(())
        }
        FeedsCommand::Runs { name, json, conn } => {
            let runs: Vec<FeedRunView> = conn.connect()?.get(&format!("/v1/feeds/{}/runs", encode(&name))).await?;
            if json {
                return output::json(&runs);
            }
            for r in &runs {
                println!("{}", run_summary(r));
            }
            Ok(())
        }
    }
}

fn run_summary(r: &rollgate_wire::FeedRunView) -> String {
    format!(
        "{}: {} requests, {} downloaded, {} imported, {} unchanged, {} failed",
        r.started_at, r.requests, r.downloaded, r.imported, r.unchanged, r.failed
    )
}

fn print_cve(c: &rollgate_wire::CveDetail) {
    let record = c.record.as_ref();
    let text = |k: &str| record.and_then(|r| r.get(k)).and_then(|v| v.as_str()).unwrap_or("-").to_string();
    println!("{}: {}", c.id, text("title"));
    println!("published {}, updated {}", text("published"), text("updated"));
    let scores: Vec<String> = record
        .and_then(|r| r.get("cvss"))
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|s| s.get("vector").and_then(|v| v.as_str()).map(str::to_string)).collect())
        .unwrap_or_default();
    println!("CVSS: {}", if scores.is_empty() { "-".to_string() } else { scores.join(", ") });
    match &c.kev {
        Some(k) => {
            println!("known exploited: KEV since {}, due {}", k.date_added, k.due_date.as_deref().unwrap_or("-"))
        }
        None => println!("known exploited: not in the KEV catalog"),
    }
    let cpes: Vec<Vec<String>> = record
        .and_then(|r| r.get("cpes"))
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .map(|m| {
                    let f = |k: &str| m.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
                    vec![
                        f("criteria"),
                        f("start_including"),
                        f("start_excluding"),
                        f("end_including"),
                        f("end_excluding"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    if !cpes.is_empty() {
        output::table(&["CPE", "FROM (INCL)", "FROM (EXCL)", "TO (INCL)", "TO (EXCL)"], &cpes);
    }
    for (publisher, id) in &c.advisories {
        println!("advisory: {id} ({publisher})");
    }
    if let Some(endpoints) = &c.affected {
        println!("{} endpoint(s) affected now", endpoints.len());
        for e in endpoints {
            println!("  {} ({})", e.endpoint, e.hostname);
        }
    }
}
