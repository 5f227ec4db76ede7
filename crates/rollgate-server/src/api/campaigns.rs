//! The campaign API (admin): apply a campaign file (TOML, validated by
//! `rollgate_core::campaign::spec`), list campaigns, show one with a preview of its next month.
//!
//! The preview computes, from the stored advisories, what the next month to start would collect;
//! the months themselves are created and driven by [`crate::campaign_months`], and their views
//! and commands live in [`super::campaign_months`].

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use jiff::Timestamp;
use rollgate_core::campaign::schedule::{advisory_window, first_month, month_start};
use rollgate_core::campaign::spec::ValidCampaign;
use rollgate_store::StoreError;
use rollgate_wire::{
    CampaignAdvisory, CampaignApplied, CampaignDetail, CampaignMonthBrief, CampaignPreview, CampaignStepView,
    CampaignSummary,
};
use serde::Deserialize;

use super::{now_ms, rfc3339, Admin, ApiError, PathParams, QueryParams};
use crate::AppState;

/// Largest campaign file accepted: a campaign of the maximum steps, products and recipients fits
/// well within it.
pub const MAX_SPEC_BYTES: usize = 256 * 1024;

/// Query of `PUT /v1/campaigns/{name}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyQuery {
    /// Validate and preview, store nothing.
    #[serde(default)]
    dry_run: bool,
}

use crate::campaign_months::parse;

/// `PUT /v1/campaigns/{name}?dry_run=…`, body = the campaign's TOML text.
pub async fn apply(
    State(state): State<AppState>,
    _: Admin,
    PathParams(name): PathParams<String>,
    QueryParams(q): QueryParams<ApplyQuery>,
    body: Bytes,
) -> Result<Json<CampaignApplied>, ApiError> {
    let text = std::str::from_utf8(&body).map_err(|e| ApiError::bad_request(format!("the file is not UTF-8: {e}")))?;
    let campaign =
        parse(text).map_err(|problems| ApiError::new(StatusCode::BAD_REQUEST, "invalid_campaign", problems))?;
    if campaign.name() != name {
        return Err(ApiError::bad_request(format!(
            "the file names campaign `{}` but was applied as `{name}`",
            campaign.name()
        )));
    }
    let now = now_ms();
    let (created, changed, created_at) = match state.store.get_campaign(&name).await {
        Ok(stored) => (false, stored.spec != text, stored.created_at),
        Err(StoreError::NotFound(_)) => (true, true, now),
        Err(e) => return Err(e.into()),
    };
    if !q.dry_run && changed {
        state.store.put_campaign(&name, text, now).await?;
    }
    let preview = preview(&state, &campaign, created_at, now).await?;
    Ok(Json(CampaignApplied { created, changed, dry_run: q.dry_run, preview }))
}

/// `GET /v1/campaigns`.
pub async fn list(State(state): State<AppState>, _: Admin) -> Result<Json<Vec<CampaignSummary>>, ApiError> {
    let campaigns = state.store.list_campaigns().await?;
    Ok(Json(
        campaigns.into_iter().map(|c| CampaignSummary { name: c.name, updated_at: rfc3339(c.updated_at) }).collect(),
    ))
}

/// `GET /v1/campaigns/{name}`.
pub async fn show(
    State(state): State<AppState>,
    _: Admin,
    PathParams(name): PathParams<String>,
) -> Result<Json<CampaignDetail>, ApiError> {
    let stored = state.store.get_campaign(&name).await?;
    // The text was valid when applied; a later, stricter validator could reject it.
    let campaign = parse(&stored.spec)
        .map_err(|p| anyhow::anyhow!("stored campaign `{name}` no longer validates: {}", p.replace('\n', "; ")))?;
    let steps = campaign
        .steps()
        .iter()
        .map(|s| CampaignStepView {
            name: s.name().to_string(),
            targets: s.targets().to_string(),
            max_in_flight: s.max_in_flight(),
            soak_secs: s.soak_secs(),
            progression: s.progression().as_str().to_string(),
        })
        .collect();
    let preview = preview(&state, &campaign, stored.created_at, now_ms()).await?;
    let months = crate::campaign_months::load_months(&*state.store, &name)
        .await?
        .into_iter()
        .map(|l| CampaignMonthBrief {
            month: l.row.month.clone(),
            start_at: rfc3339(l.month.start_at()),
            requested: l.month.requested().as_str().to_owned(),
            effective: l.month.effective().as_str().to_owned(),
            step: l.month.current_step().name.clone(),
            reason: l.month.reason().to_owned(),
        })
        .collect();
    Ok(Json(CampaignDetail {
        name: stored.name,
        spec: stored.spec,
        created_at: rfc3339(stored.created_at),
        updated_at: rfc3339(stored.updated_at),
        steps,
        preview,
        months,
    }))
}

/// The next month of `campaign` to start at or after `now`, given that it was first applied at
/// `created_at`, and the stored advisories that month collects.
async fn preview(
    state: &AppState,
    campaign: &ValidCampaign,
    created_at: Timestamp,
    now: Timestamp,
) -> Result<CampaignPreview, ApiError> {
    let schedule = |e: rollgate_core::campaign::schedule::ScheduleError| ApiError::bad_request(e.to_string());
    let first = first_month(campaign, created_at).map_err(schedule)?;
    let month = first_month(campaign, now).map_err(schedule)?.max(first);
    let start_at = month_start(campaign, month).map_err(schedule)?;
    let window = advisory_window(campaign, month, first).map_err(schedule)?;
    let advisories = crate::campaign_months::collected(&*state.store, campaign, month, first)
        .await?
        .iter()
        .map(|r| CampaignAdvisory {
            id: r.id.clone(),
            publisher: r.publisher.clone(),
            title: r.title.clone(),
            rating: r.rating.clone(),
            #[allow(clippy::cast_precision_loss)]
            max_score: r.max_score_tenths.map(|t| t as f64 / 10.0),
        })
        .collect();
    Ok(CampaignPreview {
        month: month.to_string(),
        start_at: rfc3339(start_at),
        window_from: rfc3339(window.from),
        window_to: rfc3339(window.to),
        advisories,
    })
}
