-- Advisories (CSAF, OSV, CVRF) in Rollgate's normalized form, newest revision only, keyed by
-- publisher and id. `document` is the normalized JSON; the columns beside it are what lists
-- filter and sort on. Scores are kept in tenths so that both backends store integers.
CREATE TABLE advisories (
    publisher         TEXT NOT NULL,
    id                TEXT NOT NULL,
    format            TEXT NOT NULL,
    title             TEXT NOT NULL,
    published_at      BIGINT,
    updated_at        BIGINT,
    revision          TEXT,
    rating            TEXT,
    max_score_tenths  BIGINT,
    content_sha256    TEXT NOT NULL,
    document          TEXT NOT NULL,
    imported_at       BIGINT NOT NULL,
    PRIMARY KEY (publisher, id)
);
CREATE INDEX advisories_updated ON advisories (updated_at);

-- Which CVEs and which product names each advisory names: the indexes matching uses.
CREATE TABLE advisory_cves (
    publisher TEXT NOT NULL,
    id        TEXT NOT NULL,
    cve       TEXT NOT NULL,
    PRIMARY KEY (publisher, id, cve)
);
CREATE INDEX advisory_cves_cve ON advisory_cves (cve);
CREATE TABLE advisory_products (
    publisher TEXT NOT NULL,
    id        TEXT NOT NULL,
    product   TEXT NOT NULL,
    PRIMARY KEY (publisher, id, product)
);
CREATE INDEX advisory_products_product ON advisory_products (product);

-- CVE records (CVE JSON 5, NVD), and the CISA KEV facts of a CVE, which may arrive before or
-- without its record (then `document` is NULL).
CREATE TABLE cves (
    id                  TEXT PRIMARY KEY,
    format              TEXT,
    title               TEXT,
    published_at        BIGINT,
    updated_at          BIGINT,
    max_score_tenths    BIGINT,
    content_sha256      TEXT,
    document            TEXT,
    kev_date_added      TEXT,
    kev_due_date        TEXT,
    kev_ransomware      TEXT,
    kev_required_action TEXT,
    imported_at         BIGINT NOT NULL
);
