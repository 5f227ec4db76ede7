//! `rollgate campaigns`: apply a campaign file (the server validates it and previews its next
//! month), list campaigns, show one.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use rollgate_wire::{CampaignApplied, CampaignDetail, CampaignPreview, CampaignSummary};

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
    /// Show a campaign: its file, steps and next month.
    Show {
        /// Campaign name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
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
            print_preview(&detail.preview);
            Ok(())
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
