-- Relay catalog, SQLite dialect. Timestamps are integer milliseconds since the
-- Unix epoch (UTC); ids are UUIDv7 text.

CREATE TABLE offices (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('office', 'specialist', 'admin')),
    office_id   TEXT REFERENCES offices (id),
    specialty   TEXT CHECK (specialty IN ('dermatology', 'radiology')),
    created_at  INTEGER NOT NULL,
    CHECK ((role = 'office') = (office_id IS NOT NULL)),
    CHECK ((role = 'specialist') = (specialty IS NOT NULL))
);
CREATE INDEX users_office ON users (office_id);

-- Only the sha256 of a token's secret is stored.
CREATE TABLE tokens (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id),
    secret_sha256  TEXT NOT NULL CHECK (length(secret_sha256) = 64),
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER,
    revoked_at     INTEGER
);
CREATE INDEX tokens_user ON tokens (user_id);

CREATE TABLE cases (
    id                  TEXT PRIMARY KEY,
    office_id           TEXT NOT NULL REFERENCES offices (id),
    created_by          TEXT NOT NULL REFERENCES users (id),
    status              TEXT NOT NULL,
    specialty           TEXT NOT NULL,
    priority            TEXT NOT NULL,
    patient_name        TEXT NOT NULL,
    patient_birth_date  TEXT NOT NULL,
    patient_sex         TEXT NOT NULL,
    patient_mrn         TEXT NOT NULL,
    question            TEXT NOT NULL,
    history             TEXT NOT NULL,
    body_site           TEXT,
    duration            TEXT,
    medications         TEXT,
    allergies           TEXT,
    modality            TEXT,
    body_part           TEXT,
    cancel_reason       TEXT,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    submitted_at        INTEGER,
    cancelled_at        INTEGER
);
CREATE INDEX cases_office ON cases (office_id, created_at);
CREATE INDEX cases_specialty ON cases (specialty, status, created_at);

-- Every status change, in order; never updated or deleted.
CREATE TABLE case_history (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id      TEXT NOT NULL REFERENCES cases (id),
    from_status  TEXT NOT NULL,
    to_status    TEXT NOT NULL,
    actor        TEXT NOT NULL,
    at           INTEGER NOT NULL,
    note         TEXT
);
CREATE INDEX case_history_case ON case_history (case_id, id);
CREATE TRIGGER case_history_append_only_update BEFORE UPDATE ON case_history
BEGIN SELECT RAISE(ABORT, 'case history is append-only'); END;
CREATE TRIGGER case_history_append_only_delete BEFORE DELETE ON case_history
BEGIN SELECT RAISE(ABORT, 'case history is append-only'); END;

-- The audit trail. Rows are appended by requests; the sealer later sets seq,
-- prev_hash and hash once, linking them into a sha256 chain.
CREATE TABLE audit_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at  INTEGER NOT NULL,
    actor        TEXT NOT NULL,
    actor_role   TEXT NOT NULL,
    action       TEXT NOT NULL,
    object_id    TEXT,
    office_id    TEXT,
    remote_addr  TEXT NOT NULL,
    request_id   TEXT,
    seq          INTEGER UNIQUE,
    prev_hash    TEXT,
    hash         TEXT
);
CREATE INDEX audit_events_unsealed ON audit_events (id) WHERE seq IS NULL;
CREATE INDEX audit_events_object ON audit_events (object_id);
CREATE INDEX audit_events_actor ON audit_events (actor);

CREATE TABLE audit_chain_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO audit_chain_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;

-- The only update allowed is sealing an unsealed event, leaving its content as it was.
CREATE TRIGGER audit_events_seal_only BEFORE UPDATE ON audit_events
WHEN OLD.seq IS NOT NULL
  OR NEW.id IS NOT OLD.id
  OR NEW.occurred_at IS NOT OLD.occurred_at
  OR NEW.actor IS NOT OLD.actor
  OR NEW.actor_role IS NOT OLD.actor_role
  OR NEW.action IS NOT OLD.action
  OR NEW.object_id IS NOT OLD.object_id
  OR NEW.office_id IS NOT OLD.office_id
  OR NEW.remote_addr IS NOT OLD.remote_addr
  OR NEW.request_id IS NOT OLD.request_id
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
