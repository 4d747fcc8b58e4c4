-- Where an office wants e-mail notices (no patient data in them: a case id and a link).
ALTER TABLE offices ADD COLUMN notify_email TEXT;
