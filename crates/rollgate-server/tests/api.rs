//! API-level tests of `rollgate_server::api::router`: bad input on every route gets a clear
//! error (status and stable `error.code`) and changes nothing, plus one happy path.
//!
//! The router is driven in memory with `tower::ServiceExt::oneshot` around a real `AppState`: a
//! SQLite store and a package store in a temporary directory and a freshly generated CA. There
//! is no TLS here (the end-to-end tests in `crates/rollgate` cover it); an agent's verified
//! client certificate is simulated by inserting the `PeerIdentity` request extension that the
//! TLS accept loop would insert, with the fingerprint of a certificate really issued through
//! `POST /v1/enroll`.
//!
//! Every refusal, including those axum's extractors and router make before a handler runs
//! (a query string or path parameter that does not deserialize, a wrong method, a JSON body
//! over 2 MiB), is checked through [`Api::fails`]: the status, a JSON body and its stable code.
//!
//! "Changes nothing" is checked with a [`Snapshot`]: the management API's lists of endpoints,
//! sets (with their members) and packages, plus the files under `packages/sha256` and
//! `packages/tmp`, taken before and after the bad requests.

// Tests: an unwrap that panics is the failure report, and every input here is our own.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::header::{AUTHORIZATION, CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_NONE_MATCH, RANGE};
use axum::http::{request, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use jiff::{SignedDuration, Timestamp};
use rollgate_pki::Ca;
use rollgate_server::bootstrap::secret_hash;
use rollgate_server::packages::PackageStore;
use rollgate_server::tls::{PeerCert, PeerIdentity};
use rollgate_server::{AppState, ServerConfig};
use rollgate_store::{SqlStore, TickParams};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tower::ServiceExt;

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Package size limit of the usual harness: far above anything uploaded here.
const DEFAULT_LIMIT_BYTES: u64 = 1024 * 1024;

// ---------------------------------------------------------------- harness

/// The router around a real state in its own temporary directory.
struct Api {
    dir: tempfile::TempDir,
    state: AppState,
    app: Router,
}

/// An enrolled endpoint, as its client certificate identifies it.
#[derive(Clone, Debug)]
struct Agent {
    id: String,
    fingerprint: String,
}

impl Agent {
    /// What the TLS layer would attach for a connection presenting this agent's certificate.
    fn peer(&self) -> PeerIdentity {
        PeerIdentity(Some(PeerCert { endpoint_id: self.id.clone(), fingerprint: self.fingerprint.clone() }))
    }
}

/// Everything observable that a bad request must leave alone.
#[derive(Debug, PartialEq)]
struct Snapshot {
    endpoints: Value,
    sets: Value,
    packages: Value,
    files: Vec<String>,
}

impl Api {
    async fn new() -> Api {
        Api::with_limit(DEFAULT_LIMIT_BYTES).await
    }

    async fn with_limit(max_package_bytes: u64) -> Api {
        let dir = tempfile::Builder::new().prefix("rollgate-api-").tempdir().unwrap();
        let store = SqlStore::open_sqlite(&dir.path().join("rollgate.db")).await.unwrap();
        let mut config = ServerConfig::new(dir.path().to_path_buf(), "127.0.0.1:0".parse().unwrap());
        config.max_package_bytes = max_package_bytes;
        // TUF keys as an operator would make them; the server gets only the online ones.
        let keys = rollgate_tuf::keys::init(&dir.path().join("operator"), 1, 1, jiff::Timestamp::now()).await.unwrap();
        config.tuf_online_keys = Some((keys.snapshot_key.clone(), keys.timestamp_key.clone()));
        let tuf = rollgate_server::tuf::Tuf::open(&config.tuf_dir(), config.tuf_online_keys.clone()).unwrap();
        let store: Arc<dyn rollgate_store::Store> = Arc::new(store);
        let hot = rollgate_server::hot::Hot::load(store.clone()).await.unwrap();
        tokio::spawn(hot.clone().run());
        let state = AppState {
            store,
            ca: Arc::new(Ca::generate("Rollgate API test CA").unwrap()),
            admin_token_sha256: secret_hash(ADMIN_TOKEN).into(),
            packages: Arc::new(PackageStore::open(&dir.path().join("packages")).unwrap()),
            config: Arc::new(config),
            hot,
            wake_scheduler: Arc::new(Notify::new()),
            replica_id: "api-test".into(),
            tuf: Arc::new(tuf),
            notifier: rollgate_server::notify::Notifier::new(None).unwrap(),
            campaigns: Default::default(),
        };
        let app = rollgate_server::api::router(state.clone());
        Api { dir, state, app }
    }

    fn packages_dir(&self) -> PathBuf {
        self.dir.path().join("packages")
    }

    /// Sends one request and returns the raw answer.
    async fn call_raw(&self, req: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
        let response = self.app.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024 * 1024).await.unwrap();
        (status, headers, body)
    }

    /// Sends one request and parses the answer as JSON (`Null` for an empty body).
    async fn call(&self, req: Request<Body>) -> (StatusCode, Value) {
        let (status, _, body) = self.call_raw(req).await;
        if body.is_empty() {
            return (status, Value::Null);
        }
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("answer ({status}) is not JSON: {e}: {}", String::from_utf8_lossy(&body)));
        (status, value)
    }

    /// Sends one request that must succeed with `status`; returns the JSON answer.
    async fn ok(&self, req: Request<Body>, status: StatusCode) -> Value {
        let what = format!("{} {}", req.method(), req.uri());
        let (got, body) = self.call(req).await;
        assert_eq!(got, status, "{what}: {body}");
        body
    }

    /// Sends one request that must fail with `status` and the stable `code` in a JSON error
    /// body; returns the message.
    async fn fails(&self, req: Request<Body>, status: StatusCode, code: &str) -> String {
        let what = format!("{} {}", req.method(), req.uri());
        let (got, headers, body) = self.call_raw(req).await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(got, status, "{what}: {text}");
        let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(
            content_type.starts_with("application/json"),
            "{what}: error body is `{content_type}`, not JSON: {text}"
        );
        let value: Value =
            serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e}): {text}"));
        assert_eq!(value["error"]["code"], code, "{what}: {value}");
        let message = value["error"]["message"].as_str().unwrap_or_else(|| panic!("{what}: no message: {value}"));
        assert!(!message.trim().is_empty(), "{what}: empty message");
        message.to_string()
    }

    /// The management API's view of everything, and the package files on disk.
    async fn snapshot(&self) -> Snapshot {
        let endpoints = self.ok(empty(admin(Method::GET, "/v1/endpoints")), StatusCode::OK).await;
        let sets = self.ok(empty(admin(Method::GET, "/v1/sets")), StatusCode::OK).await;
        let packages = self.ok(empty(admin(Method::GET, "/v1/packages")), StatusCode::OK).await;
        let mut files = Vec::new();
        for sub in ["sha256", "tmp"] {
            files.extend(files_in(&self.packages_dir().join(sub)).into_iter().map(|f| format!("{sub}/{f}")));
        }
        Snapshot { endpoints, sets, packages, files }
    }

    /// Creates an enrollment token through the API.
    async fn create_token(&self, uses: u32, ttl_secs: u64) -> String {
        let req = json_req(admin(Method::POST, "/v1/enroll-tokens"), &json!({"uses": uses, "ttl_secs": ttl_secs}));
        let body = self.ok(req, StatusCode::OK).await;
        body["token"].as_str().unwrap().to_string()
    }

    /// A valid enrollment request with a fresh token and a real CSR.
    async fn enroll_request(&self, hostname: &str, labels: Value) -> Value {
        let token = self.create_token(1, 600).await;
        let (_key, csr_pem) = rollgate_pki::new_client_key_and_csr(hostname).unwrap();
        json!({"token": token, "csr_pem": csr_pem, "hostname": hostname, "os": "Linux test", "labels": labels})
    }

    /// Enrolls an endpoint through `POST /v1/enroll` and returns its identity.
    async fn enroll(&self, hostname: &str, labels: Value) -> Agent {
        let req = self.enroll_request(hostname, labels).await;
        let body = self.ok(json_req(anonymous(Method::POST, "/v1/enroll"), &req), StatusCode::OK).await;
        agent_from_enrollment(&body)
    }

    /// Uploads a package through the API; it must be accepted.
    async fn upload(&self, product: &str, version: &str, bytes: &[u8]) -> Value {
        let req = admin(Method::PUT, &format!("/v1/packages/{product}/{version}"))
            .header("x-rollgate-sha256", sha256_hex(bytes))
            .body(Body::from(bytes.to_vec()))
            .unwrap();
        self.ok(req, StatusCode::CREATED).await
    }

    /// Creates a set through the API; it must be accepted.
    async fn create_set(&self, body: &Value) -> Value {
        self.ok(json_req(admin(Method::POST, "/v1/sets"), body), StatusCode::CREATED).await
    }

    async fn show_set(&self, name: &str) -> Value {
        self.ok(empty(admin(Method::GET, &format!("/v1/sets/{name}"))), StatusCode::OK).await
    }

    /// One scheduler tick for one set, as the scheduler loop would run it.
    async fn tick(&self, set_id: i64) -> bool {
        let params = TickParams {
            offline_after_secs: self.state.config.offline_after_secs,
            observing_since: jiff::Timestamp::UNIX_EPOCH,
        };
        let changed = self.state.store.tick_set(set_id, params, Timestamp::now()).await.unwrap();
        // As the scheduler does: announce, and agents see the change once it is reloaded.
        self.state.hot.reloaded().await;
        changed
    }

    /// `GET /v1/agent/work` as `agent`, without waiting: the answer and its ETag.
    async fn work(&self, agent: &Agent) -> (Value, String) {
        let (status, headers, body) = self.call_raw(empty(as_agent(agent, Method::GET, "/v1/agent/work"))).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let etag = headers.get(ETAG).expect("work answers carry an ETag").to_str().unwrap().to_string();
        (serde_json::from_slice(&body).unwrap(), etag)
    }
}

fn agent_from_enrollment(body: &Value) -> Agent {
    let cert_pem = body["cert_pem"].as_str().unwrap();
    let der = rollgate_pki::certs_from_pem(cert_pem).unwrap();
    Agent {
        id: body["endpoint_id"].as_str().unwrap().to_string(),
        fingerprint: rollgate_pki::fingerprint_sha256(&der[0]),
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
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

/// A request over a connection that presented `agent`'s certificate.
fn as_agent(agent: &Agent, method: Method, uri: &str) -> request::Builder {
    anonymous(method, uri).extension(agent.peer())
}

fn empty(builder: request::Builder) -> Request<Body> {
    builder.body(Body::empty()).unwrap()
}

fn json_req(builder: request::Builder, value: &Value) -> Request<Body> {
    raw_json(builder, &value.to_string())
}

fn raw_json(builder: request::Builder, text: &str) -> Request<Body> {
    builder.header(CONTENT_TYPE, "application/json").body(Body::from(text.to_string())).unwrap()
}

/// `base` with the fields of `patch` replaced (a `null` in `patch` removes the field).
fn with(base: &Value, patch: Value) -> Value {
    let mut out = base.clone();
    let (Value::Object(out_map), Value::Object(patch)) = (&mut out, patch) else { panic!("objects only") };
    for (k, v) in patch {
        if v.is_null() {
            out_map.remove(&k);
        } else {
            out_map.insert(k, v);
        }
    }
    out
}

/// A set over `target` for the package `app@2.0`, releasing one endpoint at a time.
fn set_body(name: &str, target: &str) -> Value {
    json!({"name": name, "product": "app", "version": "2.0", "target": target, "max_in_flight": 1, "max_attempts": 3, "seed": 7})
}

fn report_body(set_id: i64, attempt: u32, kind: &str) -> Value {
    json!({"set_id": set_id, "attempt": attempt, "kind": kind, "from_version": "1.0", "to_version": "2.0", "at": "2026-01-05T10:00:00Z"})
}

fn inventory_body() -> Value {
    json!({"hostname": "web-1", "os": "Linux test", "labels": {"site": "berlin"}, "products": {"app": "1.0"}})
}

/// A fleet of one endpoint, the package `app@2.0` and an active set `s1` over it that has not
/// yet released anybody.
async fn one_endpoint_one_set() -> (Api, Agent, Value) {
    let api = Api::new().await;
    let agent = api.enroll("web-1", json!({"site": "berlin"})).await;
    api.upload("app", "2.0", b"package bytes of app 2.0").await;
    let set = api.create_set(&set_body("s1", "all")).await;
    (api, agent, set)
}

// ---------------------------------------------------------------- management credentials

/// Every management route, with a body that would succeed with the right token.
fn management_routes(agent: &Agent) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::POST, "/v1/enroll-tokens".into(), Some(json!({"uses": 1, "ttl_secs": 60}))),
        (Method::GET, "/v1/packages".into(), None),
        (Method::PUT, "/v1/packages/app/3.0".into(), None),
        (Method::GET, "/v1/sets".into(), None),
        (Method::POST, "/v1/sets".into(), Some(set_body("s2", "all"))),
        (Method::GET, "/v1/sets/s1".into(), None),
        (Method::POST, "/v1/sets/s1/pause".into(), None),
        (Method::POST, "/v1/sets/s1/cancel".into(), None),
        (Method::GET, "/v1/endpoints".into(), None),
        (Method::GET, format!("/v1/endpoints/{}", agent.id), None),
    ]
}

fn management_request(builder: request::Builder, method: &Method, body: &Option<Value>) -> Request<Body> {
    match (method, body) {
        (_, Some(value)) => json_req(builder, value),
        // The upload route reads raw bytes: send some, so that a missing check would store them.
        (&Method::PUT, None) => builder.body(Body::from("bytes that must not be stored")).unwrap(),
        _ => empty(builder),
    }
}

#[tokio::test]
async fn management_routes_refuse_a_missing_or_wrong_admin_token() {
    let (api, agent, _) = one_endpoint_one_set().await;
    let before = api.snapshot().await;
    let wrong_hash_of_right_token = secret_hash(ADMIN_TOKEN);
    let bad_credentials: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("wrong token", Some("Bearer not-the-admin-token".into())),
        ("empty bearer", Some("Bearer ".into())),
        ("wrong scheme", Some(format!("Basic {ADMIN_TOKEN}"))),
        ("bare token", Some(ADMIN_TOKEN.into())),
        ("the stored hash instead of the token", Some(format!("Bearer {wrong_hash_of_right_token}"))),
    ];
    for (method, uri, body) in management_routes(&agent) {
        for (what, header) in &bad_credentials {
            let mut builder = anonymous(method.clone(), &uri);
            if let Some(h) = header {
                builder = builder.header(AUTHORIZATION, h);
            }
            let message =
                api.fails(management_request(builder, &method, &body), StatusCode::UNAUTHORIZED, "unauthorized").await;
            assert!(message.contains("token"), "{method} {uri} with {what}: {message}");
        }
        // A verified agent certificate is no admin credential either.
        let builder = as_agent(&agent, method.clone(), &uri);
        api.fails(management_request(builder, &method, &body), StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    assert_eq!(api.snapshot().await, before);
    assert_eq!(api.show_set("s1").await["state"], "active");

    // The control: the same requests with the token succeed, so the refusals above were about
    // the credential alone.
    for (method, uri, body) in management_routes(&agent) {
        let (status, answer) = api.call(management_request(admin(method.clone(), &uri), &method, &body)).await;
        assert!(status.is_success(), "{method} {uri}: {status} {answer}");
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_and_no_other_scheme_is_accepted() {
    let api = Api::new().await;
    // RFC 9110: the scheme is case-insensitive; the token is not.
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let req = anonymous(Method::GET, "/v1/packages").header(AUTHORIZATION, format!("{scheme} {ADMIN_TOKEN}"));
        assert_eq!(api.ok(empty(req), StatusCode::OK).await, json!([]), "{scheme}");
    }
    let before = api.snapshot().await;
    let refused = [
        format!("Basic {ADMIN_TOKEN}"),
        format!("basic {ADMIN_TOKEN}"),
        format!("Token {ADMIN_TOKEN}"),
        format!("Bearer{ADMIN_TOKEN}"),
        format!("bearer {}", ADMIN_TOKEN.to_uppercase()),
    ];
    for header in refused {
        let builder = anonymous(Method::POST, "/v1/enroll-tokens").header(AUTHORIZATION, &header);
        let req = json_req(builder, &json!({"uses": 1, "ttl_secs": 60}));
        let message = api.fails(req, StatusCode::UNAUTHORIZED, "unauthorized").await;
        assert!(message.contains("token"), "{header}: {message}");
    }
    assert_eq!(api.snapshot().await, before);
}

// ---------------------------------------------------------------- JSON bodies

/// One JSON route: how to address it and a body it accepts.
struct JsonRoute {
    name: &'static str,
    method: Method,
    uri: &'static str,
    agent: bool,
    valid: Value,
    /// A field and a value of the wrong type for it.
    wrong_type: (&'static str, Value),
    /// A required field.
    required: &'static str,
}

#[tokio::test]
async fn json_bodies_that_are_malformed_unknown_or_mistyped_are_400_and_change_nothing() {
    let (api, agent, set) = one_endpoint_one_set().await;
    let set_id = set["id"].as_i64().unwrap();
    assert!(api.tick(set_id).await, "the tick releases the only endpoint");
    let enroll_valid = api.enroll_request("web-2", json!({"site": "paris"})).await;
    let routes = vec![
        JsonRoute {
            name: "create enroll token",
            method: Method::POST,
            uri: "/v1/enroll-tokens",
            agent: false,
            valid: json!({"uses": 1, "ttl_secs": 60}),
            wrong_type: ("uses", json!("three")),
            required: "ttl_secs",
        },
        JsonRoute {
            name: "create set",
            method: Method::POST,
            uri: "/v1/sets",
            agent: false,
            valid: set_body("s2", "all"),
            wrong_type: ("max_in_flight", json!(-1)),
            required: "target",
        },
        JsonRoute {
            name: "enroll",
            method: Method::POST,
            uri: "/v1/enroll",
            agent: false,
            valid: enroll_valid,
            wrong_type: ("labels", json!(["site=paris"])),
            required: "csr_pem",
        },
        JsonRoute {
            name: "inventory",
            method: Method::PUT,
            uri: "/v1/agent/inventory",
            agent: true,
            valid: inventory_body(),
            wrong_type: ("products", json!({"app": 1})),
            required: "hostname",
        },
        JsonRoute {
            name: "report",
            method: Method::POST,
            uri: "/v1/agent/reports",
            agent: true,
            valid: report_body(set_id, 1, "attempt_started"),
            wrong_type: ("set_id", json!("1")),
            required: "to_version",
        },
    ];
    let builder = |route: &JsonRoute| {
        if route.agent {
            as_agent(&agent, route.method.clone(), route.uri)
        } else {
            admin(route.method.clone(), route.uri)
        }
    };

    let before = api.snapshot().await;
    for route in &routes {
        let valid_text = route.valid.to_string();
        let cases: Vec<(&str, Request<Body>)> = vec![
            ("truncated JSON", raw_json(builder(route), &valid_text[..valid_text.len() / 2])),
            ("not JSON at all", raw_json(builder(route), "hello")),
            ("empty body", raw_json(builder(route), "")),
            ("an array", raw_json(builder(route), "[]")),
            ("null", raw_json(builder(route), "null")),
            ("unknown field", json_req(builder(route), &with(&route.valid, json!({"surprise": true})))),
            (
                "wrong type",
                json_req(builder(route), &with(&route.valid, json!({route.wrong_type.0: route.wrong_type.1.clone()}))),
            ),
            ("missing field", json_req(builder(route), &with(&route.valid, json!({route.required: null})))),
            ("no content type", builder(route).body(Body::from(valid_text.clone())).unwrap()),
            (
                "text content type",
                builder(route).header(CONTENT_TYPE, "text/plain").body(Body::from(valid_text.clone())).unwrap(),
            ),
        ];
        for (what, req) in cases {
            let message = api.fails(req, StatusCode::BAD_REQUEST, "bad_request").await;
            assert!(message.starts_with("invalid JSON body"), "{} with {what}: {message}", route.name);
        }
    }
    assert_eq!(api.snapshot().await, before);

    // The control: each template is accepted as is.
    for route in &routes {
        let (status, answer) = api.call(json_req(builder(route), &route.valid)).await;
        assert!(status.is_success(), "{}: {status} {answer}", route.name);
    }
    assert_ne!(api.snapshot().await, before);
}

// ---------------------------------------------------------------- enrollment

#[tokio::test]
async fn enroll_token_creation_rejects_out_of_range_uses_and_ttl() {
    let api = Api::new().await;
    for body in [
        json!({"uses": 0, "ttl_secs": 60}),
        json!({"uses": 1_000_001, "ttl_secs": 60}),
        json!({"uses": 1, "ttl_secs": 0}),
        json!({"uses": 1, "ttl_secs": 90 * 24 * 3600 + 1}),
        json!({"uses": 1, "ttl_secs": u64::MAX}),
    ] {
        api.fails(json_req(admin(Method::POST, "/v1/enroll-tokens"), &body), StatusCode::BAD_REQUEST, "bad_request")
            .await;
    }
    // The bounds themselves are allowed.
    api.create_token(1_000_000, 90 * 24 * 3600).await;
    api.create_token(1, 1).await;
}

#[tokio::test]
async fn enroll_refuses_unknown_expired_and_used_up_tokens() {
    let api = Api::new().await;
    // A new key for every request: the same key again would be a retry, which is answered
    // with the same endpoint (see `enrolling_again_with_the_same_key_returns_the_same_endpoint`).
    let request = |token: &str| {
        let (_key, csr_pem) = rollgate_pki::new_client_key_and_csr("web-1").unwrap();
        json_req(
            anonymous(Method::POST, "/v1/enroll"),
            &json!({"token": token, "csr_pem": csr_pem, "hostname": "web-1", "os": "Linux"}),
        )
    };

    // An expired token, written straight into the store with an expiry in the past: the route
    // reads the real clock, and this keeps the test free of sleeps.
    let expired = "expired-token-0123456789";
    let now = Timestamp::now();
    api.state
        .store
        .create_enroll_token(
            &secret_hash(expired),
            5,
            now - SignedDuration::from_secs(1),
            now - SignedDuration::from_secs(3600),
        )
        .await
        .unwrap();
    let used_up = api.create_token(1, 600).await;
    api.ok(request(&used_up), StatusCode::OK).await;
    let before = api.snapshot().await;

    for (what, token) in
        [("unknown", "no-such-token"), ("empty", ""), ("expired", expired), ("used up", used_up.as_str())]
    {
        let message = api.fails(request(token), StatusCode::UNAUTHORIZED, "enroll_refused").await;
        assert!(message.contains("token"), "{what}: {message}");
    }
    // The admin token is not an enrollment token.
    api.fails(request(ADMIN_TOKEN), StatusCode::UNAUTHORIZED, "enroll_refused").await;
    assert_eq!(api.snapshot().await, before);
    assert_eq!(before.endpoints.as_array().unwrap().len(), 1);
}

/// PEM armour around something that is not a CSR.
const GARBAGE_CSR: &str = "-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END CERTIFICATE REQUEST-----\n";

#[tokio::test]
async fn enroll_rejects_a_bad_csr_host_or_labels_without_using_up_the_token() {
    let api = Api::new().await;
    let valid = api.enroll_request("web-1", json!({"site": "berlin"})).await;
    let ca_pem = api.state.ca.cert_pem().to_string();
    let too_many_labels: BTreeMap<String, String> = (0..65).map(|i| (format!("k{i}"), "v".to_string())).collect();
    let before = api.snapshot().await;

    let cases = vec![
        ("garbage CSR", with(&valid, json!({"csr_pem": GARBAGE_CSR}))),
        ("empty CSR", with(&valid, json!({"csr_pem": ""}))),
        ("a certificate instead of a CSR", with(&valid, json!({"csr_pem": ca_pem}))),
        ("huge CSR", with(&valid, json!({"csr_pem": "A".repeat(rollgate_pki::MAX_CSR_PEM_BYTES + 1)}))),
        ("empty hostname", with(&valid, json!({"hostname": ""}))),
        ("long hostname", with(&valid, json!({"hostname": "h".repeat(256)}))),
        ("long os", with(&valid, json!({"os": "o".repeat(256)}))),
        ("label key with a space", with(&valid, json!({"labels": {"my site": "berlin"}}))),
        ("label value with a comma", with(&valid, json!({"labels": {"site": "berlin,paris"}}))),
        ("label value with `=`", with(&valid, json!({"labels": {"site": "a=b"}}))),
        ("empty label value", with(&valid, json!({"labels": {"site": ""}}))),
        ("empty label key", with(&valid, json!({"labels": {"": "berlin"}}))),
        ("65 labels", with(&valid, json!({"labels": too_many_labels}))),
    ];
    for (what, body) in cases {
        let message = api
            .fails(json_req(anonymous(Method::POST, "/v1/enroll"), &body), StatusCode::BAD_REQUEST, "bad_request")
            .await;
        assert!(!message.is_empty(), "{what}");
    }
    assert_eq!(api.snapshot().await, before);

    // The token (one use) is still good: none of the refusals consumed it.
    let body = api.ok(json_req(anonymous(Method::POST, "/v1/enroll"), &valid), StatusCode::OK).await;
    let agent = agent_from_enrollment(&body);
    let endpoints = api.snapshot().await.endpoints;
    assert_eq!(endpoints.as_array().unwrap().len(), 1);
    assert_eq!(endpoints[0]["id"], agent.id.as_str());
    assert_eq!(endpoints[0]["labels"], json!({"site": "berlin"}));
}

// ---------------------------------------------------------------- agent credentials

/// Every agent route, with a body that would change something if it were accepted.
fn agent_routes(set_id: i64, sha256: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, "/v1/agent/work".into(), None),
        (
            Method::PUT,
            "/v1/agent/inventory".into(),
            Some(json!({"hostname": "evil", "os": "x", "labels": {"site": "evil"}})),
        ),
        (Method::POST, "/v1/agent/reports".into(), Some(report_body(set_id, 1, "attempt_started"))),
        (Method::GET, format!("/v1/agent/packages/{sha256}"), None),
    ]
}

fn agent_request(builder: request::Builder, body: &Option<Value>) -> Request<Body> {
    match body {
        Some(value) => json_req(builder, value),
        None => empty(builder),
    }
}

#[tokio::test]
async fn agent_routes_need_the_certificate_issued_to_a_known_endpoint() {
    let (api, agent, set) = one_endpoint_one_set().await;
    let set_id = set["id"].as_i64().unwrap();
    assert!(api.tick(set_id).await);
    let sha256 = sha256_hex(b"package bytes of app 2.0");
    let before = api.snapshot().await;

    // A certificate for the right endpoint id that is not the one issued to it (for example one
    // a CA under the same name issued to an impostor).
    let wrong_fingerprint = Agent { id: agent.id.clone(), fingerprint: "00".repeat(32) };
    // A certificate naming an endpoint that never enrolled.
    let unknown = Agent { id: "ep-0000000000000000".into(), fingerprint: agent.fingerprint.clone() };

    for (method, uri, body) in agent_routes(set_id, &sha256) {
        let none = anonymous(method.clone(), &uri);
        api.fails(agent_request(none, &body), StatusCode::UNAUTHORIZED, "client_certificate_required").await;
        let no_cert = anonymous(method.clone(), &uri).extension(PeerIdentity(None));
        api.fails(agent_request(no_cert, &body), StatusCode::UNAUTHORIZED, "client_certificate_required").await;
        // The admin token opens management routes only.
        let admin_only = admin(method.clone(), &uri);
        api.fails(agent_request(admin_only, &body), StatusCode::UNAUTHORIZED, "client_certificate_required").await;
        let wrong = as_agent(&wrong_fingerprint, method.clone(), &uri);
        api.fails(agent_request(wrong, &body), StatusCode::UNAUTHORIZED, "unknown_certificate").await;
        let stranger = as_agent(&unknown, method.clone(), &uri);
        api.fails(agent_request(stranger, &body), StatusCode::UNAUTHORIZED, "unknown_endpoint").await;
    }
    // Nothing moved, not even the endpoint's `last_seen`.
    assert_eq!(api.snapshot().await, before);

    // The control: the real identity gets through on every route.
    for (method, uri, body) in agent_routes(set_id, &sha256) {
        let (status, _, answer) = api.call_raw(agent_request(as_agent(&agent, method.clone(), &uri), &body)).await;
        assert!(status.is_success(), "{method} {uri}: {status} {}", String::from_utf8_lossy(&answer));
    }
}

#[tokio::test]
async fn inventory_rejects_bad_fields_and_keeps_the_old_inventory() {
    let api = Api::new().await;
    let agent = api.enroll("web-1", json!({"site": "berlin"})).await;
    let put = |body: &Value| json_req(as_agent(&agent, Method::PUT, "/v1/agent/inventory"), body);
    api.ok(put(&inventory_body()), StatusCode::NO_CONTENT).await;
    let before = api.snapshot().await;

    let valid = inventory_body();
    let too_many_products: BTreeMap<String, String> = (0..1025).map(|i| (format!("p{i}"), "1.0".to_string())).collect();
    let cases = vec![
        ("empty hostname", with(&valid, json!({"hostname": ""}))),
        ("long os", with(&valid, json!({"os": "o".repeat(256)}))),
        ("bad label", with(&valid, json!({"labels": {"site": "two words"}}))),
        ("product name with a slash", with(&valid, json!({"products": {"../app": "1.0"}}))),
        ("product name starting with a dash", with(&valid, json!({"products": {"-app": "1.0"}}))),
        ("empty product name", with(&valid, json!({"products": {"": "1.0"}}))),
        ("version with a space", with(&valid, json!({"products": {"app": "1.0 beta"}}))),
        ("empty version", with(&valid, json!({"products": {"app": ""}}))),
        ("1025 products", with(&valid, json!({"products": too_many_products}))),
    ];
    for (what, body) in cases {
        let message = api.fails(put(&body), StatusCode::BAD_REQUEST, "bad_request").await;
        assert!(!message.is_empty(), "{what}");
    }
    assert_eq!(api.snapshot().await, before);
    assert_eq!(before.endpoints[0]["products"], json!({"app": "1.0"}));
}

// ---------------------------------------------------------------- package upload

#[tokio::test]
async fn package_upload_rejects_bad_names_modules_hashes_and_empty_bodies_leaving_no_file() {
    let api = Api::new().await;
    let bytes = b"the package bytes";
    let good_sha = sha256_hex(bytes);
    let other_sha = sha256_hex(b"other bytes");
    let empty_sha = sha256_hex(b"");
    let before = api.snapshot().await;
    assert_eq!(before.files, Vec::<String>::new());

    let upload = |uri: &str, sha: Option<&str>, body: &[u8]| {
        let mut builder = admin(Method::PUT, uri);
        if let Some(sha) = sha {
            builder = builder.header("x-rollgate-sha256", sha);
        }
        builder.body(Body::from(body.to_vec())).unwrap()
    };
    let long_name = "p".repeat(65);
    let cases: Vec<(&str, String, Option<&str>, &[u8])> = vec![
        ("product starting with a dash", "/v1/packages/-app/1.0".into(), Some(&good_sha), bytes),
        ("product with a slash", "/v1/packages/a%2Fb/1.0".into(), Some(&good_sha), bytes),
        ("product `..`", "/v1/packages/../1.0".into(), Some(&good_sha), bytes),
        ("product with a space", "/v1/packages/my%20app/1.0".into(), Some(&good_sha), bytes),
        ("65-byte product", format!("/v1/packages/{long_name}/1.0"), Some(&good_sha), bytes),
        ("version with a space", "/v1/packages/app/1.0%20beta".into(), Some(&good_sha), bytes),
        ("version starting with a dot", "/v1/packages/app/.1".into(), Some(&good_sha), bytes),
        ("version with a slash", "/v1/packages/app/1%2F0".into(), Some(&good_sha), bytes),
        ("unknown module", "/v1/packages/app/1.0?module=deb".into(), Some(&good_sha), bytes),
        ("empty module", "/v1/packages/app/1.0?module=".into(), Some(&good_sha), bytes),
        ("bad min_from", "/v1/packages/app/1.0?min_from=..%2F..".into(), Some(&good_sha), bytes),
        ("declared hash not hex", "/v1/packages/app/1.0".into(), Some("xyz"), bytes),
        ("declared hash too short", "/v1/packages/app/1.0".into(), Some(&good_sha[..63]), bytes),
        ("declared hash of other bytes", "/v1/packages/app/1.0".into(), Some(&other_sha), bytes),
        ("empty body", "/v1/packages/app/1.0".into(), None, b""),
        ("empty body with its hash", "/v1/packages/app/1.0".into(), Some(&empty_sha), b""),
    ];
    for (what, uri, sha, body) in cases {
        let message = api.fails(upload(&uri, sha, body), StatusCode::BAD_REQUEST, "bad_request").await;
        assert!(!message.is_empty(), "{what}");
        // Checked after every case: a leftover would show which case left it.
        assert_eq!(api.snapshot().await, before, "{what} changed something");
    }
    // A body that breaks off half-way, as when the client's connection drops.
    let broken: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from_static(b"the package")),
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "client went away")),
    ];
    let req =
        admin(Method::PUT, "/v1/packages/app/1.0").body(Body::from_stream(futures_util::stream::iter(broken))).unwrap();
    let message = api.fails(req, StatusCode::BAD_REQUEST, "bad_request").await;
    assert!(message.contains("interrupted"), "{message}");
    assert_eq!(api.snapshot().await, before, "the broken upload changed something");

    let mismatch = api
        .fails(upload("/v1/packages/app/1.0", Some(&other_sha), bytes), StatusCode::BAD_REQUEST, "bad_request")
        .await;
    assert!(mismatch.contains(&good_sha) && mismatch.contains(&other_sha), "{mismatch}");

    // The control: the same bytes with their hash, upper-case as some tools print it.
    let req = upload("/v1/packages/app/1.0?module=script&min_from=0.9", Some(&good_sha.to_uppercase()), bytes);
    let info = api.ok(req, StatusCode::CREATED).await;
    assert_eq!(info["sha256"], good_sha.as_str());
    assert_eq!(info["module"], "script");
    assert_eq!(info["min_from"], "0.9");
    assert_eq!(api.snapshot().await.files, vec![format!("sha256/{good_sha}")]);
}

#[tokio::test]
async fn package_upload_over_the_size_limit_is_413_and_leaves_nothing() {
    let api = Api::with_limit(16).await;
    let before = api.snapshot().await;

    // In one piece, and streamed in pieces that cross the limit only on the third.
    let one_piece = admin(Method::PUT, "/v1/packages/app/1.0").body(Body::from(vec![7u8; 17])).unwrap();
    api.fails(one_piece, StatusCode::PAYLOAD_TOO_LARGE, "too_large").await;
    assert_eq!(api.snapshot().await, before);
    let chunks: Vec<Result<Bytes, std::io::Error>> = (1..=3u8).map(|b| Ok(Bytes::from(vec![b; 6]))).collect();
    let streamed =
        admin(Method::PUT, "/v1/packages/app/1.0").body(Body::from_stream(futures_util::stream::iter(chunks))).unwrap();
    api.fails(streamed, StatusCode::PAYLOAD_TOO_LARGE, "too_large").await;
    assert_eq!(api.snapshot().await, before);

    // Exactly at the limit is accepted.
    let info = api.upload("app", "1.0", &[9u8; 16]).await;
    assert_eq!(info["size"], 16);
}

#[tokio::test]
async fn package_upload_of_an_existing_version_is_a_conflict() {
    let api = Api::new().await;
    let first = api.upload("app", "1.0", b"first bytes").await;
    let before = api.snapshot().await;

    for bytes in [&b"other bytes"[..], &b"first bytes"[..]] {
        let req = admin(Method::PUT, "/v1/packages/app/1.0").body(Body::from(bytes.to_vec())).unwrap();
        let message = api.fails(req, StatusCode::CONFLICT, "conflict").await;
        assert!(message.contains("app@1.0"), "{message}");
    }
    assert_eq!(api.snapshot().await, before);
    // The upload's answer is what the listing shows, `created_at` included: the store keeps
    // milliseconds, and so does the answer.
    assert_eq!(before.packages, json!([first]));
    assert_eq!(before.files, vec![format!("sha256/{}", sha256_hex(b"first bytes"))]);
}

#[tokio::test]
async fn package_upload_answers_what_the_listing_shows_to_the_millisecond() {
    let api = Api::new().await;
    let mut answers = Vec::new();
    for version in ["1.0", "1.1", "1.2", "2.0", "2.0.1"] {
        let answer = api.upload("app", version, format!("app {version}").as_bytes()).await;
        let created: Timestamp = answer["created_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(created.subsec_nanosecond() % 1_000_000, 0, "{answer}: finer than the store keeps");
        let age = Timestamp::now().duration_since(created);
        assert!(age >= SignedDuration::ZERO && age < SignedDuration::from_secs(60), "{answer}: not now");
        answers.push(answer);
    }
    let listed = api.ok(empty(admin(Method::GET, "/v1/packages")), StatusCode::OK).await;
    for answer in &answers {
        let same = listed.as_array().unwrap().iter().find(|p| p["id"] == answer["id"]);
        assert_eq!(same, Some(answer), "{listed}");
    }
    assert_eq!(listed.as_array().unwrap().len(), answers.len());
}

// ---------------------------------------------------------------- sets

#[tokio::test]
async fn set_creation_rejects_bad_input_and_duplicate_names() {
    let api = Api::new().await;
    let a = api.enroll("web-1", json!({"site": "berlin"})).await;
    api.upload("app", "2.0", b"app 2.0").await;
    let valid = set_body("s1", "all");
    let before = api.snapshot().await;

    let cases = vec![
        ("bad name", with(&valid, json!({"name": "my set"}))),
        ("empty name", with(&valid, json!({"name": ""}))),
        ("name with a slash", with(&valid, json!({"name": "a/b"}))),
        ("unknown product", with(&valid, json!({"product": "nothing"}))),
        ("unknown version", with(&valid, json!({"version": "9.9"}))),
        ("empty target", with(&valid, json!({"target": " "}))),
        ("target mixing ids and labels", with(&valid, json!({"target": format!("{},site=berlin", a.id)}))),
        ("target with a bad item", with(&valid, json!({"target": "site=ber lin"}))),
        ("unknown endpoint id", with(&valid, json!({"target": "ep-0000000000000000"}))),
        ("one known and one unknown id", with(&valid, json!({"target": format!("{},ep-0000000000000000", a.id)}))),
        ("target matching nobody", with(&valid, json!({"target": "site=paris"}))),
        ("window with hours out of range", with(&valid, json!({"window": "Mon-Fri 25:00-26:00"}))),
        ("window with an unknown day", with(&valid, json!({"window": "Funday 01:00-02:00"}))),
        ("window in an unknown zone", with(&valid, json!({"window": "daily 01:00-02:00 Mars/Olympus"}))),
        ("empty window", with(&valid, json!({"window": ""}))),
        ("bad start time", with(&valid, json!({"start_at": "next tuesday"}))),
        ("start time without a zone", with(&valid, json!({"start_at": "2026-12-01T02:00:00"}))),
        ("max_in_flight 0", with(&valid, json!({"max_in_flight": 0}))),
        ("max_in_flight above the limit", with(&valid, json!({"max_in_flight": 100_001}))),
        ("max_attempts 0", with(&valid, json!({"max_attempts": 0}))),
        ("max_attempts above the limit", with(&valid, json!({"max_attempts": 21}))),
        ("backoff above an hour", with(&valid, json!({"backoff_secs": 3601}))),
        ("stuck timeout below 5 s", with(&valid, json!({"stuck_timeout_secs": 4}))),
        ("step timeout 0", with(&valid, json!({"step_timeout_secs": 0}))),
        ("step timeout above a day", with(&valid, json!({"step_timeout_secs": 24 * 3600 + 1}))),
    ];
    for (what, body) in cases {
        let message =
            api.fails(json_req(admin(Method::POST, "/v1/sets"), &body), StatusCode::BAD_REQUEST, "bad_request").await;
        assert!(!message.is_empty(), "{what}");
    }
    assert_eq!(api.snapshot().await, before);

    let created = api.create_set(&valid).await;
    assert_eq!(created["state"], "active");
    assert_eq!(created["endpoints"], json!([{"id": a.id, "state": "pending", "attempts": 0, "reason": null}]));
    let after_create = api.snapshot().await;
    let duplicate = with(&valid, json!({"max_in_flight": 5, "target": a.id}));
    let message =
        api.fails(json_req(admin(Method::POST, "/v1/sets"), &duplicate), StatusCode::CONFLICT, "conflict").await;
    assert!(message.contains("s1"), "{message}");
    assert_eq!(api.snapshot().await, after_create);
    assert_eq!(api.show_set("s1").await["max_in_flight"], 1);
}

#[tokio::test]
async fn set_lookups_and_actions_refuse_unknown_names_and_illegal_transitions() {
    let (api, agent, _) = one_endpoint_one_set().await;
    let before = api.snapshot().await;

    api.fails(empty(admin(Method::GET, "/v1/sets/nope")), StatusCode::NOT_FOUND, "not_found").await;
    api.fails(empty(admin(Method::GET, "/v1/endpoints/ep-0000000000000000")), StatusCode::NOT_FOUND, "not_found").await;
    for action in ["pause", "resume", "cancel"] {
        api.fails(empty(admin(Method::POST, &format!("/v1/sets/nope/{action}"))), StatusCode::NOT_FOUND, "not_found")
            .await;
    }
    for action in ["restart", "delete", "PAUSE", "start", "finish"] {
        let message = api
            .fails(empty(admin(Method::POST, &format!("/v1/sets/s1/{action}"))), StatusCode::NOT_FOUND, "not_found")
            .await;
        assert!(message.contains(action), "{message}");
    }
    api.fails(empty(admin(Method::POST, "/v1/sets/s1/resume")), StatusCode::CONFLICT, "invalid_state").await;
    assert_eq!(api.snapshot().await, before);
    assert_eq!(
        api.ok(empty(admin(Method::GET, &format!("/v1/endpoints/{}", agent.id))), StatusCode::OK).await["history"],
        json!([])
    );

    // Paused: a second pause is refused and leaves the reason alone.
    let paused = api.ok(empty(admin(Method::POST, "/v1/sets/s1/pause")), StatusCode::OK).await;
    assert_eq!(paused["state"], "paused");
    api.fails(empty(admin(Method::POST, "/v1/sets/s1/pause")), StatusCode::CONFLICT, "invalid_state").await;
    assert_eq!(api.show_set("s1").await, paused);

    // Cancelled is final: nothing more is allowed.
    let cancelled = api.ok(empty(admin(Method::POST, "/v1/sets/s1/cancel")), StatusCode::OK).await;
    assert_eq!(cancelled["state"], "cancelled");
    for action in ["pause", "resume", "cancel"] {
        let message = api
            .fails(empty(admin(Method::POST, &format!("/v1/sets/s1/{action}"))), StatusCode::CONFLICT, "invalid_state")
            .await;
        assert!(message.contains("cancelled"), "{message}");
    }
    assert_eq!(api.show_set("s1").await, cancelled);
}

// ---------------------------------------------------------------- reports

#[tokio::test]
async fn reports_reject_bad_fields_foreign_sets_and_work_without_a_slot() {
    let api = Api::new().await;
    let a = api.enroll("web-a", json!({"site": "a"})).await;
    api.enroll("web-b", json!({"site": "b"})).await;
    api.upload("app", "2.0", b"app 2.0").await;
    let sa = api.create_set(&set_body("sa", "site=a")).await["id"].as_i64().unwrap();
    let sb = api.create_set(&set_body("sb", "site=b")).await["id"].as_i64().unwrap();
    let post = |body: &Value| json_req(as_agent(&a, Method::POST, "/v1/agent/reports"), body);
    let before = api.snapshot().await;

    let bad = vec![
        ("attempt 0", report_body(sa, 0, "attempt_started")),
        ("attempt above the limit", report_body(sa, 21, "attempt_started")),
        ("unparsable time", with(&report_body(sa, 1, "attempt_started"), json!({"at": "yesterday"}))),
        ("time without a zone", with(&report_body(sa, 1, "attempt_started"), json!({"at": "2026-01-05T10:00:00"}))),
        ("unknown kind", report_body(sa, 1, "exploded")),
    ];
    for (what, body) in bad {
        let message = api.fails(post(&body), StatusCode::BAD_REQUEST, "bad_request").await;
        assert!(!message.is_empty(), "{what}");
    }
    // A set the endpoint is not in, and a set that does not exist.
    for set_id in [sb, 9999] {
        for kind in ["attempt_started", "attempt_failed", "succeeded"] {
            api.fails(post(&report_body(set_id, 1, kind)), StatusCode::NOT_FOUND, "not_found").await;
        }
    }
    // Work on a set the endpoint has no slot in yet.
    for kind in ["attempt_started", "heartbeat", "attempt_failed", "succeeded", "failed", "rolled_back"] {
        let message = api.fails(post(&report_body(sa, 1, kind)), StatusCode::CONFLICT, "no_slot").await;
        assert!(message.contains("no slot"), "{message}");
    }
    assert_eq!(api.snapshot().await, before);
    assert_eq!(
        api.ok(empty(admin(Method::GET, &format!("/v1/endpoints/{}", a.id))), StatusCode::OK).await["history"],
        json!([])
    );

    // Once finished, a contradicting final report is refused and the outcome stays.
    assert!(api.tick(sa).await);
    api.ok(post(&report_body(sa, 1, "attempt_started")), StatusCode::OK).await;
    api.ok(post(&report_body(sa, 1, "succeeded")), StatusCode::OK).await;
    let finished = api.snapshot().await;
    for kind in ["rolled_back", "failed"] {
        api.fails(post(&report_body(sa, 1, kind)), StatusCode::CONFLICT, "conflict").await;
    }
    assert_eq!(api.snapshot().await, finished);
    assert_eq!(api.show_set("sa").await["endpoints"][0]["state"], "succeeded");
}

/// An endpoint's attempt history as `GET /v1/endpoints/{id}` shows it.
async fn history(api: &Api, agent: &Agent) -> Vec<Value> {
    let detail = api.ok(empty(admin(Method::GET, &format!("/v1/endpoints/{}", agent.id))), StatusCode::OK).await;
    detail["history"].as_array().unwrap().clone()
}

/// `(attempt, outcome)` of each history entry, in order.
fn attempt_outcomes(history: &[Value]) -> Vec<(u64, String)> {
    history.iter().map(|a| (a["attempt"].as_u64().unwrap(), a["outcome"].as_str().unwrap().to_string())).collect()
}

/// `agent`'s member entry in `GET /v1/sets/{set}`.
async fn member_of(api: &Api, set: &str, agent: &Agent) -> Value {
    let shown = api.show_set(set).await;
    let member = shown["endpoints"].as_array().unwrap().iter().find(|m| m["id"] == agent.id.as_str()).cloned();
    member.unwrap_or_else(|| panic!("{} is not in {set}: {shown}", agent.id))
}

/// Two endpoints and an active set over each: `sa` (site a, 3 attempts) and `sb` (site b, 1
/// attempt), both ticked so that each endpoint holds its slot and has started nothing yet.
async fn two_released_sets() -> (Api, Agent, i64, Agent, i64) {
    let api = Api::new().await;
    let a = api.enroll("web-a", json!({"site": "a"})).await;
    let b = api.enroll("web-b", json!({"site": "b"})).await;
    api.upload("app", "2.0", b"app 2.0").await;
    let sa = api.create_set(&set_body("sa", "site=a")).await["id"].as_i64().unwrap();
    let sb = api.create_set(&with(&set_body("sb", "site=b"), json!({"max_attempts": 1}))).await["id"].as_i64().unwrap();
    assert!(api.tick(sa).await);
    assert!(api.tick(sb).await);
    assert_eq!(member_of(&api, "sa", &a).await["state"], "in_progress");
    assert_eq!(member_of(&api, "sb", &b).await["state"], "in_progress");
    (api, a, sa, b, sb)
}

#[tokio::test]
async fn attempts_start_one_after_the_other_within_the_sets_limit() {
    let (api, a, sa, b, sb) = two_released_sets().await;
    let post = |agent: &Agent, body: &Value| json_req(as_agent(agent, Method::POST, "/v1/agent/reports"), body);

    // Each step: the report, what it must answer (`None` = accepted), and then the member's
    // `attempts` and the history as `(attempt, outcome)`.
    type Step = (&'static str, u32, Option<(StatusCode, &'static str)>, u64, Vec<(u64, &'static str)>);
    let out_of_order = Some((StatusCode::CONFLICT, "attempt_out_of_order"));
    let not_started = Some((StatusCode::CONFLICT, "attempt_not_started"));
    let steps: Vec<Step> = vec![
        ("attempt_started", 2, out_of_order, 0, vec![]),
        ("attempt_failed", 1, not_started, 0, vec![]),
        ("attempt_started", 1, None, 1, vec![(1, "in_progress")]),
        // A retried report: accepted, and nothing moves.
        ("attempt_started", 1, None, 1, vec![(1, "in_progress")]),
        ("attempt_started", 3, out_of_order, 1, vec![(1, "in_progress")]),
        ("attempt_failed", 2, not_started, 1, vec![(1, "in_progress")]),
        ("attempt_failed", 1, None, 1, vec![(1, "failed")]),
        ("attempt_failed", 1, None, 1, vec![(1, "failed")]),
        ("attempt_started", 3, out_of_order, 1, vec![(1, "failed")]),
        ("attempt_started", 2, None, 2, vec![(1, "failed"), (2, "in_progress")]),
        ("attempt_started", 1, None, 2, vec![(1, "failed"), (2, "in_progress")]),
        ("attempt_failed", 3, not_started, 2, vec![(1, "failed"), (2, "in_progress")]),
        ("attempt_failed", 2, None, 2, vec![(1, "failed"), (2, "failed")]),
        ("attempt_started", 3, None, 3, vec![(1, "failed"), (2, "failed"), (3, "in_progress")]),
        // Past the set's limit of 3.
        ("attempt_started", 4, out_of_order, 3, vec![(1, "failed"), (2, "failed"), (3, "in_progress")]),
        // The last attempt ends with the job's outcome, as the agent reports it.
        ("rolled_back", 3, None, 3, vec![(1, "failed"), (2, "failed"), (3, "rolled_back")]),
        (
            "attempt_started",
            4,
            Some((StatusCode::CONFLICT, "no_slot")),
            3,
            vec![(1, "failed"), (2, "failed"), (3, "rolled_back")],
        ),
    ];
    for (kind, attempt, refusal, attempts, expected_history) in steps {
        let step = format!("{kind} {attempt}");
        let before = api.snapshot().await;
        let body = report_body(sa, attempt, kind);
        match refusal {
            None => assert_eq!(api.ok(post(&a, &body), StatusCode::OK).await, json!({"accepted": true}), "{step}"),
            Some((status, code)) => {
                let message = api.fails(post(&a, &body), status, code).await;
                let names = if code == "no_slot" { "no slot".to_string() } else { format!("attempt {attempt}") };
                assert!(message.contains(&names), "{step}: {message}");
                assert_eq!(api.snapshot().await, before, "{step} was refused but changed something");
            }
        }
        assert_eq!(member_of(&api, "sa", &a).await["attempts"], attempts, "{step}");
        let history = history(&api, &a).await;
        let expected: Vec<(u64, String)> = expected_history.iter().map(|(n, o)| (*n, o.to_string())).collect();
        assert_eq!(attempt_outcomes(&history), expected, "{step}: {history:?}");
        let running = history.iter().filter(|h| h["outcome"] == "in_progress").count();
        assert!(running <= 1, "{step}: {running} attempts in progress at once: {history:?}");
    }
    assert_eq!(member_of(&api, "sa", &a).await["state"], "rolled_back");

    // A set that allows one attempt: there is no second, whether or not the first failed.
    api.ok(post(&b, &report_body(sb, 1, "attempt_started")), StatusCode::OK).await;
    for (kind, attempt) in [("attempt_started", 2), ("attempt_failed", 1), ("attempt_started", 2)] {
        let body = report_body(sb, attempt, kind);
        if kind == "attempt_failed" {
            api.ok(post(&b, &body), StatusCode::OK).await;
            continue;
        }
        let before = api.snapshot().await;
        let message = api.fails(post(&b, &body), StatusCode::CONFLICT, "attempt_out_of_order").await;
        assert!(message.contains("attempt 2") && message.contains("allows 1"), "{message}");
        assert_eq!(api.snapshot().await, before);
        assert_eq!(member_of(&api, "sb", &b).await["attempts"], 1);
    }
    assert_eq!(attempt_outcomes(&history(&api, &b).await), vec![(1, "failed".to_string())]);
}

/// An agent that skips its "attempt failed" report (lost, or a bug) and starts the next
/// attempt: the history must still show one running attempt, not two.
#[tokio::test]
async fn starting_the_next_attempt_leaves_one_attempt_in_progress() {
    let (api, a, sa, _, _) = two_released_sets().await;
    let post = |body: &Value| json_req(as_agent(&a, Method::POST, "/v1/agent/reports"), body);
    api.ok(post(&report_body(sa, 1, "attempt_started")), StatusCode::OK).await;
    api.ok(post(&report_body(sa, 2, "attempt_started")), StatusCode::OK).await;
    assert_eq!(member_of(&api, "sa", &a).await["attempts"], 2);
    let history = history(&api, &a).await;
    let running: Vec<u64> = attempt_outcomes(&history)
        .into_iter()
        .filter(|(_, outcome)| outcome == "in_progress")
        .map(|(n, _)| n)
        .collect();
    assert_eq!(running, vec![2], "{history:?}");
}

#[tokio::test]
async fn reports_with_a_wrong_or_invalid_version_or_a_long_phase_are_400_and_store_nothing() {
    let (api, agent, set) = one_endpoint_one_set().await;
    let set_id = set["id"].as_i64().unwrap();
    assert!(api.tick(set_id).await);
    let post = |body: &Value| json_req(as_agent(&agent, Method::POST, "/v1/agent/reports"), body);
    let huge_version = "9".repeat(100_000);

    // Before the first attempt (a refusal must not start one) and during it (a refusal must
    // not finish it).
    let every_kind = ["attempt_started", "heartbeat", "attempt_failed", "succeeded", "failed", "rolled_back"];
    for (phase, kinds) in [("released", &every_kind[..2]), ("attempt 1", &every_kind[..])] {
        if phase == "attempt 1" {
            api.ok(post(&report_body(set_id, 1, "attempt_started")), StatusCode::OK).await;
        }
        let before = api.snapshot().await;
        let history_before = history(&api, &agent).await;
        for kind in kinds {
            let valid = report_body(set_id, 1, kind);
            // The set installs 2.0: a report about another version is about some other job.
            for other in ["3.0", "1.0", "2.0.0"] {
                let message = api
                    .fails(post(&with(&valid, json!({"to_version": other}))), StatusCode::BAD_REQUEST, "bad_request")
                    .await;
                assert!(message.contains(other) && message.contains("2.0"), "{phase}, {kind} to {other}: {message}");
            }
            let invalid = vec![
                ("to_version with a space and a path", with(&valid, json!({"to_version": "9.9 weird/../x"}))),
                ("from_version with a space and a path", with(&valid, json!({"from_version": "9.9 weird/../x"}))),
                ("100,000-byte to_version", with(&valid, json!({"to_version": huge_version}))),
                ("100,000-byte from_version", with(&valid, json!({"from_version": huge_version}))),
                ("empty to_version", with(&valid, json!({"to_version": ""}))),
                ("empty from_version", with(&valid, json!({"from_version": ""}))),
                ("33-byte phase", with(&valid, json!({"phase": "p".repeat(33), "reason": "x"}))),
            ];
            for (what, body) in invalid {
                let message = api.fails(post(&body), StatusCode::BAD_REQUEST, "bad_request").await;
                // Refused as malformed, not merely as another version than the set's: the check
                // must not depend on which set the report names.
                let expected = if what.contains("phase") { "phase is at most 32 bytes" } else { "bad version" };
                assert!(message.contains(expected), "{phase}, {kind} with {what}: {message}");
            }
        }
        assert_eq!(api.snapshot().await, before, "{phase}");
        assert_eq!(history(&api, &agent).await, history_before, "{phase}");
    }
    assert_eq!(attempt_outcomes(&history(&api, &agent).await), vec![(1, "in_progress".to_string())]);

    // The controls: a phase of exactly 32 bytes, and no from_version at all (nothing was
    // installed before), are fine.
    let body = with(
        &report_body(set_id, 1, "attempt_failed"),
        json!({"phase": "p".repeat(32), "reason": "boom", "from_version": null}),
    );
    api.ok(post(&body), StatusCode::OK).await;
    assert_eq!(attempt_outcomes(&history(&api, &agent).await), vec![(1, "failed".to_string())]);
}

#[tokio::test]
async fn heartbeats_count_for_the_current_attempt_only_and_keep_its_slot() {
    let api = Api::new().await;
    let agent = api.enroll("web-1", json!({"site": "berlin"})).await;
    api.upload("app", "2.0", b"package bytes of app 2.0").await;
    // The shortest stuck timeout allowed, so that the ticks below can tell a fresh heartbeat
    // from a stale one.
    let stuck = 5;
    let set = api.create_set(&with(&set_body("s1", "all"), json!({"stuck_timeout_secs": stuck}))).await;
    let set_id = set["id"].as_i64().unwrap();
    let post = |body: &Value| json_req(as_agent(&agent, Method::POST, "/v1/agent/reports"), body);
    assert!(api.tick(set_id).await);

    // Released, nothing started yet: there is no attempt to keep alive.
    api.fails(post(&report_body(set_id, 1, "heartbeat")), StatusCode::CONFLICT, "attempt_not_started").await;
    api.ok(post(&report_body(set_id, 1, "attempt_started")), StatusCode::OK).await;
    let started = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = api.snapshot().await;

    // For the current attempt: accepted, and it changes nothing an operator sees.
    let beat = Timestamp::now();
    assert_eq!(api.ok(post(&report_body(set_id, 1, "heartbeat")), StatusCode::OK).await, json!({"accepted": true}));
    assert_eq!(api.snapshot().await, before);
    // For an attempt that has not started: the agent must not be working on it.
    for attempt in [2, 3, 20] {
        let message = api
            .fails(post(&report_body(set_id, attempt, "heartbeat")), StatusCode::CONFLICT, "attempt_not_started")
            .await;
        assert!(message.contains(&format!("attempt {attempt} was never started")), "{message}");
    }
    assert_eq!(api.snapshot().await, before);

    // The heartbeat moved the member's last activity: 4 s after it the member keeps its slot,
    // although that is more than `stuck` seconds after the attempt started.
    let tick_at = |at: Timestamp| {
        let params = TickParams { offline_after_secs: 3600, observing_since: jiff::Timestamp::UNIX_EPOCH };
        let store = api.state.store.clone();
        async move { store.tick_set(set_id, params, at).await.unwrap() }
    };
    let soon_after_beat = beat + SignedDuration::from_secs(stuck - 1);
    assert!(soon_after_beat.duration_since(started) >= SignedDuration::from_secs(stuck), "the test's own timing");
    tick_at(soon_after_beat).await;
    assert_eq!(member_of(&api, "s1", &agent).await["state"], "in_progress");
    // The control: silent for longer than `stuck` after the heartbeat, it loses the slot.
    assert!(tick_at(Timestamp::now() + SignedDuration::from_secs(stuck + 1)).await);
    assert_eq!(member_of(&api, "s1", &agent).await["state"], "failed", "a timed-out member counts as failed");
    api.fails(post(&report_body(set_id, 1, "heartbeat")), StatusCode::CONFLICT, "no_slot").await;
}

// ---------------------------------------------------------------- downloads

#[tokio::test]
async fn download_refuses_bad_and_unknown_package_ids() {
    let (api, agent, _) = one_endpoint_one_set().await;
    let known = sha256_hex(b"package bytes of app 2.0");
    let get = |id: &str| empty(as_agent(&agent, Method::GET, &format!("/v1/agent/packages/{id}")));

    for bad in [
        known.to_uppercase(),
        known[..63].to_string(),
        format!("{known}0"),
        "g".repeat(64),
        "..".into(),
        "%2E%2E%2Fsha256".into(),
    ] {
        api.fails(get(&bad), StatusCode::BAD_REQUEST, "bad_request").await;
    }
    // Well-formed, but no package has these bytes.
    let unknown = sha256_hex(b"never uploaded");
    api.fails(get(&unknown), StatusCode::NOT_FOUND, "not_found").await;
    // The hash of the empty file, which no upload can produce.
    api.fails(get(&sha256_hex(b"")), StatusCode::NOT_FOUND, "not_found").await;

    let (status, _, body) = api.call_raw(get(&known)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"package bytes of app 2.0");
}

#[tokio::test]
async fn download_serves_byte_ranges_so_interrupted_downloads_resume() {
    let api = Api::new().await;
    let agent = api.enroll("web-1", json!({})).await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let info = api.upload("app", "1.0", &bytes).await;
    let uri = format!("/v1/agent/packages/{}", info["sha256"].as_str().unwrap());
    let ranged = |range: &str| as_agent(&agent, Method::GET, &uri).header(RANGE, range).body(Body::empty()).unwrap();

    let (status, headers, body) = api.call_raw(ranged("bytes=100-199")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(headers[CONTENT_RANGE], "bytes 100-199/10000");
    assert_eq!(&body[..], &bytes[100..200]);

    // Resuming from an offset to the end, as an agent with a partial file does.
    let (status, headers, body) = api.call_raw(ranged("bytes=9000-")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(headers[CONTENT_RANGE], "bytes 9000-9999/10000");
    assert_eq!(&body[..], &bytes[9000..]);

    let (status, _, _) = api.call_raw(ranged("bytes=20000-")).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);

    let (status, _, body) = api.call_raw(empty(as_agent(&agent, Method::GET, &uri))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], &bytes[..]);
}

// ---------------------------------------------------------------- held polls

#[tokio::test]
async fn held_poll_answers_304_when_the_etag_is_current_and_200_otherwise() {
    let (api, agent, _) = one_endpoint_one_set().await;
    let (work, etag) = api.work(&agent).await;
    assert_eq!(work, json!({"assignment": null}));
    let poll = |query: &str, etag: Option<&str>| {
        let mut builder = as_agent(&agent, Method::GET, &format!("/v1/agent/work{query}"));
        if let Some(etag) = etag {
            builder = builder.header(IF_NONE_MATCH, etag);
        }
        empty(builder)
    };

    // Held for `wait`, then "nothing new".
    let started = Instant::now();
    let (status, headers, body) = api.call_raw(poll("?wait=1", Some(&etag))).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(started.elapsed() >= Duration::from_secs(1), "answered after {:?}", started.elapsed());
    assert_eq!(headers[ETAG], etag.as_str());
    assert!(body.is_empty());

    // No wait: at once.
    let (status, _, _) = api.call_raw(poll("?wait=0", Some(&etag))).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);

    // Without the ETag, or with a stale one, the work itself at once.
    for known in [None, Some("\"stale\"")] {
        let started = Instant::now();
        let (status, headers, body) = api.call_raw(poll("?wait=20", known)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(headers[ETAG], etag.as_str());
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), work);
    }
}

#[tokio::test]
async fn held_poll_returns_as_soon_as_work_is_assigned() {
    let (api, agent, set) = one_endpoint_one_set().await;
    let (_, etag) = api.work(&agent).await;
    let held = {
        let app = api.app.clone();
        let req = as_agent(&agent, Method::GET, "/v1/agent/work?wait=25")
            .header(IF_NONE_MATCH, &etag)
            .body(Body::empty())
            .unwrap();
        tokio::spawn(async move { app.oneshot(req).await.unwrap() })
    };
    assert!(api.tick(set["id"].as_i64().unwrap()).await);
    api.state.announce_change();
    // Far below `wait`: the change, not the deadline, ends the poll.
    let response =
        tokio::time::timeout(Duration::from_secs(10), held).await.expect("the change wakes the poll").unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_ne!(response.headers()[ETAG], etag.as_str());
    let body: Value =
        serde_json::from_slice(&axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap()).unwrap();
    assert_eq!(body["assignment"]["set_name"], "s1");
}

// ---------------------------------------------------------------- routing

#[tokio::test]
async fn unknown_routes_answer_404_with_a_json_error() {
    let api = Api::new().await;
    for (method, uri) in [
        (Method::GET, "/"),
        (Method::GET, "/v2/sets"),
        (Method::GET, "/v1/agent"),
        (Method::GET, "/v1/sets/s1/pause/now"),
        (Method::POST, "/v1/enroll/extra"),
        (Method::DELETE, "/nothing/here"),
    ] {
        api.fails(empty(admin(method.clone(), uri)), StatusCode::NOT_FOUND, "not_found").await;
        api.fails(empty(anonymous(method, uri)), StatusCode::NOT_FOUND, "not_found").await;
    }
}

/// Requests whose query string or path parameter does not deserialize: refused by the
/// extractors before the handler runs, with the usual JSON error that says which part was bad.
#[tokio::test]
async fn malformed_query_strings_and_path_parameters_are_400_json_and_change_nothing() {
    let (api, agent, _) = one_endpoint_one_set().await;
    let before = api.snapshot().await;

    let cases: Vec<(&str, Request<Body>)> = vec![
        ("query string", empty(as_agent(&agent, Method::GET, "/v1/agent/work?wait=abc"))),
        ("query string", empty(as_agent(&agent, Method::GET, "/v1/agent/work?wait=-1"))),
        ("query string", admin(Method::PUT, "/v1/packages/app/3.0?color=red").body(Body::from("bytes")).unwrap()),
        ("path", admin(Method::PUT, "/v1/packages/app/%FF").body(Body::from("bytes")).unwrap()),
        ("path", empty(admin(Method::GET, "/v1/sets/%FF"))),
        ("path", empty(admin(Method::POST, "/v1/sets/%FF/cancel"))),
    ];
    for (part, req) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let message = api.fails(req, StatusCode::BAD_REQUEST, "bad_request").await;
        assert!(
            message.contains(&format!("invalid {part}")),
            "{what}: the message should name the bad {part}: {message}"
        );
    }
    assert_eq!(api.snapshot().await, before);
    assert_eq!(api.show_set("s1").await["state"], "active", "the refused cancel left the set alone");
}

/// A route called with a method it does not have: 405 with a JSON error, before any
/// credential is looked at.
#[tokio::test]
async fn wrong_methods_are_405_json_and_change_nothing() {
    let (api, agent, _) = one_endpoint_one_set().await;
    let before = api.snapshot().await;

    // Each request twice (a request cannot be cloned): once for the JSON error, once for the
    // `Allow` header that tells the client what the route does take.
    type Build = fn(&Agent) -> request::Builder;
    let cases: Vec<(&str, Build, &str)> = vec![
        ("DELETE /v1/sets", |_| admin(Method::DELETE, "/v1/sets"), "GET,HEAD,POST"),
        ("GET /v1/enroll-tokens", |_| admin(Method::GET, "/v1/enroll-tokens"), "POST"),
        ("GET /v1/sets/s1/cancel", |_| admin(Method::GET, "/v1/sets/s1/cancel"), "POST"),
        ("DELETE /v1/packages/app/2.0", |_| admin(Method::DELETE, "/v1/packages/app/2.0"), "PUT"),
        ("POST /v1/agent/work", |agent| as_agent(agent, Method::POST, "/v1/agent/work"), "GET,HEAD"),
        // Without any credential: the method is wrong whoever asks.
        ("POST /v1/agent/work, anonymous", |_| anonymous(Method::POST, "/v1/agent/work"), "GET,HEAD"),
        ("DELETE /v1/sets, anonymous", |_| anonymous(Method::DELETE, "/v1/sets"), "GET,HEAD,POST"),
    ];
    for (what, builder, allow) in cases {
        let message = api.fails(empty(builder(&agent)), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
        assert!(message.contains("method"), "{what}: {message}");
        let (_, headers, _) = api.call_raw(empty(builder(&agent))).await;
        assert_eq!(headers.get("allow").and_then(|v| v.to_str().ok()), Some(allow), "{what}");
    }
    assert_eq!(api.snapshot().await, before);
    assert_eq!(api.show_set("s1").await["state"], "active");
    assert!(before.packages.as_array().unwrap().iter().any(|p| p["id"] == "app@2.0"), "the DELETE left the package");
}

/// 2 MiB, axum's default limit for buffered bodies.
const JSON_LIMIT_BYTES: usize = 2 * 1024 * 1024;

/// `base` with `field` set to a string that makes the whole body `size` bytes long.
fn padded_to(base: &Value, field: &str, size: usize) -> Value {
    let without = with(base, json!({field: ""})).to_string().len();
    let body = with(base, json!({field: "a".repeat(size - without)}));
    assert_eq!(body.to_string().len(), size);
    body
}

#[tokio::test]
async fn json_bodies_over_2_mib_are_413_too_large_and_change_nothing() {
    let (api, agent, set) = one_endpoint_one_set().await;
    let set_id = set["id"].as_i64().unwrap();
    let before = api.snapshot().await;

    // Each route with a body template, the field to pad, and what it answers to a padded body
    // just under the limit: such a body is read and judged on its content, which shows that
    // the 413 is about the size alone.
    let routes = vec![
        (
            Method::POST,
            "/v1/enroll-tokens",
            json!({"uses": 1, "ttl_secs": 60}),
            "padding",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (Method::PUT, "/v1/agent/inventory", inventory_body(), "os", StatusCode::BAD_REQUEST, "bad_request"),
        // The set has not released the endpoint yet.
        (
            Method::POST,
            "/v1/agent/reports",
            report_body(set_id, 1, "attempt_started"),
            "reason",
            StatusCode::CONFLICT,
            "no_slot",
        ),
    ];
    let builder = |method: &Method, uri: &str| {
        if uri.starts_with("/v1/agent/") {
            as_agent(&agent, method.clone(), uri)
        } else {
            admin(method.clone(), uri)
        }
    };
    for (method, uri, template, field, under_status, under_code) in routes {
        for size in [JSON_LIMIT_BYTES + 1, 3 * JSON_LIMIT_BYTES / 2] {
            let body = padded_to(&template, field, size);
            let message =
                api.fails(json_req(builder(&method, uri), &body), StatusCode::PAYLOAD_TOO_LARGE, "too_large").await;
            assert!(message.contains("2 MiB"), "{method} {uri} with {size} bytes: {message}");
        }
        let body = padded_to(&template, field, JSON_LIMIT_BYTES - 1024);
        let message = api.fails(json_req(builder(&method, uri), &body), under_status, under_code).await;
        assert!(!message.contains("2 MiB"), "{method} {uri} just under the limit: {message}");
    }
    assert_eq!(api.snapshot().await, before);
}

// ---------------------------------------------------------------- happy path

#[tokio::test]
async fn upload_create_tick_then_the_agent_gets_its_assignment_and_reports_success() {
    let api = Api::new().await;
    let agent = api.enroll("web-1", json!({"site": "berlin"})).await;
    api.ok(json_req(as_agent(&agent, Method::PUT, "/v1/agent/inventory"), &inventory_body()), StatusCode::NO_CONTENT)
        .await;
    let bytes = b"app 2.0 payload";
    let package = api.upload("app", "2.0", bytes).await;
    assert_eq!(package["id"], "app@2.0");
    let set = api
        .create_set(&with(&set_body("s1", "site=berlin"), json!({"backoff_secs": 5, "step_timeout_secs": 60})))
        .await;
    let set_id = set["id"].as_i64().unwrap();
    assert_eq!(set["counts"]["pending"], 1);

    let (work, _) = api.work(&agent).await;
    assert_eq!(work, json!({"assignment": null}), "nothing before the scheduler releases the endpoint");
    assert!(api.tick(set_id).await);
    let (work, _) = api.work(&agent).await;
    let sha256 = sha256_hex(bytes);
    let expected = json!({
        "set_id": set_id,
        "set_name": "s1",
        "product": "app",
        "version": "2.0",
        "module": "files",
        "sha256": sha256,
        "size": bytes.len(),
        "download_path": format!("/v1/agent/packages/{sha256}"),
        "max_attempts": 3,
        "backoff_initial_secs": 5,
        "backoff_max_secs": 80,
        "step_timeout_secs": 60,
    });
    // Field by field, so that a field added to the protocol does not break this test.
    for (field, value) in expected.as_object().unwrap() {
        assert_eq!(&work["assignment"][field], value, "assignment field `{field}` in {work}");
    }
    let download_path = work["assignment"]["download_path"].as_str().unwrap();
    let (status, _, downloaded) = api.call_raw(empty(as_agent(&agent, Method::GET, download_path))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&downloaded[..], bytes);

    let post = |body: &Value| json_req(as_agent(&agent, Method::POST, "/v1/agent/reports"), body);
    for kind in ["attempt_started", "attempt_started", "succeeded", "succeeded"] {
        // Each report twice: the repeat is accepted and changes nothing.
        assert_eq!(api.ok(post(&report_body(set_id, 1, kind)), StatusCode::OK).await, json!({"accepted": true}));
    }
    let (work, _) = api.work(&agent).await;
    assert_eq!(work, json!({"assignment": null}));
    let shown = api.show_set("s1").await;
    assert_eq!(shown["counts"]["succeeded"], 1);
    assert_eq!(shown["endpoints"][0]["attempts"], 1);
    let detail = api.ok(empty(admin(Method::GET, &format!("/v1/endpoints/{}", agent.id))), StatusCode::OK).await;
    let history = detail["history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["outcome"], "succeeded");
    assert_eq!(history[0]["set"], "s1");
}

#[tokio::test]
async fn enrolling_again_with_the_same_key_returns_the_same_endpoint() {
    let api = Api::new().await;
    // One use only: a retry after a lost answer must not need a second one.
    let req = api.enroll_request("host-a", json!({"site": "hq"})).await;
    let first =
        agent_from_enrollment(&api.ok(json_req(anonymous(Method::POST, "/v1/enroll"), &req), StatusCode::OK).await);
    let again =
        agent_from_enrollment(&api.ok(json_req(anonymous(Method::POST, "/v1/enroll"), &req), StatusCode::OK).await);
    assert_eq!(again.id, first.id, "the same endpoint");
    assert_ne!(again.fingerprint, first.fingerprint, "a new certificate");
    let endpoints = api.ok(empty(admin(Method::GET, "/v1/endpoints")), StatusCode::OK).await;
    assert_eq!(endpoints.as_array().unwrap().len(), 1, "no second endpoint: {endpoints}");
    // The new certificate works; the one whose answer was lost no longer does.
    api.ok(empty(as_agent(&again, Method::GET, "/v1/agent/work")), StatusCode::OK).await;
    api.fails(empty(as_agent(&first, Method::GET, "/v1/agent/work")), StatusCode::UNAUTHORIZED, "unknown_certificate")
        .await;
    // Another key with the spent token is still refused.
    let mut other = api.enroll_request("host-b", json!({})).await;
    other["token"] = req["token"].clone();
    api.fails(json_req(anonymous(Method::POST, "/v1/enroll"), &other), StatusCode::UNAUTHORIZED, "enroll_refused")
        .await;
    // The same key with an unknown token is refused too.
    let mut wrong = req.clone();
    wrong["token"] = json!("not-a-token");
    api.fails(json_req(anonymous(Method::POST, "/v1/enroll"), &wrong), StatusCode::UNAUTHORIZED, "enroll_refused")
        .await;
}

#[tokio::test]
async fn a_batch_enrolls_many_endpoints_each_with_its_own_certificate() {
    let api = Api::new().await;
    let (_key, csr_pem) = rollgate_pki::new_client_key_and_csr("bench").unwrap();
    let batch =
        |count: u32| json!({"csr_pem": csr_pem, "count": count, "hostname_prefix": "bench", "labels": {"site": "lab"}});
    let before = api.snapshot().await;
    api.fails(
        json_req(anonymous(Method::POST, "/v1/endpoints/batch"), &batch(5)),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    for count in [0, 10_001] {
        api.fails(
            json_req(admin(Method::POST, "/v1/endpoints/batch"), &batch(count)),
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
    }
    let mut bad_csr = batch(5);
    bad_csr["csr_pem"] = json!("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n");
    api.fails(json_req(admin(Method::POST, "/v1/endpoints/batch"), &bad_csr), StatusCode::BAD_REQUEST, "bad_request")
        .await;
    let mut bad_prefix = batch(5);
    bad_prefix["hostname_prefix"] = json!("../x");
    api.fails(
        json_req(admin(Method::POST, "/v1/endpoints/batch"), &bad_prefix),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    assert_eq!(api.snapshot().await, before, "refused batches store nothing");

    let body = api.ok(json_req(admin(Method::POST, "/v1/endpoints/batch"), &batch(20)), StatusCode::OK).await;
    let issued = body["endpoints"].as_array().unwrap();
    assert_eq!(issued.len(), 20);
    let listed = api.ok(empty(admin(Method::GET, "/v1/endpoints")), StatusCode::OK).await;
    assert_eq!(listed.as_array().unwrap().len(), 20);
    assert_eq!(listed[0]["labels"]["site"], "lab");
    let mut fingerprints = std::collections::HashSet::new();
    for e in issued {
        let id = e["id"].as_str().unwrap();
        let der = rollgate_pki::certs_from_pem(e["cert_pem"].as_str().unwrap()).unwrap();
        assert_eq!(rollgate_pki::endpoint_id_from_cert_der(&der[0]).unwrap(), id);
        let agent = Agent { id: id.to_string(), fingerprint: rollgate_pki::fingerprint_sha256(&der[0]) };
        assert!(fingerprints.insert(agent.fingerprint.clone()), "a certificate of its own");
        api.ok(empty(as_agent(&agent, Method::GET, "/v1/agent/work")), StatusCode::OK).await;
    }
}

/// The TUF routes: an operator publishes the root and a targets role signed offline; the
/// server adds its snapshot and timestamp; agents read metadata and targets. A targets role
/// signed with another key is refused with the reason.
#[tokio::test]
async fn tuf_roots_and_targets_signed_offline_are_published_for_agents() {
    let api = Api::new().await;
    let operator = api.dir.path().join("operator");
    let root_bytes = std::fs::read(operator.join("1.root.json")).unwrap();
    let package = b"agent 2.0.0 bytes".to_vec();
    api.upload("agent", "2.0.0", &package).await;
    let agent = api.enroll("tuf-host", json!({})).await;

    // Targets before any root: refused, and anonymous callers cannot publish at all.
    let pkg_file = api.dir.path().join("agent-2.0.0.pkg");
    std::fs::write(&pkg_file, &package).unwrap();
    api.fails(raw_bytes(anonymous(Method::PUT, "/v1/tuf/root"), &root_bytes), StatusCode::UNAUTHORIZED, "unauthorized")
        .await;
    let body = api.ok(raw_bytes(admin(Method::PUT, "/v1/tuf/root"), &root_bytes), StatusCode::OK).await;
    assert_eq!(body["root_version"], 1);

    let root: tough::schema::Signed<tough::schema::Root> = serde_json::from_slice(&root_bytes).unwrap();
    let release = rollgate_tuf::release::Release {
        product: "agent".into(),
        version: "2.0.0".into(),
        module: "files".into(),
        release: 2,
        hardware: vec![],
        os: vec![],
        rollback: false,
    };
    let additions = [rollgate_tuf::targets::Addition { package: &pkg_file, release }];
    let now = jiff::Timestamp::now();
    // Signed with the snapshot key (which the server holds): refused, with the reason.
    let forged =
        rollgate_tuf::targets::sign(&root, None, &additions, &operator.join("keys/snapshot.der"), 90, now).await;
    assert!(forged.is_err(), "tough refuses to sign targets with a key root does not list for them");
    let (_, signed) = rollgate_tuf::targets::sign(&root, None, &additions, &operator.join("keys/targets.der"), 90, now)
        .await
        .unwrap();
    let mut tampered: Value = serde_json::from_slice(&signed).unwrap();
    tampered["signed"]["targets"]["agent-2.0.0"]["length"] = json!(1);
    let message = api
        .fails(
            raw_bytes(admin(Method::PUT, "/v1/tuf/targets"), tampered.to_string().as_bytes()),
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
    assert!(message.contains("not signed by a threshold"), "{message}");
    let body = api.ok(raw_bytes(admin(Method::PUT, "/v1/tuf/targets"), &signed), StatusCode::OK).await;
    assert_eq!(body, json!({"targets_version": 1, "snapshot_version": 1, "timestamp_version": 1}));

    // Agents read what was published; the targets role is served byte for byte.
    let (status, headers, bytes) =
        api.call_raw(empty(as_agent(&agent, Method::GET, "/v1/tuf/metadata/1.targets.json"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes.as_ref(), signed.as_slice());
    assert!(headers[axum::http::header::CACHE_CONTROL].to_str().unwrap().contains("immutable"));
    let (status, headers, _) =
        api.call_raw(empty(as_agent(&agent, Method::GET, "/v1/tuf/metadata/timestamp.json"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[axum::http::header::CACHE_CONTROL], "no-store");
    let target = format!("/v1/tuf/targets/{}.agent-2.0.0", sha256_hex(&package));
    let (status, _, bytes) = api.call_raw(empty(as_agent(&agent, Method::GET, &target))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes.as_ref(), package.as_slice());
    api.fails(
        empty(as_agent(&agent, Method::GET, "/v1/tuf/metadata/..%2Fsecret.key")),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    api.fails(
        empty(anonymous(Method::GET, "/v1/tuf/metadata/timestamp.json")),
        StatusCode::UNAUTHORIZED,
        "client_certificate_required",
    )
    .await;
}

fn raw_bytes(builder: request::Builder, bytes: &[u8]) -> Request<Body> {
    builder.body(Body::from(bytes.to_vec())).unwrap()
}
