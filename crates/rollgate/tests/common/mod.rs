//! Harness for end-to-end tests: the real `rollgate` binary as a server and as agents, in
//! temporary directories, over real TLS. Waits poll the management API against a deadline
//! instead of sleeping for a fixed time.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const EXE: &str = env!("CARGO_BIN_EXE_rollgate");

/// A free loopback port (bound then released; the server binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Kills the child on drop, so a failing test leaves no processes behind.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A store for the server under test.
#[derive(Clone, Debug)]
pub enum Backend {
    /// SQLite in the server's data directory.
    Sqlite,
    /// PostgreSQL at this URL (from `DATABASE_URL`), in a schema of the test's own.
    Postgres(String),
}

/// The backends every end-to-end scenario runs on: SQLite always, PostgreSQL when
/// `DATABASE_URL` is set (CI sets it); says so when it is skipped.
pub fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Sqlite];
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => all.push(Backend::Postgres(url)),
        _ => println!("e2e: PostgreSQL SKIPPED: DATABASE_URL is not set (CI sets it)"),
    }
    all
}

/// A PostgreSQL schema for one test, dropped at the end.
pub struct PgSchema {
    pub url: String,
    pub name: String,
}

impl PgSchema {
    pub fn new(url: &str) -> PgSchema {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("rg_e2e_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        PgSchema { url: url.to_string(), name }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.name.clone());
        // `Drop` cannot await: a thread with a runtime of its own drops the schema.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                use sqlx::Executor;
                if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                    let _ = pool.execute(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE").as_str()).await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

pub struct Server {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub proc: Option<Proc>,
    /// Extra `rollgate server` arguments (database, shared package directory, key).
    pub args: Vec<String>,
    pub backend_name: &'static str,
    _schema: Option<std::sync::Arc<PgSchema>>,
}

impl Server {
    /// A server on SQLite.
    pub fn start() -> Server {
        Server::start_on(&Backend::Sqlite)
    }

    /// A server on SQLite with extra `rollgate server` flags.
    #[allow(dead_code)]
    pub fn start_with(extra: &[String]) -> Server {
        let dir = tempfile::Builder::new().prefix("rollgate-e2e-").tempdir().unwrap();
        let mut server =
            Server { dir, port: free_port(), proc: None, args: extra.to_vec(), backend_name: "sqlite", _schema: None };
        server.spawn();
        server
    }

    /// A server on the given backend.
    pub fn start_on(backend: &Backend) -> Server {
        Server::start_on_with(backend, &[])
    }

    /// A server on the given backend with extra `rollgate server` flags.
    pub fn start_on_with(backend: &Backend, extra: &[String]) -> Server {
        let dir = tempfile::Builder::new().prefix("rollgate-e2e-").tempdir().unwrap();
        let (mut args, schema, backend_name) = match backend {
            Backend::Sqlite => (Vec::new(), None, "sqlite"),
            Backend::Postgres(url) => {
                let schema = std::sync::Arc::new(PgSchema::new(url));
                let args =
                    vec!["--database".to_string(), url.clone(), "--database-schema".to_string(), schema.name.clone()];
                (args, Some(schema), "postgres")
            }
        };
        println!("e2e: server on {backend_name}");
        args.extend_from_slice(extra);
        let mut server = Server { dir, port: free_port(), proc: None, args, backend_name, _schema: schema };
        server.spawn();
        server
    }

    /// One replica of a cluster: its own data directory and port, the cluster's database schema,
    /// package directory and secret key.
    pub fn replica(schema: &std::sync::Arc<PgSchema>, shared: &Path) -> Server {
        let dir = tempfile::Builder::new().prefix("rollgate-replica-").tempdir().unwrap();
        let args = vec![
            "--database".to_string(),
            schema.url.clone(),
            "--database-schema".to_string(),
            schema.name.clone(),
            "--package-dir".to_string(),
            shared.join("packages").display().to_string(),
            "--secret-key-file".to_string(),
            shared.join("secret.key").display().to_string(),
        ];
        let mut server = Server {
            dir,
            port: free_port(),
            proc: None,
            args,
            backend_name: "postgres",
            _schema: Some(schema.clone()),
        };
        server.spawn();
        server
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("server")
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn ca(&self) -> PathBuf {
        self.data().join("ca.pem")
    }

    /// Starts (or restarts) the server process on the same port and data directory.
    pub fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.data().join("server.url"));
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("server.log")).unwrap();
        let child = Command::new(EXE)
            .args(["server", "--tick-ms", "100", "--listen", &format!("127.0.0.1:{}", self.port), "--data-dir"])
            .arg(self.data())
            .args(&self.args)
            .env("ROLLGATE_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.proc = Some(Proc(child));
        wait_for("server to listen", Duration::from_secs(30), || self.data().join("server.url").exists());
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        self.proc = None;
    }

    /// Runs a management command against this server; returns the output.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(EXE)
            .args(args)
            .env("ROLLGATE_DATA_DIR", self.data())
            .env_remove("ROLLGATE_SERVER")
            .env_remove("ROLLGATE_TOKEN")
            .env_remove("ROLLGATE_CA")
            .output()
            .unwrap()
    }

    /// Runs a management command with `--json` and parses stdout; panics with stderr on failure.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--json");
        let out = self.cli(&all);
        assert!(out.status.success(), "rollgate {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("bad JSON from {args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    pub fn token(&self, uses: u32) -> String {
        self.json(&["enroll-token", "create", "--uses", &uses.to_string()])["token"].as_str().unwrap().to_string()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Starts an agent with a new state directory.
    pub fn agent(&self, name: &str, token: &str, labels: &[&str]) -> Agent {
        let state = self.dir.path().join("agents").join(name);
        std::fs::create_dir_all(&state).unwrap();
        let mut agent = Agent {
            state,
            name: name.to_string(),
            url: self.url(),
            ca: self.ca(),
            token: token.to_string(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
            proc: None,
            extra: Vec::new(),
        };
        agent.spawn();
        agent
    }

    /// Starts an agent given its own list of server URLs (comma-separated, tried in order).
    pub fn agent_via(&self, name: &str, token: &str, servers: &str) -> Agent {
        let state = self.dir.path().join("agents").join(name);
        std::fs::create_dir_all(&state).unwrap();
        let mut agent = Agent {
            state,
            name: name.to_string(),
            url: servers.to_string(),
            ca: self.ca(),
            token: token.to_string(),
            labels: Vec::new(),
            proc: None,
            extra: Vec::new(),
        };
        agent.spawn();
        agent
    }

    /// Waits until `n` endpoints have reported their inventory; returns their ids by hostname order.
    pub fn wait_endpoints(&self, n: usize) -> Vec<Value> {
        let mut list = Vec::new();
        wait_for("endpoints to report", Duration::from_secs(60), || {
            list = self.json(&["endpoints", "list"]).as_array().unwrap().clone();
            list.iter().filter(|e| e["products"].get("rollgate-agent").is_some()).count() >= n
        });
        list.sort_by_key(|e| e["hostname"].as_str().unwrap().to_string());
        list
    }

    /// Waits until the set completes; returns `sets show --json`.
    pub fn wait_set(&self, name: &str, limit: Duration) -> Value {
        let mut set = Value::Null;
        wait_for(&format!("set {name} to complete"), limit, || {
            set = self.json(&["sets", "show", name]);
            set["state"] == "completed"
        });
        set
    }

    pub fn add_package(&self, file: &Path, product: &str, version: &str, extra: &[&str]) -> Value {
        let mut args = vec!["packages", "add", file.to_str().unwrap(), "--product", product, "--version", version];
        args.extend_from_slice(extra);
        self.json(&args)
    }
}

pub struct Agent {
    pub state: PathBuf,
    pub name: String,
    pub url: String,
    pub ca: PathBuf,
    pub token: String,
    pub labels: Vec<String>,
    pub proc: Option<Proc>,
    pub extra: Vec<String>,
}

impl Agent {
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.state.with_extension("log")).unwrap();
        let mut cmd = Command::new(EXE);
        cmd.args(["agent", "--server", &self.url, "--enroll-token", &self.token, "--hostname", &self.name]);
        if !self.extra.iter().any(|a| a == "--poll-interval") {
            cmd.args(["--poll-interval", "1"]);
        }
        cmd.arg("--ca").arg(&self.ca).arg("--state-dir").arg(&self.state).args(&self.extra).env("ROLLGATE_LOG", "info");
        for l in &self.labels {
            cmd.args(["--label", l]);
        }
        let child = cmd.stdout(log.try_clone().unwrap()).stderr(log).stdin(Stdio::null()).spawn().unwrap();
        self.proc = Some(Proc(child));
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.with_extension("log")).unwrap_or_default()
    }

    /// The version `products/<product>/current` points at.
    pub fn current(&self, product: &str) -> Option<String> {
        let link = std::fs::read_link(self.state.join("products").join(product).join("current")).ok()?;
        Some(link.file_name()?.to_string_lossy().into_owned())
    }

    /// The pid the agent process wrote (after a self-upgrade, the new agent's).
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.state.join("agent.pid")).ok()?.trim().parse().ok()
    }
}

/// True while a process with this pid exists.
pub fn alive(pid: i32) -> bool {
    rustix::process::Pid::from_raw(pid).is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
}

impl Drop for Agent {
    fn drop(&mut self) {
        // A self-upgraded agent is not our child: kill it by its pid file.
        if let Some(pid) = self.pid().and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Polls `cond` until it holds or `limit` passes.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes a tar.gz with these (path, mode, contents) entries.
pub fn tar_gz(path: &Path, entries: &[(&str, u32, &[u8])]) {
    let file = std::fs::File::create(path).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, mode, body) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(*mode);
        header.set_cksum();
        tar.append_data(&mut header, name, *body).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

/// A `files` package whose health check sleeps `sleep_secs`; with `buggy`, it then fails on
/// endpoints labelled `health=fail`, as a release with a bug that shows only on some machines.
pub fn sample_package(dir: &Path, version: &str, sleep_secs: f32, buggy: bool) -> PathBuf {
    let path = dir.join(format!("sample-{version}.tar.gz"));
    let check = if buggy {
        format!("if [ \"$ROLLGATE_LABEL_HEALTH\" = fail ]; then echo 'sample {version} is unhealthy here' >&2; exit 1; fi\n")
    } else {
        String::new()
    };
    let health = format!("#!/bin/sh\nsleep {sleep_secs}\n{check}exit 0\n");
    let app = format!("#!/bin/sh\necho sample {version}\n");
    tar_gz(&path, &[("bin/app", 0o755, app.as_bytes()), ("rollgate-health", 0o755, health.as_bytes())]);
    path
}

/// The most endpoints whose attempts in `set` overlapped in time, from each endpoint's history
/// (first attempt start to last attempt end).
pub fn peak_in_flight(server: &Server, set: &str, endpoint_ids: &[String]) -> usize {
    let mut events: Vec<(jiff::Timestamp, i32)> = Vec::new();
    for id in endpoint_ids {
        let detail = server.json(&["endpoints", "show", id]);
        let attempts: Vec<&Value> = detail["history"].as_array().unwrap().iter().filter(|a| a["set"] == set).collect();
        let (Some(first), Some(last)) = (attempts.first(), attempts.last()) else { continue };
        let start: jiff::Timestamp = first["started_at"].as_str().unwrap().parse().unwrap();
        let end: jiff::Timestamp = last["finished_at"].as_str().expect("finished attempt").parse().unwrap();
        assert!(start <= end);
        events.push((start, 1));
        events.push((end, -1));
    }
    events.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut peak) = (0, 0);
    for (_, d) in events {
        now += d;
        peak = peak.max(now);
    }
    peak as usize
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
