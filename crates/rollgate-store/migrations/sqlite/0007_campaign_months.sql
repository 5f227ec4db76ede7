-- Campaign months (issue 7). A month instance is stored as its `rollgate_core` snapshot (JSON),
-- with its effective state beside it for listing and a version for optimistic concurrency: the
-- driver reads a month, decides, and writes back only if nobody wrote in between.
CREATE TABLE campaign_months (
    campaign   TEXT NOT NULL REFERENCES campaigns (name),
    month      TEXT NOT NULL,
    state      TEXT NOT NULL,
    snapshot   TEXT NOT NULL,
    version    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (campaign, month)
);

-- Every change of a month, with its reason, in order.
CREATE TABLE campaign_transitions (
    campaign   TEXT NOT NULL,
    month      TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    step       BIGINT NOT NULL,
    reason     TEXT NOT NULL,
    PRIMARY KEY (campaign, month, seq),
    FOREIGN KEY (campaign, month) REFERENCES campaign_months (campaign, month)
);

-- What one run of one step deploys, fixed when the run starts (JSON of the core's plan), and
-- the Upgrade Sets created for it, one per package, in order.
CREATE TABLE campaign_step_runs (
    campaign   TEXT NOT NULL,
    month      TEXT NOT NULL,
    step       BIGINT NOT NULL,
    run        BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    plan       TEXT NOT NULL,
    PRIMARY KEY (campaign, month, step, run),
    FOREIGN KEY (campaign, month) REFERENCES campaign_months (campaign, month)
);

CREATE TABLE campaign_sets (
    campaign TEXT NOT NULL,
    month    TEXT NOT NULL,
    step     BIGINT NOT NULL,
    run      BIGINT NOT NULL,
    seq      BIGINT NOT NULL,
    set_id   BIGINT NOT NULL REFERENCES upgrade_sets (id),
    PRIMARY KEY (campaign, month, step, run, seq),
    FOREIGN KEY (campaign, month, step, run) REFERENCES campaign_step_runs (campaign, month, step, run)
);
CREATE INDEX campaign_sets_by_set ON campaign_sets (set_id);

-- After a successful install, what was seen of the patched product: by its agent watching it
-- through the soak (`agent`), or reported by an operator (`operator`). One row per source.
CREATE TABLE patch_health (
    set_id      BIGINT NOT NULL REFERENCES upgrade_sets (id),
    endpoint_id TEXT NOT NULL,
    source      TEXT NOT NULL,
    healthy     BIGINT NOT NULL,
    reason      TEXT,
    at          BIGINT NOT NULL,
    PRIMARY KEY (set_id, endpoint_id, source)
);

-- How long an agent watches a product after installing it (a campaign step's soak); 0 outside
-- campaigns.
ALTER TABLE upgrade_sets ADD COLUMN watch_secs BIGINT NOT NULL DEFAULT 0;
