//! A DICOM Part 10 file a front door already holds whole (the C-STORE door
//! writes each received instance to a spool file), checked by ingest once:
//! hashed, sniffed and validated exactly as [`Ingest::ingest`] would, with
//! the attributes before Pixel Data kept so the door can read what it needs
//! (the study, the patient) without parsing the file again. It is stored
//! with [`Ingest::ingest_checked`], which skips only the checks already
//! done.
//!
//! [`Ingest::ingest`]: super::Ingest::ingest
//! [`Ingest::ingest_checked`]: super::Ingest::ingest_checked

use std::io::Read;
use std::path::Path;

use dicom_object::{DefaultDicomObject, Tag};
use serde_json::Value;
use tempfile::NamedTempFile;

use super::dicom::{self, attribute_text};
use super::sniff::SNIFF_LEN;
use super::{Declared, IngestError, media_type, sniff};
use crate::blob::BlobError;
use crate::model::{DicomIndex, MediaType, Sha256, Sha256Hasher};

/// A DICOM file ingest has accepted but not yet stored. Built only by
/// [`super::Ingest::check_dicom_file`], so a value that exists passed the
/// same checks as an upload.
#[derive(Debug)]
pub struct CheckedDicom {
    pub(super) file: NamedTempFile,
    pub(super) sha256: Sha256,
    pub(super) size: u64,
    pub(super) metadata: Value,
    pub(super) index: DicomIndex,
    header: DefaultDicomObject,
}

impl CheckedDicom {
    /// The attributes the receipt will carry (`sop_class_uid`,
    /// `sop_instance_uid`, `study_instance_uid`, `series_instance_uid`,
    /// `modality`, …).
    pub fn metadata(&self) -> &Value {
        &self.metadata
    }

    /// A receipt attribute as text (`""` when absent).
    pub fn uid(&self, key: &str) -> &str {
        self.metadata
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// Any attribute before Pixel Data as text, without padding; `None`
    /// when absent, empty or not text.
    pub fn text(&self, tag: Tag) -> Option<String> {
        attribute_text(&self.header, tag)
    }

    pub fn sha256(&self) -> Sha256 {
        self.sha256
    }
}

/// Hashes, sniffs and validates `file` (blocking: run it on the blocking
/// pool). `limit` is ingest's size limit, `max_depth` its sequence bound.
pub(super) fn check(
    file: NamedTempFile,
    limit: u64,
    max_depth: usize,
) -> Result<CheckedDicom, IngestError> {
    let (sha256, size, head) = hash(file.path(), limit)?;
    if size == 0 {
        return Err(IngestError::Empty);
    }
    // The same reconciliation as an upload declared `application/dicom`.
    media_type(sniff(&head), Declared::Media(MediaType::Dicom))?;
    let validated = dicom::validate(file.path(), max_depth)?;
    Ok(CheckedDicom {
        file,
        sha256,
        size,
        metadata: validated.metadata,
        index: validated.index,
        header: validated.header,
    })
}

/// The sha256, size and first bytes of the file, refused past `limit`.
fn hash(path: &Path, limit: u64) -> Result<(Sha256, u64, Vec<u8>), IngestError> {
    let mut file = std::fs::File::open(path).map_err(BlobError::io)?;
    let mut hasher = Sha256Hasher::new();
    let mut head = Vec::with_capacity(SNIFF_LEN);
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(BlobError::io)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        if size > limit {
            return Err(IngestError::TooLarge { limit });
        }
        if head.len() < SNIFF_LEN {
            let take = (SNIFF_LEN - head.len()).min(n);
            head.extend_from_slice(&buffer[..take]);
        }
        hasher.update(&buffer[..n]);
    }
    Ok((hasher.finish(), size, head))
}

#[cfg(test)]
mod tests {
    use dicom_dictionary_std::tags;

    use super::*;

    fn spooled(source: &str) -> (NamedTempFile, Vec<u8>) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures")
            .join(source);
        let bytes = std::fs::read(path).expect("fixture");
        let mut file = NamedTempFile::new().expect("temp file");
        std::io::Write::write_all(&mut file, &bytes).expect("write");
        (file, bytes)
    }

    #[test]
    fn a_real_instance_is_hashed_validated_and_readable_once() {
        let (file, bytes) = spooled("dicom/CT_small.dcm");
        let dicom = check(file, 1 << 20, 16).expect("accepted");
        assert_eq!(dicom.sha256(), Sha256::of(&bytes));
        assert_eq!(dicom.size, bytes.len() as u64);
        assert!(dicom.uid("study_instance_uid").starts_with("1.3.6.1"));
        assert_eq!(dicom.uid("modality"), "CT");
        assert_eq!(
            dicom.text(tags::PATIENT_NAME).as_deref(),
            Some("CompressedSamples^CT1")
        );
        assert_eq!(
            dicom.text(tags::PIXEL_DATA),
            None,
            "read only up to Pixel Data"
        );
    }

    #[test]
    fn what_an_upload_would_refuse_is_refused() {
        let (file, _) = spooled("photos/plain.png");
        assert!(matches!(
            check(file, 1 << 20, 16),
            Err(IngestError::TypeMismatch { .. })
        ));
        let (file, _) = spooled("dicom/CT_small.dcm");
        assert!(matches!(
            check(file, 1000, 16),
            Err(IngestError::TooLarge { limit: 1000 })
        ));
        let empty = NamedTempFile::new().expect("temp file");
        assert!(matches!(check(empty, 1000, 16), Err(IngestError::Empty)));
    }
}
