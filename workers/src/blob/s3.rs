//! Blobs in an S3 bucket (AWS or any S3-compatible server), for sites that
//! run many `relay` processes on one bucket.
//!
//! Objects are `<prefix>/sha256/ab/cd/<hex>`, the filesystem store's layout.
//! The server proves every write: a blob's key is its sha256, so a single
//! PUT sends it as `x-amz-checksum-sha256` and the server refuses bytes that
//! do not match (`BadDigest`); larger blobs go up in parts, each with its
//! own sha256 (see [`multipart`]). A key is never overwritten: the PUT and
//! the multipart completion carry `If-None-Match: *`, and the server's 412
//! means the same bytes are already there, which is also how the same
//! image uploaded twice is stored once. SeaweedFS (the server the tests
//! run against) honours `If-None-Match` on both, so no HEAD-before-write is
//! needed for correctness (a large blob is HEADed first only to spare
//! sending it again). SeaweedFS checks the condition when a request
//! arrives, so two completions racing on one new key can both succeed:
//! harmless with content keys, as both carry the same verified bytes.
//! Reads stream a range of the object and are re-hashed by the caller's
//! [`VerifiedStream`](super::VerifiedStream).
//!
//! Upload spool files stay on local disk (a directory given at
//! construction), since the digest must be known before the PUT starts.

mod failure;
mod location;
mod multipart;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use base64::Engine;

use self::failure::{Failure, Unavailable};
pub use self::location::S3Location;
use super::{Blob, BlobError, BlobStore, Listed, Persisted};
use crate::model::{Sha256, Timestamp};

/// How long to wait for a TCP (and TLS) connection before calling the
/// endpoint unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a request without a large body (HEAD, the start of a GET, the
/// probe) may wait for its answer. An endpoint that accepts connections and
/// never answers must not hang an upload, a read or a worker's job (whose
/// heartbeat would otherwise keep it from every other worker).
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The slowest upload speed a PUT is allowed before it is given up: its
/// time limit is [`ANSWER_TIMEOUT`] plus its size at this speed.
const SLOWEST_UPLOAD_BYTES_PER_SECOND: u64 = 256 * 1024;

/// A per-request override giving the whole attempt `limit` (the body of a
/// GET streams after it, unbounded).
pub(crate) fn answer_within(limit: Duration) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::default().timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(limit)
            .build(),
    )
}

/// The time limit of a PUT of `size` bytes.
pub(crate) fn upload_limit(size: u64) -> Duration {
    ANSWER_TIMEOUT + Duration::from_secs(size / SLOWEST_UPLOAD_BYTES_PER_SECOND)
}

/// A blob store in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3BlobStore {
    client: Client,
    location: S3Location,
    /// As opened: how the catalog names this store.
    url: String,
    spool: PathBuf,
}

impl S3BlobStore {
    /// Opens the store named by `url` (`s3://bucket/prefix?endpoint=…`),
    /// with credentials from the standard AWS chain (environment, profile,
    /// container or instance role). Spool files go to `spool_dir`, created
    /// when missing. Nothing is sent yet: [`BlobStore::probe`] checks the
    /// bucket and the credentials.
    pub async fn open(url: &str, spool_dir: impl Into<PathBuf>) -> Result<Self, BlobError> {
        Self::build(url, spool_dir.into(), None).await
    }

    /// Like [`S3BlobStore::open`] with the given access key instead of the
    /// AWS chain.
    pub async fn open_with_credentials(
        url: &str,
        spool_dir: impl Into<PathBuf>,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Result<Self, BlobError> {
        let credentials = Credentials::new(
            access_key_id,
            secret_access_key,
            None,
            None,
            "relay-blob-url",
        );
        Self::build(url, spool_dir.into(), Some(credentials)).await
    }

    async fn build(
        url: &str,
        spool: PathBuf,
        credentials: Option<Credentials>,
    ) -> Result<Self, BlobError> {
        let location = S3Location::parse(url)?;
        std::fs::create_dir_all(&spool).map_err(|source| BlobError::NotWritable {
            location: spool.display().to_string(),
            source,
        })?;
        // rustls on ring, like every other TLS client of the process.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .build(),
            );
        if let Some(region) = &location.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(credentials) = credentials {
            loader = loader.credentials_provider(credentials);
        }
        let shared = loader.load().await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            // Checksums are the store's own business: sha256 where it
            // sends them, re-hashing on read.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &location.endpoint {
            // S3-compatible servers serve buckets as paths, not host names;
            // their region is nominal.
            config = config.endpoint_url(endpoint).force_path_style(true);
            if shared.region().is_none() {
                config = config.region(Region::from_static("us-east-1"));
            }
        } else if shared.region().is_none() {
            return Err(BlobError::UnsupportedUrl(format!(
                "{url}: no AWS region: add region=… to the url or set AWS_REGION"
            )));
        }
        Ok(Self {
            client: Client::from_conf(config.build()),
            location,
            url: url.to_owned(),
            spool,
        })
    }

    /// The S3 client, for tools that work on the bucket directly.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn location(&self) -> &S3Location {
        &self.location
    }

    /// The object key of a blob: `<prefix>/sha256/ab/cd/<hex>`.
    pub fn object_key(&self, key: &Sha256) -> String {
        self.location.blob_key(&key.to_hex())
    }

    fn fail(&self, operation: &str, key: Option<&Sha256>, failure: Failure) -> BlobError {
        failure.into_blob_error(operation, &self.location, key)
    }

    /// One PUT carrying the sha256, never replacing an existing object.
    async fn put_whole(
        &self,
        key: &Sha256,
        path: &Path,
        size: u64,
    ) -> Result<Persisted, BlobError> {
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| BlobError::Io(std::io::Error::other(e)))?;
        let sent = self
            .client
            .put_object()
            .bucket(&self.location.bucket)
            .key(self.object_key(key))
            .content_length(i64::try_from(size).unwrap_or(i64::MAX))
            .checksum_sha256(base64::engine::general_purpose::STANDARD.encode(key.as_bytes()))
            .if_none_match("*")
            .body(body)
            .customize()
            .config_override(answer_within(upload_limit(size)))
            .send()
            .await;
        match sent.map_err(Failure::of) {
            Ok(_) => Ok(Persisted::Created),
            Err(Failure::AlreadyExists) => Ok(Persisted::AlreadyPresent),
            Err(failure) => Err(self.fail("put", Some(key), failure)),
        }
    }

    /// Writes and deletes a tiny object under `<prefix>/probe/`.
    async fn probe_write(&self) -> Result<(), BlobError> {
        let object = self
            .location
            .key(&format!("probe/{}", uuid::Uuid::now_v7().simple()));
        self.client
            .put_object()
            .bucket(&self.location.bucket)
            .key(&object)
            .body(ByteStream::from_static(b"probe"))
            .customize()
            .config_override(answer_within(ANSWER_TIMEOUT))
            .send()
            .await
            .map_err(|e| self.fail("probe write", None, Failure::of(e)))?;
        self.client
            .delete_object()
            .bucket(&self.location.bucket)
            .key(&object)
            .customize()
            .config_override(answer_within(ANSWER_TIMEOUT))
            .send()
            .await
            .map_err(|e| self.fail("probe delete", None, Failure::of(e)))?;
        Ok(())
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    fn spool_dir(&self) -> &Path {
        &self.spool
    }

    async fn put(
        &self,
        key: Sha256,
        file: &tempfile::NamedTempFile,
    ) -> Result<Persisted, BlobError> {
        let size = file.as_file().metadata().map_err(BlobError::io)?.len();
        if size <= self.location.multipart_threshold {
            self.put_whole(&key, file.path(), size).await
        } else if self.head(&key).await?.is_some() {
            // Already stored: spare sending a large blob again.
            Ok(Persisted::AlreadyPresent)
        } else {
            let object = self.object_key(&key);
            multipart::upload(
                &self.client,
                &self.location,
                &object,
                key,
                file.path(),
                size,
            )
            .await
        }
    }

    async fn open(&self, key: &Sha256, offset: u64) -> Result<Blob, BlobError> {
        let mut request = self
            .client
            .get_object()
            .bucket(&self.location.bucket)
            .key(self.object_key(key));
        if offset > 0 {
            request = request.range(format!("bytes={offset}-"));
        }
        let output = match request
            .customize()
            .config_override(answer_within(ANSWER_TIMEOUT))
            .send()
            .await
            .map_err(Failure::of)
        {
            Ok(output) => output,
            Err(Failure::InvalidRange) => {
                // Reading from the very end: nothing left, as a file gives.
                return match self.head(key).await? {
                    Some(size) if offset >= size => Ok(Blob {
                        size,
                        reader: Box::pin(tokio::io::empty()),
                    }),
                    Some(_) => Err(self.fail("get", Some(key), Failure::InvalidRange)),
                    None => Err(BlobError::Missing(*key)),
                };
            }
            Err(failure) => return Err(self.fail("get", Some(key), failure)),
        };
        let size = match output.content_range() {
            Some(range) => total_of_content_range(range),
            None => output.content_length().and_then(|n| u64::try_from(n).ok()),
        }
        .ok_or_else(|| BlobError::Io(std::io::Error::other("S3 answered without a size")))?;
        Ok(Blob {
            size,
            reader: Box::pin(output.body.into_async_read()),
        })
    }

    async fn head(&self, key: &Sha256) -> Result<Option<u64>, BlobError> {
        let answer = self
            .client
            .head_object()
            .bucket(&self.location.bucket)
            .key(self.object_key(key))
            .customize()
            .config_override(answer_within(ANSWER_TIMEOUT))
            .send()
            .await;
        match answer.map_err(Failure::of) {
            Ok(head) => Ok(Some(
                head.content_length()
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
            )),
            Err(Failure::NotFound) => Ok(None),
            Err(failure) => Err(self.fail("head", Some(key), failure)),
        }
    }

    /// One ListObjectsV2 page under `<prefix>/sha256/`: its keys sort as
    /// the blob keys do (`ab/cd/abcd…`), so `start-after` is the cursor.
    async fn list(&self, after: Option<Sha256>, limit: usize) -> Result<Vec<Listed>, BlobError> {
        let root = self.location.key("sha256/");
        let mut request = self
            .client
            .list_objects_v2()
            .bucket(&self.location.bucket)
            .prefix(&root)
            .max_keys(i32::try_from(limit.min(1000)).unwrap_or(1000));
        if let Some(after) = after {
            request = request.start_after(self.object_key(&after));
        }
        let page = request
            .customize()
            .config_override(answer_within(ANSWER_TIMEOUT))
            .send()
            .await
            .map_err(|e| self.fail("list", None, Failure::of(e)))?;
        Ok(page
            .contents()
            .iter()
            .filter_map(|object| {
                let name = object.key()?.rsplit('/').next()?;
                let key = name.parse::<Sha256>().ok()?;
                Some(Listed {
                    key,
                    size: object
                        .size()
                        .and_then(|n| u64::try_from(n).ok())
                        .unwrap_or(0),
                    modified: Timestamp::from_millis(
                        object
                            .last_modified()
                            .and_then(|t| t.to_millis().ok())
                            .unwrap_or(0),
                    ),
                })
            })
            .collect())
    }

    async fn delete(&self, key: &Sha256) -> Result<bool, BlobError> {
        if self.head(key).await?.is_none() {
            return Ok(false);
        }
        self.client
            .delete_object()
            .bucket(&self.location.bucket)
            .key(self.object_key(key))
            .customize()
            .config_override(answer_within(ANSWER_TIMEOUT))
            .send()
            .await
            .map_err(|e| self.fail("delete", Some(key), Failure::of(e)))?;
        Ok(true)
    }

    fn clean_spool(&self) -> usize {
        super::remove_spool_files(&self.spool)
    }

    /// The bucket exists, the credentials are good, and a write goes
    /// through.
    async fn probe(&self) -> Result<(), BlobError> {
        let bucket = self
            .client
            .head_bucket()
            .bucket(&self.location.bucket)
            .customize()
            .config_override(answer_within(ANSWER_TIMEOUT))
            .send()
            .await;
        match bucket.map_err(Failure::of) {
            Ok(_) => {}
            // HeadBucket has no body, so its 404 can only mean the bucket.
            Err(Failure::NotFound) => {
                let failure = Failure::Unavailable(Unavailable::NoBucket);
                return Err(self.fail("probe", None, failure));
            }
            Err(failure) => return Err(self.fail("probe", None, failure)),
        }
        self.probe_write().await
    }

    fn url(&self) -> String {
        self.url.clone()
    }

    fn describe(&self) -> String {
        self.location.describe()
    }
}

/// The total of a `Content-Range: bytes 5-9/10` answer.
fn total_of_content_range(range: &str) -> Option<u64> {
    range.rsplit_once('/')?.1.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_size_comes_from_the_content_range() {
        assert_eq!(total_of_content_range("bytes 5-9/10"), Some(10));
        assert_eq!(total_of_content_range("bytes 0-0/*"), None);
    }
}
