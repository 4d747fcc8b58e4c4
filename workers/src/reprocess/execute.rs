//! Runs a recorded run of any kind to its end (or until stopped): the one
//! place that knows which walk and which work each kind is, shared by
//! `relay reprocess` at the command line and the `reprocess` job on the
//! queue.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::rederive::rederive_one;
use super::verify::verify_one;
use super::{Progress, RunKind, RunRecord, walk};
use crate::blob::BlobStore;
use crate::catalog::{Catalog, CatalogError};
use crate::derive::DERIVE_VERSION;

/// The run cannot be carried out.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("relay reprocess {0} is not available yet; verify and rederive are")]
    NotYetAvailable(&'static str),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// How many items the run will have visited when it finishes (for
/// progress): what is left plus what is done.
pub async fn planned_total(catalog: &dyn Catalog, run: &RunRecord) -> Result<u64, RunError> {
    let filter = run.options.filter.clone().unwrap_or_default();
    match run.kind {
        RunKind::Verify => Ok(catalog.count_blobs(&filter).await?),
        // Images already redone drop out of the stale count.
        RunKind::Rederive => {
            Ok(catalog.count_images(&filter, stale_before(run)).await? + run.counts.scanned)
        }
        other => Err(RunError::NotYetAvailable(other.as_str())),
    }
}

fn stale_before(run: &RunRecord) -> Option<u32> {
    (!run.options.all).then_some(DERIVE_VERSION)
}

/// Walks `run` from its cursor until it is finished or `stop` is cancelled.
pub async fn execute(
    catalog: Arc<dyn Catalog>,
    blobs: Arc<dyn BlobStore>,
    run: RunRecord,
    on_progress: impl Fn(Progress),
    stop: CancellationToken,
) -> Result<RunRecord, RunError> {
    let filter = run.options.filter.clone().unwrap_or_default();
    let dry_run = run.options.dry_run;
    let run_id = run.id.clone();
    match run.kind {
        RunKind::Verify => Ok(walk(
            catalog.clone(),
            run,
            |after, limit| {
                let catalog = catalog.clone();
                let filter = filter.clone();
                async move { catalog.blob_batch(&after, limit, &filter).await }
            },
            |entry| {
                let catalog = catalog.clone();
                let blobs = blobs.clone();
                let run_id = run_id.clone();
                async move {
                    verify_one(catalog.as_ref(), blobs.as_ref(), &run_id, entry, dry_run).await
                }
            },
            on_progress,
            stop,
        )
        .await?),
        RunKind::Rederive => {
            let stale = stale_before(&run);
            Ok(walk(
                catalog.clone(),
                run,
                |after, limit| {
                    let catalog = catalog.clone();
                    let filter = filter.clone();
                    async move { catalog.image_batch(&after, limit, &filter, stale).await }
                },
                |entry| {
                    let catalog = catalog.clone();
                    async move { rederive_one(catalog.as_ref(), entry, dry_run).await }
                },
                on_progress,
                stop,
            )
            .await?)
        }
        other => Err(RunError::NotYetAvailable(other.as_str())),
    }
}
