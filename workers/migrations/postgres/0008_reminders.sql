-- Closing the loop: reports the office has not acknowledged are notified
-- again, and cases past their service level are announced to the office and
-- escalated to the site's administrators. Each marker is set by one
-- conditional UPDATE, so several Relay processes sweeping at once send each
-- notice once.
ALTER TABLE cases ADD COLUMN reminders_sent BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cases ADD COLUMN reminded_at BIGINT;        -- last re-notification
ALTER TABLE cases ADD COLUMN overdue_noticed_at BIGINT; -- office told the case is overdue
ALTER TABLE cases ADD COLUMN escalated_at BIGINT;       -- administrators told
CREATE INDEX cases_due ON cases (status, due_at);
CREATE INDEX cases_reported ON cases (status, reported_at);

-- An office may ask for the patient's name in its webhook events (its own
-- system on its own network); e-mail never carries it. 0 or 1, as in SQLite.
ALTER TABLE offices ADD COLUMN webhook_patient_name BIGINT NOT NULL DEFAULT 0;
