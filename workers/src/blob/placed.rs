//! The blob store every process reads through while blobs may live in more
//! than one store: during and after `relay reprocess migrate`, a blob the
//! configured store lacks is read from the store the catalog records for
//! it, so `relay serve` keeps serving while blobs move under it.
//!
//! Writes always go to the configured store (the catalog records that
//! store on the blob's row); a migration's final pass moves what was
//! written to the source meanwhile.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use super::{Blob, BlobError, BlobStore, Listed, Persisted, StoreCache};
use crate::model::Sha256;

/// Where the catalog says a blob is kept.
#[async_trait]
pub trait BlobLocations: Send + Sync {
    /// The canonical URL of the store recorded for `key`, or `None` when
    /// the catalog has no row for it.
    async fn location_of(&self, key: &Sha256) -> Result<Option<String>, BlobError>;
}

/// The configured store, falling back to each blob's recorded store.
pub struct PlacedBlobStore {
    home: Arc<dyn BlobStore>,
    home_url: String,
    locations: Arc<dyn BlobLocations>,
    others: StoreCache,
}

impl std::fmt::Debug for PlacedBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlacedBlobStore")
            .field("home", &self.home_url)
            .finish_non_exhaustive()
    }
}

impl PlacedBlobStore {
    /// `home` is the configured store.
    pub fn new(home: Arc<dyn BlobStore>, locations: Arc<dyn BlobLocations>) -> Self {
        let home_url = home.url();
        let others = StoreCache::new(home.spool_dir());
        Self {
            home,
            home_url,
            locations,
            others,
        }
    }

    /// The store recorded for `key` when it is not the configured one.
    async fn elsewhere(&self, key: &Sha256) -> Result<Option<Arc<dyn BlobStore>>, BlobError> {
        let Some(url) = self.locations.location_of(key).await? else {
            return Ok(None);
        };
        if url == self.home_url {
            return Ok(None);
        }
        Ok(Some(self.others.get(&url).await?))
    }
}

#[async_trait]
impl BlobStore for PlacedBlobStore {
    fn spool_dir(&self) -> &Path {
        self.home.spool_dir()
    }

    async fn put(
        &self,
        key: Sha256,
        file: &tempfile::NamedTempFile,
    ) -> Result<Persisted, BlobError> {
        self.home.put(key, file).await
    }

    async fn open(&self, key: &Sha256, offset: u64) -> Result<Blob, BlobError> {
        match self.home.open(key, offset).await {
            Err(BlobError::Missing(_)) => match self.elsewhere(key).await? {
                Some(store) => store.open(key, offset).await,
                None => Err(BlobError::Missing(*key)),
            },
            other => other,
        }
    }

    async fn verify(&self, key: &Sha256, size: u64) -> Result<(), BlobError> {
        match self.home.verify(key, size).await {
            Err(BlobError::Missing(_)) => match self.elsewhere(key).await? {
                Some(store) => store.verify(key, size).await,
                None => Err(BlobError::Missing(*key)),
            },
            other => other,
        }
    }

    async fn head(&self, key: &Sha256) -> Result<Option<u64>, BlobError> {
        match self.home.head(key).await? {
            Some(size) => Ok(Some(size)),
            None => match self.elsewhere(key).await? {
                Some(store) => store.head(key).await,
                None => Ok(None),
            },
        }
    }

    async fn list(&self, after: Option<Sha256>, limit: usize) -> Result<Vec<Listed>, BlobError> {
        self.home.list(after, limit).await
    }

    async fn delete(&self, key: &Sha256) -> Result<bool, BlobError> {
        self.home.delete(key).await
    }

    fn clean_spool(&self) -> usize {
        self.home.clean_spool()
    }

    async fn probe(&self) -> Result<(), BlobError> {
        self.home.probe().await
    }

    fn url(&self) -> String {
        self.home.url()
    }

    fn describe(&self) -> String {
        self.home.describe()
    }
}
