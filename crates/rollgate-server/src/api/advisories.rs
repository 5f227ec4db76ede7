//! The advisory API (admin): import a document (any format `rollgate_advisories` reads), list
//! advisories, show one with the endpoints it affects. Parsing happens here, on the server,
//! so that imports from the CLI and from feeds take one path.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use rollgate_advisories::{Advisory, CveRecord, Document, KevCatalog};
use rollgate_store::{AdvisoryFilter, AdvisoryRecord, CveRow, KevRow};
use rollgate_wire::{AdvisoryDetail, AdvisoryImport, AdvisorySummary, ImportedItem, KevView};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{now_ms, rfc3339, Admin, ApiError, PathParams, QueryParams};
use crate::AppState;

/// Largest document accepted (an NVD page of 2,000 CVEs is about 30 MB).
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024 * 1024;

/// `POST /v1/advisories`, body = one document.
pub async fn import(State(state): State<AppState>, _: Admin, body: Bytes) -> Result<Json<AdvisoryImport>, ApiError> {
    let document = tokio::task::spawn_blocking(move || rollgate_advisories::parse(&body))
        .await
        .map_err(|e| anyhow::anyhow!("parsing an advisory: {e}"))?
        .map_err(|e| {
            let code = match e {
                rollgate_advisories::ParseError::UnknownFormat(_) => "unknown_format",
                _ => "bad_document",
            };
            ApiError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string())
        })?;
    Ok(Json(store_document(&state, &document).await?))
}

/// Stores what a parsed document holds (also used by the feed poller).
pub async fn store_document(state: &AppState, document: &Document) -> Result<AdvisoryImport, ApiError> {
    let now = now_ms();
    let (format, items) = match document {
        Document::Advisory(a) => {
            let outcome = state.store.import_advisory(&advisory_record(a, now)?).await?;
            (a.format, vec![ImportedItem { id: a.id.clone(), outcome: outcome.as_str().into() }])
        }
        Document::Cves(records) => {
            let mut items = Vec::with_capacity(records.len());
            for record in records {
                let outcome = state.store.import_cve(&cve_row(record)?, now).await?;
                // NVD carries CISA's KEV facts too, with fewer fields than the catalog: they are
                // recorded only for a CVE the catalog has not described, never over it.
                if let Some(facts) = &record.kev {
                    let known = state.store.cves(std::slice::from_ref(&record.id)).await?;
                    if known.first().and_then(|row| row.kev.as_ref()).is_none() {
                        state.store.record_kev(&record.id, &kev_row(facts), now).await?;
                    }
                }
                items.push(ImportedItem { id: record.id.clone(), outcome: outcome.as_str().into() });
            }
            (records.first().map_or(rollgate_advisories::Format::Nvd, |r| r.format), items)
        }
        Document::Kev(catalog) => (rollgate_advisories::Format::Kev, store_kev(state, catalog, now).await?),
    };
    Ok(AdvisoryImport { format: format.as_str().into(), items })
}

async fn store_kev(
    state: &AppState,
    catalog: &KevCatalog,
    now: jiff::Timestamp,
) -> Result<Vec<ImportedItem>, ApiError> {
    // The catalog is revised as a whole: one older than the newest imported (by its release
    // time) would put back due dates CISA has since changed, so it changes nothing.
    const NEWEST: &str = "kev_catalog_released_ms";
    let released_ms = catalog.released.map(|t| t.as_millisecond());
    let newest_ms = state.store.get_meta(NEWEST).await?.and_then(|v| v.parse::<i64>().ok());
    if let (Some(incoming), Some(newest)) = (released_ms, newest_ms) {
        if incoming < newest {
            return Ok(catalog
                .entries
                .iter()
                .map(|e| ImportedItem { id: e.cve.clone(), outcome: "older".into() })
                .collect());
        }
    }
    let mut items = Vec::with_capacity(catalog.entries.len());
    for entry in &catalog.entries {
        let changed = state.store.record_kev(&entry.cve, &kev_row(&entry.facts), now).await?;
        items.push(ImportedItem {
            id: entry.cve.clone(),
            outcome: if changed { "updated" } else { "unchanged" }.into(),
        });
    }
    if let Some(released) = released_ms {
        state.store.put_meta(NEWEST, &released.to_string()).await?;
    }
    Ok(items)
}

fn kev_row(facts: &rollgate_advisories::KevFacts) -> KevRow {
    KevRow {
        date_added: facts.date_added.to_string(),
        due_date: facts.due_date.map(|d| d.to_string()),
        ransomware: facts.ransomware.clone(),
        required_action: facts.required_action.clone(),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn tenths(score: Option<f64>) -> Option<i64> {
    // Scores are 0.0..=10.0 with one decimal: tenths fit an i64 exactly.
    #[allow(clippy::cast_possible_truncation)]
    score.map(|s| (s * 10.0).round() as i64)
}

fn advisory_record(a: &Advisory, now: jiff::Timestamp) -> Result<AdvisoryRecord, ApiError> {
    let document = serde_json::to_string(a).map_err(|e| anyhow::anyhow!("serializing an advisory: {e}"))?;
    Ok(AdvisoryRecord {
        publisher: a.publisher.clone(),
        id: a.id.clone(),
        format: a.format.as_str().into(),
        title: a.title.clone(),
        published_at: a.published,
        updated_at: a.updated,
        revision: a.revision.clone(),
        rating: a.rating.clone(),
        max_score_tenths: tenths(a.max_score()),
        content_sha256: sha256_hex(document.as_bytes()),
        cves: a.vulnerability_ids(),
        products: a.product_names(),
        document,
        imported_at: now,
    })
}

fn cve_row(c: &CveRecord) -> Result<CveRow, ApiError> {
    let document = serde_json::to_string(c).map_err(|e| anyhow::anyhow!("serializing a CVE record: {e}"))?;
    Ok(CveRow {
        id: c.id.clone(),
        format: Some(c.format.as_str().into()),
        title: c.title.clone(),
        published_at: c.published,
        updated_at: c.updated,
        max_score_tenths: tenths(c.max_score()),
        content_sha256: Some(sha256_hex(document.as_bytes())),
        document: Some(document),
        kev: None,
    })
}

/// Query of `GET /v1/advisories`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    product: Option<String>,
    /// `critical`, `high`, `medium`, `low` (CVSS bands of the highest score), or a publisher's
    /// rating word (`important`, `moderate`).
    severity: Option<String>,
    /// RFC 3339 time or a date.
    since: Option<String>,
}

/// `GET /v1/advisories`.
pub async fn list(
    State(state): State<AppState>,
    _: Admin,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<Vec<AdvisorySummary>>, ApiError> {
    let since = q
        .since
        .as_deref()
        .map(rollgate_advisories::dates::timestamp)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("--since: {e}")))?;
    let records = state.store.list_advisories(&AdvisoryFilter { product: q.product, since, cve: None }).await?;
    let records: Vec<AdvisoryRecord> = match q.severity.as_deref().map(str::to_lowercase) {
        Some(wanted) => records.into_iter().filter(|r| severity_matches(r, &wanted)).collect(),
        None => records,
    };
    let kev = kev_of(&state, records.iter().flat_map(|r| r.cves.iter().cloned()).collect()).await?;
    Ok(Json(records.iter().map(|r| summary(r, &kev)).collect()))
}

/// Whether `r` has severity `wanted`: its publisher's rating word, or the CVSS band of its
/// highest score.
pub(crate) fn severity_matches(r: &AdvisoryRecord, wanted: &str) -> bool {
    let rating = r.rating.as_deref().map(str::to_lowercase);
    #[allow(clippy::cast_precision_loss)]
    let band = r.max_score_tenths.map(|t| rollgate_advisories::score::rating_of(t as f64 / 10.0));
    rating.as_deref() == Some(wanted) || band == Some(wanted)
}

async fn kev_of(state: &AppState, cves: Vec<String>) -> Result<BTreeMap<String, KevView>, ApiError> {
    let mut unique = cves;
    unique.sort();
    unique.dedup();
    Ok(state
        .store
        .cves(&unique)
        .await?
        .into_iter()
        .filter_map(|row| {
            let kev = row.kev?;
            Some((row.id, KevView { date_added: kev.date_added, due_date: kev.due_date, ransomware: kev.ransomware }))
        })
        .collect())
}

fn summary(r: &AdvisoryRecord, kev: &BTreeMap<String, KevView>) -> AdvisorySummary {
    let said_exploited = serde_json::from_str::<Advisory>(&r.document).map(|a| a.known_exploited()).unwrap_or(false);
    #[allow(clippy::cast_precision_loss)]
    let max_score = r.max_score_tenths.map(|t| t as f64 / 10.0);
    AdvisorySummary {
        publisher: r.publisher.clone(),
        id: r.id.clone(),
        format: r.format.clone(),
        title: r.title.clone(),
        published: r.published_at.map(rfc3339),
        updated: r.updated_at.map(rfc3339),
        rating: r.rating.clone(),
        max_score,
        cves: r.cves.clone(),
        known_exploited: said_exploited || r.cves.iter().any(|c| kev.contains_key(c)),
    }
}

/// Query of `GET /v1/advisories/{id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowQuery {
    #[serde(default)]
    affected: bool,
}

/// `GET /v1/advisories/{id}`.
pub async fn show(
    State(state): State<AppState>,
    _: Admin,
    PathParams(id): PathParams<String>,
    QueryParams(q): QueryParams<ShowQuery>,
) -> Result<Json<Vec<AdvisoryDetail>>, ApiError> {
    let records = state.store.advisories_by_id(&id).await?;
    if records.is_empty() {
        return Err(ApiError::new(axum::http::StatusCode::NOT_FOUND, "not_found", format!("no advisory {id}")));
    }
    let mut details = Vec::with_capacity(records.len());
    for r in records {
        let kev = kev_of(&state, r.cves.clone()).await?;
        let advisory: Advisory = serde_json::from_str(&r.document)
            .map_err(|e| anyhow::anyhow!("stored advisory {} is damaged: {e}", r.id))?;
        let affected = if q.affected {
            Some(crate::vulnerabilities::affected_endpoints(&*state.store, &advisory).await?)
        } else {
            None
        };
        details.push(AdvisoryDetail {
            summary: summary(&r, &kev),
            document: serde_json::to_value(&advisory).map_err(|e| anyhow::anyhow!("{e}"))?,
            kev,
            affected,
        });
    }
    Ok(Json(details))
}

/// Query of `GET /v1/cves/{id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CveQuery {
    #[serde(default)]
    affected: bool,
}

/// `GET /v1/cves/{id}`: a CVE record, its KEV facts, the advisories naming it.
pub async fn show_cve(
    State(state): State<AppState>,
    _: Admin,
    PathParams(id): PathParams<String>,
    QueryParams(q): QueryParams<CveQuery>,
) -> Result<Json<rollgate_wire::CveDetail>, ApiError> {
    let row = state.store.cves(std::slice::from_ref(&id)).await?.into_iter().next();
    let advisories: Vec<(String, String)> = state
        .store
        .list_advisories(&AdvisoryFilter { cve: Some(id.clone()), ..Default::default() })
        .await?
        .into_iter()
        .map(|a| (a.publisher, a.id))
        .collect();
    if row.is_none() && advisories.is_empty() {
        return Err(ApiError::new(axum::http::StatusCode::NOT_FOUND, "not_found", format!("nothing is known of {id}")));
    }
    let record: Option<CveRecord> = row
        .as_ref()
        .and_then(|r| r.document.as_deref())
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| anyhow::anyhow!("stored CVE record {id} is damaged: {e}"))?;
    let affected = match (&record, q.affected) {
        (Some(record), true) => Some(crate::vulnerabilities::affected_by_cve(&*state.store, record).await?),
        _ => None,
    };
    let kev = row.and_then(|r| r.kev).map(|k| KevView {
        date_added: k.date_added,
        due_date: k.due_date,
        ransomware: k.ransomware,
    });
    Ok(Json(rollgate_wire::CveDetail {
        id,
        record: record.map(serde_json::to_value).transpose().map_err(|e| anyhow::anyhow!("{e}"))?,
        kev,
        advisories,
        affected,
    }))
}
