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
