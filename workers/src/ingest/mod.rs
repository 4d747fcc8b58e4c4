//! Ingest: the one path every front door's image takes to durable storage.
//!
//! ```text
//! body ─▶ spool (sha256 while streaming, size limit) ─▶ Content-Digest check
//!      ─▶ sniff (bytes decide the type) ─▶ validate (decode / parse, bounded,
//!         on the blocking pool) ─▶ remove photo location ─▶ blob put (fsync,
//!         link, fsync dir) ─▶ catalog: image + blob row + derive job + audit
//!         in ONE transaction ─▶ receipt
//! ```
//!
//! A front door that already holds a whole DICOM file and must read it
//! before it knows the case (C-STORE) checks it once with
//! [`Ingest::check_dicom_file`] and stores the [`CheckedDicom`] with
//! [`Ingest::ingest_checked`]: the same checks, in the same order, and the
//! same store and transaction below.
//!
//! Architecture Invariant: blob first, row second. A row never points at a
//! missing blob; a blob without a row (a crash in between) is an orphan a
//! sweep removes, never a lost acknowledged upload. Nothing is acknowledged
//! before the transaction commits, and every refusal drops the spool file.

mod checked;
pub(crate) mod dicom;
mod error;
mod exif_gps;
mod location;
pub(crate) mod photo;
pub(crate) mod sniff;
mod spool;
mod undo;

pub use checked::CheckedDicom;
pub use error::IngestError;
pub use location::{Removal, remove_location, remove_location_checked};
pub use sniff::{Sniffed, sniff};

use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::audit::AuditContext;
use crate::blob::{BlobError, BlobStore, Persisted, keep_after_commit};
use crate::catalog::{Catalog, UploadTarget};
use crate::model::{
    CaseId, CaseScope, DeriveState, DicomIndex, Image, ImageId, MediaType, Sha256, Timestamp,
    UserId,
};

/// Bounds on what one upload may be.
#[derive(Debug, Clone)]
pub struct IngestLimits {
    /// Largest body, checked while streaming.
    pub max_bytes: u64,
    /// Largest photo file (photos are edited in memory).
    pub max_photo_bytes: u64,
    /// Largest photo in pixels (decompression bombs).
    pub max_pixels: u64,
    /// Deepest DICOM sequence nesting.
    pub max_dicom_depth: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self {
            max_bytes: 2 << 30,
            max_photo_bytes: 256 << 20,
            max_pixels: 100_000_000,
            max_dicom_depth: 16,
        }
    }
}

/// What the client said the body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    Media(MediaType),
    /// `image/heic` or `image/heif`: recognised so the refusal can help.
    Heif,
    /// `application/octet-stream`: the bytes decide.
    Unspecified,
}

impl Declared {
    /// Reads a `Content-Type` (parameters ignored).
    pub fn from_content_type(content_type: &str) -> Result<Self, IngestError> {
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "image/heic" | "image/heif" | "image/heic-sequence" | "image/heif-sequence" | "image/avif" => {
                Ok(Declared::Heif)
            }
            "application/octet-stream" => Ok(Declared::Unspecified),
            other => MediaType::parse(other).map(Declared::Media).map_err(|_| {
                IngestError::UnsupportedType(format!(
                    "Content-Type {other:?} is not accepted: send image/jpeg, image/png or application/dicom"
                ))
            }),
        }
    }
}

/// One upload as a front door hands it over.
#[derive(Debug)]
pub struct Upload<S> {
    pub declared: Declared,
    pub filename: Option<String>,
    /// The sha256 from `Content-Digest`, when the client sent one.
    pub client_digest: Option<Sha256>,
    pub body: S,
}

/// The outcome of an accepted upload.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub image: Image,
    /// False when the case already had these exact bytes (a retried upload):
    /// the existing image is returned and nothing new is stored.
    pub created: bool,
}

/// The ingest stage, shared by every front door.
#[derive(Clone)]
pub struct Ingest {
    catalog: Arc<dyn Catalog>,
    blobs: Arc<dyn BlobStore>,
    limits: IngestLimits,
    /// Bounds concurrent decodes so a burst of large photos cannot take all
    /// memory or starve other work.
    decoders: Arc<Semaphore>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("blobs", &self.blobs)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Ingest {
    pub fn new(catalog: Arc<dyn Catalog>, blobs: Arc<dyn BlobStore>, limits: IngestLimits) -> Self {
        let permits = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            catalog,
            blobs,
            limits,
            decoders: Arc::new(Semaphore::new(permits)),
        }
    }

    pub fn limits(&self) -> &IngestLimits {
        &self.limits
    }

    /// Takes one upload into `case` for `uploaded_by`.
    pub async fn ingest<S, E>(
        &self,
        ctx: &AuditContext,
        uploaded_by: UserId,
        scope: CaseScope,
        case: CaseId,
        upload: Upload<S>,
    ) -> Result<Ingested, IngestError>
    where
        S: Stream<Item = Result<Bytes, E>>,
    {
        let filename = upload.filename.map(check_filename).transpose()?;
        // Refuse a foreign or closed case before reading a byte of the body.
        let target = self.catalog.upload_target(scope, case).await?;
        let spooled =
            spool::spool(upload.body, self.blobs.spool_dir(), self.limits.max_bytes).await?;
        if let Some(claimed) = upload.client_digest
            && claimed != spooled.sha256
        {
            return Err(IngestError::DigestMismatch {
                actual: spooled.sha256,
            });
        }
        let media = media_type(sniff(&spooled.head), upload.declared)?;
        let received = (spooled.sha256, spooled.size);
        let accepted = if media.is_photo() {
            let (file, sha256, size, metadata) =
                self.photo(spooled, media, target.strip_location).await?;
            Accepted {
                file,
                media,
                received,
                stored: (sha256, size),
                metadata,
                index: None,
            }
        } else {
            let max_depth = self.limits.max_dicom_depth;
            let path = spooled.file.path().to_owned();
            let validated = self
                .blocking(move || dicom::validate(&path, max_depth))
                .await?;
            Accepted {
                file: spooled.file,
                media,
                received,
                stored: received,
                metadata: validated.metadata,
                index: Some(validated.index),
            }
        };
        self.store(ctx, uploaded_by, scope, case, target, filename, accepted)
            .await
    }

    /// Hashes and validates a whole DICOM Part 10 file as [`Ingest::ingest`]
    /// would, storing nothing: for a front door that must read the
    /// instance (its study, its patient) before it knows the case, and must
    /// not open a case for an instance ingest would refuse. Store the result
    /// with [`Ingest::ingest_checked`]; dropping it removes the file.
    pub async fn check_dicom_file(
        &self,
        file: tempfile::NamedTempFile,
    ) -> Result<CheckedDicom, IngestError> {
        let (limit, max_depth) = (self.limits.max_bytes, self.limits.max_dicom_depth);
        self.blocking(move || checked::check(file, limit, max_depth))
            .await
    }

    /// Stores a file [`Ingest::check_dicom_file`] accepted into `case`:
    /// the case and file name checks, then the same durable store and
    /// transaction as [`Ingest::ingest`].
    pub async fn ingest_checked(
        &self,
        ctx: &AuditContext,
        uploaded_by: UserId,
        scope: CaseScope,
        case: CaseId,
        filename: Option<String>,
        dicom: CheckedDicom,
    ) -> Result<Ingested, IngestError> {
        let filename = filename.map(check_filename).transpose()?;
        let target = self.catalog.upload_target(scope, case).await?;
        let received = (dicom.sha256, dicom.size);
        let accepted = Accepted {
            file: dicom.file,
            media: MediaType::Dicom,
            received,
            stored: received,
            metadata: dicom.metadata,
            index: Some(dicom.index),
        };
        self.store(ctx, uploaded_by, scope, case, target, filename, accepted)
            .await
    }

    /// Blob first, row second: makes the accepted file durable, then
    /// commits its image row, blob row, derive job and audit event.
    #[allow(clippy::too_many_arguments)]
    async fn store(
        &self,
        ctx: &AuditContext,
        uploaded_by: UserId,
        scope: CaseScope,
        case: CaseId,
        target: UploadTarget,
        filename: Option<String>,
        accepted: Accepted,
    ) -> Result<Ingested, IngestError> {
        let Accepted {
            file,
            media,
            received,
            stored: (stored_sha256, stored_size),
            metadata,
            index,
        } = accepted;
        let persisted = match self.blobs.put(stored_sha256, &file).await {
            Ok(persisted) => persisted,
            Err(e) => {
                // A put can fail after its bytes became visible (the
                // directory fsync after the link).
                undo::remove_uncommitted(self.catalog.as_ref(), self.blobs.as_ref(), stored_sha256)
                    .await;
                return Err(e.into());
            }
        };
        let image = Image {
            id: ImageId::generate(),
            case_id: case,
            office_id: target.office_id,
            uploaded_by,
            filename,
            media_type: media,
            sha256: received.0,
            size: received.1,
            stored_sha256,
            stored_size,
            received_at: Timestamp::now(),
            metadata,
            derive_state: DeriveState::Pending,
            derive_error: None,
            frames: None,
            attributes: None,
        };
        let (image, created) = match self
            .catalog
            .add_image(ctx, scope, &image, index.as_ref())
            .await
        {
            Ok(added) => added,
            Err(e) => {
                if persisted == Persisted::Created {
                    undo::remove_uncommitted(
                        self.catalog.as_ref(),
                        self.blobs.as_ref(),
                        stored_sha256,
                    )
                    .await;
                }
                return Err(e.into());
            }
        };
        keep_after_commit(self.blobs.as_ref(), stored_sha256, &file, persisted).await?;
        Ok(Ingested { image, created })
    }

    /// Where uploads are spooled before they are stored.
    pub fn spool_dir(&self) -> &std::path::Path {
        self.blobs.spool_dir()
    }

    /// Validates a photo and removes its location; returns the file to store.
    async fn photo(
        &self,
        spooled: spool::Spooled,
        media: MediaType,
        strip_location: bool,
    ) -> Result<(tempfile::NamedTempFile, Sha256, u64, Value), IngestError> {
        if spooled.size > self.limits.max_photo_bytes {
            return Err(IngestError::TooLarge {
                limit: self.limits.max_photo_bytes,
            });
        }
        let bytes = Bytes::from(
            tokio::fs::read(spooled.file.path())
                .await
                .map_err(BlobError::io)?,
        );
        let max_pixels = self.limits.max_pixels;
        let spool_dir = self.blobs.spool_dir().to_owned();
        let (edited, removal, metadata) = self
            .blocking(move || {
                let (width, height) = photo::validate(&bytes, media, max_pixels)?;
                let (edited, removal) = if strip_location {
                    remove_location_checked(bytes.clone(), media, max_pixels, (width, height))?
                } else {
                    (None, Removal::default())
                };
                let mut metadata =
                    photo::metadata(edited.as_ref().unwrap_or(&bytes), width, height);
                if let Value::Object(m) = &mut metadata {
                    m.insert("location_removed".into(), json!(removal.changed()));
                }
                let edited = edited
                    .map(|b| {
                        write_spool(&spool_dir, &b).map(|f| (f, Sha256::of(&b), b.len() as u64))
                    })
                    .transpose()?;
                Ok((edited, removal, metadata))
            })
            .await?;
        if removal.changed() {
            tracing::info!(
                exif_gps = removal.exif_gps,
                xmp = removal.xmp,
                exif_dropped = removal.exif_dropped,
                "photo location removed"
            );
        }
        Ok(match edited {
            Some((file, sha256, size)) => (file, sha256, size, metadata),
            None => (spooled.file, spooled.sha256, spooled.size, metadata),
        })
    }

    /// Runs CPU-bound work on the blocking pool, a bounded number at a time.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, IngestError> + Send + 'static,
    ) -> Result<T, IngestError> {
        let _permit = self
            .decoders
            .acquire()
            .await
            .map_err(|e| BlobError::Io(std::io::Error::other(e)))?;
        tokio::task::spawn_blocking(work).await.map_err(|e| {
            IngestError::InvalidImage(format!("the file could not be processed: {e}"))
        })?
    }
}

/// A file every check accepted, ready to be stored.
struct Accepted {
    file: tempfile::NamedTempFile,
    media: MediaType,
    /// The sha256 and size of what the client sent.
    received: (Sha256, u64),
    /// The sha256 and size of what is stored (a photo may lose its location).
    stored: (Sha256, u64),
    metadata: Value,
    /// What DICOMweb searches match on (DICOM only).
    index: Option<DicomIndex>,
}

fn write_spool(
    dir: &std::path::Path,
    bytes: &[u8],
) -> Result<tempfile::NamedTempFile, IngestError> {
    Ok(spool::write_file(dir, bytes).map_err(BlobError::io)?)
}

/// Reconciles what the bytes are with what the client declared.
fn media_type(sniffed: Sniffed, declared: Declared) -> Result<MediaType, IngestError> {
    match (sniffed, declared) {
        (Sniffed::Heif, _) => Err(IngestError::Heic),
        (Sniffed::Unknown, Declared::Heif) => Err(IngestError::Heic),
        (Sniffed::Unknown, _) => Err(IngestError::UnsupportedType(
            "the bytes are not a JPEG, PNG or DICOM Part 10 file".to_owned(),
        )),
        (Sniffed::Media(actual), Declared::Media(claimed)) if actual != claimed => {
            Err(IngestError::TypeMismatch {
                sniffed: actual.as_str(),
                declared: claimed.as_str(),
            })
        }
        (Sniffed::Media(actual), Declared::Heif) => Err(IngestError::TypeMismatch {
            sniffed: actual.as_str(),
            declared: "image/heic",
        }),
        (Sniffed::Media(actual), _) => Ok(actual),
    }
}

/// A client's file name, reduced to its last path component and bounded.
fn check_filename(raw: String) -> Result<String, IngestError> {
    let name = raw
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    if name.is_empty() || name == "." || name == ".." {
        return Err(IngestError::InvalidFilename(
            "filename must name a file".to_owned(),
        ));
    }
    if name.chars().count() > 255 {
        return Err(IngestError::InvalidFilename(
            "filename must be at most 255 characters".to_owned(),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(IngestError::InvalidFilename(
            "filename must not contain control characters".to_owned(),
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_parse_with_parameters() {
        assert_eq!(
            Declared::from_content_type("image/JPEG; q=1").ok(),
            Some(Declared::Media(MediaType::Jpeg))
        );
        assert_eq!(
            Declared::from_content_type("image/heic").ok(),
            Some(Declared::Heif)
        );
        assert!(Declared::from_content_type("text/plain").is_err());
    }

    #[test]
    fn bytes_decide_and_a_contradiction_is_refused() {
        let jpeg = Sniffed::Media(MediaType::Jpeg);
        assert_eq!(
            media_type(jpeg, Declared::Unspecified).ok(),
            Some(MediaType::Jpeg)
        );
        assert!(matches!(
            media_type(jpeg, Declared::Media(MediaType::Png)),
            Err(IngestError::TypeMismatch { .. })
        ));
        assert!(matches!(
            media_type(Sniffed::Heif, Declared::Media(MediaType::Jpeg)),
            Err(IngestError::Heic)
        ));
        assert!(matches!(
            media_type(Sniffed::Unknown, Declared::Media(MediaType::Dicom)),
            Err(IngestError::UnsupportedType(_))
        ));
    }

    #[test]
    fn filenames_lose_their_paths_and_keep_their_bounds() {
        assert_eq!(
            check_filename("C:\\scans\\ct 1.dcm".into()).ok().as_deref(),
            Some("ct 1.dcm")
        );
        assert_eq!(
            check_filename("../../etc/passwd".into()).ok().as_deref(),
            Some("passwd")
        );
        assert!(check_filename("dir/".into()).is_err());
        assert!(check_filename("a\nb.jpg".into()).is_err());
        assert!(check_filename("x".repeat(256)).is_err());
    }
}
