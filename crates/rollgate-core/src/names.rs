//! Names of products and sets: they become directory names on endpoints and path segments in
//! URLs, so they are held to one safe alphabet everywhere.

/// Checks a product or set name; `kind` names it in the error ("product", "set").
pub fn validate(kind: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad {kind} name `{name}`: use 1 to 64 letters, digits, `-`, `_`, `.`, starting with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cases() {
        for good in ["sample", "rollgate-agent", "a.b_c-1", "X"] {
            assert_eq!(super::validate("product", good), Ok(()), "{good}");
        }
        for bad in ["", "../x", ".hidden", "-x", "a b", "a/b", &"x".repeat(65)] {
            assert!(super::validate("product", bad).is_err(), "{bad}");
        }
        expect_test::expect![
            "bad set name `a/b`: use 1 to 64 letters, digits, `-`, `_`, `.`, starting with a letter or digit"
        ]
        .assert_eq(&super::validate("set", "a/b").unwrap_err());
    }
}
