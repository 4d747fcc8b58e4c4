-- The DICOM C-STORE door. A calling AE title is a modality or PACS of one
-- office; it acts as an office user of its own (created with the mapping),
-- so its cases, images and audit events name it.
CREATE TABLE dicom_ae_titles (
    ae_title    TEXT PRIMARY KEY CHECK (length(ae_title) BETWEEN 1 AND 16),
    office_id   TEXT NOT NULL REFERENCES offices (id),
    user_id     TEXT NOT NULL UNIQUE REFERENCES users (id),
    created_at  INTEGER NOT NULL
);
CREATE INDEX dicom_ae_titles_office ON dicom_ae_titles (office_id);

-- Which draft case an office's study goes into: the first instance of a
-- Study Instance UID from an office creates the case, later ones join it.
-- Once that case has left draft, the next instance starts a new draft.
CREATE TABLE dicom_study_cases (
    office_id           TEXT NOT NULL REFERENCES offices (id),
    study_instance_uid  TEXT NOT NULL CHECK (length(study_instance_uid) BETWEEN 1 AND 64),
    case_id             TEXT NOT NULL REFERENCES cases (id),
    PRIMARY KEY (office_id, study_instance_uid)
);
