-- Advisory feeds the server polls (the vulnerability download phase), what it last fetched
-- from each URL (for conditional requests, and to fetch only documents that changed; `body`
-- keeps a feed's small index documents, which a 304 answer does not repeat), and a record of
-- every run.
CREATE TABLE feeds (
    name          TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    url           TEXT NOT NULL,
    ca_pem        TEXT,
    interval_secs BIGINT NOT NULL,
    next_run_at   BIGINT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE TABLE feed_files (
    feed          TEXT NOT NULL,
    url           TEXT NOT NULL,
    etag          TEXT,
    last_modified TEXT,
    sha256        TEXT,
    changed_at    TEXT,
    body          TEXT,
    PRIMARY KEY (feed, url)
);
CREATE TABLE feed_runs (
    id           BIGSERIAL PRIMARY KEY,
    feed         TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT NOT NULL,
    requests     BIGINT NOT NULL,
    downloaded   BIGINT NOT NULL,
    imported     BIGINT NOT NULL,
    unchanged    BIGINT NOT NULL,
    failed       BIGINT NOT NULL,
    errors       TEXT
);
CREATE INDEX feed_runs_feed ON feed_runs (feed, id);
