//! The feed API (admin): add a feed, list feeds with their last run, run one now, its runs.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use rollgate_store::{FeedRecord, FeedRun};
use rollgate_wire::{CreateFeed, FeedRunView, FeedView};

use super::{now_ms, rfc3339, Admin, ApiError, JsonBody, PathParams};
use crate::AppState;

/// Shortest interval between runs: providers ask clients not to poll more often than hourly,
/// but tests and private mirrors need less.
const MIN_INTERVAL_SECS: u64 = 60;

fn run_view(r: FeedRun) -> FeedRunView {
    FeedRunView {
        feed: r.feed,
        started_at: rfc3339(r.started_at),
        finished_at: rfc3339(r.finished_at),
        requests: r.requests,
        downloaded: r.downloaded,
        imported: r.imported,
        unchanged: r.unchanged,
        failed: r.failed,
        errors: r.errors,
    }
}

/// `POST /v1/feeds`.
pub async fn create(
    State(state): State<AppState>,
    _: Admin,
    JsonBody(req): JsonBody<CreateFeed>,
) -> Result<(StatusCode, Json<FeedView>), ApiError> {
    rollgate_core::names::validate("feed", &req.name).map_err(ApiError::bad_request)?;
    match req.kind.as_str() {
        "csaf" | "osv" if !req.url.starts_with("https://") => {
            return Err(ApiError::bad_request("a csaf or osv feed needs an https:// URL"));
        }
        "csaf" | "osv" => {}
        "dir" if !std::path::Path::new(&req.url).is_absolute() => {
            return Err(ApiError::bad_request("a dir feed needs an absolute directory path on the server"));
        }
        "dir" => {}
        other => return Err(ApiError::bad_request(format!("unknown kind `{other}`: use csaf, osv or dir"))),
    }
    if req.interval_secs < MIN_INTERVAL_SECS {
        return Err(ApiError::bad_request(format!("the interval must be at least {MIN_INTERVAL_SECS} s")));
    }
    if let Some(pem) = &req.ca_pem {
        reqwest::Certificate::from_pem(pem.as_bytes())
            .map_err(|e| ApiError::bad_request(format!("the CA is not a PEM certificate: {e}")))?;
    }
    let now = now_ms();
    let feed = FeedRecord {
        name: req.name,
        kind: req.kind,
        url: req.url,
        ca_pem: req.ca_pem,
        interval_secs: req.interval_secs,
        next_run_at: now,
        created_at: now,
    };
    state.store.create_feed(&feed).await?;
    Ok((StatusCode::CREATED, Json(view(feed, None))))
}

fn view(f: FeedRecord, last_run: Option<FeedRunView>) -> FeedView {
    FeedView {
        name: f.name,
        kind: f.kind,
        url: f.url,
        interval_secs: f.interval_secs,
        next_run_at: rfc3339(f.next_run_at),
        last_run,
    }
}

/// `GET /v1/feeds`.
pub async fn list(State(state): State<AppState>, _: Admin) -> Result<Json<Vec<FeedView>>, ApiError> {
    let mut out = Vec::new();
    for feed in state.store.list_feeds().await? {
        let last = state.store.feed_runs(&feed.name, 1).await?.into_iter().next().map(run_view);
        out.push(view(feed, last));
    }
    Ok(Json(out))
}

/// `POST /v1/feeds/{name}/run`: runs the feed now and answers with the run.
pub async fn run_now(
    State(state): State<AppState>,
    _: Admin,
    PathParams(name): PathParams<String>,
) -> Result<Json<FeedRunView>, ApiError> {
    let feed = state.store.get_feed(&name).await?;
    let busy =
        || ApiError::new(StatusCode::CONFLICT, "feed_running", format!("feed {name} is running now; try again later"));
    let _running = crate::feeds::Running::claim(&name).ok_or_else(busy)?;
    if !crate::feeds::take_lease(&state, &name).await? {
        return Err(busy());
    }
    let run = crate::feeds::run_feed(&state, &feed).await;
    crate::feeds::release_lease(&state, &name).await;
    Ok(Json(run_view(run)))
}

/// `GET /v1/feeds/{name}/runs`: the newest 50 runs.
pub async fn runs(
    State(state): State<AppState>,
    _: Admin,
    PathParams(name): PathParams<String>,
) -> Result<Json<Vec<FeedRunView>>, ApiError> {
    state.store.get_feed(&name).await?;
    Ok(Json(state.store.feed_runs(&name, 50).await?.into_iter().map(run_view).collect()))
}
