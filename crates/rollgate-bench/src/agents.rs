//! TLS client configurations for many virtual agents, built cheaply: the shared key is parsed
//! once and each agent gets its own certificate and its own session cache.

use std::sync::Arc;

use anyhow::Context;
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::sign::CertifiedKey;

use crate::server::{Identity, SharedKey};

/// Sessions each virtual agent remembers. A real agent keeps rustls' default (256 servers);
/// a virtual agent talks to one or two, and a hundred thousand default caches would take
/// gigabytes of the harness's memory.
const SESSIONS_PER_AGENT: usize = 4;

/// Always presents one certificate.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesClientCert for Fixed {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// One client configuration per identity, trusting `roots_pem` (one or more CA certificates).
pub fn configs(
    roots_pem: &str,
    key: &SharedKey,
    identities: &[Identity],
) -> anyhow::Result<Vec<Arc<rustls::ClientConfig>>> {
    let base = rollgate_pki::client_config(roots_pem, None)?;
    let provider = rustls::crypto::ring::default_provider();
    let key_der = rollgate_pki::key_from_pem(&key.key_pem)?;
    let signing_key = provider.key_provider.load_private_key(key_der).context("loading the shared key")?;
    identities
        .iter()
        .map(|identity| {
            let chain = rollgate_pki::certs_from_pem(&identity.cert_pem)?;
            let mut config = (*base).clone();
            config.client_auth_cert_resolver = Arc::new(Fixed(Arc::new(CertifiedKey::new(chain, signing_key.clone()))));
            config.resumption = Resumption::in_memory_sessions(SESSIONS_PER_AGENT);
            Ok(Arc::new(config))
        })
        .collect()
}
