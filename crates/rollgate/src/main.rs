//! The `rollgate` binary: one executable for the server, the agent, the management commands
//! and the demo. Parsing lives here; each subcommand's work lives in its own crate or module.

mod advisories;
mod campaigns;
mod demo;
mod keys;
mod manage;
mod output;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Keeps a fleet of endpoints patched and upgraded.
#[derive(Parser, Debug)]
#[command(name = "rollgate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the HTTPS server (agent API, management API, scheduler).
    Server(ServerArgs),
    /// Run the endpoint agent (the Updater).
    Agent(AgentArgs),
    /// Enrollment tokens for new agents.
    #[command(subcommand)]
    EnrollToken(manage::EnrollTokenCommand),
    /// Package versions in the server's store.
    #[command(subcommand)]
    Packages(manage::PackagesCommand),
    /// Upgrade Sets.
    #[command(subcommand)]
    Sets(manage::SetsCommand),
    /// Enrolled endpoints.
    #[command(subcommand)]
    Endpoints(manage::EndpointsCommand),
    /// Start a server and local agents, and run an upgrade with a rollback, end to end.
    Demo(demo::DemoArgs),
    /// Signing keys of the update repository (TUF).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Security advisories: import, list, and the endpoints they affect.
    #[command(subcommand)]
    Advisories(advisories::AdvisoriesCommand),
    /// Advisory feeds the server polls (CSAF providers, OSV archives, directories).
    #[command(subcommand)]
    Feeds(advisories::FeedsCommand),
    /// Patch campaigns: apply a campaign file, list and show campaigns.
    #[command(subcommand)]
    Campaigns(campaigns::CampaignsCommand),
    /// Predict a campaign month on a simulated fleet, in virtual time (deterministic per seed).
    Simulate(SimulateArgs),
}

#[derive(Args, Debug)]
struct SimulateArgs {
    /// The campaign file (TOML, as for `campaigns apply`).
    #[arg(long)]
    campaign: PathBuf,
    /// The fleet file (TOML: endpoint groups, online and failure probabilities).
    #[arg(long)]
    fleet: PathBuf,
    /// Seed of every random draw: the same files and seed give the same output, byte for byte.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn simulate(a: &SimulateArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let read = |p: &PathBuf| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    let report = rollgate_sim::simulate(&read(&a.campaign)?, &read(&a.fleet)?, a.seed)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

#[derive(Args, Debug)]
struct ServerArgs {
    /// Data directory (CA, certificates, database, admin token, packages).
    #[arg(long, default_value = "rollgate-data")]
    data_dir: PathBuf,
    /// Address to listen on (HTTPS only).
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// A certificate chain (PEM) to present instead of the generated one.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Endpoints not seen for this many seconds are not released.
    #[arg(long, default_value_t = 300)]
    offline_after: u64,
    /// Largest package accepted, in MiB.
    #[arg(long, default_value_t = 2048)]
    max_package_mib: u64,
    /// How often the scheduler looks at every live set, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    tick_ms: u64,
    /// Longest a poll is held open waiting for new work, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=600))]
    long_poll_max_secs: u64,
    /// PostgreSQL URL for a cluster of servers (default: SQLite in the data directory).
    #[arg(long, env = "ROLLGATE_DATABASE", hide_env_values = true)]
    database: Option<String>,
    /// PostgreSQL schema to use (created if missing), so installations can share a database.
    #[arg(long, requires = "database")]
    database_schema: Option<String>,
    /// Directory of package bytes; every server of a cluster must see the same one
    /// (default: DATA_DIR/packages).
    #[arg(long)]
    package_dir: Option<PathBuf>,
    /// The 256-bit key (64 hex digits) that seals secrets in the database; give every server
    /// of a cluster the same file (default: DATA_DIR/secret.key, created on first start).
    #[arg(long, env = "ROLLGATE_SECRET_KEY_FILE")]
    secret_key_file: Option<PathBuf>,
    /// The signed update repository (TUF metadata); replicas of a cluster share one, like
    /// --package-dir (default: DATA_DIR/tuf).
    #[arg(long, env = "ROLLGATE_TUF_DIR")]
    tuf_dir: Option<PathBuf>,
    /// The online TUF snapshot key (from `rollgate keys init`), to publish targets roles.
    #[arg(long, requires = "tuf_timestamp_key")]
    tuf_snapshot_key: Option<PathBuf>,
    /// The online TUF timestamp key (from `rollgate keys init`).
    #[arg(long, requires = "tuf_snapshot_key")]
    tuf_timestamp_key: Option<PathBuf>,
    /// SMTP server for campaign emails: `smtp://host[:port]` (STARTTLS required, port 587 by
    /// default) or `smtps://host[:port]` (TLS from the start, port 465). Never plain text.
    #[arg(long, env = "ROLLGATE_SMTP_URL", requires = "smtp_from")]
    smtp_url: Option<String>,
    /// The From address of campaign emails.
    #[arg(long, env = "ROLLGATE_SMTP_FROM", requires = "smtp_url")]
    smtp_from: Option<String>,
    /// A CA certificate (PEM) to trust for the SMTP server besides the public roots.
    #[arg(long, requires = "smtp_url")]
    smtp_ca: Option<PathBuf>,
    /// SMTP user name.
    #[arg(long, env = "ROLLGATE_SMTP_USERNAME", requires = "smtp_password")]
    smtp_username: Option<String>,
    /// SMTP password.
    #[arg(long, env = "ROLLGATE_SMTP_PASSWORD", hide_env_values = true, requires = "smtp_username")]
    smtp_password: Option<String>,
    /// A CA certificate (PEM) to trust for HTTPS webhooks besides the public roots.
    #[arg(long)]
    webhook_ca: Option<PathBuf>,
    /// How often the campaign driver looks at every campaign, in milliseconds.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(10..))]
    campaign_tick_ms: u64,
    /// Async worker threads (default: one per core). Replicas sharing a machine should split
    /// its cores between them rather than each start one thread per core.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    worker_threads: Option<u16>,
}

#[derive(Args, Debug)]
struct AgentArgs {
    /// Server URL; several may be given, comma-separated, and are tried in order.
    #[arg(long, env = "ROLLGATE_SERVER", value_delimiter = ',', required = true)]
    server: Vec<String>,
    /// The server's CA certificate (needed to enroll; kept afterwards).
    #[arg(long, env = "ROLLGATE_CA")]
    ca: Option<PathBuf>,
    /// Enrollment token (needed only on the first start).
    #[arg(long, env = "ROLLGATE_ENROLL_TOKEN")]
    enroll_token: Option<String>,
    /// Where the agent keeps its identity, jobs and installed versions.
    #[arg(long)]
    state_dir: PathBuf,
    /// A label key=value to report (repeatable), e.g. site=berlin.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Longest wait between polls, in seconds (the server holds each poll up to this long).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    poll_interval: u64,
    /// Seconds a new agent binary has to check in after a self-upgrade.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    self_upgrade_grace: u64,
    /// Host name to report instead of the machine's.
    #[arg(long)]
    hostname: Option<String>,
    /// The signed repository's root.json to trust (from `rollgate keys init`). Without it the
    /// agent trusts the root the server sends at enrollment; with it, even a server taken over
    /// before this agent enrolled cannot make it install what the targets key did not sign.
    #[arg(long, env = "ROLLGATE_ROOT")]
    root: Option<PathBuf>,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    rollgate_core::selector::parse_label(text).map_err(|e| e.to_string())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROLLGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,hyper=warn,rustls=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One process-wide TLS provider, chosen explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The agent is one small daemon on every endpoint: one thread does its work (unpacking runs
    // on the blocking pool), which keeps its memory small. The server uses every core.
    let runtime = match &cli.command {
        Command::Agent(_) => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        Command::Server(ServerArgs { worker_threads: Some(n), .. }) => {
            tokio::runtime::Builder::new_multi_thread().worker_threads(usize::from(*n)).enable_all().build()
        }
        _ => tokio::runtime::Runtime::new(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server(a) => {
            init_tracing();
            let mut config = rollgate_server::ServerConfig::new(a.data_dir, a.listen);
            config.tls_cert = a.tls_cert;
            config.tls_key = a.tls_key;
            config.offline_after_secs = a.offline_after;
            config.max_package_bytes = a.max_package_mib.saturating_mul(1024 * 1024);
            config.tick_ms = a.tick_ms;
            config.long_poll_max_secs = a.long_poll_max_secs;
            config.database = a.database;
            config.database_schema = a.database_schema;
            config.package_dir = a.package_dir;
            config.secret_key_file = a.secret_key_file;
            config.tuf_dir = a.tuf_dir;
            config.tuf_online_keys = a.tuf_snapshot_key.zip(a.tuf_timestamp_key);
            config.smtp = a.smtp_url.zip(a.smtp_from).map(|(url, from)| rollgate_server::notify::SmtpConfig {
                url,
                from,
                ca_file: a.smtp_ca,
                username: a.smtp_username,
                password: a.smtp_password,
            });
            config.webhook_ca = a.webhook_ca;
            config.campaign_tick_ms = a.campaign_tick_ms;
            rollgate_server::run(config).await
        }
        Command::Agent(a) => {
            init_tracing();
            let config = rollgate_agent::AgentConfig {
                servers: a.server.iter().map(|s| s.trim_end_matches('/').to_string()).collect(),
                ca_file: a.ca,
                enroll_token: a.enroll_token,
                state_dir: a.state_dir,
                labels: a.labels.into_iter().collect(),
                poll_interval_secs: a.poll_interval,
                self_upgrade_grace_secs: a.self_upgrade_grace,
                hostname: a.hostname,
                root_file: a.root,
            };
            rollgate_agent::run(config).await
        }
        Command::EnrollToken(c) => manage::enroll_token(c).await,
        Command::Packages(c) => manage::packages(c).await,
        Command::Sets(c) => manage::sets(c).await,
        Command::Endpoints(c) => manage::endpoints(c).await,
        Command::Demo(a) => demo::run(a).await,
        Command::Keys(c) => keys::run(c).await,
        Command::Advisories(c) => advisories::run(c).await,
        Command::Feeds(c) => advisories::feeds(c).await,
        Command::Campaigns(c) => campaigns::run(c).await,
        Command::Simulate(a) => simulate(&a),
    }
}

#[cfg(test)]
mod tests {
    /// clap checks its own definition (unique names, valid defaults) only when asked.
    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
