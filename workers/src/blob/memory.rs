//! Blobs in memory, for tests: the filesystem store's semantics (no
//! overwrite, ranged reads, missing keys) without durability, so no
//! configuration can name it for a server that acknowledges uploads.
//! Spool files still need a real directory; the store makes a temporary one
//! and removes it when dropped.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;

use super::{Blob, BlobError, BlobStore, Listed, Persisted};
use crate::model::{Sha256, Timestamp};

/// A blob store that keeps everything in memory.
#[derive(Debug, Clone)]
pub struct MemoryBlobStore {
    blobs: Arc<Mutex<HashMap<Sha256, (Bytes, Timestamp)>>>,
    spool: Arc<tempfile::TempDir>,
}

impl MemoryBlobStore {
    /// An empty store, with a fresh temporary spool directory.
    pub fn new() -> Result<Self, BlobError> {
        let spool = tempfile::Builder::new()
            .prefix("relay-spool-")
            .tempdir()
            .map_err(|source| BlobError::NotWritable {
                location: std::env::temp_dir().display().to_string(),
                source,
            })?;
        Ok(Self {
            blobs: Arc::default(),
            spool: Arc::new(spool),
        })
    }

    fn get(&self, key: &Sha256) -> Option<Bytes> {
        let blobs = self.blobs.lock().unwrap_or_else(PoisonError::into_inner);
        blobs.get(key).map(|(bytes, _)| bytes.clone())
    }

    /// Makes a blob look `age` old to a sweep.
    pub fn age(&self, key: &Sha256, age: std::time::Duration) {
        let mut blobs = self.blobs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, modified)) = blobs.get_mut(key) {
            *modified = Timestamp::from_millis(
                modified
                    .as_millis()
                    .saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)),
            );
        }
    }
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    fn spool_dir(&self) -> &Path {
        self.spool.path()
    }

    async fn put(
        &self,
        key: Sha256,
        file: &tempfile::NamedTempFile,
    ) -> Result<Persisted, BlobError> {
        if self.get(&key).is_some() {
            return Ok(Persisted::AlreadyPresent);
        }
        let bytes = tokio::fs::read(file.path()).await.map_err(BlobError::io)?;
        let mut blobs = self.blobs.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(match blobs.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => Persisted::AlreadyPresent,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert((Bytes::from(bytes), Timestamp::now()));
                Persisted::Created
            }
        })
    }

    async fn open(&self, key: &Sha256, offset: u64) -> Result<Blob, BlobError> {
        let bytes = self.get(key).ok_or(BlobError::Missing(*key))?;
        let size = bytes.len() as u64;
        let start = usize::try_from(offset.min(size)).unwrap_or(bytes.len());
        Ok(Blob {
            size,
            reader: Box::pin(std::io::Cursor::new(bytes.slice(start..))),
        })
    }

    async fn head(&self, key: &Sha256) -> Result<Option<u64>, BlobError> {
        Ok(self.get(key).map(|b| b.len() as u64))
    }

    async fn list(&self, after: Option<Sha256>, limit: usize) -> Result<Vec<Listed>, BlobError> {
        let blobs = self.blobs.lock().unwrap_or_else(PoisonError::into_inner);
        let mut found: Vec<Listed> = blobs
            .iter()
            .filter(|(key, _)| after.is_none_or(|a| key.as_bytes() > a.as_bytes()))
            .map(|(key, (bytes, modified))| Listed {
                key: *key,
                size: bytes.len() as u64,
                modified: *modified,
            })
            .collect();
        found.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
        found.truncate(limit);
        Ok(found)
    }

    async fn delete(&self, key: &Sha256) -> Result<bool, BlobError> {
        let mut blobs = self.blobs.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(blobs.remove(key).is_some())
    }

    fn clean_spool(&self) -> usize {
        super::remove_spool_files(self.spool.path())
    }

    async fn probe(&self) -> Result<(), BlobError> {
        Ok(())
    }

    /// Distinct per store (two memory stores are two stores).
    fn url(&self) -> String {
        format!("memory://{}", self.spool.path().display())
    }

    fn describe(&self) -> String {
        "memory://".to_owned()
    }
}
