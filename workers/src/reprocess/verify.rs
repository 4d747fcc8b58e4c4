//! `verify`: every blob re-hashed against its key and checked against its
//! recorded size. A missing or corrupt blob is a failure of the run and a
//! security event in the audit trail; a store that cannot be reached is a
//! failure of the run only (nothing is known about the blob).

use crate::blob::{BlobError, BlobStore, verify_blob};
use crate::catalog::Catalog;

use super::{BlobEntry, ItemOutcome};

/// Verifies one blob. In a dry run nothing is read: the run lists what it
/// would verify.
pub async fn verify_one(
    catalog: &dyn Catalog,
    blobs: &dyn BlobStore,
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
    match problem {
        None => ItemOutcome::Ok,
        Some(reason) => {
            if let Err(e) = catalog
                .record_blob_problem(run_id, &entry.sha256, &reason)
                .await
            {
                tracing::error!(blob = %entry.sha256, error = %e, "could not audit a damaged blob");
            }
            tracing::warn!(blob = %entry.sha256, %reason, "verify: damaged blob");
            ItemOutcome::Failed(reason)
        }
    }
}
