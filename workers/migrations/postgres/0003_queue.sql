-- Leases name their holder, so a worker that lost its lease cannot
-- complete or extend a job another worker has claimed since.
ALTER TABLE jobs ADD COLUMN worker TEXT;
CREATE INDEX jobs_kind_state ON jobs (kind, state);
