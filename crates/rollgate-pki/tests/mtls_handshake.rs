//! Real TLS handshakes between rustls clients and `server_config`, pumped in memory.
//!
//! These prove the properties the server relies on: a CA-signed agent certificate is accepted and
//! its endpoint id is visible to the server; a client without a certificate is accepted (for
//! enrollment); a certificate from another CA, an expired one or one without clientAuth fails
//! the handshake; the server certificate verifies for the names it was issued for; and a CA
//! reloaded from PEM issues certificates that verify against the original CA certificate.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use rollgate_pki::{
    certs_from_pem, client_config, endpoint_id_from_cert_der, fingerprint_sha256, new_client_key_and_csr,
    server_config, Ca,
};
use rustls::pki_types::ServerName;
use rustls::{CertificateError, ClientConfig, ClientConnection, Connection, ServerConnection};

/// Which end of the connection reported a handshake failure.
#[derive(Debug, PartialEq)]
enum Side {
    Client,
    Server,
}

/// Both ends after a completed handshake.
struct Established {
    client: Connection,
    server: Connection,
}

/// Upper bound on flights; a TLS 1.2 or 1.3 handshake needs at most four.
const MAX_ROUNDS: usize = 16;

/// Runs a handshake between fresh connections made from the two configurations, connecting to
/// `server_name`, and then sends one application message each way.
fn handshake(
    server_cfg: Arc<rustls::ServerConfig>,
    client_cfg: Arc<ClientConfig>,
    server_name: &str,
) -> Result<Established, (Side, rustls::Error)> {
    let name = ServerName::try_from(server_name.to_owned()).expect("test server name is valid");
    let mut client =
        Connection::Client(ClientConnection::new(client_cfg, name).expect("client connection can be created"));
    let mut server = Connection::Server(ServerConnection::new(server_cfg).expect("server connection can be created"));
    let mut rounds = 0;
    while client.is_handshaking() || server.is_handshaking() {
        rounds += 1;
        assert!(rounds <= MAX_ROUNDS, "handshake did not finish");
        transfer(&mut client, &mut server).map_err(|e| (Side::Server, e))?;
        transfer(&mut server, &mut client).map_err(|e| (Side::Client, e))?;
    }
    // In TLS 1.3 the server checks the client certificate after the client thinks it is done, so
    // a final flight must reach the server before success is real. Application data proves it.
    exchange_data(&mut client, &mut server)?;
    Ok(Established { client, server })
}

/// Moves every pending TLS byte from `from` to `to` and lets `to` process them.
fn transfer(from: &mut Connection, to: &mut Connection) -> Result<(), rustls::Error> {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).expect("writing to a Vec cannot fail");
    }
    let mut reader = buf.as_slice();
    while !reader.is_empty() {
        to.read_tls(&mut reader).expect("reading from a slice cannot fail");
        to.process_new_packets()?;
    }
    Ok(())
}

fn exchange_data(client: &mut Connection, server: &mut Connection) -> Result<(), (Side, rustls::Error)> {
    use std::io::{Read, Write};
    client.writer().write_all(b"ping").expect("buffering plaintext cannot fail");
    transfer(client, server).map_err(|e| (Side::Server, e))?;
    let mut got = [0u8; 4];
    server.reader().read_exact(&mut got).expect("server received the client's message");
    assert_eq!(&got, b"ping");
    server.writer().write_all(b"pong").expect("buffering plaintext cannot fail");
    transfer(server, client).map_err(|e| (Side::Client, e))?;
    client.reader().read_exact(&mut got).expect("client received the server's message");
    assert_eq!(&got, b"pong");
    Ok(())
}

/// A CA with a server certificate for the loopback names, and the matching server config.
struct Fixture {
    ca: Ca,
    server_cfg: Arc<rustls::ServerConfig>,
}

fn fixture() -> Fixture {
    let ca = Ca::generate("Rollgate test CA").expect("CA generates");
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from);
    let (cert_pem, key_pem) = ca.issue_server_cert(&names).expect("server cert issues");
    let server_cfg = server_config(&cert_pem, &key_pem, ca.cert_pem()).expect("server config builds");
    Fixture { ca, server_cfg }
}

/// An agent key and a certificate for `endpoint_id` signed by `ca`: `(cert_pem, key_pem)`.
fn enroll(ca: &Ca, endpoint_id: &str) -> (String, String) {
    let (key_pem, csr_pem) = new_client_key_and_csr("agent-host").expect("CSR generates");
    let cert_pem = ca.sign_client_csr(&csr_pem, endpoint_id, 30).expect("CSR signs");
    (cert_pem, key_pem)
}

fn peer_endpoint_id(conn: &Connection) -> String {
    let certs = conn.peer_certificates().expect("server sees a client certificate");
    endpoint_id_from_cert_der(&certs[0]).expect("endpoint id parses")
}

#[test]
fn ca_signed_client_cert_is_accepted_and_names_the_endpoint() {
    let f = fixture();
    let (cert_pem, key_pem) = enroll(&f.ca, "ep-7f3a");
    let client_cfg = client_config(f.ca.cert_pem(), Some((&cert_pem, &key_pem))).expect("client config builds");

    let done = handshake(f.server_cfg, client_cfg, "localhost").expect("handshake succeeds");

    assert_eq!(peer_endpoint_id(&done.server), "ep-7f3a");
    let presented = &done.server.peer_certificates().expect("client certificate")[0];
    let issued = &certs_from_pem(&cert_pem).expect("issued cert parses")[0];
    assert_eq!(fingerprint_sha256(presented), fingerprint_sha256(issued));
}

#[test]
fn client_without_cert_is_accepted_anonymously() {
    let f = fixture();
    let client_cfg = client_config(f.ca.cert_pem(), None).expect("client config builds");

    let done = handshake(f.server_cfg, client_cfg, "localhost").expect("handshake succeeds");

    assert!(done.server.peer_certificates().is_none());
}

#[test]
fn client_cert_from_another_ca_is_rejected_by_the_server() {
    let f = fixture();
    let other_ca = Ca::generate("Some other CA").expect("CA generates");
    let (cert_pem, key_pem) = enroll(&other_ca, "ep-intruder");
    let client_cfg = client_config(f.ca.cert_pem(), Some((&cert_pem, &key_pem))).expect("client config builds");

    let err = handshake(f.server_cfg, client_cfg, "localhost").err().expect("handshake fails");

    assert_eq!(err, (Side::Server, rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)));
}

#[test]
fn expired_client_cert_is_rejected_by_the_server() {
    let f = fixture();
    let (key_pem, csr_pem) = new_client_key_and_csr("agent-host").expect("CSR generates");
    let long_ago = Timestamp::now() - SignedDuration::from_hours(24 * 60);
    let cert_pem = f.ca.sign_client_csr_at(&csr_pem, "ep-old", 30, long_ago).expect("CSR signs");
    let client_cfg = client_config(f.ca.cert_pem(), Some((&cert_pem, &key_pem))).expect("client config builds");

    let (side, err) = handshake(f.server_cfg, client_cfg, "localhost").err().expect("handshake fails");

    assert_eq!(side, Side::Server);
    assert!(
        matches!(err, rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. })),
        "unexpected error: {err:?}"
    );
}

#[test]
fn server_cert_presented_as_client_cert_is_rejected() {
    // Same CA, but the certificate has only the serverAuth extended key usage.
    let f = fixture();
    let (cert_pem, key_pem) = f.ca.issue_server_cert(&["agent.example".to_owned()]).expect("server cert issues");
    let client_cfg = client_config(f.ca.cert_pem(), Some((&cert_pem, &key_pem))).expect("client config builds");

    let (side, err) = handshake(f.server_cfg, client_cfg, "localhost").err().expect("handshake fails");

    assert_eq!(side, Side::Server);
    assert!(
        matches!(err, rustls::Error::InvalidCertificate(CertificateError::InvalidPurposeContext { .. })),
        "unexpected error: {err:?}"
    );
}

#[test]
fn server_cert_verifies_for_the_names_it_was_issued_for_only() {
    let f = fixture();
    let client_cfg = client_config(f.ca.cert_pem(), None).expect("client config builds");

    for name in ["localhost", "127.0.0.1", "::1"] {
        handshake(f.server_cfg.clone(), client_cfg.clone(), name)
            .unwrap_or_else(|e| panic!("handshake for {name} fails: {e:?}"));
    }
    for name in ["example.com", "10.0.0.1"] {
        let (side, err) = handshake(f.server_cfg.clone(), client_cfg.clone(), name)
            .err()
            .unwrap_or_else(|| panic!("handshake for {name} succeeds"));
        assert_eq!(side, Side::Client);
        assert!(
            matches!(err, rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })),
            "unexpected error for {name}: {err:?}"
        );
    }
}

#[test]
fn client_trusting_another_ca_rejects_the_server() {
    let f = fixture();
    let other_ca = Ca::generate("Some other CA").expect("CA generates");
    let client_cfg = client_config(other_ca.cert_pem(), None).expect("client config builds");

    let err = handshake(f.server_cfg, client_cfg, "localhost").err().expect("handshake fails");

    assert_eq!(err, (Side::Client, rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)));
}

#[test]
fn reloaded_ca_issues_certs_that_chain_to_the_original_cert_pem() {
    let original = Ca::generate("Rollgate test CA").expect("CA generates");
    let reloaded = Ca::from_pem(original.cert_pem(), original.key_pem()).expect("CA reloads from PEM");
    assert_eq!(reloaded.cert_pem(), original.cert_pem());

    // Everything below is issued by the reloaded CA and trusted via the original PEM only.
    let (server_cert, server_key) = reloaded.issue_server_cert(&["localhost".to_owned()]).expect("server cert issues");
    let server_cfg = server_config(&server_cert, &server_key, original.cert_pem()).expect("server config");
    let (cert_pem, key_pem) = enroll(&reloaded, "ep-after-restart");
    let client_cfg = client_config(original.cert_pem(), Some((&cert_pem, &key_pem))).expect("client config builds");

    let done = handshake(server_cfg, client_cfg, "localhost").expect("handshake succeeds");

    assert_eq!(peer_endpoint_id(&done.server), "ep-after-restart");
}

#[test]
fn alpn_offers_h2_and_http1() {
    let f = fixture();
    for (offered, expected) in [
        (vec![b"h2".to_vec(), b"http/1.1".to_vec()], b"h2".as_slice()),
        (vec![b"http/1.1".to_vec()], b"http/1.1".as_slice()),
    ] {
        let mut client_cfg = (*client_config(f.ca.cert_pem(), None).expect("client config")).clone();
        client_cfg.alpn_protocols = offered;
        let done = handshake(f.server_cfg.clone(), Arc::new(client_cfg), "localhost").expect("handshake");
        assert_eq!(done.client.alpn_protocol(), Some(expected));
    }
}

#[test]
fn tls12_client_with_cert_is_accepted() {
    let f = fixture();
    let (cert_pem, key_pem) = enroll(&f.ca, "ep-tls12");
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs_from_pem(f.ca.cert_pem()).expect("CA cert parses") {
        roots.add(cert).expect("CA cert is a trust anchor");
    }
    let client_cfg = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("TLS 1.2 is supported")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            certs_from_pem(&cert_pem).expect("cert parses"),
            rollgate_pki::key_from_pem(&key_pem).expect("key parses"),
        )
        .expect("client auth cert is accepted");

    let done = handshake(f.server_cfg, Arc::new(client_cfg), "localhost").expect("handshake");

    assert_eq!(done.server.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(peer_endpoint_id(&done.server), "ep-tls12");
}

/// An agent that reconnects resumes its session from a stateless ticket, and the resumed
/// connection still carries the agent's verified certificate: the server must know who it is
/// talking to without a full handshake.
#[test]
fn a_reconnecting_agent_resumes_and_is_still_identified() {
    let f = fixture();
    let (cert_pem, key_pem) = enroll(&f.ca, "ep-resume");
    let client_cfg = client_config(f.ca.cert_pem(), Some((&cert_pem, &key_pem))).expect("client config builds");

    let first = handshake(f.server_cfg.clone(), client_cfg.clone(), "localhost").expect("first handshake");
    assert_eq!(first.client.handshake_kind(), Some(rustls::HandshakeKind::Full));
    // A second server connection from the same configuration (a restarted accept loop would
    // get a new ticket key; this one has the same) accepts the ticket.
    let second = handshake(f.server_cfg.clone(), client_cfg, "localhost").expect("second handshake");
    assert_eq!(second.client.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
    assert_eq!(second.server.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
    assert_eq!(peer_endpoint_id(&second.server), "ep-resume");
}

/// Agents offer AES-128-GCM with SHA-256 first, and the server follows the client's order.
#[test]
fn agents_negotiate_aes128_gcm_sha256() {
    let f = fixture();
    let (cert_pem, key_pem) = enroll(&f.ca, "ep-suite");
    let client_cfg = client_config(f.ca.cert_pem(), Some((&cert_pem, &key_pem))).expect("client config builds");
    let done = handshake(f.server_cfg, client_cfg, "localhost").expect("handshake succeeds");
    let suite = done.client.negotiated_cipher_suite().expect("a suite").suite();
    assert_eq!(suite, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
}
