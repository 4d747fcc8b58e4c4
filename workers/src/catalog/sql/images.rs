//! Images in SQL. Image queries are scoped through their case, with the
//! same rule as case queries.
//!
//! `catalog.image.sql` is the failpoint before each statement an upload
//! runs (the case check before the body is read, then the image
//! transaction), `catalog.image.commit` before its commit
//! ([`crate::failpoints`]).

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::audit::record;
use super::cases::fetch_scoped;
use super::{SqlCatalog, placement};
use crate::audit::{AuditAction, AuditContext};
use crate::catalog::{CatalogError, Images, UploadTarget};
use crate::failpoints::fail_sql;
use crate::model::{
    CaseId, CaseScope, CaseStatus, DeriveState, DicomIndex, Image, ImageId, MediaType, Timestamp,
};

macro_rules! image_columns {
    () => {
        "i.id, i.case_id, i.office_id, i.uploaded_by, i.filename, i.media_type, i.sha256, i.size, \
         i.stored_sha256, i.stored_size, i.metadata, i.received_at, i.derive_state, i.derive_error, i.frames, i.attributes"
    };
}

pub(super) use image_columns;

/// The case scope, for statements that join `cases c`.
macro_rules! scoped_c {
    () => {
        "($2 IS NULL OR c.office_id = $2) AND ($3 IS NULL OR (c.specialty = $3 AND c.status <> 'draft'))"
    };
}

pub(super) fn image(row: &AnyRow) -> Result<Image, CatalogError> {
    const W: &str = "image";
    let text = |c: &str| row.try_get::<String, _>(c);
    let parse_id = |c: &str| -> Result<String, CatalogError> { Ok(text(c)?) };
    let size = |c: &str| -> Result<u64, CatalogError> {
        u64::try_from(row.try_get::<i64, _>(c)?).map_err(|e| CatalogError::corrupt(W, e))
    };
    Ok(Image {
        id: parse_id("id")?
            .parse()
            .map_err(|e| CatalogError::corrupt(W, e))?,
        case_id: parse_id("case_id")?
            .parse()
            .map_err(|e| CatalogError::corrupt(W, e))?,
        office_id: parse_id("office_id")?
            .parse()
            .map_err(|e| CatalogError::corrupt(W, e))?,
        uploaded_by: parse_id("uploaded_by")?
            .parse()
            .map_err(|e| CatalogError::corrupt(W, e))?,
        filename: row.try_get("filename")?,
        media_type: MediaType::parse(&text("media_type")?)
            .map_err(|e| CatalogError::corrupt(W, e))?,
        sha256: text("sha256")?
            .parse()
            .map_err(|e| CatalogError::corrupt(W, e))?,
        size: size("size")?,
        stored_sha256: text("stored_sha256")?
            .parse()
            .map_err(|e| CatalogError::corrupt(W, e))?,
        stored_size: size("stored_size")?,
        metadata: serde_json::from_str(&text("metadata")?)
            .map_err(|e| CatalogError::corrupt(W, e))?,
        received_at: Timestamp::from_millis(row.try_get("received_at")?),
        derive_state: DeriveState::parse(&text("derive_state")?)
            .map_err(|e| CatalogError::corrupt(W, e))?,
        derive_error: row.try_get("derive_error")?,
        frames: row
            .try_get::<Option<i64>, _>("frames")?
            .map(|n| u32::try_from(n).unwrap_or_default()),
        attributes: row
            .try_get::<Option<String>, _>("attributes")?
            .map(|a| serde_json::from_str(&a))
            .transpose()
            .map_err(|e| CatalogError::corrupt(W, e))?,
    })
}

#[async_trait]
impl Images for SqlCatalog {
    async fn upload_target(
        &self,
        scope: CaseScope,
        case: CaseId,
    ) -> Result<UploadTarget, CatalogError> {
        fail_sql!("catalog.image.sql");
        let row = sqlx::query(concat!(
            "SELECT c.status, c.office_id, o.strip_location FROM cases c JOIN offices o ON o.id = c.office_id \
             WHERE c.id = $1 AND ",
            scoped_c!()
        ))
        .bind(case.to_string())
        .bind(scope.office_filter())
        .bind(scope.specialty_filter())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(CatalogError::NotFound { what: "case" })?;
        let status = CaseStatus::parse(&row.try_get::<String, _>("status")?)
            .map_err(|e| CatalogError::corrupt("case", e))?;
        if !matches!(status, CaseStatus::Draft | CaseStatus::InfoRequested) {
            return Err(CatalogError::Conflict(format!(
                "the case is {}: images can only be added to a draft or while the specialist asks for more",
                status.as_str()
            )));
        }
        Ok(UploadTarget {
            office_id: row
                .try_get::<String, _>("office_id")?
                .parse()
                .map_err(|e| CatalogError::corrupt("case", e))?,
            strip_location: row.try_get::<i64, _>("strip_location")? != 0,
        })
    }

    async fn start_upload(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        case: CaseId,
        upload: &str,
    ) -> Result<UploadTarget, CatalogError> {
        let target = self.upload_target(scope, case).await?;
        let mut tx = self.begin_write().await?;
        record(
            &mut tx,
            ctx,
            AuditAction::UploadStart,
            Some(upload.to_owned()),
            Some(target.office_id),
        )
        .await?;
        tx.commit().await?;
        Ok(target)
    }

    async fn append_upload(
        &self,
        ctx: &AuditContext,
        office: crate::model::OfficeId,
        upload: &str,
    ) -> Result<(), CatalogError> {
        self.record_upload(ctx, AuditAction::UploadAppend, office, upload)
            .await
    }

    async fn cancel_upload(
        &self,
        ctx: &AuditContext,
        office: crate::model::OfficeId,
        upload: &str,
    ) -> Result<(), CatalogError> {
        self.record_upload(ctx, AuditAction::UploadCancel, office, upload)
            .await
    }

    async fn add_image(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        new: &Image,
        dicom: Option<&DicomIndex>,
    ) -> Result<(Image, bool), CatalogError> {
        fail_sql!("catalog.image.sql");
        let mut tx = self.begin_write().await?;
        // The case may have changed since the upload began: check again,
        // holding the case's lock to the end. On PostgreSQL this is what
        // keeps a concurrent submit from counting images while this one is
        // added, and what makes two uploads of the same bytes into one case
        // (a client's retry racing its first try) run one after the other:
        // the second finds the first's image below instead of failing on
        // the unique index.
        fail_sql!("catalog.image.sql");
        let case = fetch_scoped(
            &mut tx,
            self.dialect.select_case_for_update,
            scope,
            new.case_id,
        )
        .await?;
        if !matches!(case.status, CaseStatus::Draft | CaseStatus::InfoRequested) {
            return Err(CatalogError::Conflict(format!(
                "the case is {}: images can only be added to a draft or while the specialist asks for more",
                case.status.as_str()
            )));
        }
        fail_sql!("catalog.image.sql");
        let existing = sqlx::query(concat!(
            "SELECT ",
            image_columns!(),
            " FROM images i WHERE i.case_id = $1 AND i.sha256 = $2"
        ))
        .bind(new.case_id.to_string())
        .bind(new.sha256.to_hex())
        .fetch_optional(&mut *tx)
        .await?;
        let (stored, created) = match existing {
            Some(row) => (image(&row)?, false),
            None => {
                fail_sql!("catalog.image.sql");
                let now = self.db_now(&mut tx).await?;
                insert_image(self, &mut tx, new, now).await?;
                if let Some(index) = dicom {
                    super::dicomweb::insert_index(&mut tx, new, index).await?;
                }
                (new.clone(), true)
            }
        };
        fail_sql!("catalog.image.sql");
        record(
            &mut tx,
            ctx,
            AuditAction::ImageCreate,
            Some(stored.id.to_string()),
            Some(stored.office_id),
        )
        .await?;
        fail_sql!("catalog.image.commit");
        tx.commit().await?;
        Ok((stored, created))
    }

    async fn list_images(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        case: CaseId,
    ) -> Result<Vec<Image>, CatalogError> {
        let mut tx = self.begin_write().await?;
        let office: Option<String> = sqlx::query_scalar(concat!(
            "SELECT c.office_id FROM cases c WHERE c.id = $1 AND ",
            scoped_c!()
        ))
        .bind(case.to_string())
        .bind(scope.office_filter())
        .bind(scope.specialty_filter())
        .fetch_optional(&mut *tx)
        .await?;
        if office.is_none() {
            return Err(CatalogError::NotFound { what: "case" });
        }
        let images = sqlx::query(concat!(
            "SELECT ",
            image_columns!(),
            " FROM images i WHERE i.case_id = $1 ORDER BY i.received_at, i.id"
        ))
        .bind(case.to_string())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(image)
        .collect::<Result<Vec<_>, _>>()?;
        for i in &images {
            record(
                &mut tx,
                ctx,
                AuditAction::ImageList,
                Some(i.id.to_string()),
                Some(i.office_id),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(images)
    }

    async fn get_image(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        id: ImageId,
        download: bool,
    ) -> Result<Image, CatalogError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            image_columns!(),
            " FROM images i JOIN cases c ON c.id = i.case_id WHERE i.id = $1 AND ",
            scoped_c!()
        ))
        .bind(id.to_string())
        .bind(scope.office_filter())
        .bind(scope.specialty_filter())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(CatalogError::NotFound { what: "image" })?;
        let found = image(&row)?;
        let action = if download {
            AuditAction::ImageDownload
        } else {
            AuditAction::ImageRead
        };
        record(
            &mut tx,
            ctx,
            action,
            Some(found.id.to_string()),
            Some(found.office_id),
        )
        .await?;
        tx.commit().await?;
        Ok(found)
    }
}

/// Inserts the image, its blob row and its `derive` job. `enqueue` is the
/// dialect's job insert, so the job is ready by the database clock.
async fn insert_image(
    catalog: &SqlCatalog,
    tx: &mut sqlx::AnyConnection,
    image: &Image,
    now: Timestamp,
) -> Result<(), CatalogError> {
    let size = |n: u64| i64::try_from(n).map_err(|e| CatalogError::corrupt("image", e));
    // Many images may share a blob. On PostgreSQL two transactions inserting
    // the same key meet on the primary key: the second waits for the first
    // to commit, then does nothing.
    let hex = image.stored_sha256.to_hex();
    placement::lock_key(catalog, &mut *tx, &hex).await?;
    fail_sql!("catalog.image.sql");
    sqlx::query("INSERT INTO blobs (sha256, size, created_at, store_id) VALUES ($1, $2, $3, $4) ON CONFLICT (sha256) DO NOTHING")
        .bind(hex)
        .bind(size(image.stored_size)?)
        .bind(now.as_millis())
        .bind(catalog.home_store.get().copied())
        .execute(&mut *tx)
        .await?;
    fail_sql!("catalog.image.sql");
    sqlx::query(
        "INSERT INTO images (id, case_id, office_id, uploaded_by, filename, media_type, sha256, size, \
         stored_sha256, stored_size, metadata, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(image.id.to_string())
    .bind(image.case_id.to_string())
    .bind(image.office_id.to_string())
    .bind(image.uploaded_by.to_string())
    .bind(image.filename.clone())
    .bind(image.media_type.as_str())
    .bind(image.sha256.to_hex())
    .bind(size(image.size)?)
    .bind(image.stored_sha256.to_hex())
    .bind(size(image.stored_size)?)
    .bind(image.metadata.to_string())
    .bind(image.received_at.as_millis())
    .execute(&mut *tx)
    .await?;
    fail_sql!("catalog.image.sql");
    sqlx::query_scalar::<_, i64>(catalog.dialect.queue.enqueue)
        .bind("derive")
        .bind(serde_json::json!({ "image_id": image.id }).to_string())
        .bind(DERIVE_MAX_ATTEMPTS)
        .fetch_one(&mut *tx)
        .await?;
    Ok(())
}

/// Attempts a `derive` job gets: the default of `queue::Job`, which the
/// derive stage keeps, and of the `jobs` table.
pub(super) const DERIVE_MAX_ATTEMPTS: i64 = 5;

impl SqlCatalog {
    /// One audit event about a resumable upload, in its own transaction.
    async fn record_upload(
        &self,
        ctx: &AuditContext,
        action: AuditAction,
        office: crate::model::OfficeId,
        upload: &str,
    ) -> Result<(), CatalogError> {
        let mut tx = self.begin_write().await?;
        record(&mut tx, ctx, action, Some(upload.to_owned()), Some(office)).await?;
        tx.commit().await?;
        Ok(())
    }
}
