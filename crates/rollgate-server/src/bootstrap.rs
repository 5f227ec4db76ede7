//! First start and every start: the data directory, the CA, the server certificate, the admin
//! token and the database.
//!
//! Secrets are written with mode 0600. The CA and admin token are created once and reused, so a
//! restarted server is the same server to its agents and operators.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use rand::RngCore;
use rollgate_pki::Ca;
use rollgate_store::sqlite::SqliteStore;
use rollgate_store::Store;
use sha2::{Digest, Sha256};

use crate::ServerConfig;

/// Everything the server needs after bootstrapping.
pub struct Boot {
    /// The database.
    pub store: Arc<dyn Store>,
    /// The CA.
    pub ca: Ca,
    /// Hash of the admin token.
    pub admin_token_sha256: String,
    /// TLS settings.
    pub tls_config: Arc<rustls::ServerConfig>,
    /// Paths to print.
    pub paths: Vec<(&'static str, PathBuf)>,
    /// True when this start created the directory's secrets.
    pub first_start: bool,
}

impl Boot {
    /// Prints where everything is, for the operator.
    pub fn print_summary(&self, url: &str) {
        if self.first_start {
            println!("rollgate server: initialized a new data directory");
        }
        for (what, path) in &self.paths {
            println!("  {what:<16} {}", path.display());
        }
        println!("listening on {url}");
    }
}

/// Lower-case hex SHA-256 of a secret, as stored.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A fresh random secret: 32 bytes, hex.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("while creating {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn write_public(path: &Path, contents: &str) -> anyhow::Result<()> {
    fs::write(path, contents).with_context(|| format!("while writing {}", path.display()))
}

/// Creates what is missing in the data directory and loads the rest.
pub async fn prepare(config: &ServerConfig) -> anyhow::Result<Boot> {
    let dir = &config.data_dir;
    fs::create_dir_all(dir).with_context(|| format!("while creating the data directory {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).ok();
    let ca_path = dir.join("ca.pem");
    let ca_key_path = dir.join("ca-key.pem");
    let token_path = dir.join("admin.token");
    let db_path = dir.join("rollgate.db");

    let first_start = !ca_path.exists();
    let ca = if first_start {
        let ca = Ca::generate("Rollgate CA").context("while generating the CA")?;
        write_private(&ca_key_path, ca.key_pem())?;
        write_public(&ca_path, ca.cert_pem())?;
        ca
    } else {
        let cert = fs::read_to_string(&ca_path).with_context(|| format!("while reading {}", ca_path.display()))?;
        let key = fs::read_to_string(&ca_key_path).with_context(|| format!("while reading {}", ca_key_path.display()))?;
        Ca::from_pem(&cert, &key).context("while loading the CA")?
    };

    let store = SqliteStore::open(&db_path).await.with_context(|| format!("while opening {}", db_path.display()))?;
    let store: Arc<dyn Store> = Arc::new(store);

    let admin_token_sha256 = match store.get_meta("admin_token_sha256").await? {
        Some(hash) => {
            if !token_path.exists() {
                bail!("{} is missing but the database has an admin token; restore the file or start with a new data directory", token_path.display());
            }
            hash
        }
        None => {
            let token = new_secret();
            if token_path.exists() {
                fs::remove_file(&token_path)?;
            }
            write_private(&token_path, &format!("{token}\n"))?;
            let hash = secret_hash(&token);
            store.put_meta("admin_token_sha256", &hash).await?;
            hash
        }
    };

    let (cert_pem, key_pem) = server_identity(config, &ca)?;
    let tls_config = rollgate_pki::server_config(&cert_pem, &key_pem, ca.cert_pem()).context("while configuring TLS")?;

    let mut paths = vec![("data directory", dir.clone()), ("CA certificate", ca_path), ("admin token", token_path), ("database", db_path)];
    if let Some(cert) = &config.tls_cert {
        paths.push(("TLS certificate", cert.clone()));
    }
    Ok(Boot { store, ca, admin_token_sha256, tls_config, paths, first_start })
}

/// The certificate the server presents: the operator's, or one the CA issues for this host.
fn server_identity(config: &ServerConfig, ca: &Ca) -> anyhow::Result<(String, String)> {
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Ok((
            fs::read_to_string(cert).with_context(|| format!("while reading --tls-cert {}", cert.display()))?,
            fs::read_to_string(key).with_context(|| format!("while reading --tls-key {}", key.display()))?,
        )),
        (None, None) => {
            let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
            let ip = config.listen.ip();
            if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
                names.push(ip.to_string());
            }
            if let Ok(host) = fs::read_to_string("/etc/hostname") {
                let host = host.trim();
                if !host.is_empty() && !names.iter().any(|n| n == host) {
                    names.push(host.to_string());
                }
            }
            // Issued anew at every start: it is cheap, and a changed listen address is covered.
            Ok(ca.issue_server_cert(&names).context("while issuing the server certificate")?)
        }
        _ => bail!("--tls-cert and --tls-key go together: give both or neither"),
    }
}
