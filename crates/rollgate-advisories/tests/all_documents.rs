//! Every document in `shared/advisories` reads through [`rollgate_advisories::parse`] with its
//! format detected from the content, and a truncated or damaged copy of each gives an error
//! naming its format instead of a panic or a wrong document.

#![allow(clippy::unwrap_used)]

mod common;

use rollgate_advisories::{detect, parse, Document, Format, ParseError};

/// Files in the directory that are references, not documents (the README, KEV's JSON schema,
/// an EPSS score series).
fn is_reference(name: &str) -> bool {
    name == "README.md" || name == "kev_schema.json" || name.ends_with(".csv")
}

#[test]
fn every_published_document_is_read_with_its_format_detected() {
    let Some(dir) = common::shared_dir() else { return };
    let mut read = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let bytes = std::fs::read(&path).unwrap();
        if is_reference(&name) {
            assert!(parse(&bytes).is_err(), "{name} is not a document");
            continue;
        }
        let expected = match name.split('_').next().unwrap() {
            "csaf20" => Format::Csaf,
            "osv" => Format::Osv,
            "msrc" => Format::Cvrf,
            "cve5" => Format::Cve5,
            "nvd" => Format::Nvd,
            "kev" => Format::Kev,
            other => panic!("a new kind of file in shared/advisories: {other} ({name})"),
        };
        assert_eq!(detect(&bytes).unwrap(), expected, "{name}");
        match parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}")) {
            Document::Advisory(a) => {
                assert!(!a.id.is_empty() && !a.vulnerabilities.is_empty(), "{name}");
                assert!(a.published.is_some(), "{name}");
            }
            Document::Cves(records) => assert!(!records.is_empty(), "{name}"),
            Document::Kev(catalog) => assert!(!catalog.entries.is_empty(), "{name}"),
        }
        read += 1;
    }
    assert_eq!(read, 15, "documents read");
}

#[test]
fn truncated_or_damaged_documents_give_a_clear_error() {
    let Some(dir) = common::shared_dir() else { return };
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if is_reference(&name) {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for cut in [bytes.len() / 3, bytes.len() * 2 / 3, bytes.len() - 2] {
            let err = parse(&bytes[..cut]).expect_err(&format!("{name} cut at {cut} was read"));
            assert!(!matches!(err, ParseError::UnknownFormat(_)), "{name} cut at {cut} would be skipped: {err}");
        }
    }
    let err = parse(b"{\"document\": {\"csaf_version\": \"2.0\"}}").unwrap_err();
    assert!(matches!(err, ParseError::Invalid { format: "csaf", .. }), "{err}");
    assert!(err.to_string().contains("csaf document"), "{err}");
    assert!(matches!(parse(b"").unwrap_err(), ParseError::UnknownFormat(_)));
    assert!(matches!(parse(b"<html></html>").unwrap_err(), ParseError::UnknownFormat(_)));
}
