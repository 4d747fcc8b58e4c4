//! Why an upload was refused or failed. Each kind has a stable code; the
//! HTTP front door maps kinds to status in its one error mapping.

use crate::blob::BlobError;
use crate::catalog::CatalogError;
use crate::model::Sha256;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the body is empty: send the image bytes")]
    Empty,
    #[error("the upload is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the upload ended before it was complete; send it again")]
    Interrupted,
    #[error(
        "the body's sha-256 digest does not match Content-Digest (received {actual}); the file was damaged in transit, send it again"
    )]
    DigestMismatch { actual: Sha256 },
    #[error("{0}")]
    BadDigestHeader(String),
    #[error("{0}")]
    UnsupportedType(String),
    #[error("the bytes are {sniffed} but the upload declared {declared}")]
    TypeMismatch {
        sniffed: &'static str,
        declared: &'static str,
    },
    #[error(
        "HEIC/HEIF photos are not supported yet: export the photo as JPEG (on an iPhone, Settings > Camera > Formats > Most Compatible) and upload it again"
    )]
    Heic,
    #[error("{0}")]
    InvalidImage(String),
    #[error("the image has {pixels} pixels, more than the limit of {limit}")]
    TooManyPixels { pixels: u64, limit: u64 },
    #[error("{0}")]
    InvalidDicom(String),
    #[error(
        "the DICOM preamble holds an executable ({0}) header; such files are refused, export the study again from the modality or PACS"
    )]
    ExecutablePreamble(&'static str),
    #[error("{0}")]
    InvalidFilename(String),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl IngestError {
    /// The stable code clients see.
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::Empty => "empty_body",
            IngestError::TooLarge { .. } => "payload_too_large",
            IngestError::Interrupted => "incomplete_body",
            IngestError::DigestMismatch { .. } => "digest_mismatch",
            IngestError::BadDigestHeader(_) => "invalid_digest_header",
            IngestError::UnsupportedType(_) | IngestError::Heic => "unsupported_media_type",
            IngestError::TypeMismatch { .. } => "media_type_mismatch",
            IngestError::InvalidImage(_) => "invalid_image",
            IngestError::TooManyPixels { .. } => "too_many_pixels",
            IngestError::InvalidDicom(_) => "invalid_dicom",
            IngestError::ExecutablePreamble(_) => "unsafe_preamble",
            IngestError::InvalidFilename(_) => "invalid_filename",
            IngestError::Blob(_) => "storage",
            IngestError::Catalog(_) => "catalog",
        }
    }
}
