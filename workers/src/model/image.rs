//! An image attached to a case: what was received, what was stored.

use serde::{Deserialize, Serialize};

use super::{CaseId, DeriveState, ImageId, InvalidValue, OfficeId, Sha256, Timestamp, UserId};

/// The kinds of image Relay accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum MediaType {
    #[serde(rename = "image/jpeg")]
    Jpeg,
    #[serde(rename = "image/png")]
    Png,
    #[serde(rename = "application/dicom")]
    Dicom,
}

impl MediaType {
    pub fn as_str(&self) -> &'static str {
        match self {
            MediaType::Jpeg => "image/jpeg",
            MediaType::Png => "image/png",
            MediaType::Dicom => "application/dicom",
        }
    }

    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        match text {
            "image/jpeg" => Ok(MediaType::Jpeg),
            "image/png" => Ok(MediaType::Png),
            "application/dicom" => Ok(MediaType::Dicom),
            _ => Err(InvalidValue::new(
                "media type must be image/jpeg, image/png or application/dicom",
            )),
        }
    }

    pub fn is_photo(&self) -> bool {
        matches!(self, MediaType::Jpeg | MediaType::Png)
    }
}

/// An image as recorded: the receipt an upload answers with.
///
/// `sha256`/`size` describe the bytes as received; `stored_sha256` and
/// `stored_size` the bytes kept (they differ only when location metadata
/// was removed from a photo). `stored_sha256` is the blob's key.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Image {
    pub id: ImageId,
    pub case_id: CaseId,
    #[serde(skip)]
    pub office_id: OfficeId,
    #[serde(skip)]
    pub uploaded_by: UserId,
    pub filename: Option<String>,
    pub media_type: MediaType,
    pub sha256: Sha256,
    pub size: u64,
    pub stored_sha256: Sha256,
    pub stored_size: u64,
    pub received_at: Timestamp,
    /// What validation learned: dimensions and capture details for photos,
    /// UIDs, modality and geometry for DICOM.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// Whether thumbnails and previews are ready.
    pub derive_state: DeriveState,
    /// Why derive failed or cannot render this file.
    pub derive_error: Option<String>,
    /// Frames in a DICOM object, once derived.
    pub frames: Option<u32>,
    /// What derive read: EXIF capture details for photos; for DICOM the
    /// attributes a worklist and viewer need (patient, study, series,
    /// geometry, window). Absent until derived.
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<serde_json::Value>,
}
