//! Patch campaigns: the TOML text of each campaign as applied, by name.
//!
//! The store keeps the text, not a parsed form: the server validates it with
//! `rollgate_core::campaign` before storing, and `show` returns exactly what was applied.

use jiff::Timestamp;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::sql::{ms, ts};
use crate::Result;
use crate::StoreError;

/// A stored campaign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CampaignRecord {
    /// Unique name (the `name` in its spec).
    pub name: String,
    /// The TOML text as applied.
    pub spec: String,
    /// When it was first applied.
    pub created_at: Timestamp,
    /// When its text last changed.
    pub updated_at: Timestamp,
}

fn from_row(row: &AnyRow) -> Result<CampaignRecord> {
    Ok(CampaignRecord {
        name: row.try_get("name")?,
        spec: row.try_get("spec")?,
        created_at: ts(row.try_get("created_at")?)?,
        updated_at: ts(row.try_get("updated_at")?)?,
    })
}

/// Creates the campaign or replaces its text; returns true when it was created. `updated_at`
/// moves only when the text differs from the stored one.
pub(crate) async fn put(pool: &AnyPool, name: &str, spec: &str, now: Timestamp) -> Result<bool> {
    // Campaigns are never deleted, so a name that fails to insert exists and can be updated.
    let inserted = sqlx::query(
        "INSERT INTO campaigns (name, spec, created_at, updated_at) VALUES ($1, $2, $3, $3) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(spec)
    .bind(ms(now))
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(true);
    }
    sqlx::query("UPDATE campaigns SET spec = $1, updated_at = $2 WHERE name = $3 AND spec <> $1")
        .bind(spec)
        .bind(ms(now))
        .bind(name)
        .execute(pool)
        .await?;
    Ok(false)
}

/// One campaign.
pub(crate) async fn get(pool: &AnyPool, name: &str) -> Result<CampaignRecord> {
    let row = sqlx::query("SELECT * FROM campaigns WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("campaign `{name}`")))?;
    from_row(&row)
}

/// Every campaign, by name.
pub(crate) async fn list(pool: &AnyPool) -> Result<Vec<CampaignRecord>> {
    let rows = sqlx::query("SELECT * FROM campaigns ORDER BY name").fetch_all(pool).await?;
    rows.iter().map(from_row).collect()
}

/// A stored campaign month: its core snapshot (JSON) and the version the next write must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonthRow {
    /// The campaign.
    pub campaign: String,
    /// `YYYY-MM`.
    pub month: String,
    /// The effective state, as in the snapshot.
    pub state: String,
    /// `rollgate_core::campaign::month::MonthSnapshot` as JSON.
    pub snapshot: String,
    /// Bumped by every write; a write naming an older version is refused.
    pub version: i64,
    /// Created.
    pub created_at: Timestamp,
    /// Last written.
    pub updated_at: Timestamp,
}

/// One recorded change of a month.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransitionRow {
    /// When.
    pub at: Timestamp,
    /// State before (`created` for the first row).
    pub from: String,
    /// State after.
    pub to: String,
    /// Current step after.
    pub step: u32,
    /// Why.
    pub reason: String,
}

/// One run of one step: its plan and the Upgrade Sets created for it so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepRunRow {
    /// Step index.
    pub step: u32,
    /// Run (1, plus one per retry).
    pub run: u32,
    /// When the run started.
    pub started_at: Timestamp,
    /// The plan, JSON (the server's format).
    pub plan: String,
    /// Ids of its sets, by their place in the plan (`seq`).
    pub sets: Vec<(u32, i64)>,
}

/// What was seen of a patched product on one endpoint after its install.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchHealthRow {
    /// The set whose install it is about.
    pub set_id: i64,
    /// The endpoint.
    pub endpoint_id: String,
    /// `agent` or `operator`.
    pub source: String,
    /// False when a crash, abnormal exit or failing check was seen, or an operator said so.
    pub healthy: bool,
    /// What was seen.
    pub reason: Option<String>,
    /// When it was reported.
    pub at: Timestamp,
}

fn month_from_row(row: &AnyRow) -> Result<MonthRow> {
    Ok(MonthRow {
        campaign: row.try_get("campaign")?,
        month: row.try_get("month")?,
        state: row.try_get("state")?,
        snapshot: row.try_get("snapshot")?,
        version: row.try_get("version")?,
        created_at: ts(row.try_get("created_at")?)?,
        updated_at: ts(row.try_get("updated_at")?)?,
    })
}

fn u32_of(row: &AnyRow, col: &str) -> Result<u32> {
    u32::try_from(row.try_get::<i64, _>(col)?).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

async fn insert_transitions(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    campaign: &str,
    month: &str,
    transitions: &[TransitionRow],
) -> Result<()> {
    let next: i64 = sqlx::query(
        "SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM campaign_transitions WHERE campaign = $1 AND month = $2",
    )
    .bind(campaign)
    .bind(month)
    .fetch_one(&mut **tx)
    .await?
    .try_get("next")?;
    for (seq, t) in (next..).zip(transitions) {
        sqlx::query(
            "INSERT INTO campaign_transitions (campaign, month, seq, at, from_state, to_state, step, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(campaign)
        .bind(month)
        .bind(seq)
        .bind(ms(t.at))
        .bind(&t.from)
        .bind(&t.to)
        .bind(i64::from(t.step))
        .bind(&t.reason)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Creates a month with its first transition unless it exists; true when created.
pub(crate) async fn create_month(pool: &AnyPool, row: &MonthRow, first: &TransitionRow) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO campaign_months (campaign, month, state, snapshot, version, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 1, $5, $5) ON CONFLICT (campaign, month) DO NOTHING",
    )
    .bind(&row.campaign)
    .bind(&row.month)
    .bind(&row.state)
    .bind(&row.snapshot)
    .bind(ms(row.created_at))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        insert_transitions(&mut tx, &row.campaign, &row.month, std::slice::from_ref(first)).await?;
    }
    tx.commit().await?;
    Ok(inserted == 1)
}

/// Writes a month's new snapshot and its transitions if its version is still `row.version`;
/// otherwise another writer came first and nothing is written ([`StoreError::Conflict`]).
pub(crate) async fn save_month(
    pool: &AnyPool,
    row: &MonthRow,
    transitions: &[TransitionRow],
    now: Timestamp,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    let updated = sqlx::query(
        "UPDATE campaign_months SET state = $1, snapshot = $2, version = version + 1, updated_at = $3
         WHERE campaign = $4 AND month = $5 AND version = $6",
    )
    .bind(&row.state)
    .bind(&row.snapshot)
    .bind(ms(now))
    .bind(&row.campaign)
    .bind(&row.month)
    .bind(row.version)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated != 1 {
        let _ = tx.rollback().await;
        return Err(StoreError::Conflict(format!(
            "campaign {} month {} changed meanwhile; try again",
            row.campaign, row.month
        )));
    }
    insert_transitions(&mut tx, &row.campaign, &row.month, transitions).await?;
    tx.commit().await?;
    Ok(())
}

/// The months of a campaign, oldest first.
pub(crate) async fn months(pool: &AnyPool, campaign: &str) -> Result<Vec<MonthRow>> {
    let rows = sqlx::query("SELECT * FROM campaign_months WHERE campaign = $1 ORDER BY month")
        .bind(campaign)
        .fetch_all(pool)
        .await?;
    rows.iter().map(month_from_row).collect()
}

/// The recorded changes of a month, oldest first.
pub(crate) async fn transitions(pool: &AnyPool, campaign: &str, month: &str) -> Result<Vec<TransitionRow>> {
    let rows = sqlx::query("SELECT * FROM campaign_transitions WHERE campaign = $1 AND month = $2 ORDER BY seq")
        .bind(campaign)
        .bind(month)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(TransitionRow {
                at: ts(r.try_get("at")?)?,
                from: r.try_get("from_state")?,
                to: r.try_get("to_state")?,
                step: u32_of(r, "step")?,
                reason: r.try_get("reason")?,
            })
        })
        .collect()
}

/// Records the plan of a step run unless one is recorded; true when this call recorded it.
pub(crate) async fn start_step_run(pool: &AnyPool, campaign: &str, month: &str, run: &StepRunRow) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO campaign_step_runs (campaign, month, step, run, started_at, plan) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (campaign, month, step, run) DO NOTHING",
    )
    .bind(campaign)
    .bind(month)
    .bind(i64::from(run.step))
    .bind(i64::from(run.run))
    .bind(ms(run.started_at))
    .bind(&run.plan)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// The step runs of a month with their sets, by step and run.
pub(crate) async fn step_runs(pool: &AnyPool, campaign: &str, month: &str) -> Result<Vec<StepRunRow>> {
    let runs = sqlx::query("SELECT * FROM campaign_step_runs WHERE campaign = $1 AND month = $2 ORDER BY step, run")
        .bind(campaign)
        .bind(month)
        .fetch_all(pool)
        .await?;
    let sets =
        sqlx::query("SELECT step, run, seq, set_id FROM campaign_sets WHERE campaign = $1 AND month = $2 ORDER BY seq")
            .bind(campaign)
            .bind(month)
            .fetch_all(pool)
            .await?;
    let mut out = runs
        .iter()
        .map(|r| {
            Ok(StepRunRow {
                step: u32_of(r, "step")?,
                run: u32_of(r, "run")?,
                started_at: ts(r.try_get("started_at")?)?,
                plan: r.try_get("plan")?,
                sets: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    for s in &sets {
        let (step, run) = (u32_of(s, "step")?, u32_of(s, "run")?);
        if let Some(r) = out.iter_mut().find(|r| r.step == step && r.run == run) {
            r.sets.push((u32_of(s, "seq")?, s.try_get("set_id")?));
        }
    }
    Ok(out)
}

/// Links a set (created in the same transaction) to its step run.
pub(crate) async fn link_set(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    campaign: &str,
    month: &str,
    (step, run, seq): (u32, u32, u32),
    set_id: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO campaign_sets (campaign, month, step, run, seq, set_id) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(campaign)
        .bind(month)
        .bind(i64::from(step))
        .bind(i64::from(run))
        .bind(i64::from(seq))
        .bind(set_id)
        .execute(&mut **tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(format!(
                "campaign {campaign} month {month} step {step} run {run} already has set #{seq}"
            )),
            _ => e.into(),
        })?;
    Ok(())
}

/// Records (or replaces) what one source saw of one patched endpoint.
pub(crate) async fn record_patch_health(pool: &AnyPool, h: &PatchHealthRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO patch_health (set_id, endpoint_id, source, healthy, reason, at) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (set_id, endpoint_id, source) DO UPDATE SET healthy = excluded.healthy,
             reason = excluded.reason, at = excluded.at",
    )
    .bind(h.set_id)
    .bind(&h.endpoint_id)
    .bind(&h.source)
    .bind(i64::from(h.healthy))
    .bind(&h.reason)
    .bind(ms(h.at))
    .execute(pool)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound(format!("set {}", h.set_id)),
        _ => e.into(),
    })?;
    Ok(())
}

/// Everything seen of the endpoints of `set_ids`.
pub(crate) async fn patch_health(pool: &AnyPool, set_ids: &[i64]) -> Result<Vec<PatchHealthRow>> {
    let mut out = Vec::new();
    // One query per set: a step has a handful of sets, and `IN` lists bind poorly through `Any`.
    for set_id in set_ids {
        let rows = sqlx::query("SELECT * FROM patch_health WHERE set_id = $1 ORDER BY endpoint_id, source")
            .bind(set_id)
            .fetch_all(pool)
            .await?;
        for r in &rows {
            out.push(PatchHealthRow {
                set_id: r.try_get("set_id")?,
                endpoint_id: r.try_get("endpoint_id")?,
                source: r.try_get("source")?,
                healthy: r.try_get::<i64, _>("healthy")? != 0,
                reason: r.try_get("reason")?,
                at: ts(r.try_get("at")?)?,
            });
        }
    }
    Ok(out)
}
