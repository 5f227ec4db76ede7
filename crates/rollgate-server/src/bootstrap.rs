//! Every start: the data directory, the database, the secret key, the CA, the server
//! certificate and the admin token.
//!
//! The CA and the admin token live in the database (the CA's key and the token sealed with the
//! secret key), so every replica on a shared database uses the same ones. Replicas starting at
//! the same moment agree through `Store::insert_meta_if_absent`: the first writer wins and the
//! others read what it wrote. The data directory keeps what is handy on the machine: the
//! public `ca.pem`, a copy of `admin.token` for local commands, `server.url`, and, for a single
//! server, the SQLite database and the secret key.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use rand::RngCore;
use rollgate_pki::Ca;
use rollgate_store::{SqlStore, Store};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::secrets::SecretKey;
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
    pub paths: Vec<(&'static str, String)>,
    /// True when this start created the installation's CA.
    pub first_start: bool,
}

impl Boot {
    /// Prints where everything is, for the operator.
    pub fn print_summary(&self, url: &str) {
        if self.first_start {
            println!("rollgate server: initialized a new installation");
        }
        for (what, path) in &self.paths {
            println!("  {what:<16} {path}");
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

/// Creates `path` with mode 0600 and writes `contents`; fails if it exists.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
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

/// Writes a private file only when its contents differ, replacing it atomically.
fn refresh_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    if fs::read_to_string(path).ok().as_deref() == Some(contents) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    write_private(&tmp, contents)?;
    fs::rename(&tmp, path).with_context(|| format!("while replacing {}", path.display()))
}

/// The CA as stored in the database: the certificate in the clear, the key sealed.
#[derive(Serialize, Deserialize)]
struct StoredCa {
    cert_pem: String,
    key_sealed: String,
}

/// The admin token as stored: its hash for checking, and the token sealed so that every
/// replica can write it to its own data directory.
#[derive(Serialize, Deserialize)]
struct StoredToken {
    sha256: String,
    sealed: String,
}

/// Creates what is missing and loads the rest.
pub async fn prepare(config: &ServerConfig) -> anyhow::Result<Boot> {
    let dir = &config.data_dir;
    fs::create_dir_all(dir).with_context(|| format!("while creating the data directory {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).ok();

    let (store, db_shown) = open_store(config).await?;
    let key_path = config.secret_key_file.clone().unwrap_or_else(|| dir.join("secret.key"));
    // A generated key is only right for a single server; a cluster is given one.
    let key = SecretKey::load(&key_path, config.secret_key_file.is_none())?;

    let (ca, first_start) = agree_on_ca(&*store, &key).await?;
    let ca_path = dir.join("ca.pem");
    fs::write(&ca_path, ca.cert_pem()).with_context(|| format!("while writing {}", ca_path.display()))?;
    let (token, admin_token_sha256) = agree_on_admin_token(&*store, &key).await?;
    let token_path = dir.join("admin.token");
    refresh_private(&token_path, &format!("{token}\n"))?;

    let (cert_pem, key_pem) = server_identity(config, &ca)?;
    let tls_config =
        rollgate_pki::server_config(&cert_pem, &key_pem, ca.cert_pem()).context("while configuring TLS")?;

    let mut paths = vec![
        ("data directory", dir.display().to_string()),
        ("CA certificate", ca_path.display().to_string()),
        ("admin token", token_path.display().to_string()),
        ("database", db_shown),
        ("secret key", key_path.display().to_string()),
        ("packages", config.package_dir().display().to_string()),
    ];
    if let Some(cert) = &config.tls_cert {
        paths.push(("TLS certificate", cert.display().to_string()));
    }
    Ok(Boot { store, ca, admin_token_sha256, tls_config, paths, first_start })
}

async fn open_store(config: &ServerConfig) -> anyhow::Result<(Arc<dyn Store>, String)> {
    match &config.database {
        Some(url) => {
            let store = SqlStore::open_url(url, config.database_schema.as_deref())
                .await
                .context("while opening the database given by --database")?;
            let shown = redact_url(url);
            let shown = match &config.database_schema {
                Some(schema) => format!("{shown} (schema {schema})"),
                None => shown,
            };
            Ok((Arc::new(store), shown))
        }
        None => {
            let path = config.data_dir.join("rollgate.db");
            let store =
                SqlStore::open_sqlite(&path).await.with_context(|| format!("while opening {}", path.display()))?;
            Ok((Arc::new(store), path.display().to_string()))
        }
    }
}

/// A database URL fit to print: no user, password or query parameters (which may hold a
/// password), only scheme, host, port and database.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let host_and_path = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
    format!("{scheme}://{host_and_path}")
}

/// The installation's CA: the one in the database, or a new one if there is none yet.
async fn agree_on_ca(store: &dyn Store, key: &SecretKey) -> anyhow::Result<(Ca, bool)> {
    let mut created = false;
    if store.get_meta("ca").await?.is_none() {
        let candidate = Ca::generate("Rollgate CA").context("while generating the CA")?;
        let stored = StoredCa {
            cert_pem: candidate.cert_pem().to_string(),
            key_sealed: key.seal("ca", candidate.key_pem().as_bytes())?,
        };
        created = store.insert_meta_if_absent("ca", &serde_json::to_string(&stored)?).await?;
    }
    let Some(text) = store.get_meta("ca").await? else { bail!("the database lost its CA while starting") };
    let stored: StoredCa = serde_json::from_str(&text).context("the stored CA is damaged")?;
    let key_pem = String::from_utf8(key.open("ca", &stored.key_sealed)?).context("the stored CA key is damaged")?;
    let ca = Ca::from_pem(&stored.cert_pem, &key_pem).context("while loading the CA")?;
    Ok((ca, created))
}

/// The admin token: the one in the database, or a new one if there is none yet.
async fn agree_on_admin_token(store: &dyn Store, key: &SecretKey) -> anyhow::Result<(String, String)> {
    if store.get_meta("admin_token").await?.is_none() {
        let token = new_secret();
        let stored = StoredToken { sha256: secret_hash(&token), sealed: key.seal("admin_token", token.as_bytes())? };
        store.insert_meta_if_absent("admin_token", &serde_json::to_string(&stored)?).await?;
    }
    let Some(text) = store.get_meta("admin_token").await? else {
        bail!("the database lost its admin token while starting")
    };
    let stored: StoredToken = serde_json::from_str(&text).context("the stored admin token is damaged")?;
    let token =
        String::from_utf8(key.open("admin_token", &stored.sealed)?).context("the stored admin token is damaged")?;
    if secret_hash(&token) != stored.sha256 {
        bail!("the stored admin token does not match its hash; the database is damaged");
    }
    Ok((token, stored.sha256))
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

#[cfg(test)]
mod tests {
    #[test]
    fn database_urls_are_printed_without_credentials() {
        for (url, shown) in [
            ("postgres://u:p@ss@db:5432/x?sslmode=require", "postgres://db:5432/x"),
            ("postgres://db/x?password=secret", "postgres://db/x"),
            ("postgresql://user@db/x", "postgresql://db/x"),
            ("postgres://db:5432/x", "postgres://db:5432/x"),
        ] {
            assert_eq!(super::redact_url(url), shown);
        }
    }
}
