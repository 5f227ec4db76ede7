//! Conformance: enrollment tokens (`create_enroll_token`, `enroll`).

use rollgate_store::{Store, StoreError};

use crate::{backends, endpoint, t};

/// The message of a `TokenRefused`, or a panic naming what came instead.
fn refusal(result: Result<(), StoreError>) -> String {
    match result {
        Err(StoreError::TokenRefused(message)) => message,
        other => panic!("expected TokenRefused, got {other:?}"),
    }
}

async fn endpoint_ids(s: &dyn Store) -> Vec<String> {
    s.list_endpoints().await.unwrap().into_iter().map(|e| e.id).collect()
}

#[tokio::test]
async fn enroll_consumes_one_use_per_endpoint() {
    for b in backends().await {
        let s = b.start("enroll_consumes_one_use_per_endpoint");
        s.create_enroll_token("tok", 2, t(1000), t(0)).await.unwrap();
        s.enroll("tok", &endpoint("ep-a"), t(10)).await.unwrap();
        s.enroll("tok", &endpoint("ep-b"), t(20)).await.unwrap();
        let message = refusal(s.enroll("tok", &endpoint("ep-c"), t(30)).await);
        assert!(message.contains("no uses left"), "{message}");
        assert_eq!(endpoint_ids(s).await, ["ep-a", "ep-b"]);
        assert_eq!(s.get_endpoint("ep-a").await.unwrap(), endpoint("ep-a"));
    }
}

#[tokio::test]
async fn refused_tokens_have_distinct_reasons_and_create_nothing() {
    for b in backends().await {
        let s = b.start("refused_tokens_have_distinct_reasons_and_create_nothing");
        s.create_enroll_token("expiring", 5, t(100), t(0)).await.unwrap();
        s.create_enroll_token("empty", 0, t(1000), t(0)).await.unwrap();

        let unknown = refusal(s.enroll("never-issued", &endpoint("ep-1"), t(50)).await);
        // Expiry is inclusive: at `expires_at` the token is already refused.
        let expired = refusal(s.enroll("expiring", &endpoint("ep-2"), t(100)).await);
        let expired_later = refusal(s.enroll("expiring", &endpoint("ep-2"), t(5000)).await);
        let used_up = refusal(s.enroll("empty", &endpoint("ep-3"), t(50)).await);

        assert!(unknown.contains("unknown"), "{unknown}");
        assert!(expired.contains("expired"), "{expired}");
        assert_eq!(expired, expired_later);
        assert!(used_up.contains("no uses left"), "{used_up}");
        assert!(unknown != expired && expired != used_up && unknown != used_up);

        assert!(endpoint_ids(s).await.is_empty(), "a refused enrollment created an endpoint");
        for id in ["ep-1", "ep-2", "ep-3"] {
            assert!(matches!(s.get_endpoint(id).await, Err(StoreError::NotFound(_))));
        }

        // One second before expiry the same token still works, and its refusals used nothing.
        s.enroll("expiring", &endpoint("ep-2"), t(99)).await.unwrap();
        assert_eq!(endpoint_ids(s).await, ["ep-2"]);
    }
}

#[tokio::test]
async fn duplicate_endpoint_id_conflicts_and_keeps_the_use() {
    for b in backends().await {
        let s = b.start("duplicate_endpoint_id_conflicts_and_keeps_the_use");
        s.create_enroll_token("tok", 2, t(1000), t(0)).await.unwrap();
        s.enroll("tok", &endpoint("ep-a"), t(10)).await.unwrap();

        let mut again = endpoint("ep-a");
        again.hostname = "impostor".to_string();
        let err = s.enroll("tok", &again, t(20)).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        assert_eq!(s.get_endpoint("ep-a").await.unwrap(), endpoint("ep-a"), "the first enrollment must stand");

        // The refused enrollment was rolled back with its token use: one use is left.
        s.enroll("tok", &endpoint("ep-b"), t(30)).await.unwrap();
        let message = refusal(s.enroll("tok", &endpoint("ep-c"), t(40)).await);
        assert!(message.contains("no uses left"), "{message}");
        assert_eq!(endpoint_ids(s).await, ["ep-a", "ep-b"]);
    }
}

#[tokio::test]
async fn an_endpoint_is_found_by_its_key_and_reissued_without_taking_a_use() {
    for b in backends().await {
        let s = b.start("an_endpoint_is_found_by_its_key_and_reissued_without_taking_a_use");
        s.create_enroll_token("tok", 1, t(100), t(0)).await.unwrap();
        let record = rollgate_store::EndpointRecord { public_key_sha256: Some("key-1".into()), ..endpoint("ep-1") };
        s.enroll("tok", &record, t(1)).await.unwrap();
        assert_eq!(s.endpoint_by_public_key("key-1").await.unwrap().as_deref(), Some("ep-1"));
        assert_eq!(s.endpoint_by_public_key("key-2").await.unwrap(), None);
        s.reissue("tok", "ep-1", "fp-2", t(2)).await.unwrap();
        assert_eq!(s.get_endpoint("ep-1").await.unwrap().cert_fingerprint, "fp-2");
        assert!(matches!(s.reissue("nope", "ep-1", "fp-3", t(3)).await, Err(StoreError::TokenRefused(_))));
        assert!(matches!(s.reissue("tok", "ep-1", "fp-3", t(100)).await, Err(StoreError::TokenRefused(_))), "expired");
        assert!(matches!(s.reissue("tok", "ep-9", "fp-3", t(3)).await, Err(StoreError::NotFound(_))));
        // Once the endpoint has reported over mutual TLS it is in use: its certificate stays.
        let products = [("rollgate-agent".to_string(), "0.1.0".to_string())].into();
        let labels = Default::default();
        s.update_inventory("ep-1", &crate::facts("h", "os", &labels, &products), t(3)).await.unwrap();
        assert!(matches!(s.reissue("tok", "ep-1", "fp-4", t(4)).await, Err(StoreError::Conflict(_))));
        assert_eq!(s.get_endpoint("ep-1").await.unwrap().cert_fingerprint, "fp-2");
        // The same key cannot make a second endpoint.
        s.create_enroll_token("tok2", 1, t(100), t(0)).await.unwrap();
        let twin = rollgate_store::EndpointRecord { public_key_sha256: Some("key-1".into()), ..endpoint("ep-2") };
        assert!(matches!(s.enroll("tok2", &twin, t(4)).await, Err(StoreError::Conflict(_))));
        assert_eq!(s.list_endpoints().await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn a_batch_is_enrolled_all_or_none() {
    for b in backends().await {
        let s = b.start("a_batch_is_enrolled_all_or_none");
        let batch: Vec<_> = (0..2500).map(|i| endpoint(&format!("ep-{i:05}"))).collect();
        s.enroll_batch(&batch).await.unwrap();
        let listed = s.list_endpoints().await.unwrap();
        assert_eq!(listed.len(), 2500);
        assert_eq!(listed[1234], batch[1234]);
        // One id already taken: nothing of the second batch is stored.
        let clash: Vec<_> = ["ep-new-1", "ep-02499", "ep-new-2"].iter().map(|id| endpoint(id)).collect();
        assert!(matches!(s.enroll_batch(&clash).await, Err(StoreError::Conflict(_))));
        assert_eq!(s.list_endpoints().await.unwrap().len(), 2500);
        s.enroll_batch(&[]).await.unwrap();
    }
}
