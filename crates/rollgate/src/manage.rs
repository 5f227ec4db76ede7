//! Management commands: they talk to the server's management API over HTTPS with the admin
//! token, and print a table (or JSON with `--json`).
//!
//! Connection settings come from `--server/--ca/--token`, the `ROLLGATE_*` environment
//! variables, or, failing both, the local data directory (`./rollgate-data`), so that commands
//! run next to a fresh `rollgate server` work with no flags at all.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use rollgate_wire::{
    CreateEnrollToken, CreateSet, EndpointDetail, EndpointView, EnrollTokenCreated, ErrorBody, PackageInfo, SetView,
};

use crate::output;

/// How to reach the server.
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// Server URL (default: from DATA_DIR/server.url).
    #[arg(long, env = "ROLLGATE_SERVER", global = true)]
    server: Option<String>,
    /// CA certificate to trust (default: DATA_DIR/ca.pem).
    #[arg(long, env = "ROLLGATE_CA", global = true)]
    ca: Option<PathBuf>,
    /// Admin token (default: DATA_DIR/admin.token).
    #[arg(long, env = "ROLLGATE_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Local server data directory to read defaults from.
    #[arg(long, env = "ROLLGATE_DATA_DIR", default_value = "rollgate-data", global = true)]
    data_dir: PathBuf,
}

/// An authenticated management API client.
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

fn read_default(dir: &Path, file: &str, flag: &str) -> anyhow::Result<String> {
    let path = dir.join(file);
    std::fs::read_to_string(&path).map(|s| s.trim().to_string()).with_context(|| {
        format!("no {flag} given and {} is not readable: pass {flag}, set its ROLLGATE_ variable, or run next to the server's data directory", path.display())
    })
}

impl Conn {
    /// Settings that read everything from a server's data directory.
    pub fn for_data_dir(dir: &Path) -> Conn {
        Conn { server: None, ca: None, token: None, data_dir: dir.to_path_buf() }
    }

    /// Builds the client, reading defaults from the data directory where flags are missing.
    pub fn connect(&self) -> anyhow::Result<Api> {
        let base = match &self.server {
            Some(s) => s.trim_end_matches('/').to_string(),
            None => read_default(&self.data_dir, "server.url", "--server")?,
        };
        if !base.starts_with("https://") {
            bail!("--server must be an https:// URL, not `{base}`: Rollgate speaks HTTPS only");
        }
        let ca_path = self.ca.clone().unwrap_or_else(|| self.data_dir.join("ca.pem"));
        let ca_pem = std::fs::read(&ca_path)
            .with_context(|| format!("while reading the CA certificate {}", ca_path.display()))?;
        let ca = reqwest::Certificate::from_pem(&ca_pem)
            .with_context(|| format!("{} is not a PEM certificate", ca_path.display()))?;
        let token = match &self.token {
            Some(t) => t.trim().to_string(),
            None => read_default(&self.data_dir, "admin.token", "--token")?,
        };
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .https_only(true)
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()?;
        Ok(Api { http, base, token })
    }
}

impl Api {
    async fn send<T: serde::de::DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let response = req
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("could not reach the server at {}", self.base))?;
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            let message = match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(e) => e.error.message,
                Err(_) => String::from_utf8_lossy(&body).into_owned(),
            };
            bail!("{message} (HTTP {})", status.as_u16());
        }
        serde_json::from_slice(&body)
            .with_context(|| format!("unexpected answer from the server: {}", String::from_utf8_lossy(&body)))
    }

    /// GET a JSON resource.
    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    /// PUT raw bytes, read JSON.
    pub async fn put_bytes<T: serde::de::DeserializeOwned>(&self, path: &str, bytes: Vec<u8>) -> anyhow::Result<T> {
        self.send(self.http.put(format!("{}{path}", self.base)).body(bytes)).await
    }

    /// POST raw bytes, read JSON; the server's refusal of this request (a 4xx answer) comes back
    /// as `Err((code, message))` so that the caller can go on with its next item.
    pub async fn post_bytes_or_refusal<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<Result<T, (String, String)>> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .body(bytes)
            .send()
            .await
            .with_context(|| format!("could not reach the server at {}", self.base))?;
        let status = response.status();
        let body = response.bytes().await?;
        if status.is_client_error() && status != reqwest::StatusCode::UNAUTHORIZED {
            if let Ok(e) = serde_json::from_slice::<ErrorBody>(&body) {
                return Ok(Err((e.error.code, e.error.message)));
            }
        }
        if !status.is_success() {
            bail!("{} (HTTP {})", String::from_utf8_lossy(&body), status.as_u16());
        }
        Ok(Ok(serde_json::from_slice(&body)
            .with_context(|| format!("unexpected answer from the server: {}", String::from_utf8_lossy(&body)))?))
    }

    /// POST JSON, read JSON.
    pub async fn post<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body)).await
    }

    /// Uploads a package file, streaming it with a progress bar.
    pub async fn upload(
        &self,
        file: &Path,
        product: &str,
        version: &str,
        module: &str,
        min_from: Option<&str>,
        quiet: bool,
    ) -> anyhow::Result<PackageInfo> {
        rollgate_core::names::validate("product", product).map_err(anyhow::Error::msg)?;
        rollgate_core::version::validate(version).map_err(anyhow::Error::msg)?;
        if let Some(min) = min_from {
            rollgate_core::version::validate(min).map_err(anyhow::Error::msg)?;
        }
        let size = tokio::fs::metadata(file).await.with_context(|| format!("cannot read {}", file.display()))?.len();
        if size == 0 {
            bail!("{} is empty", file.display());
        }
        let sha256 = rollgate_agent::download::sha256_file(file)
            .await
            .with_context(|| format!("cannot read {}", file.display()))?;
        let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(size) };
        bar.set_style(
            ProgressStyle::with_template("uploading {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let handle = tokio::fs::File::open(file).await?;
        let progress = bar.clone();
        let stream = tokio_util::io::ReaderStream::new(handle).inspect(move |chunk| {
            if let Ok(c) = chunk {
                progress.inc(c.len() as u64);
            }
        });
        let mut url = reqwest::Url::parse(&format!("{}/v1/packages/{product}/{version}", self.base))
            .context("bad product or version for a URL")?;
        url.query_pairs_mut().append_pair("module", module);
        if let Some(min) = min_from {
            url.query_pairs_mut().append_pair("min_from", min);
        }
        let request = self
            .http
            .put(url)
            .header("x-rollgate-sha256", &sha256)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(stream));
        let result = self.send(request).await;
        bar.finish_and_clear();
        result
    }
}

/// Parses `90`, `90s`, `15m`, `12h`, `7d` into seconds.
pub fn parse_duration_secs(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("bad duration `{text}`: use e.g. 90s, 15m, 12h or 7d"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("bad duration unit in `{text}`: use s, m, h or d")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("duration `{text}` is too long"))
}

#[derive(Subcommand, Debug)]
pub enum EnrollTokenCommand {
    /// Create an enrollment token.
    Create {
        /// How many agents may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it is valid (90s, 15m, 12h, 7d).
        #[arg(long, default_value = "24h", value_parser = parse_duration_secs)]
        ttl: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

/// `rollgate enroll-token ...`.
pub async fn enroll_token(cmd: EnrollTokenCommand) -> anyhow::Result<()> {
    let EnrollTokenCommand::Create { uses, ttl, json, conn } = cmd;
    let created: EnrollTokenCreated =
        conn.connect()?.post("/v1/enroll-tokens", &CreateEnrollToken { uses, ttl_secs: ttl }).await?;
    if json {
        return output::json(
            &serde_json::json!({ "token": created.token, "uses": created.uses, "expires_at": created.expires_at }),
        );
    }
    println!("{}", created.token);
    eprintln!("valid for {} enrollment(s) until {}", created.uses, created.expires_at);
    Ok(())
}

/// A package archive and what it is: the same for `packages add` and `packages sign`, which
/// must be given the same facts.
#[derive(Args, Debug)]
pub struct PackageFile {
    /// The archive (tar, tar.gz or tar.zst).
    pub file: PathBuf,
    /// Product name.
    #[arg(long)]
    pub product: String,
    /// Version.
    #[arg(long)]
    pub version: String,
    /// Install module.
    #[arg(long, default_value = "files", value_parser = ["files", "script"])]
    pub module: String,
}

/// `rollgate packages`
#[derive(Subcommand, Debug)]
pub enum PackagesCommand {
    /// Add a package version (a tar, tar.gz or tar.zst archive).
    Add {
        #[command(flatten)]
        package: PackageFile,
        /// Oldest version this package may upgrade from.
        #[arg(long)]
        min_from: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// List package versions.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Sign a package into a new targets role with the targets key, offline (the key never
    /// leaves this machine); upload the result with `packages publish-targets`.
    Sign(crate::keys::SignArgs),
    /// Upload a targets role signed with `packages sign`; the server publishes it with a new
    /// snapshot and timestamp.
    PublishTargets {
        /// The signed `<n>.targets.json`.
        file: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
}

/// `rollgate packages ...`.
pub async fn packages(cmd: PackagesCommand) -> anyhow::Result<()> {
    match cmd {
        PackagesCommand::Add { package: p, min_from, json, conn } => {
            let info =
                conn.connect()?.upload(&p.file, &p.product, &p.version, &p.module, min_from.as_deref(), json).await?;
            if json {
                return output::json(&serde_json::json!({
                    "id": info.id, "product": info.product, "version": info.version, "sha256": info.sha256, "size": info.size,
                }));
            }
            println!("added {} ({} bytes, sha256 {})", info.id, info.size, info.sha256);
            Ok(())
        }
        PackagesCommand::Sign(args) => crate::keys::sign(args).await,
        PackagesCommand::PublishTargets { file, conn } => {
            let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let answer: serde_json::Value = conn.connect()?.put_bytes("/v1/tuf/targets", bytes).await?;
            println!(
                "published targets version {} (snapshot {}, timestamp {})",
                answer["targets_version"], answer["snapshot_version"], answer["timestamp_version"]
            );
            Ok(())
        }
        PackagesCommand::List { json, conn } => {
            let list: Vec<PackageInfo> = conn.connect()?.get("/v1/packages").await?;
            if json {
                return output::json(&list);
            }
            let rows = list
                .iter()
                .map(|p| {
                    vec![
                        p.product.clone(),
                        p.version.clone(),
                        p.module.clone(),
                        p.min_from.clone().unwrap_or_default(),
                        p.size.to_string(),
                        p.sha256[..16].to_string(),
                    ]
                })
                .collect::<Vec<_>>();
            output::table(&["PRODUCT", "VERSION", "MODULE", "MIN-FROM", "BYTES", "SHA256"], &rows);
            Ok(())
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum SetsCommand {
    /// Create an Upgrade Set.
    Create(CreateSetArgs),
    /// Show a set: state, counts and every endpoint.
    Show {
        /// Set name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// List sets.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Stop releasing endpoints (those upgrading finish).
    Pause(SetName),
    /// Release endpoints again.
    Resume(SetName),
    /// Stop the set for good (those upgrading finish).
    Cancel(SetName),
}

#[derive(Args, Debug)]
pub struct SetName {
    /// Set name.
    name: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Args, Debug)]
pub struct CreateSetArgs {
    /// Unique name.
    #[arg(long)]
    name: String,
    /// Product to upgrade.
    #[arg(long)]
    product: String,
    /// Version to upgrade to (a package must exist).
    #[arg(long)]
    version: String,
    /// `all`, endpoint ids (`ep-1,ep-2`), or labels (`site=berlin,network=remote`).
    #[arg(long, default_value = "all")]
    target: String,
    /// Most endpoints upgrading at once.
    #[arg(long, default_value_t = 10)]
    max_in_flight: u32,
    /// Attempts per endpoint before rolling back.
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
    /// Do not start before (RFC 3339, or 2026-12-01T02:00[Europe/Berlin]).
    #[arg(long)]
    start_at: Option<String>,
    /// When upgrades may start, e.g. `Mon-Fri 01:00-05:00 Europe/Berlin`.
    #[arg(long)]
    window: Option<String>,
    /// Seed of the random order (default: random).
    #[arg(long)]
    seed: Option<u64>,
    /// Wait after the first failed attempt, doubled after each further one (90s, 5m).
    #[arg(long, value_parser = parse_duration_secs)]
    backoff: Option<u64>,
    /// Silence after which an upgrading endpoint loses its slot (30m).
    #[arg(long, value_parser = parse_duration_secs)]
    stuck_timeout: Option<u64>,
    /// Time limit for each install, health and rollback step on the endpoint (5m).
    #[arg(long, value_parser = parse_duration_secs)]
    step_timeout: Option<u64>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Conn,
}

fn print_set(set: &SetView, json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(&serde_json::json!({
            "name": set.name, "state": set.state, "state_reason": set.state_reason, "product": set.product,
            "version": set.version, "target": set.target, "max_in_flight": set.max_in_flight, "seed": set.seed,
            "counts": set.counts, "endpoints": set.endpoints,
        }));
    }
    println!(
        "set {}: {} {} -> {} ({})",
        set.name,
        set.state,
        set.product,
        set.version,
        set.state_reason.as_deref().unwrap_or("")
    );
    println!(
        "target {}, max in flight {}, max attempts {}, seed {}",
        set.target, set.max_in_flight, set.max_attempts, set.seed
    );
    if let Some(w) = &set.window {
        println!("window {w}");
    }
    let c = &set.counts;
    println!(
        "pending {}, in progress {}, succeeded {}, failed {}, rolled back {}",
        c.pending, c.in_progress, c.succeeded, c.failed, c.rolled_back
    );
    let rows: Vec<Vec<String>> = set
        .endpoints
        .iter()
        .map(|e| vec![e.id.clone(), e.state.clone(), e.attempts.to_string(), e.reason.clone().unwrap_or_default()])
        .collect();
    output::table(&["ENDPOINT", "STATE", "ATTEMPTS", "REASON"], &rows);
    Ok(())
}

/// `rollgate sets ...`.
pub async fn sets(cmd: SetsCommand) -> anyhow::Result<()> {
    match cmd {
        SetsCommand::Create(a) => {
            let body = CreateSet {
                name: a.name,
                product: a.product,
                version: a.version,
                target: a.target,
                max_in_flight: a.max_in_flight,
                max_attempts: a.max_attempts,
                start_at: a.start_at,
                window: a.window,
                seed: a.seed,
                backoff_secs: a.backoff,
                stuck_timeout_secs: a.stuck_timeout,
                step_timeout_secs: a.step_timeout,
            };
            let set: SetView = a.conn.connect()?.post("/v1/sets", &body).await?;
            print_set(&set, a.json)
        }
        SetsCommand::Show { name, json, conn } => {
            let set: SetView = conn.connect()?.get(&format!("/v1/sets/{}", path_segment(&name)?)).await?;
            print_set(&set, json)
        }
        SetsCommand::List { json, conn } => {
            let list: Vec<SetView> = conn.connect()?.get("/v1/sets").await?;
            if json {
                return output::json(&list);
            }
            let rows = list
                .iter()
                .map(|s| {
                    let c = &s.counts;
                    vec![
                        s.name.clone(),
                        s.state.clone(),
                        format!("{}@{}", s.product, s.version),
                        s.target.clone(),
                        format!("{}/{}/{}/{}/{}", c.pending, c.in_progress, c.succeeded, c.failed, c.rolled_back),
                    ]
                })
                .collect::<Vec<_>>();
            output::table(&["NAME", "STATE", "PACKAGE", "TARGET", "PEND/RUN/OK/FAIL/RB"], &rows);
            Ok(())
        }
        SetsCommand::Pause(s) => set_action(s, "pause").await,
        SetsCommand::Resume(s) => set_action(s, "resume").await,
        SetsCommand::Cancel(s) => set_action(s, "cancel").await,
    }
}

/// Names and ids go into URL paths: refuse anything that is not one safe segment.
fn path_segment(name: &str) -> anyhow::Result<&str> {
    rollgate_core::names::validate("set or endpoint", name).map_err(anyhow::Error::msg)?;
    Ok(name)
}

async fn set_action(s: SetName, action: &str) -> anyhow::Result<()> {
    let set: SetView = s
        .conn
        .connect()?
        .post(&format!("/v1/sets/{}/{action}", path_segment(&s.name)?), &serde_json::json!({}))
        .await?;
    print_set(&set, s.json)
}

#[derive(Subcommand, Debug)]
pub enum EndpointsCommand {
    /// List enrolled endpoints.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show one endpoint with its upgrade history.
    Show {
        /// Endpoint id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

/// `rollgate endpoints ...`.
pub async fn endpoints(cmd: EndpointsCommand) -> anyhow::Result<()> {
    match cmd {
        EndpointsCommand::List { json, conn } => {
            let list: Vec<EndpointView> = conn.connect()?.get("/v1/endpoints").await?;
            if json {
                return output::json(&serde_json::json!(list
                    .iter()
                    .map(|e| serde_json::json!({"id": e.id, "hostname": e.hostname, "labels": e.labels, "products": e.products, "last_seen": e.last_seen}))
                    .collect::<Vec<_>>()));
            }
            let rows = list
                .iter()
                .map(|e| {
                    let labels: Vec<String> = e.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let products: Vec<String> = e.products.iter().map(|(k, v)| format!("{k} {v}")).collect();
                    vec![
                        e.id.clone(),
                        e.hostname.clone(),
                        labels.join(","),
                        products.join(", "),
                        e.last_seen.clone().unwrap_or_default(),
                    ]
                })
                .collect::<Vec<_>>();
            output::table(&["ID", "HOSTNAME", "LABELS", "PRODUCTS", "LAST SEEN"], &rows);
            Ok(())
        }
        EndpointsCommand::Show { id, json, conn } => {
            let e: EndpointDetail = conn.connect()?.get(&format!("/v1/endpoints/{}", path_segment(&id)?)).await?;
            if json {
                return output::json(&e);
            }
            println!("endpoint {} ({}, {})", e.endpoint.id, e.endpoint.hostname, e.endpoint.os);
            let labels: Vec<String> = e.endpoint.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("labels: {}", labels.join(", "));
            for (p, v) in &e.endpoint.products {
                println!("installed: {p} {v}");
            }
            println!("platform: {}, {} packages known", e.platform.as_deref().unwrap_or("not reported"), e.packages);
            if e.vulnerabilities.is_empty() {
                println!("open vulnerabilities: none known");
            } else {
                println!("open vulnerabilities:");
                let rows = e
                    .vulnerabilities
                    .iter()
                    .flat_map(|v| {
                        v.findings.iter().map(move |f| {
                            let text = |k: &str| f.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
                            vec![
                                v.id.clone(),
                                v.rating.clone().unwrap_or_default(),
                                v.max_score.map(|s| format!("{s:.1}")).unwrap_or_default(),
                                text("software"),
                                text("installed_version"),
                                text("fixed_version"),
                                v.cves.join(" "),
                            ]
                        })
                    })
                    .collect::<Vec<_>>();
                output::table(&["ADVISORY", "RATING", "CVSS", "SOFTWARE", "INSTALLED", "FIXED IN", "CVES"], &rows);
            }
            let rows = e
                .history
                .iter()
                .map(|a| {
                    vec![
                        a.set.clone(),
                        a.attempt.to_string(),
                        a.product.clone(),
                        format!("{} -> {}", a.from_version.as_deref().unwrap_or("-"), a.to_version),
                        a.started_at.clone(),
                        a.finished_at.clone().unwrap_or_default(),
                        a.outcome.clone(),
                        a.reason.clone().unwrap_or_default(),
                    ]
                })
                .collect::<Vec<_>>();
            output::table(
                &["SET", "ATTEMPT", "PRODUCT", "VERSIONS", "STARTED", "FINISHED", "OUTCOME", "REASON"],
                &rows,
            );
            Ok(())
        }
    }
}
