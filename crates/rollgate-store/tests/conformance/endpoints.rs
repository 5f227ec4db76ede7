//! Conformance: endpoints (`get_endpoint`, `list_endpoints`, `endpoints_last_seen`,
//! `update_inventory`, `touch_endpoint`).

use jiff::Timestamp;
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

        s.touch_endpoints(&[("ep-b".to_string(), t(70))]).await.unwrap();
        let seen = s.endpoints_last_seen().await.unwrap();
        let expected: Vec<(String, Option<Timestamp>)> = ["ep-a", "ep-b", "ep-c"]
            .iter()
            .map(|id| (id.to_string(), if *id == "ep-b" { Some(t(70)) } else { endpoint(id).last_seen }))
            .collect();
        assert_eq!(seen, expected);
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
        let facts = rollgate_store::EndpointFacts {
            os_id: Some("debian"),
            os_version: Some("12"),
            ..crate::facts("renamed", "linux-6.8", &labels, &products)
        };
        s.update_inventory("ep-1", &facts, t(50)).await.unwrap();

        let expected = rollgate_store::EndpointRecord {
            hostname: "renamed".to_string(),
            os: "linux-6.8".to_string(),
            os_id: Some("debian".into()),
            os_version: Some("12".into()),
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
        let err =
            s.update_inventory("ghost", &crate::facts("h", "linux", &map(&[]), &map(&[])), t(1)).await.unwrap_err();
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

/// The batched `last_seen` write the server makes once a second, across the statement
/// boundary (64 rows): each endpoint moves forward only, unknown ids are ignored.
#[tokio::test]
async fn touching_many_endpoints_at_once_moves_each_forward_only() {
    for b in backends().await {
        let s = b.start("touching_many_endpoints_at_once_moves_each_forward_only");
        let ids: Vec<String> = (0..150).map(|i| format!("ep-{i:03}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        enroll_all(s, &refs).await;
        let first: Vec<(String, Timestamp)> = ids.iter().map(|id| (id.clone(), t(100))).collect();
        s.touch_endpoints(&first).await.unwrap();
        // Even ids newer, odd ids older than what is stored, plus an endpoint nobody enrolled.
        let mut second: Vec<(String, Timestamp)> =
            ids.iter().enumerate().map(|(i, id)| (id.clone(), if i % 2 == 0 { t(200) } else { t(50) })).collect();
        second.push(("ep-unknown".to_string(), t(300)));
        s.touch_endpoints(&second).await.unwrap();
        for (i, id) in ids.iter().enumerate() {
            let expected = if i % 2 == 0 { t(200) } else { t(100) };
            assert_eq!(s.get_endpoint(id).await.unwrap().last_seen, Some(expected), "{id}");
        }
        assert!(matches!(s.get_endpoint("ep-unknown").await, Err(StoreError::NotFound(_))));
        s.touch_endpoints(&[]).await.unwrap();
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
        s.update_inventory("ep-1", &crate::facts("h", "linux", &map(&[]), &map(&[])), t(40)).await.unwrap();
        let e = s.get_endpoint("ep-1").await.unwrap();
        assert_eq!(e.hostname, "h", "the inventory itself is replaced");
        assert_eq!(e.last_seen, Some(t(100)));
    }
}

#[tokio::test]
async fn software_lists_change_only_on_top_of_the_list_they_were_computed_from() {
    for b in backends().await {
        let s = b.start("software_lists_change_only_on_top_of_the_list_they_were_computed_from");
        s.enroll_batch(&[endpoint("ep-1"), endpoint("ep-2")]).await.unwrap();
        let full = map(&[("nginx", "1.2.1-2.2+wheezy2"), ("libssl3", "3.0.2-0ubuntu1.16"), ("NetworkManager", "1.42")]);
        let change = |base, digest, upsert, remove| rollgate_store::SoftwareChange {
            base,
            digest,
            source: "dpkg",
            upsert,
            remove,
        };
        assert!(s.apply_software("ep-1", &change(None, "d1", &full, &[])).await.unwrap());
        assert_eq!(s.endpoint_software("ep-1").await.unwrap(), full);

        // A delta on the wrong base changes nothing.
        let upgraded = map(&[("nginx", "1.2.1-2.2+wheezy3")]);
        assert!(!s.apply_software("ep-1", &change(Some("d0"), "d2", &upgraded, &[])).await.unwrap());
        assert_eq!(s.endpoint_software("ep-1").await.unwrap(), full);
        // On the right base: upgraded and removed.
        let removed = vec!["libssl3".to_string()];
        assert!(s.apply_software("ep-1", &change(Some("d1"), "d2", &upgraded, &removed)).await.unwrap());
        let now = map(&[("nginx", "1.2.1-2.2+wheezy3"), ("NetworkManager", "1.42")]);
        assert_eq!(s.endpoint_software("ep-1").await.unwrap(), now);
        // The same delta again is refused: its base is gone.
        assert!(!s.apply_software("ep-1", &change(Some("d1"), "d2", &upgraded, &removed)).await.unwrap());
        // A whole list replaces everything.
        let other = map(&[("nginx", "1.22")]);
        assert!(s.apply_software("ep-2", &change(None, "e1", &other, &[])).await.unwrap());

        let named = s.software_named(&["nginx".into(), "networkmanager".into()]).await.unwrap();
        let expected =
            [("ep-1", "NetworkManager", "1.42"), ("ep-1", "nginx", "1.2.1-2.2+wheezy3"), ("ep-2", "nginx", "1.22")];
        let expected: Vec<(String, String, String)> =
            expected.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect();
        assert_eq!(named, expected);
        assert!(s.apply_software("ghost", &change(None, "x", &other, &[])).await.is_err());
        // Many packages at once (more than one multi-row insert).
        let many: std::collections::BTreeMap<String, String> =
            (0..450).map(|i| (format!("pkg{i:03}"), format!("1.{i}"))).collect();
        assert!(s.apply_software("ep-2", &change(None, "e2", &many, &[])).await.unwrap());
        assert_eq!(s.endpoint_software("ep-2").await.unwrap(), many);
    }
}
