//! `rollgate keys`: the signing keys of the update repository (TUF), made and kept on the
//! operator's machine. See `rollgate_tuf` for who holds which key.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

/// `rollgate keys ...`
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create the root, targets, snapshot and timestamp keys and a signed root.json.
    Init(InitArgs),
    /// Replace the targets and/or online keys through the next signed root (offline).
    Rotate(RotateArgs),
    /// Upload a signed root (the first, or the next of the chain) to the server.
    PushRoot {
        /// The signed `<n>.root.json`.
        file: PathBuf,
        #[command(flatten)]
        conn: crate::manage::Conn,
    },
}

/// `rollgate packages sign`
#[derive(Args, Debug)]
pub struct SignArgs {
    /// The package (the same bytes and facts as given to `packages add`).
    #[command(flatten)]
    package: crate::manage::PackageFile,
    /// Release counter: agents refuse a release lower than the one they run.
    #[arg(long)]
    release: u64,
    /// Hardware this package is for (repeatable; none: any).
    #[arg(long)]
    hardware: Vec<String>,
    /// Operating systems this package is for (repeatable; none: any).
    #[arg(long)]
    os: Vec<String>,
    /// Allow installing this release over a higher one (a signed rollback).
    #[arg(long)]
    rollback: bool,
    /// The current signed root.
    #[arg(long)]
    root: PathBuf,
    /// The targets key (`keys/targets.der` from `keys init`).
    #[arg(long)]
    targets_key: PathBuf,
    /// The previous signed targets role, whose packages are kept (none: a first one).
    #[arg(long)]
    previous: Option<PathBuf>,
    /// Where to write `<n>.targets.json`.
    #[arg(long, default_value = ".")]
    out: PathBuf,
}

/// Signs a package into a new targets role, offline.
pub async fn sign(a: SignArgs) -> anyhow::Result<()> {
    let p = a.package;
    rollgate_core::names::validate("product", &p.product).map_err(anyhow::Error::msg)?;
    rollgate_core::version::validate(&p.version).map_err(anyhow::Error::msg)?;
    let read = |path: &PathBuf| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let root = rollgate_tuf::targets::parse("root.json", &read(&a.root)?)?;
    let previous = match &a.previous {
        Some(path) => Some(rollgate_tuf::targets::parse("targets.json", &read(path)?)?),
        None => None,
    };
    let release = rollgate_tuf::release::Release {
        product: p.product,
        version: p.version,
        module: p.module,
        release: a.release,
        hardware: a.hardware,
        os: a.os,
        rollback: a.rollback,
    };
    let additions = [rollgate_tuf::targets::Addition { package: &p.file, release }];
    let (version, bytes) = rollgate_tuf::targets::sign(
        &root,
        previous.as_ref(),
        &additions,
        &a.targets_key,
        rollgate_tuf::targets::TARGETS_VALID_DAYS,
        jiff::Timestamp::now(),
    )
    .await?;
    let out = a.out.join(format!("{version}.targets.json"));
    std::fs::write(&out, bytes).with_context(|| format!("writing {}", out.display()))?;
    println!("signed targets version {version}: {}", out.display());
    Ok(())
}

/// `rollgate keys init`
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Directory to create them in (must not hold keys already).
    #[arg(long)]
    out: PathBuf,
    /// Root keys to make.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=16))]
    root_keys: u8,
    /// How many root keys must sign a new root.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=16))]
    root_threshold: u8,
}

/// `rollgate keys rotate`
#[derive(Args, Debug)]
pub struct RotateArgs {
    /// The directory `keys init` made: its newest `<n>.root.json` is the root to follow.
    #[arg(long)]
    dir: PathBuf,
    /// A role whose key to replace (repeatable).
    #[arg(long = "role", required = true, value_parser = ["targets", "snapshot", "timestamp"])]
    roles: Vec<String>,
    /// A root key to sign the new root with (repeatable; as many as the root's threshold).
    #[arg(long = "root-key", required = true)]
    root_keys: Vec<PathBuf>,
}

/// The newest `<n>.root.json` in `dir`, parsed.
fn newest_root(dir: &std::path::Path) -> anyhow::Result<tough::schema::Signed<tough::schema::Root>> {
    let mut version = 0u64;
    while dir.join(format!("{}.root.json", version + 1)).exists() {
        version += 1;
    }
    anyhow::ensure!(version > 0, "{} holds no 1.root.json: is it a `keys init` directory?", dir.display());
    let path = dir.join(format!("{version}.root.json"));
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(rollgate_tuf::targets::parse("root.json", &bytes)?)
}

async fn rotate(a: RotateArgs) -> anyhow::Result<()> {
    use tough::schema::RoleType;
    let previous = newest_root(&a.dir)?;
    let roles: Vec<RoleType> = a
        .roles
        .iter()
        .map(|r| match r.as_str() {
            "targets" => RoleType::Targets,
            "snapshot" => RoleType::Snapshot,
            _ => RoleType::Timestamp,
        })
        .collect();
    let (_, made) = rollgate_tuf::keys::rotate(&a.dir, &previous, &a.root_keys, &roles, jiff::Timestamp::now())
        .await
        .context("rotating keys")?;
    let written = a.dir.join(format!("{}.root.json", previous.signed.version.get() + 1));
    println!("signed root:     {} (push it with `rollgate keys push-root`)", written.display());
    for (role, path) in made {
        println!("new {role} key: {}", path.display());
    }
    Ok(())
}

/// Runs a `keys` command.
pub async fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Init(a) => {
            if a.out.join("keys").exists() {
                anyhow::bail!("{} already holds keys; choose another directory", a.out.display());
            }
            let made = rollgate_tuf::keys::init(&a.out, a.root_keys, a.root_threshold, jiff::Timestamp::now())
                .await
                .with_context(|| format!("creating keys in {}", a.out.display()))?;
            println!("signed root:     {} (give it to agents with --root)", made.root.display());
            for key in &made.root_keys {
                println!("root key:        {} (offline; keep each apart)", key.display());
            }
            println!("targets key:     {} (offline; signs packages)", made.targets_key.display());
            println!("snapshot key:    {} (online; for the server)", made.snapshot_key.display());
            println!("timestamp key:   {} (online; for the server)", made.timestamp_key.display());
            println!("{} of {} root keys must sign a new root.", a.root_threshold, a.root_keys);
            Ok(())
        }
        KeysCommand::Rotate(a) => rotate(a).await,
        KeysCommand::PushRoot { file, conn } => {
            let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let answer: serde_json::Value = conn.connect()?.put_bytes("/v1/tuf/root", bytes).await?;
            println!("root version {} published", answer["root_version"]);
            Ok(())
        }
    }
}
