//! The derive stage: what a viewer sees, made from the stored original.
//!
//! The original is copied out of the blob store through its digest check,
//! rendered on the blocking pool, and each rendition is stored as a blob
//! like any other and recorded against the image with the derive version.
//! Re-running is harmless: the same original gives the same renditions,
//! stored once by content address, and the records are replaced.

use std::io::Write;

use serde::{Deserialize, Serialize};

use super::StageDeps;
use crate::blob::{BlobError, Persisted, keep_after_commit, spool_verified};
use crate::catalog::CatalogError;
use crate::derive::dicom::{derive_dicom, render_frame};
use crate::derive::photo::derive_photo;
use crate::derive::{DERIVE_VERSION, DeriveError, DeriveLimits, PREVIEW_SIDE, Rendition};
use crate::model::{
    Derivative, DeriveResult, DeriveState, Image, ImageId, MediaType, Sha256, Timestamp,
};
use crate::queue::{Job, JobError};

/// Make the renditions and metadata of one image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeriveJob {
    pub image_id: ImageId,
}

impl Job for DeriveJob {
    const KIND: &'static str = "derive";
}

/// Why a rendition could not be had.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Derive(#[from] DeriveError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("rendering stopped unexpectedly: {0}")]
    Worker(String),
}

impl From<RenderError> for JobError {
    /// A store that is down, full or unreachable (an S3 endpoint that does
    /// not answer) may be back by the next attempt; an original that fails
    /// its digest or a file that cannot be rendered will not be.
    fn from(error: RenderError) -> Self {
        match &error {
            RenderError::Catalog(e) if e.is_transient() => JobError::Retryable(error.to_string()),
            RenderError::Blob(e) if e.is_transient() => JobError::Retryable(error.to_string()),
            RenderError::Worker(_) => JobError::Retryable(error.to_string()),
            _ => JobError::Fatal(error.to_string()),
        }
    }
}

/// Runs one derive job.
pub async fn derive(deps: &StageDeps, job: DeriveJob) -> Result<(), JobError> {
    let image = deps
        .catalog
        .image_for_job(job.image_id)
        .await
        .map_err(|e| JobError::from(RenderError::from(e)))?;
    match render_all(deps, &image).await {
        Ok((result, spooled)) => {
            deps.catalog
                .record_derive(image.id, &result)
                .await
                .map_err(|e| JobError::from(RenderError::from(e)))?;
            for kept in &spooled {
                kept.keep(deps)
                    .await
                    .map_err(|e| JobError::from(RenderError::from(e)))?;
            }
            tracing::info!(image.id = %image.id, renditions = result.renditions.len(), "derived");
            Ok(())
        }
        Err(RenderError::Derive(error)) => {
            let state = if error.is_unsupported() {
                DeriveState::Unsupported
            } else {
                DeriveState::Failed
            };
            deps.catalog
                .record_derive_failure(image.id, state, &error.to_string(), DERIVE_VERSION)
                .await
                .map_err(|e| JobError::from(RenderError::from(e)))?;
            tracing::warn!(image.id = %image.id, state = state.as_str(), %error, "cannot derive");
            // Unsupported is a visible, final state: the job itself succeeded.
            match state {
                DeriveState::Unsupported => Ok(()),
                _ => Err(JobError::Fatal(error.to_string())),
            }
        }
        Err(other) => Err(other.into()),
    }
}

async fn render_all(
    deps: &StageDeps,
    image: &Image,
) -> Result<(DeriveResult, Vec<Spooled>), RenderError> {
    let original = copy_verified(deps, image).await?;
    let media = image.media_type;
    let limits = DeriveLimits::default();
    let path = original.path().to_owned();
    let (attributes, frames, renditions) =
        tokio::task::spawn_blocking(move || -> Result<_, DeriveError> {
            match media {
                MediaType::Dicom => {
                    let d = derive_dicom(&path, &limits)?;
                    Ok((d.attributes, d.frames, vec![d.thumbnail, d.preview]))
                }
                MediaType::Jpeg | MediaType::Png => {
                    let bytes = std::fs::read(&path).map_err(|e| {
                        DeriveError::Invalid(format!("cannot read the original: {e}"))
                    })?;
                    let p = derive_photo(&bytes, &limits)?;
                    Ok((p.metadata, 1, vec![p.thumbnail, p.preview]))
                }
            }
        })
        .await
        .map_err(|e| RenderError::Worker(e.to_string()))??;
    let mut stored = Vec::with_capacity(renditions.len());
    let mut spooled = Vec::with_capacity(renditions.len());
    for rendition in renditions {
        let (derivative, kept) = store(deps, image.id, &rendition, 0, "").await?;
        stored.push(derivative);
        spooled.push(kept);
    }
    let result = DeriveResult {
        version: DERIVE_VERSION,
        attributes,
        frames,
        renditions: stored,
    };
    Ok((result, spooled))
}

/// A DICOM frame with a requested (or the default) window: made on first
/// request from the stored original, then kept as a derivative.
pub async fn rendered_frame(
    deps: &StageDeps,
    image: &Image,
    frame: u32,
    window: Option<(f64, f64)>,
) -> Result<Derivative, RenderError> {
    let voi = window.map(|(c, w)| format!("{c},{w}")).unwrap_or_default();
    if let Some(existing) = deps
        .catalog
        .rendition(image.id, "frame", frame, &voi)
        .await?
        && existing.derive_version == DERIVE_VERSION
    {
        return Ok(existing);
    }
    if image.media_type != MediaType::Dicom {
        return Err(DeriveError::Invalid("only DICOM images have frames".to_owned()).into());
    }
    let original = copy_verified(deps, image).await?;
    let path = original.path().to_owned();
    let limits = DeriveLimits::default();
    let rendition = tokio::task::spawn_blocking(move || {
        render_frame(&path, frame, window, PREVIEW_SIDE, &limits)
    })
    .await
    .map_err(|e| RenderError::Worker(e.to_string()))??;
    let (derivative, kept) = store(deps, image.id, &rendition, frame, &voi).await?;
    deps.catalog.record_rendition(&derivative).await?;
    kept.keep(deps).await?;
    Ok(derivative)
}

/// Copies the original into a spool file, proving its digest on the way.
async fn copy_verified(
    deps: &StageDeps,
    image: &Image,
) -> Result<tempfile::NamedTempFile, RenderError> {
    let spool = deps.blobs.spool_dir();
    Ok(spool_verified(
        deps.blobs.as_ref(),
        &image.stored_sha256,
        image.stored_size,
        spool,
    )
    .await?)
}

/// A stored rendition's spool file, kept until its row is committed.
struct Spooled {
    sha256: Sha256,
    file: tempfile::NamedTempFile,
    persisted: Persisted,
}

impl Spooled {
    /// Puts the bytes again should a sweep have removed an existing copy
    /// before the rendition's row referred to it.
    async fn keep(&self, deps: &StageDeps) -> Result<(), BlobError> {
        keep_after_commit(deps.blobs.as_ref(), self.sha256, &self.file, self.persisted).await
    }
}

/// Stores a rendition as a blob and describes it.
async fn store(
    deps: &StageDeps,
    image: ImageId,
    rendition: &Rendition,
    frame: u32,
    voi: &str,
) -> Result<(Derivative, Spooled), RenderError> {
    let sha256 = Sha256::of(&rendition.bytes);
    let mut file =
        tempfile::NamedTempFile::new_in(deps.blobs.spool_dir()).map_err(BlobError::io)?;
    file.write_all(&rendition.bytes).map_err(BlobError::io)?;
    let persisted = deps.blobs.put(sha256, &file).await?;
    let spooled = Spooled {
        sha256,
        file,
        persisted,
    };
    let derivative = Derivative {
        image_id: image,
        kind: rendition.kind.as_str().to_owned(),
        frame,
        voi: voi.to_owned(),
        derive_version: DERIVE_VERSION,
        sha256,
        size: rendition.bytes.len() as u64,
        media_type: rendition.media_type.to_owned(),
        width: rendition.width,
        height: rendition.height,
        created_at: Timestamp::now(),
    };
    Ok((derivative, spooled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_store_is_retried_and_a_bad_blob_is_not() {
        let retried =
            |e: BlobError| matches!(JobError::from(RenderError::Blob(e)), JobError::Retryable(_));
        assert!(retried(BlobError::Unavailable(
            "the endpoint does not answer".into()
        )));
        assert!(retried(BlobError::Io(std::io::Error::other("reset"))));
        assert!(!retried(BlobError::Missing(Sha256::of(b"gone"))));
    }
}
