//! What an S3 answer means for a blob store: the SDK's many error shapes
//! reduced to the few cases the store acts on, each turned into a
//! [`BlobError`] whose message tells an operator what to do next.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use super::location::S3Location;
use crate::blob::{BlobError, IntegrityError};
use crate::model::Sha256;

/// The cases the store tells apart.
#[derive(Debug)]
pub enum Failure {
    /// No such object (404, `NoSuchKey`).
    NotFound,
    /// `If-None-Match: *` found the key taken (412): the same bytes are there.
    AlreadyExists,
    /// The server computed another sha256 than the one sent (`BadDigest`).
    BadDigest(String),
    /// A range starting at or past the end (416).
    InvalidRange,
    /// The endpoint, the bucket or the credentials are not usable.
    Unavailable(Unavailable),
    /// Anything else: a fault worth an error, not a diagnosis.
    Other(String),
}

/// Why the store cannot be used right now.
#[derive(Debug)]
pub enum Unavailable {
    Unreachable(String),
    NoCredentials(String),
    NoBucket,
    Refused(String),
    ServerError(String),
}

impl Failure {
    /// Classifies an SDK error by its kind, HTTP status and S3 error code.
    pub fn of<E>(error: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = error.raw_response().map(|r| r.status().as_u16());
        let detail = match (&error, status) {
            (SdkError::ServiceError(_), Some(status)) => {
                let code = match error.code() {
                    Some(code) => format!("{code} (HTTP {status})"),
                    None => format!("HTTP {status}"),
                };
                match error.message() {
                    Some(message) => format!("{code}: {message}"),
                    None => code,
                }
            }
            _ => chain(&error),
        };
        match &error {
            SdkError::DispatchFailure(failure) if failure.is_io() || failure.is_timeout() => {
                return Failure::Unavailable(Unavailable::Unreachable(detail));
            }
            SdkError::TimeoutError(_) => {
                return Failure::Unavailable(Unavailable::Unreachable(detail));
            }
            // Nothing was sent: typically no credentials to sign with.
            SdkError::DispatchFailure(_) => {
                return Failure::Unavailable(Unavailable::NoCredentials(detail));
            }
            SdkError::ConstructionFailure(_) => return Failure::Other(detail),
            _ => {}
        }
        match (error.code(), status) {
            (Some("PreconditionFailed"), _) | (_, Some(412)) => Failure::AlreadyExists,
            (Some("BadDigest" | "InvalidDigest" | "XAmzContentSHA256Mismatch"), _) => {
                Failure::BadDigest(detail)
            }
            (Some("NoSuchBucket"), _) => Failure::Unavailable(Unavailable::NoBucket),
            (Some("NoSuchKey" | "NotFound"), _) | (None, Some(404)) => Failure::NotFound,
            (Some("InvalidRange"), _) | (_, Some(416)) => Failure::InvalidRange,
            (
                Some(
                    "AccessDenied"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "ExpiredToken"
                    | "InvalidToken",
                ),
                _,
            )
            | (_, Some(401 | 403)) => Failure::Unavailable(Unavailable::Refused(detail)),
            (_, Some(500..=599)) => Failure::Unavailable(Unavailable::ServerError(detail)),
            _ => Failure::Other(detail),
        }
    }

    /// The blob error for this failure of `operation` on the store at
    /// `location`, about blob `key` when there is one.
    pub fn into_blob_error(
        self,
        operation: &str,
        location: &S3Location,
        key: Option<&Sha256>,
    ) -> BlobError {
        let place = location.describe();
        match self {
            Failure::NotFound => match key {
                Some(key) => BlobError::Missing(*key),
                None => BlobError::Io(std::io::Error::other(format!(
                    "{operation} on {place}: not found"
                ))),
            },
            Failure::BadDigest(detail) => match key {
                Some(key) => BlobError::Integrity(IntegrityError {
                    expected: *key,
                    reason: format!("the S3 server rejected the bytes as not matching: {detail}"),
                }),
                None => BlobError::Io(std::io::Error::other(detail)),
            },
            Failure::Unavailable(why) => BlobError::Unavailable(why.message(location)),
            Failure::AlreadyExists | Failure::InvalidRange => BlobError::Io(std::io::Error::other(
                format!("{operation} on {place}: unexpected answer"),
            )),
            Failure::Other(detail) => BlobError::Io(std::io::Error::other(format!(
                "{operation} on {place}: {detail}"
            ))),
        }
    }
}

/// An error and its causes on one line: `dispatch failure: io error: …`.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl Unavailable {
    fn message(&self, location: &S3Location) -> String {
        let place = location.describe();
        match self {
            Unavailable::Unreachable(detail) => format!(
                "{place} does not answer ({detail}): start the S3 server or fix the endpoint in --blobs"
            ),
            Unavailable::NoCredentials(detail) => format!(
                "no AWS credentials to sign requests to {place} ({detail}): set \
                 AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or an AWS profile"
            ),
            Unavailable::NoBucket => format!(
                "bucket {} does not exist at {}: create it or fix --blobs",
                location.bucket,
                location.server()
            ),
            Unavailable::Refused(detail) => format!(
                "{place} refused the credentials ({detail}): check AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY (or the AWS profile) and the bucket's permissions"
            ),
            Unavailable::ServerError(detail) => {
                format!("{place} failed ({detail}): retry later or check the S3 server")
            }
        }
    }
}
