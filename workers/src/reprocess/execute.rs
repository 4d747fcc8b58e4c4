//! Runs a recorded run of any kind to its end (or until stopped): the one
//! place that knows which walk and which work each kind is, shared by
//! `relay reprocess` at the command line and the `reprocess` job on the
//! queue.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::migrate::{Target, migrate_one};
use super::rederive::rederive_one;
use super::sweep::{sweep_one, sweep_spool};
use super::verify::verify_one;
use super::{DEFAULT_SWEEP_GRACE, Progress, RunKind, RunRecord, walk};
use crate::blob::{BlobError, BlobStore, StoreCache};
use crate::catalog::{Catalog, CatalogError};
use crate::derive::DERIVE_VERSION;
use crate::model::{Sha256, Timestamp};

/// A `migrate` run walks again what arrived meanwhile, until a pass moves
/// nothing; at most this many passes.
const MAX_MIGRATE_PASSES: u32 = 10;

/// The run cannot be carried out.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("relay reprocess migrate needs --to, the URL of the store to move blobs to")]
    NoTarget,
    #[error("cannot open the store {url}: {source}")]
    Store {
        url: String,
        #[source]
        source: BlobError,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl RunError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            RunError::Catalog(e) => e.is_transient(),
            RunError::Store { source, .. } => source.is_transient(),
            RunError::NoTarget => false,
        }
    }
}

/// How many items the run will have visited when it finishes (for
/// progress): what is left plus what is done.
pub async fn planned_total(
    catalog: &dyn Catalog,
    blobs: &dyn BlobStore,
    run: &RunRecord,
) -> Result<u64, RunError> {
    let filter = run.options.filter.clone().unwrap_or_default();
    match run.kind {
        RunKind::Verify => Ok(catalog.count_blobs(&filter).await?),
        // Images already redone drop out of the stale count.
        RunKind::Rederive => {
            Ok(catalog.count_images(&filter, stale_before(run)).await? + run.counts.scanned)
        }
        RunKind::Migrate => {
            let target = target_url(run)?;
            let id = catalog.register_store(&target).await?;
            Ok(catalog.count_not_on(&filter, id).await? + run.counts.scanned)
        }
        // The store, not the catalog, is walked: the catalog's count is a
        // fair estimate.
        RunKind::Sweep => {
            let _ = blobs;
            Ok(catalog.count_blobs(&Default::default()).await?)
        }
    }
}

fn stale_before(run: &RunRecord) -> Option<u32> {
    (!run.options.all).then_some(DERIVE_VERSION)
}

fn target_url(run: &RunRecord) -> Result<String, RunError> {
    let to = run.options.to.as_deref().ok_or(RunError::NoTarget)?;
    crate::blob::canonical_url(to).map_err(|source| RunError::Store {
        url: to.to_owned(),
        source,
    })
}

async fn open(stores: &StoreCache, url: &str) -> Result<Arc<dyn BlobStore>, RunError> {
    stores.get(url).await.map_err(|source| RunError::Store {
        url: url.to_owned(),
        source,
    })
}

/// Walks `run` from its cursor until it is finished or `stop` is cancelled.
/// `blobs` is the process's configured store (reading through to blobs
/// recorded elsewhere).
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
    let stores = Arc::new(StoreCache::new(blobs.spool_dir()));
    stores.insert(blobs.url(), blobs.clone()).await;
    let walked = match run.kind {
        RunKind::Verify => {
            let repair = match &run.options.repair_from {
                Some(url) => Some(open(&stores, url).await?),
                None => None,
            };
            walk(
                catalog.clone(),
                run,
                |after, limit| {
                    let catalog = catalog.clone();
                    let filter = filter.clone();
                    async move { Ok(catalog.blob_batch(&after, limit, &filter).await?) }
                },
                |entry| {
                    let catalog = catalog.clone();
                    let blobs = blobs.clone();
                    let repair = repair.clone();
                    let run_id = run_id.clone();
                    async move {
                        let repair = repair.as_deref();
                        verify_one(
                            catalog.as_ref(),
                            blobs.as_ref(),
                            repair,
                            &run_id,
                            entry,
                            dry_run,
                        )
                        .await
                    }
                },
                &on_progress,
                stop.clone(),
            )
            .await?
        }
        RunKind::Rederive => {
            let stale = stale_before(&run);
            walk(
                catalog.clone(),
                run,
                |after, limit| {
                    let catalog = catalog.clone();
                    let filter = filter.clone();
                    async move { Ok(catalog.image_batch(&after, limit, &filter, stale).await?) }
                },
                |entry| {
                    let catalog = catalog.clone();
                    async move { rederive_one(catalog.as_ref(), entry, dry_run).await }
                },
                &on_progress,
                stop.clone(),
            )
            .await?
        }
        RunKind::Migrate => migrate(catalog.clone(), stores, run, &on_progress, &stop).await?,
        RunKind::Sweep => {
            let grace = run
                .options
                .grace_secs
                .map_or(DEFAULT_SWEEP_GRACE, Duration::from_secs);
            let older_than = Timestamp::from_millis(
                Timestamp::now()
                    .as_millis()
                    .saturating_sub(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX)),
            );
            let home = catalog.register_store(&blobs.url()).await?;
            let spooled = sweep_spool(blobs.spool_dir(), grace, dry_run);
            if spooled > 0 {
                tracing::info!(
                    files = spooled,
                    dry_run,
                    "sweep: stale upload spool files removed"
                );
            }
            walk(
                catalog.clone(),
                run,
                |after, limit| {
                    let blobs = blobs.clone();
                    async move {
                        let after = after.parse::<Sha256>().ok();
                        blobs
                            .list(after, limit as usize)
                            .await
                            .map_err(|source| RunError::Store {
                                url: blobs.url(),
                                source,
                            })
                    }
                },
                |listed| {
                    let catalog = catalog.clone();
                    let blobs = blobs.clone();
                    async move {
                        sweep_one(
                            catalog.as_ref(),
                            blobs.as_ref(),
                            home,
                            listed,
                            older_than,
                            dry_run,
                        )
                        .await
                    }
                },
                &on_progress,
                stop.clone(),
            )
            .await?
        }
    };
    if stop.is_cancelled() {
        return Ok(walked);
    }
    Ok(catalog.finish_run(&walked.id).await?)
}

/// Walks the blobs not yet on the target, then again those that arrived
/// meanwhile (uploads taken by servers still writing to the source), until
/// a pass moves nothing. A blob that failed is not tried again in the same
/// run.
async fn migrate(
    catalog: Arc<dyn Catalog>,
    stores: Arc<StoreCache>,
    mut run: RunRecord,
    on_progress: &impl Fn(Progress),
    stop: &CancellationToken,
) -> Result<RunRecord, RunError> {
    let url = target_url(&run)?;
    let target = Arc::new(Target {
        id: catalog.register_store(&url).await?,
        store: open(&stores, &url).await?,
        url,
    });
    let filter = run.options.filter.clone().unwrap_or_default();
    let (dry_run, delete_source) = (run.options.dry_run, run.options.delete_source);
    let failed: Arc<Mutex<HashSet<Sha256>>> = Arc::default();
    for pass in 1..=MAX_MIGRATE_PASSES {
        let before = run.counts;
        run = walk(
            catalog.clone(),
            run,
            |after, limit| {
                let catalog = catalog.clone();
                let filter = filter.clone();
                let failed = failed.clone();
                let target = target.id;
                async move {
                    let mut after = after;
                    loop {
                        let batch = catalog
                            .placement_batch(&after, limit, &filter, target)
                            .await?;
                        let Some(last) = batch.last().map(|b| b.sha256.to_hex()) else {
                            return Ok(batch);
                        };
                        let failed = failed.lock().unwrap_or_else(PoisonError::into_inner);
                        let fresh: Vec<_> = batch
                            .into_iter()
                            .filter(|b| !failed.contains(&b.sha256))
                            .collect();
                        if !fresh.is_empty() {
                            return Ok(fresh);
                        }
                        after = last;
                    }
                }
            },
            |blob| {
                let catalog = catalog.clone();
                let stores = stores.clone();
                let target = target.clone();
                let failed = failed.clone();
                async move {
                    let key = blob.sha256;
                    let outcome = migrate_one(
                        catalog.as_ref(),
                        &stores,
                        &target,
                        blob,
                        delete_source,
                        dry_run,
                    )
                    .await;
                    if matches!(outcome, super::ItemOutcome::Failed(_)) {
                        failed
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(key);
                    }
                    outcome
                }
            },
            on_progress,
            stop.clone(),
        )
        .await?;
        let moved = run.counts.fixed - before.fixed;
        if stop.is_cancelled() || dry_run || moved == 0 {
            break;
        }
        tracing::info!(run.id = %run.id, pass, moved, "migrate: looking again for blobs stored meanwhile");
        catalog.restart_walk(&run.id).await?;
        run = catalog.get_run(&run.id).await?;
    }
    if delete_source && !dry_run && !stop.is_cancelled() {
        remove_leftovers(catalog.as_ref(), &stores, &target).await;
    }
    Ok(run)
}

/// A run stopped between recording a blob on the target and removing its
/// old copy (a kill, a crash) leaves that copy behind, and the resumed walk
/// never sees the blob again. So a `--delete-source` run ends by listing
/// the other stores and removing each copy whose blob is recorded on, and
/// present in, the target.
async fn remove_leftovers(catalog: &dyn Catalog, stores: &StoreCache, target: &Target) {
    let Ok(known) = catalog.list_stores().await else {
        return;
    };
    for (_, url) in known.into_iter().filter(|(id, _)| *id != target.id) {
        let Ok(store) = stores.get(&url).await else {
            continue;
        };
        let mut after = None;
        let mut removed = 0u64;
        loop {
            let page = match store.list(after, 1000).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(store = %store.describe(), error = %e, "migrate: cannot list a source store");
                    break;
                }
            };
            let Some(last) = page.last().map(|l| l.key) else {
                break;
            };
            for listed in page {
                let here = catalog.blob_location(&listed.key).await.ok().flatten();
                let there = target.store.head(&listed.key).await.ok().flatten();
                if here.as_deref() == Some(target.url.as_str())
                    && there == Some(listed.size)
                    && store.delete(&listed.key).await.is_ok()
                {
                    removed += 1;
                }
            }
            after = Some(last);
        }
        if removed > 0 {
            tracing::info!(store = %store.describe(), removed, "migrate: removed copies a stopped run left behind");
        }
    }
}
