//! The management API: enrollment tokens, packages, Upgrade Sets and endpoints. Every route
//! needs the admin token.

use std::collections::HashSet;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::Json;
use jiff::Timestamp;
use rollgate_core::selector::Selector;
use rollgate_core::set::SetEvent;
use rollgate_core::window::Window;
use rollgate_store::{NewSet, PackageRecord, SetRecord, StoreError};
use rollgate_wire::{
    AttemptView, CreateEnrollToken, CreateSet, EndpointDetail, EndpointView, EnrollTokenCreated, OpenAdvisory,
    PackageInfo, SetCounts, SetEndpointView, SetView,
};
use serde::Deserialize;

use super::{now_ms, rfc3339, validate_product, Admin, ApiError, JsonBody, PathParams, QueryParams};
use crate::bootstrap::{new_secret, secret_hash};
use crate::packages::UploadError;
use crate::AppState;

/// Longest an enrollment token may live: a leaked token must not enroll machines for years.
const MAX_TOKEN_TTL_SECS: u64 = 90 * 24 * 3600;

/// `POST /v1/enroll-tokens`.
pub async fn create_enroll_token(
    State(state): State<AppState>,
    _: Admin,
    JsonBody(req): JsonBody<CreateEnrollToken>,
) -> Result<Json<EnrollTokenCreated>, ApiError> {
    if req.uses == 0 || req.uses > 1_000_000 {
        return Err(ApiError::bad_request("uses must be 1 to 1000000"));
    }
    if req.ttl_secs == 0 || req.ttl_secs > MAX_TOKEN_TTL_SECS {
        return Err(ApiError::bad_request(format!("ttl must be 1 s to {MAX_TOKEN_TTL_SECS} s (90 days)")));
    }
    let token = new_secret();
    let now = now_ms();
    let ttl = jiff::SignedDuration::from_secs(i64::try_from(req.ttl_secs).unwrap_or(i64::MAX));
    let expires_at = now.checked_add(ttl).map_err(|e| ApiError::bad_request(format!("bad ttl: {e}")))?;
    state.store.create_enroll_token(&secret_hash(&token), req.uses, expires_at, now).await?;
    Ok(Json(EnrollTokenCreated { token, uses: req.uses, expires_at: rfc3339(expires_at) }))
}

fn package_info(p: PackageRecord) -> PackageInfo {
    PackageInfo {
        id: format!("{}@{}", p.product, p.version),
        product: p.product,
        version: p.version,
        sha256: p.sha256,
        size: p.size,
        module: p.module,
        min_from: p.min_from,
        created_at: rfc3339(p.created_at),
    }
}

/// `GET /v1/packages`.
pub async fn list_packages(State(state): State<AppState>, _: Admin) -> Result<Json<Vec<PackageInfo>>, ApiError> {
    Ok(Json(state.store.list_packages().await?.into_iter().map(package_info).collect()))
}

/// Query of the package upload.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    module: Option<String>,
    min_from: Option<String>,
}

/// `PUT /v1/packages/{product}/{version}?module=files&min_from=1.0`, body = the bytes,
/// header `X-Rollgate-Sha256` = what the client computed.
pub async fn upload_package(
    State(state): State<AppState>,
    _: Admin,
    PathParams((product, version)): PathParams<(String, String)>,
    QueryParams(q): QueryParams<UploadQuery>,
    request: Request,
) -> Result<(StatusCode, Json<PackageInfo>), ApiError> {
    validate_product(&product)?;
    rollgate_core::version::validate(&version).map_err(ApiError::bad_request)?;
    let module = q.module.unwrap_or_else(|| "files".to_string());
    if module != "files" && module != "script" {
        return Err(ApiError::bad_request(format!("unknown module `{module}`: use files or script")));
    }
    if let Some(min) = &q.min_from {
        rollgate_core::version::validate(min).map_err(ApiError::bad_request)?;
    }
    let declared =
        request.headers().get("x-rollgate-sha256").and_then(|v| v.to_str().ok()).map(str::to_ascii_lowercase);
    if let Some(d) = &declared {
        if !crate::packages::is_sha256_hex(d) {
            return Err(ApiError::bad_request("X-Rollgate-Sha256 must be 64 hex digits"));
        }
    }
    match state.store.get_package(&product, &version).await {
        Ok(_) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("package {product}@{version} exists already; versions are immutable"),
            ))
        }
        Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let body = request.into_body().into_data_stream();
    let stored =
        state.packages.store(body, declared.as_deref(), state.config.max_package_bytes).await.map_err(|e| match e {
            UploadError::TooLarge { .. } => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string()),
            UploadError::Io(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
            _ => ApiError::bad_request(e.to_string()),
        })?;
    let record = PackageRecord {
        product,
        version,
        module,
        sha256: stored.sha256.clone(),
        size: stored.size,
        min_from: q.min_from,
        created_at: now_ms(),
    };
    // If the row is refused, the bytes stay: another upload may name the same bytes at this
    // moment. Unreferenced bytes are collected at start-up (`PackageStore::collect_garbage`).
    state.store.insert_package(&record).await?;
    Ok((StatusCode::CREATED, Json(package_info(record))))
}

fn bounded(name: &str, value: u64, min: u64, max: u64) -> Result<u64, ApiError> {
    if value < min || value > max {
        return Err(ApiError::bad_request(format!("{name} must be {min} to {max}, not {value}")));
    }
    Ok(value)
}

/// `POST /v1/sets`.
pub async fn create_set(
    State(state): State<AppState>,
    _: Admin,
    JsonBody(req): JsonBody<CreateSet>,
) -> Result<(StatusCode, Json<SetView>), ApiError> {
    rollgate_core::names::validate("set", &req.name).map_err(ApiError::bad_request)?;
    let package = state.store.get_package(&req.product, &req.version).await.map_err(|e| match e {
        StoreError::NotFound(what) => {
            ApiError::bad_request(format!("{what} not found: add it first with `rollgate packages add`"))
        }
        other => other.into(),
    })?;
    let selector = Selector::parse(&req.target).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let window = req
        .window
        .as_deref()
        .map(Window::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("bad window: {e}")))?;
    let start_at = req.start_at.as_deref().map(parse_time).transpose()?;
    let max_in_flight = bounded("max-in-flight", u64::from(req.max_in_flight), 1, 100_000)? as u32;
    let max_attempts =
        bounded("max-attempts", u64::from(req.max_attempts), 1, u64::from(rollgate_core::policy::MAX_ATTEMPTS_LIMIT))?
            as u32;
    let backoff_secs = bounded("backoff", req.backoff_secs.unwrap_or(10), 0, 3600)?;
    let stuck_timeout_secs = bounded("stuck timeout", req.stuck_timeout_secs.unwrap_or(1800), 5, 7 * 24 * 3600)?;
    let step_timeout_secs = bounded("step timeout", req.step_timeout_secs.unwrap_or(300), 1, 24 * 3600)?;

    let endpoints = state.store.list_endpoints().await?;
    if let Selector::Ids(ids) = &selector {
        let known: HashSet<&str> = endpoints.iter().map(|e| e.id.as_str()).collect();
        let unknown: Vec<&str> = ids.iter().map(String::as_str).filter(|id| !known.contains(id)).collect();
        if !unknown.is_empty() {
            return Err(ApiError::bad_request(format!("unknown endpoint id(s): {}", unknown.join(", "))));
        }
    }
    let targeted: Vec<String> =
        endpoints.iter().filter(|e| selector.matches(&e.id, &e.labels)).map(|e| e.id.clone()).collect();
    if targeted.is_empty() {
        return Err(ApiError::bad_request(format!("target `{selector}` matches no enrolled endpoint")));
    }
    let seed = req.seed.unwrap_or_else(rand::random);
    let order = rollgate_core::order::release_order(seed, &targeted);
    let members: Vec<(String, u32)> = order.into_iter().enumerate().map(|(rank, id)| (id, rank as u32)).collect();
    let spec = NewSet {
        name: req.name,
        product: package.product,
        version: package.version,
        selector: selector.to_string(),
        max_in_flight,
        max_attempts,
        start_at,
        window: window.map(|w| w.spec()),
        seed,
        backoff_secs,
        stuck_timeout_secs,
        step_timeout_secs,
        watch_secs: 0,
    };
    let record = state.store.create_set(&spec, &members, now_ms()).await?;
    state.wake_scheduler.notify_one();
    Ok((StatusCode::CREATED, Json(set_view(&state, record).await?)))
}

fn parse_time(text: &str) -> Result<Timestamp, ApiError> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    // A zoned form such as `2026-12-01T02:00[Europe/Berlin]`.
    text.parse::<jiff::Zoned>().map(|z| z.timestamp()).map_err(|e| {
        ApiError::bad_request(format!(
            "bad start time `{text}`: use RFC 3339 like 2026-12-01T02:00:00Z or 2026-12-01T02:00[Europe/Berlin] ({e})"
        ))
    })
}

async fn set_view(state: &AppState, set: SetRecord) -> Result<SetView, ApiError> {
    let members = state.store.set_members(set.id).await?;
    let mut counts = SetCounts::default();
    let mut endpoints = Vec::with_capacity(members.len());
    for m in members {
        let bucket = m.member.state.count_bucket();
        match bucket {
            "pending" => counts.pending += 1,
            "in_progress" => counts.in_progress += 1,
            "succeeded" => counts.succeeded += 1,
            "rolled_back" => counts.rolled_back += 1,
            _ => counts.failed += 1,
        }
        endpoints.push(SetEndpointView {
            id: m.endpoint_id,
            state: bucket.to_string(),
            attempts: m.member.attempts,
            reason: m.member.reason,
        });
    }
    Ok(SetView {
        id: set.id,
        name: set.spec.name,
        state: set.state.to_string(),
        state_reason: set.state_reason,
        product: set.spec.product,
        version: set.spec.version,
        target: set.spec.selector,
        max_in_flight: set.spec.max_in_flight,
        max_attempts: set.spec.max_attempts,
        seed: set.spec.seed,
        start_at: set.spec.start_at.map(rfc3339),
        window: set.spec.window,
        counts,
        endpoints,
    })
}

/// `GET /v1/sets`.
pub async fn list_sets(State(state): State<AppState>, _: Admin) -> Result<Json<Vec<SetView>>, ApiError> {
    let mut out = Vec::new();
    for set in state.store.list_sets().await? {
        out.push(set_view(&state, set).await?);
    }
    Ok(Json(out))
}

/// `GET /v1/sets/{name}`.
pub async fn show_set(
    State(state): State<AppState>,
    _: Admin,
    PathParams(name): PathParams<String>,
) -> Result<Json<SetView>, ApiError> {
    let set = state.store.get_set_by_name(&name).await?;
    Ok(Json(set_view(&state, set).await?))
}

/// `POST /v1/sets/{name}/pause|resume|cancel`.
pub async fn set_action(
    State(state): State<AppState>,
    _: Admin,
    PathParams((name, action)): PathParams<(String, String)>,
) -> Result<Json<SetView>, ApiError> {
    let (event, reason) = match action.as_str() {
        "pause" => (SetEvent::Pause, "paused by an operator"),
        "resume" => (SetEvent::Resume, "resumed by an operator"),
        "cancel" => (SetEvent::Cancel, "cancelled by an operator"),
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("unknown set action `{other}`: use pause, resume or cancel"),
            ))
        }
    };
    let set = state.store.change_set_state(&name, event, reason, now_ms()).await?;
    state.wake_scheduler.notify_one();
    state.announce_change();
    Ok(Json(set_view(&state, set).await?))
}

fn endpoint_view(e: rollgate_store::EndpointRecord) -> EndpointView {
    EndpointView {
        id: e.id,
        hostname: e.hostname,
        os: e.os,
        labels: e.labels,
        products: e.products,
        last_seen: e.last_seen.map(rfc3339),
    }
}

/// `GET /v1/endpoints`.
pub async fn list_endpoints(State(state): State<AppState>, _: Admin) -> Result<Json<Vec<EndpointView>>, ApiError> {
    Ok(Json(state.store.list_endpoints().await?.into_iter().map(endpoint_view).collect()))
}

/// `GET /v1/endpoints/{id}`.
pub async fn show_endpoint(
    State(state): State<AppState>,
    _: Admin,
    PathParams(id): PathParams<String>,
) -> Result<Json<EndpointDetail>, ApiError> {
    let endpoint = state.store.get_endpoint(&id).await?;
    let enrolled_at = rfc3339(endpoint.enrolled_at);
    let history = state
        .store
        .history(&id)
        .await?
        .into_iter()
        .map(|a| AttemptView {
            set: a.set_name,
            attempt: a.attempt,
            product: a.product,
            from_version: a.from_version,
            to_version: a.to_version,
            started_at: rfc3339(a.started_at),
            finished_at: a.finished_at.map(rfc3339),
            outcome: a.outcome,
            reason: a.reason,
        })
        .collect();
    let packages = state.store.endpoint_software(&id).await?.len();
    let mut vulnerabilities: Vec<OpenAdvisory> = crate::vulnerabilities::open_for(&*state.store, &endpoint)
        .await?
        .into_iter()
        .map(|(a, found)| OpenAdvisory {
            publisher: a.publisher.clone(),
            max_score: a.max_score(),
            cves: a.vulnerability_ids(),
            findings: found.iter().filter_map(|f| serde_json::to_value(f).ok()).collect(),
            id: a.id,
            title: a.title,
            rating: a.rating,
        })
        .collect();
    vulnerabilities.sort_by(|a, b| b.max_score.partial_cmp(&a.max_score).unwrap_or(std::cmp::Ordering::Equal));
    let platform = endpoint.os_id.as_ref().map(|id| match &endpoint.os_version {
        Some(version) => format!("{id} {version}"),
        None => id.clone(),
    });
    Ok(Json(EndpointDetail {
        endpoint: endpoint_view(endpoint),
        enrolled_at,
        history,
        platform,
        packages,
        vulnerabilities,
    }))
}
