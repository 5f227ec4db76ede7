//! Campaigns through the real binary: `campaigns apply --dry-run` previews without storing,
//! `apply` creates then reports unchanged, an invalid file fails naming its field and stores
//! nothing, `list` and `show` give what was applied. The preview's month start is checked
//! against `rollgate_core::campaign::schedule`, and its advisories against fresh OSV records
//! that pass or fail the campaign's product and severity filters.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use jiff::{Timestamp, ToSpan};
use rollgate_core::campaign::schedule::{first_month, month_start};
use rollgate_core::campaign::spec::CampaignSpec;

fn example() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/campaign.toml")).to_path_buf()
}

/// An OSV record published two days ago: inside the example's first-month lookback of 30 days.
fn osv(id: &str, package: &str, severity: serde_json::Value) -> serde_json::Value {
    let published = Timestamp::now().checked_sub(48.hours()).unwrap().to_string();
    serde_json::json!({
        "schema_version": "1.6.0",
        "id": id,
        "summary": format!("{package} flaw"),
        "published": published,
        "modified": published,
        "severity": [severity],
        "affected": [{"package": {"ecosystem": "Debian:12", "name": package}}]
    })
}

fn ids(preview: &serde_json::Value) -> Vec<&str> {
    preview["advisories"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect()
}

#[test]
fn campaigns_apply_preview_and_show() {
    let server = Server::start();
    let shared = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/advisories"));
    if shared.is_dir() {
        let out = server.cli(&["advisories", "import", &shared.display().to_string()]);
        assert!(out.status.success(), "{}", stderr(&out));
    } else {
        println!("SKIPPED importing ../shared/advisories: not found");
    }
    let docs = tempfile::tempdir().unwrap();
    let critical = serde_json::json!({"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"});
    for (name, doc) in [
        ("wanted.json", osv("DEBIAN-CVE-2099-0001", "openssl", critical.clone())),
        ("low.json", osv("DEBIAN-CVE-2099-0002", "openssl", serde_json::json!({"type": "Ubuntu", "score": "low"}))),
        ("other-product.json", osv("DEBIAN-CVE-2099-0003", "nginx", critical)),
    ] {
        std::fs::write(docs.path().join(name), serde_json::to_vec(&doc).unwrap()).unwrap();
    }
    let out = server.cli(&["advisories", "import", &docs.path().display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));

    let file = example().display().to_string();
    let text = std::fs::read_to_string(example()).unwrap();
    let valid = toml::from_str::<CampaignSpec>(&text).unwrap().validate().unwrap();
    let month = first_month(&valid, Timestamp::now()).unwrap();

    // A dry run previews and stores nothing.
    let dry = server.json(&["campaigns", "apply", &file, "--dry-run"]);
    assert_eq!((&dry["created"], &dry["changed"], &dry["dry_run"]), (&true.into(), &true.into(), &true.into()));
    assert_eq!(dry["preview"]["month"], month.to_string());
    assert_eq!(dry["preview"]["start_at"], month_start(&valid, month).unwrap().to_string());
    assert_eq!(ids(&dry["preview"]), ["DEBIAN-CVE-2099-0001"], "{dry:#}");
    assert_eq!(server.json(&["campaigns", "list"]), serde_json::json!([]));

    // Applying creates, applying again changes nothing.
    let applied = server.json(&["campaigns", "apply", &file]);
    assert_eq!((&applied["created"], &applied["dry_run"]), (&true.into(), &false.into()));
    let out = server.cli(&["campaigns", "apply", &file]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("monthly-workstations: unchanged"));
    let list = server.json(&["campaigns", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "monthly-workstations");

    // An invalid step fails naming its field, and nothing is stored.
    let bad = docs.path().join("bad.toml");
    let bad_text = text.replace("name = \"monthly-workstations\"", "name = \"broken\"").replacen(
        "min_success_rate = 0.95",
        "min_success_rate = 1.5",
        1,
    );
    std::fs::write(&bad, bad_text).unwrap();
    let out = server.cli(&["campaigns", "apply", &bad.display().to_string()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("steps[0].acceptance.min_success_rate"), "{}", stderr(&out));
    assert_eq!(server.json(&["campaigns", "list"]).as_array().unwrap().len(), 1);

    // `show` gives the text as applied and the steps.
    let shown = server.json(&["campaigns", "show", "monthly-workstations"]);
    assert_eq!(shown["spec"], text);
    let steps: Vec<(&str, u64, &str)> = shown["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["soak_secs"].as_u64().unwrap(), s["progression"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [("pilot", 86_400, "auto"), ("extended-pilot", 172_800, "manual"), ("production", 172_800, "auto")]
    );
    assert_eq!(shown["steps"][0]["max_in_flight"], 50);
    assert_eq!(shown["preview"]["month"], month.to_string());
}
