//! Conformance: endpoints (`get_endpoint`, `list_endpoints`, `update_inventory`, `touch_endpoint`).

use rollgate_store::StoreError;

use crate::{backends, endpoint, enroll_all, map, t};

#[tokio::test]
async fn endpoints_get_and_list_by_id() {
    for b in backends().await {
        let s = b.start("endpoints_get_and_list_by_id");
        assert!(s.list_endpoints().await.unwrap().is_empty());
        enroll_all(s, &["ep-c", "ep-a", "ep-b"]).await;

        let listed = s.list_endpoints().await.unwrap();
        assert_eq!(listed, vec![endpoint("ep-a"), endpoint("ep-b"), endpoint("ep-c")]);
        assert_eq!(s.get_endpoint("ep-b").await.unwrap(), endpoint("ep-b"));
    }
}

#[tokio::test]
async fn update_inventory_replaces_labels_and_products() {
    for b in backends().await {
        let s = b.start("update_inventory_replaces_labels_and_products");
        s.create_enroll_token("tok", 1, t(1000), t(0)).await.unwrap();
        let mut first = endpoint("ep-1");
        first.labels = map(&[("site", "hq"), ("ring", "pilot")]);
        first.products = map(&[("agent", "1.0.0"), ("db", "3.1")]);
        s.enroll("tok", &first, t(0)).await.unwrap();
        assert_eq!(s.get_endpoint("ep-1").await.unwrap(), first);

        let labels = map(&[("site", "branch-7")]);
        let products = map(&[("agent", "1.5.0")]);
        s.update_inventory("ep-1", "renamed", "linux-6.8", &labels, &products, t(50)).await.unwrap();

        let expected = rollgate_store::EndpointRecord {
            hostname: "renamed".to_string(),
            os: "linux-6.8".to_string(),
            // Replaced, not merged: `ring` and `db` are gone.
            labels,
            products,
            last_seen: Some(t(50)),
            ..first
        };
        assert_eq!(s.get_endpoint("ep-1").await.unwrap(), expected);
    }
}

#[tokio::test]
async fn unknown_endpoint_is_not_found() {
    for b in backends().await {
        let s = b.start("unknown_endpoint_is_not_found");
        let err = s.get_endpoint("ghost").await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
        let err = s.update_inventory("ghost", "h", "linux", &map(&[]), &map(&[]), t(1)).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
        assert!(s.list_endpoints().await.unwrap().is_empty(), "updating an unknown endpoint must not create it");
    }
}

#[tokio::test]
async fn touch_never_moves_last_seen_backwards() {
    for b in backends().await {
        let s = b.start("touch_never_moves_last_seen_backwards");
        enroll_all(s, &["ep-1", "ep-2"]).await;
        assert_eq!(s.get_endpoint("ep-1").await.unwrap().last_seen, None);

        s.touch_endpoint("ep-1", t(100)).await.unwrap();
        assert_eq!(s.get_endpoint("ep-1").await.unwrap().last_seen, Some(t(100)));
        // A late request handled after a newer one (another replica, a retry) must not age it.
        s.touch_endpoint("ep-1", t(40)).await.unwrap();
        assert_eq!(s.get_endpoint("ep-1").await.unwrap().last_seen, Some(t(100)));
        s.touch_endpoint("ep-1", t(100)).await.unwrap();
        assert_eq!(s.get_endpoint("ep-1").await.unwrap().last_seen, Some(t(100)));
        s.touch_endpoint("ep-1", t(250)).await.unwrap();
        assert_eq!(s.get_endpoint("ep-1").await.unwrap().last_seen, Some(t(250)));

        // Only the touched endpoint moves.
        assert_eq!(s.get_endpoint("ep-2").await.unwrap().last_seen, None);
    }
}

/// A check-in handled late (another replica, a retried request) must not make an endpoint look
/// offline: `update_inventory` records `now` as last seen, like `touch_endpoint`, never older.
#[tokio::test]
async fn update_inventory_never_moves_last_seen_backwards() {
    for b in backends().await {
        let s = b.start("update_inventory_never_moves_last_seen_backwards");
        enroll_all(s, &["ep-1"]).await;
        s.touch_endpoint("ep-1", t(100)).await.unwrap();
        s.update_inventory("ep-1", "h", "linux", &map(&[]), &map(&[]), t(40)).await.unwrap();
        let e = s.get_endpoint("ep-1").await.unwrap();
        assert_eq!(e.hostname, "h", "the inventory itself is replaced");
        assert_eq!(e.last_seen, Some(t(100)));
    }
}
