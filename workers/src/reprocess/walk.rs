//! The walk every run kind shares: blobs in key order (keyset pagination,
//! never OFFSET, so a batch costs the same at the end of ten million rows as
//! at the start), a bounded number at once, paced by the rate limit, with
//! the cursor and counts saved after every batch.

use std::future::Future;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::RunError;
use super::{Counts, Failure, RateLimiter, RunRecord};
use crate::catalog::Catalog;

/// What the work on one blob came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Nothing to do, or done.
    Ok,
    /// Something was wrong and was put right.
    Fixed,
    /// Something is wrong; the reason names it for the operator.
    Failed(String),
}

/// What a walk visits: a blob, an image. Keys order the walk and are the
/// cursor; the size paces a byte-rate limit.
pub trait Walkable {
    fn key(&self) -> String;
    fn size(&self) -> u64;
}

impl Walkable for super::BlobEntry {
    fn key(&self) -> String {
        self.sha256.to_hex()
    }
    fn size(&self) -> u64 {
        self.size
    }
}

impl Walkable for super::ImageEntry {
    fn key(&self) -> String {
        self.id.to_string()
    }
    fn size(&self) -> u64 {
        self.size
    }
}

/// Where a walk stands, for a progress bar or log line.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub counts: Counts,
}

/// Walks what `source` lists (a batch of items after a key) from the
/// run's cursor, calling `work` on each, until none are left or `stop` is
/// cancelled. Returns the run as recorded, still `running` either way: the
/// caller finishes it (or, for `migrate`, walks again what arrived
/// meanwhile).
pub async fn walk<T, S, SF, W, F>(
    catalog: Arc<dyn Catalog>,
    run: RunRecord,
    source: S,
    work: W,
    on_progress: impl Fn(Progress),
    stop: CancellationToken,
) -> Result<RunRecord, RunError>
where
    T: Walkable,
    S: Fn(String, u32) -> SF,
    SF: Future<Output = Result<Vec<T>, RunError>>,
    W: Fn(T) -> F,
    F: Future<Output = ItemOutcome>,
{
    let limiter = run.options.rate.map(RateLimiter::new);
    let concurrency = run.options.concurrency.max(1);
    let shard = run.options.shard;
    let start = shard.map(|s| s.bounds().0).unwrap_or_default();
    let mut cursor = run.cursor.clone().unwrap_or(start);
    let mut counts = run.counts;
    on_progress(Progress { counts });
    while !stop.is_cancelled() {
        let mut batch = source(cursor.clone(), run.options.batch.max(1)).await?;
        // A part of a split run ends where the next part begins.
        if let Some(shard) = shard {
            batch.retain(|item| shard.below_upper(&item.key()));
        }
        let Some(last) = batch.last().map(Walkable::key) else {
            break;
        };
        let limiter = limiter.as_ref();
        let work = &work;
        let outcomes: Vec<(String, u64, ItemOutcome)> = futures_util::stream::iter(batch)
            .map(|entry| async move {
                let (key, size) = (entry.key(), entry.size());
                if let Some(limiter) = limiter {
                    limiter.acquire(size).await;
                }
                (key, size, work(entry).await)
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut delta = Counts::default();
        let mut failures = Vec::new();
        for (key, size, outcome) in outcomes {
            delta.scanned += 1;
            delta.bytes += size;
            match outcome {
                ItemOutcome::Ok => delta.ok += 1,
                ItemOutcome::Fixed => delta.fixed += 1,
                ItemOutcome::Failed(reason) => {
                    delta.failed += 1;
                    failures.push(Failure { key, reason });
                }
            }
        }
        failures.sort_by(|a, b| a.key.cmp(&b.key));
        catalog
            .checkpoint_run(&run.id, &last, &delta, &failures)
            .await?;
        counts.add(&delta);
        cursor = last;
        on_progress(Progress { counts });
    }
    Ok(catalog.get_run(&run.id).await?)
}
