//! Advisories, CVE records and KEV facts. The store keeps the normalized JSON of each (the
//! `rollgate-advisories` model, which it does not interpret) and indexes the CVEs and product
//! names matching looks up. Which revision wins is `rollgate_core::revision`'s rule, applied in
//! the statement itself so that two replicas importing at once cannot both write.

use jiff::Timestamp;
use rollgate_core::revision::{self, Outcome, Stored};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::sql::{ms, opt_ts, ts};
use crate::{Result, StoreError};

/// An advisory as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdvisoryRecord {
    /// Who published it.
    pub publisher: String,
    /// The publisher's id.
    pub id: String,
    /// `csaf`, `osv`, `cvrf`.
    pub format: String,
    /// Title.
    pub title: String,
    /// First published.
    pub published_at: Option<Timestamp>,
    /// Last updated.
    pub updated_at: Option<Timestamp>,
    /// The publisher's revision label.
    pub revision: Option<String>,
    /// The publisher's rating.
    pub rating: Option<String>,
    /// Highest CVSS base score, in tenths (98 for 9.8).
    pub max_score_tenths: Option<i64>,
    /// SHA-256 of `document`.
    pub content_sha256: String,
    /// The normalized advisory, JSON.
    pub document: String,
    /// CVEs it names.
    pub cves: Vec<String>,
    /// Product and package names it names, lower-case.
    pub products: Vec<String>,
    /// When this revision was imported.
    pub imported_at: Timestamp,
}

/// What `advisories list` asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdvisoryFilter {
    /// Only advisories naming this product (case-insensitive).
    pub product: Option<String>,
    /// Only advisories updated (or, lacking an update time, published) at or after this.
    pub since: Option<Timestamp>,
    /// Only advisories naming this CVE.
    pub cve: Option<String>,
}

/// A CVE record as stored, with its KEV facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CveRow {
    /// `CVE-…`.
    pub id: String,
    /// `cve5`, `nvd`; None for a row made only from KEV facts.
    pub format: Option<String>,
    /// Title.
    pub title: Option<String>,
    /// Published.
    pub published_at: Option<Timestamp>,
    /// Last updated.
    pub updated_at: Option<Timestamp>,
    /// Highest CVSS base score, in tenths.
    pub max_score_tenths: Option<i64>,
    /// SHA-256 of `document`.
    pub content_sha256: Option<String>,
    /// The normalized record, JSON.
    pub document: Option<String>,
    /// CISA's KEV facts.
    pub kev: Option<KevRow>,
}

/// CISA's KEV facts of a CVE, dates as `YYYY-MM-DD`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KevRow {
    /// Added to the catalog.
    pub date_added: String,
    /// Remediation due.
    pub due_date: Option<String>,
    /// `Known` / `Unknown` use in ransomware.
    pub ransomware: Option<String>,
    /// What CISA requires.
    pub required_action: Option<String>,
}

async fn stored_advisory(pool: &AnyPool, publisher: &str, id: &str) -> Result<Option<(Option<i64>, String)>> {
    let row = sqlx::query("SELECT updated_at, content_sha256 FROM advisories WHERE publisher = $1 AND id = $2")
        .bind(publisher)
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.map(|r| Ok((r.try_get("updated_at")?, r.try_get("content_sha256")?))).transpose()
}

/// Imports one advisory revision.
pub(crate) async fn import_advisory(pool: &AnyPool, a: &AdvisoryRecord) -> Result<Outcome> {
    let updated = a.updated_at.map(ms);
    let before = stored_advisory(pool, &a.publisher, &a.id).await?;
    let decided = revision::decide(
        before.as_ref().map(|(u, sha)| Stored { updated_ms: *u, sha256: sha }),
        Stored { updated_ms: updated, sha256: &a.content_sha256 },
    );
    if !decided.writes() {
        return Ok(decided);
    }
    let mut tx = pool.begin().await?;
    // The same rule again in SQL: another replica may have written since the read above.
    let written = sqlx::query(
        "INSERT INTO advisories (publisher, id, format, title, published_at, updated_at, revision, rating,
             max_score_tenths, content_sha256, document, imported_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (publisher, id) DO UPDATE SET format = excluded.format, title = excluded.title,
             published_at = excluded.published_at, updated_at = excluded.updated_at,
             revision = excluded.revision, rating = excluded.rating,
             max_score_tenths = excluded.max_score_tenths, content_sha256 = excluded.content_sha256,
             document = excluded.document, imported_at = excluded.imported_at
         WHERE advisories.content_sha256 <> excluded.content_sha256
           AND COALESCE(advisories.updated_at, -1) <= COALESCE(excluded.updated_at, -1)",
    )
    .bind(&a.publisher)
    .bind(&a.id)
    .bind(&a.format)
    .bind(&a.title)
    .bind(a.published_at.map(ms))
    .bind(updated)
    .bind(&a.revision)
    .bind(&a.rating)
    .bind(a.max_score_tenths)
    .bind(&a.content_sha256)
    .bind(&a.document)
    .bind(ms(a.imported_at))
    .execute(&mut *tx)
    .await?;
    if written.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(Outcome::Unchanged);
    }
    for table in ["advisory_cves", "advisory_products"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE publisher = $1 AND id = $2"))
            .bind(&a.publisher)
            .bind(&a.id)
            .execute(&mut *tx)
            .await?;
    }
    for cve in dedup(&a.cves) {
        sqlx::query("INSERT INTO advisory_cves (publisher, id, cve) VALUES ($1, $2, $3)")
            .bind(&a.publisher)
            .bind(&a.id)
            .bind(cve)
            .execute(&mut *tx)
            .await?;
    }
    for product in dedup(&a.products.iter().map(|p| p.to_lowercase()).collect::<Vec<_>>()) {
        sqlx::query("INSERT INTO advisory_products (publisher, id, product) VALUES ($1, $2, $3)")
            .bind(&a.publisher)
            .bind(&a.id)
            .bind(product)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(decided)
}

fn dedup(items: &[String]) -> Vec<&String> {
    let set: std::collections::BTreeSet<&String> = items.iter().collect();
    set.into_iter().collect()
}

async fn advisory_from_row(pool: &AnyPool, row: &AnyRow) -> Result<AdvisoryRecord> {
    let publisher: String = row.try_get("publisher")?;
    let id: String = row.try_get("id")?;
    let names = |table: &'static str, column: &'static str| {
        let (publisher, id) = (publisher.clone(), id.clone());
        async move {
            let rows = sqlx::query(&format!(
                "SELECT {column} FROM {table} WHERE publisher = $1 AND id = $2 ORDER BY {column}"
            ))
            .bind(&publisher)
            .bind(&id)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| r.try_get::<String, _>(column).map_err(StoreError::from)).collect::<Result<Vec<_>>>()
        }
    };
    let cves = names("advisory_cves", "cve").await?;
    let products = names("advisory_products", "product").await?;
    Ok(AdvisoryRecord {
        format: row.try_get("format")?,
        title: row.try_get("title")?,
        published_at: opt_ts(row.try_get("published_at")?)?,
        updated_at: opt_ts(row.try_get("updated_at")?)?,
        revision: row.try_get("revision")?,
        rating: row.try_get("rating")?,
        max_score_tenths: row.try_get("max_score_tenths")?,
        content_sha256: row.try_get("content_sha256")?,
        document: row.try_get("document")?,
        imported_at: ts(row.try_get("imported_at")?)?,
        cves,
        products,
        publisher,
        id,
    })
}

async fn advisories_from_rows(pool: &AnyPool, rows: &[AnyRow]) -> Result<Vec<AdvisoryRecord>> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(advisory_from_row(pool, row).await?);
    }
    Ok(out)
}

const NEWEST_FIRST: &str = "ORDER BY COALESCE(updated_at, published_at, 0) DESC, publisher, id";

/// Advisories matching `filter`.
pub(crate) async fn list(pool: &AnyPool, filter: &AdvisoryFilter) -> Result<Vec<AdvisoryRecord>> {
    let since = filter.since.map(ms).unwrap_or(i64::MIN);
    // Absent filters are bound as NULL and match everything, so there is one statement.
    let rows = sqlx::query(&format!(
        "SELECT * FROM advisories a WHERE COALESCE(updated_at, published_at, 0) >= $1
           AND ($2 IS NULL OR EXISTS (SELECT 1 FROM advisory_products p
                                      WHERE p.publisher = a.publisher AND p.id = a.id AND p.product = $2))
           AND ($3 IS NULL OR EXISTS (SELECT 1 FROM advisory_cves c
                                      WHERE c.publisher = a.publisher AND c.id = a.id AND c.cve = $3))
         {NEWEST_FIRST}"
    ))
    .bind(since)
    .bind(filter.product.as_ref().map(|p| p.to_lowercase()))
    .bind(filter.cve.as_deref())
    .fetch_all(pool)
    .await?;
    advisories_from_rows(pool, &rows).await
}

/// Every advisory with this id.
pub(crate) async fn by_id(pool: &AnyPool, id: &str) -> Result<Vec<AdvisoryRecord>> {
    let rows =
        sqlx::query("SELECT * FROM advisories WHERE id = $1 ORDER BY publisher").bind(id).fetch_all(pool).await?;
    advisories_from_rows(pool, &rows).await
}

/// Advisories naming any of `products`.
pub(crate) async fn naming(pool: &AnyPool, products: &[String]) -> Result<Vec<AdvisoryRecord>> {
    let mut keys = std::collections::BTreeSet::new();
    for chunk in products.chunks(200) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT DISTINCT publisher, id FROM advisory_products WHERE product IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for product in chunk {
            query = query.bind(product.to_lowercase());
        }
        for row in query.fetch_all(pool).await? {
            keys.insert((row.try_get::<String, _>("publisher")?, row.try_get::<String, _>("id")?));
        }
    }
    let mut out = Vec::with_capacity(keys.len());
    for (publisher, id) in keys {
        let row = sqlx::query("SELECT * FROM advisories WHERE publisher = $1 AND id = $2")
            .bind(&publisher)
            .bind(&id)
            .fetch_one(pool)
            .await?;
        out.push(advisory_from_row(pool, &row).await?);
    }
    Ok(out)
}

/// Imports one CVE record revision, keeping its KEV facts.
pub(crate) async fn import_cve(pool: &AnyPool, c: &CveRow, now: Timestamp) -> Result<Outcome> {
    let (Some(sha), Some(document)) = (&c.content_sha256, &c.document) else {
        return Err(StoreError::Invalid(format!("{}: a CVE record needs its document", c.id)));
    };
    let before = sqlx::query("SELECT updated_at, content_sha256 FROM cves WHERE id = $1")
        .bind(&c.id)
        .fetch_optional(pool)
        .await?
        .map(|r| {
            Ok::<_, StoreError>((
                r.try_get::<Option<i64>, _>("updated_at")?,
                r.try_get::<Option<String>, _>("content_sha256")?,
            ))
        })
        .transpose()?;
    let updated = c.updated_at.map(ms);
    // A row holding only KEV facts has no record yet: the record is new to it.
    let stored = before.as_ref().and_then(|(u, sha)| sha.as_deref().map(|sha| Stored { updated_ms: *u, sha256: sha }));
    let decided = revision::decide(stored, Stored { updated_ms: updated, sha256: sha });
    if !decided.writes() {
        return Ok(decided);
    }
    let written = sqlx::query(
        "INSERT INTO cves (id, format, title, published_at, updated_at, max_score_tenths, content_sha256, document, imported_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (id) DO UPDATE SET format = excluded.format, title = excluded.title,
             published_at = excluded.published_at, updated_at = excluded.updated_at,
             max_score_tenths = excluded.max_score_tenths, content_sha256 = excluded.content_sha256,
             document = excluded.document, imported_at = excluded.imported_at
         WHERE cves.content_sha256 IS NULL
            OR (cves.content_sha256 <> excluded.content_sha256
                AND COALESCE(cves.updated_at, -1) <= COALESCE(excluded.updated_at, -1))",
    )
    .bind(&c.id)
    .bind(&c.format)
    .bind(&c.title)
    .bind(c.published_at.map(ms))
    .bind(updated)
    .bind(c.max_score_tenths)
    .bind(sha)
    .bind(document)
    .bind(ms(now))
    .execute(pool)
    .await?;
    Ok(if written.rows_affected() == 0 { Outcome::Unchanged } else { decided })
}

/// Records KEV facts of `cve`.
pub(crate) async fn record_kev(pool: &AnyPool, cve: &str, kev: &KevRow, now: Timestamp) -> Result<bool> {
    let written = sqlx::query(
        "INSERT INTO cves (id, kev_date_added, kev_due_date, kev_ransomware, kev_required_action, imported_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE SET kev_date_added = excluded.kev_date_added,
             kev_due_date = excluded.kev_due_date, kev_ransomware = excluded.kev_ransomware,
             kev_required_action = excluded.kev_required_action
         WHERE cves.kev_date_added IS NULL OR cves.kev_date_added <> excluded.kev_date_added
            OR COALESCE(cves.kev_due_date, '') <> COALESCE(excluded.kev_due_date, '')
            OR COALESCE(cves.kev_ransomware, '') <> COALESCE(excluded.kev_ransomware, '')
            OR COALESCE(cves.kev_required_action, '') <> COALESCE(excluded.kev_required_action, '')",
    )
    .bind(cve)
    .bind(&kev.date_added)
    .bind(&kev.due_date)
    .bind(&kev.ransomware)
    .bind(&kev.required_action)
    .bind(ms(now))
    .execute(pool)
    .await?;
    Ok(written.rows_affected() > 0)
}

fn cve_from_row(row: &AnyRow) -> Result<CveRow> {
    let kev = row.try_get::<Option<String>, _>("kev_date_added")?.map(|date_added| {
        Ok::<_, StoreError>(KevRow {
            date_added,
            due_date: row.try_get("kev_due_date")?,
            ransomware: row.try_get("kev_ransomware")?,
            required_action: row.try_get("kev_required_action")?,
        })
    });
    Ok(CveRow {
        id: row.try_get("id")?,
        format: row.try_get("format")?,
        title: row.try_get("title")?,
        published_at: opt_ts(row.try_get("published_at")?)?,
        updated_at: opt_ts(row.try_get("updated_at")?)?,
        max_score_tenths: row.try_get("max_score_tenths")?,
        content_sha256: row.try_get("content_sha256")?,
        document: row.try_get("document")?,
        kev: kev.transpose()?,
    })
}

/// The stored rows among `ids`.
pub(crate) async fn cves(pool: &AnyPool, ids: &[String]) -> Result<Vec<CveRow>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(200) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!("SELECT * FROM cves WHERE id IN ({}) ORDER BY id", placeholders.join(", "));
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        for row in query.fetch_all(pool).await? {
            out.push(cve_from_row(&row)?);
        }
    }
    Ok(out)
}
