//! Issue 4: a check-in with nothing new must not touch the database. Desired state and ETags
//! are held in memory (`rollgate_server::hot`), and `last_seen` times are written in batches.
//!
//! The property is checked by counting: the router runs around a real `AppState` whose store is
//! a [`CountingStore`], a decorator that hands every call to a real SQLite [`SqlStore`] and counts
//! it by method name. Polls are then sent and the counts compared, so a handler that reads or
//! writes the database on a poll fails here with the name of the method it called.
//!
//! As in `tests/api.rs`, there is no TLS: an agent's verified client certificate is simulated by
//! the `PeerIdentity` request extension, with the fingerprint of a certificate really issued
//! through `POST /v1/enroll`.
//!
//! `Hot::run` writes `last_seen` every `FLUSH_EVERY` from its own task. While a test measures,
//! that task is stopped ([`Fixture::stop_background`]): then every store call observed came from
//! the requests themselves, and a flush happens only when the test asks for it. Whether the polls
//! asked for a reload is checked afterwards by starting the task again (see
//! [`Fixture::start_background_and_let_it_settle`]).

// Tests: an unwrap that panics is the failure report, and every input here is our own.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::{Body, Bytes};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{request, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use jiff::Timestamp;
use rollgate_core::member::{Applied, MemberState};
use rollgate_core::set::SetEvent;
use rollgate_pki::Ca;
use rollgate_server::bootstrap::secret_hash;
use rollgate_server::hot::Hot;
use rollgate_server::packages::PackageStore;
use rollgate_server::tls::{PeerCert, PeerIdentity};
use rollgate_server::{AppState, ServerConfig};
use rollgate_store::{
    AdvisoryFilter, AdvisoryRecord, AttemptRecord, CampaignRecord, CveRow, EndpointFacts, EndpointRecord, FeedFile,
    FeedRecord, FeedRun, KevRow, MemberRecord, MonthRow, NewSet, PackageRecord, PatchHealthRow, ReportRecord, Result,
    SetRecord, SoftwareChange, SqlStore, StepRunRow, Store, TickParams, TransitionRow,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tower::ServiceExt;

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Polls of each kind in the no-database test: enough that a per-poll query could not hide.
const POLLS: usize = 200;

// ---------------------------------------------------------------- the counting store

/// Calls per store method, by name.
type Counts = BTreeMap<&'static str, u64>;

/// A [`Store`] that counts every call by method name, then hands it to a real SQLite store.
struct CountingStore {
    inner: SqlStore,
    /// A watch rather than a plain mutex, so that a test can await a count instead of sleeping.
    calls: watch::Sender<Counts>,
    /// What each `touch_endpoints` call was given, in call order.
    touched: Mutex<Vec<Vec<(String, Timestamp)>>>,
}

impl CountingStore {
    fn new(inner: SqlStore) -> CountingStore {
        CountingStore { inner, calls: watch::channel(Counts::new()).0, touched: Mutex::new(Vec::new()) }
    }

    fn count(&self, method: &'static str) {
        // `send_modify` updates the value even when nobody is subscribed.
        self.calls.send_modify(|calls| *calls.entry(method).or_default() += 1);
    }

    /// The calls since the last reset.
    fn calls(&self) -> Counts {
        self.calls.borrow().clone()
    }

    fn reset(&self) {
        self.calls.send_modify(Counts::clear);
        self.touched.lock().unwrap().clear();
    }

    /// The batches given to `touch_endpoints` since the last reset.
    fn touched(&self) -> Vec<Vec<(String, Timestamp)>> {
        self.touched.lock().unwrap().clone()
    }

    /// Waits until `method` has been called at least `n` times since the last reset.
    async fn wait_for_calls(&self, method: &'static str, n: u64) {
        let mut calls = self.calls.subscribe();
        calls.wait_for(|calls| calls.get(method).copied().unwrap_or(0) >= n).await.unwrap();
    }
}

#[async_trait]
impl Store for CountingStore {
    async fn put_campaign(&self, name: &str, spec: &str, now: Timestamp) -> Result<bool> {
        self.count("put_campaign");
        self.inner.put_campaign(name, spec, now).await
    }

    async fn get_campaign(&self, name: &str) -> Result<CampaignRecord> {
        self.count("get_campaign");
        self.inner.get_campaign(name).await
    }

    async fn member_states(&self, set_id: i64) -> Result<Vec<(String, MemberState)>> {
        self.count("member_states");
        self.inner.member_states(set_id).await
    }

    async fn endpoints_last_seen(&self) -> Result<Vec<(String, Option<Timestamp>)>> {
        self.count("endpoints_last_seen");
        self.inner.endpoints_last_seen().await
    }

    async fn list_campaigns(&self) -> Result<Vec<CampaignRecord>> {
        self.count("list_campaigns");
        self.inner.list_campaigns().await
    }

    async fn create_month(&self, row: &MonthRow, first: &TransitionRow) -> Result<bool> {
        self.count("create_month");
        self.inner.create_month(row, first).await
    }

    async fn save_month(&self, row: &MonthRow, transitions: &[TransitionRow], now: Timestamp) -> Result<()> {
        self.count("save_month");
        self.inner.save_month(row, transitions, now).await
    }

    async fn campaign_months(&self, campaign: &str) -> Result<Vec<MonthRow>> {
        self.count("campaign_months");
        self.inner.campaign_months(campaign).await
    }

    async fn month_transitions(&self, campaign: &str, month: &str) -> Result<Vec<TransitionRow>> {
        self.count("month_transitions");
        self.inner.month_transitions(campaign, month).await
    }

    async fn start_step_run(&self, campaign: &str, month: &str, run: &StepRunRow) -> Result<bool> {
        self.count("start_step_run");
        self.inner.start_step_run(campaign, month, run).await
    }

    async fn step_runs(&self, campaign: &str, month: &str) -> Result<Vec<StepRunRow>> {
        self.count("step_runs");
        self.inner.step_runs(campaign, month).await
    }

    async fn create_campaign_set(
        &self,
        campaign: &str,
        month: &str,
        place: (u32, u32, u32),
        set: &NewSet,
        members: &[(String, u32)],
        now: Timestamp,
    ) -> Result<SetRecord> {
        self.count("create_campaign_set");
        self.inner.create_campaign_set(campaign, month, place, set, members, now).await
    }

    async fn record_patch_health(&self, health: &PatchHealthRow) -> Result<()> {
        self.count("record_patch_health");
        self.inner.record_patch_health(health).await
    }

    async fn patch_health(&self, set_ids: &[i64]) -> Result<Vec<PatchHealthRow>> {
        self.count("patch_health");
        self.inner.patch_health(set_ids).await
    }

    async fn get_set(&self, set_id: i64) -> Result<SetRecord> {
        self.count("get_set");
        self.inner.get_set(set_id).await
    }

    async fn create_feed(&self, feed: &FeedRecord) -> Result<()> {
        self.count("create_feed");
        self.inner.create_feed(feed).await
    }

    async fn list_feeds(&self) -> Result<Vec<FeedRecord>> {
        self.count("list_feeds");
        self.inner.list_feeds().await
    }

    async fn get_feed(&self, name: &str) -> Result<FeedRecord> {
        self.count("get_feed");
        self.inner.get_feed(name).await
    }

    async fn schedule_feed(&self, name: &str, at: Timestamp) -> Result<()> {
        self.count("schedule_feed");
        self.inner.schedule_feed(name, at).await
    }

    async fn feed_file(&self, feed: &str, url: &str) -> Result<Option<FeedFile>> {
        self.count("feed_file");
        self.inner.feed_file(feed, url).await
    }

    async fn put_feed_file(&self, feed: &str, url: &str, file: &FeedFile) -> Result<()> {
        self.count("put_feed_file");
        self.inner.put_feed_file(feed, url, file).await
    }

    async fn record_feed_run(&self, run: &FeedRun) -> Result<()> {
        self.count("record_feed_run");
        self.inner.record_feed_run(run).await
    }

    async fn feed_runs(&self, feed: &str, limit: u32) -> Result<Vec<FeedRun>> {
        self.count("feed_runs");
        self.inner.feed_runs(feed, limit).await
    }

    async fn import_advisory(&self, advisory: &AdvisoryRecord) -> Result<rollgate_core::revision::Outcome> {
        self.count("import_advisory");
        self.inner.import_advisory(advisory).await
    }

    async fn list_advisories(&self, filter: &AdvisoryFilter) -> Result<Vec<AdvisoryRecord>> {
        self.count("list_advisories");
        self.inner.list_advisories(filter).await
    }

    async fn advisories_by_id(&self, id: &str) -> Result<Vec<AdvisoryRecord>> {
        self.count("advisories_by_id");
        self.inner.advisories_by_id(id).await
    }

    async fn advisories_naming(&self, products: &[String]) -> Result<Vec<AdvisoryRecord>> {
        self.count("advisories_naming");
        self.inner.advisories_naming(products).await
    }

    async fn import_cve(&self, cve: &CveRow, now: Timestamp) -> Result<rollgate_core::revision::Outcome> {
        self.count("import_cve");
        self.inner.import_cve(cve, now).await
    }

    async fn record_kev(&self, cve: &str, kev: &KevRow, now: Timestamp) -> Result<bool> {
        self.count("record_kev");
        self.inner.record_kev(cve, kev, now).await
    }

    async fn cves(&self, ids: &[String]) -> Result<Vec<CveRow>> {
        self.count("cves");
        self.inner.cves(ids).await
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        self.count("get_meta");
        self.inner.get_meta(key).await
    }

    async fn put_meta(&self, key: &str, value: &str) -> Result<()> {
        self.count("put_meta");
        self.inner.put_meta(key, value).await
    }

    async fn insert_meta_if_absent(&self, key: &str, value: &str) -> Result<bool> {
        self.count("insert_meta_if_absent");
        self.inner.insert_meta_if_absent(key, value).await
    }

    async fn try_lease(&self, name: &str, holder: &str, now: Timestamp, ttl_ms: i64) -> Result<bool> {
        self.count("try_lease");
        self.inner.try_lease(name, holder, now, ttl_ms).await
    }

    async fn listen_changes(&self, on_change: Arc<dyn Fn() + Send + Sync>) -> Result<()> {
        self.count("listen_changes");
        self.inner.listen_changes(on_change).await
    }

    async fn create_enroll_token(
        &self,
        token_sha256: &str,
        uses: u32,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<()> {
        self.count("create_enroll_token");
        self.inner.create_enroll_token(token_sha256, uses, expires_at, now).await
    }

    async fn enroll(&self, token_sha256: &str, endpoint: &EndpointRecord, now: Timestamp) -> Result<()> {
        self.count("enroll");
        self.inner.enroll(token_sha256, endpoint, now).await
    }

    async fn enroll_batch(&self, endpoints: &[EndpointRecord]) -> Result<()> {
        self.count("enroll_batch");
        self.inner.enroll_batch(endpoints).await
    }

    async fn endpoint_by_public_key(&self, public_key_sha256: &str) -> Result<Option<String>> {
        self.count("endpoint_by_public_key");
        self.inner.endpoint_by_public_key(public_key_sha256).await
    }

    async fn reissue(
        &self,
        token_sha256: &str,
        endpoint_id: &str,
        cert_fingerprint: &str,
        now: Timestamp,
    ) -> Result<()> {
        self.count("reissue");
        self.inner.reissue(token_sha256, endpoint_id, cert_fingerprint, now).await
    }

    async fn get_endpoint(&self, id: &str) -> Result<EndpointRecord> {
        self.count("get_endpoint");
        self.inner.get_endpoint(id).await
    }

    async fn list_endpoints(&self) -> Result<Vec<EndpointRecord>> {
        self.count("list_endpoints");
        self.inner.list_endpoints().await
    }

    async fn update_inventory(&self, id: &str, facts: &EndpointFacts<'_>, now: Timestamp) -> Result<()> {
        self.count("update_inventory");
        self.inner.update_inventory(id, facts, now).await
    }

    async fn apply_software(&self, id: &str, change: &SoftwareChange<'_>) -> Result<bool> {
        self.count("apply_software");
        self.inner.apply_software(id, change).await
    }

    async fn endpoint_software(&self, id: &str) -> Result<BTreeMap<String, String>> {
        self.count("endpoint_software");
        self.inner.endpoint_software(id).await
    }

    async fn software_named(&self, names: &[String]) -> Result<Vec<(String, String, String)>> {
        self.count("software_named");
        self.inner.software_named(names).await
    }

    async fn touch_endpoints(&self, seen: &[(String, Timestamp)]) -> Result<()> {
        self.count("touch_endpoints");
        self.touched.lock().unwrap().push(seen.to_vec());
        self.inner.touch_endpoints(seen).await
    }

    async fn in_flight_assignments(&self) -> Result<Vec<(String, SetRecord, PackageRecord)>> {
        self.count("in_flight_assignments");
        self.inner.in_flight_assignments().await
    }

    async fn touch_endpoint(&self, id: &str, now: Timestamp) -> Result<()> {
        self.count("touch_endpoint");
        self.inner.touch_endpoint(id, now).await
    }

    async fn insert_package(&self, package: &PackageRecord) -> Result<()> {
        self.count("insert_package");
        self.inner.insert_package(package).await
    }

    async fn get_package(&self, product: &str, version: &str) -> Result<PackageRecord> {
        self.count("get_package");
        self.inner.get_package(product, version).await
    }

    async fn package_sha_exists(&self, sha256: &str) -> Result<bool> {
        self.count("package_sha_exists");
        self.inner.package_sha_exists(sha256).await
    }

    async fn list_packages(&self) -> Result<Vec<PackageRecord>> {
        self.count("list_packages");
        self.inner.list_packages().await
    }

    async fn create_set(&self, set: &NewSet, members: &[(String, u32)], now: Timestamp) -> Result<SetRecord> {
        self.count("create_set");
        self.inner.create_set(set, members, now).await
    }

    async fn get_set_by_name(&self, name: &str) -> Result<SetRecord> {
        self.count("get_set_by_name");
        self.inner.get_set_by_name(name).await
    }

    async fn list_sets(&self) -> Result<Vec<SetRecord>> {
        self.count("list_sets");
        self.inner.list_sets().await
    }

    async fn live_set_ids(&self) -> Result<Vec<i64>> {
        self.count("live_set_ids");
        self.inner.live_set_ids().await
    }

    async fn set_members(&self, set_id: i64) -> Result<Vec<MemberRecord>> {
        self.count("set_members");
        self.inner.set_members(set_id).await
    }

    async fn change_set_state(&self, name: &str, event: SetEvent, reason: &str, now: Timestamp) -> Result<SetRecord> {
        self.count("change_set_state");
        self.inner.change_set_state(name, event, reason, now).await
    }

    async fn tick_set(&self, set_id: i64, params: TickParams, now: Timestamp) -> Result<bool> {
        self.count("tick_set");
        self.inner.tick_set(set_id, params, now).await
    }

    async fn record_report(&self, endpoint_id: &str, report: &ReportRecord, now: Timestamp) -> Result<Applied> {
        self.count("record_report");
        self.inner.record_report(endpoint_id, report, now).await
    }

    async fn assignment_for(&self, endpoint_id: &str) -> Result<Option<(SetRecord, PackageRecord)>> {
        self.count("assignment_for");
        self.inner.assignment_for(endpoint_id).await
    }

    async fn history(&self, endpoint_id: &str) -> Result<Vec<AttemptRecord>> {
        self.count("history");
        self.inner.history(endpoint_id).await
    }
}

// ---------------------------------------------------------------- harness

/// The router around a real state whose store counts its calls.
struct Fixture {
    _dir: tempfile::TempDir,
    state: AppState,
    app: Router,
    store: Arc<CountingStore>,
    /// The task running `Hot::run`, while it runs.
    background: Option<JoinHandle<()>>,
}

/// An enrolled endpoint, as its client certificate identifies it.
struct Agent {
    id: String,
    fingerprint: String,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::Builder::new().prefix("rollgate-hot-").tempdir().unwrap();
        let store = Arc::new(CountingStore::new(SqlStore::open_sqlite(&dir.path().join("rollgate.db")).await.unwrap()));
        let config = ServerConfig::new(dir.path().to_path_buf(), "127.0.0.1:0".parse().unwrap());
        let tuf = rollgate_server::tuf::Tuf::open(&config.tuf_dir(), None).unwrap();
        let dyn_store: Arc<dyn Store> = store.clone();
        let hot = Hot::load(dyn_store.clone()).await.unwrap();
        let background = Some(tokio::spawn(hot.clone().run()));
        let state = AppState {
            store: dyn_store,
            ca: Arc::new(Ca::generate("Rollgate hot-path test CA").unwrap()),
            admin_token_sha256: secret_hash(ADMIN_TOKEN).into(),
            packages: Arc::new(PackageStore::open(&dir.path().join("packages")).unwrap()),
            config: Arc::new(config),
            hot,
            wake_scheduler: Arc::new(Notify::new()),
            replica_id: "hot-path-test".into(),
            tuf: Arc::new(tuf),
            notifier: rollgate_server::notify::Notifier::new(None).unwrap(),
            campaigns: Default::default(),
        };
        let app = rollgate_server::api::router(state.clone());
        Fixture { _dir: dir, state, app, store, background }
    }

    /// Stops the task that reloads assignments and flushes `last_seen`, and waits until it has
    /// stopped: from then on, every store call comes from a request or from the test.
    async fn stop_background(&mut self) {
        let task = self.background.take().expect("the background task runs");
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
    }

    /// Starts the background task again and waits for two of its flushes (the first at once,
    /// the second `FLUSH_EVERY` later). Its loop handles one event at a time, so a reload asked
    /// for while it was stopped has been done (and counted) before the second flush begins.
    async fn start_background_and_let_it_settle(&mut self, agent: &Agent) {
        assert!(self.background.is_none());
        let flushes_before = self.store.calls().get("touch_endpoints").copied().unwrap_or(0);
        // A last-seen time to write before each flush, so that the flushes reach the store even
        // if `Hot` stops calling it with nothing to write.
        self.state.hot.seen(&agent.id, Timestamp::now());
        self.background = Some(tokio::spawn(self.state.hot.clone().run()));
        self.wait_for_flushes(flushes_before + 1).await;
        self.state.hot.seen(&agent.id, Timestamp::now());
        self.wait_for_flushes(flushes_before + 2).await;
    }

    async fn wait_for_flushes(&self, n: u64) {
        tokio::time::timeout(Duration::from_secs(10), self.store.wait_for_calls("touch_endpoints", n))
            .await
            .unwrap_or_else(|_| panic!("the background task did not flush last-seen times {n} times in 10 s"));
    }

    /// Sends one request and returns the raw answer.
    async fn call(&self, req: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
        let response = self.app.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024).await.unwrap();
        (status, headers, body)
    }

    /// Sends one request that must succeed with `status`; returns the JSON answer.
    async fn ok(&self, req: Request<Body>, status: StatusCode) -> Value {
        let what = format!("{} {}", req.method(), req.uri());
        let (got, _, body) = self.call(req).await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(got, status, "{what}: {text}");
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{what}: answer is not JSON ({e}): {text}"))
    }

    /// Enrolls an endpoint through `POST /v1/enroll` with a fresh token.
    async fn enroll(&self, hostname: &str) -> Agent {
        let token = self
            .ok(
                json_req(admin(Method::POST, "/v1/enroll-tokens"), &json!({"uses": 1, "ttl_secs": 600})),
                StatusCode::OK,
            )
            .await;
        let (_key, csr_pem) = rollgate_pki::new_client_key_and_csr(hostname).unwrap();
        let req = json!({"token": token["token"], "csr_pem": csr_pem, "hostname": hostname, "os": "Linux test", "labels": {}});
        let body = self.ok(json_req(anonymous(Method::POST, "/v1/enroll"), &req), StatusCode::OK).await;
        let der = rollgate_pki::certs_from_pem(body["cert_pem"].as_str().unwrap()).unwrap();
        Agent {
            id: body["endpoint_id"].as_str().unwrap().to_string(),
            fingerprint: rollgate_pki::fingerprint_sha256(&der[0]),
        }
    }

    /// One enrolled endpoint, the package `app@2.0` and an active set `s1` over everything,
    /// releasing one endpoint at a time and not yet ticked. Returns the set's id.
    async fn one_endpoint_one_set(&self) -> (Agent, i64) {
        let agent = self.enroll("web-1").await;
        let bytes = b"package bytes of app 2.0";
        let req = admin(Method::PUT, "/v1/packages/app/2.0")
            .header("x-rollgate-sha256", hex::encode(Sha256::digest(bytes)))
            .body(Body::from(bytes.to_vec()))
            .unwrap();
        self.ok(req, StatusCode::CREATED).await;
        let set = json!({"name": "s1", "product": "app", "version": "2.0", "target": "all", "max_in_flight": 1, "max_attempts": 3, "seed": 7});
        let set = self.ok(json_req(admin(Method::POST, "/v1/sets"), &set), StatusCode::CREATED).await;
        (agent, set["id"].as_i64().unwrap())
    }

    /// One scheduler tick for one set, as the scheduler loop runs it, without the announcement.
    async fn tick_only(&self, set_id: i64) -> bool {
        // Watching since long ago: nothing here depends on stuck timeouts.
        let params = TickParams {
            offline_after_secs: self.state.config.offline_after_secs,
            observing_since: Timestamp::UNIX_EPOCH,
        };
        self.state.store.tick_set(set_id, params, Timestamp::now()).await.unwrap()
    }

    /// A tick, then waits until agents see its result.
    async fn tick(&self, set_id: i64) -> bool {
        let changed = self.tick_only(set_id).await;
        self.state.hot.reloaded().await;
        changed
    }

    /// `GET /v1/agent/work` as `agent`, without waiting and without an ETag: the answer and
    /// its ETag.
    async fn work(&self, agent: &Agent) -> (Value, String) {
        let (status, headers, body) = self.call(poll(agent, "", None)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let etag = headers.get(ETAG).expect("work answers carry an ETag").to_str().unwrap().to_string();
        (serde_json::from_slice(&body).unwrap(), etag)
    }

    /// Posts one report as `agent`; it must be accepted.
    async fn report(&self, agent: &Agent, set_id: i64, kind: &str) {
        let body = json!({"set_id": set_id, "attempt": 1, "kind": kind, "from_version": "1.0", "to_version": "2.0", "at": "2026-01-05T10:00:00Z"});
        let ack = self.ok(json_req(as_agent(agent, Method::POST, "/v1/agent/reports"), &body), StatusCode::OK).await;
        assert_eq!(ack, json!({"accepted": true}), "{kind}");
    }

    async fn last_seen(&self, agent: &Agent) -> Timestamp {
        self.state.store.get_endpoint(&agent.id).await.unwrap().last_seen.expect("enrollment sets last_seen")
    }
}

// ---------------------------------------------------------------- requests

/// A request with the admin token.
fn admin(method: Method, uri: &str) -> request::Builder {
    anonymous(method, uri).header(AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
}

/// A request with no credential at all.
fn anonymous(method: Method, uri: &str) -> request::Builder {
    Request::builder().method(method).uri(uri)
}

/// A request over a connection that presented `agent`'s certificate: what the TLS accept loop
/// would attach.
fn as_agent(agent: &Agent, method: Method, uri: &str) -> request::Builder {
    let peer = PeerCert { endpoint_id: agent.id.clone(), fingerprint: agent.fingerprint.clone() };
    anonymous(method, uri).extension(PeerIdentity(Some(peer)))
}

fn json_req(builder: request::Builder, value: &Value) -> Request<Body> {
    builder.header(CONTENT_TYPE, "application/json").body(Body::from(value.to_string())).unwrap()
}

/// `GET /v1/agent/work{query}` as `agent`, with `If-None-Match: known` if given.
fn poll(agent: &Agent, query: &str, known: Option<&str>) -> Request<Body> {
    let mut builder = as_agent(agent, Method::GET, &format!("/v1/agent/work{query}"));
    if let Some(etag) = known {
        builder = builder.header(IF_NONE_MATCH, etag);
    }
    builder.body(Body::empty()).unwrap()
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn polls_with_nothing_new_touch_no_database_and_last_seen_is_written_in_one_batch() {
    let mut fx = Fixture::new().await;
    let (agent, set_id) = fx.one_endpoint_one_set().await;
    assert!(fx.tick(set_id).await, "the tick releases the only endpoint");
    // The first request of a known endpoint reads its certificate fingerprint, once.
    let (work, etag) = fx.work(&agent).await;
    assert_eq!(work["assignment"]["set_name"], "s1", "{work}");

    fx.stop_background().await;
    let seen_before = fx.last_seen(&agent).await;
    fx.store.reset();

    // (1) Nothing new: 304 at once.
    for i in 0..POLLS {
        let (status, headers, body) = fx.call(poll(&agent, "?wait=0", Some(&etag))).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "poll {i}: {}", String::from_utf8_lossy(&body));
        assert_eq!(headers[ETAG], etag.as_str(), "poll {i}");
        assert!(body.is_empty(), "poll {i}");
    }
    // (2) An agent that does not know its work yet (restarted, lost its state): the work itself.
    for i in 0..POLLS {
        let (status, headers, body) = fx.call(poll(&agent, "", None)).await;
        assert_eq!(status, StatusCode::OK, "poll {i}: {}", String::from_utf8_lossy(&body));
        assert_eq!(headers[ETAG], etag.as_str(), "poll {i}");
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), work, "poll {i}");
    }
    assert_eq!(fx.store.calls(), Counts::new(), "{} polls called the store", 2 * POLLS);

    // The last-seen times the polls noted: one write for all of them, when the flush comes.
    fx.state.hot.flush().await.unwrap();
    assert_eq!(fx.store.calls(), Counts::from([("touch_endpoints", 1)]));
    let batches = fx.store.touched();
    assert_eq!(batches.len(), 1);
    let [(id, at)] = &batches[0][..] else { panic!("one row per endpoint, not one per poll: {:?}", batches[0]) };
    assert_eq!(id, &agent.id);
    let seen_after = fx.last_seen(&agent).await;
    assert!(seen_after > seen_before, "last_seen did not advance: {seen_before} then {seen_after}");
    assert_eq!(seen_after, *at, "last_seen is the time of the latest poll");

    // Nor did any poll ask for a reload of the assignments: that would show once the
    // background task runs again.
    fx.store.reset();
    fx.start_background_and_let_it_settle(&agent).await;
    let calls = fx.store.calls();
    assert_eq!(calls.get("in_flight_assignments"), None, "the polls asked for a reload: {calls:?}");
}

#[tokio::test]
async fn a_final_report_removes_the_assignment_at_once_without_waiting_for_a_reload() {
    let mut fx = Fixture::new().await;
    let (agent, set_id) = fx.one_endpoint_one_set().await;
    assert!(fx.tick(set_id).await);
    let (work, etag) = fx.work(&agent).await;
    assert_eq!(work["assignment"]["set_id"], set_id, "{work}");
    fx.report(&agent, set_id, "attempt_started").await;
    fx.state.hot.reloaded().await;
    assert_eq!(fx.work(&agent).await, (work, etag.clone()), "a started attempt keeps its assignment");

    // With the background task stopped no reload can happen: only the report itself can take
    // the assignment away.
    fx.stop_background().await;
    fx.store.reset();
    fx.report(&agent, set_id, "succeeded").await;
    let (status, headers, body) = fx.call(poll(&agent, "?wait=0", Some(&etag))).await;
    assert_eq!(status, StatusCode::OK, "the old assignment is no longer current");
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), json!({"assignment": null}));
    let null_etag = headers[ETAG].to_str().unwrap().to_string();
    assert_ne!(null_etag, etag);
    let calls = fx.store.calls();
    assert_eq!(calls.get("in_flight_assignments"), None, "the report waited for a reload: {calls:?}");

    // The database agrees, and so does the next reload.
    assert!(fx.state.store.assignment_for(&agent.id).await.unwrap().is_none());
    fx.start_background_and_let_it_settle(&agent).await;
    fx.state.hot.reloaded().await;
    assert_eq!(fx.work(&agent).await, (json!({"assignment": null}), null_etag));
}

#[tokio::test]
async fn a_held_poll_answers_with_the_new_assignment_as_soon_as_the_scheduler_announces_it() {
    let fx = Fixture::new().await;
    let (agent, set_id) = fx.one_endpoint_one_set().await;
    let (work, etag) = fx.work(&agent).await;
    assert_eq!(work, json!({"assignment": null}), "not released yet");
    // Let every reload asked for so far (creating the set asks for one) be done, so that only
    // the announcement below can end the poll.
    fx.state.hot.reloaded().await;

    // Every last-seen time noted so far is written now, so that the next one written is the
    // held poll's own: the sign that it has started.
    fx.state.hot.flush().await.unwrap();
    fx.store.reset();

    let held = tokio::spawn(fx.app.clone().oneshot(poll(&agent, "?wait=5", Some(&etag))));
    // The test runs on one thread: yielding lets the poll run until it waits.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    fx.state.hot.flush().await.unwrap();
    let touched = fx.store.touched();
    assert!(touched.iter().flatten().any(|(id, _)| *id == agent.id), "the held poll has not started: {touched:?}");
    assert!(!held.is_finished(), "a poll with the current ETag is held");

    // The scheduler's path: a tick that changed something, then the announcement.
    assert!(fx.tick_only(set_id).await);
    fx.state.announce_change();
    let response = tokio::time::timeout(Duration::from_secs(4), held)
        .await
        .expect("the announcement, not the 5 s wait, ends the poll")
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let new_etag = response.headers()[ETAG].to_str().unwrap().to_string();
    assert_ne!(new_etag, etag);
    let body: Value =
        serde_json::from_slice(&axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap()).unwrap();
    assert_eq!(body["assignment"]["set_id"], set_id, "{body}");
    assert_eq!(body["assignment"]["set_name"], "s1", "{body}");
    assert_eq!(fx.work(&agent).await, (body, new_etag), "the held poll answered what a fresh poll answers");
}
