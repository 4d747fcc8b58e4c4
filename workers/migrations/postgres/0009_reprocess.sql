-- Operators' batch runs (verify, rederive, migrate, sweep): what was asked,
-- how far it got, what it found. The cursor is the last blob key finished,
-- so a run resumes after a crash or Ctrl-C without redoing work.
CREATE TABLE reprocess_runs (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('verify', 'rederive', 'migrate', 'sweep')),
    options      TEXT NOT NULL,                 -- JSON, as given
    state        TEXT NOT NULL CHECK (state IN ('running', 'finished')),
    dry_run      BIGINT NOT NULL DEFAULT 0,
    started_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    cursor       TEXT,                          -- last key done; NULL: from the start
    scanned      BIGINT NOT NULL DEFAULT 0,
    ok           BIGINT NOT NULL DEFAULT 0,
    fixed        BIGINT NOT NULL DEFAULT 0,
    failed       BIGINT NOT NULL DEFAULT 0,
    bytes        BIGINT NOT NULL DEFAULT 0,
    failures     TEXT NOT NULL DEFAULT '[]'     -- JSON: the first failures, by key
);
CREATE INDEX reprocess_runs_started ON reprocess_runs (started_at);
