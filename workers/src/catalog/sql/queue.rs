//! The job queue in SQL. Every time in these statements comes from the
//! database clock, so workers on machines with skewed clocks agree on when
//! a lease runs out. The statements are written once, in [`queue_sql!`];
//! each backend fills in how it reads its clock, how it unpacks the list of
//! kinds, and how a claim skips rows another claimer is taking.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::SqlCatalog;
use crate::catalog::{CatalogError, Queue};
use crate::model::Timestamp;
use crate::queue::{ClaimedJob, JobFilter, JobRecord, JobState, KindStats};

/// The queue's statements in one SQL dialect.
#[derive(Debug)]
pub(crate) struct QueueSql {
    /// `$1` kind, `$2` payload, `$3` max attempts; returns `id`.
    pub(super) enqueue: &'static str,
    /// `$1` kinds (JSON array): expired leases with no attempts left → dead.
    reap: &'static str,
    /// `$1` kinds (JSON array), `$2` worker, `$3` lease ms, `$4` limit.
    claim: &'static str,
    /// `$1` id, `$2` worker, `$3` lease ms.
    heartbeat: &'static str,
    /// `$1` id, `$2` worker.
    complete: &'static str,
    /// `$1` id, `$2` worker, `$3` error, `$4` retry delay ms or NULL for dead.
    fail: &'static str,
    /// `$1` id, `$2` worker.
    release: &'static str,
    /// `$1` id.
    retry: &'static str,
    retry_dead: &'static str,
    /// `$1` id.
    cancel: &'static str,
    stats: &'static str,
}

/// SQLite's clock in epoch milliseconds: one value per statement step.
macro_rules! sqlite_now {
    () => {
        "CAST(unixepoch('subsec') * 1000 AS INTEGER)"
    };
}
pub(super) use sqlite_now;

/// PostgreSQL's clock in epoch milliseconds. `statement_timestamp()`, not
/// `now()`: `now()` is when the transaction began, which is already in the
/// past after a wait for a row lock, and a lease taken then would be short
/// by the wait. Not `clock_timestamp()` either: it changes from row to row
/// within one statement, and being volatile it keeps `run_at <= now` from
/// using the index.
macro_rules! postgres_now {
    () => {
        "(floor(extract(epoch FROM statement_timestamp()) * 1000)::bigint)"
    };
}
pub(super) use postgres_now;

/// Every queue statement, given a backend's fragments: `now` (the clock in
/// epoch ms), `kinds` (a subquery of the kinds in the JSON array `$1`: the
/// `Any` driver cannot bind arrays) and `skip_locked` (appended to the row
/// picks of `reap` and `claim`).
///
/// Claims are correct on both backends for different reasons. On SQLite the
/// reap and the claim run in one `BEGIN IMMEDIATE` transaction, so no other
/// claimer runs in between. On PostgreSQL the picking subquery locks the
/// rows it returns `FOR UPDATE SKIP LOCKED`: a row another claimer has
/// locked is skipped, not waited for and never returned twice, and a row
/// that changed since the statement began is checked again against the
/// conditions before it is locked. The outer `UPDATE` writes only rows this
/// statement holds. `attempts < max_attempts` on expired leases keeps a job
/// that a concurrent reap skipped from being claimed past its last attempt.
macro_rules! queue_sql {
    (now: $now:expr, kinds: $kinds:literal, skip_locked: $skip:literal $(,)?) => {
        QueueSql {
            enqueue: concat!(
                "INSERT INTO jobs (kind, payload, state, max_attempts, run_at, created_at, updated_at) \
                 VALUES ($1, $2, 'queued', $3, ",
                $now,
                ", ",
                $now,
                ", ",
                $now,
                ") RETURNING id"
            ),
            reap: concat!(
                "UPDATE jobs SET state = 'dead', lease_until = NULL, worker = NULL, updated_at = ",
                $now,
                ", last_error = 'the worker was lost (lease expired) on the last attempt' \
                 WHERE id IN (SELECT id FROM jobs WHERE state = 'running' AND lease_until < ",
                $now,
                " AND attempts >= max_attempts AND kind IN ",
                $kinds,
                $skip,
                ")"
            ),
            claim: concat!(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, worker = $2, lease_until = ",
                $now,
                " + $3, updated_at = ",
                $now,
                " WHERE id IN (SELECT id FROM jobs WHERE kind IN ",
                $kinds,
                " AND ((state = 'queued' AND run_at <= ",
                $now,
                ") OR (state = 'running' AND lease_until < ",
                $now,
                " AND attempts < max_attempts)) ORDER BY run_at, id LIMIT $4",
                $skip,
                ") RETURNING id, kind, payload, attempts, max_attempts"
            ),
            heartbeat: concat!(
                "UPDATE jobs SET lease_until = ",
                $now,
                " + $3 WHERE id = $1 AND worker = $2 AND state = 'running'"
            ),
            complete: concat!(
                "UPDATE jobs SET state = 'done', lease_until = NULL, updated_at = ",
                $now,
                " WHERE id = $1 AND worker = $2 AND state = 'running'"
            ),
            fail: concat!(
                "UPDATE jobs SET state = CASE WHEN $4 IS NULL THEN 'dead' ELSE 'queued' END, \
                 run_at = CASE WHEN $4 IS NULL THEN run_at ELSE ",
                $now,
                " + $4 END, last_error = $3, lease_until = NULL, worker = NULL, updated_at = ",
                $now,
                " WHERE id = $1 AND worker = $2 AND state = 'running'"
            ),
            // A CASE rather than a two-argument MAX (SQLite) or GREATEST
            // (PostgreSQL): the one spelling both accept.
            release: concat!(
                "UPDATE jobs SET state = 'queued', \
                 attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, \
                 lease_until = NULL, worker = NULL, run_at = ",
                $now,
                ", updated_at = ",
                $now,
                " WHERE id = $1 AND worker = $2 AND state = 'running'"
            ),
            retry: concat!(
                "UPDATE jobs SET state = 'queued', attempts = 0, run_at = ",
                $now,
                ", updated_at = ",
                $now,
                " WHERE id = $1 AND state IN ('dead', 'cancelled')"
            ),
            retry_dead: concat!(
                "UPDATE jobs SET state = 'queued', attempts = 0, run_at = ",
                $now,
                ", updated_at = ",
                $now,
                " WHERE state = 'dead'"
            ),
            cancel: concat!(
                "UPDATE jobs SET state = 'cancelled', updated_at = ",
                $now,
                " WHERE id = $1 AND state IN ('queued', 'dead')"
            ),
            stats: concat!(
                "SELECT kind, \
                   SUM(CASE WHEN state = 'queued' THEN 1 ELSE 0 END) AS queued, \
                   SUM(CASE WHEN state = 'running' THEN 1 ELSE 0 END) AS running, \
                   SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END) AS dead, \
                   MIN(CASE WHEN state = 'queued' AND run_at <= ",
                $now,
                " THEN created_at END) AS oldest, ",
                $now,
                " AS now FROM jobs GROUP BY kind ORDER BY kind"
            ),
        }
    };
}

pub(crate) const SQLITE_QUEUE: QueueSql = queue_sql!(
    now: sqlite_now!(),
    kinds: "(SELECT value FROM json_each($1))",
    skip_locked: "",
);

pub(crate) const POSTGRES_QUEUE: QueueSql = queue_sql!(
    now: postgres_now!(),
    kinds: "(SELECT jsonb_array_elements_text($1::jsonb))",
    skip_locked: " FOR UPDATE SKIP LOCKED",
);

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn count(n: i64) -> u32 {
    u32::try_from(n).unwrap_or_default()
}

fn job(row: &AnyRow) -> Result<JobRecord, CatalogError> {
    let time = |c: &str| -> Result<Timestamp, CatalogError> {
        Ok(Timestamp::from_millis(row.try_get(c)?))
    };
    Ok(JobRecord {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        payload: serde_json::from_str(&row.try_get::<String, _>("payload")?)
            .map_err(|e| CatalogError::corrupt("job", e))?,
        state: JobState::parse(&row.try_get::<String, _>("state")?)
            .map_err(|e| CatalogError::corrupt("job", e))?,
        attempts: count(row.try_get("attempts")?),
        max_attempts: count(row.try_get("max_attempts")?),
        run_at: time("run_at")?,
        lease_until: row
            .try_get::<Option<i64>, _>("lease_until")?
            .map(Timestamp::from_millis),
        worker: row.try_get("worker")?,
        last_error: row.try_get("last_error")?,
        created_at: time("created_at")?,
        updated_at: time("updated_at")?,
    })
}

impl SqlCatalog {
    async fn job_or_conflict(
        &self,
        id: i64,
        changed: u64,
        what: &str,
    ) -> Result<JobRecord, CatalogError> {
        let record = self.get_job(id).await?;
        if changed == 0 {
            return Err(CatalogError::Conflict(format!(
                "job {id} is {}: {what}",
                record.state.as_str()
            )));
        }
        Ok(record)
    }
}

#[async_trait]
impl Queue for SqlCatalog {
    async fn enqueue(
        &self,
        kind: &str,
        payload: &serde_json::Value,
        max_attempts: u32,
    ) -> Result<i64, CatalogError> {
        // Ready from the database clock's now, the clock claims compare with:
        // a process whose own clock runs ahead cannot hold its jobs back.
        let id: i64 = sqlx::query_scalar(self.dialect.queue.enqueue)
            .bind(kind.to_owned())
            .bind(payload.to_string())
            .bind(i64::from(max_attempts))
            .fetch_one(&self.pool)
            .await?;
        Ok(id)
    }

    async fn claim(
        &self,
        kinds: &[&str],
        worker: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedJob>, CatalogError> {
        let kinds =
            serde_json::to_string(kinds).map_err(|e| CatalogError::corrupt("job kinds", e))?;
        let q = self.dialect.queue;
        let mut tx = self.begin_write().await?;
        let reaped = sqlx::query(q.reap)
            .bind(kinds.clone())
            .execute(&mut *tx)
            .await?;
        if reaped.rows_affected() > 0 {
            tracing::warn!(
                jobs = reaped.rows_affected(),
                "jobs dead: their worker was lost on the last attempt"
            );
        }
        let rows = sqlx::query(q.claim)
            .bind(kinds)
            .bind(worker.to_owned())
            .bind(millis(lease))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter()
            .map(|row| {
                Ok(ClaimedJob {
                    id: row.try_get("id")?,
                    kind: row.try_get("kind")?,
                    payload: serde_json::from_str(&row.try_get::<String, _>("payload")?)
                        .map_err(|e| CatalogError::corrupt("job", e))?,
                    attempt: count(row.try_get("attempts")?),
                    max_attempts: count(row.try_get("max_attempts")?),
                })
            })
            .collect()
    }

    async fn heartbeat(
        &self,
        id: i64,
        worker: &str,
        lease: Duration,
    ) -> Result<bool, CatalogError> {
        let done = sqlx::query(self.dialect.queue.heartbeat)
            .bind(id)
            .bind(worker.to_owned())
            .bind(millis(lease))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn complete(&self, id: i64, worker: &str) -> Result<bool, CatalogError> {
        let done = sqlx::query(self.dialect.queue.complete)
            .bind(id)
            .bind(worker.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn fail(
        &self,
        id: i64,
        worker: &str,
        error: &str,
        retry_in: Option<Duration>,
    ) -> Result<bool, CatalogError> {
        let error: String = error.chars().take(2000).collect();
        let done = sqlx::query(self.dialect.queue.fail)
            .bind(id)
            .bind(worker.to_owned())
            .bind(error)
            .bind(retry_in.map(millis))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release(&self, id: i64, worker: &str) -> Result<bool, CatalogError> {
        let done = sqlx::query(self.dialect.queue.release)
            .bind(id)
            .bind(worker.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, CatalogError> {
        sqlx::query(
            "SELECT id, kind, payload, state, attempts, max_attempts, run_at, lease_until, worker, \
             last_error, created_at, updated_at FROM jobs \
             WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR kind = $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(filter.state.map(|s| s.as_str()))
        .bind(filter.kind.clone())
        .bind(i64::from(filter.limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(job)
        .collect()
    }

    async fn get_job(&self, id: i64) -> Result<JobRecord, CatalogError> {
        let row = sqlx::query(
            "SELECT id, kind, payload, state, attempts, max_attempts, run_at, lease_until, worker, \
             last_error, created_at, updated_at FROM jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(CatalogError::NotFound { what: "job" })?;
        job(&row)
    }

    async fn retry_job(&self, id: i64) -> Result<JobRecord, CatalogError> {
        let done = sqlx::query(self.dialect.queue.retry)
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.job_or_conflict(
            id,
            done.rows_affected(),
            "only dead or cancelled jobs can be retried",
        )
        .await
    }

    async fn retry_dead(&self) -> Result<u64, CatalogError> {
        Ok(sqlx::query(self.dialect.queue.retry_dead)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn cancel_job(&self, id: i64) -> Result<JobRecord, CatalogError> {
        let done = sqlx::query(self.dialect.queue.cancel)
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.job_or_conflict(
            id,
            done.rows_affected(),
            "only queued or dead jobs can be cancelled",
        )
        .await
    }

    async fn queue_stats(&self) -> Result<Vec<KindStats>, CatalogError> {
        sqlx::query(self.dialect.queue.stats)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                let n = |c: &str| -> Result<u64, CatalogError> {
                    Ok(
                        u64::try_from(row.try_get::<Option<i64>, _>(c)?.unwrap_or_default())
                            .unwrap_or_default(),
                    )
                };
                let now: i64 = row.try_get("now")?;
                let oldest: Option<i64> = row.try_get("oldest")?;
                Ok(KindStats {
                    kind: row.try_get("kind")?,
                    queued: n("queued")?,
                    running: n("running")?,
                    dead: n("dead")?,
                    oldest_queued_seconds: oldest.map_or(0.0, |o| (now - o).max(0) as f64 / 1000.0),
                })
            })
            .collect()
    }
}
