//! Derivatives: what a viewer sees, made from the stored original.
//!
//! The pure half of the derive stage: functions from an original's bytes (a
//! photo) or file (DICOM) to encoded renditions and display metadata. Nothing
//! here touches the queue, the catalog or the blob store; the job handler
//! calls these on the blocking pool and stores what they return. Every
//! failure is a [`DeriveError`] that says whether trying again could ever
//! help, and no input, however malformed, makes these functions panic:
//! decoders are fed untrusted bytes, so their panics are caught too.

use std::fmt;

pub mod dicom;
pub mod photo;

mod encode;
mod guard;

pub use dicom::{DicomDerivatives, derive_dicom, read_attributes, render_frame};
pub use photo::{PhotoDerivatives, derive_photo};

/// Bumped whenever rendering changes, so a re-derive can find stale derivatives.
pub const DERIVE_VERSION: u32 = 1;

/// Longest side of a thumbnail, in pixels: a grid cell in a case's image list.
pub const THUMBNAIL_SIDE: u32 = 256;

/// Longest side of a preview, in pixels: enough for a screen, far less than a
/// camera's original. Smaller images are never upscaled.
pub const PREVIEW_SIDE: u32 = 2048;

/// Media type of every rendition: JPEG displays everywhere and is small.
pub const RENDITION_MEDIA_TYPE: &str = "image/jpeg";

/// One rendered image, encoded and ready to be stored as a blob.
#[derive(Clone, PartialEq, Eq)]
pub struct Rendition {
    pub kind: RenditionKind,
    /// The encoded image ([`Rendition::media_type`]).
    pub bytes: Vec<u8>,
    pub media_type: &'static str,
    pub width: u32,
    pub height: u32,
}

impl fmt::Debug for Rendition {
    // The bytes would flood a log line; their length is what a reader wants.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rendition")
            .field("kind", &self.kind)
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .field("media_type", &self.media_type)
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

/// What a rendition is for; its name is how it is stored and served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RenditionKind {
    /// At most [`THUMBNAIL_SIDE`] on its longest side.
    Thumbnail,
    /// At most [`PREVIEW_SIDE`] on its longest side.
    Preview,
    /// One frame of a (multi-frame) DICOM object, rendered on request.
    Frame { index: u32 },
}

impl RenditionKind {
    /// The stable name: `thumbnail`, `preview` or `frame` (the index is kept
    /// apart, as a number).
    pub fn as_str(&self) -> &'static str {
        match self {
            RenditionKind::Thumbnail => "thumbnail",
            RenditionKind::Preview => "preview",
            RenditionKind::Frame { .. } => "frame",
        }
    }
}

/// Why an original could not be rendered. Neither kind is worth retrying:
/// the same bytes give the same answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeriveError {
    /// The file cannot be rendered and never will be (e.g. JPEG-LS, unknown
    /// photometric): a visible `unsupported` state, not retried.
    #[error("cannot be rendered: {0}")]
    Unsupported(String),
    /// The file is damaged or exceeds limits: fails the job for good, with
    /// the reason.
    #[error("invalid image: {0}")]
    Invalid(String),
}

impl DeriveError {
    /// A stable snake_case name for the kind, for job records and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            DeriveError::Unsupported(_) => "unsupported",
            DeriveError::Invalid(_) => "invalid",
        }
    }

    /// Whether the original is fine but beyond what this build can render
    /// (as opposed to damaged or over the limits).
    pub fn is_unsupported(&self) -> bool {
        matches!(self, DeriveError::Unsupported(_))
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        DeriveError::Invalid(message.into())
    }

    pub(crate) fn unsupported(message: impl Into<String>) -> Self {
        DeriveError::Unsupported(message.into())
    }
}

/// Bounds on the work one original may cause, checked from the headers
/// before any pixel memory is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeriveLimits {
    /// Most samples an original may hold: width × height for a photo,
    /// rows × columns × frames × samples per pixel for DICOM.
    pub max_pixels: u64,
    /// Most frames a DICOM object may declare.
    pub max_frames: u32,
    /// Largest DICOM file rendered. The decoder reads a whole object,
    /// pixel data included, into memory; past this size the object is
    /// recorded as not renderable rather than risk the worker's memory.
    pub max_dicom_bytes: u64,
}

impl Default for DeriveLimits {
    /// 100 megapixels (a 10k × 10k scan), 2000 frames (a long cine loop),
    /// 512 MiB per DICOM object.
    fn default() -> Self {
        DeriveLimits {
            max_pixels: 100_000_000,
            max_frames: 2000,
            max_dicom_bytes: 512 << 20,
        }
    }
}
