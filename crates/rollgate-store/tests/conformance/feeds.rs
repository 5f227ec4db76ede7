//! Conformance: advisory feeds (`create_feed`, `list_feeds`, `get_feed`, `schedule_feed`,
//! `feed_file`, `put_feed_file`, `record_feed_run`, `feed_runs`).

use rollgate_store::{FeedFile, FeedRecord, FeedRun, StoreError};

use crate::{backends, t};

#[tokio::test]
async fn feeds_remember_what_they_fetched_and_every_run() {
    for b in backends().await {
        let s = b.start("feeds_remember_what_they_fetched_and_every_run");
        let feed = FeedRecord {
            name: "redhat".into(),
            kind: "csaf".into(),
            url: "https://example.test/.well-known/csaf/provider-metadata.json".into(),
            ca_pem: None,
            interval_secs: 3600,
            next_run_at: t(0),
            created_at: t(0),
        };
        s.create_feed(&feed).await.unwrap();
        assert!(matches!(s.create_feed(&feed).await.unwrap_err(), StoreError::Conflict(_)));
        assert!(matches!(s.get_feed("nope").await.unwrap_err(), StoreError::NotFound(_)));
        s.schedule_feed("redhat", t(3600)).await.unwrap();
        let stored = s.get_feed("redhat").await.unwrap();
        assert_eq!(stored, FeedRecord { next_run_at: t(3600), ..feed.clone() });
        assert_eq!(s.list_feeds().await.unwrap(), [stored]);

        let url = "https://example.test/csaf/changes.csv";
        assert_eq!(s.feed_file("redhat", url).await.unwrap(), None);
        let file = FeedFile { etag: Some("\"abc\"".into()), sha256: Some("00".into()), ..Default::default() };
        s.put_feed_file("redhat", url, &file).await.unwrap();
        let changed = FeedFile { changed_at: Some("2024-01-01T00:00:00Z".into()), ..file };
        s.put_feed_file("redhat", url, &changed).await.unwrap();
        assert_eq!(s.feed_file("redhat", url).await.unwrap(), Some(changed));
        assert_eq!(s.feed_file("other", url).await.unwrap(), None);

        let run = |n: u64| FeedRun {
            feed: "redhat".into(),
            started_at: t(n as i64),
            finished_at: t(n as i64 + 1),
            requests: n,
            downloaded: n,
            imported: n,
            unchanged: 0,
            failed: u64::from(n == 2),
            errors: if n == 2 { vec!["a.json: damaged".into(), "b.json: 404".into()] } else { vec![] },
        };
        for n in 1..=3 {
            s.record_feed_run(&run(n)).await.unwrap();
        }
        let runs = s.feed_runs("redhat", 2).await.unwrap();
        assert_eq!(runs, [run(3), run(2)], "newest first, at most the limit");
    }
}
