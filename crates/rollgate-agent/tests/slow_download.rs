//! A server that sends a package a few bytes at a time never stalls the connection, yet would
//! hold an endpoint (and its slot) for ever: the agent's own minimum rate cuts it off. The
//! server here is a real TLS listener on loopback writing a real HTTP/1.1 response slowly.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use rollgate_agent::client::Client;
use rollgate_agent::download::{fetch_verified_at_rate, DownloadError, MinRate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PACKAGE_BYTES: u64 = 100_000;

/// Serves every connection a 200 answer announcing `PACKAGE_BYTES`, then 10 bytes every 50 ms.
async fn trickling_server(ca: &rollgate_pki::Ca) -> std::net::SocketAddr {
    let (cert, key) = ca.issue_server_cert(&["127.0.0.1".to_string()]).unwrap();
    let mut config = (*rollgate_pki::server_config(&cert, &key, ca.cert_pem()).unwrap()).clone();
    // The answer below is HTTP/1.1, so HTTP/2 must not be negotiated.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {PACKAGE_BYTES}\r\n\r\n");
                if tls.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                loop {
                    if tls.write_all(&[b'x'; 10]).await.is_err() || tls.flush().await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_download_below_the_minimum_rate_is_cut_off_and_kept_for_resuming() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = rollgate_pki::Ca::generate("test CA").unwrap();
    let addr = trickling_server(&ca).await;
    let client = Client::anonymous(vec![format!("https://{addr}")], ca.cert_pem()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sha256 = "0".repeat(64);
    // About 200 bytes a second arrive; at least 5,000 per second are required.
    let min_rate = MinRate { window: Duration::from_secs(1), min_bytes: 5_000 };
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        fetch_verified_at_rate(&client, dir.path(), "/package", &sha256, PACKAGE_BYTES, min_rate),
    )
    .await
    .expect("the agent's own limit ends the download, not this test's timeout");
    match result {
        Err(DownloadError::Transfer(why)) => assert!(why.contains("too slow"), "{why}"),
        other => panic!("expected a transfer failure, got {other:?}"),
    }
    let part = std::fs::metadata(dir.path().join(format!("{sha256}.part"))).unwrap();
    assert!(part.len() > 0 && part.len() < PACKAGE_BYTES, "the partial file is kept: {} bytes", part.len());
}
