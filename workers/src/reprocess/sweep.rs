//! `sweep`: remove what the store holds that nothing refers to.
//!
//! The walk lists the store itself (not the catalog), so it finds bytes no
//! row knows of (an upload that crashed between its put and its commit) as
//! well as blobs whose rows nothing refers to any more (renditions replaced
//! by `rederive`). A blob younger than the grace period is never touched:
//! it may belong to an upload not yet committed.
//!
//! Each removal happens under the blob's catalog lock
//! ([`crate::catalog::Placement::lock_blob`]), which every upload and
//! rendition of the same bytes also takes to commit: either that commit
//! comes first and the sweep sees the reference and keeps the blob, or the
//! sweep's delete comes first and the upload, finding the bytes gone after
//! its commit, puts them again ([`crate::blob::keep_after_commit`]).

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::blob::{BlobStore, Listed};
use crate::catalog::{BlobStanding, Catalog, StoreId};
use crate::model::Timestamp;

use super::ItemOutcome;

/// Sweeps one listed blob of the store recorded as `store`.
pub async fn sweep_one(
    catalog: &dyn Catalog,
    blobs: &dyn BlobStore,
    store: StoreId,
    listed: Listed,
    older_than: Timestamp,
    dry_run: bool,
) -> ItemOutcome {
    if listed.modified >= older_than {
        return ItemOutcome::Ok;
    }
    let guard = match catalog.lock_blob(&listed.key).await {
        Ok(guard) => guard,
        Err(e) => return ItemOutcome::Failed(format!("cannot lock its row: {e}")),
    };
    let standing = guard.standing();
    let (removable, forget_row) = match standing {
        BlobStanding::Unrecorded => (true, false),
        BlobStanding::Unreferenced { store: recorded } => (true, recorded == store),
        // A copy here of a blob recorded elsewhere is a replica (a
        // migration's source, a repair source): kept.
        BlobStanding::Referenced { .. } => (false, false),
    };
    if !removable || dry_run {
        if removable {
            tracing::info!(blob = %listed.key, size = listed.size, "sweep (dry run): would remove");
        }
        return match guard.release().await {
            Ok(()) if removable => ItemOutcome::Fixed,
            Ok(()) => ItemOutcome::Ok,
            Err(e) => ItemOutcome::Failed(format!("cannot release its row: {e}")),
        };
    }
    if let Err(e) = blobs.delete(&listed.key).await {
        let _ = guard.release().await;
        return ItemOutcome::Failed(format!("cannot remove it: {e}"));
    }
    let done = if forget_row {
        guard.forget().await
    } else {
        guard.release().await
    };
    match done {
        Ok(()) => {
            tracing::info!(blob = %listed.key, size = listed.size, "sweep: removed");
            ItemOutcome::Fixed
        }
        // The bytes are gone and the row stays: an unreferenced row without
        // bytes, which the next sweep of the row's store cannot see but
        // nothing reads either.
        Err(e) => ItemOutcome::Failed(format!("removed, but its row stays: {e}")),
    }
}

/// Removes spool files older than `grace` (uploads that never finished);
/// returns how many. Younger ones may belong to uploads in progress.
pub fn sweep_spool(dir: &Path, grace: Duration, dry_run: bool) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let cutoff = SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified < cutoff)
        })
        .filter(|e| dry_run || std::fs::remove_file(e.path()).is_ok())
        .count()
}
