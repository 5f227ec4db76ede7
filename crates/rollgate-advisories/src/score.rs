//! CVSS vectors to [`Cvss`] values with the `cvss` crate. Published vectors come with stray
//! parentheses, a trailing `/` or surrounding space; those are removed before parsing. A vector
//! that still does not parse is kept without a computed score rather than failing the document.

use std::str::FromStr;

use crate::model::Cvss;

/// A [`Cvss`] from a published vector and, when the document states one, its base score.
pub fn cvss(vector: &str, stated_score: Option<f64>) -> Cvss {
    let cleaned = clean(vector);
    let parsed = cvss::Cvss::from_str(&cleaned).ok();
    let version = version_of(&cleaned);
    let computed = parsed.as_ref().map(|c| c.score());
    Cvss { version, vector: cleaned, base_score: stated_score.or(computed) }
}

fn clean(vector: &str) -> String {
    vector.trim().trim_start_matches('(').trim_end_matches(')').trim_end_matches('/').to_string()
}

fn version_of(vector: &str) -> String {
    match vector.strip_prefix("CVSS:").and_then(|rest| rest.split('/').next()) {
        Some(v) => v.to_string(),
        None => "2.0".to_string(),
    }
}

/// The highest base score among `scores`.
pub fn max_score<'a>(scores: impl IntoIterator<Item = &'a Cvss>) -> Option<f64> {
    scores.into_iter().filter_map(|c| c.base_score).fold(None, |max, s| Some(max.map_or(s, |m: f64| m.max(s))))
}

/// The CVSS qualitative rating of a base score (v3/v4 bands).
pub fn rating_of(score: f64) -> &'static str {
    match score {
        s if s >= 9.0 => "critical",
        s if s >= 7.0 => "high",
        s if s >= 4.0 => "medium",
        s if s > 0.0 => "low",
        _ => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_vectors_are_scored_and_stray_characters_ignored() {
        let c = cvss("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:N", None);
        assert_eq!((c.version.as_str(), c.base_score), ("3.1", Some(9.1)));
        let temporal = cvss(" CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P/RL:O/RC:C/ ", None);
        assert_eq!(temporal.base_score, Some(9.8), "the base score, not the temporal one");
        assert_eq!(cvss("(AV:N/AC:L/Au:N/C:P/I:P/A:P)", None).base_score, Some(7.5));
        let v4 = cvss("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", None);
        assert_eq!((v4.version.as_str(), v4.base_score), ("4.0", Some(9.3)));
        assert_eq!(cvss("CVSS:3.1/nonsense", Some(5.0)).base_score, Some(5.0), "the stated score is kept");
        assert_eq!(cvss("CVSS:3.1/nonsense", None).base_score, None);
        assert_eq!(max_score(&[cvss("CVSS:3.1/nonsense", None), c]), Some(9.1));
        assert_eq!(rating_of(9.8), "critical");
        assert_eq!(rating_of(6.1), "medium");
    }
}
