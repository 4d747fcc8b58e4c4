//! What a resumable upload is, kept beside its bytes as `<id>.json`: whose
//! it is, which case it goes into, how long it will be, and (once ingested)
//! which image it became. Written to a temporary file, fsynced, renamed and
//! the directory fsynced, so a crash leaves the old record or the new one.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::{CaseId, ImageId, OfficeId, Sha256, Timestamp, UserId};

/// A resumable upload's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState {
    pub id: String,
    pub office: OfficeId,
    pub user: UserId,
    pub case: CaseId,
    /// The whole upload's size, declared at creation.
    pub length: u64,
    /// The file's name at the office (never used as a path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// The content type the client declared, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The whole file's sha256, when the client sent it: checked by
    /// ingest once the last byte is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// The image the finished upload became.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageId>,
}

/// Writes `state` to `path` durably (temp file, fsync, rename, fsync dir).
pub(super) fn write(path: &Path, state: &UploadState) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("upload record has no directory"))?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer(&mut temp, state).map_err(std::io::Error::other)?;
    temp.flush()?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Reads a record; `None` when there is none.
pub(super) fn read(path: &Path) -> std::io::Result<Option<UploadState>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
