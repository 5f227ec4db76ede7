//! Conformance: patch campaigns (`put_campaign`, `get_campaign`, `list_campaigns`).

use rollgate_store::{CampaignRecord, StoreError};

use crate::{backends, t};

#[tokio::test]
async fn campaigns_are_created_then_replaced_and_keep_their_first_time() {
    for b in backends().await {
        let s = b.start("campaigns_are_created_then_replaced_and_keep_their_first_time");
        assert!(s.list_campaigns().await.unwrap().is_empty());
        assert!(matches!(s.get_campaign("monthly").await.unwrap_err(), StoreError::NotFound(_)));

        assert!(s.put_campaign("monthly", "name = \"monthly\"\n", t(0)).await.unwrap(), "created");
        assert!(!s.put_campaign("monthly", "name = \"monthly\"\n", t(10)).await.unwrap(), "exists");
        let same = CampaignRecord {
            name: "monthly".into(),
            spec: "name = \"monthly\"\n".into(),
            created_at: t(0),
            updated_at: t(0),
        };
        assert_eq!(s.get_campaign("monthly").await.unwrap(), same, "an unchanged text keeps its time");

        assert!(!s.put_campaign("monthly", "name = \"monthly\" # v2\n", t(20)).await.unwrap());
        let changed = CampaignRecord { spec: "name = \"monthly\" # v2\n".into(), updated_at: t(20), ..same };
        assert_eq!(s.get_campaign("monthly").await.unwrap(), changed);

        assert!(s.put_campaign("awkward", "name = \"awkward\"\n", t(30)).await.unwrap());
        let names: Vec<String> = s.list_campaigns().await.unwrap().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["awkward", "monthly"], "by name");
    }
}
