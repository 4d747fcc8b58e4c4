//! `verify`: every blob re-hashed against its key and checked against its
//! recorded size. A missing or corrupt blob is a security event in the
//! audit trail, and a failure of the run unless a good replica in a second
//! store (`--repair-from`) is copied back over it; a store that cannot be
//! reached is a failure of the run only (nothing is known about the blob).

use crate::blob::{BlobError, BlobStore, spool_verified, verify_blob};
use crate::catalog::Catalog;

use super::{BlobEntry, ItemOutcome};

/// Verifies one blob, repairing it from `repair` when that store holds a
/// good copy. In a dry run nothing is read: the run lists what it would
/// verify.
pub async fn verify_one(
    catalog: &dyn Catalog,
    blobs: &dyn BlobStore,
    repair: Option<&dyn BlobStore>,
    run_id: &str,
    entry: BlobEntry,
    dry_run: bool,
) -> ItemOutcome {
    if dry_run {
        return ItemOutcome::Ok;
    }
    let problem = match blobs.head(&entry.sha256).await {
        Ok(None) => Some("missing from the store".to_owned()),
        Ok(Some(size)) if size != entry.size => Some(format!(
            "corrupt: {size} bytes where {} were stored",
            entry.size
        )),
        Ok(Some(_)) => match verify_blob(blobs, &entry.sha256, entry.size).await {
            Ok(()) => None,
            Err(BlobError::Missing(_)) => Some("missing from the store".to_owned()),
            Err(BlobError::Integrity(e)) => Some(format!("corrupt: {e}")),
            Err(e) => return ItemOutcome::Failed(format!("unreadable: {e}")),
        },
        Err(e) => return ItemOutcome::Failed(format!("unreadable: {e}")),
    };
    let Some(reason) = problem else {
        return ItemOutcome::Ok;
    };
    if let Err(e) = catalog
        .record_blob_problem(run_id, &entry.sha256, &reason)
        .await
    {
        tracing::error!(blob = %entry.sha256, error = %e, "could not audit a damaged blob");
    }
    tracing::warn!(blob = %entry.sha256, %reason, "verify: damaged blob");
    let Some(replicas) = repair else {
        return ItemOutcome::Failed(reason);
    };
    match repair_one(blobs, replicas, entry).await {
        Ok(()) => {
            tracing::info!(blob = %entry.sha256, "verify: repaired from a replica");
            ItemOutcome::Fixed
        }
        Err(why) => ItemOutcome::Failed(format!("{reason}; not repaired: {why}")),
    }
}

/// Replaces a damaged blob with a verified copy from `replicas`, and proves
/// the result.
async fn repair_one(
    blobs: &dyn BlobStore,
    replicas: &dyn BlobStore,
    entry: BlobEntry,
) -> Result<(), String> {
    let (key, size) = (entry.sha256, entry.size);
    let good = spool_verified(replicas, &key, size, blobs.spool_dir())
        .await
        .map_err(|e| match e {
            BlobError::Missing(_) => "the replica store lacks it too".to_owned(),
            BlobError::Integrity(e) => format!("the replica is damaged too: {e}"),
            other => format!("cannot read the replica: {other}"),
        })?;
    // A store never overwrites a key: the damaged copy goes first.
    blobs
        .delete(&key)
        .await
        .map_err(|e| format!("cannot remove the damaged copy: {e}"))?;
    blobs
        .put(key, &good)
        .await
        .map_err(|e| format!("cannot write the replica back: {e}"))?;
    blobs
        .verify(&key, size)
        .await
        .map_err(|e| format!("the repaired copy does not verify: {e}"))
}
