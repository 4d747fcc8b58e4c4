//! Offices, users and tokens in SQL.

use async_trait::async_trait;

use super::SqlCatalog;
use super::audit::record;
use super::rows;
use crate::audit::{AuditAction, AuditContext};
use crate::catalog::{Accounts, CatalogError, OfficeWebhook, TokenCredentials, TokenInfo};
use crate::model::{Name, NewUser, Office, OfficeId, Timestamp, TokenId, User, UserId};
use crate::token::IssuedToken;

impl SqlCatalog {
    /// Runs one `UPDATE offices …` with its audit event; `NotFound` when
    /// the office does not exist.
    async fn update_office(
        &self,
        ctx: &AuditContext,
        office: OfficeId,
        query: sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<(), CatalogError> {
        let mut tx = self.begin_write().await?;
        if query.execute(&mut *tx).await?.rows_affected() == 0 {
            return Err(CatalogError::NotFound { what: "office" });
        }
        record(
            &mut tx,
            ctx,
            AuditAction::OfficeUpdate,
            Some(office.to_string()),
            Some(office),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Accounts for SqlCatalog {
    async fn create_office(&self, ctx: &AuditContext, name: Name) -> Result<Office, CatalogError> {
        let office = Office {
            id: OfficeId::generate(),
            name,
            created_at: Timestamp::now(),
        };
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO offices (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(office.id.to_string())
            .bind(office.name.to_string())
            .bind(office.created_at.as_millis())
            .execute(&mut *tx)
            .await?;
        record(
            &mut tx,
            ctx,
            AuditAction::OfficeCreate,
            Some(office.id.to_string()),
            Some(office.id),
        )
        .await?;
        tx.commit().await?;
        Ok(office)
    }

    async fn list_offices(&self) -> Result<Vec<Office>, CatalogError> {
        sqlx::query("SELECT id, name, created_at FROM offices ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(rows::office)
            .collect()
    }

    async fn set_webhook(
        &self,
        ctx: &AuditContext,
        office: OfficeId,
        webhook: Option<(String, String)>,
    ) -> Result<(), CatalogError> {
        let (url, secret) = webhook.unzip();
        let query =
            sqlx::query("UPDATE offices SET webhook_url = $1, webhook_secret = $2 WHERE id = $3")
                .bind(url)
                .bind(secret)
                .bind(office.to_string());
        self.update_office(ctx, office, query).await
    }

    async fn set_notify_email(
        &self,
        ctx: &AuditContext,
        office: OfficeId,
        to: Option<String>,
    ) -> Result<(), CatalogError> {
        let query = sqlx::query("UPDATE offices SET notify_email = $1 WHERE id = $2")
            .bind(to)
            .bind(office.to_string());
        self.update_office(ctx, office, query).await
    }

    async fn office_notify_email(&self, office: OfficeId) -> Result<Option<String>, CatalogError> {
        let to: Option<Option<String>> =
            sqlx::query_scalar("SELECT notify_email FROM offices WHERE id = $1")
                .bind(office.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(to.flatten())
    }

    async fn set_webhook_patient_name(
        &self,
        ctx: &AuditContext,
        office: OfficeId,
        include: bool,
    ) -> Result<(), CatalogError> {
        let query = sqlx::query("UPDATE offices SET webhook_patient_name = $1 WHERE id = $2")
            .bind(i64::from(include))
            .bind(office.to_string());
        self.update_office(ctx, office, query).await
    }

    async fn office_webhook(
        &self,
        office: OfficeId,
    ) -> Result<Option<OfficeWebhook>, CatalogError> {
        let row: Option<(Option<String>, Option<String>, i64)> = sqlx::query_as(
            "SELECT webhook_url, webhook_secret, webhook_patient_name FROM offices WHERE id = $1",
        )
        .bind(office.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|(url, secret, include)| {
            let (url, secret) = url.zip(secret)?;
            Some(OfficeWebhook {
                url,
                secret,
                include_patient_name: include != 0,
            })
        }))
    }

    async fn set_strip_location(
        &self,
        ctx: &AuditContext,
        office: OfficeId,
        strip: bool,
    ) -> Result<(), CatalogError> {
        let query = sqlx::query("UPDATE offices SET strip_location = $1 WHERE id = $2")
            .bind(i64::from(strip))
            .bind(office.to_string());
        self.update_office(ctx, office, query).await
    }

    async fn create_user(&self, ctx: &AuditContext, new: NewUser) -> Result<User, CatalogError> {
        let user = User {
            id: UserId::generate(),
            name: new.name().clone(),
            role: new.role(),
            office: new.office(),
            specialty: new.specialty(),
            created_at: Timestamp::now(),
        };
        let mut tx = self.begin_write().await?;
        if let Some(office) = user.office {
            let exists: Option<String> = sqlx::query_scalar("SELECT id FROM offices WHERE id = $1")
                .bind(office.to_string())
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Err(CatalogError::NotFound { what: "office" });
            }
        }
        sqlx::query(
            "INSERT INTO users (id, name, role, office_id, specialty, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(user.id.to_string())
        .bind(user.name.to_string())
        .bind(user.role.as_str())
        .bind(user.office.map(|o| o.to_string()))
        .bind(user.specialty.map(|s| s.as_str()))
        .bind(user.created_at.as_millis())
        .execute(&mut *tx)
        .await?;
        record(
            &mut tx,
            ctx,
            AuditAction::UserCreate,
            Some(user.id.to_string()),
            user.office,
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    async fn list_users(&self, office: Option<OfficeId>) -> Result<Vec<User>, CatalogError> {
        sqlx::query(
            "SELECT id, name, role, office_id, specialty, created_at FROM users \
             WHERE ($1 IS NULL OR office_id = $1) ORDER BY created_at, id",
        )
        .bind(office.map(|o| o.to_string()))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(rows::user)
        .collect()
    }

    async fn create_token(
        &self,
        ctx: &AuditContext,
        user: UserId,
        token: &IssuedToken,
        expires_at: Option<Timestamp>,
    ) -> Result<TokenInfo, CatalogError> {
        let info = TokenInfo {
            id: token.id(),
            user_id: user,
            created_at: Timestamp::now(),
            expires_at,
            revoked_at: None,
        };
        let mut tx = self.begin_write().await?;
        let office: Option<Option<String>> =
            sqlx::query_scalar("SELECT office_id FROM users WHERE id = $1")
                .bind(user.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(office) = office else {
            return Err(CatalogError::NotFound { what: "user" });
        };
        sqlx::query(
            "INSERT INTO tokens (id, user_id, secret_sha256, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(info.id.to_string())
        .bind(user.to_string())
        .bind(token.secret_digest().to_hex())
        .bind(info.created_at.as_millis())
        .bind(expires_at.map(|t| t.as_millis()))
        .execute(&mut *tx)
        .await?;
        let office = office.and_then(|o| o.parse().ok());
        record(
            &mut tx,
            ctx,
            AuditAction::TokenCreate,
            Some(info.id.to_string()),
            office,
        )
        .await?;
        tx.commit().await?;
        Ok(info)
    }

    async fn revoke_token(
        &self,
        ctx: &AuditContext,
        id: TokenId,
    ) -> Result<TokenInfo, CatalogError> {
        let mut tx = self.begin_write().await?;
        // Revoking twice keeps the first revocation time.
        let updated =
            sqlx::query("UPDATE tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2")
                .bind(Timestamp::now().as_millis())
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        if updated.rows_affected() == 0 {
            return Err(CatalogError::NotFound { what: "token" });
        }
        let row = sqlx::query(
            "SELECT id, user_id, created_at, expires_at, revoked_at FROM tokens WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        let info = rows::token_info(&row)?;
        record(
            &mut tx,
            ctx,
            AuditAction::TokenRevoke,
            Some(id.to_string()),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(info)
    }

    async fn list_tokens(&self, user: Option<UserId>) -> Result<Vec<TokenInfo>, CatalogError> {
        sqlx::query(
            "SELECT id, user_id, created_at, expires_at, revoked_at FROM tokens \
             WHERE ($1 IS NULL OR user_id = $1) ORDER BY created_at, id",
        )
        .bind(user.map(|u| u.to_string()))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(rows::token_info)
        .collect()
    }

    async fn token_credentials(
        &self,
        id: TokenId,
    ) -> Result<Option<TokenCredentials>, CatalogError> {
        sqlx::query(
            "SELECT t.secret_sha256, t.expires_at, t.revoked_at, \
                    u.id AS u_id, u.role AS u_role, u.office_id AS u_office_id, u.specialty AS u_specialty \
             FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(rows::token_credentials)
        .transpose()
    }
}
