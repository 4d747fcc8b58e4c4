//! Resumable uploads, by the tus 1.0.0 protocol
//! (<https://tus.io/protocols/resumable-upload>): core (HEAD, PATCH), and
//! the creation, creation-with-upload, termination, expiration and checksum
//! (sha256) extensions.
//!
//! An office creates an upload for a case (`POST` with `Upload-Length` and
//! `Upload-Metadata: case <b64>, filename <b64>, filetype <b64>[, sha256
//! <b64 of hex>]`), sends its bytes in as many `PATCH`es as its connection
//! allows, each made durable before its new `Upload-Offset` is answered,
//! and asks where it stands (`HEAD`) after a drop or a restart. The last
//! byte sends the file through ingest — the same checks, store, catalog row
//! and audit event as a plain upload — and the answer names the image
//! (`Location`, `Content-Digest`). A file ingest refuses is discarded with
//! its 4xx; a storage fault keeps the bytes, and an empty `PATCH` at the
//! final offset tries again.

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use relay_workers::audit::AuditContext;
use relay_workers::ingest::{Declared, Upload};
use relay_workers::model::{CaseId, Sha256, Timestamp};
use relay_workers::resumable::{Resumable, ResumableError, UploadState};
use tokio_util::io::ReaderStream;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::Caller;
use super::openapi::Binary;

const TUS_VERSION: &str = "1.0.0";

/// `Tus-Resumable` as the OpenAPI document gives it: the one version
/// spoken. Any other value, or none, is answered `412` (tus 1.0.0).
struct TusVersion;

impl utoipa::PartialSchema for TusVersion {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some([TUS_VERSION]))
            .into()
    }
}

impl utoipa::ToSchema for TusVersion {}
const EXTENSIONS: &str = "creation,creation-with-upload,termination,expiration,checksum";
const OFFSET_TYPE: &str = "application/offset+octet-stream";

/// `Tus-Resumable: 1.0.0` on every answer.
fn tus_headers(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    response
}

pub(super) fn require_version(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get("tus-resumable").map(HeaderValue::as_bytes) {
        Some(b"1.0.0") => Ok(()),
        _ => Err(ApiError::TusVersion),
    }
}

pub(super) fn number(headers: &HeaderMap, name: &'static str) -> Result<Option<u64>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::InvalidField {
                    field: Some(name.to_owned()),
                    message: format!("{name} must be a non-negative integer"),
                })
        })
        .transpose()
}

/// `Upload-Metadata`: comma-separated `key base64value` pairs.
pub(super) fn metadata(headers: &HeaderMap) -> Result<Vec<(String, String)>, ApiError> {
    let Some(raw) = headers.get("upload-metadata") else {
        return Ok(Vec::new());
    };
    let bad = |message: String| ApiError::InvalidField {
        field: Some("Upload-Metadata".to_owned()),
        message,
    };
    let raw = raw
        .to_str()
        .map_err(|_| bad("Upload-Metadata must be ASCII".to_owned()))?;
    raw.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once(' ').unwrap_or((pair, ""));
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value.trim())
                .map_err(|_| bad(format!("the value of {key} is not base64")))?;
            let text = String::from_utf8(decoded)
                .map_err(|_| bad(format!("the value of {key} is not UTF-8")))?;
            Ok((key.to_owned(), text))
        })
        .collect()
}

/// `Upload-Checksum: sha256 <base64>`.
pub(super) fn checksum(headers: &HeaderMap) -> Result<Option<Sha256>, ApiError> {
    let Some(raw) = headers.get("upload-checksum") else {
        return Ok(None);
    };
    let bad = |message: &str| ApiError::InvalidField {
        field: Some("Upload-Checksum".to_owned()),
        message: message.to_owned(),
    };
    let raw = raw
        .to_str()
        .map_err(|_| bad("Upload-Checksum must be ASCII"))?;
    let (algorithm, value) = raw
        .split_once(' ')
        .ok_or_else(|| bad("expected: sha256 <base64>"))?;
    if !algorithm.eq_ignore_ascii_case("sha256") {
        return Err(bad(
            "only sha256 checksums are supported (Tus-Checksum-Algorithm)",
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| bad("the checksum is not base64"))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| bad("a sha256 checksum is 32 bytes"))?;
    Ok(Some(Sha256::from_bytes(bytes)))
}

/// An HTTP-date (`Upload-Expires`).
fn http_date(t: Timestamp) -> String {
    t.to_datetime()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

fn location(state: &UploadState) -> String {
    format!("/api/v1/uploads/{}", state.id)
}

/// `OPTIONS /api/v1/uploads`: what this tus server supports.
#[utoipa::path(options, path = "/api/v1/uploads", tag = "images",
    responses((status = 204, description = "Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm")))]
pub async fn discover(State(state): State<AppState>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    headers.insert("tus-extension", HeaderValue::from_static(EXTENSIONS));
    headers.insert("tus-checksum-algorithm", HeaderValue::from_static("sha256"));
    if let Ok(max) = HeaderValue::from_str(&state.uploads.max_size().to_string()) {
        headers.insert("tus-max-size", max);
    }
    tus_headers(response)
}

/// `POST /api/v1/uploads`: creates an upload into a case (metadata `case`),
/// optionally with its first bytes.
#[utoipa::path(post, path = "/api/v1/uploads", tag = "images", security(("bearer" = [])),
    params(("Tus-Resumable" = inline(TusVersion), Header), ("Upload-Length" = u64, Header),
        ("Upload-Metadata" = String, Header, description = "case, filename, filetype, sha256 (hex): each base64")),
    responses((status = 201, description = "Created: Location, Upload-Offset, Upload-Expires"),
        (status = 400, description = "The first bytes are not the file's", body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, description = "No such case, or not yours", body = ErrorBody),
        (status = 409, description = "The case is not a draft", body = ErrorBody),
        (status = 412, description = "Not Tus-Resumable: 1.0.0", body = ErrorBody),
        (status = 413, description = "Upload-Length is over Tus-Max-Size", body = ErrorBody),
        (status = 422, description = "Upload-Length or Upload-Metadata is missing or invalid, or ingest refused the file", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> Result<Response, ApiError> {
    let office = caller.office()?;
    let headers = request.headers().clone();
    require_version(&headers)?;
    let length = number(&headers, "upload-length")?.ok_or_else(|| ApiError::InvalidField {
        field: Some("Upload-Length".to_owned()),
        message: "Upload-Length is required (deferred lengths are not supported)".to_owned(),
    })?;
    if length > state.uploads.max_size() {
        return Err(ResumableError::TooLarge {
            max: state.uploads.max_size(),
        }
        .into());
    }
    let meta = metadata(&headers)?;
    let value = |key: &str| meta.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let case: CaseId =
        value("case")
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| ApiError::InvalidField {
                field: Some("Upload-Metadata".to_owned()),
                message: "Upload-Metadata must name the case: case <base64 of the case id>"
                    .to_owned(),
            })?;
    let id = Resumable::new_id()?;
    state
        .catalog
        .start_upload(&caller.audit, caller.scope(), case, &id)
        .await?;
    let now = Timestamp::now();
    let upload = state
        .uploads
        .create(UploadState {
            id,
            office,
            user: caller.principal.user_id(),
            case,
            length,
            filename: value("filename"),
            content_type: value("filetype").or_else(|| value("content_type")),
            sha256: value("sha256")
                .map(|hex| hex.parse::<Sha256>())
                .transpose()
                .map_err(|_| ApiError::InvalidField {
                    field: Some("Upload-Metadata".to_owned()),
                    message: "sha256 must be the whole file's sha256 in hex".to_owned(),
                })?,
            created_at: now,
            expires_at: now.plus(state.upload_ttl),
            image: None,
        })
        .await?;
    tracing::info!(upload.id = %upload.id, case.id = %case, length, "resumable upload created");
    let with_body = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(OFFSET_TYPE.as_bytes()));
    let mut response = if with_body {
        let digest = checksum(&headers)?;
        let body = request.into_body().into_data_stream();
        match append(&state, &caller, &upload.id, 0, body, digest).await {
            Ok(answer) => answer,
            // The whole file came and ingest refused it: the upload has been
            // discarded, so the refusal is the answer, not a Location.
            Err(error @ ApiError::Ingest(_)) => return Err(error),
            // The upload exists: say where, and how far it got.
            Err(_) => offset_answer(&upload, 0),
        }
    } else {
        offset_answer(&upload, 0)
    };
    *response.status_mut() = StatusCode::CREATED;
    if let Ok(value) = HeaderValue::from_str(&location(&upload)) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(tus_headers(response))
}

/// `HEAD /api/v1/uploads/{id}`: where the upload stands.
#[utoipa::path(head, path = "/api/v1/uploads/{id}", tag = "images", security(("bearer" = [])),
    params(("id" = String, Path), ("Tus-Resumable" = inline(TusVersion), Header)),
    responses((status = 200, description = "Upload-Offset, Upload-Length, Upload-Expires (and Location of the image once finished)"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 412, description = "Not Tus-Resumable: 1.0.0", body = ErrorBody)))]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let office = caller.office()?;
    require_version(&headers)?;
    let (upload, offset) = state.uploads.find(office, &id).await?;
    let mut response = offset_answer(&upload, offset);
    *response.status_mut() = StatusCode::OK;
    Ok(tus_headers(response))
}

/// `PATCH /api/v1/uploads/{id}`: bytes at `Upload-Offset`.
#[utoipa::path(patch, path = "/api/v1/uploads/{id}", tag = "images", security(("bearer" = [])),
    params(("id" = String, Path), ("Tus-Resumable" = inline(TusVersion), Header), ("Upload-Offset" = u64, Header),
        ("Upload-Checksum" = Option<String>, Header, description = "sha256 <base64> of this chunk")),
    request_body(content = Binary, content_type = "application/offset+octet-stream"),
    responses((status = 204, description = "Upload-Offset; on the last byte also Location and Content-Digest of the image"),
        (status = 400, description = "The body was cut off, or the file is not the bytes its sha256 names", body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Upload-Offset is not where the upload stands, or it is finished", body = ErrorBody),
        (status = 412, description = "Not Tus-Resumable: 1.0.0", body = ErrorBody),
        (status = 413, description = "Past Upload-Length", body = ErrorBody),
        (status = 415, description = "Not application/offset+octet-stream, or ingest refused the file's type", body = ErrorBody),
        (status = 422, description = "A header is invalid, or ingest refused the file", body = ErrorBody),
        (status = 460, description = "Checksum mismatch", body = ErrorBody),
        (status = 507, description = "Out of storage space", body = ErrorBody)))]
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    caller.office()?;
    let headers = request.headers().clone();
    require_version(&headers)?;
    let is_offset_type = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(OFFSET_TYPE.as_bytes()));
    if !is_offset_type {
        return Err(ApiError::UnsupportedMediaType(format!(
            "a PATCH carries Content-Type: {OFFSET_TYPE}"
        )));
    }
    let offset = number(&headers, "upload-offset")?.ok_or_else(|| ApiError::InvalidField {
        field: Some("Upload-Offset".to_owned()),
        message: "Upload-Offset is required".to_owned(),
    })?;
    let digest = checksum(&headers)?;
    // A chunk that declares more than any upload may hold is refused before
    // a byte is read: a client announcing 4 GB is answered at once.
    if number(&headers, "content-length")?.is_some_and(|n| n > state.uploads.max_size()) {
        return Err(ResumableError::TooLarge {
            max: state.uploads.max_size(),
        }
        .into());
    }
    let body = request.into_body().into_data_stream();
    append(&state, &caller, &id, offset, body, digest)
        .await
        .map(tus_headers)
}

/// `DELETE /api/v1/uploads/{id}`: abandons an upload, discarding its bytes.
#[utoipa::path(delete, path = "/api/v1/uploads/{id}", tag = "images", security(("bearer" = [])),
    params(("id" = String, Path), ("Tus-Resumable" = inline(TusVersion), Header)),
    responses((status = 204, description = "The upload and its bytes are gone"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 412, description = "Not Tus-Resumable: 1.0.0", body = ErrorBody)))]
pub async fn terminate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let office = caller.office()?;
    require_version(&headers)?;
    let (upload, _) = state.uploads.find(office, &id).await?;
    state.uploads.remove(&upload).await?;
    if upload.image.is_none() {
        state
            .catalog
            .cancel_upload(&caller.audit, office, &upload.id)
            .await?;
    }
    tracing::info!(upload.id = %upload.id, "resumable upload terminated");
    Ok(tus_headers(StatusCode::NO_CONTENT.into_response()))
}

/// `204` with the upload's offset and expiry (and, once it became an image,
/// where that is).
fn offset_answer(upload: &UploadState, offset: u64) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    let mut put = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    put("upload-offset", offset.to_string());
    put("upload-length", upload.length.to_string());
    put("upload-expires", http_date(upload.expires_at));
    put("cache-control", "no-store".to_owned());
    if let Some(image) = upload.image {
        put("relay-image", format!("/api/v1/images/{image}"));
    }
    response
}

/// Appends a chunk; on the last byte, ingests the whole upload.
async fn append(
    state: &AppState,
    caller: &Caller,
    id: &str,
    offset: u64,
    body: axum::body::BodyDataStream,
    digest: Option<Sha256>,
) -> Result<Response, ApiError> {
    let office = caller.office()?;
    let (upload, at) = state.uploads.find(office, id).await?;
    if upload.image.is_none() && at == offset {
        // Recorded before the bytes are written: no chunk of patient data
        // is kept without its event (a refused chunk leaves none).
        state
            .catalog
            .append_upload(&caller.audit, office, &upload.id)
            .await?;
    }
    let (upload, offset) = state
        .uploads
        .append(office, id, offset, body, digest)
        .await?;
    if offset < upload.length {
        return Ok(offset_answer(&upload, offset));
    }
    let path = state.uploads.bytes_path(&upload);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::Resumable(ResumableError::Io(e)))?;
    let declared = match upload.content_type.as_deref() {
        Some(t) => Declared::from_content_type(t)?,
        None => Declared::Unspecified,
    };
    let ingest = Upload {
        declared,
        filename: upload.filename.clone(),
        client_digest: upload.sha256,
        body: ReaderStream::with_capacity(file, 1 << 20),
    };
    let result = state
        .ingest
        .ingest(
            &caller.audit,
            upload.user,
            caller.scope(),
            upload.case,
            ingest,
        )
        .await;
    state.work_queued();
    let ingested = match result {
        Ok(ingested) => ingested,
        Err(error) => {
            let error = ApiError::from(error);
            // Refused bytes are not kept; a storage fault keeps them for a retry.
            if error.status_and_code().0.is_client_error() {
                discard(state, &caller.audit, &upload).await;
            }
            return Err(error);
        }
    };
    let image = ingested.image;
    let upload = state.uploads.finish(upload, image.id).await?;
    tracing::info!(upload.id = %upload.id, image.id = %image.id, created = ingested.created, "resumable upload ingested");
    let mut response = offset_answer(&upload, offset);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!("/api/v1/images/{}", image.id)) {
        headers.insert(header::LOCATION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&image.stored_sha256.content_digest()) {
        headers.insert("content-digest", value);
    }
    Ok(response)
}

async fn discard(state: &AppState, ctx: &AuditContext, upload: &UploadState) {
    if let Err(error) = state.uploads.remove(upload).await {
        tracing::warn!(upload.id = %upload.id, %error, "could not remove a refused upload");
    }
    if let Err(error) = state
        .catalog
        .cancel_upload(ctx, upload.office, &upload.id)
        .await
    {
        tracing::warn!(upload.id = %upload.id, %error, "could not audit a refused upload");
    }
}
