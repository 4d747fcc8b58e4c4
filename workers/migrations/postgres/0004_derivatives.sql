-- What derive made of each image: renditions (blobs too) and, for DICOM,
-- the study and series each instance belongs to, grouped per case.

ALTER TABLE images ADD COLUMN derive_state TEXT NOT NULL DEFAULT 'pending'
    CHECK (derive_state IN ('pending', 'ready', 'unsupported', 'failed'));
ALTER TABLE images ADD COLUMN derive_version BIGINT;
ALTER TABLE images ADD COLUMN derive_error TEXT;
-- Metadata derive read (EXIF for photos, DICOM attributes), as JSON text.
ALTER TABLE images ADD COLUMN attributes TEXT;
ALTER TABLE images ADD COLUMN frames BIGINT;
ALTER TABLE images ADD COLUMN study_instance_uid TEXT;
ALTER TABLE images ADD COLUMN series_instance_uid TEXT;
CREATE INDEX images_series ON images (case_id, study_instance_uid, series_instance_uid);

CREATE TABLE derivatives (
    image_id        TEXT NOT NULL REFERENCES images (id),
    kind            TEXT NOT NULL CHECK (kind IN ('thumbnail', 'preview', 'frame')),
    frame           BIGINT NOT NULL DEFAULT 0,
    -- '' for the default window; 'center,width' for a requested one.
    voi             TEXT NOT NULL DEFAULT '',
    derive_version  BIGINT NOT NULL,
    sha256          TEXT NOT NULL REFERENCES blobs (sha256),
    size            BIGINT NOT NULL,
    media_type      TEXT NOT NULL,
    width           BIGINT NOT NULL,
    height          BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (image_id, kind, frame, voi)
);
CREATE INDEX derivatives_blob ON derivatives (sha256);
