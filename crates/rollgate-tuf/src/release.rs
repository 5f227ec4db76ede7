//! The Rollgate facts a targets-signed entry carries besides hashes and length, under the
//! `rollgate` key of the target's `custom` metadata.

use serde::{Deserialize, Serialize};

/// Key of [`Release`] in a target's `custom` map.
pub const CUSTOM_KEY: &str = "rollgate";

/// What the targets key vouches for, besides the bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// Product name.
    pub product: String,
    /// Version of the product.
    pub version: String,
    /// Install module: `files` or `script`.
    pub module: String,
    /// Release counter of the product: an agent refuses a package whose counter is lower than
    /// that of the version it runs (no downgrade), unless `rollback` is set.
    pub release: u64,
    /// Hardware this package is for (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hardware: Vec<String>,
    /// Operating systems this package is for (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub os: Vec<String>,
    /// A signed rollback: may be installed over a higher release counter.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rollback: bool,
}

/// The target name of a product version: flat, because TUF implementations disagree on where
/// the hash prefix goes in nested names under consistent snapshots.
pub fn target_name(product: &str, version: &str) -> String {
    format!("{product}-{version}")
}

impl Release {
    /// The `custom` map entry.
    pub fn to_custom(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(self)
    }

    /// Reads the entry back from a target's `custom` map; `None` when it has none.
    pub fn from_custom(
        custom: &std::collections::HashMap<String, serde_json::Value>,
    ) -> Option<Result<Release, serde_json::Error>> {
        custom.get(CUSTOM_KEY).map(|value| serde_json::from_value(value.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_custom_metadata_and_refuses_unknown_fields() {
        let release = Release {
            product: "agent".into(),
            version: "2.0.0".into(),
            module: "files".into(),
            release: 7,
            hardware: vec!["x86_64".into()],
            os: vec![],
            rollback: false,
        };
        let mut custom = std::collections::HashMap::new();
        custom.insert(CUSTOM_KEY.to_string(), release.to_custom().unwrap());
        assert_eq!(Release::from_custom(&custom).unwrap().unwrap(), release);
        let text = serde_json::to_string(&custom[CUSTOM_KEY]).unwrap();
        assert!(!text.contains("rollback") && !text.contains("\"os\""), "defaults are left out: {text}");
        custom.insert(
            CUSTOM_KEY.to_string(),
            serde_json::json!({"product": "a", "version": "1", "module": "files", "release": 1, "extra": 1}),
        );
        assert!(Release::from_custom(&custom).unwrap().is_err());
        assert!(Release::from_custom(&Default::default()).is_none());
        assert_eq!(target_name("agent", "2.0.0"), "agent-2.0.0");
    }
}
