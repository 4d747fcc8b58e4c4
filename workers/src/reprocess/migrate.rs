//! `migrate`: move every blob to another store without stopping service.
//!
//! For each blob not yet recorded on the target: copy it there (read from
//! where its row says it is, digest checked on the way), read it back from
//! the target and check it again, and only then record it there. With
//! `--delete-source`, the old copy is removed after that record is
//! committed, never before: a blob always has a verified copy where its row
//! points. Reads meanwhile fall back from the configured store to the
//! recorded one ([`crate::blob::PlacedBlobStore`]), so `relay serve` keeps
//! serving throughout; uploads it takes meanwhile land in its configured
//! store and are moved by the run's next pass.

use std::sync::Arc;

use crate::blob::{BlobError, BlobStore, Persisted, StoreCache, spool_verified};
use crate::catalog::{Catalog, PlacedBlob, StoreId};

use super::ItemOutcome;

/// The target of a migration, opened once for the whole run.
#[derive(Debug)]
pub struct Target {
    pub id: StoreId,
    pub url: String,
    pub store: Arc<dyn BlobStore>,
}

/// Moves one blob to `target`.
pub async fn migrate_one(
    catalog: &dyn Catalog,
    stores: &StoreCache,
    target: &Target,
    blob: PlacedBlob,
    delete_source: bool,
    dry_run: bool,
) -> ItemOutcome {
    if dry_run {
        return ItemOutcome::Ok;
    }
    let source = match stores.get(&blob.store_url).await {
        Ok(store) => store,
        Err(e) => return ItemOutcome::Failed(format!("cannot open {}: {e}", blob.store_url)),
    };
    if let Err(reason) = copy(source.as_ref(), target, &blob).await {
        return ItemOutcome::Failed(reason);
    }
    match catalog.move_blob(&blob.sha256, blob.store, target.id).await {
        Ok(true) => {}
        // Swept or moved by someone else meanwhile: nothing of ours to undo
        // (a copy in the target is a harmless replica, or swept later).
        Ok(false) => return ItemOutcome::Ok,
        Err(e) => return ItemOutcome::Failed(format!("copied, but not recorded: {e}")),
    }
    if delete_source {
        match source.delete(&blob.sha256).await {
            Ok(_) => {}
            Err(e) => {
                // The blob is safe on the target; the old copy is only space.
                tracing::warn!(blob = %blob.sha256, error = %e, "migrate: could not remove the source copy");
            }
        }
    }
    ItemOutcome::Fixed
}

/// Puts a verified copy of `blob` in the target and proves it is there.
async fn copy(source: &dyn BlobStore, target: &Target, blob: &PlacedBlob) -> Result<(), String> {
    let (key, size) = (blob.sha256, blob.size);
    let spooled = spool_verified(source, &key, size, target.store.spool_dir())
        .await
        .map_err(|e| match e {
            BlobError::Missing(_) => "missing from its store".to_owned(),
            BlobError::Integrity(e) => format!("corrupt in its store: {e}"),
            other => format!("cannot read it: {other}"),
        })?;
    let persisted = target
        .store
        .put(key, &spooled)
        .await
        .map_err(|e| format!("cannot write it to the target: {e}"))?;
    drop(spooled);
    // Read back: a copy that was already there is proven like a new one.
    target.store.verify(&key, size).await.map_err(|e| {
        let was = match persisted {
            Persisted::Created => "copied",
            Persisted::AlreadyPresent => "already there",
        };
        format!("{was} but does not verify on the target: {e}")
    })
}
