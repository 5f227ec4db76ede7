//! The storage conformance suite: every scenario is written once against `&dyn Store` and runs
//! against every backend that [`backends`] returns, so the backends cannot drift apart.
//!
//! Each test loops over the backends and prints which one it is running, so a failure names
//! its backend. Time is always passed in explicitly (see [`t`]); nothing here reads the clock
//! or sleeps. The scenarios live in `tests/conformance/`, one file per area of the trait.

// Tests unwrap freely: every input is a literal written here, and a panic with its location is
// exactly the failure report a test should give.
#![allow(clippy::unwrap_used)]

// A test crate's root resolves `mod` beside itself, so the scenario files are named by path.
#[path = "conformance/advisories.rs"]
mod advisories;
#[path = "conformance/campaign_months.rs"]
mod campaign_months;
#[path = "conformance/campaigns.rs"]
mod campaigns;
#[path = "conformance/endpoints.rs"]
mod endpoints;
#[path = "conformance/enrollment.rs"]
mod enrollment;
#[path = "conformance/feeds.rs"]
mod feeds;
#[path = "conformance/meta.rs"]
mod meta;
#[path = "conformance/packages.rs"]
mod packages;
#[path = "conformance/property.rs"]
mod property;
#[path = "conformance/reports.rs"]
mod reports;
#[path = "conformance/sets.rs"]
mod sets;
#[path = "conformance/tick.rs"]
mod tick;

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use rollgate_core::member::MemberState;
use rollgate_store::SqlStore;
use rollgate_store::{
    EndpointRecord, NewSet, PackageRecord, ReportKindRecord, ReportRecord, SetRecord, Store, TickParams,
};

/// One backend under test: a fresh, empty store and whatever keeps it alive.
pub struct Backend {
    /// Printed before each scenario, so a failing run names its backend.
    pub name: &'static str,
    /// The store, empty when handed out.
    pub store: Arc<dyn Store>,
    /// Dropped after `store` (fields drop in order): the temp directory, a database to drop, ….
    _guard: Box<dyn std::any::Any + Send>,
}

impl Backend {
    /// Prints which scenario runs on which backend and returns the store.
    pub fn start(&self, scenario: &str) -> &dyn Store {
        println!("conformance: scenario `{scenario}` on backend `{}`", self.name);
        &*self.store
    }
}

/// Every backend to run the scenarios against, each a fresh, empty store.
///
/// Each call must return stores that share nothing with any other call: tests run in parallel.
pub async fn backends() -> Vec<Backend> {
    let mut all = vec![sqlite().await];
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => all.push(postgres(&url).await),
        _ => println!("conformance: PostgreSQL SKIPPED: DATABASE_URL is not set (CI sets it)"),
    }
    all
}

/// A fresh schema in the PostgreSQL database at `url`, dropped when the backend is dropped.
async fn postgres(url: &str) -> Backend {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let schema = format!(
        "rg_test_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        Timestamp::now().as_millisecond() % 1_000_000
    );
    let store = SqlStore::open_postgres(url, Some(&schema)).await.unwrap();
    Backend { name: "postgres", store: Arc::new(store), _guard: Box::new(DropSchema { url: url.to_string(), schema }) }
}

/// Drops a test schema. `Drop` cannot await, so it runs on a runtime of its own thread.
struct DropSchema {
    url: String,
    schema: String,
}

impl Drop for DropSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                use sqlx::Executor;
                if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                    let _ = pool.execute(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE").as_str()).await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

/// A fresh SQLite database file in its own temp directory.
async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open_sqlite(&dir.path().join("rollgate.db")).await.unwrap();
    Backend { name: "sqlite", store: Arc::new(store), _guard: Box::new(dir) }
}

/// An instant `secs` seconds after a fixed base (2027-01-15T08:00:00Z); never the clock.
pub fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

/// The product every set in this suite upgrades.
pub const PRODUCT: &str = "agent";
/// The version every set in this suite installs.
pub const TARGET: &str = "2.0.0";
/// The version endpoints upgrade from.
pub const FROM: &str = "1.0.0";
/// Scheduler settings for scenarios not about offline endpoints: a day, longer than any
/// scenario, so endpoints touched at `t(0)` stay online.
pub const PARAMS: TickParams = TickParams { offline_after_secs: 86_400, observing_since: jiff::Timestamp::UNIX_EPOCH };

/// A label or product map from pairs.
pub fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// An endpoint as it enrolls: never seen, nothing installed.
/// Inventory facts without os-release fields.
pub fn facts<'a>(
    hostname: &'a str,
    os: &'a str,
    labels: &'a BTreeMap<String, String>,
    products: &'a BTreeMap<String, String>,
) -> rollgate_store::EndpointFacts<'a> {
    rollgate_store::EndpointFacts { hostname, os, os_id: None, os_version: None, labels, products }
}

pub fn endpoint(id: &str) -> EndpointRecord {
    EndpointRecord {
        id: id.to_string(),
        hostname: format!("{id}.example.net"),
        os: "linux".to_string(),
        os_id: None,
        os_version: None,
        labels: map(&[("site", "hq")]),
        products: BTreeMap::new(),
        cert_fingerprint: format!("fp-{id}"),
        public_key_sha256: None,
        enrolled_at: t(0),
        last_seen: None,
    }
}

/// Enrolls `ids` through one token with exactly enough uses, at `t(0)`, without touching them.
pub async fn enroll_all(s: &dyn Store, ids: &[&str]) {
    let token = format!("token-for-{}", ids.join(","));
    s.create_enroll_token(&token, ids.len() as u32, t(1_000_000), t(0)).await.unwrap();
    for id in ids {
        s.enroll(&token, &endpoint(id), t(0)).await.unwrap();
    }
}

/// Enrolls `ids` and marks them seen at `t(0)`, so they are online under [`PARAMS`].
pub async fn online_endpoints(s: &dyn Store, ids: &[&str]) {
    enroll_all(s, ids).await;
    for id in ids {
        s.touch_endpoint(id, t(0)).await.unwrap();
    }
}

/// Sets what `id` has installed of [`PRODUCT`] (and marks it seen at `now`).
pub async fn install(s: &dyn Store, id: &str, version: &str, now: Timestamp) {
    let e = s.get_endpoint(id).await.unwrap();
    let products = map(&[(PRODUCT, version)]);
    s.update_inventory(id, &facts(&e.hostname, &e.os, &e.labels, &products), now).await.unwrap();
}

/// A package record with a SHA derived from its name.
pub fn package(product: &str, version: &str, created_at: Timestamp) -> PackageRecord {
    PackageRecord {
        product: product.to_string(),
        version: version.to_string(),
        module: "tarball".to_string(),
        sha256: format!("sha-{product}-{version}"),
        size: 4096,
        min_from: None,
        created_at,
    }
}

/// A set of [`PRODUCT`] [`TARGET`] with a 600 s stuck timeout and no start time or window.
pub fn new_set(name: &str, max_in_flight: u32) -> NewSet {
    NewSet {
        name: name.to_string(),
        product: PRODUCT.to_string(),
        version: TARGET.to_string(),
        selector: "site=hq".to_string(),
        max_in_flight,
        max_attempts: 3,
        start_at: None,
        window: None,
        seed: 7,
        backoff_secs: 30,
        stuck_timeout_secs: 600,
        step_timeout_secs: 300,
        watch_secs: 0,
    }
}

/// Members ranked in the order given.
pub fn ranked(ids: &[&str]) -> Vec<(String, u32)> {
    ids.iter().enumerate().map(|(i, id)| (id.to_string(), i as u32)).collect()
}

/// The usual fixture: the target package, `ids` enrolled and online, and an active set named
/// `name` over them in the order given, created at `t(0)`.
pub async fn fleet(s: &dyn Store, name: &str, max_in_flight: u32, ids: &[&str]) -> SetRecord {
    s.insert_package(&package(PRODUCT, TARGET, t(0))).await.unwrap();
    online_endpoints(s, ids).await;
    s.create_set(&new_set(name, max_in_flight), &ranked(ids), t(0)).await.unwrap()
}

/// Each member's endpoint and state, in rank order.
pub async fn states(s: &dyn Store, set_id: i64) -> Vec<(String, MemberState)> {
    s.set_members(set_id).await.unwrap().into_iter().map(|m| (m.endpoint_id, m.member.state)).collect()
}

/// `(id, state)` pairs from literals, to compare with [`states`].
pub fn expect(pairs: &[(&str, MemberState)]) -> Vec<(String, MemberState)> {
    pairs.iter().map(|(id, st)| (id.to_string(), *st)).collect()
}

/// The endpoints holding a slot in the set, in rank order.
pub async fn in_flight(s: &dyn Store, set_id: i64) -> Vec<String> {
    s.set_members(set_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.member.state == MemberState::InProgress)
        .map(|m| m.endpoint_id)
        .collect()
}

/// A report from [`FROM`] to [`TARGET`] with the agent's clock at `at`.
pub fn report(set_id: i64, attempt: u32, kind: ReportKindRecord, reason: Option<&str>, at: Timestamp) -> ReportRecord {
    ReportRecord {
        set_id,
        attempt,
        kind,
        reason: reason.map(str::to_string),
        from_version: Some(FROM.to_string()),
        to_version: TARGET.to_string(),
        at,
    }
}
