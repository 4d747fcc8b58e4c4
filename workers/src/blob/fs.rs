//! Blobs on a local filesystem, under one root directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{BlobError, BlobStore};

/// A blob store rooted at a directory: `sha256/ab/cd/<hex>` for blobs,
/// `tmp/` for writes in progress.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    /// Opens (creating when missing) a store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        for dir in [root.join("sha256"), root.join("tmp")] {
            std::fs::create_dir_all(&dir).map_err(|source| BlobError::NotWritable {
                location: dir.display().to_string(),
                source,
            })?;
        }
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn probe(&self) -> Result<(), BlobError> {
        let tmp = self.root.join("tmp");
        let location = tmp.display().to_string();
        tokio::task::spawn_blocking(move || {
            let mut file = tempfile::NamedTempFile::new_in(&tmp)?;
            file.write_all(b"probe")?;
            file.as_file().sync_all()?;
            file.close()
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|source| BlobError::NotWritable { location, source })
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn probe_writes_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path().join("blobs")).expect("opens");
        store.probe().await.expect("writable");
        let left = std::fs::read_dir(dir.path().join("blobs/tmp"))
            .expect("tmp")
            .count();
        assert_eq!(left, 0);
    }
}
