-- Patch campaigns as applied by `rollgate campaigns apply`: the TOML text exactly as the
-- operator wrote it (the server validates it before storing; the text, not a parsed form, is
-- kept so that `show` returns what was applied and a re-apply can tell whether it changed).
CREATE TABLE campaigns (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
