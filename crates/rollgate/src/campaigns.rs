//! `rollgate campaigns`: apply a campaign file (the server validates it and previews its next
//! month), list campaigns, show one with its months, follow a month (live with `--watch`), and
//! the operator's commands: start early, pause, resume, stop, approve or retry a step, approve,
//! disapprove or reset a vulnerability, report a bad patch, and the per-device view.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use rollgate_wire::{
    BadPatchReport, CampaignApplied, CampaignCommandDone, CampaignDetail, CampaignDeviceView, CampaignMonthView,
    CampaignPreview, CampaignSummary,
};

use crate::advisories::encode;
use crate::manage::Conn;
use crate::output;

/// `rollgate campaigns`
#[derive(Subcommand, Debug)]
pub enum CampaignsCommand {
    /// Create or update a campaign from its TOML file and preview its next month.
    Apply {
        /// The campaign file (see `examples/campaign.toml`).
        file: PathBuf,
        /// Validate and preview only; store nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// List campaigns.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a campaign: its file, steps, months and next month.
    Show {
        /// Campaign name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show one month: its state, steps with their counts and rates, vulnerabilities, history.
    Month {
        /// Campaign name.
        name: String,
        /// `YYYY-MM`; the campaign's latest month when absent.
        month: Option<String>,
        /// Refresh every 2 s while the month is active or pausing (the live success rate).
        #[arg(long, conflicts_with = "json")]
        watch: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Start the latest month now, before its scheduled start (an urgent month).
    Start(MonthTarget),
    /// Pause the latest month: no new installs; those in flight finish; the soak clock stops.
    Pause(MonthTarget),
    /// Resume a month paused by an operator.
    Resume(MonthTarget),
    /// Stop a month for good (Failed); its pending installs are cancelled.
    Stop(MonthTarget),
    /// Approve a step (after its gate passed, or anyway after it failed) or retry it.
    Step {
        #[command(subcommand)]
        action: StepAction,
    },
    /// Approve, disapprove or reset one vulnerability (advisory) of a month.
    Vuln {
        #[command(subcommand)]
        action: VulnAction,
    },
    /// Per endpoint: the campaign's patches, deployed, failed, reported bad.
    Devices {
        /// Campaign name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Report that a patch broke an endpoint: it counts against the good-patch ratio.
    BadPatch {
        /// Campaign name.
        name: String,
        /// The endpoint's id.
        endpoint: String,
        /// What is wrong.
        #[arg(long)]
        reason: String,
        /// `YYYY-MM`; the latest month when absent.
        #[arg(long)]
        month: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
}

/// A campaign and, optionally, which month.
#[derive(clap::Args, Debug)]
pub struct MonthTarget {
    /// Campaign name.
    name: String,
    #[command(flatten)]
    month: MonthOptions,
}

/// `rollgate campaigns step`
#[derive(Subcommand, Debug)]
pub enum StepAction {
    /// Let the month move past the step: after its gate passed (manual progression), or
    /// anyway after its gate failed.
    Approve(StepTarget),
    /// Run the step again after its gate failed: it plans afresh and its soak starts over.
    Retry(StepTarget),
}

/// A step of a campaign month.
#[derive(clap::Args, Debug)]
pub struct StepTarget {
    /// Campaign name.
    name: String,
    /// The step's name (or index).
    step: String,
    #[command(flatten)]
    month: MonthOptions,
}

/// `--month`, `--json` and the connection of the month commands.
#[derive(clap::Args, Debug)]
pub struct MonthOptions {
    /// `YYYY-MM`; the campaign's latest month when absent.
    #[arg(long)]
    month: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Conn,
}

/// `rollgate campaigns vuln`
#[derive(Subcommand, Debug)]
pub enum VulnAction {
    /// Deploy it (explicitly approved).
    Approve(VulnTarget),
    /// Neither deploy nor count it.
    Disapprove(VulnTarget),
    /// Back to the campaign's filters deciding (deployed).
    Reset(VulnTarget),
}

/// A vulnerability of a campaign month.
#[derive(clap::Args, Debug)]
pub struct VulnTarget {
    /// Campaign name.
    name: String,
    /// The advisory's id.
    advisory: String,
    #[command(flatten)]
    month: MonthOptions,
}

/// Runs a `campaigns` command.
pub async fn run(cmd: CampaignsCommand) -> anyhow::Result<()> {
    match cmd {
        CampaignsCommand::Apply { file, dry_run, json, conn } => apply(&file, dry_run, json, &conn).await,
        CampaignsCommand::List { json, conn } => {
            let list: Vec<CampaignSummary> = conn.connect()?.get("/v1/campaigns").await?;
            if json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list.into_iter().map(|c| vec![c.name, c.updated_at]).collect();
            output::table(&["NAME", "UPDATED"], &rows);
            Ok(())
        }
        CampaignsCommand::Month { name, month, watch, json, conn } => {
            show_month(&name, month.as_deref(), watch, json, &conn).await
        }
        CampaignsCommand::Start(t) => month_command(&t, "start").await,
        CampaignsCommand::Pause(t) => month_command(&t, "pause").await,
        CampaignsCommand::Resume(t) => month_command(&t, "resume").await,
        CampaignsCommand::Stop(t) => month_command(&t, "stop").await,
        CampaignsCommand::Step { action } => {
            let (t, verb) = match &action {
                StepAction::Approve(t) => (t, "approve"),
                StepAction::Retry(t) => (t, "retry"),
            };
            let path = format!("/v1/campaigns/{}/steps/{}/{verb}", encode(&t.name), encode(&t.step));
            command(&path, &t.month).await
        }
        CampaignsCommand::Vuln { action } => {
            let (t, verb) = match &action {
                VulnAction::Approve(t) => (t, "approve"),
                VulnAction::Disapprove(t) => (t, "disapprove"),
                VulnAction::Reset(t) => (t, "reset"),
            };
            let path = format!("/v1/campaigns/{}/vulns/{}/{verb}", encode(&t.name), encode(&t.advisory));
            command(&path, &t.month).await
        }
        CampaignsCommand::Devices { name, json, conn } => {
            let devices: Vec<CampaignDeviceView> =
                conn.connect()?.get(&format!("/v1/campaigns/{}/devices", encode(&name))).await?;
            if json {
                return output::json(&devices);
            }
            let rows: Vec<Vec<String>> = devices
                .into_iter()
                .map(|d| {
                    vec![
                        d.endpoint,
                        d.hostname,
                        d.patches.to_string(),
                        d.deployed.to_string(),
                        d.failed.to_string(),
                        d.bad.to_string(),
                    ]
                })
                .collect();
            output::table(&["ENDPOINT", "HOSTNAME", "PATCHES", "DEPLOYED", "FAILED", "BAD"], &rows);
            Ok(())
        }
        CampaignsCommand::BadPatch { name, endpoint, reason, month, conn } => {
            let body = BadPatchReport { endpoint, reason, month };
            let done: CampaignCommandDone =
                conn.connect()?.post(&format!("/v1/campaigns/{}/bad-patch", encode(&name)), &body).await?;
            println!("{}: {}", done.month, done.message);
            Ok(())
        }
        CampaignsCommand::Show { name, json, conn } => {
            let detail: CampaignDetail = conn.connect()?.get(&format!("/v1/campaigns/{}", encode(&name))).await?;
            if json {
                return output::json(&detail);
            }
            println!("campaign {} (created {}, updated {})", detail.name, detail.created_at, detail.updated_at);
            let rows: Vec<Vec<String>> = detail
                .steps
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        s.targets.clone(),
                        s.max_in_flight.to_string(),
                        s.soak_secs.to_string(),
                        s.progression.clone(),
                    ]
                })
                .collect();
            output::table(&["STEP", "TARGETS", "MAX-IN-FLIGHT", "SOAK-SECS", "PROGRESSION"], &rows);
            if !detail.months.is_empty() {
                let rows: Vec<Vec<String>> = detail
                    .months
                    .iter()
                    .map(|m| {
                        vec![
                            m.month.clone(),
                            m.start_at.clone(),
                            state_words(&m.requested, &m.effective),
                            m.step.clone(),
                            m.reason.clone(),
                        ]
                    })
                    .collect();
                output::table(&["MONTH", "START", "STATE", "STEP", "REASON"], &rows);
            }
            print_preview(&detail.preview);
            Ok(())
        }
    }
}

/// `effective`, or `effective (requested X)` while they differ.
fn state_words(requested: &str, effective: &str) -> String {
    if requested == effective {
        effective.to_owned()
    } else {
        format!("{effective} (requested {requested})")
    }
}

async fn month_command(t: &MonthTarget, verb: &str) -> anyhow::Result<()> {
    command(&format!("/v1/campaigns/{}/{verb}", encode(&t.name)), &t.month).await
}

async fn command(path: &str, t: &MonthOptions) -> anyhow::Result<()> {
    let path = match &t.month {
        Some(m) => format!("{path}?month={}", encode(m)),
        None => path.to_owned(),
    };
    let done: CampaignCommandDone = t.conn.connect()?.post(&path, &serde_json::json!({})).await?;
    if t.json {
        return output::json(&done);
    }
    println!("{} {}: {}", done.month, state_words(&done.requested, &done.effective), done.message);
    Ok(())
}

async fn show_month(name: &str, month: Option<&str>, watch: bool, json: bool, conn: &Conn) -> anyhow::Result<()> {
    let api = conn.connect()?;
    let path = format!("/v1/campaigns/{}/months/{}", encode(name), encode(month.unwrap_or("current")));
    loop {
        let view: CampaignMonthView = api.get(&path).await?;
        if json {
            return output::json(&view);
        }
        if watch {
            // Clear the screen and go home, as `watch(1)` does.
            print!("\x1b[2J\x1b[H");
        }
        print_month(&view);
        let live = matches!(view.effective.as_str(), "active" | "pausing");
        if !watch || !live {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

fn print_month(v: &CampaignMonthView) {
    println!(
        "campaign {} month {}: {} (starts {})\n  {}",
        v.campaign,
        v.month,
        state_words(&v.requested, &v.effective),
        v.start_at,
        v.reason
    );
    let pct = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0));
    let rows: Vec<Vec<String>> = v
        .steps
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.status.clone(),
                s.targeted.to_string(),
                s.attempted.to_string(),
                s.succeeded.to_string(),
                s.failed.to_string(),
                s.no_shows.to_string(),
                s.in_flight.to_string(),
                pct(s.success_rate),
                pct(s.good_patch_ratio),
                match s.status.as_str() {
                    "running" | "held" | "awaiting-approval" => format!("{}/{}s", s.soaked_secs, s.soak_secs),
                    _ => format!("-/{}s", s.soak_secs),
                },
            ]
        })
        .collect();
    output::table(
        &[
            "STEP",
            "STATUS",
            "TARGETED",
            "ATTEMPTED",
            "SUCCEEDED",
            "FAILED",
            "NO-SHOWS",
            "IN-FLIGHT",
            "SUCCESS",
            "GOOD-PATCH",
            "SOAKED",
        ],
        &rows,
    );
    for s in &v.steps {
        if !s.deploys.is_empty() {
            println!("{} deploys {}", s.name, s.deploys.join(", "));
        }
    }
    for s in v.steps.iter().filter(|s| s.gate.is_some()) {
        println!("gate of {}: {}", s.name, s.gate.as_deref().unwrap_or_default());
    }
    if !v.vulnerabilities.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = v
            .vulnerabilities
            .iter()
            .map(|x| {
                let fix = if x.needs_package.is_empty() {
                    x.fix_packages.join(" ")
                } else {
                    format!("{} NEEDS PACKAGE: {}", x.fix_packages.join(" "), x.needs_package.join(" "))
                        .trim()
                        .to_owned()
                };
                vec![
                    x.id.clone(),
                    x.approval.clone(),
                    x.affected.to_string(),
                    x.rating.clone().unwrap_or_default(),
                    fix,
                ]
            })
            .collect();
        output::table(&["ADVISORY", "APPROVAL", "AFFECTED", "RATING", "FIX"], &rows);
    }
    if !v.transitions.is_empty() {
        println!();
        for t in &v.transitions {
            println!("{}  {} -> {}  {}", t.at, t.from, t.to, t.reason);
        }
    }
}

async fn apply(file: &Path, dry_run: bool, json: bool, conn: &Conn) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("while reading {}", file.display()))?;
    // Only the name is read here, to address the campaign; the server checks everything else.
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not a TOML campaign file", file.display()))?;
    let name = table
        .get("name")
        .and_then(toml::Value::as_str)
        .with_context(|| format!("{} has no `name` string", file.display()))?;
    let path = format!("/v1/campaigns/{}?dry_run={dry_run}", encode(name));
    let applied: CampaignApplied = conn
        .connect()?
        .put_bytes(&path, text.into_bytes())
        .await
        .with_context(|| format!("while applying {}", file.display()))?;
    if json {
        return output::json(&applied);
    }
    let what = match (applied.created, applied.changed) {
        (true, _) => "created",
        (false, true) => "updated",
        (false, false) => "unchanged",
    };
    if applied.dry_run {
        println!("campaign {name}: would be {what} (dry run: nothing stored)");
    } else {
        println!("campaign {name}: {what}");
    }
    print_preview(&applied.preview);
    Ok(())
}

fn print_preview(p: &CampaignPreview) {
    println!(
        "next month {}: starts {}; collects advisories published from {} to {}",
        p.month, p.start_at, p.window_from, p.window_to
    );
    if p.advisories.is_empty() {
        println!("no stored advisory matches yet");
        return;
    }
    let rows: Vec<Vec<String>> = p
        .advisories
        .iter()
        .map(|a| {
            vec![
                a.id.clone(),
                a.publisher.clone(),
                a.rating.clone().unwrap_or_default(),
                a.max_score.map(|s| format!("{s:.1}")).unwrap_or_default(),
                a.title.clone(),
            ]
        })
        .collect();
    output::table(&["ID", "PUBLISHER", "RATING", "CVSS", "TITLE"], &rows);
}
