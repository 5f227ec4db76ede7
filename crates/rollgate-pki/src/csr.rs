//! Certificate signing requests: the agent makes a key and a CSR, the server checks the CSR and
//! takes only its public key.
//!
//! The agent's private key never leaves the agent; enrollment sends the CSR, and the server
//! decides the certificate's subject itself (see [`crate::Ca::sign_client_csr`]).

use rcgen::CertificateParams;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use crate::ca::{common_name_dn, new_key, MAX_COMMON_NAME_CHARS};
use crate::{csr_from_pem, PkiError};

/// Largest CSR PEM accepted by [`crate::Ca::sign_client_csr`]. A P-256 CSR is about 500 bytes and
/// an RSA-4096 one about 1,700; anything near this limit is not one of ours.
pub const MAX_CSR_PEM_BYTES: usize = 16 * 1024;

/// Common name put into a CSR when the hint has nothing usable.
const FALLBACK_CSR_COMMON_NAME: &str = "rollgate-agent";

/// Makes a fresh ECDSA P-256 key and a CSR for it. Returns `(key_pem, csr_pem)`.
///
/// The key is PKCS#8 PEM; the caller stores it (secret) and later presents it with the issued
/// certificate. The CSR's subject is `CN=<hostname_hint>`, with control characters removed and
/// cut to 64 characters (`CN=rollgate-agent` if nothing is left); it only helps an operator
/// reading the CSR, since the server replaces the subject with the endpoint id. Nothing is
/// written to disk.
pub fn new_client_key_and_csr(hostname_hint: &str) -> Result<(String, String), PkiError> {
    let key = new_key("client key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name_dn(&csr_common_name(hostname_hint));
    let csr = params
        .serialize_request(&key)
        .map_err(|error| PkiError::Generate { what: "certificate signing request", error })?;
    let csr_pem = csr.pem().map_err(|error| PkiError::Generate { what: "certificate signing request PEM", error })?;
    Ok((key.serialize_pem(), csr_pem))
}

/// Lower-case hex SHA-256 of the public key (SubjectPublicKeyInfo DER) of the CSR in
/// `csr_pem`, after the same checks as signing. The server uses it to recognize an agent that
/// enrolls again with the key it enrolled with.
pub fn csr_key_fingerprint(csr_pem: &str) -> Result<String, PkiError> {
    use sha2::{Digest, Sha256};
    Ok(hex::encode(Sha256::digest(verified_spki_der(csr_pem)?)))
}

/// The public key of the CSR in `csr_pem`, after checking its size, its syntax and its
/// self-signature.
pub(crate) fn verified_public_key(csr_pem: &str) -> Result<rcgen::SubjectPublicKeyInfo, PkiError> {
    rcgen::SubjectPublicKeyInfo::from_der(&verified_spki_der(csr_pem)?)
        .map_err(|err| PkiError::UnsupportedPublicKey { reason: err.to_string() })
}

/// The DER SubjectPublicKeyInfo of a verified CSR.
fn verified_spki_der(csr_pem: &str) -> Result<Vec<u8>, PkiError> {
    if csr_pem.len() > MAX_CSR_PEM_BYTES {
        return Err(PkiError::TooLarge {
            what: "certificate signing request PEM",
            len: csr_pem.len(),
            max: MAX_CSR_PEM_BYTES,
        });
    }
    let der = csr_from_pem(csr_pem)?;
    // Parsed here rather than with `rcgen::CertificateSigningRequestParams`, which rejects CSRs
    // that request extensions it does not model and folds a bad signature into an opaque error.
    let (rest, csr) =
        X509CertificationRequest::from_der(&der).map_err(|err| PkiError::MalformedCsr { reason: err.to_string() })?;
    if !rest.is_empty() {
        return Err(PkiError::MalformedCsr { reason: format!("{} trailing bytes after the request", rest.len()) });
    }
    csr.verify_signature().map_err(|err| PkiError::CsrSignature { reason: err.to_string() })?;
    Ok(csr.certification_request_info.subject_pki.raw.to_vec())
}

/// The CSR common name for a hostname hint: printable, trimmed, at most 64 characters.
fn csr_common_name(hint: &str) -> String {
    let cleaned: String = hint
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .chars()
        .take(MAX_COMMON_NAME_CHARS)
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        FALLBACK_CSR_COMMON_NAME.to_owned()
    } else {
        cleaned.to_owned()
    }
}
