//! The TUF routes: operators publish roots and targets roles signed offline (admin), agents
//! read the metadata and the targets (mutual TLS).

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tower::ServiceExt;

use super::{AgentId, ApiError, PathParams};
use crate::AppState;

/// Largest root.json accepted (the agents' limit too).
pub const MAX_ROOT_BYTES: usize = 512 * 1024;
/// Largest targets.json accepted (the agents' limit too).
pub const MAX_TARGETS_BYTES: usize = 16 * 1024 * 1024;

/// `PUT /v1/tuf/root` (admin): adds a signed root to the chain.
pub async fn put_root(State(state): State<AppState>, _: super::Admin, body: Bytes) -> Result<Response, ApiError> {
    let version = state.tuf.add_root(&body).await.map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Json(serde_json::json!({ "root_version": version })).into_response())
}

/// `PUT /v1/tuf/targets` (admin): publishes a targets role signed with the offline targets key,
/// with a new snapshot and timestamp.
pub async fn put_targets(State(state): State<AppState>, _: super::Admin, body: Bytes) -> Result<Response, ApiError> {
    match state.tuf.publish_targets(&body).await {
        Ok(published) => Ok(Json(serde_json::json!({
            "targets_version": published.targets,
            "snapshot_version": published.snapshot,
            "timestamp_version": published.timestamp,
        }))
        .into_response()),
        Err(e @ crate::tuf::PublishError::NoKeys) => {
            Err(ApiError::new(StatusCode::CONFLICT, "no_online_keys", e.to_string()))
        }
        Err(e) => Err(ApiError::bad_request(e.to_string())),
    }
}

/// `GET /v1/tuf/metadata/{name}` (agents): a metadata file. Versioned files never change, so
/// they may be cached for good; `timestamp.json` must not be cached.
pub async fn metadata(
    State(state): State<AppState>,
    AgentId(_id): AgentId,
    PathParams(name): PathParams<String>,
) -> Result<Response, ApiError> {
    let Some(bytes) = state.tuf.metadata(&name) else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no TUF metadata {name}")));
    };
    let cache = if name == "timestamp.json" { "no-store" } else { "public, max-age=31536000, immutable" };
    Ok(([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, cache)], bytes).into_response())
}

/// `GET /v1/tuf/targets/{sha256}.{name}` (agents): target bytes, from the content-addressed
/// package store (consistent snapshots name targets by their hash).
pub async fn target(
    State(state): State<AppState>,
    AgentId(_id): AgentId,
    PathParams(name): PathParams<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no target {name}"));
    let (sha256, _target) = name.split_once('.').ok_or_else(not_found)?;
    if !crate::packages::is_sha256_hex(sha256) || !state.store.package_sha_exists(sha256).await? {
        return Err(not_found());
    }
    let response = tower_http::services::ServeFile::new(state.packages.path_of(sha256))
        .oneshot(request)
        .await
        .map_err(|e| anyhow::anyhow!("serving a target: {e}"))?;
    Ok(response.into_response())
}
