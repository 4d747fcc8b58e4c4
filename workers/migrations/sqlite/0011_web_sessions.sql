-- Browser sessions of the web pages. Only the sha256 of the cookie secret
-- is stored. A session belongs to the token it was exchanged for at
-- sign-in: every check reads the token too, so revoking the token ends it.
CREATE TABLE web_sessions (
    key_sha256    TEXT PRIMARY KEY CHECK (length(key_sha256) = 64),
    token_id      TEXT NOT NULL REFERENCES tokens (id),
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE INDEX web_sessions_token ON web_sessions (token_id);
CREATE INDEX web_sessions_expires ON web_sessions (expires_at);
