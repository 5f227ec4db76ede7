//! The server's own certificate authority: generating it, reloading it from PEM, and issuing the
//! server certificate and agents' client certificates.
//!
//! **Invariant:** every certificate issued by a [`Ca`] names the CA certificate's subject as its
//! issuer and is signed by the CA key, so it chains to the CA's `cert_pem` as stored, whether the
//! `Ca` was just generated or reloaded with [`Ca::from_pem`].

use std::fmt;
use std::net::IpAddr;

use jiff::Timestamp;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::DnsName;

use crate::csr::verified_public_key;
use crate::validity::{apply_window, check_days, CA_VALID_DAYS, MAX_CLIENT_CERT_VALID_DAYS, SERVER_CERT_VALID_DAYS};
use crate::{certs_from_pem, inspect, PkiError};

/// Longest common name accepted, the X.509 upper bound `ub-common-name`.
pub const MAX_COMMON_NAME_CHARS: usize = 64;

/// Common name of issued server certificates. Clients verify the subject alternative names, not
/// this; it only makes the certificate recognisable in tools such as `openssl x509`.
const SERVER_COMMON_NAME: &str = "Rollgate server";

/// A certificate signing request whose self-signature has been verified: proof that the
/// requester holds the key. Only its public key is kept.
pub struct VerifiedCsr {
    public_key: rcgen::SubjectPublicKeyInfo,
}

impl VerifiedCsr {
    /// Parses and verifies a CSR; see [`Ca::sign_client_csr_at`] for what is refused.
    pub fn from_pem(csr_pem: &str) -> Result<VerifiedCsr, PkiError> {
        Ok(VerifiedCsr { public_key: verified_public_key(csr_pem)? })
    }
}

/// A certificate just issued.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    /// The certificate in PEM.
    pub pem: String,
    /// SHA-256 of its DER, lowercase hex (as [`crate::fingerprint_sha256`]).
    pub fingerprint_sha256: String,
}

/// The server's own certificate authority: its certificate and its private key.
///
/// Made once with [`Ca::generate`], stored by the caller as the two PEM strings
/// ([`Ca::cert_pem`], [`Ca::key_pem`]) and reloaded with [`Ca::from_pem`] on later starts.
/// The `Debug` output never shows the private key.
pub struct Ca {
    /// The CA certificate as rcgen needs it to act as an issuer. For a reloaded CA this is a
    /// re-signed copy with the same subject, key and key identifier; it is never handed out.
    issuer: rcgen::Certificate,
    key: KeyPair,
    cert_pem: String,
    key_pem: String,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("subject", &self.issuer.params().distinguished_name)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Ca {
    /// Generates a new self-signed CA with subject `CN=common_name`, valid from now for
    /// [`CA_VALID_DAYS`] (ten years).
    ///
    /// Reads the system clock; see [`Ca::generate_at`]. Nothing is written to disk: the caller
    /// stores [`Ca::cert_pem`] and [`Ca::key_pem`].
    pub fn generate(common_name: &str) -> Result<Ca, PkiError> {
        Ca::generate_at(common_name, Timestamp::now())
    }

    /// Generates a new self-signed CA as [`Ca::generate`] does, as if the time were `now`.
    ///
    /// The key is ECDSA P-256. The certificate has basicConstraints `CA:TRUE, pathlen:0` (it can
    /// sign leaf certificates only), key usages keyCertSign, cRLSign and digitalSignature, a
    /// random serial number, and validity from one hour before `now` (clock skew) to
    /// `now + CA_VALID_DAYS`. Fails when `common_name` is empty, longer than
    /// [`MAX_COMMON_NAME_CHARS`] or contains control characters.
    pub fn generate_at(common_name: &str, now: Timestamp) -> Result<Ca, PkiError> {
        check_common_name(common_name)?;
        let key = new_key("CA key")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name_dn(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(random_serial()?);
        apply_window(&mut params, now, CA_VALID_DAYS)?;
        let issuer = params.self_signed(&key).map_err(|error| PkiError::Generate { what: "CA certificate", error })?;
        let cert_pem = issuer.pem();
        let key_pem = key.serialize_pem();
        Ok(Ca { issuer, key, cert_pem, key_pem })
    }

    /// Reloads a CA from the PEM strings previously returned by [`Ca::cert_pem`] and
    /// [`Ca::key_pem`] (or any CA certificate with an unencrypted PKCS#8 ECDSA, Ed25519 or RSA
    /// key).
    ///
    /// Only the first certificate in `cert_pem` is used. Fails when it is not a CA certificate,
    /// when the key cannot be loaded, or when the key does not belong to the certificate.
    /// Certificates issued afterwards chain to `cert_pem`, which is kept verbatim.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        let certs = certs_from_pem(cert_pem).map_err(PkiError::in_input("CA certificate PEM"))?;
        let der = certs.first().ok_or(PkiError::NoCertificate)?;
        let parsed = inspect::parse_cert(der).map_err(PkiError::in_input("CA certificate PEM"))?;
        let is_ca = parsed
            .basic_constraints()
            .map_err(|err| PkiError::MalformedCertificate { reason: format!("basicConstraints: {err}") })?
            .is_some_and(|ext| ext.value.ca);
        if !is_ca {
            return Err(PkiError::NotACa);
        }

        let key = crate::key_from_pem(key_pem)
            .and_then(|der| KeyPair::try_from(&der).map_err(|err| PkiError::UnusableKey { reason: err.to_string() }))
            .map_err(PkiError::in_input("CA key PEM"))?;
        if parsed.public_key().raw != key.public_key_der().as_slice() {
            return Err(PkiError::CaKeyMismatch);
        }

        // rcgen signs with an issuer `Certificate`, which can only be made by signing. Re-signing
        // the parsed parameters with the same key keeps the subject name and the subject key
        // identifier, which is all an issued certificate refers to.
        let params = CertificateParams::from_ca_cert_der(der)
            .map_err(|err| PkiError::MalformedCertificate { reason: err.to_string() })
            .map_err(PkiError::in_input("CA certificate PEM"))?;
        let issuer = params
            .self_signed(&key)
            .map_err(|error| PkiError::Generate { what: "CA issuer from the reloaded certificate", error })?;
        Ok(Ca { issuer, key, cert_pem: cert_pem.to_owned(), key_pem: key_pem.to_owned() })
    }

    /// The CA certificate in PEM, to store and to give agents as their trust anchor.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key in PKCS#8 PEM. Secret: store it readable by the server only.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issues a server certificate for `names` with a fresh key. Returns `(cert_pem, key_pem)`.
    ///
    /// Reads the system clock; see [`Ca::issue_server_cert_at`].
    pub fn issue_server_cert(&self, names: &[String]) -> Result<(String, String), PkiError> {
        self.issue_server_cert_at(names, Timestamp::now())
    }

    /// Issues a server certificate as [`Ca::issue_server_cert`] does, as if the time were `now`.
    ///
    /// Each name that parses as an IP address ("127.0.0.1", "::1") becomes an IP address subject
    /// alternative name, every other name a DNS name ("localhost", "rollgate.example.com").
    /// The key is ECDSA P-256; the certificate has extended key usage serverAuth and validity
    /// from one hour before `now` to `now + SERVER_CERT_VALID_DAYS`. `cert_pem` holds the leaf
    /// only (agents trust the CA directly). Fails when `names` is empty or a name is neither an
    /// IP address nor a valid DNS name.
    pub fn issue_server_cert_at(&self, names: &[String], now: Timestamp) -> Result<(String, String), PkiError> {
        if names.is_empty() {
            return Err(PkiError::NoServerNames);
        }
        let subject_alt_names = names.iter().map(|name| san_for(name)).collect::<Result<Vec<_>, _>>()?;
        let key = new_key("server key")?;
        let mut params = CertificateParams::default();
        params.subject_alt_names = subject_alt_names;
        params.distinguished_name = common_name_dn(SERVER_COMMON_NAME);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.leaf_defaults(&mut params, now, SERVER_CERT_VALID_DAYS)?;
        let cert = params
            .signed_by(&key, &self.issuer, &self.key)
            .map_err(|error| PkiError::Generate { what: "server certificate", error })?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Signs an agent's CSR, returning the client certificate in PEM.
    ///
    /// Reads the system clock; see [`Ca::sign_client_csr_at`].
    pub fn sign_client_csr(&self, csr_pem: &str, endpoint_id: &str, valid_days: u32) -> Result<String, PkiError> {
        self.sign_client_csr_at(csr_pem, endpoint_id, valid_days, Timestamp::now())
    }

    /// Signs an agent's CSR as [`Ca::sign_client_csr`] does, as if the time were `now`.
    ///
    /// Only the CSR's public key is used, after its self-signature has been verified (proof that
    /// the requester holds the private key). Whatever subject, alternative names or extensions the
    /// CSR asks for are ignored: the certificate's subject is `CN=endpoint_id`, its extended key
    /// usage is clientAuth only, and it is valid from one hour before `now` to
    /// `now + valid_days` days. Fails when the CSR PEM is larger than [`crate::MAX_CSR_PEM_BYTES`],
    /// malformed, or carries a bad signature or an unsupported key; when `endpoint_id` is empty,
    /// longer than [`MAX_COMMON_NAME_CHARS`] or contains control characters; or when
    /// `valid_days` is 0 or above [`MAX_CLIENT_CERT_VALID_DAYS`].
    pub fn sign_client_csr_at(
        &self,
        csr_pem: &str,
        endpoint_id: &str,
        valid_days: u32,
        now: Timestamp,
    ) -> Result<String, PkiError> {
        check_days(valid_days, MAX_CLIENT_CERT_VALID_DAYS)?;
        check_common_name(endpoint_id)?;
        let csr = VerifiedCsr::from_pem(csr_pem)?;
        Ok(self.sign_verified_csr_at(&csr, endpoint_id, valid_days, now)?.pem)
    }

    /// Signs a certificate for the key of an already verified CSR, as
    /// [`Ca::sign_client_csr_at`] does. Batch enrollment signs thousands of certificates for one
    /// key: verifying the CSR's signature once instead of each time halves the work.
    pub fn sign_verified_csr_at(
        &self,
        csr: &VerifiedCsr,
        endpoint_id: &str,
        valid_days: u32,
        now: Timestamp,
    ) -> Result<IssuedCert, PkiError> {
        check_days(valid_days, MAX_CLIENT_CERT_VALID_DAYS)?;
        check_common_name(endpoint_id)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name_dn(endpoint_id);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.leaf_defaults(&mut params, now, valid_days)?;
        let cert = params
            .signed_by(&csr.public_key, &self.issuer, &self.key)
            .map_err(|error| PkiError::Generate { what: "client certificate", error })?;
        Ok(IssuedCert { pem: cert.pem(), fingerprint_sha256: inspect::fingerprint_sha256(cert.der()) })
    }

    /// Settings shared by every leaf this CA issues.
    fn leaf_defaults(&self, params: &mut CertificateParams, now: Timestamp, valid_days: u32) -> Result<(), PkiError> {
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        apply_window(params, now, valid_days)
    }
}

/// A fresh ECDSA P-256 key, the only kind this crate generates.
pub(crate) fn new_key(what: &'static str) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|error| PkiError::Generate { what, error })
}

/// Checks that `name` can be a subject common name.
pub(crate) fn check_common_name(name: &str) -> Result<(), PkiError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.chars().count() > MAX_COMMON_NAME_CHARS {
        "it is longer than 64 characters"
    } else if name.chars().any(char::is_control) {
        "it contains control characters"
    } else if name.trim() != name {
        "it has leading or trailing whitespace"
    } else {
        return Ok(());
    };
    Err(PkiError::InvalidCommonName { name: name.to_owned(), reason })
}

/// A subject of just `CN=common_name`.
pub(crate) fn common_name_dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// The subject alternative name for one server name: an IP address if it parses as one.
fn san_for(name: &str) -> Result<SanType, PkiError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let invalid = || PkiError::InvalidServerName { name: name.to_owned() };
    // rcgen only checks that the name is ASCII; rustls' parser enforces DNS syntax, so a name
    // that is accepted here is one a client can actually ask for.
    DnsName::try_from(name).map_err(|_| invalid())?;
    let ia5 = name.to_owned().try_into().map_err(|_| invalid())?;
    Ok(SanType::DnsName(ia5))
}

/// A random positive 128-bit serial number, so that re-issuing for the same key (a renewal)
/// never repeats a serial; rcgen's default derives the serial from the public key.
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    rustls::crypto::ring::default_provider().secure_random.fill(&mut bytes).map_err(|_| PkiError::Random)?;
    // Clear the sign bit and set the next one: positive, non-zero and always 16 bytes long.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}
