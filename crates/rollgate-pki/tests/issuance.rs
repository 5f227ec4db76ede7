//! What the CA puts into the certificates it issues, and how every entry point rejects bad input.
//!
//! Certificates are inspected with x509-parser; error messages are pinned with `expect-test`
//! (`UPDATE_EXPECT=1 cargo test -p rollgate-pki` rewrites them after a deliberate change).

use expect_test::{expect, Expect};
use jiff::Timestamp;
use rollgate_pki::{
    certs_from_pem, csr_from_pem, endpoint_id_from_cert_der, fingerprint_sha256, key_from_pem, new_client_key_and_csr,
    not_after_from_cert_der, server_config, Ca, PkiError, BACKDATE_SECS, MAX_CSR_PEM_BYTES,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

const NOW: &str = "2025-03-01T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().expect("test timestamp parses")
}

fn first_der(pem: &str) -> Vec<u8> {
    certs_from_pem(pem).expect("PEM holds a certificate")[0].to_vec()
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    X509Certificate::from_der(der).expect("certificate parses").1
}

fn cn(cert: &X509Certificate<'_>) -> String {
    cert.subject()
        .iter_common_name()
        .map(|cn| cn.as_str().expect("CN is a string").to_owned())
        .collect::<Vec<_>>()
        .join(",")
}

/// Seconds of validity: `not_after - not_before`.
fn lifetime_secs(cert: &X509Certificate<'_>) -> i64 {
    cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()
}

fn check_err<T: std::fmt::Debug>(result: Result<T, PkiError>, expect: Expect) {
    let err = result.expect_err("input is rejected");
    expect.assert_eq(&err.to_string());
}

#[test]
fn ca_certificate_is_a_leaf_only_ca_valid_ten_years() {
    let ca = Ca::generate_at("Rollgate CA", now()).expect("CA generates");
    let der = first_der(ca.cert_pem());
    let cert = parse(&der);

    assert_eq!(cn(&cert), "Rollgate CA");
    assert_eq!(cert.subject(), cert.issuer());
    let bc = cert.basic_constraints().expect("basicConstraints parses").expect("basicConstraints present");
    assert!(bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, Some(0));
    let ku = cert.key_usage().expect("keyUsage parses").expect("keyUsage present");
    assert!(ku.value.key_cert_sign() && ku.value.crl_sign());
    assert_eq!(cert.validity().not_before.timestamp(), now().as_second() - BACKDATE_SECS);
    assert_eq!(lifetime_secs(&cert), 3650 * 86_400 + BACKDATE_SECS);
    assert!(key_from_pem(ca.key_pem()).is_ok());
}

#[test]
fn client_cert_names_the_endpoint_not_what_the_csr_asked_for() {
    let ca = Ca::generate_at("Rollgate CA", now()).expect("CA generates");
    let (_key, csr_pem) = new_client_key_and_csr("host-17.example").expect("CSR generates");

    let cert_pem = ca.sign_client_csr_at(&csr_pem, "ep-0001", 90, now()).expect("CSR signs");
    let der = first_der(&cert_pem);
    let cert = parse(&der);

    assert_eq!(cn(&cert), "ep-0001");
    assert_eq!(endpoint_id_from_cert_der(&der).expect("endpoint id"), "ep-0001");
    assert_eq!(cert.issuer(), parse(&first_der(ca.cert_pem())).subject());
    let eku = cert.extended_key_usage().expect("EKU parses").expect("EKU present").value;
    assert!(eku.client_auth);
    assert!(!eku.server_auth && !eku.any);
    let bc = cert.basic_constraints().expect("basicConstraints parses");
    assert!(bc.is_none_or(|bc| !bc.value.ca));
    assert!(cert.subject_alternative_name().expect("SAN parses").is_none());
    assert_eq!(lifetime_secs(&cert), 90 * 86_400 + BACKDATE_SECS);
    assert_eq!(
        not_after_from_cert_der(&der).expect("notAfter"),
        "2025-05-30T12:00:00Z".parse::<Timestamp>().expect("timestamp")
    );
}

#[test]
fn csr_requests_for_names_and_usages_are_ignored() {
    // A hostile CSR asking for a server certificate for another name and an admin-like subject.
    let key = rcgen::KeyPair::generate().expect("key generates");
    let mut params = rcgen::CertificateParams::new(vec!["rollgate.example".to_owned()]).expect("params build");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, "ep-admin");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let csr_pem = params.serialize_request(&key).expect("CSR builds").pem().expect("CSR PEM");
    let ca = Ca::generate("Rollgate CA").expect("CA generates");

    let der = first_der(&ca.sign_client_csr(&csr_pem, "ep-0002", 30).expect("CSR signs"));
    let cert = parse(&der);

    assert_eq!(cn(&cert), "ep-0002");
    assert!(cert.subject_alternative_name().expect("SAN parses").is_none());
    let eku = cert.extended_key_usage().expect("EKU parses").expect("EKU").value;
    assert!(eku.client_auth && !eku.server_auth);
    let ku = cert.key_usage().expect("keyUsage parses").expect("keyUsage").value;
    assert!(ku.digital_signature() && !ku.key_cert_sign());
    // The certificate is for the CSR's key, not a new one.
    assert_eq!(cert.public_key().raw, key.public_key_der().as_slice());
}

#[test]
fn signing_the_same_csr_twice_gives_distinct_serials() {
    let ca = Ca::generate("Rollgate CA").expect("CA generates");
    let (_key, csr_pem) = new_client_key_and_csr("host").expect("CSR generates");
    let a = first_der(&ca.sign_client_csr(&csr_pem, "ep-1", 30).expect("signs"));
    let b = first_der(&ca.sign_client_csr(&csr_pem, "ep-1", 30).expect("signs"));
    assert_ne!(parse(&a).raw_serial(), parse(&b).raw_serial());
    assert_ne!(fingerprint_sha256(&a), fingerprint_sha256(&b));
}

#[test]
fn server_cert_carries_dns_and_ip_names() {
    let ca = Ca::generate_at("Rollgate CA", now()).expect("CA generates");
    let names = ["localhost", "127.0.0.1", "::1", "rollgate.example.com"].map(String::from);
    let (cert_pem, key_pem) = ca.issue_server_cert_at(&names, now()).expect("issues");
    let der = first_der(&cert_pem);
    let cert = parse(&der);

    let san = cert.subject_alternative_name().expect("SAN parses").expect("SAN present").value;
    let rendered: Vec<String> = san
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => format!("DNS:{dns}"),
            GeneralName::IPAddress(ip) => format!("IP:{}", hex_bytes(ip)),
            other => format!("other:{other:?}"),
        })
        .collect();
    expect![[r#"
        [
            "DNS:localhost",
            "IP:7f000001",
            "IP:00000000000000000000000000000001",
            "DNS:rollgate.example.com",
        ]
    "#]]
    .assert_debug_eq(&rendered);
    let eku = cert.extended_key_usage().expect("EKU parses").expect("EKU").value;
    assert!(eku.server_auth && !eku.client_auth);
    assert_eq!(lifetime_secs(&cert), 825 * 86_400 + BACKDATE_SECS);
    assert!(server_config(&cert_pem, &key_pem, ca.cert_pem()).is_ok());
}

fn hex_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn csr_subject_is_a_cleaned_hostname_hint() {
    let subject = |hint: &str| {
        let (_key, csr_pem) = new_client_key_and_csr(hint).expect("CSR generates");
        let der = csr_from_pem(&csr_pem).expect("CSR PEM parses");
        let (_, csr) = X509CertificationRequest::from_der(&der).expect("CSR parses");
        csr.verify_signature().expect("CSR is self-signed");
        csr.certification_request_info.subject.to_string()
    };
    assert_eq!(subject("web-01.example"), "CN=web-01.example");
    assert_eq!(subject("  bad\nname\t "), "CN=badname");
    assert_eq!(subject(""), "CN=rollgate-agent");
    assert_eq!(subject(&"x".repeat(100)), format!("CN={}", "x".repeat(64)));
}

#[test]
fn malformed_csrs_are_rejected() {
    let ca = Ca::generate("Rollgate CA").expect("CA generates");
    let sign = |csr: &str| ca.sign_client_csr(csr, "ep-1", 30);

    check_err(sign(""), expect!["no certificate signing request found in PEM"]);
    check_err(sign("hello, I would like a certificate"), expect!["no certificate signing request found in PEM"]);
    check_err(sign(ca.cert_pem()), expect!["no certificate signing request found in PEM"]);
    check_err(
        sign("-----BEGIN CERTIFICATE REQUEST-----\n%%%%\n-----END CERTIFICATE REQUEST-----\n"),
        expect!["PEM could not be parsed: InvalidCharacter(37)"],
    );
    check_err(
        sign(&pem_encode("CERTIFICATE REQUEST", b"\x30\x03\x02\x01\x00")),
        expect!["certificate signing request is malformed: Parsing Error: Der(UnexpectedTag { expected: Some(Tag(16)), actual: Tag(2) })"],
    );

    // A valid CSR whose signed content was altered after signing: the requester has not proven
    // possession of the key.
    let (_key, csr_pem) = new_client_key_and_csr("tamper-target").expect("CSR generates");
    let mut der = csr_from_pem(&csr_pem).expect("CSR PEM parses").as_ref().to_vec();
    let at = der.windows(b"tamper-target".len()).position(|w| w == b"tamper-target").expect("CN is in the DER");
    der[at] = b'T';
    check_err(
        sign(&pem_encode("CERTIFICATE REQUEST", &der)),
        expect!["certificate signing request signature does not verify: signature verification error"],
    );

    // A valid CSR padded past the limit: the size check comes before any parsing.
    let mut huge = csr_pem.clone();
    huge.extend(std::iter::repeat_n(' ', MAX_CSR_PEM_BYTES + 1 - csr_pem.len()));
    check_err(
        sign(&huge),
        expect!["certificate signing request PEM is 16385 bytes, more than the limit of 16384 bytes"],
    );
}

#[test]
fn bad_signing_arguments_are_rejected() {
    let ca = Ca::generate("Rollgate CA").expect("CA generates");
    let (_key, csr_pem) = new_client_key_and_csr("host").expect("CSR generates");

    check_err(
        ca.sign_client_csr(&csr_pem, "", 30),
        expect![[r#""" cannot be a certificate common name: it is empty"#]],
    );
    check_err(
        ca.sign_client_csr(&csr_pem, &"e".repeat(65), 30),
        expect![[
            r#""eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee" cannot be a certificate common name: it is longer than 64 characters"#
        ]],
    );
    check_err(
        ca.sign_client_csr(&csr_pem, "ep\n1", 30),
        expect![[r#""ep\n1" cannot be a certificate common name: it contains control characters"#]],
    );
    check_err(
        ca.sign_client_csr(&csr_pem, " ep-1", 30),
        expect![[r#"" ep-1" cannot be a certificate common name: it has leading or trailing whitespace"#]],
    );
    check_err(
        ca.sign_client_csr(&csr_pem, "ep-1", 0),
        expect!["validity of 0 days is out of range, use 1 to 3650 days"],
    );
    check_err(
        ca.sign_client_csr(&csr_pem, "ep-1", 3651),
        expect!["validity of 3651 days is out of range, use 1 to 3650 days"],
    );
    check_err(ca.issue_server_cert(&[]), expect!["a server certificate needs at least one DNS name or IP address"]);
    check_err(
        ca.issue_server_cert(&["[::1]".to_owned()]),
        expect![[r#""[::1]" is not a valid DNS name or IP address for a server certificate"#]],
    );
    check_err(
        ca.issue_server_cert(&["bad name".to_owned()]),
        expect![[r#""bad name" is not a valid DNS name or IP address for a server certificate"#]],
    );
    check_err(Ca::generate(""), expect![[r#""" cannot be a certificate common name: it is empty"#]]);
}

#[test]
fn bad_ca_pem_is_rejected_on_reload() {
    let ca = Ca::generate("Rollgate CA").expect("CA generates");
    let other = Ca::generate("Other CA").expect("CA generates");
    let (leaf_cert, leaf_key) = ca.issue_server_cert(&["localhost".to_owned()]).expect("issues");

    check_err(Ca::from_pem("", ca.key_pem()), expect!["CA certificate PEM: no certificate found in PEM"]);
    check_err(Ca::from_pem(ca.cert_pem(), ""), expect!["CA key PEM: no private key found in PEM"]);
    check_err(
        Ca::from_pem(ca.cert_pem(), other.key_pem()),
        expect!["CA private key does not match the CA certificate"],
    );
    check_err(
        Ca::from_pem(&leaf_cert, &leaf_key),
        expect!["certificate is not a CA certificate (basicConstraints CA flag is not set)"],
    );
    check_err(
        Ca::from_pem(&pem_encode("CERTIFICATE", b"not DER"), ca.key_pem()),
        expect!["CA certificate PEM: certificate could not be parsed: Parsing Error: NomError(Eof)"],
    );
    check_err(
        Ca::from_pem(ca.cert_pem(), &pem_encode("PRIVATE KEY", b"not a key")),
        expect!["CA key PEM: private key could not be loaded (expected an unencrypted PKCS#8 PEM key): Could not parse key pair"],
    );
}

#[test]
fn pem_and_der_helpers_report_what_is_missing() {
    let ca = Ca::generate("Rollgate CA").expect("CA generates");

    check_err(certs_from_pem(""), expect!["no certificate found in PEM"]);
    check_err(certs_from_pem(ca.key_pem()), expect!["no certificate found in PEM"]);
    check_err(key_from_pem(ca.cert_pem()), expect!["no private key found in PEM"]);
    check_err(
        certs_from_pem("-----BEGIN CERTIFICATE-----\nAAA\n"),
        expect![[r#"PEM could not be parsed: section end "CERTIFICATE" missing"#]],
    );
    check_err(
        endpoint_id_from_cert_der(b"garbage"),
        expect!["certificate could not be parsed: Parsing Error: NomError(Eof)"],
    );
    let mut trailing = first_der(ca.cert_pem());
    trailing.push(0);
    check_err(
        endpoint_id_from_cert_der(&trailing),
        expect!["certificate could not be parsed: 1 trailing bytes after the certificate"],
    );
    check_err(server_config(ca.cert_pem(), ca.key_pem(), ""), expect!["client CA PEM: no certificate found in PEM"]);
    check_err(
        server_config("", ca.key_pem(), ca.cert_pem()),
        expect!["server certificate PEM: no certificate found in PEM"],
    );

    // Two certificates in one PEM, leaf first, come back in order.
    let (leaf, _) = ca.issue_server_cert(&["localhost".to_owned()]).expect("issues");
    let chain = certs_from_pem(&format!("{leaf}{}", ca.cert_pem())).expect("chain parses");
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1].as_ref(), first_der(ca.cert_pem()).as_slice());
}

#[test]
fn fingerprint_is_lower_case_hex_sha256() {
    expect!["e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"].assert_eq(&fingerprint_sha256(b""));
    expect!["ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"].assert_eq(&fingerprint_sha256(b"abc"));
}

/// PEM-encodes `der` under `label`, so tests can build inputs no well-behaved tool would make.
fn pem_encode(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                let index = (n >> (18 - 6 * i)) & 0x3f;
                b64.push(char::from(ALPHABET[index as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let lines: Vec<&str> =
        b64.as_bytes().chunks(64).map(|line| std::str::from_utf8(line).expect("base64 is ASCII")).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}
