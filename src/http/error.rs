//! The one place where errors become HTTP answers.
//!
//! Every failure a handler can meet converts into [`ApiError`], and only its
//! `IntoResponse` picks a status and a stable snake_case `error` code. The
//! body is always `{"error": code, "message": text}` (plus `field` when one
//! input field is to blame). Server faults are logged here, once, with the
//! request's span; the client sees the code and the request id, never the
//! cause.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use relay_workers::auth::AuthError;
use relay_workers::blob::BlobError;
use relay_workers::catalog::CatalogError;
use relay_workers::ingest::IngestError;
use relay_workers::model::DeriveState;
use relay_workers::resumable::ResumableError;
use relay_workers::stages::RenderError;
use serde::Serialize;

use super::throttle::RetryAfter;

/// The JSON body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable, snake_case.
    pub error: &'static str,
    /// For people: what went wrong and what to do next.
    pub message: String,
    /// The input field at fault, as a dotted path (`patient.birth_date`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
    #[error("{0}")]
    Forbidden(&'static str),
    /// A request authenticated by the session cookie without its CSRF token.
    #[error("missing or wrong CSRF token: reload the page and try again")]
    Csrf,
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("{0}")]
    InvalidJson(String),
    #[error("{message}")]
    InvalidField {
        field: Option<String>,
        message: String,
    },
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Nothing the `Accept` header allows can be served (Relay does not
    /// transcode).
    #[error("{0}")]
    NotAcceptable(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("no route for {method} {path}")]
    NoRoute { method: String, path: String },
    #[error("{0} is not allowed on this route")]
    MethodNotAllowed(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("the request took too long")]
    Timeout,
    #[error(transparent)]
    Ingest(IngestError),
    #[error("invalid multipart body: {0}")]
    InvalidMultipart(String),
    /// One file of a multipart upload failed. It is named by its place in
    /// the upload, not its filename: filenames often carry a patient's name,
    /// and errors are logged.
    #[error("file {part} of the upload: {inner}")]
    InFile { part: usize, inner: Box<ApiError> },
    #[error("the stored bytes failed verification; the operator has been alerted")]
    Integrity,
    #[error("the range is not satisfiable for {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("the thumbnails and previews are still being made; retry in a few seconds")]
    DerivePending,
    #[error("no rendition: derive is {}: {reason}", state.as_str())]
    NoRendition { state: DeriveState, reason: String },
    #[error(transparent)]
    Render(RenderError),
    #[error(transparent)]
    Resumable(#[from] ResumableError),
    /// A tus request without `Tus-Resumable: 1.0.0`.
    #[error("this server speaks tus 1.0.0: send Tus-Resumable: 1.0.0")]
    TusVersion,
    /// The client's address spent its budget of failed authentications.
    #[error("too many failed sign-in attempts from this address: retry in {} s", .0.seconds())]
    Throttled(RetryAfter),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<RenderError> for ApiError {
    /// Storage and catalog faults keep their own mapping.
    fn from(error: RenderError) -> Self {
        match error {
            RenderError::Blob(e) => ApiError::Blob(e),
            RenderError::Catalog(e) => ApiError::Catalog(e),
            other => ApiError::Render(other),
        }
    }
}

impl From<IngestError> for ApiError {
    /// Storage and catalog faults keep their own mapping.
    fn from(error: IngestError) -> Self {
        match error {
            IngestError::Blob(e) => ApiError::Blob(e),
            IngestError::Catalog(e) => ApiError::Catalog(e),
            other => ApiError::Ingest(other),
        }
    }
}

impl ApiError {
    /// Names the file (1-based place in a multipart upload) a failure
    /// belongs to.
    pub fn in_file(self, part: usize) -> Self {
        ApiError::InFile {
            part,
            inner: Box::new(self),
        }
    }

    /// The status and stable code of this error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            ApiError::Unauthorized(_) => (S::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (S::FORBIDDEN, "forbidden"),
            ApiError::Csrf => (S::FORBIDDEN, "csrf_failed"),
            ApiError::NotFound { .. } | ApiError::NoRoute { .. } => (S::NOT_FOUND, "not_found"),
            ApiError::InvalidJson(_) => (S::BAD_REQUEST, "invalid_json"),
            ApiError::InvalidField { .. } => (S::UNPROCESSABLE_ENTITY, "invalid_field"),
            ApiError::InvalidQuery(_) => (S::BAD_REQUEST, "invalid_query"),
            ApiError::UnsupportedMediaType(_) => {
                (S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::NotAcceptable(_) => (S::NOT_ACCEPTABLE, "not_acceptable"),
            ApiError::PayloadTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::MethodNotAllowed(_) => (S::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Timeout => (S::REQUEST_TIMEOUT, "timeout"),
            ApiError::InvalidMultipart(_) => (S::BAD_REQUEST, "invalid_multipart"),
            ApiError::InFile { inner, .. } => inner.status_and_code(),
            ApiError::Integrity => (S::INTERNAL_SERVER_ERROR, "integrity"),
            ApiError::RangeNotSatisfiable { .. } => {
                (S::RANGE_NOT_SATISFIABLE, "range_not_satisfiable")
            }
            ApiError::Ingest(e) => {
                let status = match e {
                    IngestError::Empty
                    | IngestError::Interrupted
                    | IngestError::DigestMismatch { .. }
                    | IngestError::BadDigestHeader(_) => S::BAD_REQUEST,
                    IngestError::TooLarge { .. } => S::PAYLOAD_TOO_LARGE,
                    IngestError::UnsupportedType(_)
                    | IngestError::Heic
                    | IngestError::TypeMismatch { .. } => S::UNSUPPORTED_MEDIA_TYPE,
                    IngestError::InvalidImage(_)
                    | IngestError::TooManyPixels { .. }
                    | IngestError::InvalidDicom(_)
                    | IngestError::ExecutablePreamble(_)
                    | IngestError::InvalidFilename(_) => S::UNPROCESSABLE_ENTITY,
                    IngestError::Blob(_) | IngestError::Catalog(_) => S::INTERNAL_SERVER_ERROR,
                };
                (status, e.code())
            }
            ApiError::DerivePending => (S::ACCEPTED, "derive_pending"),
            ApiError::NoRendition {
                state: DeriveState::Unsupported,
                ..
            } => (S::NOT_FOUND, "derive_unsupported"),
            ApiError::NoRendition { .. } => (S::NOT_FOUND, "derive_failed"),
            ApiError::Render(e) => match e {
                RenderError::Derive(d) if d.is_unsupported() => {
                    (S::NOT_FOUND, "derive_unsupported")
                }
                RenderError::Derive(_) => (S::UNPROCESSABLE_ENTITY, "cannot_render"),
                RenderError::Blob(_) | RenderError::Catalog(_) | RenderError::Worker(_) => {
                    (S::INTERNAL_SERVER_ERROR, "internal")
                }
            },
            ApiError::Catalog(e) => match e {
                CatalogError::NotFound { .. } => (S::NOT_FOUND, "not_found"),
                CatalogError::InvalidTransition(_) | CatalogError::Conflict(_) => {
                    (S::CONFLICT, "invalid_state")
                }
                CatalogError::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "unavailable"),
                CatalogError::Full(_) => (S::INSUFFICIENT_STORAGE, "insufficient_storage"),
                CatalogError::AlreadyClaimed => (S::CONFLICT, "already_claimed"),
                CatalogError::ClaimRequired => (S::CONFLICT, "claim_required"),
                CatalogError::Corrupt { .. }
                | CatalogError::Database(_)
                | CatalogError::Migrate(_)
                | CatalogError::UnsupportedUrl(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
            },
            ApiError::Blob(e) => match e {
                BlobError::NotWritable { .. } | BlobError::Unavailable(_) => {
                    (S::SERVICE_UNAVAILABLE, "unavailable")
                }
                BlobError::Full(_) => (S::INSUFFICIENT_STORAGE, "insufficient_storage"),
                BlobError::Integrity(_) | BlobError::Missing(_) => {
                    (S::INTERNAL_SERVER_ERROR, "integrity")
                }
                BlobError::Io(_) | BlobError::UnsupportedUrl(_) => {
                    (S::INTERNAL_SERVER_ERROR, "internal")
                }
            },
            ApiError::Resumable(e) => match e {
                ResumableError::NotFound => (S::NOT_FOUND, "not_found"),
                ResumableError::OffsetMismatch { .. } => (S::CONFLICT, "offset_mismatch"),
                ResumableError::Finished => (S::CONFLICT, "upload_finished"),
                ResumableError::TooLong { .. } | ResumableError::TooLarge { .. } => {
                    (S::PAYLOAD_TOO_LARGE, "payload_too_large")
                }
                // 460 is tus's own "Checksum Mismatch".
                ResumableError::ChecksumMismatch => (
                    S::from_u16(460).unwrap_or(S::BAD_REQUEST),
                    "checksum_mismatch",
                ),
                ResumableError::Interrupted { .. } => (S::BAD_REQUEST, "interrupted"),
                ResumableError::Io(e) if e.kind() == std::io::ErrorKind::StorageFull => {
                    (S::INSUFFICIENT_STORAGE, "insufficient_storage")
                }
                ResumableError::Io(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
            },
            ApiError::TusVersion => (S::PRECONDITION_FAILED, "tus_version"),
            ApiError::Throttled(_) => (S::TOO_MANY_REQUESTS, "too_many_attempts"),
            ApiError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// What the client is told. Server-side causes stay in the log.
    pub fn public_message(&self, status: StatusCode) -> String {
        if let ApiError::InFile { part, inner } = self {
            return format!(
                "file {part} of the upload: {}",
                inner.public_message(status)
            );
        }
        match self {
            ApiError::Integrity
            | ApiError::Blob(BlobError::Integrity(_) | BlobError::Missing(_)) => {
                return ApiError::Integrity.to_string();
            }
            ApiError::Blob(BlobError::Full(_)) | ApiError::Catalog(CatalogError::Full(_)) => {
                return "the server is out of storage space; nothing was stored, retry later"
                    .to_owned();
            }
            _ => {}
        }
        match status {
            StatusCode::SERVICE_UNAVAILABLE => {
                "a storage backend is unavailable; retry later".to_owned()
            }
            s if s.is_server_error() => {
                "internal error; report the x-request-id header to the operator".to_owned()
            }
            _ => self.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = %self, source = ?std::error::Error::source(&self), code, "request failed");
        }
        let field = match &self {
            ApiError::InvalidField { field, .. } => field.clone(),
            _ => None,
        };
        let body = ErrorBody {
            error: code,
            message: self.public_message(status),
            field,
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::ACCEPTED {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        if let ApiError::Throttled(wait) = &self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait.seconds()));
        }
        if status == StatusCode::UNAUTHORIZED
            && !matches!(self, ApiError::Unauthorized(AuthError::SessionEnded))
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_misses_and_missing_rows_look_the_same() {
        let (status, code) =
            ApiError::from(CatalogError::NotFound { what: "case" }).status_and_code();
        assert_eq!((status, code), (StatusCode::NOT_FOUND, "not_found"));
    }

    #[test]
    fn server_faults_do_not_leak_their_cause() {
        let err = ApiError::Internal("disk /secret/path exploded".into());
        let (status, _) = err.status_and_code();
        assert!(!err.public_message(status).contains("/secret"));
    }
}
