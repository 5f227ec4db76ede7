//! Which revision of an advisory or CVE record to keep when one with the same key arrives.
//!
//! Publishers revise documents in place (a new `current_release_date`, `modified` or
//! `lastModified`); feeds and operators import the same document again and again. The rule:
//! the newer update time wins; the same content changes nothing; an older revision never
//! replaces a newer one; equal times with different content are a correction made without a
//! new date, and the later import wins.

/// What is stored under a key: its update time (milliseconds; None when the document gives
/// none) and the SHA-256 of its content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored<'a> {
    /// Update time in milliseconds since the epoch.
    pub updated_ms: Option<i64>,
    /// SHA-256 of the normalized content.
    pub sha256: &'a str,
}

/// What importing a revision does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing was stored under the key: stored.
    New,
    /// Replaces the stored revision.
    Supersedes,
    /// The same content: nothing changes.
    Unchanged,
    /// Older than the stored revision: ignored.
    Older,
}

impl Outcome {
    /// Whether the incoming revision is written.
    pub fn writes(self) -> bool {
        matches!(self, Outcome::New | Outcome::Supersedes)
    }

    /// A word for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::New => "new",
            Outcome::Supersedes => "updated",
            Outcome::Unchanged => "unchanged",
            Outcome::Older => "older",
        }
    }
}

/// Decides what importing `incoming` over `stored` does.
pub fn decide(stored: Option<Stored<'_>>, incoming: Stored<'_>) -> Outcome {
    let Some(stored) = stored else { return Outcome::New };
    if stored.sha256 == incoming.sha256 {
        return Outcome::Unchanged;
    }
    // A missing time sorts before every time: a dated revision replaces an undated one.
    match incoming.updated_ms.cmp(&stored.updated_ms) {
        std::cmp::Ordering::Less => Outcome::Older,
        _ => Outcome::Supersedes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: Option<i64>, sha256: &str) -> Stored<'_> {
        Stored { updated_ms: ms, sha256 }
    }

    #[test]
    fn newer_wins_same_is_nothing_older_is_ignored() {
        assert_eq!(decide(None, at(Some(5), "a")), Outcome::New);
        assert_eq!(decide(Some(at(Some(5), "a")), at(Some(5), "a")), Outcome::Unchanged);
        assert_eq!(decide(Some(at(Some(5), "a")), at(Some(9), "a")), Outcome::Unchanged, "same bytes");
        assert_eq!(decide(Some(at(Some(5), "a")), at(Some(9), "b")), Outcome::Supersedes);
        assert_eq!(decide(Some(at(Some(9), "b")), at(Some(5), "a")), Outcome::Older);
        assert_eq!(decide(Some(at(Some(5), "a")), at(Some(5), "b")), Outcome::Supersedes, "a correction");
        assert_eq!(decide(Some(at(None, "a")), at(Some(1), "b")), Outcome::Supersedes);
        assert_eq!(decide(Some(at(Some(1), "a")), at(None, "b")), Outcome::Older);
        assert!(Outcome::New.writes() && Outcome::Supersedes.writes());
        assert!(!Outcome::Unchanged.writes() && !Outcome::Older.writes());
    }
}
