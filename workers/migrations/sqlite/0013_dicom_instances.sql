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
    series_number             INTEGER,
    series_description        TEXT,
    instance_number           INTEGER,
    pixel_rows                INTEGER,
    pixel_columns             INTEGER,
    number_of_frames          INTEGER
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
    json_extract(i.metadata, '$.study_instance_uid'),
    json_extract(i.metadata, '$.series_instance_uid'),
    json_extract(i.metadata, '$.sop_instance_uid'),
    json_extract(i.metadata, '$.sop_class_uid'),
    COALESCE(json_extract(i.metadata, '$.transfer_syntax'), ''),
    json_extract(i.attributes, '$.patient_id'),
    json_extract(i.attributes, '$.patient_name'),
    replace(json_extract(i.attributes, '$.patient_birth_date'), '-', ''),
    json_extract(i.attributes, '$.patient_sex'),
    replace(json_extract(i.attributes, '$.study_date'), '-', ''),
    json_extract(i.metadata, '$.modality'),
    json_extract(i.attributes, '$.series_description'),
    json_extract(i.attributes, '$.instance_number'),
    json_extract(i.metadata, '$.rows'),
    json_extract(i.metadata, '$.columns'),
    json_extract(i.metadata, '$.number_of_frames')
FROM images i
WHERE i.media_type = 'application/dicom'
  AND json_extract(i.metadata, '$.study_instance_uid') IS NOT NULL
  AND json_extract(i.metadata, '$.series_instance_uid') IS NOT NULL
  AND json_extract(i.metadata, '$.sop_instance_uid') IS NOT NULL
  AND json_extract(i.metadata, '$.sop_class_uid') IS NOT NULL;
