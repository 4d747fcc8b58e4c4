//! `rederive`: derive again the images whose renditions are missing or were
//! made by an older derive version (every image with `--all`). Each is
//! marked `pending` and its `derive` job queued, so the work runs on the job
//! queue, shared by every `relay worker`; the replaced renditions become
//! unreferenced blobs for `sweep`.

use crate::catalog::Catalog;

use super::{ImageEntry, ItemOutcome};

/// Queues derive for one image (in a dry run, only counts it).
pub async fn rederive_one(catalog: &dyn Catalog, entry: ImageEntry, dry_run: bool) -> ItemOutcome {
    if dry_run {
        return ItemOutcome::Ok;
    }
    match catalog.requeue_derive(entry.id).await {
        Ok(true) => ItemOutcome::Fixed,
        // Queued meanwhile by someone else: nothing left to do.
        Ok(false) => ItemOutcome::Ok,
        Err(e) => ItemOutcome::Failed(format!("could not queue derive: {e}")),
    }
}
