//! The SQL store: one implementation over sqlx's `Any` driver for both backends.
//!
//! * SQLite is the embedded default for one server. Writes go through a pool of exactly one
//!   connection, so write transactions are serialized in this process and never fail with
//!   `SQLITE_BUSY` on lock upgrade; reads use a separate pool and see the last committed state
//!   (WAL). `synchronous=FULL` makes every acknowledged commit durable.
//! * PostgreSQL serves several server replicas. Transactions that decide about a set lock its
//!   row (`FOR UPDATE`), and scheduler ticks also take a transaction-scoped advisory lock, so
//!   replicas deciding at the same moment are serialized by the database, not by memory.
//!   Changes are announced with `NOTIFY` so that every replica wakes its held polls.
//!
//! One SQL text serves both: `$N` placeholders work in both, and the few real differences are
//! in [`Dialect`]. Each backend keeps its own migrations (`migrations/sqlite`,
//! `migrations/postgres`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use jiff::Timestamp;
use rollgate_core::member::{Applied, Member, MemberEvent, MemberState};
use rollgate_core::release::{self, Decision, MemberFacts, SetFacts};
use rollgate_core::set::{SetEvent, SetState};
use rollgate_core::window::Window;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};

use crate::*;

/// Which database the store talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// The embedded file database.
    Sqlite,
    /// A PostgreSQL server shared by replicas.
    Postgres,
}

/// A Rollgate database.
#[derive(Clone)]
pub struct SqlStore {
    pub(crate) writer: AnyPool,
    pub(crate) reader: AnyPool,
    dialect: Dialect,
    /// For `LISTEN` (PostgreSQL only): the URL and the channel, which is named after the schema
    /// so that installations sharing a database do not wake each other.
    listen: Option<(String, String)>,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqlStore({:?})", self.dialect)
    }
}

/// Settings every SQLite connection needs; the journal mode is the writer's to set.
fn sqlite_pragmas(
    read_only: bool,
) -> impl for<'c> Fn(
    &'c mut sqlx::AnyConnection,
    sqlx::pool::PoolConnectionMetadata,
) -> BoxFuture<'c, std::result::Result<(), sqlx::Error>>
       + Send
       + Sync
       + 'static {
    move |conn, _meta| {
        Box::pin(async move {
            if !read_only {
                conn.execute("PRAGMA journal_mode = WAL").await?;
            }
            conn.execute("PRAGMA synchronous = FULL").await?;
            conn.execute("PRAGMA foreign_keys = ON").await?;
            conn.execute("PRAGMA busy_timeout = 10000").await?;
            Ok(())
        })
    }
}

/// Checks a schema name: it is spliced into SQL, so only a safe alphabet is allowed.
fn validate_schema(schema: &str) -> Result<()> {
    // 46: the channel `rollgate_changes_<schema>` must stay under PostgreSQL's 64-byte limit.
    let ok = !schema.is_empty()
        && schema.len() <= 46
        && schema.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!("bad schema name `{schema}`: use 1 to 46 lower-case letters, digits and `_`")))
    }
}

impl SqlStore {
    /// Opens (creating if needed) the SQLite database file at `path` and migrates it.
    pub async fn open_sqlite(path: &Path) -> Result<SqlStore> {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}", path.display());
        let writer = AnyPoolOptions::new()
            .max_connections(1)
            .after_connect(sqlite_pragmas(false))
            .connect(&format!("{url}?mode=rwc"))
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(sqlite_pragmas(true))
            .connect(&format!("{url}?mode=ro"))
            .await?;
        Ok(SqlStore { writer, reader, dialect: Dialect::Sqlite, listen: None })
    }

    /// Connects to PostgreSQL at `url`, in `schema` (created if missing) when given, and
    /// migrates. Several servers may do this at once: the migrator takes a lock.
    pub async fn open_postgres(url: &str, schema: Option<&str>) -> Result<SqlStore> {
        sqlx::any::install_default_drivers();
        let schema = schema.unwrap_or("public").to_string();
        validate_schema(&schema)?;
        {
            let setup = AnyPoolOptions::new().max_connections(1).connect(url).await?;
            let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
            // Servers starting together can race here (`IF NOT EXISTS` is not atomic); the
            // loser sees a unique violation, and the schema exists by then.
            match setup.execute(create.as_str()).await {
                Err(e) if is_unique_violation(&e) => {}
                other => {
                    other?;
                }
            }
            setup.close().await;
        }
        let search_path = schema.clone();
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                let set = format!("SET search_path TO \"{search_path}\"");
                Box::pin(async move {
                    conn.execute(set.as_str()).await?;
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let channel = format!("rollgate_changes_{schema}");
        Ok(SqlStore {
            writer: pool.clone(),
            reader: pool,
            dialect: Dialect::Postgres,
            listen: Some((url.to_string(), channel)),
        })
    }

    /// Opens the store a URL names: `postgres://…` (with an optional schema) or a SQLite path.
    pub async fn open_url(url: &str, schema: Option<&str>) -> Result<SqlStore> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            SqlStore::open_postgres(url, schema).await
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            SqlStore::open_sqlite(Path::new(path)).await
        }
    }

    /// The backend in use.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    async fn enroll_in(
        &self,
        tx: &mut Transaction<'_, Any>,
        token_sha256: &str,
        endpoint: &EndpointRecord,
        now: Timestamp,
    ) -> Result<()> {
        // One conditional update takes a use, so two servers enrolling with the last use of a
        // token at the same moment cannot both succeed.
        let taken = sqlx::query(
            "UPDATE enroll_tokens SET uses_left = uses_left - 1 WHERE token_sha256 = $1 AND uses_left > 0 AND expires_at > $2",
        )
        .bind(token_sha256)
        .bind(ms(now))
        .execute(&mut **tx)
        .await?;
        if taken.rows_affected() == 0 {
            refuse_unknown_or_expired_token(tx, token_sha256, now).await?;
            return Err(StoreError::TokenRefused("token has no uses left".into()));
        }
        sqlx::query(
            "INSERT INTO endpoints (id, hostname, os, labels, products, cert_fingerprint, enrolled_at, last_seen, public_key_sha256)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&endpoint.id)
        .bind(&endpoint.hostname)
        .bind(&endpoint.os)
        .bind(to_json(&endpoint.labels))
        .bind(to_json(&endpoint.products))
        .bind(&endpoint.cert_fingerprint)
        .bind(ms(endpoint.enrolled_at))
        .bind(endpoint.last_seen.map(ms))
        .bind(&endpoint.public_key_sha256)
        .execute(&mut **tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("endpoint {} (or its key) exists", endpoint.id))
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    async fn create_set_in(
        &self,
        tx: &mut Transaction<'_, Any>,
        s: &NewSet,
        members: &[(String, u32)],
        now: Timestamp,
    ) -> Result<SetRecord> {
        let state = if s.start_at.is_some_and(|t| t > now) { SetState::Scheduled } else { SetState::Active };
        let id: i64 = sqlx::query(
            "INSERT INTO upgrade_sets (name, product, version, selector, max_in_flight, max_attempts, start_at, window_spec, seed,
                backoff_secs, stuck_timeout_secs, step_timeout_secs, state, state_reason, created_at, watch_secs)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING id",
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
        .bind(s.watch_secs as i64)
        .fetch_one(&mut **tx)
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
                "INSERT INTO set_members (set_id, endpoint_id, rank, state, attempts, deferrals) VALUES ($1, $2, $3, 'pending', 0, 0)",
            )
            .bind(id)
            .bind(endpoint_id)
            .bind(i64::from(*rank))
            .execute(&mut **tx)
            .await
            .map_err(|e| match &e {
                _ if is_unique_violation(&e) => StoreError::Conflict(format!("endpoint `{endpoint_id}` is listed twice")),
                _ if is_foreign_key_violation(&e) => StoreError::NotFound(format!("endpoint `{endpoint_id}`")),
                _ => e.into(),
            })?;
        }
        let record = self.load_set(tx, id).await?;
        self.announce_in(tx).await?;
        Ok(record)
    }

    async fn change_set_state_in(
        &self,
        tx: &mut Transaction<'_, Any>,
        name: &str,
        event: SetEvent,
        reason: &str,
        now: Timestamp,
    ) -> Result<SetRecord> {
        let sql = format!("SELECT id FROM upgrade_sets WHERE name = $1{}", self.for_update());
        let id: i64 = sqlx::query(&sql)
            .bind(name)
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| not_found_or(e, || format!("upgrade set `{name}`")))?
            .try_get("id")?;
        let set = self.load_set(tx, id).await?;
        let next = set.state.apply(event)?;
        save_set_state(tx, id, next, reason, now).await?;
        let record = self.load_set(tx, id).await?;
        self.announce_in(tx).await?;
        Ok(record)
    }

    async fn tick_set_in(
        &self,
        tx: &mut Transaction<'_, Any>,
        set_id: i64,
        params: TickParams,
        now: Timestamp,
    ) -> Result<bool> {
        if self.dialect == Dialect::Postgres {
            // Ticks of different sets decide about the same endpoints (one slot per endpoint
            // across sets), so replicas take turns; the lock ends with the transaction.
            // Keyed by schema, so installations sharing a database do not wait for each other.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('rollgate-tick:' || current_schema()))")
                .execute(&mut **tx)
                .await?;
        }
        let set = self.load_set(tx, set_id).await?;
        if set.state == SetState::Completed {
            return Ok(false);
        }
        let package = {
            let row = sqlx::query("SELECT * FROM packages WHERE product = $1 AND version = $2")
                .bind(&set.spec.product)
                .bind(&set.spec.version)
                .fetch_one(&mut **tx)
                .await?;
            package_from_row(&row)?
        };
        let rows = sqlx::query(
            "SELECT m.*, e.last_seen AS endpoint_last_seen, e.products AS endpoint_products,
                CAST(CASE WHEN EXISTS (SELECT 1 FROM set_members o WHERE o.endpoint_id = m.endpoint_id
                        AND o.set_id <> m.set_id AND o.state = 'in_progress') THEN 1 ELSE 0 END AS BIGINT) AS busy_elsewhere
             FROM set_members m JOIN endpoints e ON e.id = m.endpoint_id
             WHERE m.set_id = $1 ORDER BY m.rank",
        )
        .bind(set_id)
        .fetch_all(&mut **tx)
        .await?;
        let mut members = Vec::with_capacity(rows.len());
        let mut extras = Vec::with_capacity(rows.len());
        for row in &rows {
            let record = member_from_row(row)?;
            let last_seen = opt_ts(row.try_get("endpoint_last_seen")?)?;
            let products = json_map(row.try_get("endpoint_products")?)?;
            let busy = row.try_get::<i64, _>("busy_elsewhere")? != 0;
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
            observing_since: params.observing_since,
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
                    save_set_state(tx, set_id, state, reason, now).await?;
                }
                Decision::Member { endpoint_id, event } => {
                    let Some(record) = by_id.remove(endpoint_id.as_str()) else {
                        return Err(StoreError::Corrupt(format!("plan names unknown member {endpoint_id}")));
                    };
                    let mut member = record.member.clone();
                    member.apply(event.clone())?;
                    let released_at = if *event == MemberEvent::Release { Some(now) } else { record.released_at };
                    save_member(tx, set_id, endpoint_id, &member, released_at, record.last_report_at).await?;
                    if member.state == MemberState::TimedOut {
                        // Close the running attempt in the history; a late report may still
                        // replace this outcome with the real one.
                        sqlx::query(
                            "UPDATE attempts SET outcome = 'timed_out', finished_at = $1, reason = $2
                             WHERE set_id = $3 AND endpoint_id = $4 AND attempt = $5 AND outcome = 'in_progress'",
                        )
                        .bind(ms(now))
                        .bind(&member.reason)
                        .bind(set_id)
                        .bind(endpoint_id)
                        .bind(i64::from(member.attempts))
                        .execute(&mut **tx)
                        .await?;
                    }
                }
            }
        }
        // The invariant, checked against what is about to be committed.
        let in_flight: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM set_members WHERE set_id = $1 AND state = 'in_progress'")
                .bind(set_id)
                .fetch_one(&mut **tx)
                .await?
                .try_get("n")?;
        let before = members.iter().filter(|m| m.member.holds_slot()).count() as i64;
        if in_flight > i64::from(set.spec.max_in_flight) && in_flight > before {
            return Err(StoreError::Corrupt(format!(
                "refusing to commit: set {set_id} would have {in_flight} in flight, limit {}",
                set.spec.max_in_flight
            )));
        }
        self.announce_in(tx).await?;
        Ok(true)
    }

    async fn record_report_in(
        &self,
        tx: &mut Transaction<'_, Any>,
        endpoint_id: &str,
        r: &ReportRecord,
        now: Timestamp,
    ) -> Result<Applied> {
        let set = self.load_set(tx, r.set_id).await?;
        let row = sqlx::query("SELECT * FROM set_members WHERE set_id = $1 AND endpoint_id = $2")
            .bind(r.set_id)
            .bind(endpoint_id)
            .fetch_one(&mut **tx)
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
            ReportKindRecord::AttemptStarted => {
                MemberEvent::AttemptStarted { attempt: r.attempt, max_attempts: set.spec.max_attempts }
            }
            ReportKindRecord::Heartbeat => MemberEvent::Heartbeat { attempt: r.attempt },
            ReportKindRecord::AttemptFailed => MemberEvent::AttemptFailed {
                attempt: r.attempt,
                reason: r.reason.clone().unwrap_or_else(|| "no reason given".into()),
            },
            ReportKindRecord::Finished(outcome) => MemberEvent::Finished { outcome, reason: r.reason.clone() },
        };
        let applied = member.apply(event)?;
        if applied == Applied::Changed {
            save_member(tx, r.set_id, endpoint_id, &member, record.released_at, Some(now)).await?;
        }
        match r.kind {
            ReportKindRecord::Heartbeat => {}
            ReportKindRecord::AttemptStarted => {
                if applied == Applied::Changed {
                    // An agent that starts the next attempt is done with the earlier ones, even
                    // if their failure reports never arrived: no two attempts run at once.
                    sqlx::query(
                        "UPDATE attempts SET outcome = 'failed', finished_at = $1, reason = $2
                         WHERE set_id = $3 AND endpoint_id = $4 AND attempt < $5 AND outcome = 'in_progress'",
                    )
                    .bind(ms(r.at))
                    .bind(format!("superseded by attempt {} before its outcome was reported", r.attempt))
                    .bind(r.set_id)
                    .bind(endpoint_id)
                    .bind(i64::from(r.attempt))
                    .execute(&mut **tx)
                    .await?;
                }
                sqlx::query(
                    "INSERT INTO attempts (set_id, endpoint_id, attempt, product, from_version, to_version, started_at, outcome)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'in_progress') ON CONFLICT DO NOTHING",
                )
                .bind(r.set_id)
                .bind(endpoint_id)
                .bind(i64::from(r.attempt))
                .bind(&set.spec.product)
                .bind(&r.from_version)
                .bind(&r.to_version)
                .bind(ms(r.at))
                .execute(&mut **tx)
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
                    "UPDATE attempts SET finished_at = $1, outcome = $2, reason = $3
                     WHERE set_id = $4 AND endpoint_id = $5 AND attempt = $6 AND outcome IN ('in_progress', 'timed_out')",
                )
                .bind(ms(r.at))
                .bind(outcome)
                .bind(&r.reason)
                .bind(r.set_id)
                .bind(endpoint_id)
                .bind(i64::from(r.attempt))
                .execute(&mut **tx)
                .await?;
            }
        }
        if applied == Applied::Changed && r.kind != ReportKindRecord::Heartbeat {
            // Heartbeats and repeats change no assignment: other replicas need not reload.
            self.announce_in(tx).await?;
        }
        Ok(applied)
    }

    /// Tells the other servers, when `tx` commits, that assignments may have changed.
    async fn announce_in(&self, tx: &mut Transaction<'_, Any>) -> Result<()> {
        if let Some((_, channel)) = &self.listen {
            sqlx::query("SELECT pg_notify($1, '')").bind(channel.as_str()).execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// ` FOR UPDATE` where row locks exist; SQLite's single writer already serializes.
    fn for_update(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => " FOR UPDATE",
            Dialect::Sqlite => "",
        }
    }

    async fn load_set(&self, tx: &mut Transaction<'_, Any>, set_id: i64) -> Result<SetRecord> {
        let sql = format!("SELECT * FROM upgrade_sets WHERE id = $1{}", self.for_update());
        let row = sqlx::query(&sql)
            .bind(set_id)
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| not_found_or(e, || format!("upgrade set {set_id}")))?;
        set_from_row(&row)
    }
}

pub(crate) fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

pub(crate) fn ts(ms: i64) -> Result<Timestamp> {
    Timestamp::from_millisecond(ms).map_err(|e| StoreError::Corrupt(format!("bad time {ms}: {e}")))
}

pub(crate) fn opt_ts(ms: Option<i64>) -> Result<Option<Timestamp>> {
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

/// Refuses a token that does not exist or has expired (`TokenRefused`); uses left are the
/// caller's concern, since a re-issue takes none.
async fn refuse_unknown_or_expired_token(
    tx: &mut Transaction<'_, Any>,
    token_sha256: &str,
    now: Timestamp,
) -> Result<()> {
    let row = sqlx::query("SELECT expires_at FROM enroll_tokens WHERE token_sha256 = $1")
        .bind(token_sha256)
        .fetch_optional(&mut **tx)
        .await?;
    match row {
        None => Err(StoreError::TokenRefused("unknown token".into())),
        Some(row) if row.try_get::<i64, _>("expires_at")? <= ms(now) => {
            Err(StoreError::TokenRefused("token expired".into()))
        }
        Some(_) => Ok(()),
    }
}

/// Ends a transaction explicitly: commit on success, roll back on error. A transaction merely
/// dropped would leave its connection idle in the pool *inside* the transaction, still holding
/// its row and advisory locks until the connection happened to be used again.
async fn finish<T>(tx: Transaction<'_, Any>, result: Result<T>) -> Result<T> {
    match result {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(err) => {
            let _ = tx.rollback().await;
            Err(err)
        }
    }
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}

fn endpoint_from_row(row: &AnyRow) -> Result<EndpointRecord> {
    Ok(EndpointRecord {
        id: row.try_get("id")?,
        hostname: row.try_get("hostname")?,
        os: row.try_get("os")?,
        os_id: row.try_get("os_id")?,
        os_version: row.try_get("os_version")?,
        labels: json_map(row.try_get("labels")?)?,
        products: json_map(row.try_get("products")?)?,
        cert_fingerprint: row.try_get("cert_fingerprint")?,
        public_key_sha256: row.try_get("public_key_sha256")?,
        enrolled_at: ts(row.try_get("enrolled_at")?)?,
        last_seen: opt_ts(row.try_get("last_seen")?)?,
    })
}

fn package_from_row(row: &AnyRow) -> Result<PackageRecord> {
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

fn u32_col(row: &AnyRow, col: &str) -> Result<u32> {
    u32::try_from(row.try_get::<i64, _>(col)?).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn u64_col(row: &AnyRow, col: &str) -> Result<u64> {
    u64::try_from(row.try_get::<i64, _>(col)?).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn set_from_row(row: &AnyRow) -> Result<SetRecord> {
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
            window: row.try_get("window_spec")?,
            // Stored as the same 64 bits in a signed column.
            seed: row.try_get::<i64, _>("seed")? as u64,
            backoff_secs: u64_col(row, "backoff_secs")?,
            stuck_timeout_secs: u64_col(row, "stuck_timeout_secs")?,
            step_timeout_secs: u64_col(row, "step_timeout_secs")?,
            watch_secs: u64_col(row, "watch_secs")?,
        },
        state: SetState::from_str(&state).map_err(StoreError::Corrupt)?,
        state_reason: row.try_get("state_reason")?,
        created_at: ts(row.try_get("created_at")?)?,
        finished_at: opt_ts(row.try_get("finished_at")?)?,
    })
}

fn member_from_row(row: &AnyRow) -> Result<MemberRecord> {
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
    tx: &mut Transaction<'_, Any>,
    set_id: i64,
    endpoint_id: &str,
    m: &Member,
    released_at: Option<Timestamp>,
    last_report_at: Option<Timestamp>,
) -> Result<()> {
    sqlx::query(
        "UPDATE set_members SET state = $1, attempts = $2, reason = $3, deferrals = $4, released_at = $5, last_report_at = $6
         WHERE set_id = $7 AND endpoint_id = $8",
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
    tx: &mut Transaction<'_, Any>,
    set_id: i64,
    state: SetState,
    reason: &str,
    now: Timestamp,
) -> Result<()> {
    let finished = state.is_terminal().then_some(ms(now));
    sqlx::query(
        "UPDATE upgrade_sets SET state = $1, state_reason = $2, finished_at = COALESCE(finished_at, $3) WHERE id = $4",
    )
    .bind(state.as_str())
    .bind(reason)
    .bind(finished)
    .bind(set_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl Store for SqlStore {
    async fn put_campaign(&self, name: &str, spec: &str, now: Timestamp) -> Result<bool> {
        crate::campaigns::put(&self.writer, name, spec, now).await
    }

    async fn get_campaign(&self, name: &str) -> Result<CampaignRecord> {
        crate::campaigns::get(&self.reader, name).await
    }

    async fn list_campaigns(&self) -> Result<Vec<CampaignRecord>> {
        crate::campaigns::list(&self.reader).await
    }

    async fn create_month(&self, row: &MonthRow, first: &TransitionRow) -> Result<bool> {
        crate::campaigns::create_month(&self.writer, row, first).await
    }

    async fn save_month(&self, row: &MonthRow, transitions: &[TransitionRow], now: Timestamp) -> Result<()> {
        crate::campaigns::save_month(&self.writer, row, transitions, now).await
    }

    async fn campaign_months(&self, campaign: &str) -> Result<Vec<MonthRow>> {
        crate::campaigns::months(&self.reader, campaign).await
    }

    async fn month_transitions(&self, campaign: &str, month: &str) -> Result<Vec<TransitionRow>> {
        crate::campaigns::transitions(&self.reader, campaign, month).await
    }

    async fn start_step_run(&self, campaign: &str, month: &str, run: &StepRunRow) -> Result<bool> {
        crate::campaigns::start_step_run(&self.writer, campaign, month, run).await
    }

    async fn step_runs(&self, campaign: &str, month: &str) -> Result<Vec<StepRunRow>> {
        crate::campaigns::step_runs(&self.reader, campaign, month).await
    }

    async fn create_campaign_set(
        &self,
        campaign: &str,
        month: &str,
        place: (u32, u32, u32),
        set: &NewSet,
        members: &[(String, u32)],
        now: Timestamp,
    ) -> Result<SetRecord> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let record = self.create_set_in(&mut tx, set, members, now).await?;
            crate::campaigns::link_set(&mut tx, campaign, month, place, record.id).await?;
            Ok(record)
        }
        .await;
        finish(tx, result).await
    }

    async fn record_patch_health(&self, health: &PatchHealthRow) -> Result<()> {
        crate::campaigns::record_patch_health(&self.writer, health).await
    }

    async fn patch_health(&self, set_ids: &[i64]) -> Result<Vec<PatchHealthRow>> {
        crate::campaigns::patch_health(&self.reader, set_ids).await
    }

    async fn get_set(&self, set_id: i64) -> Result<SetRecord> {
        let row = sqlx::query("SELECT * FROM upgrade_sets WHERE id = $1")
            .bind(set_id)
            .fetch_one(&self.reader)
            .await
            .map_err(|e| not_found_or(e, || format!("upgrade set #{set_id}")))?;
        set_from_row(&row)
    }

    async fn create_feed(&self, feed: &FeedRecord) -> Result<()> {
        crate::feeds::create(&self.writer, feed).await
    }

    async fn list_feeds(&self) -> Result<Vec<FeedRecord>> {
        crate::feeds::list(&self.reader).await
    }

    async fn get_feed(&self, name: &str) -> Result<FeedRecord> {
        crate::feeds::get(&self.reader, name).await
    }

    async fn schedule_feed(&self, name: &str, at: Timestamp) -> Result<()> {
        crate::feeds::schedule(&self.writer, name, at).await
    }

    async fn feed_file(&self, feed: &str, url: &str) -> Result<Option<FeedFile>> {
        crate::feeds::file(&self.reader, feed, url).await
    }

    async fn put_feed_file(&self, feed: &str, url: &str, file: &FeedFile) -> Result<()> {
        crate::feeds::put_file(&self.writer, feed, url, file).await
    }

    async fn record_feed_run(&self, run: &FeedRun) -> Result<()> {
        crate::feeds::record_run(&self.writer, run).await
    }

    async fn feed_runs(&self, feed: &str, limit: u32) -> Result<Vec<FeedRun>> {
        crate::feeds::runs(&self.reader, feed, limit).await
    }

    async fn apply_software(&self, id: &str, change: &SoftwareChange<'_>) -> Result<bool> {
        crate::software::apply(&self.writer, id, change, self.dialect == Dialect::Postgres).await
    }

    async fn endpoint_software(&self, id: &str) -> Result<BTreeMap<String, String>> {
        crate::software::of_endpoint(&self.reader, id).await
    }

    async fn software_named(&self, names: &[String]) -> Result<Vec<(String, String, String)>> {
        crate::software::named(&self.reader, names).await
    }

    async fn import_advisory(&self, advisory: &AdvisoryRecord) -> Result<rollgate_core::revision::Outcome> {
        crate::advisories::import_advisory(&self.writer, advisory).await
    }

    async fn list_advisories(&self, filter: &AdvisoryFilter) -> Result<Vec<AdvisoryRecord>> {
        crate::advisories::list(&self.reader, filter).await
    }

    async fn advisories_by_id(&self, id: &str) -> Result<Vec<AdvisoryRecord>> {
        crate::advisories::by_id(&self.reader, id).await
    }

    async fn advisories_naming(&self, products: &[String]) -> Result<Vec<AdvisoryRecord>> {
        crate::advisories::naming(&self.reader, products).await
    }

    async fn import_cve(&self, cve: &CveRow, now: Timestamp) -> Result<rollgate_core::revision::Outcome> {
        crate::advisories::import_cve(&self.writer, cve, now).await
    }

    async fn record_kev(&self, cve: &str, kev: &KevRow, now: Timestamp) -> Result<bool> {
        crate::advisories::record_kev(&self.writer, cve, kev, now).await
    }

    async fn cves(&self, ids: &[String]) -> Result<Vec<CveRow>> {
        crate::advisories::cves(&self.reader, ids).await
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1").bind(key).fetch_optional(&self.reader).await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    async fn put_meta(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn insert_meta_if_absent(&self, key: &str, value: &str) -> Result<bool> {
        let done = sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn try_lease(&self, name: &str, holder: &str, now: Timestamp, ttl_ms: i64) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leases.expires_at < $4 OR leases.holder = excluded.holder",
        )
        .bind(name)
        .bind(holder)
        .bind(ms(now).saturating_add(ttl_ms))
        .bind(ms(now))
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn listen_changes(&self, on_change: Arc<dyn Fn() + Send + Sync>) -> Result<()> {
        let Some((url, channel)) = &self.listen else {
            // One server: it announces its own changes in memory.
            std::future::pending::<()>().await;
            return Ok(());
        };
        let mut listener = sqlx::postgres::PgListener::connect(url).await?;
        listener.listen(channel).await?;
        // Whatever changed before we listened is picked up now.
        on_change();
        loop {
            // `try_recv` answers None after the connection dropped and was re-established:
            // notifications sent in between are lost, so treat that as a change too.
            listener.try_recv().await?;
            on_change();
        }
    }

    async fn create_enroll_token(
        &self,
        token_sha256: &str,
        uses: u32,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO enroll_tokens (token_sha256, uses_left, expires_at, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_sha256)
        .bind(i64::from(uses))
        .bind(ms(expires_at))
        .bind(ms(now))
        .execute(&self.writer)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict("that enrollment token exists already".into())
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    async fn enroll(&self, token_sha256: &str, endpoint: &EndpointRecord, now: Timestamp) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        let result = self.enroll_in(&mut tx, token_sha256, endpoint, now).await;
        finish(tx, result).await
    }

    async fn enroll_batch(&self, endpoints: &[EndpointRecord]) -> Result<()> {
        // Rows per statement. sqlx's SQLite driver looks up each `$N` by scanning every
        // parameter's name, so a statement's cost grows with the square of its parameters:
        // 1,000 rows (9,000 parameters) spent 40 % of a batch enrollment there; 64 rows do not
        // show up in a profile and still save most round trips.
        const ROWS_PER_INSERT: usize = 64;
        let mut tx = self.writer.begin().await?;
        let result = async {
            for chunk in endpoints.chunks(ROWS_PER_INSERT) {
                // `$N` placeholders, which both backends take (sqlx's `QueryBuilder` for `Any`
                // writes `?`, which PostgreSQL does not).
                const COLUMNS: usize = 9;
                let rows: Vec<String> = (0..chunk.len())
                    .map(|r| {
                        let cells: Vec<String> = (1..=COLUMNS).map(|c| format!("${}", r * COLUMNS + c)).collect();
                        format!("({})", cells.join(", "))
                    })
                    .collect();
                let sql = format!(
                    "INSERT INTO endpoints (id, hostname, os, labels, products, cert_fingerprint, enrolled_at, last_seen, public_key_sha256) VALUES {}",
                    rows.join(", ")
                );
                let mut insert = sqlx::query(&sql);
                for e in chunk {
                    insert = insert
                        .bind(e.id.clone())
                        .bind(e.hostname.clone())
                        .bind(e.os.clone())
                        .bind(to_json(&e.labels))
                        .bind(to_json(&e.products))
                        .bind(e.cert_fingerprint.clone())
                        .bind(ms(e.enrolled_at))
                        .bind(e.last_seen.map(ms))
                        .bind(e.public_key_sha256.clone());
                }
                insert.execute(&mut *tx).await.map_err(|e| {
                    if is_unique_violation(&e) {
                        StoreError::Conflict("an endpoint of this batch exists already".into())
                    } else {
                        e.into()
                    }
                })?;
            }
            Ok(())
        }
        .await;
        finish(tx, result).await
    }

    async fn endpoint_by_public_key(&self, public_key_sha256: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT id FROM endpoints WHERE public_key_sha256 = $1")
            .bind(public_key_sha256)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(|r| r.try_get("id")).transpose()?)
    }

    async fn reissue(
        &self,
        token_sha256: &str,
        endpoint_id: &str,
        cert_fingerprint: &str,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            refuse_unknown_or_expired_token(&mut tx, token_sha256, now).await?;
            // Only an endpoint that never reported over mutual TLS (its first answer was lost)
            // may be re-issued: a live endpoint's certificate is never replaced this way, so a
            // copied CSR or a cloned disk image cannot lock it out.
            let done = sqlx::query(
                "UPDATE endpoints SET cert_fingerprint = $1, last_seen = $2 WHERE id = $3 AND products = '{}'",
            )
            .bind(cert_fingerprint)
            .bind(ms(now))
            .bind(endpoint_id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                let exists = sqlx::query("SELECT 1 FROM endpoints WHERE id = $1").bind(endpoint_id).fetch_optional(&mut *tx).await?;
                return Err(match exists {
                    None => StoreError::NotFound(format!("endpoint `{endpoint_id}`")),
                    Some(_) => StoreError::Conflict(format!(
                        "endpoint `{endpoint_id}` is in use with this key: enroll with a new key (a cloned machine must not reuse another's identity)"
                    )),
                });
            }
            Ok(())
        }
        .await;
        finish(tx, result).await
    }

    async fn get_endpoint(&self, id: &str) -> Result<EndpointRecord> {
        let row = sqlx::query("SELECT * FROM endpoints WHERE id = $1")
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

    async fn endpoints_last_seen(&self) -> Result<Vec<(String, Option<Timestamp>)>> {
        let rows = sqlx::query("SELECT id, last_seen FROM endpoints ORDER BY id").fetch_all(&self.reader).await?;
        rows.iter().map(|row| Ok((row.try_get("id")?, opt_ts(row.try_get("last_seen")?)?))).collect()
    }

    async fn update_inventory(&self, id: &str, f: &EndpointFacts<'_>, now: Timestamp) -> Result<()> {
        let done = sqlx::query(
            "UPDATE endpoints SET hostname = $1, os = $2, labels = $3, products = $4, last_seen = CASE WHEN last_seen IS NULL OR last_seen < $5 THEN $5 ELSE last_seen END, os_id = $7, os_version = $8 WHERE id = $6",
        )
            .bind(f.hostname)
            .bind(f.os)
            .bind(to_json(f.labels))
            .bind(to_json(f.products))
            .bind(ms(now))
            .bind(id)
            .bind(f.os_id)
            .bind(f.os_version)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("endpoint `{id}`")));
        }
        Ok(())
    }

    async fn touch_endpoint(&self, id: &str, now: Timestamp) -> Result<()> {
        let done = sqlx::query("UPDATE endpoints SET last_seen = CASE WHEN last_seen IS NULL OR last_seen < $1 THEN $1 ELSE last_seen END WHERE id = $2")
            .bind(ms(now))
            .bind(id)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("endpoint `{id}`")));
        }
        Ok(())
    }

    async fn touch_endpoints(&self, seen: &[(String, Timestamp)]) -> Result<()> {
        // Rows per statement: one UPDATE per endpoint cost a database round trip each, which
        // on PostgreSQL at 3,400 check-ins a second took enough of the machine to push check-in
        // p99 latency past 30 ms. VALUES columns are `column1`, `column2` in both backends.
        const ROWS_PER_UPDATE: usize = 64;
        if seen.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        let result = async {
            for chunk in seen.chunks(ROWS_PER_UPDATE) {
                let rows: Vec<String> =
                    (0..chunk.len()).map(|r| format!("(${}, CAST(${} AS BIGINT))", 2 * r + 1, 2 * r + 2)).collect();
                let sql = format!(
                    "UPDATE endpoints SET last_seen = v.column2 FROM (VALUES {}) AS v
                     WHERE endpoints.id = v.column1 AND (endpoints.last_seen IS NULL OR endpoints.last_seen < v.column2)",
                    rows.join(", ")
                );
                let mut update = sqlx::query(&sql);
                for (id, at) in chunk {
                    update = update.bind(id).bind(ms(*at));
                }
                update.execute(&mut *tx).await?;
            }
            Ok(())
        }
        .await;
        finish(tx, result).await
    }

    async fn in_flight_assignments(&self) -> Result<Vec<(String, SetRecord, PackageRecord)>> {
        let rows = sqlx::query(
            "SELECT m.endpoint_id AS member_endpoint, s.*, p.product AS p_product, p.version AS p_version,
                    p.module AS p_module, p.sha256 AS p_sha256, p.size AS p_size, p.min_from AS p_min_from,
                    p.created_at AS p_created_at
             FROM set_members m
             JOIN upgrade_sets s ON s.id = m.set_id
             JOIN packages p ON p.product = s.product AND p.version = s.version
             WHERE m.state = 'in_progress'
             ORDER BY s.id",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let package = PackageRecord {
                    product: row.try_get("p_product")?,
                    version: row.try_get("p_version")?,
                    module: row.try_get("p_module")?,
                    sha256: row.try_get("p_sha256")?,
                    size: u64_col(row, "p_size")?,
                    min_from: row.try_get("p_min_from")?,
                    created_at: ts(row.try_get("p_created_at")?)?,
                };
                Ok((row.try_get("member_endpoint")?, set_from_row(row)?, package))
            })
            .collect()
    }

    async fn insert_package(&self, p: &PackageRecord) -> Result<()> {
        let size = i64::try_from(p.size).map_err(|_| StoreError::Conflict("package too large".into()))?;
        sqlx::query("INSERT INTO packages (product, version, module, sha256, size, min_from, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
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
        let row = sqlx::query("SELECT * FROM packages WHERE product = $1 AND version = $2")
            .bind(product)
            .bind(version)
            .fetch_one(&self.reader)
            .await
            .map_err(|e| not_found_or(e, || format!("package {product}@{version}")))?;
        package_from_row(&row)
    }

    async fn package_sha_exists(&self, sha256: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM packages WHERE sha256 = $1 LIMIT 1")
            .bind(sha256)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.is_some())
    }

    async fn list_packages(&self) -> Result<Vec<PackageRecord>> {
        let rows = sqlx::query("SELECT * FROM packages").fetch_all(&self.reader).await?;
        let mut packages = rows.iter().map(package_from_row).collect::<Result<Vec<_>>>()?;
        // Version order is the core's, not SQL's.
        packages.sort_by(|a, b| {
            a.product.cmp(&b.product).then_with(|| rollgate_core::version::compare(&a.version, &b.version))
        });
        Ok(packages)
    }

    async fn create_set(&self, s: &NewSet, members: &[(String, u32)], now: Timestamp) -> Result<SetRecord> {
        let mut tx = self.writer.begin().await?;
        let result = self.create_set_in(&mut tx, s, members, now).await;
        finish(tx, result).await
    }

    async fn get_set_by_name(&self, name: &str) -> Result<SetRecord> {
        let row = sqlx::query("SELECT * FROM upgrade_sets WHERE name = $1")
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
        let rows = sqlx::query("SELECT * FROM set_members WHERE set_id = $1 ORDER BY rank")
            .bind(set_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(member_from_row).collect()
    }

    async fn member_states(&self, set_id: i64) -> Result<Vec<(String, MemberState)>> {
        let rows = sqlx::query("SELECT endpoint_id, state FROM set_members WHERE set_id = $1 ORDER BY rank")
            .bind(set_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get("state")?;
                Ok((row.try_get("endpoint_id")?, MemberState::from_str(&state).map_err(StoreError::Corrupt)?))
            })
            .collect()
    }

    async fn change_set_state(&self, name: &str, event: SetEvent, reason: &str, now: Timestamp) -> Result<SetRecord> {
        let mut tx = self.writer.begin().await?;
        let result = self.change_set_state_in(&mut tx, name, event, reason, now).await;
        finish(tx, result).await
    }

    async fn tick_set(&self, set_id: i64, params: TickParams, now: Timestamp) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let result = self.tick_set_in(&mut tx, set_id, params, now).await;
        finish(tx, result).await
    }

    async fn record_report(&self, endpoint_id: &str, r: &ReportRecord, now: Timestamp) -> Result<Applied> {
        let mut tx = self.writer.begin().await?;
        let result = self.record_report_in(&mut tx, endpoint_id, r, now).await;
        finish(tx, result).await
    }

    async fn assignment_for(&self, endpoint_id: &str) -> Result<Option<(SetRecord, PackageRecord)>> {
        let row = sqlx::query(
            "SELECT s.* FROM set_members m JOIN upgrade_sets s ON s.id = m.set_id
             WHERE m.endpoint_id = $1 AND m.state = 'in_progress' ORDER BY s.id LIMIT 1",
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
             WHERE a.endpoint_id = $1 ORDER BY a.started_at, a.set_id, a.attempt",
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
