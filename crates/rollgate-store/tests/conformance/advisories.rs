//! Conformance: advisories, CVE records and KEV facts (`import_advisory`, `list_advisories`,
//! `advisories_by_id`, `advisories_naming`, `import_cve`, `record_kev`, `cves`).

use rollgate_core::revision::Outcome;
use rollgate_store::{AdvisoryFilter, AdvisoryRecord, CveRow, KevRow};

use crate::{backends, t};

fn advisory(id: &str, updated_secs: i64, sha256: &str, products: &[&str], cves: &[&str]) -> AdvisoryRecord {
    AdvisoryRecord {
        publisher: "Debian".into(),
        id: id.into(),
        format: "osv".into(),
        title: format!("{id} title"),
        published_at: Some(t(0)),
        updated_at: Some(t(updated_secs)),
        revision: None,
        rating: Some("high".into()),
        max_score_tenths: Some(75),
        content_sha256: sha256.into(),
        document: format!("{{\"sha\":\"{sha256}\"}}"),
        cves: cves.iter().map(|s| s.to_string()).collect(),
        products: products.iter().map(|s| s.to_string()).collect(),
        imported_at: t(1000),
    }
}

#[tokio::test]
async fn advisory_revisions_newer_wins_same_changes_nothing_older_is_ignored() {
    for b in backends().await {
        let s = b.start("advisory_revisions_newer_wins_same_changes_nothing_older_is_ignored");
        let first = advisory("DSA-1", 10, "aaa", &["nginx"], &["CVE-1"]);
        assert_eq!(s.import_advisory(&first).await.unwrap(), Outcome::New);
        assert_eq!(s.import_advisory(&first).await.unwrap(), Outcome::Unchanged);
        let newer = advisory("DSA-1", 20, "bbb", &["nginx", "nginx-full"], &["CVE-1", "CVE-2"]);
        assert_eq!(s.import_advisory(&newer).await.unwrap(), Outcome::Supersedes);
        let older = advisory("DSA-1", 15, "ccc", &["other"], &["CVE-9"]);
        assert_eq!(s.import_advisory(&older).await.unwrap(), Outcome::Older);

        let stored = s.advisories_by_id("DSA-1").await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].content_sha256, "bbb");
        assert_eq!(stored[0].updated_at, Some(t(20)));
        assert_eq!(stored[0].cves, ["CVE-1", "CVE-2"], "indexes replaced with the revision");
        assert_eq!(stored[0].products, ["nginx", "nginx-full"]);
        assert_eq!(stored[0], newer);
        // The same id from another publisher is another advisory.
        let other = AdvisoryRecord { publisher: "Ubuntu".into(), ..advisory("DSA-1", 1, "zzz", &["x"], &[]) };
        assert_eq!(s.import_advisory(&other).await.unwrap(), Outcome::New);
        assert_eq!(s.advisories_by_id("DSA-1").await.unwrap().len(), 2);
    }
}

#[tokio::test]
async fn advisories_are_listed_by_product_and_date_and_found_by_the_names_they_name() {
    for b in backends().await {
        let s = b.start("advisories_are_listed_by_product_and_date_and_found_by_the_names_they_name");
        s.import_advisory(&advisory("DSA-1", 10, "a", &["nginx"], &["CVE-1"])).await.unwrap();
        s.import_advisory(&advisory("DSA-2", 30, "b", &["OpenSSL", "libssl3"], &["CVE-2"])).await.unwrap();
        s.import_advisory(&advisory("DSA-3", 20, "c", &["openssl"], &[])).await.unwrap();
        let ids = |list: Vec<AdvisoryRecord>| list.into_iter().map(|a| a.id).collect::<Vec<_>>();
        assert_eq!(ids(s.list_advisories(&AdvisoryFilter::default()).await.unwrap()), ["DSA-2", "DSA-3", "DSA-1"]);
        let openssl = AdvisoryFilter { product: Some("OPENSSL".into()), ..Default::default() };
        assert_eq!(ids(s.list_advisories(&openssl).await.unwrap()), ["DSA-2", "DSA-3"], "names match in any case");
        let recent = AdvisoryFilter { since: Some(t(20)), ..Default::default() };
        assert_eq!(ids(s.list_advisories(&recent).await.unwrap()), ["DSA-2", "DSA-3"]);
        let cve = AdvisoryFilter { cve: Some("CVE-2".into()), ..Default::default() };
        assert_eq!(ids(s.list_advisories(&cve).await.unwrap()), ["DSA-2"]);
        let both = AdvisoryFilter { cve: Some("CVE-2".into()), product: Some("nginx".into()), since: None };
        assert!(s.list_advisories(&both).await.unwrap().is_empty());
        let naming = s.advisories_naming(&["libssl3".into(), "NGINX".into(), "absent".into()]).await.unwrap();
        assert_eq!(ids(naming), ["DSA-1", "DSA-2"]);
        assert!(s.advisories_naming(&[]).await.unwrap().is_empty());
    }
}

fn cve(id: &str, updated_secs: i64, sha256: &str) -> CveRow {
    CveRow {
        id: id.into(),
        format: Some("nvd".into()),
        title: Some("title".into()),
        published_at: Some(t(0)),
        updated_at: Some(t(updated_secs)),
        max_score_tenths: Some(88),
        content_sha256: Some(sha256.into()),
        document: Some("{}".into()),
        kev: None,
    }
}

#[tokio::test]
async fn kev_facts_arrive_before_or_after_the_cve_record_and_both_are_kept() {
    for b in backends().await {
        let s = b.start("kev_facts_arrive_before_or_after_the_cve_record_and_both_are_kept");
        let kev = KevRow {
            date_added: "2023-09-13".into(),
            due_date: Some("2023-10-04".into()),
            ransomware: Some("Unknown".into()),
            required_action: Some("Apply updates".into()),
        };
        assert!(s.record_kev("CVE-2023-4863", &kev, t(1)).await.unwrap());
        assert!(!s.record_kev("CVE-2023-4863", &kev, t(2)).await.unwrap(), "the same facts change nothing");
        let bare = s.cves(&["CVE-2023-4863".into()]).await.unwrap();
        assert_eq!((bare[0].document.as_deref(), bare[0].kev.as_ref()), (None, Some(&kev)));

        assert_eq!(s.import_cve(&cve("CVE-2023-4863", 10, "a"), t(3)).await.unwrap(), Outcome::New);
        assert_eq!(s.import_cve(&cve("CVE-2023-4863", 10, "a"), t(4)).await.unwrap(), Outcome::Unchanged);
        assert_eq!(s.import_cve(&cve("CVE-2023-4863", 5, "b"), t(5)).await.unwrap(), Outcome::Older);
        assert_eq!(s.import_cve(&cve("CVE-2023-4863", 20, "c"), t(6)).await.unwrap(), Outcome::Supersedes);
        let later = KevRow { due_date: Some("2023-10-05".into()), ..kev.clone() };
        assert!(s.record_kev("CVE-2023-4863", &later, t(7)).await.unwrap());

        assert_eq!(s.import_cve(&cve("CVE-2024-3094", 1, "x"), t(8)).await.unwrap(), Outcome::New);
        let rows = s.cves(&["CVE-2024-3094".into(), "CVE-2023-4863".into(), "CVE-0".into()]).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].id, "CVE-2023-4863");
        assert_eq!(rows[0].content_sha256.as_deref(), Some("c"));
        assert_eq!(rows[0].kev.as_ref(), Some(&later), "the record import kept the KEV facts");
        assert_eq!(rows[1].kev, None);
    }
}
