//! Rollgate's storage: one [`Store`] trait and its backends (SQLite now; PostgreSQL is to be
//! added beside it with its own migrations).
//!
//! The store is a shell: it loads facts, asks `rollgate-core` for decisions, and writes the
//! result in one transaction. **Invariant:** SQL stays inside this crate.

use std::collections::BTreeMap;

use async_trait::async_trait;
use jiff::Timestamp;
use rollgate_core::member::{Applied, Member, MemberError, MemberState, Outcome};
use rollgate_core::set::{SetEvent, SetState, SetTransitionError};

pub mod advisories;
pub mod campaigns;
pub mod feeds;
pub mod software;
pub mod sql;

pub use advisories::{AdvisoryFilter, AdvisoryRecord, CveRow, KevRow};
pub use campaigns::{CampaignRecord, MonthRow, PatchHealthRow, StepRunRow, TransitionRow};
pub use feeds::{FeedFile, FeedRecord, FeedRun};
pub use sql::{Dialect, SqlStore};

/// A storage failure that callers can branch on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A unique name or key is taken.
    #[error("{0}")]
    Conflict(String),
    /// A request that contradicts what is stored (for example a report for another version).
    #[error("{0}")]
    Invalid(String),
    /// An enrollment token was refused.
    #[error("enrollment token refused: {0}")]
    TokenRefused(String),
    /// An agent report the member's state does not allow.
    #[error(transparent)]
    Member(#[from] MemberError),
    /// A set command its state does not allow.
    #[error(transparent)]
    SetTransition(#[from] SetTransitionError),
    /// Stored data could not be read back (a bug or a damaged database).
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Shorthand.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An enrolled endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointRecord {
    /// Id (also its certificate's subject).
    pub id: String,
    /// Host name.
    pub hostname: String,
    /// OS.
    pub os: String,
    /// os-release `ID`, when the agent reported it.
    pub os_id: Option<String>,
    /// os-release `VERSION_ID`, when the agent reported it.
    pub os_version: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Installed managed products.
    pub products: BTreeMap<String, String>,
    /// SHA-256 of its client certificate.
    pub cert_fingerprint: String,
    /// SHA-256 of its public key, when it enrolled with a CSR (see `rollgate_pki::csr_key_fingerprint`).
    pub public_key_sha256: Option<String>,
    /// When it enrolled.
    pub enrolled_at: Timestamp,
    /// When it last talked to the server.
    pub last_seen: Option<Timestamp>,
}

/// What an agent reports of its endpoint (`PUT /v1/agent/inventory`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointFacts<'a> {
    /// Host name.
    pub hostname: &'a str,
    /// OS description.
    pub os: &'a str,
    /// os-release `ID`.
    pub os_id: Option<&'a str>,
    /// os-release `VERSION_ID`.
    pub os_version: Option<&'a str>,
    /// Labels.
    pub labels: &'a BTreeMap<String, String>,
    /// Managed products.
    pub products: &'a BTreeMap<String, String>,
}

/// A change to an endpoint's installed software list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoftwareChange<'a> {
    /// Digest of the list the change applies to; None replaces the whole list.
    pub base: Option<&'a str>,
    /// Digest of the list once applied (the agent computed it; stored as given).
    pub digest: &'a str,
    /// `dpkg` or `rpm`.
    pub source: &'a str,
    /// Added or changed: name -> version.
    pub upsert: &'a BTreeMap<String, String>,
    /// Removed names.
    pub remove: &'a [String],
}

/// A stored package (the bytes live in the package store, named by `sha256`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageRecord {
    /// Product.
    pub product: String,
    /// Version.
    pub version: String,
    /// Install module name.
    pub module: String,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Oldest version this package upgrades from.
    pub min_from: Option<String>,
    /// When it was added.
    pub created_at: Timestamp,
}

/// What an operator asked for when creating a set, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSet {
    /// Unique name.
    pub name: String,
    /// Product.
    pub product: String,
    /// Version.
    pub version: String,
    /// Canonical selector text.
    pub selector: String,
    /// Limit.
    pub max_in_flight: u32,
    /// Attempts per endpoint.
    pub max_attempts: u32,
    /// No release before.
    pub start_at: Option<Timestamp>,
    /// Canonical window spec.
    pub window: Option<String>,
    /// Seed of the order.
    pub seed: u64,
    /// Initial retry backoff.
    pub backoff_secs: u64,
    /// Silence after which an in-flight member loses its slot.
    pub stuck_timeout_secs: u64,
    /// Time limit of each step on the endpoint.
    pub step_timeout_secs: u64,
    /// How long agents watch the product after installing it (a campaign step's soak); 0 for
    /// no watch.
    pub watch_secs: u64,
}

/// A stored set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetRecord {
    /// Id.
    pub id: i64,
    /// What was asked for.
    pub spec: NewSet,
    /// Current state.
    pub state: SetState,
    /// Why it is in that state.
    pub state_reason: Option<String>,
    /// Created.
    pub created_at: Timestamp,
    /// Reached a terminal state.
    pub finished_at: Option<Timestamp>,
}

/// One endpoint in one set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRecord {
    /// Endpoint.
    pub endpoint_id: String,
    /// Place in the seeded order.
    pub rank: u32,
    /// State, attempts, reason.
    pub member: Member,
    /// When it got its slot.
    pub released_at: Option<Timestamp>,
    /// When it last reported.
    pub last_report_at: Option<Timestamp>,
}

/// One attempt in an endpoint's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRecord {
    /// Set id.
    pub set_id: i64,
    /// Set name.
    pub set_name: String,
    /// Attempt number.
    pub attempt: u32,
    /// Product.
    pub product: String,
    /// Version before.
    pub from_version: Option<String>,
    /// Version being installed.
    pub to_version: String,
    /// Agent clock.
    pub started_at: Timestamp,
    /// Agent clock.
    pub finished_at: Option<Timestamp>,
    /// `in_progress`, `failed`, `succeeded`, `rolled_back`.
    pub outcome: String,
    /// Why.
    pub reason: Option<String>,
}

/// An agent's report, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRecord {
    /// Set id.
    pub set_id: i64,
    /// Attempt number (1-based).
    pub attempt: u32,
    /// What happened.
    pub kind: ReportKindRecord,
    /// Why.
    pub reason: Option<String>,
    /// Version before.
    pub from_version: Option<String>,
    /// Version being installed.
    pub to_version: String,
    /// Agent clock.
    pub at: Timestamp,
}

/// What a report says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportKindRecord {
    /// About to start an attempt.
    AttemptStarted,
    /// Still working on the attempt.
    Heartbeat,
    /// An attempt failed.
    AttemptFailed,
    /// Finished with this outcome.
    Finished(Outcome),
}

/// Server-wide settings the scheduler needs.
#[derive(Clone, Copy, Debug)]
pub struct TickParams {
    /// An endpoint not seen for this long is not released.
    pub offline_after_secs: u64,
    /// Since when the scheduler has watched without a gap (see `release::SetFacts`).
    pub observing_since: Timestamp,
}

/// The storage interface shared by every backend.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads a server-wide setting.
    async fn get_meta(&self, key: &str) -> Result<Option<String>>;
    /// Writes a server-wide setting.
    async fn put_meta(&self, key: &str, value: &str) -> Result<()>;
    /// Writes a setting only if it has none; returns true when this call wrote it. Servers
    /// starting at the same moment use this to agree on one CA and one admin token.
    async fn insert_meta_if_absent(&self, key: &str, value: &str) -> Result<bool>;

    /// Stores an advisory revision unless the stored one is the same or newer (see
    /// `rollgate_core::revision`); its CVE and product indexes are replaced with it.
    async fn import_advisory(&self, advisory: &AdvisoryRecord) -> Result<rollgate_core::revision::Outcome>;
    /// Advisories matching `filter`, newest update first.
    async fn list_advisories(&self, filter: &AdvisoryFilter) -> Result<Vec<AdvisoryRecord>>;
    /// Every advisory with this id (one per publisher that used it).
    async fn advisories_by_id(&self, id: &str) -> Result<Vec<AdvisoryRecord>>;
    /// Advisories that name any of `products` (case-insensitive), for matching inventories.
    async fn advisories_naming(&self, products: &[String]) -> Result<Vec<AdvisoryRecord>>;
    /// Stores a CVE record revision (same rule as advisories); KEV facts already stored stay.
    async fn import_cve(&self, cve: &CveRow, now: Timestamp) -> Result<rollgate_core::revision::Outcome>;
    /// Records CISA's KEV facts of a CVE (creating a bare row when its record is not stored);
    /// returns true when they changed.
    async fn record_kev(&self, cve: &str, kev: &KevRow, now: Timestamp) -> Result<bool>;
    /// The stored CVE rows among `ids`.
    async fn cves(&self, ids: &[String]) -> Result<Vec<CveRow>>;

    /// Creates the campaign `name` with the TOML text `spec`, or replaces its text; returns true
    /// when it was created. The caller validates `spec`; `updated_at` moves only when it changed.
    async fn put_campaign(&self, name: &str, spec: &str, now: Timestamp) -> Result<bool>;
    /// One campaign ([`StoreError::NotFound`] when there is none by that name).
    async fn get_campaign(&self, name: &str) -> Result<CampaignRecord>;
    /// Every campaign, by name.
    async fn list_campaigns(&self) -> Result<Vec<CampaignRecord>>;
    /// Creates a campaign month with its first transition unless it exists; true when created.
    async fn create_month(&self, row: &MonthRow, first: &TransitionRow) -> Result<bool>;
    /// Writes a month's snapshot and transitions if its stored version is still `row.version`
    /// ([`StoreError::Conflict`] otherwise: another writer came first).
    async fn save_month(&self, row: &MonthRow, transitions: &[TransitionRow], now: Timestamp) -> Result<()>;
    /// The months of a campaign, oldest first.
    async fn campaign_months(&self, campaign: &str) -> Result<Vec<MonthRow>>;
    /// A month's recorded changes, oldest first.
    async fn month_transitions(&self, campaign: &str, month: &str) -> Result<Vec<TransitionRow>>;
    /// Records a step run's plan unless one is recorded for it; true when this call did.
    async fn start_step_run(&self, campaign: &str, month: &str, run: &StepRunRow) -> Result<bool>;
    /// A month's step runs with their sets, by step and run.
    async fn step_runs(&self, campaign: &str, month: &str) -> Result<Vec<StepRunRow>>;
    /// Creates the Upgrade Set for package `seq` of a step run and links it, in one transaction
    /// ([`StoreError::Conflict`] when the run already has that set).
    async fn create_campaign_set(
        &self,
        campaign: &str,
        month: &str,
        place: (u32, u32, u32),
        set: &NewSet,
        members: &[(String, u32)],
        now: Timestamp,
    ) -> Result<SetRecord>;
    /// Records (or replaces) what one source saw of one patched endpoint.
    async fn record_patch_health(&self, health: &PatchHealthRow) -> Result<()>;
    /// Everything recorded of the endpoints of these sets.
    async fn patch_health(&self, set_ids: &[i64]) -> Result<Vec<PatchHealthRow>>;
    /// One set by id.
    async fn get_set(&self, set_id: i64) -> Result<SetRecord>;

    /// Adds an advisory feed.
    async fn create_feed(&self, feed: &FeedRecord) -> Result<()>;
    /// Every feed.
    async fn list_feeds(&self) -> Result<Vec<FeedRecord>>;
    /// One feed.
    async fn get_feed(&self, name: &str) -> Result<FeedRecord>;
    /// Sets when a feed runs next.
    async fn schedule_feed(&self, name: &str, at: Timestamp) -> Result<()>;
    /// What a feed last fetched from `url`.
    async fn feed_file(&self, feed: &str, url: &str) -> Result<Option<FeedFile>>;
    /// Records what a feed fetched from `url`.
    async fn put_feed_file(&self, feed: &str, url: &str, file: &FeedFile) -> Result<()>;
    /// Records a feed run.
    async fn record_feed_run(&self, run: &FeedRun) -> Result<()>;
    /// A feed's newest runs, newest first.
    async fn feed_runs(&self, feed: &str, limit: u32) -> Result<Vec<FeedRun>>;

    /// Takes or renews the lease `name` for `holder` until `now + ttl_ms`; returns true when
    /// `holder` holds it. A lease passes to another holder only once it has expired, so a job
    /// guarded by one runs on one server at a time, and moves on when that server stops.
    async fn try_lease(&self, name: &str, holder: &str, now: Timestamp, ttl_ms: i64) -> Result<bool>;

    /// Waits for changes announced by other servers sharing the database and calls
    /// `on_change` for each; returns only on a connection failure (the caller retries). On a
    /// backend that serves a single server it never returns.
    async fn listen_changes(&self, on_change: std::sync::Arc<dyn Fn() + Send + Sync>) -> Result<()>;

    /// Stores a new enrollment token by its hash.
    async fn create_enroll_token(
        &self,
        token_sha256: &str,
        uses: u32,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<()>;
    /// Uses one enrollment of a token and creates the endpoint, in one transaction.
    async fn enroll(&self, token_sha256: &str, endpoint: &EndpointRecord, now: Timestamp) -> Result<()>;
    /// Creates many endpoints at once, all or none, for operators enrolling a fleet (or a load
    /// test) through the admin API; no enrollment token is involved.
    async fn enroll_batch(&self, endpoints: &[EndpointRecord]) -> Result<()>;
    /// The endpoint that enrolled with this public key, if any.
    async fn endpoint_by_public_key(&self, public_key_sha256: &str) -> Result<Option<String>>;
    /// Gives an endpoint a new certificate after it enrolled again with its own key (its
    /// first answer was lost). The token must exist and be unexpired, but no use is taken:
    /// the first enrollment took it. An endpoint that has reported over mutual TLS is in use
    /// and is refused (`Conflict`).
    async fn reissue(
        &self,
        token_sha256: &str,
        endpoint_id: &str,
        cert_fingerprint: &str,
        now: Timestamp,
    ) -> Result<()>;

    /// One endpoint.
    async fn get_endpoint(&self, id: &str) -> Result<EndpointRecord>;
    /// Every endpoint, by id.
    async fn list_endpoints(&self) -> Result<Vec<EndpointRecord>>;
    /// When each endpoint was last seen (`None`: never), by id: what the campaign driver reads
    /// every tick, without the inventories `list_endpoints` parses.
    async fn endpoints_last_seen(&self) -> Result<Vec<(String, Option<Timestamp>)>>;
    /// Replaces what the endpoint reported about itself.
    async fn update_inventory(&self, id: &str, facts: &EndpointFacts<'_>, now: Timestamp) -> Result<()>;
    /// Applies a change to the endpoint's software list in one transaction; returns false (and
    /// changes nothing) when `change.base` is not the digest of the stored list.
    async fn apply_software(&self, id: &str, change: &SoftwareChange<'_>) -> Result<bool>;
    /// The stored software list of an endpoint.
    async fn endpoint_software(&self, id: &str) -> Result<BTreeMap<String, String>>;
    /// Every installed package named in `names` (lower-case), as (endpoint id, name, version).
    async fn software_named(&self, names: &[String]) -> Result<Vec<(String, String, String)>>;
    /// Records in one transaction when each of these endpoints last talked to the server
    /// (batched by the server so that polls do not write); `last_seen` never moves backwards,
    /// and unknown ids are ignored.
    async fn touch_endpoints(&self, seen: &[(String, Timestamp)]) -> Result<()>;
    /// Every member holding a slot, with its set and package: what the servers hand out to
    /// polling agents. Bounded by the sum of the live sets' max-in-flight.
    async fn in_flight_assignments(&self) -> Result<Vec<(String, SetRecord, PackageRecord)>>;
    /// Records that the endpoint talked to the server; `last_seen` never moves backwards.
    async fn touch_endpoint(&self, id: &str, now: Timestamp) -> Result<()>;

    /// Adds a package; a second package with the same product and version is a conflict.
    async fn insert_package(&self, package: &PackageRecord) -> Result<()>;
    /// One package.
    async fn get_package(&self, product: &str, version: &str) -> Result<PackageRecord>;
    /// True when some package has these bytes (the agent download route checks this).
    async fn package_sha_exists(&self, sha256: &str) -> Result<bool>;
    /// Every package, by product then version.
    async fn list_packages(&self) -> Result<Vec<PackageRecord>>;

    /// Creates a set with its members (endpoint id, rank), in one transaction.
    async fn create_set(&self, set: &NewSet, members: &[(String, u32)], now: Timestamp) -> Result<SetRecord>;
    /// One set by name.
    async fn get_set_by_name(&self, name: &str) -> Result<SetRecord>;
    /// Every set, oldest first.
    async fn list_sets(&self) -> Result<Vec<SetRecord>>;
    /// Ids of the sets the scheduler must look at: every set not completed, except cancelled
    /// sets whose members hold no slot any more.
    async fn live_set_ids(&self) -> Result<Vec<i64>>;
    /// A set's members in rank order.
    async fn set_members(&self, set_id: i64) -> Result<Vec<MemberRecord>>;
    /// Each member's endpoint and state, by rank: the part of `set_members` the campaign driver
    /// reads every tick (a step's set can hold the whole fleet).
    async fn member_states(&self, set_id: i64) -> Result<Vec<(String, MemberState)>>;
    /// Applies an operator's command to a set.
    async fn change_set_state(&self, name: &str, event: SetEvent, reason: &str, now: Timestamp) -> Result<SetRecord>;

    /// Runs one scheduler tick for a set: loads the facts, asks the core for a plan, applies it
    /// in one transaction. Returns true when anything changed.
    async fn tick_set(&self, set_id: i64, params: TickParams, now: Timestamp) -> Result<bool>;
    /// Applies an agent's report in one transaction (member state, attempt history).
    async fn record_report(&self, endpoint_id: &str, report: &ReportRecord, now: Timestamp) -> Result<Applied>;
    /// The set and package an endpoint holds a slot for, if any.
    async fn assignment_for(&self, endpoint_id: &str) -> Result<Option<(SetRecord, PackageRecord)>>;
    /// An endpoint's attempts across sets, oldest first.
    async fn history(&self, endpoint_id: &str) -> Result<Vec<AttemptRecord>>;
}
