//! Endpoints' installed software (distribution packages), changed by deltas from the agents.
//! A delta applies only on top of the list it was computed from (its `base` digest), so a lost
//! or repeated delta can never leave the server with a list the endpoint does not have: the
//! agent is told to send the whole list instead.

use std::collections::BTreeMap;

use sqlx::{AnyPool, Row};

use crate::{Result, SoftwareChange, StoreError};

/// Rows per multi-row insert (well under both backends' bind limits).
const ROWS_PER_INSERT: usize = 200;

/// Most packages one endpoint's list may hold (a large distribution install has about 5,000):
/// deltas must not grow a list without bound.
pub const MAX_PACKAGES: i64 = 100_000;

/// Applies `change` to endpoint `id`'s list. `lock` adds `FOR UPDATE` (PostgreSQL), so that
/// two replicas applying deltas of one endpoint take turns; SQLite has one writer anyway.
pub(crate) async fn apply(pool: &AnyPool, id: &str, change: &SoftwareChange<'_>, lock: bool) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let select = if lock {
        "SELECT software_digest FROM endpoints WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT software_digest FROM endpoints WHERE id = $1"
    };
    let stored: Option<Option<String>> = sqlx::query(select)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get("software_digest"))
        .transpose()?;
    let Some(stored) = stored else { return Err(StoreError::NotFound(format!("endpoint `{id}`"))) };
    match change.base {
        Some(base) if stored.as_deref() != Some(base) => {
            tx.rollback().await?;
            return Ok(false);
        }
        Some(_) => {
            for chunk in change.remove.chunks(ROWS_PER_INSERT) {
                delete_names(&mut tx, id, chunk).await?;
            }
            let names: Vec<String> = change.upsert.keys().cloned().collect();
            for chunk in names.chunks(ROWS_PER_INSERT) {
                delete_names(&mut tx, id, chunk).await?;
            }
        }
        None => {
            sqlx::query("DELETE FROM endpoint_software WHERE endpoint_id = $1").bind(id).execute(&mut *tx).await?;
        }
    }
    let rows: Vec<(&String, &String)> = change.upsert.iter().collect();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        insert_rows(&mut tx, id, chunk).await?;
    }
    let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM endpoint_software WHERE endpoint_id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
    if count > MAX_PACKAGES {
        tx.rollback().await?;
        return Err(StoreError::Invalid(format!(
            "endpoint `{id}` would list {count} packages, more than {MAX_PACKAGES}"
        )));
    }
    sqlx::query("UPDATE endpoints SET software_digest = $1, software_source = $2 WHERE id = $3")
        .bind(change.digest)
        .bind(change.source)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

fn placeholders(from: usize, count: usize) -> String {
    (from..from + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

async fn delete_names(tx: &mut sqlx::Transaction<'_, sqlx::Any>, id: &str, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let sql =
        format!("DELETE FROM endpoint_software WHERE endpoint_id = $1 AND name IN ({})", placeholders(2, names.len()));
    let mut query = sqlx::query(&sql).bind(id);
    for name in names {
        query = query.bind(name);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

async fn insert_rows(tx: &mut sqlx::Transaction<'_, sqlx::Any>, id: &str, rows: &[(&String, &String)]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let values: Vec<String> =
        (0..rows.len()).map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3)).collect();
    let sql = format!("INSERT INTO endpoint_software (endpoint_id, name, version) VALUES {}", values.join(", "));
    let mut query = sqlx::query(&sql);
    for (name, version) in rows {
        query = query.bind(id).bind(name.as_str()).bind(version.as_str());
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// Endpoint `id`'s list.
pub(crate) async fn of_endpoint(pool: &AnyPool, id: &str) -> Result<BTreeMap<String, String>> {
    let rows = sqlx::query("SELECT name, version FROM endpoint_software WHERE endpoint_id = $1")
        .bind(id)
        .fetch_all(pool)
        .await?;
    rows.iter().map(|r| Ok((r.try_get("name")?, r.try_get("version")?))).collect()
}

/// Installed packages named in `names` across endpoints. Names are stored as the agent sent
/// them; the comparison is on lower case, as advisories' names are.
pub(crate) async fn named(pool: &AnyPool, names: &[String]) -> Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for chunk in names.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "SELECT endpoint_id, name, version FROM endpoint_software WHERE LOWER(name) IN ({}) ORDER BY endpoint_id, name",
            placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for name in chunk {
            query = query.bind(name.to_lowercase());
        }
        for row in query.fetch_all(pool).await? {
            out.push((row.try_get("endpoint_id")?, row.try_get("name")?, row.try_get("version")?));
        }
    }
    Ok(out)
}
