//! Conformance: packages (`insert_package`, `get_package`, `list_packages`, `package_sha_exists`).

use rollgate_store::{PackageRecord, StoreError};

use crate::{backends, package, t};

#[tokio::test]
async fn packages_insert_get_list() {
    for b in backends().await {
        let s = b.start("packages_insert_get_list");
        assert!(s.list_packages().await.unwrap().is_empty());

        let db = package("db", "5.0", t(10));
        let agent_1 = package("agent", "1.0.0", t(20));
        let agent_2 = PackageRecord {
            min_from: Some("1.0.0".to_string()),
            size: 123_456_789,
            ..package("agent", "2.0.0", t(30))
        };
        for p in [&db, &agent_1, &agent_2] {
            s.insert_package(p).await.unwrap();
        }

        assert_eq!(s.get_package("agent", "2.0.0").await.unwrap(), agent_2);
        assert_eq!(s.get_package("db", "5.0").await.unwrap(), db);
        assert_eq!(s.list_packages().await.unwrap(), vec![agent_1, agent_2, db]);

        let err = s.get_package("agent", "9.9.9").await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
        let err = s.get_package("nothing", "1.0.0").await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    }
}

/// The trait promises "by product then version"; a version added after a newer one (a
/// backfilled hotfix) must still sort by version, not by upload time.
#[tokio::test]
async fn list_packages_orders_by_version_not_upload_time() {
    for b in backends().await {
        let s = b.start("list_packages_orders_by_version_not_upload_time");
        let newer = package("agent", "2.0.0", t(10));
        let older = package("agent", "1.0.0", t(20));
        s.insert_package(&newer).await.unwrap();
        s.insert_package(&older).await.unwrap();
        assert_eq!(s.list_packages().await.unwrap(), vec![older, newer]);
    }
}

#[tokio::test]
async fn duplicate_product_version_conflicts() {
    for b in backends().await {
        let s = b.start("duplicate_product_version_conflicts");
        let original = package("agent", "2.0.0", t(10));
        s.insert_package(&original).await.unwrap();

        let replacement = PackageRecord { sha256: "sha-other-bytes".to_string(), ..package("agent", "2.0.0", t(20)) };
        let err = s.insert_package(&replacement).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        // Versions are immutable: the original stays, and the refused bytes are not known.
        assert_eq!(s.get_package("agent", "2.0.0").await.unwrap(), original);
        assert_eq!(s.list_packages().await.unwrap(), vec![original]);
        assert!(!s.package_sha_exists("sha-other-bytes").await.unwrap());

        // The same version of another product is a different package.
        s.insert_package(&package("db", "2.0.0", t(30))).await.unwrap();
    }
}

#[tokio::test]
async fn package_sha_exists_only_for_stored_bytes() {
    for b in backends().await {
        let s = b.start("package_sha_exists_only_for_stored_bytes");
        assert!(!s.package_sha_exists("sha-agent-2.0.0").await.unwrap());
        s.insert_package(&package("agent", "2.0.0", t(10))).await.unwrap();
        assert!(s.package_sha_exists("sha-agent-2.0.0").await.unwrap());
        assert!(!s.package_sha_exists("sha-agent-2.0.1").await.unwrap());
        assert!(!s.package_sha_exists("").await.unwrap());
        // Two versions may share bytes (a re-tagged build); either name finds them.
        let same_bytes =
            PackageRecord { sha256: "sha-agent-2.0.0".to_string(), ..package("agent", "2.0.0-final", t(20)) };
        s.insert_package(&same_bytes).await.unwrap();
        assert!(s.package_sha_exists("sha-agent-2.0.0").await.unwrap());
    }
}
