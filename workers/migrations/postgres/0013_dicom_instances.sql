-- DICOMweb searches (QIDO-RS): the attributes each stored DICOM instance is
-- matched on and answered with, one row per DICOM image, written in the
-- transaction that records the image, so a search never opens a blob.
CREATE TABLE dicom_instances (
    image_id                  TEXT PRIMARY KEY REFERENCES images (id),
    case_id                   TEXT NOT NULL REFERENCES cases (id),
    study_instance_uid        TEXT NOT NULL,
    series_instance_uid       TEXT NOT NULL,
    sop_instance_uid          TEXT NOT NULL,
    sop_class_uid             TEXT NOT NULL,
    transfer_syntax_uid       TEXT NOT NULL,
    patient_id                TEXT,
    patient_name              TEXT,
    patient_birth_date        TEXT,
    patient_sex               TEXT,
    -- DA, YYYYMMDD: ranges compare as text.
    study_date                TEXT,
    study_time                TEXT,
    accession_number          TEXT,
    study_id                  TEXT,
    study_description         TEXT,
    referring_physician_name  TEXT,
    modality                  TEXT,
    series_number             BIGINT,
    series_description        TEXT,
    instance_number           BIGINT,
    pixel_rows                BIGINT,
    pixel_columns             BIGINT,
    number_of_frames          BIGINT
);
CREATE INDEX dicom_instances_study ON dicom_instances (study_instance_uid, series_instance_uid);
CREATE INDEX dicom_instances_sop ON dicom_instances (sop_instance_uid);
CREATE INDEX dicom_instances_case ON dicom_instances (case_id);
CREATE INDEX dicom_instances_patient ON dicom_instances (patient_id);

-- Instances stored before: what ingest checked (UIDs, modality, size) and
-- what derive read (patient, study date, series); the rest stays empty.
INSERT INTO dicom_instances (
    image_id, case_id, study_instance_uid, series_instance_uid, sop_instance_uid,
    sop_class_uid, transfer_syntax_uid, patient_id, patient_name, patient_birth_date,
    patient_sex, study_date, modality, series_description, instance_number,
    pixel_rows, pixel_columns, number_of_frames)
SELECT i.id, i.case_id,
    (i.metadata::jsonb ->> 'study_instance_uid'),
    (i.metadata::jsonb ->> 'series_instance_uid'),
    (i.metadata::jsonb ->> 'sop_instance_uid'),
    (i.metadata::jsonb ->> 'sop_class_uid'),
    COALESCE((i.metadata::jsonb ->> 'transfer_syntax'), ''),
    (i.attributes::jsonb ->> 'patient_id'),
    (i.attributes::jsonb ->> 'patient_name'),
    replace((i.attributes::jsonb ->> 'patient_birth_date'), '-', ''),
    (i.attributes::jsonb ->> 'patient_sex'),
    replace((i.attributes::jsonb ->> 'study_date'), '-', ''),
    (i.metadata::jsonb ->> 'modality'),
    (i.attributes::jsonb ->> 'series_description'),
    (i.attributes::jsonb ->> 'instance_number')::numeric::bigint,
    (i.metadata::jsonb ->> 'rows')::bigint,
    (i.metadata::jsonb ->> 'columns')::bigint,
    (i.metadata::jsonb ->> 'number_of_frames')::bigint
FROM images i
WHERE i.media_type = 'application/dicom'
  AND (i.metadata::jsonb ->> 'study_instance_uid') IS NOT NULL
  AND (i.metadata::jsonb ->> 'series_instance_uid') IS NOT NULL
  AND (i.metadata::jsonb ->> 'sop_instance_uid') IS NOT NULL
  AND (i.metadata::jsonb ->> 'sop_class_uid') IS NOT NULL;
