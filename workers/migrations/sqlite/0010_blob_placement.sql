-- Where each blob is kept. A deployment may hold blobs in more than one
-- store while `relay reprocess migrate` moves them; every process registers
-- the store it writes to, and every blob row says which store has it.
CREATE TABLE blob_stores (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    url       TEXT NOT NULL UNIQUE,   -- canonical: file:///abs/path or s3://bucket/prefix?…
    added_at  INTEGER NOT NULL
);

-- NULL: written before stores were recorded, so in the first store
-- registered (the one the deployment ran on until then).
ALTER TABLE blobs ADD COLUMN store_id INTEGER REFERENCES blob_stores (id);
CREATE INDEX blobs_store ON blobs (store_id, sha256);
