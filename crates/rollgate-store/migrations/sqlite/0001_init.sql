-- Rollgate's first schema. Times are integer milliseconds since the Unix epoch (UTC).

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE enroll_tokens (
    token_sha256 TEXT PRIMARY KEY,
    uses_left    INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE endpoints (
    id               TEXT PRIMARY KEY,
    hostname         TEXT NOT NULL,
    os               TEXT NOT NULL,
    labels           TEXT NOT NULL,   -- JSON object
    products         TEXT NOT NULL,   -- JSON object: product -> version
    cert_fingerprint TEXT NOT NULL,
    enrolled_at      INTEGER NOT NULL,
    last_seen        INTEGER
);

CREATE TABLE packages (
    product    TEXT NOT NULL,
    version    TEXT NOT NULL,
    module     TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    size       INTEGER NOT NULL,
    min_from   TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (product, version)
);
CREATE INDEX packages_sha256 ON packages (sha256);

CREATE TABLE upgrade_sets (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    name               TEXT NOT NULL UNIQUE,
    product            TEXT NOT NULL,
    version            TEXT NOT NULL,
    selector           TEXT NOT NULL,
    max_in_flight      INTEGER NOT NULL,
    max_attempts       INTEGER NOT NULL,
    start_at           INTEGER,
    window_spec        TEXT,
    seed               INTEGER NOT NULL,
    backoff_secs       INTEGER NOT NULL,
    stuck_timeout_secs INTEGER NOT NULL,
    step_timeout_secs  INTEGER NOT NULL,
    state              TEXT NOT NULL,
    state_reason       TEXT,
    created_at         INTEGER NOT NULL,
    finished_at        INTEGER,
    FOREIGN KEY (product, version) REFERENCES packages (product, version)
);

CREATE TABLE set_members (
    set_id         INTEGER NOT NULL REFERENCES upgrade_sets (id),
    endpoint_id    TEXT NOT NULL REFERENCES endpoints (id),
    rank           INTEGER NOT NULL,
    state          TEXT NOT NULL,
    attempts       INTEGER NOT NULL,
    reason         TEXT,
    deferrals      INTEGER NOT NULL,
    released_at    INTEGER,
    last_report_at INTEGER,
    PRIMARY KEY (set_id, endpoint_id)
);
CREATE INDEX set_members_endpoint ON set_members (endpoint_id, state);

CREATE TABLE attempts (
    set_id       INTEGER NOT NULL REFERENCES upgrade_sets (id),
    endpoint_id  TEXT NOT NULL REFERENCES endpoints (id),
    attempt      INTEGER NOT NULL,
    product      TEXT NOT NULL,
    from_version TEXT,
    to_version   TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    outcome      TEXT NOT NULL,
    reason       TEXT,
    PRIMARY KEY (set_id, endpoint_id, attempt)
);
CREATE INDEX attempts_endpoint ON attempts (endpoint_id, started_at);

-- Who runs each scheduled job: a lease that passes to another server when its holder stops
-- renewing it.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
