//! A campaign month end to end, with a real server, real agents, a real SMTP server and a real
//! webhook receiver: a two-step campaign with seconds-long soaks through a passing gate and a
//! failing one.
//!
//! Five agents run `sample` 1.0.0, the pilot's also `tool` 1.0.0. CSAF advisories say `sample`
//! below 2.0.0 and `tool` below 2.0.0 are affected, and both 2.0.0 are in the package store; a
//! third asks for `sample` 3.0.0, which is not, and is shown as needing a package until the
//! operator disapproves it. The campaign's `pilot` step (auto) deploys both packages and passes
//! its gate after its soak; its recipients get `step_completed` by email and webhook. A third
//! pilot endpoint is offline for the whole month: it is a no-show (neither in the sample nor a
//! failure), and the second package still deploys once the first one's set has only it left
//! waiting. The `broad` step (two endpoints where `sample` 2.0.0's health check fails, manual)
//! rolls back everywhere and fails its gate: the month pauses with the gate's reason,
//! `gate_failed` is sent; a retry (run 2, sets of its own) fails again, and the operator
//! approves anyway, which completes the month and schedules the next one, which the operator
//! then stops before its start (Failed; the one after is scheduled). An endpoint enrolling afterwards is patched by the last step's
//! global autofix. Along the way: pause and resume during the pilot, the month and devices
//! views, a bad-patch report.
//!
//! Email needs Python's aiosmtpd (see `rollgate-server/tests/notify.rs`); without it the test
//! says it skipped.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use jiff::{Timestamp, ToSpan};
use serde_json::Value;

// ------------------------------------------------------------------ the SMTP server

/// A Python with aiosmtpd, as `rollgate-server/tests/notify.rs` finds it.
fn smtp_python() -> Option<PathBuf> {
    if let Some(python) = std::env::var_os("ROLLGATE_PYTHON_SMTP") {
        return Some(PathBuf::from(python));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/python-tuf/bin/python");
    [venv, PathBuf::from("python3")].into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// `rollgate-server/tests/smtp_server.py` in STARTTLS mode, with a certificate for 127.0.0.1
/// from a CA of our own; killed on drop.
struct Smtp {
    child: Child,
    port: u16,
    out: tempfile::TempDir,
    ca: PathBuf,
    _stdin: ChildStdin,
    _stdout: BufReader<ChildStdout>,
}

impl Smtp {
    fn start(python: &Path) -> Smtp {
        let out = tempfile::tempdir().unwrap();
        let ca = rollgate_pki::Ca::generate("e2e SMTP CA").unwrap();
        let (cert, key) = ca.issue_server_cert(&["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let write = |name: &str, pem: &str| {
            let path = out.path().join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        let (ca_path, cert_path, key_path) =
            (write("ca.pem", ca.cert_pem()), write("cert.pem", &cert), write("key.pem", &key));
        let messages = out.path().join("messages");
        std::fs::create_dir(&messages).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rollgate-server/tests/smtp_server.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(["--mode", "starttls", "--out"])
            .arg(&messages)
            .arg("--cert")
            .arg(&cert_path)
            .arg("--key")
            .arg(&key_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("PORT ").and_then(|p| p.parse().ok());
        let port = port.unwrap_or_else(|| panic!("smtp_server.py did not start (said {line:?})"));
        Smtp { child, port, out, ca: ca_path, _stdin: stdin, _stdout: stdout }
    }

    fn messages(&self) -> Vec<Value> {
        let dir = self.out.path().join("messages");
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort_by_key(|p| p.file_stem().and_then(|s| s.to_str()?.parse::<u32>().ok()));
        files.iter().map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()).collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------ the webhook receiver

/// A plain HTTP/1.1 server on loopback that answers 204 to every POST and keeps the JSON bodies.
struct Hooks {
    url: String,
    received: Arc<Mutex<Vec<Value>>>,
}

impl Hooks {
    fn start() -> Hooks {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks/patching", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if let Some(body) = read_request(stream) {
                    sink.lock().unwrap().push(body);
                }
            }
        });
        Hooks { url, received }
    }

    fn events(&self) -> Vec<(String, String)> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|v| (v["event"].as_str().unwrap().to_string(), v["step"].as_str().unwrap().to_string()))
            .collect()
    }
}

/// Reads one request (headers, then `Content-Length` bytes), answers 204, returns the body.
fn read_request(mut stream: std::net::TcpStream) -> Option<Value> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    stream.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").ok()?;
    serde_json::from_slice(&body).ok()
}

// ------------------------------------------------------------------ the documents

/// A CSAF advisory from "Acme" for `product` below `fixed`, published yesterday.
fn csaf(id: &str, cve: &str, product: &str, fixed: &str) -> Value {
    let published = Timestamp::now().checked_sub(24.hours()).unwrap().to_string();
    serde_json::json!({
        "document": {
            "category": "csaf_security_advisory",
            "csaf_version": "2.0",
            "publisher": {"category": "vendor", "name": "Acme", "namespace": "https://acme.example"},
            "title": format!("{id}: {product} before {fixed}"),
            "aggregate_severity": {"text": "High"},
            "tracking": {
                "id": id,
                "status": "final",
                "version": "1",
                "initial_release_date": published,
                "current_release_date": published,
                "revision_history": [{"date": published, "number": "1", "summary": "Initial"}],
                "generator": {"engine": {"name": "hand"}}
            }
        },
        "product_tree": {"branches": [{"category": "vendor", "name": "Acme", "branches": [{
            "category": "product_name", "name": product, "branches": [{
                "category": "product_version_range", "name": format!("<{fixed}"),
                "product": {"name": product, "product_id": "CSAFPID-1"}
            }]
        }]}]},
        "vulnerabilities": [{
            "cve": cve,
            "product_status": {"known_affected": ["CSAFPID-1"]},
            "remediations": [{"category": "vendor_fix", "details": format!("Upgrade to {fixed}"), "product_ids": ["CSAFPID-1"]}]
        }]
    })
}

fn campaign(hook: &str) -> String {
    format!(
        r#"
name = "e2e-monthly"
time_zone = "UTC"
patch_tuesday_offset_days = 0
start_time = "00:00"
products = ["sample", "tool"]
first_month_lookback_days = 120

[[steps]]
name = "pilot"
targets = "ring=pilot"
max_in_flight = 1
soak = "4s"
progression = "auto"
[steps.acceptance]
min_sample = 2
min_success_rate = 1.0
min_good_patch_ratio = 1.0
[steps.notify]
emails = ["pilot-owners@example.test"]
webhooks = ["{hook}"]

[[steps]]
name = "broad"
targets = "ring=broad"
max_in_flight = 2
soak = "2s"
progression = "manual"
global_autofix = true
max_attempts = 1
[steps.acceptance]
min_sample = 2
min_success_rate = 0.9
[steps.notify]
emails = ["change-board@example.test"]
webhooks = ["{hook}"]
"#
    )
}

// ------------------------------------------------------------------ the test

#[test]
fn a_two_step_campaign_passes_one_gate_fails_the_next_and_notifies() {
    let Some(python) = smtp_python() else {
        println!("SKIPPED: aiosmtpd not found (ROLLGATE_PYTHON_SMTP, target/python-tuf, python3); .ci/run installs it");
        return;
    };
    for backend in backends() {
        run_on(&backend, &python);
    }
}

fn month(server: &Server) -> Value {
    server.json(&["campaigns", "month", "e2e-monthly"])
}

/// The month, or `Null` while there is none yet.
fn month_if_any(server: &Server) -> Value {
    let out = server.cli(&["campaigns", "month", "e2e-monthly", "--json"]);
    if out.status.success() {
        serde_json::from_slice(&out.stdout).unwrap()
    } else {
        Value::Null
    }
}

fn wait_month(server: &Server, what: &str, limit: Duration, cond: impl Fn(&Value) -> bool) -> Value {
    let mut seen = Value::Null;
    wait_for(what, limit, || {
        seen = month_if_any(server);
        cond(&seen)
    });
    seen
}

fn step<'a>(month: &'a Value, name: &str) -> &'a Value {
    month["steps"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()
}

fn run_on(backend: &Backend, python: &Path) {
    let started_at = std::time::Instant::now();
    let mark = |what: &str| println!("e2e: {:>6.1} s  {what}", started_at.elapsed().as_secs_f64());
    let smtp = Smtp::start(python);
    let hooks = Hooks::start();
    let server = Server::start_on_with(
        backend,
        &[
            "--campaign-tick-ms".into(),
            "300".into(),
            // An endpoint silent for 3 s is offline (agents here poll every second).
            "--offline-after".into(),
            "3".into(),
            "--smtp-url".into(),
            format!("smtp://127.0.0.1:{}", smtp.port),
            "--smtp-from".into(),
            "Rollgate <rollgate@example.test>".into(),
            "--smtp-ca".into(),
            smtp.ca.display().to_string(),
        ],
    );
    let token = server.token(6);
    let mut agents: Vec<Agent> = ["pilot-1", "pilot-2", "pilot-3"]
        .iter()
        .map(|n| server.agent(n, &token, &["ring=pilot"]))
        .chain(["broad-1", "broad-2"].iter().map(|n| server.agent(n, &token, &["ring=broad", "health=fail"])))
        .collect();
    let endpoints = server.wait_endpoints(5);
    let id_of = |host: &str| -> String {
        endpoints.iter().find(|e| e["hostname"] == host).unwrap()["id"].as_str().unwrap().to_string()
    };

    // Everyone runs sample 1.0.0, the pilot also tool 1.0.0; sample 2.0.0 fails its health
    // check where `health=fail`.
    let v1 = sample_package(server.dir.path(), "1.0.0", 0.0, false);
    let v2 = sample_package(server.dir.path(), "2.0.0", 0.2, true);
    server.add_package(&v1, "sample", "1.0.0", &[]);
    server.add_package(&v2, "sample", "2.0.0", &[]);
    server.add_package(&v1, "tool", "1.0.0", &[]);
    server.add_package(&v2, "tool", "2.0.0", &[]);
    let base =
        ["sets", "create", "--name", "base", "--product", "sample", "--version", "1.0.0", "--max-in-flight", "5"];
    server.json(&base);
    assert_eq!(server.wait_set("base", Duration::from_secs(60))["counts"]["succeeded"], 5);
    let base_tool =
        ["sets", "create", "--name", "base-tool", "--product", "tool", "--version", "1.0.0", "--target", "ring=pilot"];
    server.json(&base_tool);
    assert_eq!(server.wait_set("base-tool", Duration::from_secs(60))["counts"]["succeeded"], 3);

    // The advisories match what the agents report having installed: wait for their reports.
    wait_for("the inventories to show the base installs", Duration::from_secs(30), || {
        let list = server.json(&["endpoints", "list"]);
        let has = |e: &Value, product: &str| e["products"][product] == "1.0.0";
        let list = list.as_array().unwrap();
        list.iter().all(|e| has(e, "sample"))
            && list.iter().filter(|e| e["hostname"].as_str().unwrap().starts_with("pilot")).all(|e| has(e, "tool"))
    });

    // pilot-3 goes offline for the whole month: a no-show, and its two packages must not hold
    // back the others'.
    agents.iter_mut().find(|a| a.name == "pilot-3").unwrap().proc = None;
    let pilot_3 = id_of("pilot-3");
    wait_for("pilot-3 to count as offline", Duration::from_secs(30), || {
        let e = server.json(&["endpoints", "show", &pilot_3]);
        let seen: Timestamp = e["last_seen"].as_str().unwrap().parse().unwrap();
        Timestamp::now().duration_since(seen).as_secs() >= 4
    });

    mark("base set done");
    let docs = tempfile::tempdir().unwrap();
    for (name, doc) in [
        ("fix.json", csaf("ACME-2026-001", "CVE-2026-0001", "sample", "2.0.0")),
        ("later.json", csaf("ACME-2026-002", "CVE-2026-0002", "sample", "3.0.0")),
        ("tool.json", csaf("ACME-2026-003", "CVE-2026-0003", "tool", "2.0.0")),
    ] {
        std::fs::write(docs.path().join(name), serde_json::to_vec(&doc).unwrap()).unwrap();
    }
    let out = server.cli(&["advisories", "import", &docs.path().display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));

    let file = docs.path().join("campaign.toml");
    std::fs::write(&file, campaign(&hooks.url)).unwrap();
    let out = server.cli(&["campaigns", "apply", &file.display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));

    mark("campaign applied");
    // The driver schedules the first month; it shows what it would deploy.
    let scheduled = wait_month(&server, "the first month", Duration::from_secs(30), |m| m["effective"] == "scheduled");
    type VulnRow<'a> = (&'a str, &'a str, u64, Vec<&'a str>, Vec<&'a str>);
    let vulns: Vec<VulnRow<'_>> = scheduled["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let strs = |k: &str| v[k].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect::<Vec<_>>();
            (
                v["id"].as_str().unwrap(),
                v["approval"].as_str().unwrap(),
                v["affected"].as_u64().unwrap(),
                strs("fix_packages"),
                strs("needs_package"),
            )
        })
        .collect();
    assert_eq!(
        vulns,
        [
            ("ACME-2026-001", "unreviewed", 5, vec!["sample@2.0.0"], vec![]),
            ("ACME-2026-002", "unreviewed", 5, vec![], vec!["sample"]),
            ("ACME-2026-003", "unreviewed", 3, vec!["tool@2.0.0"], vec![]),
        ],
        "the second needs 3.0.0, which the store lacks: {scheduled:#}"
    );
    let done = server.json(&["campaigns", "vuln", "disapprove", "e2e-monthly", "ACME-2026-002"]);
    assert_eq!(done["message"], "operator set vulnerability ACME-2026-002 from unreviewed to disapproved");
    let m = month(&server);
    assert_eq!(m["vulnerabilities"][1]["approval"], "disapproved");
    // Before it starts, each step shows what it would deploy where.
    assert_eq!(
        step(&m, "pilot")["deploys"],
        serde_json::json!(["sample@2.0.0 on 3 endpoints", "tool@2.0.0 on 3 endpoints"]),
        "{m:#}"
    );
    assert_eq!(step(&m, "broad")["targeted"], 2, "{m:#}");

    mark("vulns decided");
    // Start it now rather than on Patch Tuesday; pause and resume during the pilot.
    let started = server.json(&["campaigns", "start", "e2e-monthly"]);
    assert_eq!(started["effective"], "active", "{started:#}");
    let paused = server.json(&["campaigns", "pause", "e2e-monthly"]);
    assert_eq!(paused["requested"], "paused", "{paused:#}");
    wait_month(&server, "the pause to drain", Duration::from_secs(60), |m| m["effective"] == "paused");
    let resumed = server.json(&["campaigns", "resume", "e2e-monthly"]);
    assert_eq!(resumed["effective"], "active", "{resumed:#}");

    mark("paused and resumed");
    // The pilot passes its gate after its soak; the broad step fails its own.
    let failed = wait_month(&server, "the broad step's gate to fail", Duration::from_secs(120), |m| {
        m["effective"] == "paused" && m["current_step"] == 1
    });
    let pilot = step(&failed, "pilot");
    assert_eq!(
        (
            &pilot["status"],
            &pilot["targeted"],
            &pilot["attempted"],
            &pilot["succeeded"],
            &pilot["failed"],
            &pilot["no_shows"]
        ),
        (&"done".into(), &3.into(), &2.into(), &2.into(), &0.into(), &1.into()),
        "offline for the whole step, pilot-3 is a no-show, neither in the sample nor a failure: {failed:#}"
    );
    assert_eq!(pilot["success_rate"], 1.0);
    assert_eq!(pilot["sets"].as_array().unwrap().len(), 2, "both packages deployed despite pilot-3: {failed:#}");
    let broad = step(&failed, "broad");
    assert_eq!(
        (&broad["status"], &broad["attempted"], &broad["succeeded"], &broad["failed"]),
        (&"held".into(), &2.into(), &0.into(), &2.into()),
        "{failed:#}"
    );
    assert_eq!(broad["success_rate"], 0.0);
    assert!(
        failed["reason"].as_str().unwrap().contains("step broad failed its gate: success rate 0 is below 0.9"),
        "{failed:#}"
    );
    let reasons: Vec<&str> =
        failed["transitions"].as_array().unwrap().iter().map(|t| t["reason"].as_str().unwrap()).collect();
    for expected in [
        "started by operator",
        "paused by operator",
        "resumed by operator",
        "step pilot passed its gate (success rate 1 (2 of 2)",
        "1 no-shows of 3 targeted",
    ] {
        assert!(reasons.iter().any(|r| r.contains(expected)), "no `{expected}` in {reasons:#?}");
    }
    for host in ["pilot-1", "pilot-2"] {
        let agent = agents.iter().find(|a| a.name == host).unwrap();
        assert_eq!(
            (agent.current("sample").as_deref(), agent.current("tool").as_deref()),
            (Some("2.0.0"), Some("2.0.0"))
        );
    }
    for host in ["broad-1", "broad-2"] {
        assert_eq!(
            agents.iter().find(|a| a.name == host).unwrap().current("sample").as_deref(),
            Some("1.0.0"),
            "rolled back"
        );
    }

    mark("broad gate failed");
    for t in failed["transitions"].as_array().unwrap() {
        println!("e2e: transition {} {} -> {}: {}", t["at"], t["from"], t["to"], t["reason"]);
    }
    // Notifications: the pilot completed, the broad gate failed; by email over TLS and webhook.
    wait_for("the notifications", Duration::from_secs(30), || hooks.events().len() >= 2 && smtp.messages().len() >= 2);
    assert_eq!(
        hooks.events(),
        [("step_completed".to_string(), "pilot".to_string()), ("gate_failed".to_string(), "broad".to_string())]
    );
    let mails = smtp.messages();
    let mail = |to: &str| {
        mails.iter().find(|m| m["rcpt_tos"][0] == to).unwrap_or_else(|| panic!("no mail to {to}: {mails:#?}"))
    };
    let pilot_mail = mail("pilot-owners@example.test");
    assert!(pilot_mail["subject"].as_str().unwrap().contains("e2e-monthly"), "{pilot_mail:#}");
    assert!(pilot_mail["subject"].as_str().unwrap().contains("pilot"), "{pilot_mail:#}");
    assert!(pilot_mail["tls_version"].as_str().unwrap().starts_with("TLS"), "{pilot_mail:#}");
    let board_mail = mail("change-board@example.test");
    assert!(board_mail["body"].as_str().unwrap().contains("success rate 0 is below 0.9"), "{board_mail:#}");

    mark("notified");
    // Plain resume is refused after a failed gate; approving anyway completes the month.
    let out = server.cli(&["campaigns", "resume", "e2e-monthly"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("failed its gate; approve it anyway, retry it, or stop the month"),
        "{}",
        stderr(&out)
    );
    // Retrying plans the step afresh (run 2) and soaks it again; it fails again the same way.
    let retried = server.json(&["campaigns", "step", "retry", "e2e-monthly", "broad"]);
    assert_eq!(retried["effective"], "active", "{retried:#}");
    assert!(retried["message"].as_str().unwrap().contains("retried step broad (run 2)"), "{retried:#}");
    let again = wait_month(&server, "the retried step's gate to fail", Duration::from_secs(60), |m| {
        let failures = m["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["reason"].as_str().unwrap().starts_with("step broad failed its gate"));
        m["effective"] == "paused" && failures.count() == 2
    });
    let broad = step(&again, "broad");
    assert_eq!((&broad["run"], &broad["attempted"], &broad["failed"]), (&2.into(), &2.into(), &2.into()), "{again:#}");
    assert!(broad["sets"][0].as_str().unwrap().ends_with(".s1.r2.p0"), "run 2 has a set of its own: {again:#}");

    let approved = server.json(&["campaigns", "step", "approve", "e2e-monthly", "broad"]);
    assert_eq!(approved["effective"], "completed", "{approved:#}");
    let shown = server.json(&["campaigns", "show", "e2e-monthly"]);
    wait_for("the next month", Duration::from_secs(30), || {
        server.json(&["campaigns", "show", "e2e-monthly"])["months"].as_array().unwrap().len() == 2
    });
    assert_eq!(shown["months"][0]["effective"], "completed", "{shown:#}");

    mark("approved, next month");
    // The same month as people read it.
    let out = server.cli(&["campaigns", "month", "e2e-monthly", failed["month"].as_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(text.contains("campaign e2e-monthly month ") && text.contains(": completed"), "{text}");
    let pilot_row = text.lines().find(|l| l.starts_with("pilot ")).unwrap();
    assert!(pilot_row.contains("done") && pilot_row.contains("100.0%"), "{pilot_row}");
    assert!(text.contains("ACME-2026-002  disapproved"), "{text}");

    // An operator reports a bad patch; the devices view counts it.
    let out = server.cli(&[
        "campaigns",
        "bad-patch",
        "e2e-monthly",
        &id_of("pilot-1"),
        "--reason",
        "toolbar gone",
        "--month",
        failed["month"].as_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let devices = server.json(&["campaigns", "devices", "e2e-monthly"]);
    let device = |host: &str| devices.as_array().unwrap().iter().find(|d| d["hostname"] == host).unwrap().clone();
    let counts = |d: Value| {
        (
            d["patches"].as_u64().unwrap(),
            d["deployed"].as_u64().unwrap(),
            d["failed"].as_u64().unwrap(),
            d["bad"].as_u64().unwrap(),
        )
    };
    assert_eq!(counts(device("pilot-1")), (2, 2, 0, 2), "both of the month's installs there count the report");
    assert_eq!(counts(device("pilot-2")), (2, 2, 0, 0));
    assert_eq!(counts(device("pilot-3")), (2, 0, 0, 0), "offline: listed, never installed");
    assert_eq!(counts(device("broad-1")), (2, 0, 2, 0), "one install per run of the step");

    mark("devices");
    // Global autofix: an endpoint of the last step that arrives later is patched too.
    let late = server.agent("late-1", &token, &["ring=broad"]);
    server.wait_endpoints(5);
    let late_id =
        server.json(&["endpoints", "list"]).as_array().unwrap().iter().find(|e| e["hostname"] == "late-1").unwrap()
            ["id"]
            .as_str()
            .unwrap()
            .to_string();
    server.json(&[
        "sets",
        "create",
        "--name",
        "late-base",
        "--product",
        "sample",
        "--version",
        "1.0.0",
        "--target",
        &late_id,
    ]);
    server.wait_set("late-base", Duration::from_secs(60));
    wait_for("autofix to patch the late endpoint", Duration::from_secs(90), || {
        late.current("sample").as_deref() == Some("2.0.0")
    });
    agents.push(late);
    mark("autofix patched the late endpoint");

    // Stopping the next month (before its start) fails it for good; the one after is scheduled.
    let stopped = server.json(&["campaigns", "stop", "e2e-monthly"]);
    assert_eq!((&stopped["effective"], &stopped["message"]), (&"failed".into(), &"stopped by operator".into()));
    wait_for("the month after the stopped one", Duration::from_secs(30), || {
        server.json(&["campaigns", "show", "e2e-monthly"])["months"].as_array().unwrap().len() == 3
    });
}
