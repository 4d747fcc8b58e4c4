//! What a viewer sees: renditions made from a stored original.

use serde::Serialize;

use super::{ImageId, InvalidValue, Sha256, Timestamp};

/// How far derive has come for an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeriveState {
    /// Queued or running.
    Pending,
    Ready,
    /// The file is valid but cannot be rendered (e.g. JPEG-LS): a visible,
    /// final state, not a retry loop.
    Unsupported,
    /// Derive failed for good; `derive_error` says why.
    Failed,
}

impl DeriveState {
    pub fn as_str(&self) -> &'static str {
        match self {
            DeriveState::Pending => "pending",
            DeriveState::Ready => "ready",
            DeriveState::Unsupported => "unsupported",
            DeriveState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        match text {
            "pending" => Ok(DeriveState::Pending),
            "ready" => Ok(DeriveState::Ready),
            "unsupported" => Ok(DeriveState::Unsupported),
            "failed" => Ok(DeriveState::Failed),
            _ => Err(InvalidValue::new("unknown derive state")),
        }
    }
}

/// One stored rendition.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Derivative {
    pub image_id: ImageId,
    /// `thumbnail`, `preview` or `frame`.
    pub kind: String,
    pub frame: u32,
    /// `""` for the default window, `"center,width"` for a requested one.
    pub voi: String,
    pub derive_version: u32,
    pub sha256: Sha256,
    pub size: u64,
    pub media_type: String,
    pub width: u32,
    pub height: u32,
    pub created_at: Timestamp,
}

/// What derive learned about an image, recorded with its renditions.
#[derive(Debug, Clone)]
pub struct DeriveResult {
    pub version: u32,
    pub attributes: serde_json::Value,
    pub frames: u32,
    pub renditions: Vec<Derivative>,
}
