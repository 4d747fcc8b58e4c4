//! Reprocess runs and the keyset walk over blobs, in SQL.
//!
//! A run is walked by one process at a time (the one that started or
//! resumed it), so a checkpoint's read-then-write of the failure list needs
//! no lock beyond the write transaction.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::SqlCatalog;
use super::audit::record;
use crate::audit::{AuditAction, AuditContext};
use crate::catalog::{CatalogError, Reprocessing};
use crate::model::{ImageId, Sha256, Timestamp};
use crate::reprocess::{
    BlobEntry, BlobFilter, Counts, Failure, ImageEntry, MAX_RECORDED_FAILURES, RunKind, RunOptions,
    RunRecord, RunState,
};

const RUN_COLUMNS: &str = "id, kind, options, state, started_at, updated_at, finished_at, \
     cursor, scanned, ok, fixed, failed, bytes, failures";

/// Which blobs a filter admits: `$2`/`$3` the time window, `$4` a case,
/// `$5` a media type (each with the renditions of the matching originals).
macro_rules! blob_filter {
    () => {
        "created_at >= $2 AND created_at < $3 \
         AND ($4 IS NULL OR sha256 IN ( \
             SELECT stored_sha256 FROM images WHERE case_id = $4 \
             UNION SELECT d.sha256 FROM derivatives d JOIN images i ON i.id = d.image_id \
             WHERE i.case_id = $4)) \
         AND ($5 IS NULL OR sha256 IN ( \
             SELECT stored_sha256 FROM images WHERE media_type = $5 \
             UNION SELECT d.sha256 FROM derivatives d JOIN images i ON i.id = d.image_id \
             WHERE i.media_type = $5))"
    };
}
pub(super) use blob_filter;

const BLOB_BATCH: &str = concat!(
    "SELECT sha256, size FROM blobs WHERE sha256 > $1 AND ",
    blob_filter!(),
    " ORDER BY sha256 LIMIT $6"
);

const COUNT_BLOBS: &str = concat!(
    "SELECT COUNT(*) FROM blobs WHERE $1 = $1 AND ",
    blob_filter!()
);

/// Which images a rederive walk visits: `$2`…`$5` as in [`blob_filter!`]
/// but on the image itself, `$6` 1 for every image, `$7` the current derive
/// version.
macro_rules! image_filter {
    () => {
        "derive_state <> 'pending' AND received_at >= $2 AND received_at < $3 \
         AND ($4 IS NULL OR case_id = $4) AND ($5 IS NULL OR media_type = $5) \
         AND ($6 = 1 OR derive_version IS NULL OR derive_version < $7 \
              OR (derive_state = 'ready' AND ( \
                  NOT EXISTS (SELECT 1 FROM derivatives d WHERE d.image_id = images.id AND d.kind = 'thumbnail') \
                  OR NOT EXISTS (SELECT 1 FROM derivatives d WHERE d.image_id = images.id AND d.kind = 'preview'))))"
    };
}

const IMAGE_BATCH: &str = concat!(
    "SELECT id, stored_size FROM images WHERE id > $1 AND ",
    image_filter!(),
    " ORDER BY id LIMIT $8"
);

const COUNT_IMAGES: &str = concat!(
    "SELECT COUNT(*) FROM images WHERE $1 = $1 AND ",
    image_filter!()
);

fn corrupt(e: impl std::fmt::Display) -> CatalogError {
    CatalogError::corrupt("reprocess run", e)
}

fn u64_of(row: &AnyRow, column: &str) -> Result<u64, CatalogError> {
    u64::try_from(row.try_get::<i64, _>(column)?).map_err(corrupt)
}

fn run(row: &AnyRow) -> Result<RunRecord, CatalogError> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let options: String = row.try_get("options")?;
    let failures: String = row.try_get("failures")?;
    Ok(RunRecord {
        id: row.try_get("id")?,
        kind: RunKind::parse(&kind).ok_or_else(|| corrupt(format!("kind {kind:?}")))?,
        options: serde_json::from_str(&options).map_err(corrupt)?,
        state: match state.as_str() {
            "running" => RunState::Running,
            "finished" => RunState::Finished,
            other => return Err(corrupt(format!("state {other:?}"))),
        },
        started_at: Timestamp::from_millis(row.try_get("started_at")?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
        finished_at: row
            .try_get::<Option<i64>, _>("finished_at")?
            .map(Timestamp::from_millis),
        cursor: row.try_get("cursor")?,
        counts: Counts {
            scanned: u64_of(row, "scanned")?,
            ok: u64_of(row, "ok")?,
            fixed: u64_of(row, "fixed")?,
            failed: u64_of(row, "failed")?,
            bytes: u64_of(row, "bytes")?,
        },
        failures: serde_json::from_str(&failures).map_err(corrupt)?,
    })
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Binds a filter as `$2`…`$5` of [`blob_filter!`].
pub(super) fn filter_args(filter: &BlobFilter) -> (i64, i64, Option<String>, Option<String>) {
    (
        filter.since.map_or(i64::MIN, |t| t.as_millis()),
        filter.until.map_or(i64::MAX, |t| t.as_millis()),
        filter.case.map(|c| c.to_string()),
        filter.media_type.clone(),
    )
}

#[async_trait]
impl Reprocessing for SqlCatalog {
    async fn start_run(
        &self,
        kind: RunKind,
        options: &RunOptions,
    ) -> Result<RunRecord, CatalogError> {
        let id = format!("run_{}", uuid::Uuid::now_v7().simple());
        let options = serde_json::to_string(options).map_err(corrupt)?;
        let mut tx = self.begin_write().await?;
        let now = self.db_now(&mut tx).await?;
        sqlx::query(
            "INSERT INTO reprocess_runs (id, kind, options, state, dry_run, started_at, updated_at) \
             VALUES ($1, $2, $3, 'running', 0, $4, $4)",
        )
        .bind(id.clone())
        .bind(kind.as_str())
        .bind(options)
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_run(&id).await
    }

    async fn get_run(&self, id: &str) -> Result<RunRecord, CatalogError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM reprocess_runs WHERE id = $1"
        ));
        let row = sqlx::query(sql)
            .bind(id.to_owned())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(CatalogError::NotFound {
                what: "reprocess run",
            })?;
        run(&row)
    }

    async fn list_runs(&self, limit: u32) -> Result<Vec<RunRecord>, CatalogError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM reprocess_runs ORDER BY started_at DESC, id DESC LIMIT $1"
        ));
        sqlx::query(sql)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(run)
            .collect()
    }

    async fn blob_batch(
        &self,
        after: &str,
        limit: u32,
        filter: &BlobFilter,
    ) -> Result<Vec<BlobEntry>, CatalogError> {
        let (since, until, case, media_type) = filter_args(filter);
        let rows: Vec<(String, i64)> = sqlx::query_as(BLOB_BATCH)
            .bind(after.to_owned())
            .bind(since)
            .bind(until)
            .bind(case)
            .bind(media_type)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|(key, size)| {
                Ok(BlobEntry {
                    sha256: key
                        .parse::<Sha256>()
                        .map_err(|e| CatalogError::corrupt("blob", e))?,
                    size: u64::try_from(size).map_err(|e| CatalogError::corrupt("blob", e))?,
                })
            })
            .collect()
    }

    async fn count_blobs(&self, filter: &BlobFilter) -> Result<u64, CatalogError> {
        let (since, until, case, media_type) = filter_args(filter);
        let n: i64 = sqlx::query_scalar(COUNT_BLOBS)
            .bind(0_i64)
            .bind(since)
            .bind(until)
            .bind(case)
            .bind(media_type)
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn image_batch(
        &self,
        after: &str,
        limit: u32,
        filter: &BlobFilter,
        stale_before: Option<u32>,
    ) -> Result<Vec<ImageEntry>, CatalogError> {
        let (since, until, case, media_type) = filter_args(filter);
        let rows: Vec<(String, i64)> = sqlx::query_as(IMAGE_BATCH)
            .bind(after.to_owned())
            .bind(since)
            .bind(until)
            .bind(case)
            .bind(media_type)
            .bind(i64::from(stale_before.is_none()))
            .bind(i64::from(stale_before.unwrap_or(0)))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|(id, size)| {
                Ok(ImageEntry {
                    id: id.parse().map_err(|e| CatalogError::corrupt("image", e))?,
                    size: u64::try_from(size).map_err(|e| CatalogError::corrupt("image", e))?,
                })
            })
            .collect()
    }

    async fn count_images(
        &self,
        filter: &BlobFilter,
        stale_before: Option<u32>,
    ) -> Result<u64, CatalogError> {
        let (since, until, case, media_type) = filter_args(filter);
        let n: i64 = sqlx::query_scalar(COUNT_IMAGES)
            .bind(0_i64)
            .bind(since)
            .bind(until)
            .bind(case)
            .bind(media_type)
            .bind(i64::from(stale_before.is_none()))
            .bind(i64::from(stale_before.unwrap_or(0)))
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn requeue_derive(&self, image: ImageId) -> Result<bool, CatalogError> {
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE images SET derive_state = 'pending' WHERE id = $1 AND derive_state <> 'pending'",
        )
        .bind(image.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query_scalar::<_, i64>(self.dialect.queue.enqueue)
            .bind("derive")
            .bind(serde_json::json!({ "image_id": image }).to_string())
            .bind(super::images::DERIVE_MAX_ATTEMPTS)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn checkpoint_run(
        &self,
        id: &str,
        cursor: &str,
        delta: &Counts,
        failures: &[Failure],
    ) -> Result<(), CatalogError> {
        let mut tx = self.begin_write().await?;
        let now = self.db_now(&mut tx).await?;
        let kept: Option<String> =
            sqlx::query_scalar("SELECT failures FROM reprocess_runs WHERE id = $1")
                .bind(id.to_owned())
                .fetch_optional(&mut *tx)
                .await?;
        let mut kept: Vec<Failure> = serde_json::from_str(&kept.ok_or(CatalogError::NotFound {
            what: "reprocess run",
        })?)
        .map_err(corrupt)?;
        let room = MAX_RECORDED_FAILURES.saturating_sub(kept.len());
        kept.extend(failures.iter().take(room).cloned());
        sqlx::query(
            "UPDATE reprocess_runs SET cursor = $2, scanned = scanned + $3, ok = ok + $4, \
             fixed = fixed + $5, failed = failed + $6, bytes = bytes + $7, failures = $8, \
             updated_at = $9 WHERE id = $1 AND state = 'running'",
        )
        .bind(id.to_owned())
        .bind(cursor.to_owned())
        .bind(signed(delta.scanned))
        .bind(signed(delta.ok))
        .bind(signed(delta.fixed))
        .bind(signed(delta.failed))
        .bind(signed(delta.bytes))
        .bind(serde_json::to_string(&kept).map_err(corrupt)?)
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn finish_run(&self, id: &str) -> Result<RunRecord, CatalogError> {
        let mut tx = self.begin_write().await?;
        let now = self.db_now(&mut tx).await?;
        sqlx::query(
            "UPDATE reprocess_runs SET state = 'finished', finished_at = $2, updated_at = $2 \
             WHERE id = $1 AND state = 'running'",
        )
        .bind(id.to_owned())
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_run(id).await
    }

    async fn restart_walk(&self, id: &str) -> Result<(), CatalogError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE reprocess_runs SET cursor = NULL WHERE id = $1 AND state = 'running'")
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_blob_problem(
        &self,
        run_id: &str,
        blob: &Sha256,
        _reason: &str,
    ) -> Result<(), CatalogError> {
        let mut tx = self.begin_write().await?;
        record(
            &mut tx,
            &AuditContext::system(run_id),
            AuditAction::BlobIntegrity,
            Some(blob.to_hex()),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
