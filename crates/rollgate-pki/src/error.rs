//! The one error type of this crate.
//!
//! Every fallible function here returns [`PkiError`]. Variants carry the context a caller needs
//! to tell an operator what went wrong (which input, which name); the callers decide whether an
//! error is a bad request (a malformed CSR from the network) or a broken installation (a CA key
//! that does not match its certificate).

/// What went wrong while creating, parsing or using certificates and keys.
///
/// Messages say what failed, without a trailing period. Each message is complete on its own: the
/// underlying library error is part of the text and not also exposed through
/// `std::error::Error::source`, so an `anyhow` chain prints it once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// One of several inputs was unusable; `input` names it ("client CA PEM").
    #[error("{input}: {error}")]
    Input {
        /// Which argument was at fault.
        input: &'static str,
        /// What was wrong with it.
        error: Box<PkiError>,
    },
    /// The input was not readable PEM at all (bad base64, an unterminated section).
    #[error("PEM could not be parsed: {reason}")]
    Pem {
        /// What the PEM reader reported.
        reason: String,
    },
    /// The PEM held no `CERTIFICATE` section.
    #[error("no certificate found in PEM")]
    NoCertificate,
    /// The PEM held no private key section (PKCS#8, PKCS#1 or SEC1).
    #[error("no private key found in PEM")]
    NoPrivateKey,
    /// The PEM held no `CERTIFICATE REQUEST` section.
    #[error("no certificate signing request found in PEM")]
    NoCsr,
    /// The CSR was found but its DER could not be parsed.
    #[error("certificate signing request is malformed: {reason}")]
    MalformedCsr {
        /// What the parser reported.
        reason: String,
    },
    /// The CSR's self-signature does not verify, so the requester has not proven it holds the key.
    #[error("certificate signing request signature does not verify: {reason}")]
    CsrSignature {
        /// What the verifier reported.
        reason: String,
    },
    /// The CSR's public key uses an algorithm this CA cannot put into a certificate.
    #[error("certificate signing request public key is not supported: {reason}")]
    UnsupportedPublicKey {
        /// What rcgen reported.
        reason: String,
    },
    /// A certificate's DER could not be parsed.
    #[error("certificate could not be parsed: {reason}")]
    MalformedCertificate {
        /// What the parser reported.
        reason: String,
    },
    /// A certificate has no subject common name, or more than one.
    #[error("certificate subject must have exactly one common name, found {found}")]
    CommonNameCount {
        /// How many common names the subject has.
        found: usize,
    },
    /// A private key could not be loaded for signing.
    #[error("private key could not be loaded (expected an unencrypted PKCS#8 PEM key): {reason}")]
    UnusableKey {
        /// What rcgen reported.
        reason: String,
    },
    /// The certificate given as the CA is not a CA certificate.
    #[error("certificate is not a CA certificate (basicConstraints CA flag is not set)")]
    NotACa,
    /// The CA private key is not the key of the CA certificate.
    #[error("CA private key does not match the CA certificate")]
    CaKeyMismatch,
    /// A server certificate was requested for no names at all.
    #[error("a server certificate needs at least one DNS name or IP address")]
    NoServerNames,
    /// A server certificate name is neither an IP address nor a valid DNS name.
    #[error("{name:?} is not a valid DNS name or IP address for a server certificate")]
    InvalidServerName {
        /// The offending name as given.
        name: String,
    },
    /// A name cannot be used as a certificate common name (an endpoint id or a CA name).
    #[error("{name:?} cannot be a certificate common name: {reason}")]
    InvalidCommonName {
        /// The offending name as given.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// An input is larger than this crate accepts.
    #[error("{what} is {len} bytes, more than the limit of {max} bytes")]
    TooLarge {
        /// Which input ("certificate signing request PEM").
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A requested validity is out of range.
    #[error("validity of {valid_days} days is out of range, use 1 to {max_days} days")]
    InvalidValidity {
        /// The requested number of days.
        valid_days: u32,
        /// The largest allowed number of days.
        max_days: u32,
    },
    /// The given time cannot be written into a certificate (before 1970 or beyond year 9999).
    #[error("time {time} cannot be used as a certificate validity bound")]
    TimeOutOfRange {
        /// The offending time, formatted.
        time: String,
    },
    /// rcgen failed to generate a key, a certificate or a CSR.
    #[error("could not generate {what}: {error}")]
    Generate {
        /// What was being generated ("CA certificate", "client key", ...).
        what: &'static str,
        /// The underlying rcgen error.
        error: rcgen::Error,
    },
    /// The system random number generator failed.
    #[error("could not draw random bytes for a certificate serial number")]
    Random,
    /// rustls rejected the certificates or key while building a TLS configuration.
    #[error("could not build TLS configuration: {error}")]
    Tls {
        /// The underlying rustls error.
        error: rustls::Error,
    },
    /// rustls could not build a certificate verifier from the given trust anchors.
    #[error("could not build certificate verifier: {error}")]
    Verifier {
        /// The underlying rustls error.
        error: rustls::server::VerifierBuilderError,
    },
}

impl PkiError {
    /// A `map_err` adapter that records which argument an error came from.
    pub(crate) fn in_input(input: &'static str) -> impl FnOnce(PkiError) -> PkiError {
        move |error| PkiError::Input { input, error: Box::new(error) }
    }
}
