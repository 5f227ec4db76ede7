-- Rollgate's first schema (PostgreSQL). Times are integer milliseconds since the Unix epoch (UTC).

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE enroll_tokens (
    token_sha256 TEXT PRIMARY KEY,
    uses_left    BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TABLE endpoints (
    id               TEXT PRIMARY KEY,
    hostname         TEXT NOT NULL,
    os               TEXT NOT NULL,
    labels           TEXT NOT NULL,   -- JSON object
    products         TEXT NOT NULL,   -- JSON object: product -> version
    cert_fingerprint TEXT NOT NULL,
    enrolled_at      BIGINT NOT NULL,
    last_seen        BIGINT
);

CREATE TABLE packages (
    product    TEXT NOT NULL,
    version    TEXT NOT NULL,
    module     TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    size       BIGINT NOT NULL,
    min_from   TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (product, version)
);
CREATE INDEX packages_sha256 ON packages (sha256);

CREATE TABLE upgrade_sets (
    id                 BIGSERIAL PRIMARY KEY,
    name               TEXT NOT NULL UNIQUE,
    product            TEXT NOT NULL,
    version            TEXT NOT NULL,
    selector           TEXT NOT NULL,
    max_in_flight      BIGINT NOT NULL,
    max_attempts       BIGINT NOT NULL,
    start_at           BIGINT,
    window_spec        TEXT,
    seed               BIGINT NOT NULL,
    backoff_secs       BIGINT NOT NULL,
    stuck_timeout_secs BIGINT NOT NULL,
    step_timeout_secs  BIGINT NOT NULL,
    state              TEXT NOT NULL,
    state_reason       TEXT,
    created_at         BIGINT NOT NULL,
    finished_at        BIGINT,
    FOREIGN KEY (product, version) REFERENCES packages (product, version)
);

CREATE TABLE set_members (
    set_id         BIGINT NOT NULL REFERENCES upgrade_sets (id),
    endpoint_id    TEXT NOT NULL REFERENCES endpoints (id),
    rank           BIGINT NOT NULL,
    state          TEXT NOT NULL,
    attempts       BIGINT NOT NULL,
    reason         TEXT,
    deferrals      BIGINT NOT NULL,
    released_at    BIGINT,
    last_report_at BIGINT,
    PRIMARY KEY (set_id, endpoint_id)
);
CREATE INDEX set_members_endpoint ON set_members (endpoint_id, state);

CREATE TABLE attempts (
    set_id       BIGINT NOT NULL REFERENCES upgrade_sets (id),
    endpoint_id  TEXT NOT NULL REFERENCES endpoints (id),
    attempt      BIGINT NOT NULL,
    product      TEXT NOT NULL,
    from_version TEXT,
    to_version   TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT,
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
    expires_at BIGINT NOT NULL
);
