//! Undoing a put whose upload failed.
//!
//! A blob is made durable before its row is committed (blob first, row
//! second). When the put fails after its link, or the commit fails, the
//! client is told nothing was stored, so the bytes must not stay visible
//! in the store either: they are removed here, under the blob's catalog
//! lock, and only while no row records them (another upload of the same
//! bytes may have committed in between; then they are its bytes and stay;
//! one still in flight puts them again after its commit, as after a sweep:
//! [`crate::blob::keep_after_commit`]). If even that cannot be done (the
//! catalog is down), the orphan waits for `sweep`.

use crate::blob::BlobStore;
use crate::catalog::{BlobStanding, Catalog};
use crate::model::Sha256;

/// Removes the blob `key`, unless a row records it.
pub async fn remove_uncommitted(catalog: &dyn Catalog, blobs: &dyn BlobStore, key: Sha256) {
    let guard = match catalog.lock_blob(&key).await {
        Ok(guard) => guard,
        Err(e) => {
            tracing::warn!(blob = %key, error = ?e, "an uncommitted blob stays until sweep removes it");
            return;
        }
    };
    if guard.standing() == BlobStanding::Unrecorded
        && let Err(e) = blobs.delete(&key).await
    {
        tracing::warn!(blob = %key, error = ?e, "an uncommitted blob stays until sweep removes it");
    }
    if let Err(e) = guard.release().await {
        tracing::warn!(blob = %key, error = %e, "releasing the blob lock failed");
    }
}
