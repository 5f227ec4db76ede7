//! Target selectors: which endpoints an Upgrade Set applies to.
//!
//! The operator writes `all`, a comma list of endpoint ids (`ep-1,ep-2`), or label matches
//! (`site=berlin,network=remote`, all of which must hold). Parsed once into [`Selector`].

use std::collections::BTreeMap;
use std::fmt;

/// A parsed target selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// Every enrolled endpoint.
    All,
    /// Exactly these endpoint ids.
    Ids(Vec<String>),
    /// Endpoints whose labels hold every one of these key/value pairs.
    Labels(Vec<(String, String)>),
}

/// Why a selector could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    #[error("empty target selector: use `all`, a comma list of endpoint ids, or label matches like `site=berlin`")]
    Empty,
    #[error("target selector mixes endpoint ids and label matches (`{0}`): use one kind")]
    Mixed(String),
    #[error(
        "bad target selector item `{0}`: ids and label keys/values may hold letters, digits, `-`, `_`, `.` and `:`"
    )]
    BadItem(String),
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

impl Selector {
    /// Parses a selector as written on the command line.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SelectorError::Empty);
        }
        if text.eq_ignore_ascii_case("all") {
            return Ok(Selector::All);
        }
        let items: Vec<&str> = text.split(',').map(str::trim).collect();
        let label_items = items.iter().filter(|i| i.contains('=')).count();
        if label_items != 0 && label_items != items.len() {
            return Err(SelectorError::Mixed(text.to_string()));
        }
        if label_items == 0 {
            let mut ids = Vec::with_capacity(items.len());
            for item in items {
                if !is_token(item) {
                    return Err(SelectorError::BadItem(item.to_string()));
                }
                ids.push(item.to_string());
            }
            ids.sort();
            ids.dedup();
            return Ok(Selector::Ids(ids));
        }
        let mut pairs = Vec::with_capacity(items.len());
        for item in items {
            let (key, value) = item.split_once('=').ok_or_else(|| SelectorError::BadItem(item.to_string()))?;
            let (key, value) = (key.trim(), value.trim());
            if !is_token(key) || !is_token(value) {
                return Err(SelectorError::BadItem(item.to_string()));
            }
            pairs.push((key.to_string(), value.to_string()));
        }
        pairs.sort();
        pairs.dedup();
        Ok(Selector::Labels(pairs))
    }

    /// True when the endpoint with this id and these labels is targeted.
    pub fn matches(&self, endpoint_id: &str, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Selector::All => true,
            Selector::Ids(ids) => ids.binary_search_by(|id| id.as_str().cmp(endpoint_id)).is_ok(),
            Selector::Labels(pairs) => pairs.iter().all(|(k, v)| labels.get(k) == Some(v)),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::All => f.write_str("all"),
            Selector::Ids(ids) => f.write_str(&ids.join(",")),
            Selector::Labels(pairs) => {
                let items: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                f.write_str(&items.join(","))
            }
        }
    }
}

/// Parses one `key=value` label as given to `--label`.
pub fn parse_label(text: &str) -> Result<(String, String), SelectorError> {
    match Selector::parse(text)? {
        Selector::Labels(mut pairs) if pairs.len() == 1 => Ok(pairs.remove(0)),
        _ => Err(SelectorError::BadItem(text.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: expect_test::Expect) {
        let got = match Selector::parse(input) {
            Ok(sel) => format!("{sel:?} -> {sel}"),
            Err(err) => format!("error: {err}"),
        };
        expect.assert_eq(&got);
    }

    #[test]
    fn parse_cases() {
        use expect_test::expect;
        check("all", expect!["All -> all"]);
        check(" ALL ", expect!["All -> all"]);
        check("ep-2,ep-1,ep-2", expect![[r#"Ids(["ep-1", "ep-2"]) -> ep-1,ep-2"#]]);
        check(
            "site=berlin, network=remote",
            expect![[r#"Labels([("network", "remote"), ("site", "berlin")]) -> network=remote,site=berlin"#]],
        );
        check("", expect!["error: empty target selector: use `all`, a comma list of endpoint ids, or label matches like `site=berlin`"]);
        check(
            "ep-1,site=x",
            expect!["error: target selector mixes endpoint ids and label matches (`ep-1,site=x`): use one kind"],
        );
        check("ep 1", expect!["error: bad target selector item `ep 1`: ids and label keys/values may hold letters, digits, `-`, `_`, `.` and `:`"]);
        check("site=", expect!["error: bad target selector item `site=`: ids and label keys/values may hold letters, digits, `-`, `_`, `.` and `:`"]);
        check("a,,b", expect!["error: bad target selector item ``: ids and label keys/values may hold letters, digits, `-`, `_`, `.` and `:`"]);
    }

    #[test]
    fn matching() {
        let labels: BTreeMap<String, String> =
            [("site".to_string(), "berlin".to_string()), ("network".to_string(), "remote".to_string())].into();
        let none = BTreeMap::new();
        assert!(Selector::All.matches("x", &none));
        let ids = Selector::parse("ep-1,ep-3").unwrap();
        assert!(ids.matches("ep-3", &none));
        assert!(!ids.matches("ep-2", &none));
        let sel = Selector::parse("site=berlin,network=remote").unwrap();
        assert!(sel.matches("x", &labels));
        assert!(!Selector::parse("site=berlin,network=on-network").unwrap().matches("x", &labels));
        assert!(!sel.matches("x", &none));
    }

    #[test]
    fn labels() {
        assert_eq!(parse_label("site=berlin"), Ok(("site".into(), "berlin".into())));
        assert!(parse_label("site").is_err());
        assert!(parse_label("a=1,b=2").is_err());
    }
}
