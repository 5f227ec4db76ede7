//! Helpers shared by the integration tests: where the published documents in
//! `shared/advisories` are, and reading one of them. Each finds the directory or says once that
//! it is absent (the test then passes without checking anything).

use std::path::{Path, PathBuf};

/// The `shared/advisories` directory, or None (after saying so) when it is not here.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/advisories"));
    if dir.is_dir() {
        Some(dir.to_path_buf())
    } else {
        println!("SKIPPED: ../shared/advisories not found");
        None
    }
}

/// The bytes of the shared document `name`, or None (after saying so) when the directory is not
/// here.
#[allow(dead_code)]
pub fn shared_bytes(name: &str) -> Option<Vec<u8>> {
    let dir = shared_dir()?;
    Some(std::fs::read(dir.join(name)).unwrap())
}
