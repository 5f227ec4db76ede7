//! The SQLite backend: the embedded default for one server.
//!
//! Writes go through a pool of exactly one connection, so write transactions are serialized in
//! this process and never fail with `SQLITE_BUSY` on lock upgrade; reads use a separate pool
//! and see the last committed state (WAL). `synchronous=FULL` makes every acknowledged
//! commit durable across a crash or power loss.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use rollgate_core::member::{Applied, Member, MemberEvent, MemberState};
use rollgate_core::release::{self, Decision, MemberFacts, SetFacts};
use rollgate_core::set::{SetEvent, SetState};
use rollgate_core::window::Window;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, Sqlite, Transaction};

use crate::*;

/// A SQLite database file.
#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn ts(ms: i64) -> Result<Timestamp> {
    Timestamp::from_millisecond(ms).map_err(|e| StoreError::Corrupt(format!("bad time {ms}: {e}")))
}

fn opt_ts(ms: Option<i64>) -> Result<Option<Timestamp>> {
    ms.map(ts).transpose()
}

fn json_map(text: &str) -> Result<BTreeMap<String, String>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("bad JSON map: {e}")))
}

fn to_json(map: &BTreeMap<String, String>) -> String {
    serde_json::to_string(map).unwrap_or_else(|_| "{}".to_string())
}

fn not_found_or(err: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    match err {
        sqlx::Error::RowNotFound => StoreError::NotFound(what()),
        other => StoreError::Database(other),
    }
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and migrates it.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new().max_connections(4).connect_with(options.read_only(true)).await?;
        Ok(SqliteStore { writer, reader })
    }

    async fn load_set(&self, tx: &mut Transaction<'_, Sqlite>, set_id: i64) -> Result<SetRecord> {
        let row = sqlx::query("SELECT * FROM upgrade_sets WHERE id = ?")
            .bind(set_id)
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| not_found_or(e, || format!("upgrade set {set_id}")))?;
        set_from_row(&row)
    }
}

fn endpoint_from_row(row: &SqliteRow) -> Result<EndpointRecord> {
    Ok(EndpointRecord {
        id: row.try_get("id")?,
        hostname: row.try_get("hostname")?,
        os: row.try_get("os")?,
        labels: json_map(row.try_get("labels")?)?,
        products: json_map(row.try_get("products")?)?,
        cert_fingerprint: row.try_get("cert_fingerprint")?,
        enrolled_at: ts(row.try_get("enrolled_at")?)?,
        last_seen: opt_ts(row.try_get("last_seen")?)?,
    })
}

fn package_from_row(row: &SqliteRow) -> Result<PackageRecord> {
    Ok(PackageRecord {
        product: row.try_get("product")?,
        version: row.try_get("version")?,
        module: row.try_get("module")?,
        sha256: row.try_get("sha256")?,
        size: u64::try_from(row.try_get::<i64, _>("size")?).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        min_from: row.try_get("min_from")?,
        created_at: ts(row.try_get("created_at")?)?,
    })
}

fn u32_col(row: &SqliteRow, col: &str) -> Result<u32> {
    u32::try_from(row.try_get::<i64, _>(col)?).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn u64_col(row: &SqliteRow, col: &str) -> Result<u64> {
    u64::try_from(row.try_get::<i64, _>(col)?).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn set_from_row(row: &SqliteRow) -> Result<SetRecord> {
    let state: String = row.try_get("state")?;
    Ok(SetRecord {
        id: row.try_get("id")?,
        spec: NewSet {
            name: row.try_get("name")?,
            product: row.try_get("product")?,
            version: row.try_get("version")?,
            selector: row.try_get("selector")?,
            max_in_flight: u32_col(row, "max_in_flight")?,
            max_attempts: u32_col(row, "max_attempts")?,
            start_at: opt_ts(row.try_get("start_at")?)?,
            window: row.try_get("window")?,
            // Stored as the same 64 bits in a signed column.
            seed: row.try_get::<i64, _>("seed")? as u64,
            backoff_secs: u64_col(row, "backoff_secs")?,
            stuck_timeout_secs: u64_col(row, "stuck_timeout_secs")?,
            step_timeout_secs: u64_col(row, "step_timeout_secs")?,
        },
        state: SetState::from_str(&state).map_err(StoreError::Corrupt)?,
        state_reason: row.try_get("state_reason")?,
        created_at: ts(row.try_get("created_at")?)?,
        finished_at: opt_ts(row.try_get("finished_at")?)?,
    })
}

fn member_from_row(row: &SqliteRow) -> Result<MemberRecord> {
    let state: String = row.try_get("state")?;
    Ok(MemberRecord {
        endpoint_id: row.try_get("endpoint_id")?,
        rank: u32_col(row, "rank")?,
        member: Member {
            state: MemberState::from_str(&state).map_err(StoreError::Corrupt)?,
            attempts: u32_col(row, "attempts")?,
            reason: row.try_get("reason")?,
            deferrals: u32_col(row, "deferrals")?,
        },
        released_at: opt_ts(row.try_get("released_at")?)?,
        last_report_at: opt_ts(row.try_get("last_report_at")?)?,
    })
}

async fn save_member(
    tx: &mut Transaction<'_, Sqlite>,
    set_id: i64,
    endpoint_id: &str,
    m: &Member,
    released_at: Option<Timestamp>,
    last_report_at: Option<Timestamp>,
) -> Result<()> {
    sqlx::query(
        "UPDATE set_members SET state = ?, attempts = ?, reason = ?, deferrals = ?, released_at = ?, last_report_at = ?
         WHERE set_id = ? AND endpoint_id = ?",
    )
    .bind(m.state.as_str())
    .bind(i64::from(m.attempts))
    .bind(&m.reason)
    .bind(i64::from(m.deferrals))
    .bind(released_at.map(ms))
    .bind(last_report_at.map(ms))
    .bind(set_id)
    .bind(endpoint_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn save_set_state(
    tx: &mut Transaction<'_, Sqlite>,
    set_id: i64,
    state: SetState,
    reason: &str,
    now: Timestamp,
) -> Result<()> {
    let finished = state.is_terminal().then_some(ms(now));
    sqlx::query("UPDATE upgrade_sets SET state = ?, state_reason = ?, finished_at = COALESCE(finished_at, ?) WHERE id = ?")
        .bind(state.as_str())
        .bind(reason)
        .bind(finished)
        .bind(set_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = ?").bind(key).fetch_optional(&self.reader).await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    async fn put_meta(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn create_enroll_token(&self, token_sha256: &str, uses: u32, expires_at: Timestamp, now: Timestamp) -> Result<()> {
        sqlx::query("INSERT INTO enroll_tokens (token_sha256, uses_left, expires_at, created_at) VALUES (?, ?, ?, ?)")
            .bind(token_sha256)
            .bind(i64::from(uses))
            .bind(ms(expires_at))
            .bind(ms(now))
            .execute(&self.writer)
            .await
            .map_err(|e| if is_unique_violation(&e) { StoreError::Conflict("that enrollment token exists already".into()) } else { e.into() })?;
        Ok(())
    }

    async fn enroll(&self, token_sha256: &str, endpoint: &EndpointRecord, now: Timestamp) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query("SELECT uses_left, expires_at FROM enroll_tokens WHERE token_sha256 = ?")
            .bind(token_sha256)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(StoreError::TokenRefused("unknown token".into()));
        };
        let uses_left: i64 = row.try_get("uses_left")?;
        let expires_at: i64 = row.try_get("expires_at")?;
        if expires_at <= ms(now) {
            return Err(StoreError::TokenRefused("token expired".into()));
        }
        if uses_left <= 0 {
            return Err(StoreError::TokenRefused("token has no uses left".into()));
        }
        sqlx::query("UPDATE enroll_tokens SET uses_left = uses_left - 1 WHERE token_sha256 = ?")
            .bind(token_sha256)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO endpoints (id, hostname, os, labels, products, cert_fingerprint, enrolled_at, last_seen)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&endpoint.id)
        .bind(&endpoint.hostname)
        .bind(&endpoint.os)
        .bind(to_json(&endpoint.labels))
        .bind(to_json(&endpoint.products))
        .bind(&endpoint.cert_fingerprint)
        .bind(ms(endpoint.enrolled_at))
        .bind(endpoint.last_seen.map(ms))
        .execute(&mut *tx)
        .await
        .map_err(|e| if is_unique_violation(&e) { StoreError::Conflict(format!("endpoint {} exists", endpoint.id)) } else { e.into() })?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_endpoint(&self, id: &str) -> Result<EndpointRecord> {
        let row = sqlx::query("SELECT * FROM endpoints WHERE id = ?")
            .bind(id)
            .fetch_one(&self.reader)
            .await
            .map_err(|e| not_found_or(e, || format!("endpoint `{id}`")))?;
        endpoint_from_row(&row)
    }

    async fn list_endpoints(&self) -> Result<Vec<EndpointRecord>> {
        let rows = sqlx::query("SELECT * FROM endpoints ORDER BY id").fetch_all(&self.reader).await?;
        rows.iter().map(endpoint_from_row).collect()
    }

    async fn update_inventory(
        &self,
        id: &str,
        hostname: &str,
        os: &str,
        labels: &BTreeMap<String, String>,
        products: &BTreeMap<String, String>,
        now: Timestamp,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE endpoints SET hostname = ?, os = ?, labels = ?, products = ?, last_seen = MAX(COALESCE(last_seen, 0), ?) WHERE id = ?",
        )
            .bind(hostname)
            .bind(os)
            .bind(to_json(labels))
            .bind(to_json(products))
            .bind(ms(now))
            .bind(id)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("endpoint `{id}`")));
        }
        Ok(())
    }

    async fn touch_endpoint(&self, id: &str, now: Timestamp) -> Result<()> {
        let done = sqlx::query("UPDATE endpoints SET last_seen = MAX(COALESCE(last_seen, 0), ?) WHERE id = ?")
            .bind(ms(now))
            .bind(id)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("endpoint `{id}`")));
        }
        Ok(())
    }

    async fn insert_package(&self, p: &PackageRecord) -> Result<()> {
        let size = i64::try_from(p.size).map_err(|_| StoreError::Conflict("package too large".into()))?;
        sqlx::query("INSERT INTO packages (product, version, module, sha256, size, min_from, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
            .bind(&p.product)
            .bind(&p.version)
            .bind(&p.module)
            .bind(&p.sha256)
            .bind(size)
            .bind(&p.min_from)
            .bind(ms(p.created_at))
            .execute(&self.writer)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(format!("package {}@{} exists already; versions are immutable", p.product, p.version))
                } else {
                    e.into()
                }
            })?;
        Ok(())
    }

    async fn get_package(&self, product: &str, version: &str) -> Result<PackageRecord> {
        let row = sqlx::query("SELECT * FROM packages WHERE product = ? AND version = ?")
            .bind(product)
            .bind(version)
            .fetch_one(&self.reader)
            .await
            .map_err(|e| not_found_or(e, || format!("package {product}@{version}")))?;
        package_from_row(&row)
    }

    async fn package_sha_exists(&self, sha256: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM packages WHERE sha256 = ? LIMIT 1").bind(sha256).fetch_optional(&self.reader).await?;
        Ok(row.is_some())
    }

    async fn list_packages(&self) -> Result<Vec<PackageRecord>> {
        let rows = sqlx::query("SELECT * FROM packages").fetch_all(&self.reader).await?;
        let mut packages = rows.iter().map(package_from_row).collect::<Result<Vec<_>>>()?;
        // Version order is the core's, not SQL's.
        packages.sort_by(|a, b| a.product.cmp(&b.product).then_with(|| rollgate_core::version::compare(&a.version, &b.version)));
        Ok(packages)
    }

    async fn create_set(&self, s: &NewSet, members: &[(String, u32)], now: Timestamp) -> Result<SetRecord> {
        let mut tx = self.writer.begin().await?;
        let state = if s.start_at.is_some_and(|t| t > now) { SetState::Scheduled } else { SetState::Active };
        let id: i64 = sqlx::query(
            "INSERT INTO upgrade_sets (name, product, version, selector, max_in_flight, max_attempts, start_at, window, seed,
                backoff_secs, stuck_timeout_secs, step_timeout_secs, state, state_reason, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&s.name)
        .bind(&s.product)
        .bind(&s.version)
        .bind(&s.selector)
        .bind(i64::from(s.max_in_flight))
        .bind(i64::from(s.max_attempts))
        .bind(s.start_at.map(ms))
        .bind(&s.window)
        .bind(s.seed as i64)
        .bind(s.backoff_secs as i64)
        .bind(s.stuck_timeout_secs as i64)
        .bind(s.step_timeout_secs as i64)
        .bind(state.as_str())
        .bind("created")
        .bind(ms(now))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("an upgrade set named `{}` exists already", s.name))
            } else if is_foreign_key_violation(&e) {
                StoreError::NotFound(format!("package {}@{}", s.product, s.version))
            } else {
                e.into()
            }
        })?
        .try_get("id")?;
        for (endpoint_id, rank) in members {
            sqlx::query(
                "INSERT INTO set_members (set_id, endpoint_id, rank, state, attempts, deferrals) VALUES (?, ?, ?, 'pending', 0, 0)",
            )
            .bind(id)
            .bind(endpoint_id)
            .bind(i64::from(*rank))
            .execute(&mut *tx)
            .await
            .map_err(|e| match &e {
                _ if is_unique_violation(&e) => StoreError::Conflict(format!("endpoint `{endpoint_id}` is listed twice")),
                _ if is_foreign_key_violation(&e) => StoreError::NotFound(format!("endpoint `{endpoint_id}`")),
                _ => e.into(),
            })?;
        }
        let record = self.load_set(&mut tx, id).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn get_set_by_name(&self, name: &str) -> Result<SetRecord> {
        let row = sqlx::query("SELECT * FROM upgrade_sets WHERE name = ?")
            .bind(name)
            .fetch_one(&self.reader)
            .await
            .map_err(|e| not_found_or(e, || format!("upgrade set `{name}`")))?;
        set_from_row(&row)
    }

    async fn list_sets(&self) -> Result<Vec<SetRecord>> {
        let rows = sqlx::query("SELECT * FROM upgrade_sets ORDER BY id").fetch_all(&self.reader).await?;
        rows.iter().map(set_from_row).collect()
    }

    async fn live_set_ids(&self) -> Result<Vec<i64>> {
        // A cancelled set stays live while members hold slots: they may still time out.
        let rows = sqlx::query(
            "SELECT id FROM upgrade_sets s WHERE state <> 'completed'
               AND (state <> 'cancelled' OR EXISTS (SELECT 1 FROM set_members m WHERE m.set_id = s.id AND m.state = 'in_progress'))
             ORDER BY id",
        )
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    async fn set_members(&self, set_id: i64) -> Result<Vec<MemberRecord>> {
        let rows = sqlx::query("SELECT * FROM set_members WHERE set_id = ? ORDER BY rank").bind(set_id).fetch_all(&self.reader).await?;
        rows.iter().map(member_from_row).collect()
    }

    async fn change_set_state(&self, name: &str, event: SetEvent, reason: &str, now: Timestamp) -> Result<SetRecord> {
        let mut tx = self.writer.begin().await?;
        let id: i64 = sqlx::query("SELECT id FROM upgrade_sets WHERE name = ?")
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| not_found_or(e, || format!("upgrade set `{name}`")))?
            .try_get("id")?;
        let set = self.load_set(&mut tx, id).await?;
        let next = set.state.apply(event)?;
        save_set_state(&mut tx, id, next, reason, now).await?;
        let record = self.load_set(&mut tx, id).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn tick_set(&self, set_id: i64, params: TickParams, now: Timestamp) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let set = self.load_set(&mut tx, set_id).await?;
        if set.state == SetState::Completed {
            return Ok(false);
        }
        let package = {
            let row = sqlx::query("SELECT * FROM packages WHERE product = ? AND version = ?")
                .bind(&set.spec.product)
                .bind(&set.spec.version)
                .fetch_one(&mut *tx)
                .await?;
            package_from_row(&row)?
        };
        let rows = sqlx::query(
            "SELECT m.*, e.last_seen AS endpoint_last_seen, e.products AS endpoint_products,
                EXISTS (SELECT 1 FROM set_members o WHERE o.endpoint_id = m.endpoint_id AND o.set_id <> m.set_id
                        AND o.state = 'in_progress') AS busy_elsewhere
             FROM set_members m JOIN endpoints e ON e.id = m.endpoint_id
             WHERE m.set_id = ? ORDER BY m.rank",
        )
        .bind(set_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut members = Vec::with_capacity(rows.len());
        let mut extras = Vec::with_capacity(rows.len());
        for row in &rows {
            let record = member_from_row(row)?;
            let last_seen = opt_ts(row.try_get("endpoint_last_seen")?)?;
            let products = json_map(row.try_get("endpoint_products")?)?;
            let busy: bool = row.try_get("busy_elsewhere")?;
            extras.push((last_seen, products.get(&set.spec.product).cloned(), busy));
            members.push(record);
        }
        let window = set
            .spec
            .window
            .as_deref()
            .map(Window::parse)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("window of set {set_id}: {e}")))?;
        let facts = SetFacts {
            state: set.state,
            max_in_flight: set.spec.max_in_flight,
            start_at: set.spec.start_at,
            window: window.as_ref(),
            stuck_timeout_secs: set.spec.stuck_timeout_secs,
            offline_after_secs: params.offline_after_secs,
            target_version: &set.spec.version,
            min_from: package.min_from.as_deref(),
        };
        let member_facts: Vec<MemberFacts<'_>> = members
            .iter()
            .zip(&extras)
            .map(|(m, (last_seen, installed, busy))| MemberFacts {
                endpoint_id: &m.endpoint_id,
                member: &m.member,
                rank: m.rank,
                last_activity: m.last_report_at.max(m.released_at),
                last_seen: *last_seen,
                installed_version: installed.as_deref(),
                busy_elsewhere: *busy,
            })
            .collect();
        let decisions = release::plan(&facts, &member_facts, now);
        if decisions.is_empty() {
            return Ok(false);
        }
        let mut by_id: HashMap<&str, &MemberRecord> = members.iter().map(|m| (m.endpoint_id.as_str(), m)).collect();
        let mut state = set.state;
        for decision in &decisions {
            match decision {
                Decision::Set(event) => {
                    state = state.apply(*event)?;
                    let reason = match event {
                        SetEvent::Start => "start time reached",
                        SetEvent::Finish => "every endpoint has an outcome",
                        _ => "scheduler",
                    };
                    save_set_state(&mut tx, set_id, state, reason, now).await?;
                }
                Decision::Member { endpoint_id, event } => {
                    let Some(record) = by_id.remove(endpoint_id.as_str()) else {
                        return Err(StoreError::Corrupt(format!("plan names unknown member {endpoint_id}")));
                    };
                    let mut member = record.member.clone();
                    member.apply(event.clone())?;
                    let released_at = if *event == MemberEvent::Release { Some(now) } else { record.released_at };
                    save_member(&mut tx, set_id, endpoint_id, &member, released_at, record.last_report_at).await?;
                    if member.state == MemberState::TimedOut {
                        // Close the running attempt in the history; a late report may still
                        // replace this outcome with the real one.
                        sqlx::query(
                            "UPDATE attempts SET outcome = 'timed_out', finished_at = ?, reason = ?
                             WHERE set_id = ? AND endpoint_id = ? AND attempt = ? AND outcome = 'in_progress'",
                        )
                        .bind(ms(now))
                        .bind(&member.reason)
                        .bind(set_id)
                        .bind(endpoint_id)
                        .bind(i64::from(member.attempts))
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
        }
        // The invariant, checked against what is about to be committed.
        let in_flight: i64 = sqlx::query("SELECT COUNT(*) AS n FROM set_members WHERE set_id = ? AND state = 'in_progress'")
            .bind(set_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        let before = members.iter().filter(|m| m.member.holds_slot()).count() as i64;
        if in_flight > i64::from(set.spec.max_in_flight) && in_flight > before {
            return Err(StoreError::Corrupt(format!(
                "refusing to commit: set {set_id} would have {in_flight} in flight, limit {}",
                set.spec.max_in_flight
            )));
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn record_report(&self, endpoint_id: &str, r: &ReportRecord, now: Timestamp) -> Result<Applied> {
        let mut tx = self.writer.begin().await?;
        let set = self.load_set(&mut tx, r.set_id).await?;
        let row = sqlx::query("SELECT * FROM set_members WHERE set_id = ? AND endpoint_id = ?")
            .bind(r.set_id)
            .bind(endpoint_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| not_found_or(e, || format!("endpoint `{endpoint_id}` in upgrade set {}", r.set_id)))?;
        let record = member_from_row(&row)?;
        if r.to_version != set.spec.version {
            return Err(StoreError::Invalid(format!(
                "report names version {} but upgrade set {} installs {}",
                r.to_version, set.spec.name, set.spec.version
            )));
        }
        let mut member = record.member.clone();
        let event = match r.kind {
            ReportKindRecord::AttemptStarted => MemberEvent::AttemptStarted { attempt: r.attempt, max_attempts: set.spec.max_attempts },
            ReportKindRecord::Heartbeat => MemberEvent::Heartbeat { attempt: r.attempt },
            ReportKindRecord::AttemptFailed => {
                MemberEvent::AttemptFailed { attempt: r.attempt, reason: r.reason.clone().unwrap_or_else(|| "no reason given".into()) }
            }
            ReportKindRecord::Finished(outcome) => MemberEvent::Finished { outcome, reason: r.reason.clone() },
        };
        let applied = member.apply(event)?;
        if applied == Applied::Changed {
            save_member(&mut tx, r.set_id, endpoint_id, &member, record.released_at, Some(now)).await?;
        }
        match r.kind {
            ReportKindRecord::Heartbeat => {}
            ReportKindRecord::AttemptStarted => {
                sqlx::query(
                    "INSERT INTO attempts (set_id, endpoint_id, attempt, product, from_version, to_version, started_at, outcome)
                     VALUES (?, ?, ?, ?, ?, ?, ?, 'in_progress') ON CONFLICT DO NOTHING",
                )
                .bind(r.set_id)
                .bind(endpoint_id)
                .bind(i64::from(r.attempt))
                .bind(&set.spec.product)
                .bind(&r.from_version)
                .bind(&r.to_version)
                .bind(ms(r.at))
                .execute(&mut *tx)
                .await?;
            }
            ReportKindRecord::AttemptFailed | ReportKindRecord::Finished(_) => {
                let outcome = match r.kind {
                    ReportKindRecord::Finished(o) => o.as_str(),
                    _ => "failed",
                };
                // Only an attempt still running (or closed by a timeout) takes an outcome, so a
                // repeated report changes nothing.
                sqlx::query(
                    "UPDATE attempts SET finished_at = ?, outcome = ?, reason = ?
                     WHERE set_id = ? AND endpoint_id = ? AND attempt = ? AND outcome IN ('in_progress', 'timed_out')",
                )
                .bind(ms(r.at))
                .bind(outcome)
                .bind(&r.reason)
                .bind(r.set_id)
                .bind(endpoint_id)
                .bind(i64::from(r.attempt))
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(applied)
    }

    async fn assignment_for(&self, endpoint_id: &str) -> Result<Option<(SetRecord, PackageRecord)>> {
        let row = sqlx::query(
            "SELECT s.* FROM set_members m JOIN upgrade_sets s ON s.id = m.set_id
             WHERE m.endpoint_id = ? AND m.state = 'in_progress' ORDER BY s.id LIMIT 1",
        )
        .bind(endpoint_id)
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let set = set_from_row(&row)?;
        let package = self.get_package(&set.spec.product, &set.spec.version).await?;
        Ok(Some((set, package)))
    }

    async fn history(&self, endpoint_id: &str) -> Result<Vec<AttemptRecord>> {
        let rows = sqlx::query(
            "SELECT a.*, s.name AS set_name FROM attempts a JOIN upgrade_sets s ON s.id = a.set_id
             WHERE a.endpoint_id = ? ORDER BY a.started_at, a.set_id, a.attempt",
        )
        .bind(endpoint_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AttemptRecord {
                    set_id: row.try_get("set_id")?,
                    set_name: row.try_get("set_name")?,
                    attempt: u32_col(row, "attempt")?,
                    product: row.try_get("product")?,
                    from_version: row.try_get("from_version")?,
                    to_version: row.try_get("to_version")?,
                    started_at: ts(row.try_get("started_at")?)?,
                    finished_at: opt_ts(row.try_get("finished_at")?)?,
                    outcome: row.try_get("outcome")?,
                    reason: row.try_get("reason")?,
                })
            })
            .collect()
    }
}
