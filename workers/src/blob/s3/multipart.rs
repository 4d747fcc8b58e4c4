//! Large blobs go up in parts, each carrying its own sha256 so the server
//! verifies every part, and become visible under their key only when the
//! upload completes.
//!
//! S3 cannot check a whole multipart object against a sha256 (its checksum
//! of a multipart object is a digest of the part digests), so the store
//! checks the whole file itself before anything is sent: one sequential
//! read computes the part digests and the whole digest, and a spool file
//! whose bytes do not match its key never starts an upload. The parts are
//! then sent straight from the file, a few at a time, never held whole in
//! memory. Any failure aborts the upload, so no parts are left to pay for.

use std::io::Read;
use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use futures_util::{StreamExt, TryStreamExt};

use super::failure::Failure;
use super::location::S3Location;
use super::{ANSWER_TIMEOUT, answer_within, upload_limit};
use crate::blob::{BlobError, IntegrityError, Persisted};
use crate::model::{Sha256, Sha256Hasher};

/// Parts in flight at once: enough to fill a link to a remote bucket
/// without holding many connections per upload.
const CONCURRENT_PARTS: usize = 4;
const READ_BUFFER: usize = 256 * 1024;

/// One part of the file: where it is and its sha256 (base64, as S3 wants).
#[derive(Debug, Clone)]
struct Part {
    number: i32,
    offset: u64,
    length: u64,
    checksum: String,
}

/// Uploads the file at `path` (`size` bytes) as the object `object` in parts
/// of `part_size`, after proving its bytes hash to `key`.
pub async fn upload(
    client: &Client,
    location: &S3Location,
    object: &str,
    key: Sha256,
    path: &Path,
    size: u64,
) -> Result<Persisted, BlobError> {
    let parts = plan(path.to_owned(), size, location.part_size_for(size), key).await?;
    let fail = |f: Failure| f.into_blob_error("multipart upload", location, Some(&key));
    let created = client
        .create_multipart_upload()
        .bucket(&location.bucket)
        .key(object)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .customize()
        .config_override(answer_within(ANSWER_TIMEOUT))
        .send()
        .await
        .map_err(|e| fail(Failure::of(e)))?;
    let upload_id = created.upload_id().ok_or_else(|| {
        BlobError::Io(std::io::Error::other(
            "S3 answered a multipart upload with no id",
        ))
    })?;
    let mut pending = PendingUpload {
        client: client.clone(),
        bucket: location.bucket.clone(),
        object: object.to_owned(),
        upload_id: Some(upload_id.to_owned()),
    };
    let outcome = send_and_complete(client, location, object, upload_id, path, parts).await;
    if matches!(outcome, Ok(Persisted::Created)) {
        pending.upload_id = None;
    } else {
        pending.abort().await;
    }
    outcome.map_err(fail)
}

/// An upload that is not complete yet. Aborted when the put fails, and
/// also when the put is dropped half-way (the client went away): then from
/// a task of its own, since a destructor cannot wait.
#[derive(Debug)]
struct PendingUpload {
    client: Client,
    bucket: String,
    object: String,
    upload_id: Option<String>,
}

impl PendingUpload {
    async fn abort(&mut self) {
        if let Some(upload_id) = self.upload_id.take() {
            abort(&self.client, &self.bucket, &self.object, &upload_id).await;
        }
    }
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (client, bucket, object) = (
            self.client.clone(),
            std::mem::take(&mut self.bucket),
            std::mem::take(&mut self.object),
        );
        runtime.spawn(async move { abort(&client, &bucket, &object, &upload_id).await });
    }
}

async fn send_and_complete(
    client: &Client,
    location: &S3Location,
    object: &str,
    upload_id: &str,
    path: &Path,
    parts: Vec<Part>,
) -> Result<Persisted, Failure> {
    let size: u64 = parts.iter().map(|p| p.length).sum();
    let completed: Vec<CompletedPart> = futures_util::stream::iter(parts)
        .map(|part| send_part(client, location, object, upload_id, path, part))
        .buffered(CONCURRENT_PARTS)
        .try_collect()
        .await?;
    let done = client
        .complete_multipart_upload()
        .bucket(&location.bucket)
        .key(object)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .if_none_match("*")
        // The server may assemble a large object before it answers.
        .customize()
        .config_override(answer_within(upload_limit(size)))
        .send()
        .await;
    match done.map_err(Failure::of) {
        Ok(_) => Ok(Persisted::Created),
        Err(Failure::AlreadyExists) => Ok(Persisted::AlreadyPresent),
        Err(other) => Err(other),
    }
}

async fn send_part(
    client: &Client,
    location: &S3Location,
    object: &str,
    upload_id: &str,
    path: &Path,
    part: Part,
) -> Result<CompletedPart, Failure> {
    let body = ByteStream::read_from()
        .path(path)
        .offset(part.offset)
        .length(Length::Exact(part.length))
        .build()
        .await
        .map_err(|e| Failure::Other(format!("cannot read the spool file: {e}")))?;
    let sent = client
        .upload_part()
        .bucket(&location.bucket)
        .key(object)
        .upload_id(upload_id)
        .part_number(part.number)
        .content_length(i64::try_from(part.length).unwrap_or(i64::MAX))
        .checksum_sha256(&part.checksum)
        .body(body)
        .customize()
        .config_override(answer_within(upload_limit(part.length)))
        .send()
        .await
        .map_err(Failure::of)?;
    Ok(CompletedPart::builder()
        .part_number(part.number)
        .set_e_tag(sent.e_tag().map(str::to_owned))
        .checksum_sha256(&part.checksum)
        .build())
}

/// Best effort: an upload left behind costs storage until the bucket's
/// lifecycle rule (if any) removes it, so the failure is logged.
async fn abort(client: &Client, bucket: &str, object: &str, upload_id: &str) {
    let aborted = client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(object)
        .upload_id(upload_id)
        .customize()
        .config_override(answer_within(ANSWER_TIMEOUT))
        .send()
        .await;
    if let Err(error) = aborted {
        tracing::warn!(
            blob.object = object,
            error = %aws_sdk_s3::error::DisplayErrorContext(&error),
            "could not abort a failed multipart upload"
        );
    }
}

/// Reads the file once: the parts' digests, and proof that the whole
/// hashes to `key`.
async fn plan(
    path: PathBuf,
    size: u64,
    part_size: u64,
    key: Sha256,
) -> Result<Vec<Part>, BlobError> {
    let (parts, whole) = tokio::task::spawn_blocking(move || hash_parts(&path, size, part_size))
        .await
        .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
        .map_err(BlobError::io)?;
    if whole != key {
        return Err(BlobError::Integrity(IntegrityError {
            expected: key,
            reason: format!("the spooled bytes hash to {whole}; nothing was uploaded"),
        }));
    }
    Ok(parts)
}

fn hash_parts(path: &Path, size: u64, part_size: u64) -> std::io::Result<(Vec<Part>, Sha256)> {
    let mut file = std::fs::File::open(path)?;
    let mut whole = Sha256Hasher::new();
    let mut parts = Vec::new();
    let mut buffer = vec![0u8; READ_BUFFER];
    let mut offset = 0u64;
    while offset < size {
        let length = part_size.min(size - offset);
        let mut part = Sha256Hasher::new();
        let mut left = length;
        while left > 0 {
            let want = usize::try_from(left.min(READ_BUFFER as u64)).unwrap_or(READ_BUFFER);
            let chunk = &mut buffer[..want];
            file.read_exact(chunk)?;
            part.update(chunk);
            whole.update(chunk);
            left -= want as u64;
        }
        parts.push(Part {
            number: i32::try_from(parts.len() + 1).map_err(std::io::Error::other)?,
            offset,
            length,
            checksum: base64::engine::general_purpose::STANDARD.encode(part.finish().as_bytes()),
        });
        offset += length;
    }
    Ok((parts, whole.finish()))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn parts_cover_the_file_and_the_whole_digest_is_the_files() {
        let mut file = tempfile::NamedTempFile::new().expect("temp");
        let bytes: Vec<u8> = (0..25u32).map(|i| i as u8).collect();
        file.write_all(&bytes).expect("write");
        let (parts, whole) = hash_parts(file.path(), 25, 10).expect("hash");
        assert_eq!(whole, Sha256::of(&bytes));
        let spans: Vec<_> = parts
            .iter()
            .map(|p| (p.number, p.offset, p.length))
            .collect();
        assert_eq!(spans, vec![(1, 0, 10), (2, 10, 10), (3, 20, 5)]);
        assert_eq!(
            parts[2].checksum,
            base64::engine::general_purpose::STANDARD.encode(Sha256::of(&bytes[20..]).as_bytes())
        );
    }
}
