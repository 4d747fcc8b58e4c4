//! Browser sessions in SQL. A session row never outlives the meaning of
//! its token: the lookup joins the token and its user, so a revoked or
//! expired token is seen on the very next request.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::SqlCatalog;
use super::audit::record;
use super::rows;
use crate::audit::{AuditAction, AuditContext};
use crate::catalog::{CatalogError, WebSessions};
use crate::model::{Principal, Timestamp, TokenId};
use crate::session::{SessionKey, StoredSession};

fn office_of(principal: &Principal) -> Option<crate::model::OfficeId> {
    match principal {
        Principal::Office { office, .. } => Some(*office),
        _ => None,
    }
}

fn stored(row: &AnyRow) -> Result<StoredSession, CatalogError> {
    const W: &str = "web session";
    let millis = |column: &str| -> Result<Timestamp, CatalogError> {
        Ok(Timestamp::from_millis(row.try_get::<i64, _>(column)?))
    };
    let optional = |column: &str| -> Result<Option<Timestamp>, CatalogError> {
        Ok(row
            .try_get::<Option<i64>, _>(column)?
            .map(Timestamp::from_millis))
    };
    Ok(StoredSession {
        token_id: row
            .try_get::<String, _>("token_id")?
            .parse()
            .map_err(|e| CatalogError::corrupt(W, e))?,
        created_at: millis("created_at")?,
        last_seen_at: millis("last_seen_at")?,
        expires_at: millis("expires_at")?,
        token_expires_at: optional("t_expires_at")?,
        token_revoked_at: optional("t_revoked_at")?,
        principal: rows::principal(row, W)?,
    })
}

#[async_trait]
impl WebSessions for SqlCatalog {
    async fn create_session(
        &self,
        ctx: &AuditContext,
        key: &SessionKey,
        token: TokenId,
        expires_at: Timestamp,
    ) -> Result<(), CatalogError> {
        let now = Timestamp::now();
        let mut tx = self.begin_write().await?;
        let office: Option<Option<String>> = sqlx::query_scalar(
            "SELECT u.office_id FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.id = $1",
        )
        .bind(token.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(office) = office else {
            return Err(CatalogError::NotFound { what: "token" });
        };
        sqlx::query(
            "INSERT INTO web_sessions (key_sha256, token_id, created_at, last_seen_at, expires_at) \
             VALUES ($1, $2, $3, $3, $4)",
        )
        .bind(key.to_hex())
        .bind(token.to_string())
        .bind(now.as_millis())
        .bind(expires_at.as_millis())
        .execute(&mut *tx)
        .await?;
        // The token id names the credential; the session key is never logged.
        record(
            &mut tx,
            ctx,
            AuditAction::SessionCreate,
            Some(token.to_string()),
            office.and_then(|o| o.parse().ok()),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session(&self, key: &SessionKey) -> Result<Option<StoredSession>, CatalogError> {
        sqlx::query(
            "SELECT s.token_id, s.created_at, s.last_seen_at, s.expires_at, \
                    t.expires_at AS t_expires_at, t.revoked_at AS t_revoked_at, \
                    u.id AS u_id, u.role AS u_role, u.office_id AS u_office_id, u.specialty AS u_specialty \
             FROM web_sessions s JOIN tokens t ON t.id = s.token_id JOIN users u ON u.id = t.user_id \
             WHERE s.key_sha256 = $1",
        )
        .bind(key.to_hex())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(stored)
        .transpose()
    }

    async fn touch_session(&self, key: &SessionKey, at: Timestamp) -> Result<(), CatalogError> {
        let mut tx = self.begin_write().await?;
        // Never moves backwards when two requests touch at once.
        sqlx::query(
            "UPDATE web_sessions SET last_seen_at = $1 WHERE key_sha256 = $2 AND last_seen_at < $1",
        )
        .bind(at.as_millis())
        .bind(key.to_hex())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn end_session(
        &self,
        ctx: &AuditContext,
        key: &SessionKey,
    ) -> Result<bool, CatalogError> {
        let mut tx = self.begin_write().await?;
        let token: Option<String> =
            sqlx::query_scalar("DELETE FROM web_sessions WHERE key_sha256 = $1 RETURNING token_id")
                .bind(key.to_hex())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(token) = token else {
            return Ok(false);
        };
        let office = match &ctx.actor {
            crate::audit::Actor::User(principal) => office_of(principal),
            _ => None,
        };
        record(&mut tx, ctx, AuditAction::SessionEnd, Some(token), office).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn purge_sessions(
        &self,
        now: Timestamp,
        idle_before: Timestamp,
    ) -> Result<u64, CatalogError> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query(
            "DELETE FROM web_sessions WHERE expires_at <= $1 OR last_seen_at <= $2 \
             OR token_id IN (SELECT id FROM tokens WHERE revoked_at IS NOT NULL \
                             OR (expires_at IS NOT NULL AND expires_at <= $1))",
        )
        .bind(now.as_millis())
        .bind(idle_before.as_millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }
}
