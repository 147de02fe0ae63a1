-- The job store. Every state change of an upload or a job is a transaction here before it is
-- reported to anyone; files are published on disk before the row that points at them.
CREATE TABLE IF NOT EXISTS uploads (
    id          TEXT PRIMARY KEY,
    sha256      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    format      TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS jobs (
    -- Creation order: the queue's order, and the list's (newest first).
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    state            TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    input            TEXT NOT NULL,
    settings         TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error_code       TEXT,
    error_message    TEXT,
    -- The last layer boundary reached (JSON), for a job that is running.
    progress         TEXT,
    -- Files and totals of a succeeded job (JSON).
    result           TEXT,
    -- version + input digest + settings: jobs with equal keys have equal results.
    cache_key        TEXT,
    cached_from      TEXT,
    expired_at       INTEGER,
    idempotency_key  TEXT UNIQUE,
    request_sha256   TEXT
);

CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, seq);
CREATE INDEX IF NOT EXISTS jobs_by_cache_key ON jobs (cache_key);

-- Every conv tensor a running or finished job has reported, in order.
CREATE TABLE IF NOT EXISTS job_layers (
    job_id   TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    ordinal  INTEGER NOT NULL,
    layer    TEXT NOT NULL,
    PRIMARY KEY (job_id, ordinal)
);
