//! Appending, listing, sealing and verifying audit events.

use async_trait::async_trait;
use sqlx::AnyConnection;

use super::SqlCatalog;
use super::rows::{self, audit_columns};
use crate::audit::chain::{ChainHead, ChainVerifier, seal_hash};
use crate::audit::{AuditAction, AuditContext, AuditEvent, AuditFilter};
use crate::catalog::{AuditLog, CatalogError, ChainReport};
use crate::failpoints::fail_sql;
use crate::model::{OfficeId, Timestamp};

/// Appends one audit event inside the caller's transaction, so the event
/// commits or rolls back with the change it records.
pub(super) async fn record(
    conn: &mut AnyConnection,
    ctx: &AuditContext,
    action: AuditAction,
    object_id: Option<String>,
    office_id: Option<OfficeId>,
) -> Result<(), CatalogError> {
    fail_sql!("audit.insert");
    sqlx::query(
        "INSERT INTO audit_events \
         (occurred_at, actor, actor_role, action, object_id, office_id, remote_addr, request_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(Timestamp::now().as_millis())
    .bind(ctx.actor.id())
    .bind(ctx.actor.role())
    .bind(action.as_str())
    .bind(object_id)
    .bind(office_id.map(|o| o.to_string()))
    .bind(ctx.remote_addr.clone())
    .bind(ctx.request_id.clone())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

const VERIFY_PAGE: i64 = 1000;

#[async_trait]
impl AuditLog for SqlCatalog {
    async fn list_audit(
        &self,
        ctx: &AuditContext,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEvent>, CatalogError> {
        let (exact, prefix) = match &filter.action {
            Some(a) if a.ends_with('.') => (None, Some(a.clone())),
            Some(a) => (Some(a.clone()), None),
            None => (None, None),
        };
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_events \
              WHERE ($1 IS NULL OR actor = $1) \
                AND ($2 IS NULL OR action = $2) \
                AND ($3 IS NULL OR substr(action, 1, length($3)) = $3) \
                AND ($4 IS NULL OR object_id = $4) \
                AND ($5 IS NULL OR office_id = $5) \
                AND ($6 IS NULL OR occurred_at >= $6) \
                AND ($7 IS NULL OR occurred_at < $7) \
                AND ($8 IS NULL OR id < $8) \
              ORDER BY id DESC LIMIT $9"
        ))
        .bind(filter.actor.clone())
        .bind(exact)
        .bind(prefix)
        .bind(filter.object_id.clone())
        .bind(filter.office_id.map(|o| o.to_string()))
        .bind(filter.since.map(|t| t.as_millis()))
        .bind(filter.until.map(|t| t.as_millis()))
        .bind(filter.before_id)
        .bind(i64::from(filter.limit))
        .fetch_all(&mut *tx)
        .await?;
        let events = rows
            .iter()
            .map(rows::audit_event)
            .collect::<Result<Vec<_>, _>>()?;
        record(&mut tx, ctx, AuditAction::AuditRead, None, filter.office_id).await?;
        tx.commit().await?;
        Ok(events)
    }

    async fn seal_pending(&self, batch: u32) -> Result<u32, CatalogError> {
        // Sealers run one at a time: SQLite's write lock, or on PostgreSQL
        // the lock on the head row taken here. Events are read only after
        // it is held, so a sealer that waited sees what the one before it
        // sealed. Appending events takes no such lock; an event committed
        // late (a lower id) is simply sealed in a later batch.
        let mut tx = self.begin_write().await?;
        let head_row = sqlx::query(self.dialect.select_chain_head)
            .fetch_one(&mut *tx)
            .await?;
        let mut head = chain_head(&head_row)?;
        let pending = sqlx::query(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_events WHERE seq IS NULL ORDER BY id LIMIT $1"
        ))
        .bind(i64::from(batch))
        .fetch_all(&mut *tx)
        .await?;
        if pending.is_empty() {
            return Ok(0);
        }
        let mut sealed = 0u32;
        for row in &pending {
            let event = rows::audit_event(row)?;
            let seq = head.seq + 1;
            let hash = seal_hash(&event, seq, &head.hash);
            let updated = sqlx::query(
                "UPDATE audit_events SET seq = $1, prev_hash = $2, hash = $3 \
                 WHERE id = $4 AND seq IS NULL",
            )
            .bind(seq)
            .bind(head.hash.clone())
            .bind(hash.clone())
            .bind(event.id)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() != 1 {
                // Sealed by someone else after all: linking on would leave a
                // gap in the chain. Roll back; the next round starts afresh.
                return Err(CatalogError::Conflict(format!(
                    "audit event {} was sealed concurrently",
                    event.id
                )));
            }
            head = ChainHead { seq, hash };
            sealed += 1;
        }
        sqlx::query("UPDATE audit_chain_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(head.seq)
            .bind(head.hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(sealed)
    }

    async fn verify_chain(&self) -> Result<ChainReport, CatalogError> {
        // Read the head first: events sealed after it are beyond its seq and
        // do not make the walk report a mismatch.
        let head = chain_head(
            &sqlx::query("SELECT seq, hash FROM audit_chain_head WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )?;
        let mut verifier = ChainVerifier::new();
        let mut after = 0i64;
        let mut verified = 0u64;
        let mut broken = None;
        'walk: loop {
            let page = sqlx::query(concat!(
                "SELECT ",
                audit_columns!(),
                " FROM audit_events WHERE seq IS NOT NULL AND seq > $1 AND seq <= $2 \
                  ORDER BY seq LIMIT $3"
            ))
            .bind(after)
            .bind(head.seq)
            .bind(VERIFY_PAGE)
            .fetch_all(&self.pool)
            .await?;
            if page.is_empty() {
                break;
            }
            for row in &page {
                let event = rows::audit_event(row)?;
                if let Err(b) = verifier.check(&event) {
                    broken = Some(b);
                    break 'walk;
                }
                verified += 1;
                after = event.seq.unwrap_or(after);
            }
        }
        if broken.is_none()
            && let Err(b) = verifier.finish(&head)
        {
            broken = Some(b);
        }
        let unsealed: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE seq IS NULL")
                .fetch_one(&self.pool)
                .await?;
        Ok(ChainReport {
            verified,
            unsealed: u64::try_from(unsealed).unwrap_or_default(),
            head,
            broken,
        })
    }
}

fn chain_head(row: &sqlx::any::AnyRow) -> Result<ChainHead, CatalogError> {
    use sqlx::Row;
    Ok(ChainHead {
        seq: row.try_get("seq")?,
        hash: row.try_get("hash")?,
    })
}
