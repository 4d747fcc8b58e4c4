//! Which store keeps each blob, in SQL; and the per-blob lock that keeps a
//! sweep's delete and an upload of the same bytes apart.
//!
//! A row without a store (written before stores were recorded) belongs to
//! the first store registered: the one the deployment ran on until then.

use async_trait::async_trait;

use super::reprocess::{blob_filter, filter_args};
use super::{SqlCatalog, WriteTx};
use crate::blob::{BlobError, BlobLocations};
use crate::catalog::{BlobGuard, BlobStanding, CatalogError, PlacedBlob, Placement, StoreId};
use crate::model::Sha256;
use crate::reprocess::BlobFilter;

/// The store a row is in, its own or (without one) the first registered.
macro_rules! store_of {
    () => {
        "COALESCE(store_id, (SELECT MIN(id) FROM blob_stores))"
    };
}

const PLACEMENT_BATCH: &str = concat!(
    "SELECT b.sha256, b.size, s.id, s.url FROM blobs b JOIN blob_stores s ON s.id = ",
    store_of!(),
    " WHERE b.sha256 > $1 AND s.id <> $7 AND ",
    blob_filter!(),
    " ORDER BY b.sha256 LIMIT $6"
);

const COUNT_NOT_ON: &str = concat!(
    "SELECT COUNT(*) FROM blobs WHERE $1 = $1 AND $6 = $6 AND ",
    store_of!(),
    " <> $7 AND ",
    blob_filter!()
);

fn key_of(text: &str) -> Result<Sha256, CatalogError> {
    text.parse().map_err(|e| CatalogError::corrupt("blob", e))
}

impl SqlCatalog {
    /// Records `store` (registered) on every blob row this catalog inserts
    /// from now on: the store this process's blob store writes to. Set once;
    /// later calls are ignored.
    pub fn place_new_blobs_in(&self, store: StoreId) {
        let _ = self.home_store.set(store);
    }
}

#[async_trait]
impl Placement for SqlCatalog {
    async fn register_store(&self, url: &str) -> Result<StoreId, CatalogError> {
        let mut tx = self.begin_write().await?;
        let now = self.db_now(&mut tx).await?;
        sqlx::query(
            "INSERT INTO blob_stores (url, added_at) VALUES ($1, $2) ON CONFLICT (url) DO NOTHING",
        )
        .bind(url.to_owned())
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await?;
        let id: i64 = sqlx::query_scalar("SELECT id FROM blob_stores WHERE url = $1")
            .bind(url.to_owned())
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn list_stores(&self) -> Result<Vec<(StoreId, String)>, CatalogError> {
        Ok(
            sqlx::query_as("SELECT id, url FROM blob_stores ORDER BY id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn blob_location(&self, key: &Sha256) -> Result<Option<String>, CatalogError> {
        let sql = concat!(
            "SELECT s.url FROM blobs b JOIN blob_stores s ON s.id = ",
            store_of!(),
            " WHERE b.sha256 = $1"
        );
        Ok(sqlx::query_scalar(sql)
            .bind(key.to_hex())
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn placement_batch(
        &self,
        after: &str,
        limit: u32,
        filter: &BlobFilter,
        target: StoreId,
    ) -> Result<Vec<PlacedBlob>, CatalogError> {
        let (since, until, case, media_type) = filter_args(filter);
        let rows: Vec<(String, i64, i64, String)> = sqlx::query_as(PLACEMENT_BATCH)
            .bind(after.to_owned())
            .bind(since)
            .bind(until)
            .bind(case)
            .bind(media_type)
            .bind(i64::from(limit))
            .bind(target)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|(key, size, store, store_url)| {
                Ok(PlacedBlob {
                    sha256: key_of(&key)?,
                    size: u64::try_from(size).map_err(|e| CatalogError::corrupt("blob", e))?,
                    store,
                    store_url,
                })
            })
            .collect()
    }

    async fn count_not_on(
        &self,
        filter: &BlobFilter,
        target: StoreId,
    ) -> Result<u64, CatalogError> {
        let (since, until, case, media_type) = filter_args(filter);
        let n: i64 = sqlx::query_scalar(COUNT_NOT_ON)
            .bind(0_i64)
            .bind(since)
            .bind(until)
            .bind(case)
            .bind(media_type)
            .bind(0_i64)
            .bind(target)
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn move_blob(
        &self,
        key: &Sha256,
        from: StoreId,
        to: StoreId,
    ) -> Result<bool, CatalogError> {
        let mut tx = self.begin_write().await?;
        let sql = concat!(
            "UPDATE blobs SET store_id = $3 WHERE sha256 = $1 AND ",
            store_of!(),
            " = $2"
        );
        let moved = sqlx::query(sql)
            .bind(key.to_hex())
            .bind(from)
            .bind(to)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(moved == 1)
    }

    async fn lock_blob(&self, key: &Sha256) -> Result<Box<dyn BlobGuard>, CatalogError> {
        let mut tx = self.begin_write().await?;
        let hex = key.to_hex();
        lock_key(self, &mut tx, &hex).await?;
        let sql = concat!(
            "SELECT ",
            store_of!(),
            ", CASE WHEN EXISTS (SELECT 1 FROM images WHERE stored_sha256 = $1) \
               OR EXISTS (SELECT 1 FROM derivatives WHERE sha256 = $1) THEN 1 ELSE 0 END \
             FROM blobs WHERE sha256 = $1"
        );
        let row: Option<(Option<i64>, i64)> = sqlx::query_as(sql)
            .bind(hex.clone())
            .fetch_optional(&mut *tx)
            .await?;
        let standing = match row {
            None => BlobStanding::Unrecorded,
            Some((store, referenced)) => {
                let store = store.unwrap_or_default();
                if referenced == 1 {
                    BlobStanding::Referenced { store }
                } else {
                    BlobStanding::Unreferenced { store }
                }
            }
        };
        Ok(Box::new(SqlBlobGuard { tx, hex, standing }))
    }
}

/// Takes the per-blob lock for the rest of `tx` (PostgreSQL: an advisory
/// lock on the key's hash; SQLite: the write transaction already excludes
/// every other writer). Every transaction that inserts a blob row takes it
/// first, as does `sweep` before it deletes bytes.
pub(super) async fn lock_key(
    catalog: &SqlCatalog,
    conn: &mut sqlx::AnyConnection,
    hex: &str,
) -> Result<(), CatalogError> {
    if let Some(sql) = catalog.dialect.lock_blob {
        sqlx::query(sql).bind(hex.to_owned()).execute(conn).await?;
    }
    Ok(())
}

struct SqlBlobGuard {
    tx: WriteTx,
    hex: String,
    standing: BlobStanding,
}

#[async_trait]
impl BlobGuard for SqlBlobGuard {
    fn standing(&self) -> BlobStanding {
        self.standing
    }

    async fn forget(mut self: Box<Self>) -> Result<(), CatalogError> {
        // Only an unreferenced row: the foreign keys would refuse otherwise.
        if matches!(self.standing, BlobStanding::Unreferenced { .. }) {
            sqlx::query("DELETE FROM blobs WHERE sha256 = $1")
                .bind(self.hex.clone())
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        Ok(())
    }

    async fn release(self: Box<Self>) -> Result<(), CatalogError> {
        self.tx.rollback().await?;
        Ok(())
    }
}

#[async_trait]
impl BlobLocations for SqlCatalog {
    async fn location_of(&self, key: &Sha256) -> Result<Option<String>, BlobError> {
        self.blob_location(key).await.map_err(|e| {
            BlobError::Unavailable(format!(
                "the catalog could not say where blob {key} is: {e}"
            ))
        })
    }
}
