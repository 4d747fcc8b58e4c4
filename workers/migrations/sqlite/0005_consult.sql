-- The consult loop: service levels, the specialist's claim (a lease, like a
-- job's), reports and addenda, information requests, office notifications.

ALTER TABLE cases ADD COLUMN queued_at INTEGER;       -- place in line, kept across info requests
ALTER TABLE cases ADD COLUMN due_at INTEGER;          -- service level, set at first submission
ALTER TABLE cases ADD COLUMN claimed_by TEXT;         -- specialist holding the claim
ALTER TABLE cases ADD COLUMN claim_until INTEGER;     -- lease end, database clock
ALTER TABLE cases ADD COLUMN reported_at INTEGER;
ALTER TABLE cases ADD COLUMN acknowledged_at INTEGER;
CREATE INDEX cases_worklist ON cases (specialty, status, priority, queued_at);

-- One report per case: a draft while the specialist works, then signed and
-- immutable (its sha256 recorded).
CREATE TABLE reports (
    id               TEXT PRIMARY KEY,
    case_id          TEXT NOT NULL UNIQUE REFERENCES cases (id),
    author           TEXT NOT NULL REFERENCES users (id),
    findings         TEXT NOT NULL,
    impression       TEXT NOT NULL,
    recommendation   TEXT NOT NULL,
    in_person_visit  TEXT NOT NULL CHECK (in_person_visit IN ('not_needed', 'routine', 'urgent')),
    diagnosis_codes  TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('draft', 'signed')),
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    signed_at        INTEGER,
    sha256           TEXT
);
CREATE TRIGGER reports_signed_are_immutable BEFORE UPDATE ON reports WHEN OLD.status = 'signed'
BEGIN SELECT RAISE(ABORT, 'a signed report cannot be changed; add an addendum'); END;
CREATE TRIGGER reports_no_delete BEFORE DELETE ON reports
BEGIN SELECT RAISE(ABORT, 'reports are never deleted'); END;

-- Corrections after signing: each signed when written.
CREATE TABLE report_addenda (
    id         TEXT PRIMARY KEY,
    case_id    TEXT NOT NULL REFERENCES cases (id),
    report_id  TEXT NOT NULL REFERENCES reports (id),
    author     TEXT NOT NULL REFERENCES users (id),
    text       TEXT NOT NULL,
    signed_at  INTEGER NOT NULL,
    sha256     TEXT NOT NULL
);
CREATE INDEX report_addenda_case ON report_addenda (case_id, signed_at);
CREATE TRIGGER report_addenda_immutable BEFORE UPDATE ON report_addenda
BEGIN SELECT RAISE(ABORT, 'addenda cannot be changed'); END;

-- Questions from the specialist and the office's answers.
CREATE TABLE case_messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id     TEXT NOT NULL REFERENCES cases (id),
    kind        TEXT NOT NULL CHECK (kind IN ('question', 'answer')),
    author      TEXT NOT NULL REFERENCES users (id),
    text        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX case_messages_case ON case_messages (case_id, id);

-- What an office is told, in the app.
CREATE TABLE notifications (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    office_id   TEXT NOT NULL REFERENCES offices (id),
    case_id     TEXT NOT NULL REFERENCES cases (id),
    event       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    read_at     INTEGER
);
CREATE INDEX notifications_office ON notifications (office_id, id);
