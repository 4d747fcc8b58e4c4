//! A worker: claims jobs, runs their handlers, and records the outcome.
//!
//! Each handler runs in its own task, so a panic fails that job and not the
//! worker. While it runs, the lease is extended every third of its length;
//! if the worker finds it has lost the lease (it stalled past expiry and
//! another worker took the job), it abandons its run. On shutdown the worker
//! stops claiming, lets running jobs finish for a grace period, and releases
//! the rest so another worker picks them up at once.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{ClaimedJob, JobError, Registry, backoff, jitter};
use crate::catalog::{CatalogError, Queue};

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// This worker's name in `jobs.worker` (unique per process).
    pub worker: String,
    /// Jobs run at once.
    pub concurrency: usize,
    pub lease: Duration,
    /// How long to wait before looking again when the queue is empty.
    pub poll: Duration,
    /// How long running jobs may take to finish at shutdown.
    pub grace: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        let mut id = [0u8; 4];
        let _ = getrandom::fill(&mut id);
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "relay".to_owned());
        Self {
            worker: format!("{host}-{}-{}", std::process::id(), hex::encode(id)),
            concurrency: 2,
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(1),
            grace: Duration::from_secs(30),
        }
    }
}

/// What happened to one claimed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The queue had nothing ready.
    Idle,
    Done(i64),
    /// Failed this attempt; queued again after a backoff.
    Retrying(i64),
    /// Failed for good (fatal error, or no attempts left).
    Dead(i64),
    /// Another worker holds the job now; this run was abandoned.
    LostLease(i64),
}

/// Counts per job kind, for metrics: (done, failed attempts).
#[derive(Debug, Default)]
pub struct RunnerStats {
    by_kind: Mutex<BTreeMap<String, (u64, u64)>>,
}

impl RunnerStats {
    fn record(&self, kind: &str, failed: bool) {
        if let Ok(mut map) = self.by_kind.lock() {
            let entry = map.entry(kind.to_owned()).or_default();
            if failed {
                entry.1 += 1;
            } else {
                entry.0 += 1;
            }
        }
    }

    /// (kind, done, failed) for every kind seen.
    pub fn snapshot(&self) -> Vec<(String, u64, u64)> {
        self.by_kind
            .lock()
            .map(|m| m.iter().map(|(k, (d, f))| (k.clone(), *d, *f)).collect())
            .unwrap_or_default()
    }
}

/// A worker over a queue and a registry of handlers.
#[derive(Clone)]
pub struct Runner {
    queue: Arc<dyn Queue>,
    registry: Registry,
    config: RunnerConfig,
    stats: Arc<RunnerStats>,
    in_flight: Arc<Mutex<HashSet<i64>>>,
    wake: JobWaker,
}

/// Wakes an idle runner at once instead of at its next poll: the process
/// that queued a job (a signature's delivery, an upload's derive) knows
/// there is work. Runners in other processes still find it by polling.
#[derive(Debug, Clone, Default)]
pub struct JobWaker(Arc<tokio::sync::Notify>);

impl JobWaker {
    /// There is new work. A wake while the runner is busy is kept, so the
    /// runner looks again as soon as it is idle.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("registry", &self.registry)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Runner {
    pub fn new(queue: Arc<dyn Queue>, registry: Registry, config: RunnerConfig) -> Self {
        Self {
            queue,
            registry,
            config,
            stats: Arc::default(),
            in_flight: Arc::default(),
            wake: JobWaker::default(),
        }
    }

    /// A handle that wakes this runner when it is idle.
    pub fn waker(&self) -> JobWaker {
        self.wake.clone()
    }

    pub fn stats(&self) -> Arc<RunnerStats> {
        self.stats.clone()
    }

    pub fn config(&self) -> &RunnerConfig {
        &self.config
    }

    /// Claims and runs at most one job. Tests drain a queue with it.
    pub async fn run_once(&self) -> Result<Outcome, CatalogError> {
        let kinds = self.registry.kinds();
        let mut jobs = self
            .queue
            .claim(&kinds, &self.config.worker, self.config.lease, 1)
            .await?;
        match jobs.pop() {
            Some(job) => self.execute(job).await,
            None => Ok(Outcome::Idle),
        }
    }

    /// Runs until `shutdown`, then finishes or releases what is running.
    pub async fn run(self, shutdown: CancellationToken) {
        let kinds = self.registry.kinds();
        tracing::info!(worker = %self.config.worker, kinds = ?kinds, concurrency = self.config.concurrency, "worker started");
        let mut tasks = JoinSet::new();
        loop {
            while tasks.try_join_next().is_some() {}
            if shutdown.is_cancelled() {
                break;
            }
            let free = self.config.concurrency.saturating_sub(tasks.len());
            if free == 0 {
                tokio::select! {
                    _ = tasks.join_next() => {}
                    () = shutdown.cancelled() => break,
                }
                continue;
            }
            let limit = u32::try_from(free).unwrap_or(1);
            match self
                .queue
                .claim(&kinds, &self.config.worker, self.config.lease, limit)
                .await
            {
                Ok(jobs) if !jobs.is_empty() => {
                    for job in jobs {
                        let me = self.clone();
                        tasks.spawn(async move {
                            if let Err(error) = me.execute(job).await {
                                tracing::warn!(%error, "could not record a job's outcome; its lease will expire and it will run again");
                            }
                        });
                    }
                }
                Ok(_) => {
                    tokio::select! {
                        () = tokio::time::sleep(self.config.poll) => {}
                        () = self.wake.0.notified() => {}
                        () = shutdown.cancelled() => break,
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot claim jobs; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(self.config.poll) => {}
                        () = shutdown.cancelled() => break,
                    }
                }
            }
        }
        let finished = tokio::time::timeout(self.config.grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            let left: Vec<i64> = self
                .in_flight
                .lock()
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            for id in left {
                match self.queue.release(id, &self.config.worker).await {
                    Ok(_) => tracing::info!(job.id = id, "released at shutdown"),
                    Err(error) => {
                        tracing::warn!(job.id = id, %error, "cannot release; its lease will expire")
                    }
                }
            }
            tasks.abort_all();
        }
        tracing::info!(worker = %self.config.worker, "worker stopped");
    }

    async fn execute(&self, job: ClaimedJob) -> Result<Outcome, CatalogError> {
        let span = tracing::info_span!("job", job.id = job.id, job.kind = %job.kind, job.attempt = job.attempt);
        self.execute_in_span(job).instrument(span).await
    }

    async fn execute_in_span(&self, job: ClaimedJob) -> Result<Outcome, CatalogError> {
        let worker = self.config.worker.clone();
        let Some(handler) = self.registry.get(&job.kind) else {
            self.queue
                .fail(job.id, &worker, "no handler for this kind of job", None)
                .await?;
            return Ok(Outcome::Dead(job.id));
        };
        if let Ok(mut set) = self.in_flight.lock() {
            set.insert(job.id);
        }
        let payload = job.payload.clone();
        let mut task = tokio::spawn(async move { handler.run(&payload).await });
        // The first beat a third of a lease from now: an interval's
        // immediate first tick would still wait for the timer wheel's next
        // millisecond, on every job.
        let period = self.config.lease / 3;
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let result = loop {
            tokio::select! {
                result = &mut task => break result,
                _ = beat.tick() => {
                    if let Ok(false) = self.queue.heartbeat(job.id, &worker, self.config.lease).await {
                        task.abort();
                        tracing::warn!("lost the lease; another worker has the job");
                        self.forget(job.id);
                        return Ok(Outcome::LostLease(job.id));
                    }
                }
            }
        };
        self.forget(job.id);
        let failure = match result {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error),
            Err(join) if join.is_panic() => Some(JobError::Retryable(format!(
                "the handler panicked: {}",
                panic_message(join.into_panic())
            ))),
            Err(_) => Some(JobError::Retryable("the handler was cancelled".to_owned())),
        };
        self.stats.record(&job.kind, failure.is_some());
        let Some(error) = failure else {
            return Ok(match self.queue.complete(job.id, &worker).await? {
                true => Outcome::Done(job.id),
                false => Outcome::LostLease(job.id),
            });
        };
        let retry_in = match &error {
            JobError::Retryable(_) if job.attempt < job.max_attempts => {
                Some(backoff(job.attempt, jitter()))
            }
            _ => None,
        };
        tracing::warn!(%error, retry_in = ?retry_in, "job failed");
        if !self
            .queue
            .fail(job.id, &worker, &error.to_string(), retry_in)
            .await?
        {
            return Ok(Outcome::LostLease(job.id));
        }
        Ok(match retry_in {
            Some(_) => Outcome::Retrying(job.id),
            None => Outcome::Dead(job.id),
        })
    }

    fn forget(&self, id: i64) {
        if let Ok(mut set) = self.in_flight.lock() {
            set.remove(&id);
        }
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}
