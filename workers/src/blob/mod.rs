//! Where image bytes live. Content-addressed: a blob's key is the sha256 of
//! its bytes, so a key never changes meaning and the same bytes are kept
//! once. Front doors and stages see only the [`BlobStore`] trait; the
//! composition root decides which store backs it.

mod durable;
mod fs;
mod memory;
mod open;
mod placed;
mod s3;
mod verify;

pub use durable::{Persisted, persist_file_no_clobber, persist_no_clobber};
pub use fs::FsBlobStore;
pub use memory::MemoryBlobStore;
pub use open::{StoreCache, canonical_url, open_url};
pub use placed::{BlobLocations, PlacedBlobStore};
pub use s3::{S3BlobStore, S3Location};
pub use verify::{IntegrityError, VerifiedStream};

use std::io;
use std::path::Path;
use std::pin::Pin;

use async_trait::async_trait;
use tokio::io::AsyncRead;

use crate::model::{Sha256, Timestamp};

/// A blob store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob store is not writable at {location}")]
    NotWritable {
        location: String,
        #[source]
        source: io::Error,
    },
    #[error("unsupported blob store url: {0}")]
    UnsupportedUrl(String),
    #[error("blob {0} is missing")]
    Missing(Sha256),
    #[error("the blob store is out of space")]
    Full(#[source] io::Error),
    #[error("blob store i/o failed")]
    Io(#[source] io::Error),
    /// The store cannot be reached or will not serve us: an endpoint that
    /// does not answer, refused credentials, a missing bucket. The message
    /// says what to do; nothing was written.
    #[error("blob store unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Integrity(#[from] IntegrityError),
}

impl BlobError {
    /// Classifies an I/O error: a full disk is its own kind (HTTP 507).
    pub fn io(error: io::Error) -> Self {
        if error.kind() == io::ErrorKind::StorageFull || error.raw_os_error() == Some(28) {
            BlobError::Full(error)
        } else {
            BlobError::Io(error)
        }
    }

    /// Whether trying again later may succeed (the store was down or out
    /// of space), as opposed to a fault of the blob or the request.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            BlobError::Io(_)
                | BlobError::NotWritable { .. }
                | BlobError::Full(_)
                | BlobError::Unavailable(_)
        )
    }

    /// The error a [`VerifiedStream`] ended with: an integrity failure stays
    /// one; anything else is an I/O error.
    pub fn from_stream(error: io::Error) -> Self {
        match error
            .into_inner()
            .map(|inner| inner.downcast::<IntegrityError>())
        {
            Some(Ok(integrity)) => BlobError::Integrity(*integrity),
            Some(Err(other)) => BlobError::Io(io::Error::other(other)),
            None => BlobError::Io(io::Error::other("read failed")),
        }
    }
}

/// An open blob: its size and a reader of its bytes (unverified; wrap it in
/// a [`VerifiedStream`] or verify before serving).
pub struct Blob {
    pub size: u64,
    pub reader: Pin<Box<dyn AsyncRead + Send>>,
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blob")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// A blob as the store itself lists it (not as the catalog records it):
/// what `sweep` compares with the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    pub key: Sha256,
    pub size: u64,
    /// When the store last wrote it: an object younger than the sweep's
    /// grace period may belong to an upload not yet committed.
    pub modified: Timestamp,
}

/// Reads a whole blob through its digest check, discarding the bytes: the
/// proof a partial read (an HTTP range) cannot give on its own. The store
/// does it the fastest way it knows ([`BlobStore::verify`]).
pub async fn verify_blob(store: &dyn BlobStore, key: &Sha256, size: u64) -> Result<(), BlobError> {
    store.verify(key, size).await
}

/// Copies a blob into a new spool file in `dir`, proving on the way that
/// its bytes are `size` long and hash to `key`.
pub async fn spool_verified(
    store: &dyn BlobStore,
    key: &Sha256,
    size: u64,
    dir: &Path,
) -> Result<tempfile::NamedTempFile, BlobError> {
    use futures_util::StreamExt;
    use std::io::Write;
    let blob = store.open(key, 0).await?;
    let mut stream = VerifiedStream::new(blob.reader, *key, size);
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(BlobError::io)?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BlobError::from_stream)?;
        file.write_all(&chunk).map_err(BlobError::io)?;
    }
    Ok(file)
}

/// Called once the catalog row referring to `key` is committed. When the
/// put found the bytes already stored, a `sweep` may have removed that
/// unreferenced copy between the put and the commit (it deletes only under
/// the blob's catalog lock, which the commit also takes, so by now it has
/// either seen the reference or finished deleting): put them again.
pub async fn keep_after_commit(
    store: &dyn BlobStore,
    key: Sha256,
    file: &tempfile::NamedTempFile,
    persisted: Persisted,
) -> Result<(), BlobError> {
    if persisted == Persisted::AlreadyPresent && store.head(&key).await?.is_none() {
        tracing::warn!(blob = %key, "stored bytes were swept during the upload; storing them again");
        store.put(key, file).await?;
    }
    Ok(())
}

/// Checks `size` bytes read against `key` and `size`.
fn check_digest(key: &Sha256, size: u64, seen: u64, digest: Sha256) -> Result<(), BlobError> {
    let fail = |reason: String| {
        BlobError::Integrity(IntegrityError {
            expected: *key,
            reason,
        })
    };
    if seen != size {
        return Err(fail(format!("{seen} bytes where {size} were stored")));
    }
    if digest != *key {
        return Err(fail(format!("its bytes hash to {digest}")));
    }
    Ok(())
}

/// Any store's whole-blob check: its reader, hashed through one reused
/// 1 MiB buffer (nothing is delivered, so no chunk needs holding back).
async fn verify_by_reading(
    store: &(impl BlobStore + ?Sized),
    key: &Sha256,
    size: u64,
) -> Result<(), BlobError> {
    use tokio::io::AsyncReadExt;
    let mut blob = store.open(key, 0).await?;
    let mut hasher = crate::model::Sha256Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut seen = 0u64;
    loop {
        let n = blob.reader.read(&mut buf).await.map_err(BlobError::io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        seen += n as u64;
    }
    check_digest(key, size, seen, hasher.finish())
}

/// Removes the files in a spool directory; returns how many.
fn remove_spool_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// A place that keeps blobs durably.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// A local directory for upload spool files. For the filesystem store it
    /// is on the same filesystem as the blobs, so a put is a link, not a copy.
    fn spool_dir(&self) -> &Path;

    /// Makes the spooled file's bytes durable under `key` (which must be
    /// their sha256). An existing key is left as it is: same key, same bytes.
    /// The caller keeps the spool file (and removes it by dropping it), so
    /// it can put the bytes again should a sweep remove an existing copy
    /// before the caller's catalog row refers to it.
    async fn put(
        &self,
        key: Sha256,
        file: &tempfile::NamedTempFile,
    ) -> Result<Persisted, BlobError>;

    /// Opens a blob for reading from byte `offset`.
    async fn open(&self, key: &Sha256, offset: u64) -> Result<Blob, BlobError>;

    /// Reads the whole blob and proves it is `size` bytes hashing to `key`
    /// (`Missing` when absent, `Integrity` when not).
    async fn verify(&self, key: &Sha256, size: u64) -> Result<(), BlobError> {
        verify_by_reading(self, key, size).await
    }

    /// The size of a blob, or `None` when it is absent.
    async fn head(&self, key: &Sha256) -> Result<Option<u64>, BlobError>;

    /// Up to `limit` blobs the store holds with keys after `after` (`None`:
    /// from the first), in key order.
    async fn list(&self, after: Option<Sha256>, limit: usize) -> Result<Vec<Listed>, BlobError>;

    /// Removes a blob; `false` when it was not there. Only `sweep` and
    /// `migrate --delete-source` call it, each after proving the bytes are
    /// unreferenced or safely elsewhere.
    async fn delete(&self, key: &Sha256) -> Result<bool, BlobError>;

    /// Removes upload spool files a crashed run left behind (never
    /// acknowledged); returns how many. Called once at server start.
    fn clean_spool(&self) -> usize;

    /// Proves the store can take a durable write right now (for `/readyz`).
    async fn probe(&self) -> Result<(), BlobError>;

    /// The store's canonical URL ([`canonical_url`]): how the catalog
    /// records where a blob is kept.
    fn url(&self) -> String;

    /// Where the store is, for logs and operators (no secrets).
    fn describe(&self) -> String;
}
