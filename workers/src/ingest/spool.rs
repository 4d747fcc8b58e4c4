//! Receiving an upload: bytes stream into a temporary file and through
//! sha256 as they arrive. Memory stays flat whatever the size; the limit is
//! enforced while streaming, so an oversized body is refused at the limit,
//! not after it has been written.
//!
//! Hashing and writing run on one blocking thread fed through a small
//! bounded channel, so the network, the hash and the disk work at the same
//! time instead of taking turns on the async executor.

use std::io::{BufWriter, Write};
use std::path::Path;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::IngestError;
use super::sniff::SNIFF_LEN;
use crate::blob::BlobError;
use crate::failpoints::fail_io;
use crate::model::{Sha256, Sha256Hasher};

const WRITE_BUFFER: usize = 1 << 20;
/// Chunks in flight between the socket and the writer (backpressure).
const IN_FLIGHT: usize = 16;

/// An upload held in a temporary file (removed when dropped).
#[derive(Debug)]
pub struct Spooled {
    pub file: tempfile::NamedTempFile,
    pub sha256: Sha256,
    pub size: u64,
    /// The first bytes, for sniffing.
    pub head: Vec<u8>,
}

/// A new spool file in `dir` (removed when dropped).
fn create(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    fail_io!("spool.create");
    tempfile::NamedTempFile::new_in(dir)
}

/// Writes to a spool file, each write a place a fault can be injected.
struct SpoolWriter<'a>(&'a std::fs::File);

impl Write for SpoolWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        fail_io!("spool.write");
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A new spool file in `dir` holding `bytes` (an edited photo).
pub fn write_file(dir: &Path, bytes: &[u8]) -> std::io::Result<tempfile::NamedTempFile> {
    let file = create(dir)?;
    SpoolWriter(file.as_file()).write_all(bytes)?;
    Ok(file)
}

/// Hashes and writes what arrives on `chunks` until the sender is dropped.
fn write_all(
    dir: &Path,
    mut chunks: tokio::sync::mpsc::Receiver<Bytes>,
) -> std::io::Result<(tempfile::NamedTempFile, Sha256)> {
    let file = create(dir)?;
    let mut hasher = Sha256Hasher::new();
    {
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, SpoolWriter(file.as_file()));
        while let Some(chunk) = chunks.blocking_recv() {
            hasher.update(&chunk);
            out.write_all(&chunk)?;
        }
        out.flush()?;
    }
    Ok((file, hasher.finish()))
}

/// Streams `body` into a new file in `dir`, hashing as it goes.
pub async fn spool<S, E>(body: S, dir: &Path, limit: u64) -> Result<Spooled, IngestError>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(IN_FLIGHT);
    let dir = dir.to_owned();
    let writer = tokio::task::spawn_blocking(move || write_all(&dir, receiver));
    let mut head = Vec::with_capacity(SNIFF_LEN);
    let mut size = 0u64;
    let mut refusal = None;
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            refusal = Some(IngestError::Interrupted);
            break;
        };
        size += chunk.len() as u64;
        if size > limit {
            refusal = Some(IngestError::TooLarge { limit });
            break;
        }
        if head.len() < SNIFF_LEN {
            let take = (SNIFF_LEN - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        if sender.send(chunk).await.is_err() {
            break; // the writer failed; its error is reported below
        }
    }
    drop(sender);
    let written = writer
        .await
        .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
        .map_err(BlobError::io);
    // A refusal wins over whatever the writer did; the file is dropped with it.
    if let Some(refusal) = refusal {
        return Err(refusal);
    }
    let (file, sha256) = written?;
    if size == 0 {
        return Err(IngestError::Empty);
    }
    Ok(Spooled {
        file,
        sha256,
        size,
        head,
    })
}

#[cfg(test)]
mod tests {
    use futures_util::stream;

    use super::*;

    fn body(chunks: Vec<&'static [u8]>) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
        stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c))))
    }

    #[tokio::test]
    async fn spools_hashes_and_keeps_the_head() {
        let dir = tempfile::tempdir().expect("dir");
        let s = spool(body(vec![b"hello ", b"world"]), dir.path(), 100)
            .await
            .expect("spooled");
        assert_eq!(s.size, 11);
        assert_eq!(s.sha256, Sha256::of(b"hello world"));
        assert_eq!(s.head, b"hello world");
        assert_eq!(std::fs::read(s.file.path()).expect("read"), b"hello world");
    }

    #[tokio::test]
    async fn refuses_past_the_limit_and_leaves_no_file() {
        let dir = tempfile::tempdir().expect("dir");
        let err = spool(body(vec![b"0123456789", b"0123456789"]), dir.path(), 15)
            .await
            .expect_err("too large");
        assert!(matches!(err, IngestError::TooLarge { limit: 15 }));
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }

    #[tokio::test]
    async fn an_interrupted_body_leaves_no_file() {
        let dir = tempfile::tempdir().expect("dir");
        let chunks = vec![
            Ok(Bytes::from_static(b"part")),
            Err(std::io::Error::other("reset")),
        ];
        let err = spool(stream::iter(chunks), dir.path(), 100)
            .await
            .expect_err("interrupted");
        assert!(matches!(err, IngestError::Interrupted));
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }

    #[tokio::test]
    async fn an_empty_body_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        assert!(matches!(
            spool(body(vec![]), dir.path(), 100).await,
            Err(IngestError::Empty)
        ));
    }
}
