//! The campaign month API (admin, and one agent route): views of months and devices, the
//! operator's commands (start early, pause, resume, stop, approve or retry a step, decide on a
//! vulnerability, report a bad patch), and the agents' patch-health reports.
//!
//! Every command reads the month with its version, applies the event through the core and
//! writes back only if nobody wrote in between; on such a conflict (the driver moved the month
//! meanwhile) it reads again and retries, a few times, so an operator never sees a spurious
//! failure and never overwrites a newer state.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use jiff::Timestamp;
use rollgate_core::campaign::dispatch;
use rollgate_core::campaign::gate;
use rollgate_core::campaign::month::{MonthError, MonthEvent, MonthState, StepPhase, VulnDecision};
use rollgate_core::campaign::schedule::{first_month, YearMonth};
use rollgate_core::member::MemberState;
use rollgate_store::{PatchHealthRow, StoreError};
use rollgate_wire::{
    BadPatchReport, CampaignCommandDone, CampaignDeviceView, CampaignMonthStep, CampaignMonthView, CampaignMonthVuln,
    CampaignTransitionView, PatchHealth,
};
use serde::Deserialize;

use super::{now_ms, rfc3339, Admin, AgentId, ApiError, JsonBody, PathParams, QueryParams};
use crate::campaign_months::{is_conflict, load_months, parse, save_decision, Ctx, Loaded, StepStanding};
use crate::AppState;

/// How often a command re-reads and retries after the month changed under it.
const COMMAND_ATTEMPTS: usize = 5;

/// `?month=YYYY-MM` of the commands; the campaign's latest month when absent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonthQuery {
    month: Option<String>,
}

/// Maps a driver error to the API: refusals by the month are 409 with the month's words.
fn driver_error(e: anyhow::Error) -> ApiError {
    if let Some(refused) = e.downcast_ref::<MonthError>() {
        return ApiError::new(StatusCode::CONFLICT, "refused", refused.to_string());
    }
    match e.downcast::<StoreError>() {
        Ok(store) => store.into(),
        Err(e) => e.into(),
    }
}

/// A campaign, parsed, with its first month.
struct Campaign {
    name: String,
    valid: rollgate_core::campaign::spec::ValidCampaign,
    first: YearMonth,
}

impl Campaign {
    async fn load(state: &AppState, name: &str) -> Result<Campaign, ApiError> {
        let record = state.store.get_campaign(name).await?;
        let valid = parse(&record.spec)
            .map_err(|p| anyhow::anyhow!("stored campaign `{name}` no longer validates: {}", p.replace('\n', "; ")))?;
        let first = first_month(&valid, record.created_at).map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(Campaign { name: record.name, valid, first })
    }

    fn ctx<'a>(&'a self, state: &'a AppState) -> Ctx<'a> {
        Ctx {
            state,
            name: &self.name,
            campaign: &self.valid,
            first: self.first,
            autofix_due: false,
            cache: Default::default(),
        }
    }
}

/// The month `wanted` (`YYYY-MM`, or the latest when `None`) of a campaign.
async fn month_of(state: &AppState, campaign: &str, wanted: Option<&str>) -> Result<Loaded, ApiError> {
    let wanted: Option<YearMonth> = wanted
        .map(str::parse)
        .transpose()
        .map_err(|e: rollgate_core::campaign::schedule::ScheduleError| ApiError::bad_request(e.to_string()))?;
    let months = load_months(&*state.store, campaign).await.map_err(driver_error)?;
    let found = match wanted {
        Some(m) => months.into_iter().find(|l| l.month.month() == m),
        None => months.into_iter().last(),
    };
    found.ok_or_else(|| {
        let which = wanted.map_or_else(|| "no month yet".to_owned(), |m| format!("no month {m}"));
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("campaign `{campaign}` has {which} (months are created by the server's campaign driver)"),
        )
    })
}

/// An operator's command, as the month's event (some need facts read at the time).
#[derive(Clone, Debug)]
enum Command {
    StartEarly,
    Pause,
    Resume,
    Stop,
    Approve(String),
    Retry(String),
}

/// `POST /v1/campaigns/{name}/{start|pause|resume|stop}?month=`.
pub async fn month_action(
    State(state): State<AppState>,
    _: Admin,
    PathParams((name, action)): PathParams<(String, String)>,
    QueryParams(q): QueryParams<MonthQuery>,
) -> Result<Json<CampaignCommandDone>, ApiError> {
    let command = match action.as_str() {
        "start" => Command::StartEarly,
        "pause" => Command::Pause,
        "resume" => Command::Resume,
        "stop" => Command::Stop,
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown month action `{other}`: use start, pause, resume or stop"
            )))
        }
    };
    run_command(&state, &name, q.month.as_deref(), command).await.map(Json)
}

/// `POST /v1/campaigns/{name}/steps/{step}/{approve|retry}?month=`; `step` is its name or index.
pub async fn step_action(
    State(state): State<AppState>,
    _: Admin,
    PathParams((name, step, action)): PathParams<(String, String, String)>,
    QueryParams(q): QueryParams<MonthQuery>,
) -> Result<Json<CampaignCommandDone>, ApiError> {
    let command = match action.as_str() {
        "approve" => Command::Approve(step),
        "retry" => Command::Retry(step),
        other => return Err(ApiError::bad_request(format!("unknown step action `{other}`: use approve or retry"))),
    };
    run_command(&state, &name, q.month.as_deref(), command).await.map(Json)
}

async fn run_command(
    state: &AppState,
    name: &str,
    month: Option<&str>,
    command: Command,
) -> Result<CampaignCommandDone, ApiError> {
    let campaign = Campaign::load(state, name).await?;
    let ctx = campaign.ctx(state);
    for _ in 0..COMMAND_ATTEMPTS {
        let loaded = month_of(state, name, month).await?;
        let event = event_of(&ctx, &loaded, &command).await?;
        match ctx.apply(&loaded, event, now_ms()).await {
            Ok(t) => {
                state.wake_scheduler.notify_one();
                return Ok(CampaignCommandDone {
                    month: loaded.row.month.clone(),
                    requested: t.to.requested().as_str().to_owned(),
                    effective: t.to.as_str().to_owned(),
                    message: t.reason,
                });
            }
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(driver_error(e)),
        }
    }
    Err(ApiError::new(StatusCode::CONFLICT, "conflict", format!("campaign `{name}` kept changing; try again")))
}

async fn event_of(ctx: &Ctx<'_>, loaded: &Loaded, command: &Command) -> Result<MonthEvent, ApiError> {
    let step_index = |text: &str| step_index(loaded, text);
    Ok(match command {
        Command::StartEarly => MonthEvent::StartEarly,
        Command::Pause => {
            // Sets first, so that the in-flight count recorded cannot grow after it is read.
            if loaded.month.effective() == MonthState::Active {
                ctx.pause_sets_now(loaded, now_ms()).await.map_err(driver_error)?;
            }
            MonthEvent::Pause { in_flight: ctx.in_flight_now(loaded).await.map_err(driver_error)? }
        }
        Command::Resume => MonthEvent::Resume,
        Command::Stop => MonthEvent::Stop,
        Command::Approve(step) => MonthEvent::ApproveStep { step: step_index(step)? },
        Command::Retry(step) => MonthEvent::RetryStep { step: step_index(step)? },
    })
}

/// A step named by its name or index.
fn step_index(loaded: &Loaded, text: &str) -> Result<usize, ApiError> {
    let plan = loaded.month.plan();
    if let Some(i) = plan.iter().position(|s| s.name == text) {
        return Ok(i);
    }
    match text.parse::<usize>() {
        Ok(i) if i < plan.len() => Ok(i),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "month {} has no step `{text}`; its steps are {}",
                loaded.row.month,
                plan.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// `POST /v1/campaigns/{name}/vulns/{advisory}/{approve|disapprove|reset}?month=`.
pub async fn vuln_action(
    State(state): State<AppState>,
    _: Admin,
    PathParams((name, advisory, action)): PathParams<(String, String, String)>,
    QueryParams(q): QueryParams<MonthQuery>,
) -> Result<Json<CampaignCommandDone>, ApiError> {
    let decision = match action.as_str() {
        "approve" => VulnDecision::Approve,
        "disapprove" => VulnDecision::Disapprove,
        "reset" => VulnDecision::Reset,
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown vulnerability action `{other}`: use approve, disapprove or reset"
            )))
        }
    };
    for _ in 0..COMMAND_ATTEMPTS {
        let loaded = month_of(&state, &name, q.month.as_deref()).await?;
        let mut month = loaded.month.clone();
        let change = month.decide_vuln(&advisory, decision).map_err(|e| match e {
            MonthError::BadAdvisoryId { .. } => ApiError::bad_request(e.to_string()),
            e => ApiError::new(StatusCode::CONFLICT, "refused", e.to_string()),
        })?;
        let message = if change.from == change.to {
            format!("vulnerability {advisory} was already {}", change.to.as_str())
        } else {
            format!("operator set vulnerability {advisory} from {} to {}", change.from.as_str(), change.to.as_str())
        };
        match save_decision(&*state.store, &loaded, &month, &message, now_ms()).await {
            Ok(()) => {
                return Ok(Json(CampaignCommandDone {
                    month: loaded.row.month.clone(),
                    requested: month.requested().as_str().to_owned(),
                    effective: month.effective().as_str().to_owned(),
                    message,
                }))
            }
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(driver_error(e)),
        }
    }
    Err(ApiError::new(StatusCode::CONFLICT, "conflict", format!("campaign `{name}` kept changing; try again")))
}

/// `GET /v1/campaigns/{name}/months/{month}`; `month` is `YYYY-MM` or `current` (the latest).
pub async fn show_month(
    State(state): State<AppState>,
    _: Admin,
    PathParams((name, month)): PathParams<(String, String)>,
) -> Result<Json<CampaignMonthView>, ApiError> {
    let campaign = Campaign::load(&state, &name).await?;
    let wanted = (month != "current").then_some(month.as_str());
    let loaded = month_of(&state, &name, wanted).await?;
    month_view(&state, &campaign, &loaded).await.map(Json)
}

/// The full view of one month.
async fn month_view(state: &AppState, campaign: &Campaign, loaded: &Loaded) -> Result<CampaignMonthView, ApiError> {
    let ctx = campaign.ctx(state);
    let now = now_ms();
    let m = &loaded.month;
    let mut steps = Vec::new();
    for (index, plan) in m.plan().iter().enumerate() {
        let standing = ctx.standing(loaded, index).await.map_err(driver_error)?;
        steps.push(step_view(&ctx, loaded, index, &plan.name, plan.soak_secs, standing, now).await?);
    }
    let transitions = state
        .store
        .month_transitions(&campaign.name, &loaded.row.month)
        .await?
        .into_iter()
        .map(|t| CampaignTransitionView {
            at: rfc3339(t.at),
            from: t.from,
            to: t.to,
            step: t.step as usize,
            reason: t.reason,
        })
        .collect();
    Ok(CampaignMonthView {
        campaign: campaign.name.clone(),
        month: loaded.row.month.clone(),
        start_at: rfc3339(m.start_at()),
        requested: m.requested().as_str().to_owned(),
        effective: m.effective().as_str().to_owned(),
        reason: m.reason().to_owned(),
        current_step: m.step(),
        steps,
        vulnerabilities: vuln_views(&ctx, loaded).await?,
        transitions,
    })
}

async fn step_view(
    ctx: &Ctx<'_>,
    loaded: &Loaded,
    index: usize,
    name: &str,
    soak_secs: u64,
    standing: StepStanding,
    now: Timestamp,
) -> Result<CampaignMonthStep, ApiError> {
    let facts = standing.latest.as_ref();
    let m = &loaded.month;
    let current = index == m.step() && m.changed_at().is_some() && m.effective() != MonthState::Scheduled;
    let status = match m.effective() {
        // Passed its gate, or approved despite it (the transitions say which).
        _ if index < m.step() => "done",
        MonthState::Completed => "done",
        _ if index > m.step() || !current => "pending",
        MonthState::Active if m.phase() == StepPhase::AwaitingApproval => "awaiting-approval",
        MonthState::Active => "running",
        MonthState::Pausing | MonthState::Paused => "held",
        MonthState::Failed => "stopped",
        MonthState::Scheduled => "pending",
    };
    let mut tally = standing.tally;
    let plan = match facts {
        Some(f) => f.plan.clone(),
        None if !m.effective().is_terminal() => {
            // Not started: what it would deploy now (a live preview).
            let plan = ctx.plan_step(m, index).await.map_err(driver_error)?;
            let targeted: BTreeSet<&str> =
                plan.deployments.iter().flat_map(|d| d.endpoints.iter().map(String::as_str)).collect();
            tally.targeted = u32::try_from(targeted.len()).unwrap_or(u32::MAX);
            plan
        }
        None => Default::default(),
    };
    let deploys = plan
        .deployments
        .iter()
        .map(|d| format!("{}@{} on {} endpoints", d.product, d.version, d.endpoints.len()))
        .collect();
    let gate_now = match ctx.step_of(m, index) {
        Ok(spec) if status == "running" => {
            Some(gate::evaluate(spec.acceptance(), &tally, m.soak_done_at(now)).to_string())
        }
        _ => None,
    };
    let rate = |part: u32, whole: u32| (whole > 0).then(|| f64::from(part) / f64::from(whole));
    let good = tally.succeeded.saturating_sub(tally.good_patch.bad);
    Ok(CampaignMonthStep {
        name: name.to_owned(),
        status: status.to_owned(),
        run: if index == m.step() { m.step_run() } else { facts.map_or(0, |f| f.run.run) },
        targeted: tally.targeted,
        attempted: tally.attempted,
        succeeded: tally.succeeded,
        failed: tally.failed,
        no_shows: tally.no_shows,
        in_flight: standing.in_flight,
        success_rate: rate(tally.succeeded, tally.attempted),
        good_patch_ratio: rate(good, tally.succeeded),
        soaked_secs: if index == m.step() { m.soak_elapsed_at(now).as_secs() } else { 0 },
        soak_secs,
        gate: gate_now,
        sets: facts.map(|f| f.sets.values().map(|(s, _)| s.spec.name.clone()).collect()).unwrap_or_default(),
        deploys,
    })
}

/// Each collected advisory with its approval, affected endpoints and fixing packages.
async fn vuln_views(ctx: &Ctx<'_>, loaded: &Loaded) -> Result<Vec<CampaignMonthVuln>, ApiError> {
    let records = ctx.collected(loaded.month.month()).await.map_err(driver_error)?;
    let endpoints = ctx.endpoints().await.map_err(driver_error)?;
    // Every collected advisory, approved or not, so the operator sees what a decision changes.
    let mut everything = loaded.month.clone();
    for r in &records {
        // Decisions are bounded by MAX_VULN_DECISIONS; a refusal here only narrows the view.
        let _ = everything.decide_vuln(&r.id, VulnDecision::Reset);
    }
    let needs = ctx.needs(&everything, endpoints).await.map_err(driver_error)?;
    let packages = ctx.packages().await.map_err(driver_error)?;
    Ok(records
        .iter()
        .map(|r| {
            // Each advisory planned alone: the package that fixes it, or what lacks one.
            let own: Vec<dispatch::Need> = needs.iter().filter(|n| n.advisory == r.id).cloned().collect();
            let plan = dispatch::plan(&own, &packages);
            let affected: BTreeSet<&str> = own.iter().map(|n| n.endpoint.as_str()).collect();
            CampaignMonthVuln {
                id: r.id.clone(),
                title: r.title.clone(),
                rating: r.rating.clone(),
                approval: loaded.month.vuln_approval(&r.id).as_str().to_owned(),
                affected: u32::try_from(affected.len()).unwrap_or(u32::MAX),
                fix_packages: plan.fixes.into_iter().map(|(_, p)| p).collect(),
                needs_package: plan
                    .needs_package
                    .into_iter()
                    .map(|(_, s)| s)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
            }
        })
        .collect())
}

/// `GET /v1/campaigns/{name}/devices`: per endpoint, the campaign's patches over all months.
pub async fn devices(
    State(state): State<AppState>,
    _: Admin,
    PathParams(name): PathParams<String>,
) -> Result<Json<Vec<CampaignDeviceView>>, ApiError> {
    state.store.get_campaign(&name).await?;
    let hostnames: HashMap<String, String> =
        state.store.list_endpoints().await?.into_iter().map(|e| (e.id, e.hostname)).collect();
    let mut per: BTreeMap<String, CampaignDeviceView> = BTreeMap::new();
    for month in state.store.campaign_months(&name).await? {
        let set_ids: Vec<i64> = state
            .store
            .step_runs(&name, &month.month)
            .await?
            .iter()
            .flat_map(|r| r.sets.iter().map(|(_, id)| *id))
            .collect();
        let bad: BTreeSet<(i64, String)> = state
            .store
            .patch_health(&set_ids)
            .await?
            .into_iter()
            .filter(|h| !h.healthy)
            .map(|h| (h.set_id, h.endpoint_id))
            .collect();
        for set_id in set_ids {
            for m in state.store.set_members(set_id).await? {
                let view = per.entry(m.endpoint_id.clone()).or_insert_with(|| CampaignDeviceView {
                    endpoint: m.endpoint_id.clone(),
                    hostname: hostnames.get(&m.endpoint_id).cloned().unwrap_or_default(),
                    patches: 0,
                    deployed: 0,
                    failed: 0,
                    bad: 0,
                });
                view.patches += 1;
                match m.member.state {
                    MemberState::Succeeded => view.deployed += 1,
                    MemberState::Failed | MemberState::RolledBack | MemberState::TimedOut => view.failed += 1,
                    MemberState::Pending | MemberState::InProgress => {}
                }
                if bad.contains(&(set_id, m.endpoint_id.clone())) {
                    view.bad += 1;
                }
            }
        }
    }
    Ok(Json(per.into_values().collect()))
}

/// `POST /v1/campaigns/{name}/bad-patch`: an operator reports a patch bad on an endpoint; it
/// counts against the good-patch ratio of every step run of the month that installed there.
pub async fn bad_patch(
    State(state): State<AppState>,
    _: Admin,
    PathParams(name): PathParams<String>,
    JsonBody(report): JsonBody<BadPatchReport>,
) -> Result<Json<CampaignCommandDone>, ApiError> {
    if report.reason.trim().is_empty() || report.reason.len() > 1000 {
        return Err(ApiError::bad_request("a bad-patch report needs a reason of 1 to 1000 characters"));
    }
    state.store.get_endpoint(&report.endpoint).await?;
    let loaded = match report.month.as_deref() {
        Some(month) => month_of(&state, &name, Some(month)).await?,
        // The newest month that installed anything, not a next month still scheduled.
        None => load_months(&*state.store, &name)
            .await
            .map_err(driver_error)?
            .into_iter()
            .rev()
            .find(Loaded::started)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("campaign `{name}` has not started a month yet"),
                )
            })?,
    };
    let now = now_ms();
    let mut marked = 0;
    for run in state.store.step_runs(&name, &loaded.row.month).await? {
        for (_, set_id) in &run.sets {
            let members = state.store.set_members(*set_id).await?;
            let installed =
                members.iter().any(|m| m.endpoint_id == report.endpoint && m.member.state == MemberState::Succeeded);
            if installed {
                let row = PatchHealthRow {
                    set_id: *set_id,
                    endpoint_id: report.endpoint.clone(),
                    source: "operator".to_owned(),
                    healthy: false,
                    reason: Some(report.reason.clone()),
                    at: now,
                };
                state.store.record_patch_health(&row).await?;
                marked += 1;
            }
        }
    }
    if marked == 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "nothing_installed",
            format!(
                "campaign `{name}` month {} installed nothing on endpoint `{}`; a bad patch can only be reported where one succeeded",
                loaded.row.month, report.endpoint
            ),
        ));
    }
    Ok(Json(CampaignCommandDone {
        month: loaded.row.month.clone(),
        requested: loaded.month.requested().as_str().to_owned(),
        effective: loaded.month.effective().as_str().to_owned(),
        message: format!("recorded a bad patch on `{}` for {marked} install(s): {}", report.endpoint, report.reason),
    }))
}

/// `POST /v1/agent/patch-health`: what an agent saw while watching a product it patched.
pub async fn patch_health(
    State(state): State<AppState>,
    AgentId(endpoint): AgentId,
    JsonBody(report): JsonBody<PatchHealth>,
) -> Result<StatusCode, ApiError> {
    let at: Timestamp = report.at.parse().map_err(|e| ApiError::bad_request(format!("bad `at`: {e}")))?;
    if !report.healthy && report.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        return Err(ApiError::bad_request("an unhealthy patch report needs a reason"));
    }
    let reason = report.reason.map(|r| r.chars().take(1000).collect::<String>());
    let set = state.store.get_set(report.set_id).await?;
    let member = state.store.set_members(report.set_id).await?.into_iter().find(|m| m.endpoint_id == endpoint);
    if member.is_none() || set.spec.version != report.version {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_a_member",
            format!(
                "endpoint `{endpoint}` did not install {}@{} in set {}",
                set.spec.product, report.version, set.spec.name
            ),
        ));
    }
    let row = PatchHealthRow {
        set_id: report.set_id,
        endpoint_id: endpoint,
        source: "agent".to_owned(),
        healthy: report.healthy,
        reason,
        at,
    };
    state.store.record_patch_health(&row).await?;
    Ok(StatusCode::NO_CONTENT)
}
