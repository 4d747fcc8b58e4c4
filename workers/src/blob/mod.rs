//! Where image bytes live. Content-addressed: a blob's key is the sha256 of
//! its bytes. Front doors and stages see only the [`BlobStore`] trait; the
//! composition root decides which store backs it.

mod fs;

pub use fs::FsBlobStore;

use async_trait::async_trait;

/// A blob store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob store is not writable at {location}")]
    NotWritable {
        location: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unsupported blob store url: {0}")]
    UnsupportedUrl(String),
}

/// A place that keeps blobs durably.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Proves the store can take a durable write right now (for `/readyz`).
    async fn probe(&self) -> Result<(), BlobError>;

    /// Where the store is, for logs and operators (no secrets).
    fn describe(&self) -> String;
}
