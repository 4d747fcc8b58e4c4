//! Reading a blob while proving its bytes.
//!
//! A reader re-hashes as it streams and compares with the key at the end.
//! So that a corrupt blob is never delivered *whole*, the last chunk is
//! held back until the digest is known: on a mismatch the stream ends in an
//! error instead, and an HTTP client sees a truncated, failed response
//! rather than a complete bad file.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use tokio::io::AsyncRead;
use tokio_util::io::ReaderStream;

use crate::model::{Sha256, Sha256Hasher};

/// A blob's bytes did not match its key (or its recorded size).
#[derive(Debug, Clone, thiserror::Error)]
#[error("blob {expected} failed verification: {reason}")]
pub struct IntegrityError {
    pub expected: Sha256,
    pub reason: String,
}

/// Called once when verification fails, to log and count it.
type FailureHook = Box<dyn FnOnce(&IntegrityError) + Send>;

/// A stream of a blob's bytes that fails rather than finish with bad data.
pub struct VerifiedStream {
    inner: ReaderStream<Pin<Box<dyn AsyncRead + Send>>>,
    hasher: Option<Sha256Hasher>,
    expected: Sha256,
    expected_size: u64,
    seen: u64,
    held: Option<Bytes>,
    on_failure: Option<FailureHook>,
}

impl std::fmt::Debug for VerifiedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedStream")
            .field("expected", &self.expected)
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl VerifiedStream {
    pub fn new(
        reader: Pin<Box<dyn AsyncRead + Send>>,
        expected: Sha256,
        expected_size: u64,
    ) -> Self {
        Self {
            inner: ReaderStream::with_capacity(reader, 64 * 1024),
            hasher: Some(Sha256Hasher::new()),
            expected,
            expected_size,
            seen: 0,
            held: None,
            on_failure: None,
        }
    }

    /// Runs `callback` once if verification fails (to log and count it).
    pub fn on_failure(mut self, callback: impl FnOnce(&IntegrityError) + Send + 'static) -> Self {
        self.on_failure = Some(Box::new(callback));
        self
    }

    fn fail(&mut self, reason: String) -> IntegrityError {
        let error = IntegrityError {
            expected: self.expected,
            reason,
        };
        if let Some(callback) = self.on_failure.take() {
            callback(&error);
        }
        error
    }
}

impl Stream for VerifiedStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.hasher.is_none() {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    this.hasher = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Some(h) = this.hasher.as_mut() {
                        h.update(&chunk);
                    }
                    this.seen += chunk.len() as u64;
                    if this.seen > this.expected_size {
                        this.hasher = None;
                        let e = this.fail(format!(
                            "longer than its recorded {} bytes",
                            this.expected_size
                        ));
                        return Poll::Ready(Some(Err(std::io::Error::other(e))));
                    }
                    // Release the previous chunk, hold this one back.
                    if let Some(previous) = this.held.replace(chunk) {
                        return Poll::Ready(Some(Ok(previous)));
                    }
                }
                Poll::Ready(None) => {
                    let actual = this.hasher.take().map(Sha256Hasher::finish);
                    let reason = if this.seen != this.expected_size {
                        Some(format!(
                            "{} bytes, recorded {}",
                            this.seen, this.expected_size
                        ))
                    } else if actual != Some(this.expected) {
                        Some("content does not match its sha256".to_owned())
                    } else {
                        None
                    };
                    return match reason {
                        Some(reason) => {
                            this.held = None;
                            let e = this.fail(reason);
                            Poll::Ready(Some(Err(std::io::Error::other(e))))
                        }
                        None => Poll::Ready(this.held.take().map(Ok)),
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    async fn collect(bytes: &'static [u8], expected: Sha256, size: u64) -> (Vec<u8>, bool) {
        let reader: Pin<Box<dyn AsyncRead + Send>> = Box::pin(bytes);
        let mut stream = VerifiedStream::new(reader, expected, size);
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => out.extend_from_slice(&chunk),
                Err(_) => return (out, false),
            }
        }
        (out, true)
    }

    #[tokio::test]
    async fn good_bytes_stream_through() {
        let data: &'static [u8] = b"the original bytes";
        let (out, ok) = collect(data, Sha256::of(data), data.len() as u64).await;
        assert!(ok);
        assert_eq!(out, data);
    }

    #[tokio::test]
    async fn a_flipped_byte_never_arrives_complete() {
        let data: &'static [u8] = b"the original bytes";
        let (out, ok) = collect(b"the original bytez", Sha256::of(data), data.len() as u64).await;
        assert!(!ok);
        assert!(out.len() < data.len());
    }

    #[tokio::test]
    async fn a_truncated_blob_fails() {
        let data: &'static [u8] = b"the original bytes";
        let (_, ok) = collect(b"the original", Sha256::of(data), data.len() as u64).await;
        assert!(!ok);
    }
}
