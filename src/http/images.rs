//! Images: offices upload into a draft case; everyone in scope reads.
//!
//! Uploads stream straight into ingest (no body limit or request deadline
//! here: ingest enforces its own size limit while streaming). Downloads are
//! verified against the blob's sha256 as they stream: a corrupt blob is
//! answered `500 integrity` when small enough to check first, and otherwise
//! cut short before its last bytes, so it never arrives complete.

use axum::Json;
use axum::body::Body;
use axum::extract::multipart::Field;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use relay_workers::blob::{BlobError, IntegrityError, VerifiedStream, verify_blob};
use relay_workers::ingest::{Declared, IngestError, Upload};
use relay_workers::model::{Case, Image, ImageId, Sha256, Study, group_studies};
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use super::AppState;
use super::drain::drain;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiQuery, Caller, CasePath};
use super::openapi::{Binary, UploadForm};

/// Blobs up to this size are verified completely before the first byte is sent.
const VERIFY_FIRST_LIMIT: u64 = 8 << 20;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadParams {
    /// The file's name at the office (kept for people; never used as a path).
    #[param(min_length = 1)]
    filename: Option<String>,
}

/// Several files uploaded in one `multipart/form-data` request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadedImages {
    pub images: Vec<Image>,
}

/// What a stored upload answers: the receipt of a raw upload, or the
/// receipts of every file of a multipart one.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Uploaded {
    One(Box<Image>),
    Many(UploadedImages),
}

/// `POST /api/v1/cases/{id}/images`: the raw image as the body
/// (`image/jpeg`, `image/png`, `application/dicom`), or `multipart/form-data`
/// with one or more files. Answers `201` with the receipt, or `200` with the
/// existing image when the case already holds these exact bytes.
#[utoipa::path(post, path = "/api/v1/cases/{id}/images", tag = "images",
    params(("id" = String, Path, description = "Case id"), UploadParams,
        ("Content-Digest" = Option<String>, Header, description = "RFC 9530 sha-256 of the body")),
    request_body(description = "The image bytes, sent as image/jpeg, image/png or application/dicom; or multipart/form-data with one or more files",
        content((Binary = "image/jpeg"), (Binary = "image/png"), (Binary = "application/dicom"),
            (UploadForm = "multipart/form-data"))),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored; Content-Digest names the stored bytes (a raw upload)", body = Uploaded),
        (status = 200, description = "These bytes were already in the case", body = Image),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 507, body = ErrorBody)))]
pub async fn upload_images(
    State(state): State<AppState>,
    caller: Caller,
    CasePath(case): CasePath,
    ApiQuery(params): ApiQuery<UploadParams>,
    request: Request,
) -> Result<Response, ApiError> {
    caller.office()?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        return upload_multipart(state, caller, case, request).await;
    }
    let declared = Declared::from_content_type(&content_type)?;
    let client_digest = match request.headers().get("content-digest") {
        Some(value) => Sha256::from_content_digest(value.to_str().unwrap_or_default())
            .map_err(|e| IngestError::BadDigestHeader(format!("invalid Content-Digest: {e}")))?,
        None => None,
    };
    // A body that declares more than the limit is refused before a byte is
    // read, and not drained: a client announcing 4 GB is answered at once.
    let limit = state.ingest.limits().max_bytes;
    let declared_length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > limit) {
        return Err(IngestError::TooLarge { limit }.into());
    }
    let mut body = request.into_body().into_data_stream();
    let upload = Upload {
        declared,
        filename: params.filename,
        client_digest,
        body: &mut body,
    };
    let result = state
        .ingest
        .ingest(
            &caller.audit,
            caller.principal.user_id(),
            caller.scope(),
            case,
            upload,
        )
        .await;
    state.work_queued();
    let ingested = match result {
        Ok(ingested) => ingested,
        Err(error) => {
            drain(&mut body).await;
            return Err(error.into());
        }
    };
    let status = if ingested.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let image = ingested.image;
    tracing::info!(case.id = %case, image.id = %image.id, image.sha256 = %image.stored_sha256, created = ingested.created, "image stored");
    let headers = [
        ("content-digest", image.stored_sha256.content_digest()),
        (
            header::LOCATION.as_str(),
            format!("/api/v1/images/{}", image.id),
        ),
    ];
    Ok((status, headers, Json(Uploaded::One(Box::new(image)))).into_response())
}

/// Each file part goes through ingest in turn. Files before a refused one
/// stay stored (they were valid); the error names the refused file.
async fn upload_multipart(
    state: AppState,
    caller: Caller,
    case: relay_workers::model::CaseId,
    request: Request,
) -> Result<Response, ApiError> {
    let mut multipart = open_multipart(request, &state).await?;
    let mut images = Vec::new();
    let mut part = 0;
    while let Some(field) = next_field(&mut multipart).await? {
        let Some((filename, declared, field)) = file_part(field, part + 1)? else {
            continue; // form fields that are not files
        };
        part += 1;
        let upload = Upload {
            declared,
            filename: Some(filename),
            client_digest: None,
            body: field,
        };
        let ingested = state
            .ingest
            .ingest(
                &caller.audit,
                caller.principal.user_id(),
                caller.scope(),
                case,
                upload,
            )
            .await
            .map_err(|e| ApiError::from(e).in_file(part))?;
        state.work_queued();
        images.push(ingested.image);
    }
    if images.is_empty() {
        return Err(IngestError::Empty.into());
    }
    Ok((
        StatusCode::CREATED,
        Json(Uploaded::Many(UploadedImages { images })),
    )
        .into_response())
}

/// Reads a `multipart/form-data` request's boundary from its `Content-Type`.
pub(super) async fn open_multipart<S: Send + Sync>(
    request: Request,
    state: &S,
) -> Result<Multipart, ApiError> {
    Multipart::from_request(request, state)
        .await
        .map_err(|e| ApiError::InvalidMultipart(e.body_text()))
}

/// The next part of a multipart upload.
pub(super) async fn next_field(multipart: &mut Multipart) -> Result<Option<Field<'_>>, ApiError> {
    multipart
        .next_field()
        .await
        .map_err(|e| ApiError::InvalidMultipart(e.body_text()))
}

/// A part's file name and the type its headers declare, with its body (not
/// yet read); `None` for a form field that is not a file. `part` is the
/// file's place in the upload, which names it in an error (never its
/// filename: filenames often carry a patient's name).
pub(super) fn file_part(
    field: Field<'_>,
    part: usize,
) -> Result<Option<(String, Declared, Field<'_>)>, ApiError> {
    let Some(filename) = field.file_name().map(str::to_owned) else {
        return Ok(None);
    };
    let declared =
        Declared::from_content_type(field.content_type().unwrap_or("application/octet-stream"))
            .map_err(|e| ApiError::from(e).in_file(part))?;
    Ok(Some((filename, declared, field)))
}

/// `GET /api/v1/cases/{id}/images`
#[utoipa::path(get, path = "/api/v1/cases/{id}/images", tag = "images",
    params(("id" = String, Path, description = "Case id")), security(("bearer" = [])),
    responses((status = 200, body = Vec<Image>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_images(
    State(state): State<AppState>,
    caller: Caller,
    CasePath(case): CasePath,
) -> Result<Json<Vec<Image>>, ApiError> {
    Ok(Json(
        state
            .catalog
            .list_images(&caller.audit, caller.scope(), case)
            .await?,
    ))
}

/// `GET /api/v1/cases/{id}/studies`: the case's DICOM grouped by study and
/// series, instances in order, however many uploads they came in.
#[utoipa::path(get, path = "/api/v1/cases/{id}/studies", tag = "images",
    params(("id" = String, Path, description = "Case id")), security(("bearer" = [])),
    responses((status = 200, body = Vec<Study>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_studies(
    State(state): State<AppState>,
    caller: Caller,
    CasePath(case): CasePath,
) -> Result<Json<Vec<Study>>, ApiError> {
    let images = state
        .catalog
        .list_images(&caller.audit, caller.scope(), case)
        .await?;
    Ok(Json(group_studies(&images)))
}

fn image_id(raw: &str) -> Result<ImageId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound { what: "image" })
}

/// `GET /api/v1/images/{id}`
#[utoipa::path(get, path = "/api/v1/images/{id}", tag = "images",
    params(("id" = String, Path, description = "Image id")), security(("bearer" = [])),
    responses((status = 200, body = Image), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_image(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Image>, ApiError> {
    let id = image_id(&id)?;
    Ok(Json(
        state
            .catalog
            .get_image(&caller.audit, caller.scope(), id, false)
            .await?,
    ))
}

/// `GET /api/v1/images/{id}/original`: the stored bytes, verified.
#[utoipa::path(get, path = "/api/v1/images/{id}/original", tag = "images",
    params(("id" = String, Path, description = "Image id")), security(("bearer" = [])),
    responses(
        (status = 200, description = "The stored bytes, as the image's media type; ETag and Content-Digest name their sha256",
            content((Binary = "image/jpeg"), (Binary = "image/png"), (Binary = "application/dicom"))),
        (status = 206, description = "The requested range",
            content((Binary = "image/jpeg"), (Binary = "image/png"), (Binary = "application/dicom"))),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 416, description = "Range not satisfiable"),
        (status = 500, description = "The stored bytes failed verification", body = ErrorBody)))]
pub async fn get_original(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = image_id(&id)?;
    let image = state
        .catalog
        .get_image(&caller.audit, caller.scope(), id, true)
        .await?;
    serve_verified(
        &state,
        id,
        image.stored_sha256,
        image.stored_size,
        image.media_type.as_str(),
        &headers,
    )
    .await
}

/// Serves a blob with `ETag`, `Content-Digest`, `Range` and `If-None-Match`,
/// proving its sha256 on the way out. Originals and renditions alike.
pub(crate) async fn serve_verified(
    state: &AppState,
    id: ImageId,
    key: Sha256,
    size: u64,
    media_type: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let etag = format!("\"{key}\"");
    let mut out = HeaderMap::new();
    let put = |out: &mut HeaderMap, name: header::HeaderName, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            out.insert(name, v);
        }
    };
    put(&mut out, header::ETAG, etag.clone());
    put(&mut out, header::CONTENT_TYPE, media_type.to_owned());
    put(&mut out, header::ACCEPT_RANGES, "bytes".to_owned());
    put(
        &mut out,
        header::CACHE_CONTROL,
        "private, max-age=31536000, immutable".to_owned(),
    );
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return Ok((StatusCode::NOT_MODIFIED, out).into_response());
    }
    let integrity = |e: BlobError| -> ApiError {
        if matches!(e, BlobError::Integrity(_) | BlobError::Missing(_)) {
            state.metrics.integrity_failure();
            tracing::error!(image.id = %id, image.sha256 = %key, error = %e, "stored bytes failed verification");
            ApiError::Integrity
        } else {
            e.into()
        }
    };
    if let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        let ranges = http_range_header::parse_range_header(range)
            .and_then(|r| r.validate(size))
            .map_err(|_| ApiError::RangeNotSatisfiable { size })?;
        if let [only] = ranges.as_slice() {
            let (start, end) = (*only.start(), *only.end());
            // A range cannot prove the whole: verify everything first.
            verify_blob(state.blobs.as_ref(), &key, size)
                .await
                .map_err(integrity)?;
            let blob = state.blobs.open(&key, start).await.map_err(integrity)?;
            let len = end - start + 1;
            let body = Body::from_stream(tokio_util::io::ReaderStream::new(
                tokio::io::AsyncReadExt::take(blob.reader, len),
            ));
            put(
                &mut out,
                header::CONTENT_RANGE,
                format!("bytes {start}-{end}/{size}"),
            );
            put(&mut out, header::CONTENT_LENGTH, len.to_string());
            return Ok((StatusCode::PARTIAL_CONTENT, out, body).into_response());
        }
    }
    put(
        &mut out,
        header::HeaderName::from_static("content-digest"),
        key.content_digest(),
    );
    put(&mut out, header::CONTENT_LENGTH, size.to_string());
    let blob = state.blobs.open(&key, 0).await.map_err(integrity)?;
    let metrics = state.metrics.clone();
    let stream = VerifiedStream::new(blob.reader, key, size).on_failure(move |e: &IntegrityError| {
        metrics.integrity_failure();
        tracing::error!(image.id = %id, error = %e, "stored bytes failed verification while streaming");
    });
    if size <= VERIFY_FIRST_LIMIT {
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or_default());
        let mut stream = std::pin::pin!(stream);
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.map_err(|_| ApiError::Integrity)?);
        }
        return Ok((StatusCode::OK, out, bytes).into_response());
    }
    Ok((StatusCode::OK, out, Body::from_stream(stream)).into_response())
}

/// `POST /api/v1/cases/{id}/submit`: send a draft with images to its specialty.
#[utoipa::path(post, path = "/api/v1/cases/{id}/submit", tag = "cases",
    params(("id" = String, Path, description = "Case id")), security(("bearer" = [])),
    responses((status = 200, body = Case), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Not a draft, or no images yet", body = ErrorBody)))]
pub async fn submit_case(
    State(state): State<AppState>,
    caller: Caller,
    CasePath(case): CasePath,
) -> Result<Json<Case>, ApiError> {
    caller.office()?;
    let case = state
        .catalog
        .submit_case(&caller.audit, caller.scope(), case)
        .await?;
    tracing::info!(case.id = %case.id, "case submitted");
    Ok(Json(case))
}
