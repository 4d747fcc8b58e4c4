//! The job queue: background work kept in the catalog database.
//!
//! Jobs are inserted in the same transaction as the change that causes them
//! (an image and its `derive` job), so none is lost and none is a phantom.
//! Delivery is at least once: a worker claims a job with a lease (a time
//! from the *database* clock, so workers on skewed machines agree), extends
//! it by heartbeat while it runs, and completes or fails it. A job whose
//! lease runs out (its worker died) is claimed again. Failures back off
//! exponentially with jitter; after `max_attempts`, or at once for a fatal
//! error, the job is `dead` until an operator retries it.
//!
//! Architecture Invariant: one lease mechanism. Jobs use it now; the
//! specialist's claim on a case will use the same columns and clock.

mod backoff;
mod job;
mod record;
mod runner;

pub use backoff::{backoff, jitter};
pub use job::{Handler, Job, JobError, Registry, Typed};
pub use record::{ClaimedJob, JobFilter, JobRecord, JobState, KindStats};
pub use runner::{JobWaker, Outcome, Runner, RunnerConfig, RunnerStats};
