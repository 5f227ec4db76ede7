//! Advisories through the real binary: `advisories import` of the published documents in
//! `shared/advisories` (format detected, per-file errors that do not stop the others, a second
//! import that changes nothing), `advisories list` and `show`, and matching against what a real
//! agent reports from this machine's dpkg database.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn shared_advisories() -> Option<std::path::PathBuf> {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/advisories")).to_path_buf();
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("SKIPPED: ../shared/advisories not found");
        None
    }
}

fn import(server: &Server, paths: &[&Path]) -> (bool, serde_json::Value, String) {
    let mut args = vec!["advisories".to_string(), "import".into(), "--json".into()];
    args.extend(paths.iter().map(|p| p.display().to_string()));
    let out = server.cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.success(), json, stderr(&out))
}

fn by_file<'a>(results: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    results.as_array().unwrap().iter().find(|r| r["file"].as_str().unwrap().ends_with(name)).unwrap()
}

#[test]
fn published_documents_import_once_and_damaged_ones_fail_alone() {
    let Some(shared) = shared_advisories() else { return };
    let server = Server::start();
    let (ok, results, err) = import(&server, &[&shared]);
    assert!(ok, "import failed: {err}\n{results:#}");
    let list = results.as_array().unwrap();
    let imported = list.iter().filter(|r| r["status"] == "imported").count();
    assert_eq!(imported, 15, "{results:#}");
    assert_eq!(by_file(&results, "kev_schema.json")["status"], "skipped", "a schema is not a document");
    assert_eq!(by_file(&results, "osv_debian_DSA-3029-1_nginx.json")["import"]["items"][0]["outcome"], "new");
    let kev = &by_file(&results, "kev_catalog_EXCERPT_2025-08-25.json")["import"];
    assert_eq!(kev["format"], "kev");
    assert!(kev["items"].as_array().unwrap().len() > 40);

    // Again: nothing changes.
    let (ok, again, _) = import(&server, &[&shared]);
    assert!(ok);
    for r in again.as_array().unwrap().iter().filter(|r| r["status"] == "imported") {
        for item in r["import"]["items"].as_array().unwrap() {
            assert_eq!(item["outcome"], "unchanged", "{}: {item}", r["file"]);
        }
    }

    // A damaged file fails with its reason; the good one beside it still imports.
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read(shared.join("osv_ghsa_GHSA-838r-hvwh-24h8_maven.json")).unwrap();
    std::fs::write(dir.path().join("truncated.json"), &original[..original.len() / 2]).unwrap();
    std::fs::copy(shared.join("csaf20_rhsa-2022_0011.json"), dir.path().join("rhsa.json")).unwrap();
    let (ok, results, _) = import(&server, &[dir.path()]);
    assert!(!ok, "a failed file makes the command fail");
    assert_eq!(by_file(&results, "truncated.json")["status"], "error");
    assert!(by_file(&results, "truncated.json")["reason"].as_str().unwrap().contains("damaged JSON"), "{results:#}");
    assert_eq!(by_file(&results, "rhsa.json")["status"], "imported");

    // Listing and showing.
    let nginx = server.json(&["advisories", "list", "--product", "nginx"]);
    let ids: Vec<&str> = nginx.as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["DSA-3029-1"]);
    let critical = server.json(&["advisories", "list", "--severity", "critical"]);
    let ids: Vec<&str> = critical.as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"GHSA-838r-hvwh-24h8") && ids.contains(&"RHSA-2021:5186"), "{ids:?}");
    assert!(!ids.contains(&"DSA-3029-1"));
    let since = server.json(&["advisories", "list", "--since", "2024-01-01"]);
    let ids: Vec<&str> = since.as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["USN-6937-1", "UBUNTU-CVE-2025-38094", "2024-Jun", "ICSA-24-074-03"], "newest first");
    let shown = server.json(&["advisories", "show", "RHSA-2022:0011"]);
    assert_eq!(shown[0]["publisher"], "Red Hat Product Security");
    assert_eq!(shown[0]["cves"][0], "CVE-2020-10188");
    // KEV marks the advisories whose CVEs CISA lists (CVE-2021-44228 is in the excerpt).
    let vex = server.json(&["advisories", "show", "2022-EVD-UC-01-F-001"]);
    assert_eq!(vex[0]["known_exploited"], true, "{vex:#}");
    assert!(vex[0]["kev"]["CVE-2021-44228"]["date_added"] == "2021-12-10");
    // An older KEV catalog (by its release time) changes nothing.
    let mut older: serde_json::Value =
        serde_json::from_slice(&std::fs::read(shared.join("kev_catalog_EXCERPT_2025-08-25.json")).unwrap()).unwrap();
    older["dateReleased"] = "2025-01-01T00:00:00Z".into();
    for entry in older["vulnerabilities"].as_array_mut().unwrap() {
        entry["dueDate"] = "2030-01-01".into();
    }
    std::fs::write(dir.path().join("kev-older.json"), older.to_string()).unwrap();
    let (ok, results, _) = import(&server, &[&dir.path().join("kev-older.json")]);
    assert!(ok, "{results:#}");
    let items = results[0]["import"]["items"].as_array().unwrap();
    assert!(items.iter().all(|i| i["outcome"] == "older"), "{results:#}");

    // CVE records, with their CPE ranges and KEV facts.
    let webp = server.json(&["advisories", "cve", "CVE-2023-4863"]);
    assert_eq!(webp["kev"]["date_added"], "2023-09-13");
    assert_eq!(webp["kev"]["due_date"], "2023-10-04");
    assert!(webp["record"]["cpes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["criteria"].as_str().unwrap().contains("libwebp")));
    let xz = server.json(&["advisories", "cve", "CVE-2024-3094"]);
    assert_eq!(xz["record"]["cvss"][0]["base_score"], 10.0);
    let log4shell = server.json(&["advisories", "cve", "CVE-2021-44228"]);
    assert_eq!(log4shell["record"], serde_json::Value::Null, "known from KEV and an advisory only");
    assert_eq!(log4shell["advisories"][0][1], "2022-EVD-UC-01-F-001");
    let out = server.cli(&["advisories", "show", "NO-SUCH-1"]);
    assert!(!out.status.success() && stderr(&out).contains("no advisory NO-SUCH-1"));
}

/// An advisory for this machine's own platform naming its `dpkg` package: affected when the
/// fix is above the installed version, not when below. The inventory is the real one the agent
/// reads from /var/lib/dpkg/status.
#[test]
fn a_real_agents_dpkg_inventory_is_matched_exactly() {
    let Ok(os_release) = std::fs::read_to_string("/etc/os-release") else {
        println!("SKIPPED: no /etc/os-release");
        return;
    };
    if !Path::new("/var/lib/dpkg/status").exists() {
        println!("SKIPPED: no dpkg database on this machine");
        return;
    }
    let field = |key: &str| {
        os_release.lines().find_map(|l| l.strip_prefix(&format!("{key}=")).map(|v| v.trim_matches('"').to_string()))
    };
    let (Some(id), Some(version)) = (field("ID"), field("VERSION_ID")) else {
        println!("SKIPPED: /etc/os-release gives no ID and VERSION_ID");
        return;
    };
    let ecosystem = match id.as_str() {
        "debian" => "Debian",
        "ubuntu" => "Ubuntu",
        _ => {
            println!("SKIPPED: not Debian or Ubuntu ({id})");
            return;
        }
    };
    let server = Server::start();
    let token = server.token(1);
    let agent = server.agent("host-0", &token, &[]);
    let endpoint = server.wait_endpoints(1)[0]["id"].as_str().unwrap().to_string();
    wait_for("the package list", Duration::from_secs(60), || {
        server.json(&["endpoints", "show", &endpoint])["packages"].as_u64().unwrap_or(0) > 0
    });
    let dir = tempfile::tempdir().unwrap();
    let osv = |id: &str, fixed: &str| {
        serde_json::json!({
            "id": id, "summary": format!("dpkg test {id}"), "modified": "2026-01-01T00:00:00Z",
            "published": "2026-01-01T00:00:00Z", "aliases": [format!("CVE-2099-{}", &id[4..])],
            "affected": [{"package": {"ecosystem": format!("{ecosystem}:{version}"), "name": "dpkg"},
                          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}]
        })
    };
    std::fs::write(dir.path().join("above.json"), osv("TST-0001", "99:1.0").to_string()).unwrap();
    std::fs::write(dir.path().join("below.json"), osv("TST-0002", "0.1").to_string()).unwrap();
    let (ok, results, err) = import(&server, &[dir.path()]);
    assert!(ok, "{err} {results:#}");

    let above = server.json(&["advisories", "show", "TST-0001", "--affected"]);
    let affected = above[0]["affected"].as_array().unwrap();
    assert_eq!(affected.len(), 1, "{above:#}");
    assert_eq!(affected[0]["endpoint"], endpoint.as_str());
    assert_eq!(affected[0]["findings"][0]["software"], "dpkg");
    assert_eq!(affected[0]["findings"][0]["fixed_version"], "99:1.0");
    let below = server.json(&["advisories", "show", "TST-0002", "--affected"]);
    assert!(below[0]["affected"].as_array().unwrap().is_empty(), "{below:#}");

    let shown = server.json(&["endpoints", "show", &endpoint]);
    assert_eq!(shown["platform"], format!("{id} {version}"));
    let open: Vec<&str> =
        shown["vulnerabilities"].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(open, ["TST-0001"]);
    drop(agent);
}
