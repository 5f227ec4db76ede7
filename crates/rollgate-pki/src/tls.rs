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
    // Stateless session tickets: an agent that reconnects (every poll, after an idle timeout)
    // resumes its session with one symmetric decryption instead of a full handshake with two
    // signatures and a certificate chain check, and the server keeps no per-session memory.
    // The verified client certificate travels inside the encrypted ticket and is not verified
    // again on resumption: the server checks its expiry on every connection
    // (`rollgate_server::tls`). The ticket key lives only in this process and rotates every 6
    // hours (tickets are accepted for 12), so a ticket from another replica or from before a
    // restart just means one full handshake.
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|error| PkiError::Tls { error })?;
    // One ticket per handshake (rustls sends two by default): an agent uses one for its next
    // connection and gets a fresh one then, so a second is only extra encryption.
    config.send_tls13_tickets = 1;
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
    let builder = ClientConfig::builder_with_provider(client_provider())
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

/// The ring provider with TLS 1.3's AES-128-GCM-SHA256 offered first (servers follow the
/// client's order). AES-128 is ample (Mozilla's first choice too), and an agent reconnects for
/// every poll: each resumed handshake runs a dozen HMACs, which SHA-256 computes with the
/// CPU's SHA instructions and SHA-384 (the default first suite's hash) does not. Measured
/// (`bench/run`, figure 3 profile): SHA-384 was a tenth of all CPU at 3,400 reconnects a second.
fn client_provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    let preferred = rustls::CipherSuite::TLS13_AES_128_GCM_SHA256;
    provider.cipher_suites.sort_by_key(|suite| suite.suite() != preferred);
    Arc::new(provider)
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
