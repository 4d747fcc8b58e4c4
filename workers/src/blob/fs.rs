//! Blobs on a local filesystem, under one root directory:
//! `sha256/ab/cd/<64 hex>` for blobs, `tmp/` for uploads in progress.

use std::io::{SeekFrom, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::io::AsyncSeekExt;

use super::{Blob, BlobError, BlobStore, Listed, Persisted, persist_file_no_clobber};
use crate::model::{Sha256, Timestamp};

/// A blob store rooted at a directory.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
    tmp: PathBuf,
}

impl FsBlobStore {
    /// Opens (creating when missing) a store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        let tmp = root.join("tmp");
        for dir in [root.join("sha256"), tmp.clone()] {
            std::fs::create_dir_all(&dir).map_err(|source| BlobError::NotWritable {
                location: dir.display().to_string(),
                source,
            })?;
        }
        Ok(Self { root, tmp })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of a blob: `sha256/ab/cd/<hex>`.
    pub fn path_of(&self, key: &Sha256) -> PathBuf {
        let hex = key.to_hex();
        self.root
            .join("sha256")
            .join(&hex[0..2])
            .join(&hex[2..4])
            .join(hex)
    }

    fn remove_spool_files(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.tmp) else {
            return 0;
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| std::fs::remove_file(e.path()).is_ok())
            .count()
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    fn spool_dir(&self) -> &Path {
        &self.tmp
    }

    async fn put(
        &self,
        key: Sha256,
        file: &tempfile::NamedTempFile,
    ) -> Result<Persisted, BlobError> {
        let dest = self.path_of(&key);
        let handle = file.as_file().try_clone().map_err(BlobError::io)?;
        let path = file.path().to_owned();
        tokio::task::spawn_blocking(move || persist_file_no_clobber(&handle, &path, &dest))
            .await
            .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
            .map_err(BlobError::io)
    }

    async fn open(&self, key: &Sha256, offset: u64) -> Result<Blob, BlobError> {
        let mut file = match tokio::fs::File::open(self.path_of(key)).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BlobError::Missing(*key));
            }
            Err(e) => return Err(BlobError::io(e)),
        };
        let size = file.metadata().await.map_err(BlobError::io)?.len();
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))
                .await
                .map_err(BlobError::io)?;
        }
        Ok(Blob {
            size,
            reader: Box::pin(file),
        })
    }

    /// Read and hashed on a blocking thread with plain file reads: no trip
    /// through the async runtime per chunk (a `verify` run's whole cost).
    async fn verify(&self, key: &Sha256, size: u64) -> Result<(), BlobError> {
        let path = self.path_of(key);
        let key = *key;
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(BlobError::Missing(key));
                }
                Err(e) => return Err(BlobError::io(e)),
            };
            let mut hasher = crate::model::Sha256Hasher::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut seen = 0u64;
            loop {
                let n = file.read(&mut buf).map_err(BlobError::io)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                seen += n as u64;
            }
            super::check_digest(&key, size, seen, hasher.finish())
        })
        .await
        .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
    }

    async fn head(&self, key: &Sha256) -> Result<Option<u64>, BlobError> {
        match tokio::fs::metadata(self.path_of(key)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BlobError::io(e)),
        }
    }

    async fn list(&self, after: Option<Sha256>, limit: usize) -> Result<Vec<Listed>, BlobError> {
        let root = self.root.join("sha256");
        tokio::task::spawn_blocking(move || list_dir(&root, after, limit))
            .await
            .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
            .map_err(BlobError::io)
    }

    async fn delete(&self, key: &Sha256) -> Result<bool, BlobError> {
        let path = self.path_of(key);
        tokio::task::spawn_blocking(move || {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            }
            // The removal must last as the catalog change after it does.
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(true)
        })
        .await
        .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
        .map_err(BlobError::io)
    }

    fn clean_spool(&self) -> usize {
        self.remove_spool_files()
    }

    async fn probe(&self) -> Result<(), BlobError> {
        let tmp = self.tmp.clone();
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

    fn url(&self) -> String {
        super::canonical_url(&self.root.display().to_string())
            .unwrap_or_else(|_| format!("file://{}", self.root.display()))
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }
}

/// The blobs under `root` (`ab/cd/<hex>`) after `after`, in key order:
/// directories are read sorted, and those wholly before `after` skipped.
fn list_dir(root: &Path, after: Option<Sha256>, limit: usize) -> std::io::Result<Vec<Listed>> {
    let after_hex = after.map(|k| k.to_hex()).unwrap_or_default();
    let mut found = Vec::new();
    if limit == 0 {
        return Ok(found);
    }
    for first in sorted_names(root)? {
        if after_hex.get(0..2).is_some_and(|a| first.as_str() < a) {
            continue;
        }
        for second in sorted_names(&root.join(&first))? {
            let prefix = format!("{first}{second}");
            if after_hex.get(0..4).is_some_and(|a| prefix.as_str() < a) {
                continue;
            }
            let dir = root.join(&first).join(&second);
            for name in sorted_names(&dir)? {
                if name.as_str() <= after_hex.as_str() {
                    continue;
                }
                // Anything not named by a key is not a blob of ours.
                let Ok(key) = name.parse::<Sha256>() else {
                    continue;
                };
                let meta = match std::fs::metadata(dir.join(&name)) {
                    Ok(m) => m,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                let modified = meta
                    .modified()?
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                found.push(Listed {
                    key,
                    size: meta.len(),
                    modified: Timestamp::from_millis(modified),
                });
                if found.len() >= limit {
                    return Ok(found);
                }
            }
        }
    }
    Ok(found)
}

fn sorted_names(dir: &Path) -> std::io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    fn spooled(store: &FsBlobStore, bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut t = tempfile::NamedTempFile::new_in(store.spool_dir()).expect("temp");
        t.write_all(bytes).expect("write");
        t
    }

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

    #[tokio::test]
    async fn put_stores_once_under_the_content_key_and_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path()).expect("opens");
        let key = Sha256::of(b"bytes");
        assert_eq!(
            store
                .put(key, &spooled(&store, b"bytes"))
                .await
                .expect("put"),
            Persisted::Created
        );
        assert_eq!(
            store
                .put(key, &spooled(&store, b"bytes"))
                .await
                .expect("put"),
            Persisted::AlreadyPresent
        );
        assert!(store.path_of(&key).ends_with(format!(
            "sha256/{}/{}/{}",
            &key.to_hex()[..2],
            &key.to_hex()[2..4],
            key.to_hex()
        )));
        assert_eq!(
            std::fs::read_dir(store.spool_dir()).expect("tmp").count(),
            0
        );
        let mut blob = store.open(&key, 2).await.expect("open");
        let mut rest = Vec::new();
        blob.reader.read_to_end(&mut rest).await.expect("read");
        assert_eq!((blob.size, rest.as_slice()), (5, &b"tes"[..]));
        assert_eq!(store.head(&key).await.expect("head"), Some(5));
        assert!(matches!(
            store.open(&Sha256::of(b"none"), 0).await,
            Err(BlobError::Missing(_))
        ));
    }

    #[test]
    fn leftover_spool_files_are_removed_when_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("tmp")).expect("mkdir");
        std::fs::write(dir.path().join("tmp/.tmpXYZ"), b"half an upload").expect("write");
        let store = FsBlobStore::open(dir.path()).expect("opens");
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp"))
                .expect("tmp")
                .count(),
            1
        );
        assert_eq!(store.clean_spool(), 1);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp"))
                .expect("tmp")
                .count(),
            0
        );
    }
}
