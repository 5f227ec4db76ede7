//! Rollgate's certificates: the server's own certificate authority, the server certificate,
//! agents' keys and CSRs and their signing, and the rustls configurations for mutual TLS.
//!
//! The flow this crate supports:
//!
//! 1. On first start the server calls [`Ca::generate`] and stores [`Ca::cert_pem`] and
//!    [`Ca::key_pem`]; later starts call [`Ca::from_pem`]. It issues its own TLS certificate
//!    with [`Ca::issue_server_cert`] and serves with [`server_config`].
//! 2. An agent enrolls: [`new_client_key_and_csr`] makes a key (kept on the agent) and a CSR,
//!    sent with an enrollment token. The server calls [`Ca::sign_client_csr`], which names the
//!    certificate after the endpoint id the server chose, not after anything in the CSR.
//! 3. Afterwards the agent connects with its certificate ([`client_config`]); the server reads
//!    the endpoint id from the verified peer certificate with [`endpoint_id_from_cert_der`].
//!
//! **Invariant:** this crate does no file or network IO. Only the convenience wrappers
//! (`Ca::generate`, `Ca::issue_server_cert`, `Ca::sign_client_csr`) read the clock; their `_at`
//! variants take the time as an argument.

mod ca;
mod csr;
mod error;
mod inspect;
mod pem;
mod tls;
mod validity;

pub use ca::{Ca, IssuedCert, VerifiedCsr, MAX_COMMON_NAME_CHARS};
pub use csr::{csr_key_fingerprint, new_client_key_and_csr, MAX_CSR_PEM_BYTES};
pub use error::PkiError;
pub use inspect::{endpoint_id_from_cert_der, fingerprint_sha256, not_after_from_cert_der};
pub use pem::{certs_from_pem, csr_from_pem, key_from_pem};
pub use tls::{client_config, server_config, ALPN_PROTOCOLS};
pub use validity::{BACKDATE_SECS, CA_VALID_DAYS, MAX_CLIENT_CERT_VALID_DAYS, SERVER_CERT_VALID_DAYS};
