//! The background task that links new audit events into the hash chain.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::catalog::{AuditLog, CatalogError};

const BATCH: u32 = 500;

/// Seals everything pending now, in batches; returns how many were sealed.
pub async fn seal_all(log: &dyn AuditLog) -> Result<u64, CatalogError> {
    let mut total = 0u64;
    loop {
        let sealed = log.seal_pending(BATCH).await?;
        total += u64::from(sealed);
        if sealed < BATCH {
            return Ok(total);
        }
    }
}

/// Seals pending events every `interval` until `shutdown`, then once more so
/// a clean stop leaves nothing unsealed.
pub async fn run_sealer(log: Arc<dyn AuditLog>, interval: Duration, shutdown: CancellationToken) {
    loop {
        if let Err(error) = seal_all(log.as_ref()).await {
            tracing::warn!(error = %error, "audit sealing failed; will retry");
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
    if let Err(error) = seal_all(log.as_ref()).await {
        tracing::warn!(error = %error, "final audit sealing failed; events stay unsealed until the next start");
    }
}
