//! Resumable uploads (the tus 1.0 protocol's storage side): an upload is
//! created with its length, receives its bytes in any number of appends,
//! each made durable before its new offset is acknowledged, survives a lost
//! connection or a server restart, and once complete goes through ingest
//! like any other upload.
//!
//! Each upload is two files in the uploads directory: `<id>.part` (the
//! bytes so far; its length is the offset) and `<id>.json` (its
//! [`UploadState`]). Ids are random and unguessable; every lookup also
//! checks the caller's office, and a foreign upload is not found.

mod state;

use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

pub use state::UploadState;

use crate::failpoints::fail_io;
use crate::model::{OfficeId, Sha256, Sha256Hasher, Timestamp};

/// A resumable upload cannot go on as asked.
#[derive(Debug, thiserror::Error)]
pub enum ResumableError {
    #[error("no such upload")]
    NotFound,
    #[error(
        "the upload is at offset {actual}, not {claimed}: ask where it stands (HEAD) and go on from there"
    )]
    OffsetMismatch { claimed: u64, actual: u64 },
    #[error("the upload would grow past its declared length of {length} bytes")]
    TooLong { length: u64 },
    #[error("the upload is larger than the {max} bytes Relay accepts")]
    TooLarge { max: u64 },
    #[error(
        "the chunk's sha256 is not the one sent in Upload-Checksum; it was discarded, send it again"
    )]
    ChecksumMismatch,
    #[error("the upload has already become an image")]
    Finished,
    #[error("the connection broke after {kept} bytes of the chunk; they are kept")]
    Interrupted { kept: u64 },
    #[error("upload storage failed")]
    Io(#[source] std::io::Error),
}

impl ResumableError {
    fn io(error: std::io::Error) -> Self {
        ResumableError::Io(error)
    }
}

/// The uploads directory and its rules.
#[derive(Debug)]
pub struct Resumable {
    dir: PathBuf,
    max_size: u64,
    ttl: Duration,
    /// One append at a time per upload.
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl Resumable {
    /// Uploads kept in `dir` (created when missing), at most `max_size`
    /// bytes each, expiring `ttl` after their last append.
    pub fn open(dir: impl Into<PathBuf>, max_size: u64, ttl: Duration) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            max_size,
            ttl,
            locks: Mutex::default(),
        })
    }

    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    fn part(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.part"))
    }

    fn record(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Only ids this store made (`u` + 32 hex) name files.
    fn checked(id: &str) -> Result<&str, ResumableError> {
        let ok =
            id.len() == 33 && id.starts_with('u') && id[1..].bytes().all(|b| b.is_ascii_hexdigit());
        ok.then_some(id).ok_or(ResumableError::NotFound)
    }

    fn lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        locks.retain(|_, lock| lock.strong_count() > 0);
        if let Some(lock) = locks.get(id).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(id.to_owned(), Arc::downgrade(&lock));
        lock
    }

    /// A new upload id, 128 random bits (for the audit event written
    /// before [`create`](Self::create)).
    pub fn new_id() -> Result<String, ResumableError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)
            .map_err(|e| ResumableError::Io(std::io::Error::other(e.to_string())))?;
        Ok(format!("u{}", hex::encode(bytes)))
    }

    /// Records a new, empty upload.
    pub async fn create(&self, state: UploadState) -> Result<UploadState, ResumableError> {
        Self::checked(&state.id)?;
        if state.length > self.max_size {
            return Err(ResumableError::TooLarge { max: self.max_size });
        }
        let (part, record) = (self.part(&state.id), self.record(&state.id));
        let saved = state.clone();
        blocking(move || {
            let file = std::fs::File::create_new(&part)?;
            file.sync_all()?;
            state::write(&record, &saved)
        })
        .await?;
        Ok(state)
    }

    /// The upload `id` of `office` and its offset (bytes durably received).
    pub async fn find(
        &self,
        office: OfficeId,
        id: &str,
    ) -> Result<(UploadState, u64), ResumableError> {
        let id = Self::checked(id)?;
        let (part, record) = (self.part(id), self.record(id));
        let (state, offset) = blocking(move || {
            let state = state::read(&record)?;
            let offset = match std::fs::metadata(&part) {
                Ok(m) => m.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                Err(e) => return Err(e),
            };
            Ok((state, offset))
        })
        .await?;
        match state {
            Some(state) if state.office == office && state.expires_at > Timestamp::now() => {
                // A finished upload's bytes live on as its image.
                let offset = if state.image.is_some() {
                    state.length
                } else {
                    offset
                };
                Ok((state, offset))
            }
            _ => Err(ResumableError::NotFound),
        }
    }

    /// Appends `body` at `offset` (which must be where the upload stands),
    /// fsyncs, and returns the new offset. With `checksum`, the chunk is
    /// kept only when its sha256 matches; without, a broken connection
    /// keeps what arrived (made durable) and says so.
    pub async fn append<S, E>(
        &self,
        office: OfficeId,
        id: &str,
        offset: u64,
        body: S,
        checksum: Option<Sha256>,
    ) -> Result<(UploadState, u64), ResumableError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
    {
        let lock = self.lock(id);
        let _turn = lock.lock().await;
        let (mut state, actual) = self.find(office, id).await?;
        if state.image.is_some() {
            return Err(ResumableError::Finished);
        }
        if actual != offset {
            return Err(ResumableError::OffsetMismatch {
                claimed: offset,
                actual,
            });
        }
        let part = self.part(&state.id);
        let mut file = blocking({
            let part = part.clone();
            move || {
                let mut file = std::fs::OpenOptions::new().write(true).open(&part)?;
                file.seek(SeekFrom::Start(offset))?;
                Ok(file)
            }
        })
        .await?;
        let mut hasher = checksum.map(|_| Sha256Hasher::new());
        let mut written = 0u64;
        let mut broken = false;
        let mut body = body;
        // The offset is the file's length, so bytes whose write or fsync
        // failed must not stay: cut back to the last acknowledged offset.
        let stored = async {
            while let Some(chunk) = body.next().await {
                let Ok(chunk) = chunk else {
                    broken = true;
                    break;
                };
                if offset + written + chunk.len() as u64 > state.length {
                    truncate(&part, offset).await?;
                    return Err(ResumableError::TooLong {
                        length: state.length,
                    });
                }
                if let Some(hasher) = hasher.as_mut() {
                    hasher.update(&chunk);
                }
                let size = chunk.len() as u64;
                (file, ()) = blocking_with(file, move |f| f.write_all(&chunk)).await?;
                written += size;
            }
            if let (Some(expected), Some(hasher)) = (checksum, hasher)
                && (broken || hasher.finish() != expected)
            {
                truncate(&part, offset).await?;
                return Err(if broken {
                    ResumableError::Interrupted { kept: 0 }
                } else {
                    ResumableError::ChecksumMismatch
                });
            }
            // Durable before the new offset is acknowledged.
            blocking_with(file, sync_chunk).await?;
            Ok(())
        }
        .await;
        if let Err(e) = stored {
            if let Err(undo) = truncate(&part, offset).await {
                tracing::warn!(error = %undo, "an upload's unacknowledged bytes could not be cut back");
            }
            return Err(e);
        }
        state.expires_at = Timestamp::now().plus(self.ttl);
        let record = self.record(&state.id);
        let saved = state.clone();
        blocking(move || state::write(&record, &saved)).await?;
        if broken {
            return Err(ResumableError::Interrupted { kept: written });
        }
        Ok((state, offset + written))
    }

    /// The complete upload's bytes, for ingest.
    pub fn bytes_path(&self, state: &UploadState) -> PathBuf {
        self.part(&state.id)
    }

    /// Records the image the upload became and removes its bytes (the image
    /// holds them now); the record stays until it expires, so a client that
    /// lost the answer can ask again.
    pub async fn finish(
        &self,
        mut state: UploadState,
        image: crate::model::ImageId,
    ) -> Result<UploadState, ResumableError> {
        state.image = Some(image);
        let (record, part) = (self.record(&state.id), self.part(&state.id));
        let saved = state.clone();
        blocking(move || {
            state::write(&record, &saved)?;
            remove(&part)
        })
        .await?;
        Ok(state)
    }

    /// Removes an upload (termination, or refused bytes).
    pub async fn remove(&self, state: &UploadState) -> Result<(), ResumableError> {
        let (record, part) = (self.record(&state.id), self.part(&state.id));
        blocking(move || {
            remove(&part)?;
            remove(&record)
        })
        .await
    }

    /// Removes expired uploads; returns them (for the audit trail).
    pub async fn sweep_expired(&self) -> Result<Vec<UploadState>, ResumableError> {
        let dir = self.dir.clone();
        let now = Timestamp::now();
        blocking(move || {
            let mut expired = Vec::new();
            for entry in std::fs::read_dir(&dir)?.filter_map(Result::ok) {
                let path = entry.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let Ok(Some(state)) = state::read(&path) else {
                    continue;
                };
                if state.expires_at <= now {
                    remove(&path.with_extension("part"))?;
                    remove(&path)?;
                    if state.image.is_none() {
                        expired.push(state);
                    }
                }
            }
            Ok(expired)
        })
        .await
    }
}

/// Makes an appended chunk durable (the failpoint `resumable.fsync`).
fn sync_chunk(file: &mut std::fs::File) -> std::io::Result<()> {
    fail_io!("resumable.fsync");
    file.sync_data()
}

fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

async fn truncate(part: &Path, offset: u64) -> Result<(), ResumableError> {
    let part = part.to_owned();
    blocking(move || {
        let file = std::fs::OpenOptions::new().write(true).open(&part)?;
        file.set_len(offset)?;
        file.sync_data()
    })
    .await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, ResumableError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ResumableError::Io(std::io::Error::other(e)))?
        .map_err(ResumableError::io)
}

/// Runs `f` on `file` on the blocking pool, handing the file back.
async fn blocking_with<R: Send + 'static>(
    mut file: std::fs::File,
    f: impl FnOnce(&mut std::fs::File) -> std::io::Result<R> + Send + 'static,
) -> Result<(std::fs::File, R), ResumableError> {
    let (file, result) = tokio::task::spawn_blocking(move || {
        let result = f(&mut file);
        (file, result)
    })
    .await
    .map_err(|e| ResumableError::Io(std::io::Error::other(e)))?;
    Ok((file, result.map_err(ResumableError::io)?))
}
