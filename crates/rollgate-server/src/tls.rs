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
            let peer = stream.get_ref().1.peer_certificates().and_then(|certs| certs.first()).and_then(peer_cert);
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

/// The identity in a client certificate rustls accepted, if it is still valid now. A resumed
/// TLS session carries the certificate verified at its first handshake without checking it
/// again, and every resumption issues a new ticket: without this check an agent that keeps
/// reconnecting could go on using a certificate long after it expired.
fn peer_cert(der: &rustls::pki_types::CertificateDer<'_>) -> Option<PeerCert> {
    let not_after = rollgate_pki::not_after_from_cert_der(der).ok()?;
    if not_after <= jiff::Timestamp::now() {
        tracing::debug!("a resumed session presented a certificate that expired at {not_after}");
        return None;
    }
    let endpoint_id = rollgate_pki::endpoint_id_from_cert_der(der).ok()?;
    Some(PeerCert { endpoint_id, fingerprint: rollgate_pki::fingerprint_sha256(der) })
}

#[cfg(test)]
mod tests {
    use super::peer_cert;

    fn cert_der(
        ca: &rollgate_pki::Ca,
        issued_at: jiff::Timestamp,
        days: u32,
    ) -> rustls::pki_types::CertificateDer<'static> {
        let (_key, csr) = rollgate_pki::new_client_key_and_csr("host").unwrap();
        let pem = ca.sign_client_csr_at(&csr, "ep-1", days, issued_at).unwrap();
        rollgate_pki::certs_from_pem(&pem).unwrap().remove(0)
    }

    #[test]
    fn an_expired_certificate_from_a_resumed_session_identifies_nobody() {
        let ca = rollgate_pki::Ca::generate("tls test CA").unwrap();
        let valid = cert_der(&ca, jiff::Timestamp::now(), 30);
        assert_eq!(peer_cert(&valid).unwrap().endpoint_id, "ep-1");
        let expired = cert_der(&ca, jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 10), 1);
        assert!(peer_cert(&expired).is_none());
    }
}
