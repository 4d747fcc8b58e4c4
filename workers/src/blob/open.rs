//! Blob stores named by URL: the configured one, and the others a
//! deployment's catalog records (the source or target of a migration, a
//! replica to repair from).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{BlobError, BlobStore, FsBlobStore, S3BlobStore};

/// The one spelling of a store URL the catalog records, so two processes
/// naming the same store differently (`data/blobs`, `file://data/blobs`)
/// agree that it is one: `file://` and an absolute path for a directory;
/// an `s3://` URL as given.
pub fn canonical_url(url: &str) -> Result<String, BlobError> {
    match url.split_once("://") {
        Some(("s3", _)) => Ok(url.to_owned()),
        Some(("file", path)) => fs_url(path),
        Some(_) => Err(BlobError::UnsupportedUrl(url.to_owned())),
        None => fs_url(url),
    }
}

fn fs_url(path: &str) -> Result<String, BlobError> {
    let absolute =
        std::path::absolute(Path::new(path)).map_err(|source| BlobError::NotWritable {
            location: path.to_owned(),
            source,
        })?;
    Ok(format!("file://{}", absolute.display()))
}

/// Opens the store `url` names (`file://DIR`, a plain directory, or
/// `s3://bucket/prefix?endpoint=…&region=…`, credentials from the standard
/// AWS chain). A directory is created when missing; an S3 store spools
/// uploads in `spool_dir`.
pub async fn open_url(url: &str, spool_dir: &Path) -> Result<Arc<dyn BlobStore>, BlobError> {
    let canonical = canonical_url(url)?;
    match canonical.split_once("://") {
        Some(("s3", _)) => Ok(Arc::new(
            S3BlobStore::open(&canonical, PathBuf::from(spool_dir)).await?,
        )),
        Some((_, path)) => Ok(Arc::new(FsBlobStore::open(path)?)),
        None => Err(BlobError::UnsupportedUrl(url.to_owned())),
    }
}

/// Stores by canonical URL, each opened once and then shared: the other
/// stores a process reads from or copies to.
pub struct StoreCache {
    spool: PathBuf,
    open: tokio::sync::Mutex<HashMap<String, Arc<dyn BlobStore>>>,
}

impl std::fmt::Debug for StoreCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCache").finish_non_exhaustive()
    }
}

impl StoreCache {
    /// S3 stores opened here spool in `spool`.
    pub fn new(spool: &Path) -> Self {
        Self {
            spool: spool.to_owned(),
            open: tokio::sync::Mutex::default(),
        }
    }

    /// Shares an already open store under its canonical `url`.
    pub async fn insert(&self, url: String, store: Arc<dyn BlobStore>) {
        self.open.lock().await.insert(url, store);
    }

    /// The store at `url`, opened on first use.
    pub async fn get(&self, url: &str) -> Result<Arc<dyn BlobStore>, BlobError> {
        let url = canonical_url(url)?;
        let mut open = self.open.lock().await;
        if let Some(store) = open.get(&url) {
            return Ok(store.clone());
        }
        let store = open_url(&url, &self.spool).await?;
        open.insert(url, store.clone());
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_directory_has_one_url() {
        let cwd = std::env::current_dir().expect("cwd");
        let expected = format!("file://{}", cwd.join("data/blobs").display());
        assert_eq!(canonical_url("data/blobs").expect("url"), expected);
        assert_eq!(canonical_url("file://data/blobs").expect("url"), expected);
        assert_eq!(
            canonical_url("s3://bucket/p?endpoint=http://h:1").expect("url"),
            "s3://bucket/p?endpoint=http://h:1"
        );
        assert!(matches!(
            canonical_url("ftp://x"),
            Err(BlobError::UnsupportedUrl(_))
        ));
    }
}
