//! Rollgate's JSON wire types: the agent protocol and the management API.
//!
//! **Invariant:** this is the only crate whose types are `Serialize`/`Deserialize` for the
//! network; domain types in `rollgate-core` are converted at the boundary.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The error body every API answers with on failure.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// Code and message.
    pub error: ErrorDetail,
}

/// A stable machine-readable code and a message for people.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    /// For example `not_found`, `bad_request`, `unauthorized`, `conflict`, `no_slot`.
    pub code: String,
    /// What went wrong and what to do.
    pub message: String,
}

// ---------------------------------------------------------------- agent protocol

/// `POST /v1/enroll`: an agent trades an enrollment token and a CSR for a client certificate.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The enrollment token an operator created.
    pub token: String,
    /// PEM certificate signing request for the agent's own key.
    pub csr_pem: String,
    /// The endpoint's host name.
    pub hostname: String,
    /// Operating system description.
    pub os: String,
    /// Labels such as `site`, `business_unit`, `network`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Answer to [`EnrollRequest`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// The endpoint's id, also the subject of its certificate.
    pub endpoint_id: String,
    /// The client certificate, PEM.
    pub cert_pem: String,
    /// The CA that signed it (and the server certificate, unless the server uses its own).
    pub ca_pem: String,
    /// The newest TUF `root.json` the server publishes, if it publishes a signed repository:
    /// the agent trusts it because it came over the channel the agent's CA already vouches for
    /// (unless it was given a root with `--root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuf_root: Option<String>,
}

/// `PUT /v1/agent/inventory`: what the endpoint is and has. Sent when it changes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Host name.
    pub hostname: String,
    /// Operating system description.
    pub os: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Managed products and their installed versions, the agent itself included.
    #[serde(default)]
    pub products: BTreeMap<String, String>,
    /// os-release `ID` (`debian`, `ubuntu`, `rhel`), for matching advisories to platforms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_id: Option<String>,
    /// os-release `VERSION_ID` (`12`, `22.04`, `7.6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
}

/// `POST /v1/agent/software`: the endpoint's installed software (dpkg or rpm packages) as a
/// change to the list the server last accepted, so that a poll never carries the whole list.
/// The server refuses (409 `software_base_mismatch`) a change whose `base` is not the digest
/// of the list it holds; the agent then sends the whole list (`base` None).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SoftwareDelta {
    /// Digest of the list this change applies to (the agent's; opaque to the server, which
    /// only compares it with the one it stored); None: replace the whole list.
    pub base: Option<String>,
    /// Digest of the list once the change is applied.
    pub digest: String,
    /// Where the list comes from: `dpkg`, `rpm`.
    pub source: String,
    /// Packages added or at a new version: name -> version.
    #[serde(default)]
    pub upsert: BTreeMap<String, String>,
    /// Packages removed.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `GET /v1/agent/work`: the endpoint's current assignment, if any.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkResponse {
    /// The upgrade the endpoint should perform now.
    pub assignment: Option<Assignment>,
}

/// One upgrade an endpoint holds a slot for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Assignment {
    /// The Upgrade Set's id.
    pub set_id: i64,
    /// The Upgrade Set's name.
    pub set_name: String,
    /// Product to install.
    pub product: String,
    /// Version to install.
    pub version: String,
    /// `files` or `script`.
    pub module: String,
    /// Lower-case hex SHA-256 of the package bytes.
    pub sha256: String,
    /// Size of the package in bytes.
    pub size: u64,
    /// Where to download it (a path on the same server).
    pub download_path: String,
    /// Attempts allowed in all.
    pub max_attempts: u32,
    /// Wait after the first failed attempt, doubled after each further one.
    pub backoff_initial_secs: u64,
    /// Upper bound on that wait.
    pub backoff_max_secs: u64,
    /// Time limit for each install, health or rollback process.
    pub step_timeout_secs: u64,
    /// How often to send a heartbeat during an attempt: well inside the set's stuck timeout.
    pub heartbeat_secs: u64,
    /// After a successful install, how long to watch the patched product (its health check,
    /// rerun) and report its health with `POST /v1/agent/patch-health`: the campaign step's
    /// soak time; 0 (sets outside campaigns) for no watch.
    #[serde(default)]
    pub watch_secs: u64,
}

/// One fact an agent reports about its work on a set. Reports are idempotent: the same report
/// sent twice changes nothing the second time.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The set.
    pub set_id: i64,
    /// 1-based attempt number.
    pub attempt: u32,
    /// What happened.
    pub kind: ReportKind,
    /// The phase that failed (`download`, `verify`, `install`, `health`, `rollback`, `unpack`).
    #[serde(default)]
    pub phase: Option<String>,
    /// Why, for people.
    #[serde(default)]
    pub reason: Option<String>,
    /// The version installed before this upgrade.
    #[serde(default)]
    pub from_version: Option<String>,
    /// The version being installed.
    pub to_version: String,
    /// When it happened, by the agent's clock (RFC 3339).
    pub at: String,
}

/// What a [`Report`] says happened.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// About to start an attempt. The agent installs only after this is accepted.
    AttemptStarted,
    /// Still working on the attempt; sent every `heartbeat_secs` so the slot does not time out.
    Heartbeat,
    /// The attempt failed; it will be retried or given up.
    AttemptFailed,
    /// Done: upgraded and healthy.
    Succeeded,
    /// Done: nothing was changed on the endpoint.
    Failed,
    /// Done: the new version failed and the previous one was restored.
    RolledBack,
}

/// `POST /v1/agent/reports` answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReportAck {
    /// True when the report was recorded (now or before).
    pub accepted: bool,
}

// ---------------------------------------------------------------- management API

/// `POST /v1/enroll-tokens`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollToken {
    /// How many enrollments the token allows.
    pub uses: u32,
    /// Seconds until it expires.
    pub ttl_secs: u64,
}

/// `POST /v1/endpoints/batch`: enroll many endpoints at once (admin only), for a fleet
/// provisioned centrally or a load test. Every endpoint gets its own certificate (its id as
/// subject) for the one key of the CSR.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchEnroll {
    /// PEM certificate signing request for the key the endpoints share.
    pub csr_pem: String,
    /// How many endpoints, at most 10,000 a request.
    pub count: u32,
    /// Host names are `<prefix>-<n>`.
    pub hostname_prefix: String,
    /// Labels for every endpoint.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Answer to [`BatchEnroll`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BatchEnrolled {
    /// The endpoints, in order.
    pub endpoints: Vec<BatchEndpoint>,
    /// The CA that signed their certificates.
    pub ca_pem: String,
}

/// One endpoint of a batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BatchEndpoint {
    /// Its id.
    pub id: String,
    /// Its client certificate, PEM.
    pub cert_pem: String,
}

/// A new enrollment token: shown once, stored only hashed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnrollTokenCreated {
    /// The secret.
    pub token: String,
    /// Enrollments allowed.
    pub uses: u32,
    /// RFC 3339.
    pub expires_at: String,
}

/// A stored package.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PackageInfo {
    /// `product@version`.
    pub id: String,
    /// Product name.
    pub product: String,
    /// Version.
    pub version: String,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// `files` or `script`.
    pub module: String,
    /// Oldest version it upgrades from.
    pub min_from: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

/// `POST /v1/sets`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSet {
    /// Unique name.
    pub name: String,
    /// Product.
    pub product: String,
    /// Version of the product (a package must exist).
    pub version: String,
    /// Selector text (`all`, ids, or labels).
    pub target: String,
    /// Most endpoints upgrading at once.
    pub max_in_flight: u32,
    /// Attempts per endpoint.
    pub max_attempts: u32,
    /// RFC 3339 start time, or none for now.
    #[serde(default)]
    pub start_at: Option<String>,
    /// Window spec, e.g. `Mon-Fri 01:00-05:00 Europe/Berlin`.
    #[serde(default)]
    pub window: Option<String>,
    /// Seed of the random order; the server picks one when absent.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Initial retry backoff.
    #[serde(default)]
    pub backoff_secs: Option<u64>,
    /// Seconds of silence after which an in-flight endpoint loses its slot.
    #[serde(default)]
    pub stuck_timeout_secs: Option<u64>,
    /// Time limit for each install/health/rollback step on the endpoint.
    #[serde(default)]
    pub step_timeout_secs: Option<u64>,
}

/// Counts of members by state.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SetCounts {
    /// Waiting for a slot.
    pub pending: u64,
    /// Holding a slot.
    pub in_progress: u64,
    /// Upgraded.
    pub succeeded: u64,
    /// Failed without change, not eligible, or timed out.
    pub failed: u64,
    /// Installed, failed, restored.
    pub rolled_back: u64,
}

/// A set as shown to operators.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SetView {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// State name.
    pub state: String,
    /// Why it is in that state.
    pub state_reason: Option<String>,
    /// Product.
    pub product: String,
    /// Target version.
    pub version: String,
    /// Selector.
    pub target: String,
    /// Limit.
    pub max_in_flight: u32,
    /// Attempts.
    pub max_attempts: u32,
    /// Seed of the order.
    pub seed: u64,
    /// RFC 3339.
    pub start_at: Option<String>,
    /// Window spec.
    pub window: Option<String>,
    /// Counts by state.
    pub counts: SetCounts,
    /// Members (in release order).
    pub endpoints: Vec<SetEndpointView>,
}

/// One member of a set.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SetEndpointView {
    /// Endpoint id.
    pub id: String,
    /// Bucket name (`pending`, `in_progress`, `succeeded`, `failed`, `rolled_back`).
    pub state: String,
    /// Attempts started.
    pub attempts: u32,
    /// Why.
    pub reason: Option<String>,
}

/// An endpoint as listed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EndpointView {
    /// Id.
    pub id: String,
    /// Host name.
    pub hostname: String,
    /// OS.
    pub os: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Product name to installed version.
    pub products: BTreeMap<String, String>,
    /// RFC 3339.
    pub last_seen: Option<String>,
}

/// An endpoint with its upgrade history.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EndpointDetail {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// Enrolled at, RFC 3339.
    pub enrolled_at: String,
    /// One entry per attempt, oldest first.
    pub history: Vec<AttemptView>,
    /// os-release `ID` and `VERSION_ID`, when reported.
    #[serde(default)]
    pub platform: Option<String>,
    /// Installed distribution packages known to the server.
    #[serde(default)]
    pub packages: usize,
    /// Advisories that affect it now, most severe first.
    #[serde(default)]
    pub vulnerabilities: Vec<OpenAdvisory>,
}

/// An advisory affecting an endpoint.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OpenAdvisory {
    /// Publisher.
    pub publisher: String,
    /// Advisory id.
    pub id: String,
    /// Title.
    pub title: String,
    /// The publisher's rating.
    pub rating: Option<String>,
    /// Highest CVSS base score.
    pub max_score: Option<f64>,
    /// CVEs.
    pub cves: Vec<String>,
    /// What is installed that it names, and the fix (see `rollgate_advisories::matching::Finding`).
    pub findings: Vec<serde_json::Value>,
}

/// One attempt of one endpoint in one set.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AttemptView {
    /// Set name.
    pub set: String,
    /// Attempt number within the set.
    pub attempt: u32,
    /// Product.
    pub product: String,
    /// Version before.
    pub from_version: Option<String>,
    /// Version installed.
    pub to_version: String,
    /// RFC 3339, agent clock.
    pub started_at: String,
    /// RFC 3339, agent clock; none while running.
    pub finished_at: Option<String>,
    /// `in_progress`, `succeeded`, `failed`, `rolled_back`, or `timed_out` (the endpoint went
    /// silent; a late report replaces it).
    pub outcome: String,
    /// Why.
    pub reason: Option<String>,
}

/// Answer to `POST /v1/advisories` (one document).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AdvisoryImport {
    /// `csaf`, `osv`, `cvrf`, `cve5`, `nvd`, `kev`.
    pub format: String,
    /// What each record of the document did.
    pub items: Vec<ImportedItem>,
}

/// One record of an imported document.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImportedItem {
    /// Advisory or CVE id.
    pub id: String,
    /// `new`, `updated`, `unchanged`, `older` (see `rollgate_core::revision`).
    pub outcome: String,
}

/// An advisory as listed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AdvisorySummary {
    /// Publisher.
    pub publisher: String,
    /// The publisher's id.
    pub id: String,
    /// Format it came in.
    pub format: String,
    /// Title.
    pub title: String,
    /// First published, RFC 3339.
    pub published: Option<String>,
    /// Last updated, RFC 3339.
    pub updated: Option<String>,
    /// The publisher's rating.
    pub rating: Option<String>,
    /// Highest CVSS base score.
    pub max_score: Option<f64>,
    /// CVEs (and other vulnerability ids).
    pub cves: Vec<String>,
    /// Exploited in the wild: the advisory says so, or CISA's KEV catalog lists one of its CVEs.
    pub known_exploited: bool,
}

/// `GET /v1/advisories/{id}`: each advisory with that id.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AdvisoryDetail {
    /// The summary.
    #[serde(flatten)]
    pub summary: AdvisorySummary,
    /// The normalized advisory (see `rollgate_advisories::Advisory`).
    pub document: serde_json::Value,
    /// KEV facts of its CVEs, by CVE.
    pub kev: BTreeMap<String, KevView>,
    /// With `?affected=true`: the endpoints it affects now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affected: Option<Vec<AffectedEndpoint>>,
}

/// CISA's KEV facts of a CVE.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KevView {
    /// Added to the catalog.
    pub date_added: String,
    /// Remediation due.
    pub due_date: Option<String>,
    /// Known use in ransomware.
    pub ransomware: Option<String>,
}

/// An endpoint an advisory affects, and why.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AffectedEndpoint {
    /// Endpoint id.
    pub endpoint: String,
    /// Host name.
    pub hostname: String,
    /// What is installed there that the advisory names.
    pub findings: Vec<serde_json::Value>,
}

/// `POST /v1/feeds`: a feed for the server to poll.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CreateFeed {
    /// Unique name.
    pub name: String,
    /// `csaf` (a provider's `provider-metadata.json` URL), `osv` (an HTTPS URL of a zip archive of
    /// OSV records), `dir` (a directory on the server).
    pub kind: String,
    /// Where.
    pub url: String,
    /// A CA certificate (PEM) to trust for this feed besides the public roots.
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// Seconds between runs.
    pub interval_secs: u64,
}

/// A feed as listed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FeedView {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Where.
    pub url: String,
    /// Seconds between runs.
    pub interval_secs: u64,
    /// Next run, RFC 3339.
    pub next_run_at: String,
    /// The last run, if any.
    pub last_run: Option<FeedRunView>,
}

/// One run of a feed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FeedRunView {
    /// Feed name.
    pub feed: String,
    /// Started, RFC 3339.
    pub started_at: String,
    /// Finished, RFC 3339.
    pub finished_at: String,
    /// Requests made (files looked at, for a directory).
    pub requests: u64,
    /// Bodies downloaded (files read) because they changed.
    pub downloaded: u64,
    /// Documents that were new or newer.
    pub imported: u64,
    /// Documents that changed nothing.
    pub unchanged: u64,
    /// Failures.
    pub failed: u64,
    /// What failed.
    pub errors: Vec<String>,
}

/// `GET /v1/cves/{id}`: a CVE record (CVE JSON 5 or NVD) and CISA's KEV facts of it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CveDetail {
    /// `CVE-…`.
    pub id: String,
    /// The normalized record (see `rollgate_advisories::CveRecord`); None when only KEV facts
    /// are known.
    pub record: Option<serde_json::Value>,
    /// KEV facts.
    pub kev: Option<KevView>,
    /// Advisories (publisher, id) that name this CVE.
    pub advisories: Vec<(String, String)>,
    /// With `?affected=true`: the endpoints its record's affected products match now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affected: Option<Vec<AffectedEndpoint>>,
}

/// `PUT /v1/campaigns/{name}` (body: the campaign's TOML text): what applying it did or would do.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CampaignApplied {
    /// True when no campaign of this name existed.
    pub created: bool,
    /// True when the text differs from the stored one (always true when created).
    pub changed: bool,
    /// True when nothing was stored.
    pub dry_run: bool,
    /// The month the campaign starts next and what it would deploy.
    pub preview: CampaignPreview,
}

/// The next month of a campaign to start (at or after now) and the advisories it collects.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CampaignPreview {
    /// `YYYY-MM`.
    pub month: String,
    /// When its first step starts, RFC 3339.
    pub start_at: String,
    /// First publication time collected, RFC 3339 (included).
    pub window_from: String,
    /// Last publication time collected, RFC 3339 (excluded: the month's start).
    pub window_to: String,
    /// Stored advisories published in the window that pass the product and severity filters.
    pub advisories: Vec<CampaignAdvisory>,
}

/// An advisory a campaign month would deploy.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CampaignAdvisory {
    /// Its id.
    pub id: String,
    /// Who published it.
    pub publisher: String,
    /// Title.
    pub title: String,
    /// The publisher's rating word.
    pub rating: Option<String>,
    /// Highest CVSS base score.
    pub max_score: Option<f64>,
}

/// A campaign as listed by `GET /v1/campaigns`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CampaignSummary {
    /// Name.
    pub name: String,
    /// When its text last changed, RFC 3339.
    pub updated_at: String,
}

/// `GET /v1/campaigns/{name}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CampaignDetail {
    /// Name.
    pub name: String,
    /// The TOML text as applied.
    pub spec: String,
    /// First applied, RFC 3339.
    pub created_at: String,
    /// Text last changed, RFC 3339.
    pub updated_at: String,
    /// The steps, in order.
    pub steps: Vec<CampaignStepView>,
    /// As in [`CampaignApplied`].
    pub preview: CampaignPreview,
    /// Its month instances, oldest first.
    #[serde(default)]
    pub months: Vec<CampaignMonthBrief>,
}

/// One month of a campaign, in a line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CampaignMonthBrief {
    /// `YYYY-MM`.
    pub month: String,
    /// When it starts (or started), RFC 3339.
    pub start_at: String,
    /// Requested state.
    pub requested: String,
    /// Effective state.
    pub effective: String,
    /// The current step's name.
    pub step: String,
    /// The reason of the last change.
    pub reason: String,
}

/// A step of a campaign, summarized.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CampaignStepView {
    /// Name.
    pub name: String,
    /// The target selector.
    pub targets: String,
    /// Most endpoints installing at once.
    pub max_in_flight: u32,
    /// Soak time in seconds.
    pub soak_secs: u64,
    /// `auto` or `manual`.
    pub progression: String,
}

/// `POST /v1/agent/patch-health`: what an agent saw of a product it patched, while watching it
/// after a successful install ([`Assignment::watch_secs`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PatchHealth {
    /// The set whose install is watched.
    pub set_id: i64,
    /// The version installed.
    pub version: String,
    /// False on a crash, an abnormal exit or a failing health check; true when the whole watch
    /// saw none.
    pub healthy: bool,
    /// What was seen, for people (required when not healthy).
    #[serde(default)]
    pub reason: Option<String>,
    /// When, by the agent's clock (RFC 3339).
    pub at: String,
}

/// `POST /v1/campaigns/{name}/bad-patch`: an operator reports that a patch broke an endpoint.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BadPatchReport {
    /// The endpoint.
    pub endpoint: String,
    /// What is wrong.
    pub reason: String,
    /// `YYYY-MM`; the newest started month when absent.
    #[serde(default)]
    pub month: Option<String>,
}

/// `POST /v1/campaigns/{name}/{pause|resume|stop}`, `.../steps/{step}/{approve|retry}` and
/// `.../vulns/{advisory}/{approve|disapprove|reset}`: what the command did.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CampaignCommandDone {
    /// The month acted on, `YYYY-MM`.
    pub month: String,
    /// The month's requested state afterwards.
    pub requested: String,
    /// Its effective state afterwards.
    pub effective: String,
    /// What changed, in words (the recorded reason).
    pub message: String,
}

/// `GET /v1/campaigns/{name}/months/{YYYY-MM}` (or `.../months/current`): one month.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CampaignMonthView {
    /// The campaign.
    pub campaign: String,
    /// `YYYY-MM`.
    pub month: String,
    /// When its first step starts (or started), RFC 3339.
    pub start_at: String,
    /// What was asked for: differs from `effective` only while pausing.
    pub requested: String,
    /// What is happening now.
    pub effective: String,
    /// The reason of the last change.
    pub reason: String,
    /// The current step's index (meaningful once started).
    pub current_step: usize,
    /// The steps, in order.
    pub steps: Vec<CampaignMonthStep>,
    /// The advisories the month collected, with their approval.
    pub vulnerabilities: Vec<CampaignMonthVuln>,
    /// Every state change, oldest first.
    pub transitions: Vec<CampaignTransitionView>,
}

/// One step of a month, with its live counts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CampaignMonthStep {
    /// Name.
    pub name: String,
    /// `pending`, `running`, `awaiting-approval`, `held` (month pausing or paused), `done`
    /// (passed its gate or approved despite it), `stopped` (month stopped during it).
    pub status: String,
    /// Runs so far (1, plus one per retry); 0 before it started.
    pub run: u32,
    /// Endpoints the step targets and that need a patch.
    pub targeted: u32,
    /// Endpoints that started an install.
    pub attempted: u32,
    /// Endpoints whose installs all succeeded.
    pub succeeded: u32,
    /// Endpoints with a failed install.
    pub failed: u32,
    /// Endpoints offline for the whole step.
    pub no_shows: u32,
    /// Installs running now.
    pub in_flight: u32,
    /// succeeded / attempted, when any attempted.
    pub success_rate: Option<f64>,
    /// Good patches / succeeded, when any succeeded.
    pub good_patch_ratio: Option<f64>,
    /// Soak time run so far, seconds.
    pub soaked_secs: u64,
    /// Soak time required, seconds.
    pub soak_secs: u64,
    /// The gate's verdict now (`waiting: …`, `soaking`, `passed: …`, `failed: …`), while the
    /// step runs.
    pub gate: Option<String>,
    /// The Upgrade Sets that deploy it, by name.
    pub sets: Vec<String>,
    /// What it deploys where, `product@version` with its endpoint count: as planned when it
    /// started, or, before then, what it would deploy now.
    #[serde(default)]
    pub deploys: Vec<String>,
}

/// One advisory of a month.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CampaignMonthVuln {
    /// Advisory id.
    pub id: String,
    /// Title.
    pub title: String,
    /// The publisher's rating word.
    pub rating: Option<String>,
    /// `unreviewed` (deployed), `approved` or `disapproved` (neither deployed nor counted).
    pub approval: String,
    /// Endpoints it affects now.
    pub affected: u32,
    /// The packages that fix it, `product@version`, among those in the package store.
    pub fix_packages: Vec<String>,
    /// Products it affects on some endpoint for which the package store has no fixing package.
    pub needs_package: Vec<String>,
}

/// One recorded change of a month.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CampaignTransitionView {
    /// When, RFC 3339.
    pub at: String,
    /// State before.
    pub from: String,
    /// State after.
    pub to: String,
    /// Current step after.
    pub step: usize,
    /// Why.
    pub reason: String,
}

/// `GET /v1/campaigns/{name}/devices`: per endpoint, over the campaign's months.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CampaignDeviceView {
    /// Endpoint id.
    pub endpoint: String,
    /// Host name.
    pub hostname: String,
    /// Patches (package installs) the campaign dispatched to it.
    pub patches: u32,
    /// Of those, installed.
    pub deployed: u32,
    /// Of those, failed for good.
    pub failed: u32,
    /// Reported bad after the install (by its agent or an operator).
    pub bad: u32,
}

/// The JSON body of a campaign webhook, and the facts of a campaign email.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CampaignNotification {
    /// `step_completed`, `gate_failed` or `awaiting_approval`.
    pub event: String,
    /// The campaign.
    pub campaign: String,
    /// `YYYY-MM`.
    pub month: String,
    /// The step's name.
    pub step: String,
    /// The recorded reason (the gate's numbers or its failure).
    pub reason: String,
    /// When, RFC 3339.
    pub at: String,
}
