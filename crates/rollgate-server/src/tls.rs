//! The TLS accept loop: every connection is a rustls session; the client certificate, when one
//! was presented and verified against our CA, becomes a [`PeerIdentity`] request extension.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// The verified client certificate of a connection, if any.
#[derive(Clone, Debug)]
pub struct PeerIdentity(pub Option<PeerCert>);

/// A verified client certificate.
#[derive(Clone, Debug)]
pub struct PeerCert {
    /// Subject CN: the endpoint id.
    pub endpoint_id: String,
    /// SHA-256 of the DER certificate.
    pub fingerprint: String,
}

/// How long a client may take to finish the TLS handshake: a slow or plain-text client must not
/// hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` over TLS on `listener` until the process ends.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, app: Router) -> anyhow::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, _remote) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    tracing::debug!("TLS handshake failed: {err}");
                    return;
                }
                Err(_) => return,
            };
            let peer = stream.get_ref().1.peer_certificates().and_then(|certs| certs.first()).and_then(|der| {
                let endpoint_id = rollgate_pki::endpoint_id_from_cert_der(der).ok()?;
                Some(PeerCert { endpoint_id, fingerprint: rollgate_pki::fingerprint_sha256(der) })
            });
            let identity = PeerIdentity(peer);
            let service = app.map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(identity.clone());
                req
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(err) = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)).await {
                tracing::debug!("connection ended with an error: {err}");
            }
        });
    }
}
