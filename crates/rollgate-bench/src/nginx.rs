//! The baseline: Debian's nginx, started by the harness on loopback, serving static files over
//! TLS with a certificate of the same kind as Rollgate's (ECDSA P-256), tuned as one would tune
//! it for this job (a worker per core, no access log, long keep-alive, an open-file cache,
//! one stateless session ticket per handshake).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

/// Where Debian puts nginx; `PATH` is searched too.
const DEBIAN_NGINX: &str = "/usr/sbin/nginx";

/// Finds the nginx binary: `explicit`, then `/usr/sbin/nginx`, then `PATH`. The error says how
/// to install it.
pub fn find(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(path.to_path_buf());
        }
        bail!("--nginx {}: no such file", path.display());
    }
    if Path::new(DEBIAN_NGINX).is_file() {
        return Ok(DEBIAN_NGINX.into());
    }
    if let Some(path) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file())
    {
        return Ok(path);
    }
    bail!(
        "nginx, the baseline of the check-in and download figures, is not installed. Install Debian's package \
         (`sudo apt-get install -y nginx`; `bench/run` does this for you), pass --nginx PATH, or run with \
         --no-baseline to measure Rollgate alone"
    )
}

/// What nginx serves, and how.
pub struct Site {
    /// Directory served as the document root.
    pub root: PathBuf,
    /// Verify client certificates against `client_ca_pem` (`ssl_verify_client on`).
    pub client_ca_pem: Option<String>,
}

/// A running nginx, stopped on drop.
pub struct Nginx {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The master's process id.
    pub pid: u32,
    _child: Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts `binary` with a certificate for 127.0.0.1 issued by `ca`, serving `site`, with
    /// `workers` worker processes (one per core, as Rollgate has one async worker per core).
    pub async fn start(binary: &Path, ca: &rollgate_pki::Ca, site: &Site, workers: usize) -> anyhow::Result<Nginx> {
        let dir = tempfile::Builder::new().prefix("rollgate-bench-nginx-").tempdir()?;
        let (cert_pem, key_pem) = ca.issue_server_cert(&["127.0.0.1".to_string()])?;
        std::fs::write(dir.path().join("server.pem"), cert_pem)?;
        std::fs::write(dir.path().join("server.key"), key_pem)?;
        let port = free_port()?;
        let verify = match &site.client_ca_pem {
            Some(pem) => {
                std::fs::write(dir.path().join("client-ca.pem"), pem)?;
                "ssl_verify_client on;\n        ssl_client_certificate client-ca.pem;\n        ssl_verify_depth 1;"
            }
            None => "ssl_verify_client off;",
        };
        let conf = format!(
            r#"daemon off;
master_process on;
worker_processes {workers};
pid nginx.pid;
error_log error.log warn;
user root;
events {{
    worker_connections 16384;
}}
worker_rlimit_nofile 20000;
http {{
    access_log off;
    default_type application/json;
    sendfile on;
    # Rollgate answers check-ins from memory; let nginx keep its file open and stat'ed too.
    open_file_cache max=1000 inactive=60s;
    open_file_cache_valid 60s;
    tcp_nodelay on;
    keepalive_timeout 120s;
    keepalive_requests 100000000;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    server {{
        listen 127.0.0.1:{port} ssl backlog=4096;
        ssl_certificate server.pem;
        ssl_certificate_key server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        # Stateless tickets only, one per handshake, as Rollgate does: a shared session cache
        # makes OpenSSL store every TLS 1.3 session under a lock.
        ssl_session_cache off;
        ssl_session_tickets on;
        ssl_session_timeout 6h;
        ssl_conf_command NumTickets 1;
        {verify}
        root {root};
        etag on;
    }}
}}
"#,
            root = site.root.display()
        );
        std::fs::create_dir_all(dir.path().join("tmp"))?;
        std::fs::write(dir.path().join("nginx.conf"), conf)?;
        let log = std::fs::File::create(dir.path().join("stderr.log"))?;
        let mut child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("nginx exited at once")?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(Nginx { addr, pid, _child: child, _dir: dir });
            }
            if let Some(status) = child.try_wait()? {
                let errors = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
                let stderr = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
                bail!("nginx exited with {status}:\n{stderr}{errors}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("nginx did not listen within 10 s")
    }
}

/// Resident memory of an nginx master `pid` and its workers, in KiB.
pub fn rss_of_tree(pid: u32) -> u64 {
    let mut pids = vec![pid];
    pids.extend(children_of(pid));
    crate::proc::total_rss_kib(&pids)
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM the master so that its workers go too (a plain kill would orphan them).
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.pid as i32).expect("a child's pid is positive"),
            rustix::process::Signal::TERM,
        );
        for _ in 0..100 {
            if crate::proc::rss_kib(self.pid).is_none() || children_of(self.pid).is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Process ids whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            crate::proc::stat_fields(child).and_then(|fields| fields.get(1)?.parse::<u32>().ok()) == Some(pid)
        })
        .collect()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
