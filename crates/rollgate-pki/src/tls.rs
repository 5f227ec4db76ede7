//! rustls configurations for both ends of Rollgate's mutual TLS.
//!
//! Both use the ring provider explicitly, so they work whether or not the process has installed a
//! default `CryptoProvider` (and whichever one it installed).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::{certs_from_pem, key_from_pem, PkiError};

/// ALPN protocols the server offers, most preferred first.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A server configuration presenting `cert_pem` / `key_pem` that verifies client certificates
/// against `client_ca_pem` when a client presents one, and also accepts clients without one.
///
/// `cert_pem` is the leaf first, optionally followed by intermediates; `key_pem` is the leaf's
/// key; `client_ca_pem` holds one or more trusted CA certificates. Clients without a certificate
/// are let through because enrollment and the management API authenticate with bearer tokens;
/// routes that need an agent identity must check `peer_certificates()` themselves (see
/// [`crate::endpoint_id_from_cert_der`]). A client that presents a certificate not issued by a
/// trusted CA, expired, or without the clientAuth extended key usage fails the handshake.
/// Offers ALPN `h2` and `http/1.1`; TLS 1.2 and 1.3. Fails when any PEM holds no certificate or
/// key, or when rustls rejects the key.
pub fn server_config(cert_pem: &str, key_pem: &str, client_ca_pem: &str) -> Result<Arc<ServerConfig>, PkiError> {
    let provider = ring_provider();
    let roots = root_store(client_ca_pem).map_err(PkiError::in_input("client CA PEM"))?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|error| PkiError::Verifier { error })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| PkiError::Tls { error })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs_from_pem(cert_pem).map_err(PkiError::in_input("server certificate PEM"))?,
            key_from_pem(key_pem).map_err(PkiError::in_input("server key PEM"))?,
        )
        .map_err(|error| PkiError::Tls { error })?;
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client configuration trusting only the CAs in `server_ca_pem`, presenting
/// `client_cert` (`(cert_pem, key_pem)`) when given.
///
/// Meant for agents (with their certificate) and for enrollment (without). Server names are
/// verified as usual: connect with the DNS name or IP address the server certificate was issued
/// for. No ALPN protocols are set; an HTTP client that is handed this configuration (for example
/// `reqwest`'s `use_preconfigured_tls`) sets its own, and other callers may set
/// `alpn_protocols` on a clone. Fails when a PEM holds no certificate or key, or when rustls
/// rejects the client key.
pub fn client_config(server_ca_pem: &str, client_cert: Option<(&str, &str)>) -> Result<Arc<ClientConfig>, PkiError> {
    let builder = ClientConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| PkiError::Tls { error })?
        .with_root_certificates(root_store(server_ca_pem).map_err(PkiError::in_input("server CA PEM"))?);
    let config = match client_cert {
        Some((cert_pem, key_pem)) => builder
            .with_client_auth_cert(
                certs_from_pem(cert_pem).map_err(PkiError::in_input("client certificate PEM"))?,
                key_from_pem(key_pem).map_err(PkiError::in_input("client key PEM"))?,
            )
            .map_err(|error| PkiError::Tls { error })?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A root store holding every certificate in `ca_pem`. Every one must be a usable trust anchor;
/// a silently skipped CA would only show up later as failed handshakes.
fn root_store(ca_pem: &str) -> Result<RootCertStore, PkiError> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(ca_pem)? {
        roots.add(cert).map_err(|error| PkiError::Tls { error })?;
    }
    Ok(roots)
}
