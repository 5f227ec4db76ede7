-- What advisories are matched against: the endpoint's platform (os-release ID and
-- VERSION_ID) and its installed distribution packages, kept as a list the agent changes by
-- deltas (`software_digest` is the digest of the list the server holds).
ALTER TABLE endpoints ADD COLUMN os_id TEXT;
ALTER TABLE endpoints ADD COLUMN os_version TEXT;
ALTER TABLE endpoints ADD COLUMN software_source TEXT;
ALTER TABLE endpoints ADD COLUMN software_digest TEXT;
CREATE TABLE endpoint_software (
    endpoint_id TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    PRIMARY KEY (endpoint_id, name)
);
CREATE INDEX endpoint_software_name ON endpoint_software (LOWER(name));
