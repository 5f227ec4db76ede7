//! Placeholder: this format's reader is being written.

use crate::model::*;
use crate::ParseError;

/// Reads a document.
pub fn parse(_bytes: &[u8]) -> Result<KevCatalog, ParseError> {
    Err(ParseError::UnknownFormat("not written yet".into()))
}
