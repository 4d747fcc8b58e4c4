//! WADO-RS: studies, series and instances as `multipart/related` of their
//! stored Part 10 bytes (each proven against its sha256 as it streams, so a
//! rotted blob is cut short, never delivered whole), their metadata as
//! DICOM JSON, frames, and the derive stage's renditions.
//!
//! Relay stores DICOM as received and never transcodes: an `Accept` that
//! allows only another transfer syntax is `406`. Frames of uncompressed
//! instances are `application/octet-stream`; frames of compressed ones are
//! served as stored with their own media type (`image/jpeg`, `image/jls`,
//! `image/jp2`, `image/dicom-rle`) or `406` when the client does not take it.

use std::io;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use dicom_dictionary_std::tags;
use futures_util::{StreamExt, TryStreamExt, stream};
use relay_workers::blob::{BlobError, IntegrityError, VerifiedStream, spool_verified};
use relay_workers::model::{DicomAccess, DicomInstance, DicomQuery, QueryLevel};
use serde_json::Value;

use super::multipart_related::{
    PART_END, accepts_multipart, accepts_single, closing, content_type, new_boundary, part_head,
};
use super::{DICOM_JSON, DicomPath, dicom_json};
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::Caller;
use crate::http::renditions::{ready, serve_kind};

/// The uncompressed transfer syntaxes whose frames are served as bytes.
const NATIVE: &[&str] = &["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"];

/// The instances at `path` in scope, audited as `access`; `404` naming the
/// deepest level asked for when there are none.
async fn find(
    state: &AppState,
    caller: &Caller,
    path: &DicomPath,
    access: DicomAccess,
) -> Result<Vec<DicomInstance>, ApiError> {
    let mut query = DicomQuery::new(QueryLevel::Instance, u32::MAX);
    query.study_instance_uid = path.study.clone();
    query.series_instance_uid = path.series.clone();
    query.sop_instance_uid = path.instance.clone();
    let found = state
        .catalog
        .dicom_instances(&caller.audit, caller.scope(), &query, access)
        .await?;
    let mut seen = std::collections::BTreeSet::new();
    let found: Vec<DicomInstance> = found
        .into_iter()
        .filter(|i| seen.insert(i.index.sop_instance_uid.clone()))
        .collect();
    if found.is_empty() {
        let what = if path.instance.is_some() {
            "instance"
        } else if path.series.is_some() {
            "series"
        } else {
            "study"
        };
        return Err(ApiError::NotFound { what });
    }
    Ok(found)
}

/// `GET /dicomweb/studies/{study}`
#[utoipa::path(get, path = "/dicomweb/studies/{study}", tag = "dicomweb",
    params(("study" = String, Path, description = "Study Instance UID", pattern = "^[0-9.]{1,64}$")), security(("bearer" = [])),
    responses((status = 200, description = "multipart/related; type=\"application/dicom\""),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 406, body = ErrorBody)))]
pub async fn retrieve_study(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    path: DicomPath,
) -> Result<Response, ApiError> {
    retrieve(&state, &caller, &headers, &path).await
}

/// `GET /dicomweb/studies/{study}/series/{series}`
#[utoipa::path(get, path = "/dicomweb/studies/{study}/series/{series}", tag = "dicomweb",
    params(("study" = String, Path, description = "Study Instance UID", pattern = "^[0-9.]{1,64}$"),
        ("series" = String, Path, description = "Series Instance UID", pattern = "^[0-9.]{1,64}$")), security(("bearer" = [])),
    responses((status = 200, description = "multipart/related; type=\"application/dicom\""),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 406, body = ErrorBody)))]
pub async fn retrieve_series(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    path: DicomPath,
) -> Result<Response, ApiError> {
    retrieve(&state, &caller, &headers, &path).await
}

/// `GET /dicomweb/studies/{study}/series/{series}/instances/{instance}`
#[utoipa::path(get, path = "/dicomweb/studies/{study}/series/{series}/instances/{instance}", tag = "dicomweb",
    params(("study" = String, Path, description = "Study Instance UID", pattern = "^[0-9.]{1,64}$"),
        ("series" = String, Path, description = "Series Instance UID", pattern = "^[0-9.]{1,64}$"),
        ("instance" = String, Path, description = "SOP Instance UID", pattern = "^[0-9.]{1,64}$")), security(("bearer" = [])),
    responses((status = 200, description = "multipart/related; type=\"application/dicom\""),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 406, body = ErrorBody)))]
pub async fn retrieve_instance(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    path: DicomPath,
) -> Result<Response, ApiError> {
    retrieve(&state, &caller, &headers, &path).await
}

/// Streams the instances' stored bytes, one part each, every part verified
/// against its sha256 while it streams.
async fn retrieve(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    path: &DicomPath,
) -> Result<Response, ApiError> {
    let found = find(state, caller, path, DicomAccess::Retrieve).await?;
    if let Some(refused) = found
        .iter()
        .find(|i| !accepts_multipart(headers, "application/dicom", &i.index.transfer_syntax_uid))
    {
        return Err(ApiError::NotAcceptable(format!(
            "the instances are stored in transfer syntax {} and are not transcoded: accept it or transfer-syntax=*",
            refused.index.transfer_syntax_uid
        )));
    }
    let boundary = new_boundary();
    let blobs = state.blobs.clone();
    let metrics = state.metrics.clone();
    let head_boundary = boundary.clone();
    let parts = stream::iter(found.into_iter().map(Ok::<_, io::Error>))
        .and_then(move |instance| {
            let (blobs, metrics, boundary) = (blobs.clone(), metrics.clone(), head_boundary.clone());
            async move {
                let image = instance.image;
                let blob = blobs
                    .open(&image.stored_sha256, 0)
                    .await
                    .map_err(io::Error::other)?;
                let id = image.id;
                let verified = VerifiedStream::new(blob.reader, image.stored_sha256, image.stored_size)
                    .on_failure(move |e: &IntegrityError| {
                        metrics.integrity_failure();
                        tracing::error!(image.id = %id, error = %e, "stored bytes failed verification while streaming");
                    });
                let head = part_head(
                    &boundary,
                    &format!(
                        "application/dicom; transfer-syntax={}",
                        instance.index.transfer_syntax_uid
                    ),
                    image.stored_size,
                );
                Ok(stream::once(async move { Ok(head) })
                    .chain(verified)
                    .chain(stream::once(async { Ok(Bytes::from_static(PART_END)) })))
            }
        })
        .try_flatten();
    let ct = content_type("application/dicom", &boundary);
    let body = parts.chain(stream::once(async move { Ok(closing(&boundary)) }));
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, ct)],
        Body::from_stream(body),
    )
        .into_response())
}

/// `GET /dicomweb/studies/{study}/metadata`
#[utoipa::path(get, path = "/dicomweb/studies/{study}/metadata", tag = "dicomweb",
    params(("study" = String, Path, description = "Study Instance UID", pattern = "^[0-9.]{1,64}$")), security(("bearer" = [])),
    responses((status = 200, description = "Each instance's data set without bulk data", content_type = "application/dicom+json"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn study_metadata(
    State(state): State<AppState>,
    caller: Caller,
    path: DicomPath,
) -> Result<Response, ApiError> {
    metadata(&state, &caller, &path).await
}

/// `GET /dicomweb/studies/{study}/series/{series}/metadata`
#[utoipa::path(get, path = "/dicomweb/studies/{study}/series/{series}/metadata", tag = "dicomweb",
    params(("study" = String, Path, description = "Study Instance UID", pattern = "^[0-9.]{1,64}$"),
        ("series" = String, Path, description = "Series Instance UID", pattern = "^[0-9.]{1,64}$")), security(("bearer" = [])),
    responses((status = 200, description = "Each instance's data set without bulk data", content_type = "application/dicom+json"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn series_metadata(
    State(state): State<AppState>,
    caller: Caller,
    path: DicomPath,
) -> Result<Response, ApiError> {
    metadata(&state, &caller, &path).await
}

/// `GET /dicomweb/studies/{study}/series/{series}/instances/{instance}/metadata`
#[utoipa::path(get, path = "/dicomweb/studies/{study}/series/{series}/instances/{instance}/metadata", tag = "dicomweb",
    params(("study" = String, Path, description = "Study Instance UID", pattern = "^[0-9.]{1,64}$"),
        ("series" = String, Path, description = "Series Instance UID", pattern = "^[0-9.]{1,64}$"),
        ("instance" = String, Path, description = "SOP Instance UID", pattern = "^[0-9.]{1,64}$")), security(("bearer" = [])),
    responses((status = 200, description = "The instance's data set without bulk data", content_type = "application/dicom+json"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn instance_metadata(
    State(state): State<AppState>,
    caller: Caller,
    path: DicomPath,
) -> Result<Response, ApiError> {
    metadata(&state, &caller, &path).await
}

/// Each instance's data set up to its pixel data, read from the verified
/// stored bytes, as DICOM JSON.
async fn metadata(
    state: &AppState,
    caller: &Caller,
    path: &DicomPath,
) -> Result<Response, ApiError> {
    let found = find(state, caller, path, DicomAccess::Metadata).await?;
    let mut out = Vec::with_capacity(found.len());
    for instance in &found {
        let file = verified_copy(state, instance).await?;
        let json = tokio::task::spawn_blocking(move || {
            dicom_object::OpenFileOptions::new()
                .read_until(tags::PIXEL_DATA)
                .open_file(file.path())
                .map(|object| dicom_json::object(&object))
        })
        .await
        .map_err(|e| ApiError::Internal(format!("metadata task failed: {e}")))?
        .map_err(|e| ApiError::Internal(format!("a stored instance does not parse: {e}")))?;
        out.push(json);
    }
    Ok((
        [(header::CONTENT_TYPE, DICOM_JSON)],
        Value::Array(out).to_string(),
    )
        .into_response())
}

/// The instance's stored bytes in a spool file, proven against their
/// sha256 on the way.
async fn verified_copy(
    state: &AppState,
    instance: &DicomInstance,
) -> Result<tempfile::NamedTempFile, ApiError> {
    let image = &instance.image;
    spool_verified(
        state.blobs.as_ref(),
        &image.stored_sha256,
        image.stored_size,
        state.ingest.spool_dir(),
    )
    .await
    .map_err(|e| {
        if matches!(e, BlobError::Integrity(_) | BlobError::Missing(_)) {
            state.metrics.integrity_failure();
            tracing::error!(image.id = %image.id, image.sha256 = %image.stored_sha256, error = %e, "stored bytes failed verification");
            ApiError::Integrity
        } else {
            e.into()
        }
    })
}

/// `GET …/instances/{instance}/frames/{frames}`: frames by number (from 1,
/// comma-separated), one part each.
#[utoipa::path(get, path = "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}", tag = "dicomweb",
    params(("study" = String, Path, description = "Study Instance UID", pattern = "^[0-9.]{1,64}$"),
        ("series" = String, Path, description = "Series Instance UID", pattern = "^[0-9.]{1,64}$"),
        ("instance" = String, Path, description = "SOP Instance UID", pattern = "^[0-9.]{1,64}$"),
        ("frames" = String, Path, description = "Frame numbers from 1, comma-separated", pattern = "^[1-9][0-9]*(,[1-9][0-9]*)*$")),
    security(("bearer" = [])),
    responses((status = 200, description = "multipart/related of application/octet-stream (uncompressed) or the stored compressed frames"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 406, body = ErrorBody)))]
pub async fn frames(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    path: DicomPath,
) -> Result<Response, ApiError> {
    let wanted = frame_list(path.frames.as_deref().unwrap_or_default())?;
    let found = find(&state, &caller, &path, DicomAccess::Retrieve).await?;
    let Some(instance) = found.first() else {
        return Err(ApiError::NotFound { what: "instance" });
    };
    let ts = instance.index.transfer_syntax_uid.clone();
    let part_type = frame_media_type(&ts).ok_or_else(|| {
        ApiError::NotAcceptable(format!("frames in transfer syntax {ts} cannot be served"))
    })?;
    if !accepts_multipart(&headers, part_type, &ts) {
        return Err(ApiError::NotAcceptable(format!(
            "the frames are stored as {part_type} (transfer syntax {ts}) and are not transcoded"
        )));
    }
    let file = verified_copy(&state, instance).await?;
    let native = NATIVE.contains(&ts.as_str());
    let frames = tokio::task::spawn_blocking(move || read_frames(file.path(), native, &wanted))
        .await
        .map_err(|e| ApiError::Internal(format!("frame task failed: {e}")))??;
    let boundary = new_boundary();
    let mut body = Vec::new();
    for frame in &frames {
        body.extend_from_slice(&part_head(
            &boundary,
            &format!("{part_type}; transfer-syntax={ts}"),
            frame.len() as u64,
        ));
        body.extend_from_slice(frame);
        body.extend_from_slice(PART_END);
    }
    body.extend_from_slice(&closing(&boundary));
    Ok((
        [(header::CONTENT_TYPE, content_type(part_type, &boundary))],
        body,
    )
        .into_response())
}

/// Parses `1,3,5`: frame numbers from 1, in decimal digits without a sign,
/// spaces or leading zeros (the pattern the OpenAPI document gives).
fn frame_list(text: &str) -> Result<Vec<usize>, ApiError> {
    let bad =
        || ApiError::InvalidQuery("frames must be numbers from 1, comma-separated".to_owned());
    let list: Vec<usize> = text
        .split(',')
        .map(|n| {
            let digits = n.bytes().all(|b| b.is_ascii_digit());
            if n.is_empty() || !digits || n.starts_with('0') {
                return Err(bad());
            }
            // A number too large to hold names no frame there is.
            Ok(n.parse::<usize>().unwrap_or(usize::MAX))
        })
        .collect::<Result<_, _>>()?;
    if list.is_empty() || list.len() > 1000 {
        return Err(bad());
    }
    Ok(list)
}

/// How a frame in transfer syntax `ts` is served (PS3.18 Table 8.7.3-2).
fn frame_media_type(ts: &str) -> Option<&'static str> {
    Some(match ts {
        t if NATIVE.contains(&t) => "application/octet-stream",
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.57"
        | "1.2.840.10008.1.2.4.70" => "image/jpeg",
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "image/jls",
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => "image/jp2",
        "1.2.840.10008.1.2.5" => "image/dicom-rle",
        _ => return None,
    })
}

/// The bytes of frames `wanted` (from 1): slices of native pixel data, or
/// the fragments of an encapsulated frame.
fn read_frames(
    path: &std::path::Path,
    native: bool,
    wanted: &[usize],
) -> Result<Vec<Vec<u8>>, ApiError> {
    let object = dicom_object::open_file(path)
        .map_err(|e| ApiError::Internal(format!("a stored instance does not parse: {e}")))?;
    let number = |tag| -> Option<usize> {
        object
            .element(tag)
            .ok()?
            .to_int::<i64>()
            .ok()
            .and_then(|n| usize::try_from(n).ok())
    };
    let count = number(tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1);
    if wanted.iter().any(|&n| n > count) {
        return Err(ApiError::NotFound { what: "frame" });
    }
    let pixels = object
        .element(tags::PIXEL_DATA)
        .map_err(|_| ApiError::NotFound { what: "frame" })?;
    if native {
        let bits = number(tags::ROWS).unwrap_or(0)
            * number(tags::COLUMNS).unwrap_or(0)
            * number(tags::SAMPLES_PER_PIXEL).unwrap_or(1)
            * number(tags::BITS_ALLOCATED).unwrap_or(0);
        if bits == 0 || bits % 8 != 0 {
            return Err(ApiError::NotAcceptable(
                "these frames are not whole bytes each and cannot be served apart".to_owned(),
            ));
        }
        let size = bits / 8;
        let bytes = pixels
            .to_bytes()
            .map_err(|e| ApiError::Internal(format!("pixel data cannot be read: {e}")))?;
        return wanted
            .iter()
            .map(|&n| {
                bytes
                    .get((n - 1) * size..n * size)
                    .map(<[u8]>::to_vec)
                    .ok_or(ApiError::NotFound { what: "frame" })
            })
            .collect();
    }
    let fragments = pixels.value().fragments().unwrap_or_default();
    if count == 1 {
        return Ok(vec![fragments.concat()]);
    }
    if fragments.len() != count {
        return Err(ApiError::NotAcceptable(
            "this instance's frames span several fragments and cannot be served apart".to_owned(),
        ));
    }
    Ok(wanted.iter().map(|&n| fragments[n - 1].clone()).collect())
}

/// `GET …/instances/{instance}/rendered`: the derive stage's preview
/// (JPEG, at most 2048 px; `202 derive_pending` until it is made).
#[utoipa::path(get, path = "/dicomweb/studies/{study}/series/{series}/instances/{instance}/rendered", tag = "dicomweb",
    params(("study" = String, Path, description = "Study Instance UID", pattern = "^[0-9.]{1,64}$"),
        ("series" = String, Path, description = "Series Instance UID", pattern = "^[0-9.]{1,64}$"),
        ("instance" = String, Path, description = "SOP Instance UID", pattern = "^[0-9.]{1,64}$")), security(("bearer" = [])),
    responses((status = 200, description = "JPEG", content_type = "image/jpeg"),
        (status = 202, description = "Derive has not finished; retry", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 406, body = ErrorBody)))]
pub async fn rendered(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    path: DicomPath,
) -> Result<Response, ApiError> {
    rendition(&state, &caller, &headers, &path, "preview").await
}

/// `GET …/instances/{instance}/thumbnail`: the derive stage's thumbnail
/// (JPEG, at most 256 px).
#[utoipa::path(get, path = "/dicomweb/studies/{study}/series/{series}/instances/{instance}/thumbnail", tag = "dicomweb",
    params(("study" = String, Path, description = "Study Instance UID", pattern = "^[0-9.]{1,64}$"),
        ("series" = String, Path, description = "Series Instance UID", pattern = "^[0-9.]{1,64}$"),
        ("instance" = String, Path, description = "SOP Instance UID", pattern = "^[0-9.]{1,64}$")), security(("bearer" = [])),
    responses((status = 200, description = "JPEG", content_type = "image/jpeg"),
        (status = 202, description = "Derive has not finished; retry", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 406, body = ErrorBody)))]
pub async fn thumbnail(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    path: DicomPath,
) -> Result<Response, ApiError> {
    rendition(&state, &caller, &headers, &path, "thumbnail").await
}

async fn rendition(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    path: &DicomPath,
    kind: &str,
) -> Result<Response, ApiError> {
    if !accepts_single(headers, "image/jpeg") {
        return Err(ApiError::NotAcceptable(
            "renditions are image/jpeg".to_owned(),
        ));
    }
    let found = find(state, caller, path, DicomAccess::Retrieve).await?;
    let Some(instance) = found.into_iter().next() else {
        return Err(ApiError::NotFound { what: "instance" });
    };
    let image = ready(instance.image)?;
    // Conditional and range headers apply to the JPEG, not the request's
    // Accept; pass on only those.
    let mut conditional = HeaderMap::new();
    for name in [header::IF_NONE_MATCH, header::RANGE] {
        if let Some(v) = headers.get(&name) {
            conditional.insert(name, v.clone());
        }
    }
    serve_kind(state, &image, kind, &conditional).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lists_are_numbers_from_one() {
        assert_eq!(frame_list("1,3").ok(), Some(vec![1, 3]));
        assert!(frame_list("0").is_err());
        assert!(frame_list("").is_err());
        assert!(frame_list("1,x").is_err());
        // What the OpenAPI pattern refuses, the server refuses too.
        for refused in ["01", "+1", " 1", "1, 2", "1,,2", "1,"] {
            assert!(frame_list(refused).is_err(), "{refused:?}");
        }
        // Well-formed but past any frame: not a bad request, a missing frame.
        assert_eq!(
            frame_list("7,72515003872090417908240").ok(),
            Some(vec![7, usize::MAX])
        );
    }

    #[test]
    fn compressed_frames_keep_their_media_type() {
        assert_eq!(
            frame_media_type("1.2.840.10008.1.2.1"),
            Some("application/octet-stream")
        );
        assert_eq!(
            frame_media_type("1.2.840.10008.1.2.4.50"),
            Some("image/jpeg")
        );
        assert_eq!(frame_media_type("1.2.840.10008.1.2.2"), None);
    }
}
