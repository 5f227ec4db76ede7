//! PEM parsing helpers shared by the CA, the TLS configurations and the callers.
//!
//! They exist so that every crate reads certificates and keys the same way and reports the same
//! clear errors ("no certificate found in PEM") instead of an empty list or a bare `None`.

use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer};

use crate::PkiError;

/// Parses every `CERTIFICATE` section of `pem`, in order (leaf first for a chain).
///
/// Other sections (keys, CSRs) are skipped. Fails with [`PkiError::NoCertificate`] when there is
/// none and [`PkiError::Pem`] when the text is not readable PEM. The DER inside is not parsed.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes()).collect::<Result<Vec<_>, _>>().map_err(pem_error)?;
    if certs.is_empty() {
        return Err(PkiError::NoCertificate);
    }
    Ok(certs)
}

/// Parses the first private key section of `pem` (PKCS#8, PKCS#1 or SEC1).
///
/// Fails with [`PkiError::NoPrivateKey`] when there is none and [`PkiError::Pem`] when the text
/// is not readable PEM. The key itself is not checked; rustls does that when it is used.
pub fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    rustls_pemfile::private_key(&mut pem.as_bytes()).map_err(pem_error)?.ok_or(PkiError::NoPrivateKey)
}

/// Parses the first `CERTIFICATE REQUEST` section of `pem`.
///
/// Fails with [`PkiError::NoCsr`] when there is none and [`PkiError::Pem`] when the text is not
/// readable PEM. The DER inside is not parsed.
pub fn csr_from_pem(pem: &str) -> Result<CertificateSigningRequestDer<'static>, PkiError> {
    rustls_pemfile::csr(&mut pem.as_bytes()).map_err(pem_error)?.ok_or(PkiError::NoCsr)
}

fn pem_error(err: std::io::Error) -> PkiError {
    PkiError::Pem { reason: err.to_string() }
}
