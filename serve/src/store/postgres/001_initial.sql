-- The job store on PostgreSQL: the same tables as SQLite's, with PostgreSQL's types. Every
-- state change of an upload or a job is a transaction here before it is reported to anyone;
-- files are published before the row that points at them.
CREATE TABLE uploads (
    id          TEXT PRIMARY KEY,
    sha256      TEXT NOT NULL,
    size        BIGINT NOT NULL,
    format      TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE jobs (
    seq              BIGSERIAL PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    state            TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    input            TEXT NOT NULL,
    settings         TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    error_code       TEXT,
    error_message    TEXT,
    progress         TEXT,
    result           TEXT,
    cache_key        TEXT,
    cached_from      TEXT,
    expired_at       BIGINT,
    idempotency_key  TEXT UNIQUE,
    request_sha256   TEXT,
    lease_owner      TEXT,
    lease_expires_at BIGINT
);

CREATE INDEX jobs_by_state ON jobs (state, seq);
CREATE INDEX jobs_by_cache_key ON jobs (cache_key);
CREATE INDEX jobs_by_lease ON jobs (state, lease_expires_at);

CREATE TABLE job_layers (
    job_id   TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    ordinal  BIGINT NOT NULL,
    layer    TEXT NOT NULL,
    PRIMARY KEY (job_id, ordinal)
);
