//! The reprocess stage: a run started over the admin API is carried out by
//! whichever worker claims its job. The run's cursor is saved after every
//! batch, so when that worker dies, the job's lease runs out and another
//! worker resumes the run where it stopped.

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::StageDeps;
use crate::queue::{Job, JobError};
use crate::reprocess::{RunError, RunState, execute};

/// Carry out one recorded run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReprocessJob {
    pub run_id: String,
}

impl Job for ReprocessJob {
    const KIND: &'static str = "reprocess";
    const MAX_ATTEMPTS: u32 = 10;
}

pub async fn reprocess(deps: &StageDeps, job: ReprocessJob) -> Result<(), JobError> {
    let run = deps
        .catalog
        .get_run(&job.run_id)
        .await
        .map_err(|e| JobError::Retryable(e.to_string()))?;
    if run.state == RunState::Finished {
        return Ok(());
    }
    let finished = execute(
        deps.catalog.clone(),
        deps.blobs.clone(),
        run,
        |_| {},
        CancellationToken::new(),
    )
    .await
    .map_err(|e: RunError| match e.is_transient() {
        true => JobError::Retryable(e.to_string()),
        false => JobError::Fatal(e.to_string()),
    })?;
    tracing::info!(
        run.id = %finished.id,
        kind = finished.kind.as_str(),
        scanned = finished.counts.scanned,
        failed = finished.counts.failed,
        "reprocess run finished"
    );
    Ok(())
}
