-- Closing the loop: reports the office has not acknowledged are notified
-- again, and cases past their service level are announced to the office and
-- escalated to the site's administrators. Each marker is set by one
-- conditional UPDATE, so several Relay processes sweeping at once send each
-- notice once.
ALTER TABLE cases ADD COLUMN reminders_sent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cases ADD COLUMN reminded_at INTEGER;       -- last re-notification
ALTER TABLE cases ADD COLUMN overdue_noticed_at INTEGER; -- office told the case is overdue
ALTER TABLE cases ADD COLUMN escalated_at INTEGER;       -- administrators told
CREATE INDEX cases_due ON cases (status, due_at);
CREATE INDEX cases_reported ON cases (status, reported_at);

-- An office may ask for the patient's name in its webhook events (its own
-- system on its own network); e-mail never carries it.
ALTER TABLE offices ADD COLUMN webhook_patient_name INTEGER NOT NULL DEFAULT 0;
