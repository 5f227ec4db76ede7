//! A lenient version order for product versions (`1.10.0` > `1.9.2`, `2.0.0-rc1` < `2.0.0`).
//!
//! Managed products are not all semantic-versioned, so this compares dot/dash separated
//! segments, numbers numerically and words lexically; a pre-release suffix after `-` sorts
//! before the release. Ecosystem-specific orders (dpkg, rpm) belong to the advisory matcher.

use std::cmp::Ordering;

/// Checks that a version string is usable: non-empty, bounded, and made of safe characters
/// (it becomes a directory name on endpoints).
pub fn validate(version: &str) -> Result<(), String> {
    let ok_chars = version.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | '~'));
    if version.is_empty() || version.len() > 64 || !ok_chars || version.starts_with('.') || version.starts_with('-') {
        return Err(format!(
            "bad version `{version}`: use 1 to 64 letters, digits, `.`, `-`, `_`, `+`, `~`, starting with a letter or digit"
        ));
    }
    Ok(())
}

/// Orders two versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (a_main, a_pre) = split_pre(a);
    let (b_main, b_pre) = split_pre(b);
    match compare_segments(a_main, b_main) {
        Ordering::Equal => {}
        other => return other,
    }
    match (a_pre, b_pre) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => compare_segments(x, y),
    }
}

fn split_pre(v: &str) -> (&str, Option<&str>) {
    let v = v.split('+').next().unwrap_or(v);
    match v.split_once('-') {
        Some((main, pre)) => (main, Some(pre)),
        None => (v, None),
    }
}

fn compare_segments(a: &str, b: &str) -> Ordering {
    let mut xs = a.split(['.', '-', '_']);
    let mut ys = b.split(['.', '-', '_']);
    loop {
        match (xs.next(), ys.next()) {
            (None, None) => return Ordering::Equal,
            // `1.0` equals `1.0.0`; `1.0.1` is greater.
            (Some(x), None) => {
                return if x.chars().all(|c| c == '0') { compare_segments_rest(xs) } else { Ordering::Greater }
            }
            (None, Some(y)) => {
                return if y.chars().all(|c| c == '0') { compare_segments_rest(ys).reverse() } else { Ordering::Less }
            }
            (Some(x), Some(y)) => match compare_one(x, y) {
                Ordering::Equal => continue,
                other => return other,
            },
        }
    }
}

fn compare_segments_rest<'a>(mut rest: impl Iterator<Item = &'a str>) -> Ordering {
    if rest.all(|s| s.chars().all(|c| c == '0')) {
        Ordering::Equal
    } else {
        Ordering::Greater
    }
}

fn compare_one(x: &str, y: &str) -> Ordering {
    match (x.parse::<u64>(), y.parse::<u64>()) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        // A number sorts after a word: `1.0.1` > `1.0.beta`.
        (Ok(_), Err(_)) => Ordering::Greater,
        (Err(_), Ok(_)) => Ordering::Less,
        (Err(_), Err(_)) => x.cmp(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_cases() {
        let cases = [
            ("1.0.0", "1.0.0", Ordering::Equal),
            ("1.0", "1.0.0", Ordering::Equal),
            ("1.10.0", "1.9.2", Ordering::Greater),
            ("1.0.1", "1.0", Ordering::Greater),
            ("2.0.0-rc1", "2.0.0", Ordering::Less),
            ("2.0.0-rc.2", "2.0.0-rc.10", Ordering::Less),
            ("2.0.0-alpha", "2.0.0-beta", Ordering::Less),
            ("1.0.0+build5", "1.0.0", Ordering::Equal),
            ("0.9", "1.0", Ordering::Less),
            ("10", "9", Ordering::Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn validation() {
        assert!(validate("1.2.3-rc1").is_ok());
        assert!(validate("").is_err());
        assert!(validate("../etc").is_err());
        assert!(validate("1 2").is_err());
        assert!(validate(&"1".repeat(65)).is_err());
    }
}
