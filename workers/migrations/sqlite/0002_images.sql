-- Images, the blobs they point at, and the job queue.

-- Whether photos from this office lose their location metadata (default: yes).
ALTER TABLE offices ADD COLUMN strip_location INTEGER NOT NULL DEFAULT 1;

-- One row per stored blob (content address), however many images share it.
CREATE TABLE blobs (
    sha256      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE images (
    id             TEXT PRIMARY KEY,
    case_id        TEXT NOT NULL REFERENCES cases (id),
    office_id      TEXT NOT NULL REFERENCES offices (id),
    uploaded_by    TEXT NOT NULL REFERENCES users (id),
    filename       TEXT,
    media_type     TEXT NOT NULL,
    sha256         TEXT NOT NULL,
    size           INTEGER NOT NULL,
    stored_sha256  TEXT NOT NULL REFERENCES blobs (sha256),
    stored_size    INTEGER NOT NULL,
    metadata       TEXT NOT NULL,
    received_at    INTEGER NOT NULL
);
-- The same bytes sent to the same case again are the same image (a retry).
CREATE UNIQUE INDEX images_case_sha256 ON images (case_id, sha256);
CREATE INDEX images_case ON images (case_id, received_at);
CREATE INDEX images_blob ON images (stored_sha256);

-- Background work, inserted in the same transaction as its cause.
CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'running', 'done', 'dead', 'cancelled')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL DEFAULT 5,
    run_at        INTEGER NOT NULL,
    lease_until   INTEGER,
    last_error    TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX jobs_ready ON jobs (state, run_at);
