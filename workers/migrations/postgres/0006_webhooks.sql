-- An office's webhook: where report events are POSTed, and the shared
-- secret that signs them (Standard Webhooks). The secret must be readable
-- to sign with, so it is stored as issued; protect the database.
ALTER TABLE offices ADD COLUMN webhook_url TEXT;
ALTER TABLE offices ADD COLUMN webhook_secret TEXT;
