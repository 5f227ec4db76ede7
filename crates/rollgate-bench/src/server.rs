//! Real `rollgate server` processes for the harness: one on SQLite, or several replicas sharing
//! a PostgreSQL schema; and enrollment of many identities through the batch admin API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rollgate_wire::{BatchEnroll, BatchEnrolled};
use tokio::process::{Child, Command};

/// Where the servers keep their state.
#[derive(Clone, Debug)]
pub enum Backend {
    /// The embedded default: SQLite in the server's data directory.
    Sqlite,
    /// PostgreSQL at this URL; each cluster gets a schema of its own, dropped afterwards.
    Postgres(String),
}

impl Backend {
    /// `sqlite` or `postgres`.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// One server process, killed on drop.
pub struct Replica {
    /// Its base URL, `https://127.0.0.1:PORT`.
    pub url: String,
    /// Its socket address.
    pub addr: SocketAddr,
    /// Its process id.
    pub pid: u32,
    _child: Child,
}

/// One or more server processes sharing one database.
pub struct Cluster {
    dir: tempfile::TempDir,
    /// The running replicas; the first one takes management calls.
    pub replicas: Vec<Replica>,
    /// The server CA, which signs the agents' and the servers' certificates.
    pub ca_pem: String,
    admin_token: String,
    schema: Option<(String, String)>,
    http: reqwest::Client,
}

/// Extra server flags for one figure.
#[derive(Clone, Debug, Default)]
pub struct ServerFlags(pub Vec<String>);

impl Cluster {
    /// Starts `replicas` servers of `rollgate` on `backend` and waits until each listens.
    pub async fn start(
        rollgate: &Path,
        backend: &Backend,
        replicas: usize,
        flags: &ServerFlags,
    ) -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new().prefix("rollgate-bench-").tempdir()?;
        let schema = match backend {
            Backend::Sqlite => None,
            Backend::Postgres(url) => {
                let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos();
                Some((url.clone(), format!("rg_bench_{}_{nanos}", std::process::id())))
            }
        };
        if schema.is_some() {
            // Replicas share one secret key, which seals the CA key in the database.
            use rand::RngCore;
            let mut secret = [0u8; 32];
            rand::rng().fill_bytes(&mut secret);
            std::fs::write(dir.path().join("secret.key"), format!("{}\n", hex::encode(secret)))?;
        }
        let mut started = Vec::new();
        for n in 0..replicas {
            let data = dir.path().join(format!("server-{n}"));
            let mut args: Vec<String> = vec!["server".into(), "--listen".into(), "127.0.0.1:0".into()];
            args.extend(flags.0.iter().cloned());
            if let Some((url, name)) = &schema {
                args.extend([
                    "--database".into(),
                    url.clone(),
                    "--database-schema".into(),
                    name.clone(),
                    "--package-dir".into(),
                    dir.path().join("packages").display().to_string(),
                    "--secret-key-file".into(),
                    dir.path().join("secret.key").display().to_string(),
                ]);
            }
            started.push(start_one(rollgate, &args, &data, &dir.path().join(format!("server-{n}.log"))).await?);
            // Replicas agree on the CA and admin token through the database; the first one to
            // start creates them, so start the others after it.
        }
        let first = dir.path().join("server-0");
        let ca_pem = read_trimmed(&first.join("ca.pem"))?;
        let admin_token = read_trimmed(&first.join("admin.token"))?;
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes())?)
            .timeout(Duration::from_secs(600))
            .build()?;
        Ok(Cluster { dir, replicas: started, ca_pem, admin_token, schema, http })
    }

    /// Process ids of the replicas.
    pub fn pids(&self) -> Vec<u32> {
        self.replicas.iter().map(|r| r.pid).collect()
    }

    /// The replicas' addresses.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.replicas.iter().map(|r| r.addr).collect()
    }

    /// A scratch directory that lives as long as the cluster.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// An authenticated management request to the first replica.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.replicas[0].url)).bearer_auth(&self.admin_token)
    }

    /// Enrolls `count` endpoints labelled `labels` through the batch API, all with the key of
    /// `key` (one key, one certificate per endpoint: a million key generations would measure
    /// the harness, not the server). Calls `progress` with the number enrolled so far.
    pub async fn enroll(
        &self,
        key: &SharedKey,
        count: u32,
        prefix: &str,
        labels: &BTreeMap<String, String>,
        mut progress: impl FnMut(u32),
    ) -> anyhow::Result<Vec<Identity>> {
        const PER_REQUEST: u32 = 10_000;
        let mut identities = Vec::with_capacity(count as usize);
        let mut done = 0;
        while done < count {
            let n = (count - done).min(PER_REQUEST);
            let request = BatchEnroll {
                csr_pem: key.csr_pem.clone(),
                count: n,
                hostname_prefix: format!("{prefix}{done}"),
                labels: labels.clone(),
            };
            let response = self.admin(reqwest::Method::POST, "/v1/endpoints/batch").json(&request).send().await?;
            if !response.status().is_success() {
                bail!("batch enrollment failed: {}", response.text().await.unwrap_or_default());
            }
            let batch: BatchEnrolled = response.json().await?;
            identities.extend(batch.endpoints.into_iter().map(|e| Identity { id: e.id, cert_pem: e.cert_pem }));
            done += n;
            progress(done);
        }
        Ok(identities)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Kill the servers before dropping their schema.
        self.replicas.clear();
        if let Some((url, schema)) = self.schema.take() {
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
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
}

async fn start_one(rollgate: &Path, args: &[String], data: &Path, log: &Path) -> anyhow::Result<Replica> {
    let log_file = std::fs::File::create(log)?;
    let mut child = Command::new(rollgate)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("ROLLGATE_LOG", "warn")
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("while starting {}", rollgate.display()))?;
    let pid = child.id().context("the server exited at once")?;
    for _ in 0..600 {
        if let Ok(url) = read_trimmed(&data.join("server.url")) {
            let addr = url.trim_start_matches("https://").parse().with_context(|| format!("server URL {url}"))?;
            return Ok(Replica { url, addr, pid, _child: child });
        }
        if let Some(status) = child.try_wait()? {
            bail!("the server exited with {status}; its log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the server did not start within 30 s; its log:\n{}", std::fs::read_to_string(log).unwrap_or_default())
}

fn read_trimmed(path: &PathBuf) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?.trim().to_string())
}

/// The key pair every virtual agent of a run shares, and its CSR.
pub struct SharedKey {
    /// The private key, PEM.
    pub key_pem: String,
    /// A CSR for it, PEM.
    pub csr_pem: String,
}

impl SharedKey {
    /// A fresh key.
    pub fn generate() -> anyhow::Result<SharedKey> {
        let (key_pem, csr_pem) = rollgate_pki::new_client_key_and_csr("rollgate-bench")?;
        Ok(SharedKey { key_pem, csr_pem })
    }
}

/// One enrolled endpoint.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Its endpoint id.
    pub id: String,
    /// Its client certificate.
    pub cert_pem: String,
}

impl Identity {
    /// A TLS client configuration presenting this identity and trusting `roots_pem`. Each has its
    /// own session cache, as each real agent does.
    pub fn tls(&self, roots_pem: &str, key: &SharedKey) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        Ok(rollgate_pki::client_config(roots_pem, Some((&self.cert_pem, &key.key_pem)))?)
    }
}
