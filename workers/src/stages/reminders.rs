//! The reminder sweep: on an interval, every process that runs stages asks
//! the catalog for reminders and escalations now due. The catalog claims
//! each one with a conditional update, so however many processes sweep, a
//! notice is sent once; the notices then travel as ordinary jobs.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::model::ReminderPolicy;

/// Sweeps every `interval` until `stop` is cancelled. A failed sweep (the
/// database away) is logged and tried again at the next tick.
pub async fn run_reminders(
    catalog: Arc<dyn Catalog>,
    policy: ReminderPolicy,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match catalog.sweep_reminders(&policy).await {
            Ok(sweep) if sweep.is_empty() => {}
            Ok(sweep) => tracing::info!(
                reminded = sweep.renotified.len(),
                overdue = sweep.overdue.len(),
                escalated = sweep.escalated.len(),
                "reminders queued"
            ),
            Err(error) => {
                tracing::warn!(%error, "reminder sweep failed; trying again next interval")
            }
        }
    }
}
