//! What derive made, in SQL.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::images::{image, image_columns};
use super::{SqlCatalog, placement};
use crate::catalog::{CatalogError, Derivatives};
use crate::model::{Derivative, DeriveResult, DeriveState, Image, ImageId, Timestamp};

fn derivative(row: &AnyRow) -> Result<Derivative, CatalogError> {
    const W: &str = "derivative";
    let n = |c: &str| -> Result<u32, CatalogError> {
        u32::try_from(row.try_get::<i64, _>(c)?).map_err(|e| CatalogError::corrupt(W, e))
    };
    Ok(Derivative {
        image_id: row
            .try_get::<String, _>("image_id")?
            .parse()
            .map_err(|e| CatalogError::corrupt(W, e))?,
        kind: row.try_get("kind")?,
        frame: n("frame")?,
        voi: row.try_get("voi")?,
        derive_version: n("derive_version")?,
        sha256: row
            .try_get::<String, _>("sha256")?
            .parse()
            .map_err(|e| CatalogError::corrupt(W, e))?,
        size: u64::try_from(row.try_get::<i64, _>("size")?)
            .map_err(|e| CatalogError::corrupt(W, e))?,
        media_type: row.try_get("media_type")?,
        width: n("width")?,
        height: n("height")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
    })
}

/// Records renditions and their blobs.
///
/// On PostgreSQL two transactions may record renditions at once: a derive
/// job run again after its lease expired while the first run is finishing,
/// or two images whose thumbnails are the same bytes. Inserting the same
/// key makes the second wait for the first, so both insert blobs first,
/// then renditions, each in key order: they wait on each other in one order
/// and never deadlock. `ON CONFLICT` makes the loser's insert a no-op (a
/// blob) or an update (a rendition) instead of a unique violation.
async fn upsert(
    catalog: &SqlCatalog,
    conn: &mut sqlx::AnyConnection,
    renditions: &[&Derivative],
) -> Result<(), CatalogError> {
    let size =
        |d: &Derivative| i64::try_from(d.size).map_err(|e| CatalogError::corrupt("derivative", e));
    let mut blobs: Vec<&Derivative> = renditions.to_vec();
    blobs.sort_by_key(|d| *d.sha256.as_bytes());
    blobs.dedup_by_key(|d| *d.sha256.as_bytes());
    for d in blobs {
        let hex = d.sha256.to_hex();
        placement::lock_key(catalog, &mut *conn, &hex).await?;
        sqlx::query("INSERT INTO blobs (sha256, size, created_at, store_id) VALUES ($1, $2, $3, $4) ON CONFLICT (sha256) DO NOTHING")
            .bind(hex)
            .bind(size(d)?)
            .bind(d.created_at.as_millis())
            .bind(catalog.home_store.get().copied())
            .execute(&mut *conn)
            .await?;
    }
    let mut rows: Vec<&Derivative> = renditions.to_vec();
    rows.sort_by(|a, b| {
        (a.image_id, &a.kind, a.frame, &a.voi).cmp(&(b.image_id, &b.kind, b.frame, &b.voi))
    });
    for d in rows {
        sqlx::query(
            "INSERT INTO derivatives (image_id, kind, frame, voi, derive_version, sha256, size, media_type, width, height, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (image_id, kind, frame, voi) DO UPDATE SET derive_version = excluded.derive_version, \
             sha256 = excluded.sha256, size = excluded.size, media_type = excluded.media_type, \
             width = excluded.width, height = excluded.height, created_at = excluded.created_at",
        )
        .bind(d.image_id.to_string())
        .bind(d.kind.clone())
        .bind(i64::from(d.frame))
        .bind(d.voi.clone())
        .bind(i64::from(d.derive_version))
        .bind(d.sha256.to_hex())
        .bind(size(d)?)
        .bind(d.media_type.clone())
        .bind(i64::from(d.width))
        .bind(i64::from(d.height))
        .bind(d.created_at.as_millis())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl Derivatives for SqlCatalog {
    async fn image_for_job(&self, id: ImageId) -> Result<Image, CatalogError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            image_columns!(),
            " FROM images i WHERE i.id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(CatalogError::NotFound { what: "image" })?;
        image(&row)
    }

    async fn record_derive(
        &self,
        image: ImageId,
        result: &DeriveResult,
    ) -> Result<(), CatalogError> {
        let mut tx = self.begin_write().await?;
        upsert(self, &mut tx, &result.renditions.iter().collect::<Vec<_>>()).await?;
        let uid = |key: &str| {
            result
                .attributes
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        sqlx::query(
            "UPDATE images SET derive_state = 'ready', derive_version = $2, derive_error = NULL, \
             attributes = $3, frames = $4, study_instance_uid = $5, series_instance_uid = $6 WHERE id = $1",
        )
        .bind(image.to_string())
        .bind(i64::from(result.version))
        .bind(result.attributes.to_string())
        .bind(i64::from(result.frames))
        .bind(uid("study_instance_uid"))
        .bind(uid("series_instance_uid"))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_derive_failure(
        &self,
        image: ImageId,
        state: DeriveState,
        reason: &str,
        version: u32,
    ) -> Result<(), CatalogError> {
        sqlx::query("UPDATE images SET derive_state = $2, derive_error = $3, derive_version = $4 WHERE id = $1")
            .bind(image.to_string())
            .bind(state.as_str())
            .bind(reason.chars().take(2000).collect::<String>())
            .bind(i64::from(version))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn record_rendition(&self, rendition: &Derivative) -> Result<(), CatalogError> {
        let mut tx = self.begin_write().await?;
        upsert(self, &mut tx, &[rendition]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rendition(
        &self,
        image: ImageId,
        kind: &str,
        frame: u32,
        voi: &str,
    ) -> Result<Option<Derivative>, CatalogError> {
        sqlx::query(
            "SELECT image_id, kind, frame, voi, derive_version, sha256, size, media_type, width, height, created_at \
             FROM derivatives WHERE image_id = $1 AND kind = $2 AND frame = $3 AND voi = $4",
        )
        .bind(image.to_string())
        .bind(kind.to_owned())
        .bind(i64::from(frame))
        .bind(voi.to_owned())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(derivative)
        .transpose()
    }
}
