//! Shared by the agent's integration tests: a scripted HTTPS server that answers each request
//! as told and records what it received.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Each request a [`scripted_server`] received: its path and body.
pub type Requests = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A TLS server (certificate from `ca`, for 127.0.0.1) answering the n-th request with
/// `answers[n]` (status and body; after the last one, 500), recording every request.
pub async fn scripted_server(ca: &rollgate_pki::Ca, answers: Vec<(u16, &'static str)>) -> (SocketAddr, Requests) {
    let (cert, key) = ca.issue_server_cert(&["127.0.0.1".to_string()]).unwrap();
    let mut config = (*rollgate_pki::server_config(&cert, &key, ca.cert_pem()).unwrap()).clone();
    // The answers below are HTTP/1.1, so HTTP/2 must not be negotiated.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received: Requests = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    tokio::spawn(async move {
        for answer_index in 0.. {
            let (tcp, _) = listener.accept().await.unwrap();
            let Ok(mut tls) = acceptor.accept(tcp).await else { continue };
            let request = read_request(&mut tls).await;
            log.lock().unwrap().push(request);
            let (status, body) = answers.get(answer_index).copied().unwrap_or((500, ""));
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            tls.write_all(format!("{head}{body}").as_bytes()).await.unwrap();
            tls.shutdown().await.unwrap();
        }
    });
    (addr, received)
}

/// Reads one HTTP/1.1 request: its path and its body (by Content-Length).
async fn read_request(tls: &mut (impl AsyncReadExt + Unpin)) -> (String, Vec<u8>) {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = tls.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed inside the request head");
        bytes.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(bytes[..head_end].to_vec()).unwrap();
    let path = head.split_whitespace().nth(1).unwrap().to_string();
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .unwrap();
    while bytes.len() < head_end + length {
        let n = tls.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed inside the request body");
        bytes.extend_from_slice(&buf[..n]);
    }
    (path, bytes[head_end..head_end + length].to_vec())
}
