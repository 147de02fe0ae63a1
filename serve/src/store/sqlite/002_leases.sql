-- A running job is held by one server (lease_owner) until lease_expires_at, renewed by its
-- heartbeat; past it, the job is the queue's again.
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_expires_at INTEGER;
CREATE INDEX jobs_by_lease ON jobs (state, lease_expires_at);
