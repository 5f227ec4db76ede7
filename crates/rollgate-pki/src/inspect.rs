//! Reading facts out of certificates the server already holds: the endpoint id an agent's
//! certificate names, its fingerprint and its expiry.
//!
//! These functions parse but do not verify. They are meant for certificates that rustls has
//! already verified during the handshake, or that this process issued itself.

use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::PkiError;

/// The endpoint id of a client certificate: the single common name of its subject.
///
/// `der` is one DER certificate, typically `peer_certificates()[0]` of a rustls connection.
/// Precondition: the certificate was verified against the CA (rustls does this during the
/// handshake); this function only parses. Fails when the DER is malformed or has trailing
/// bytes, or when the subject has no common name or more than one.
pub fn endpoint_id_from_cert_der(der: &[u8]) -> Result<String, PkiError> {
    let cert = parse_cert(der)?;
    let mut names = cert.subject().iter_common_name();
    let (first, rest) = (names.next(), names.count());
    let Some(first) = first else {
        return Err(PkiError::CommonNameCount { found: 0 });
    };
    if rest > 0 {
        return Err(PkiError::CommonNameCount { found: rest + 1 });
    }
    let cn = first.as_str().map_err(|err| PkiError::MalformedCertificate {
        reason: format!("subject common name is not a string: {err}"),
    })?;
    Ok(cn.to_owned())
}

/// Lower-case hex SHA-256 of `der` (64 characters), the usual certificate fingerprint.
///
/// Any bytes are accepted; nothing is parsed.
pub fn fingerprint_sha256(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The `notAfter` instant of a DER certificate, so a caller can renew before expiry.
///
/// Fails when the DER is malformed or has trailing bytes.
pub fn not_after_from_cert_der(der: &[u8]) -> Result<jiff::Timestamp, PkiError> {
    let cert = parse_cert(der)?;
    let secs = cert.validity().not_after.timestamp();
    jiff::Timestamp::from_second(secs)
        .map_err(|err| PkiError::MalformedCertificate { reason: format!("notAfter is out of range: {err}") })
}

/// Parses one DER certificate, rejecting trailing bytes.
pub(crate) fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, PkiError> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|err| PkiError::MalformedCertificate { reason: err.to_string() })?;
    if !rest.is_empty() {
        return Err(PkiError::MalformedCertificate {
            reason: format!("{} trailing bytes after the certificate", rest.len()),
        });
    }
    Ok(cert)
}
