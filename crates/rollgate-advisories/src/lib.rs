//! Advisory documents as vendors publish them, read into one model ([`model`]).
//!
//! Pure: bytes in, values out; no IO, no clock. [`parse`] detects the format from the content
//! (never from the file name) and hands the bytes to that format's reader. Each reader is
//! written against the published schema with serde structs that accept what real documents
//! contain (extra fields, missing optional sections, four date forms); the crates made for these
//! formats were tried on the documents in `shared/advisories` and each fell short (the `csaf`
//! crate panics on CVSS vectors with temporal metrics, `osv` refuses an ecosystem it does not
//! know, no crate reads CVRF or KEV); see ARCHITECTURE.md. CVSS scores come from the `cvss`
//! crate.

pub mod csaf;
pub mod cve;
pub mod cvrf;
pub mod dates;
pub mod kev;
pub mod matching;
pub mod model;
pub mod nvd;
pub mod osv;
pub mod score;

pub use model::*;

/// Why a document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Well-formed content that matches none of the known formats (a directory walk skips
    /// these).
    #[error("not a known advisory format ({0})")]
    UnknownFormat(String),
    /// JSON that does not parse (truncated, damaged): an error, never a skip.
    #[error("damaged JSON: {0}")]
    Malformed(String),
    /// The document is of a known format but does not follow it.
    #[error("{format} document: {reason}")]
    Invalid {
        /// The format it was read as.
        format: &'static str,
        /// What is wrong, with the place where it is when known.
        reason: String,
    },
}

impl ParseError {
    /// An invalid document of `format`.
    pub fn invalid(format: Format, reason: impl std::fmt::Display) -> ParseError {
        ParseError::Invalid { format: format.as_str(), reason: reason.to_string() }
    }
}

/// Detects the format of `bytes` from their content.
pub fn detect(bytes: &[u8]) -> Result<Format, ParseError> {
    let text = strip_bom(bytes);
    let start = text.iter().position(|b| !b.is_ascii_whitespace()).map_or(&[][..], |i| &text[i..]);
    match start.first() {
        Some(b'<') => {
            let head = String::from_utf8_lossy(&start[..start.len().min(4096)]);
            if head.contains("cvrfdoc") {
                Ok(Format::Cvrf)
            } else {
                Err(ParseError::UnknownFormat("an XML document that is not CVRF".into()))
            }
        }
        Some(b'{') => detect_json(start),
        Some(_) => Err(ParseError::UnknownFormat("neither JSON nor XML".into())),
        None => Err(ParseError::UnknownFormat("empty".into())),
    }
}

fn detect_json(bytes: &[u8]) -> Result<Format, ParseError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| ParseError::Malformed(e.to_string()))?;
    let has = |key: &str| value.get(key).is_some();
    if value.pointer("/document/csaf_version").is_some() {
        Ok(Format::Csaf)
    } else if value.get("dataType").and_then(|v| v.as_str()) == Some("CVE_RECORD") || has("cveMetadata") {
        Ok(Format::Cve5)
    } else if has("vulnerabilities") && (has("resultsPerPage") || has("totalResults")) {
        Ok(Format::Nvd)
    } else if has("catalogVersion") && has("vulnerabilities") {
        Ok(Format::Kev)
    } else if has("id") && (has("affected") || has("modified")) {
        Ok(Format::Osv)
    } else {
        Err(ParseError::UnknownFormat("JSON of no known advisory schema".into()))
    }
}

/// Reads a document of any known format.
pub fn parse(bytes: &[u8]) -> Result<Document, ParseError> {
    let bytes = strip_bom(bytes);
    match detect(bytes)? {
        Format::Csaf => csaf::parse(bytes).map(Document::Advisory),
        Format::Osv => osv::parse(bytes).map(Document::Advisory),
        Format::Cvrf => cvrf::parse(bytes).map(Document::Advisory),
        Format::Cve5 => cve::parse(bytes).map(|r| Document::Cves(vec![r])),
        Format::Nvd => nvd::parse(bytes).map(Document::Cves),
        Format::Kev => kev::parse(bytes).map(Document::Kev),
    }
}

/// `bytes` without a UTF-8 byte-order mark.
pub fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// Shortens free text kept in the model (details, descriptions) to at most `max_chars`.
pub fn shorten(text: &str, max_chars: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}
