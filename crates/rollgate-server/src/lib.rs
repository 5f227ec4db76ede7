//! Rollgate's HTTPS server: the agent API, the management API and the rollout scheduler.
//!
//! Handlers validate input, record facts and return; the [`scheduler`] decides (through
//! `rollgate-core`, inside the store's transaction). **Invariant:** there is no plain-HTTP
//! listener; every byte goes through rustls.

pub mod api;
pub mod bootstrap;
pub mod campaign_months;
pub mod feeds;
pub mod hot;
pub mod notify;
pub mod packages;
pub mod scheduler;
pub mod secrets;
pub mod tls;
pub mod tuf;
pub mod vulnerabilities;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use rollgate_store::Store;
use tokio::sync::Notify;

/// How the server was asked to run.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where the CA, certificates, database, token and packages live.
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// A real certificate chain to present instead of the generated one.
    pub tls_cert: Option<PathBuf>,
    /// Its key.
    pub tls_key: Option<PathBuf>,
    /// An endpoint not seen for this long is not released.
    pub offline_after_secs: u64,
    /// How often the scheduler looks at every live set even when nothing woke it.
    pub tick_ms: u64,
    /// Largest package accepted.
    pub max_package_bytes: u64,
    /// Longest a poll is held open waiting for new work.
    pub long_poll_max_secs: u64,
    /// A database URL (`postgres://…`); none means SQLite in the data directory.
    pub database: Option<String>,
    /// The PostgreSQL schema to use (created if missing).
    pub database_schema: Option<String>,
    /// Where package bytes live; every replica of a cluster must see the same directory.
    pub package_dir: Option<PathBuf>,
    /// The key that seals secrets in the database; every replica of a cluster is given the
    /// same one. None: `DATA_DIR/secret.key`, created on first start.
    pub secret_key_file: Option<PathBuf>,
    /// The signed update repository (TUF metadata); replicas share it like `package_dir`.
    /// None: `DATA_DIR/tuf`.
    pub tuf_dir: Option<PathBuf>,
    /// The online TUF keys (snapshot, timestamp), when this server publishes targets roles.
    pub tuf_online_keys: Option<(PathBuf, PathBuf)>,
    /// How campaign emails are sent; none: campaign emails fail with a reason in the log.
    pub smtp: Option<notify::SmtpConfig>,
    /// A CA (PEM) to trust for HTTPS webhooks besides the public roots.
    pub webhook_ca: Option<PathBuf>,
    /// How often the campaign driver looks at every campaign.
    pub campaign_tick_ms: u64,
}

impl ServerConfig {
    /// Defaults for everything but the directory and address.
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> ServerConfig {
        ServerConfig {
            data_dir,
            listen,
            tls_cert: None,
            tls_key: None,
            offline_after_secs: 300,
            tick_ms: 1000,
            max_package_bytes: 2 * 1024 * 1024 * 1024,
            long_poll_max_secs: 30,
            database: None,
            database_schema: None,
            package_dir: None,
            secret_key_file: None,
            tuf_dir: None,
            tuf_online_keys: None,
            smtp: None,
            webhook_ca: None,
            campaign_tick_ms: 5000,
        }
    }

    /// Where the TUF repository lives.
    pub fn tuf_dir(&self) -> PathBuf {
        self.tuf_dir.clone().unwrap_or_else(|| self.data_dir.join("tuf"))
    }

    /// Where package bytes live.
    pub fn package_dir(&self) -> PathBuf {
        self.package_dir.clone().unwrap_or_else(|| self.data_dir.join("packages"))
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Arc<dyn Store>,
    /// The CA that signs agent certificates.
    pub ca: Arc<rollgate_pki::Ca>,
    /// SHA-256 of the admin token.
    pub admin_token_sha256: Arc<str>,
    /// Package bytes on disk.
    pub packages: Arc<packages::PackageStore>,
    /// Settings.
    pub config: Arc<ServerConfig>,
    /// Assignments, fingerprints and last-seen times in memory (see [`hot`]).
    pub hot: Arc<hot::Hot>,
    /// Wakes the scheduler early (a slot was freed, a set was created or resumed).
    pub wake_scheduler: Arc<Notify>,
    /// This process, as a lease holder (random per start).
    pub replica_id: Arc<str>,
    /// The signed update repository.
    pub tuf: Arc<tuf::Tuf>,
    /// Sends campaign notifications (email, webhooks).
    pub notifier: notify::Notifier,
    /// The campaign driver's per-process state.
    pub campaigns: Arc<campaign_months::Driver>,
}

impl AppState {
    /// Says that assignments may have changed: they are reloaded, then held polls look again.
    pub fn announce_change(&self) {
        self.hot.changed();
    }
}

/// Opens the package directory and removes old bytes that no package names.
async fn open_packages(config: &ServerConfig, store: &dyn Store) -> anyhow::Result<packages::PackageStore> {
    let packages = packages::PackageStore::open(&config.package_dir())?;
    let referenced = store.list_packages().await?.into_iter().map(|p| p.sha256).collect();
    match packages.collect_garbage(&referenced) {
        Ok(0) => {}
        Ok(n) => tracing::info!("removed {n} package files that no package names"),
        Err(e) => tracing::warn!("could not clean the package directory: {e}"),
    }
    Ok(packages)
}

/// Bootstraps the data directory, binds, and serves until the process is stopped.
pub async fn run(config: ServerConfig) -> anyhow::Result<()> {
    let boot = bootstrap::prepare(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("while binding {}: is another server running there?", config.listen))?;
    let addr = listener.local_addr()?;
    let url = format!("https://{addr}");
    std::fs::write(config.data_dir.join("server.url"), format!("{url}\n")).context("while writing server.url")?;
    boot.print_summary(&url);
    let packages = open_packages(&config, &*boot.store).await?;
    let hot = hot::Hot::load(boot.store.clone()).await.context("while loading the assignments")?;
    tokio::spawn(hot.clone().run());
    let tuf = tuf::Tuf::open(&config.tuf_dir(), config.tuf_online_keys.clone())
        .context("while opening the TUF repository")?;
    let mut notifier = notify::Notifier::new(config.smtp.clone()).context("while setting up email notifications")?;
    if let Some(ca) = &config.webhook_ca {
        notifier = notifier.with_webhook_root(ca).context("while reading --webhook-ca")?;
    }
    let state = AppState {
        store: boot.store,
        ca: Arc::new(boot.ca),
        admin_token_sha256: boot.admin_token_sha256.into(),
        packages: Arc::new(packages),
        config: Arc::new(config),
        hot: hot.clone(),
        wake_scheduler: Arc::new(Notify::new()),
        replica_id: bootstrap::new_secret()[..16].into(),
        tuf: Arc::new(tuf),
        notifier,
        campaigns: Arc::new(campaign_months::Driver::default()),
    };
    tokio::spawn(scheduler::run(state.clone()));
    tokio::spawn(scheduler::follow_other_replicas(state.clone()));
    tokio::spawn(campaign_months::run(state.clone()));
    tokio::spawn(tuf::renew_timestamps(state.clone()));
    tokio::spawn(feeds::poll_feeds(state.clone()));
    let app = api::router(state);
    tls::serve(listener, boot.tls_config, app).await
}
