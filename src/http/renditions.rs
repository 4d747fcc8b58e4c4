//! What a viewer shows: thumbnails, previews, and DICOM frames rendered with
//! a window. Served like originals (verified, `ETag`, ranges); before derive
//! has finished they answer `202 derive_pending`, never a broken image.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use relay_workers::model::{DeriveState, Image, MediaType};
use relay_workers::stages::{StageDeps, rendered_frame};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiQuery, Caller};
use super::images::serve_verified;

/// An image in scope whose renditions exist (or why they do not).
async fn ready_image(state: &AppState, caller: &Caller, raw_id: &str) -> Result<Image, ApiError> {
    let id = raw_id
        .parse()
        .map_err(|_| ApiError::NotFound { what: "image" })?;
    let image = state
        .catalog
        .get_image(&caller.audit, caller.scope(), id, true)
        .await?;
    ready(image)
}

/// The image, if derive has made its renditions; otherwise why not
/// (`202 derive_pending`, or `404` when it cannot or did not).
pub(crate) fn ready(image: Image) -> Result<Image, ApiError> {
    match image.derive_state {
        DeriveState::Ready => Ok(image),
        DeriveState::Pending => Err(ApiError::DerivePending),
        DeriveState::Unsupported | DeriveState::Failed => Err(ApiError::NoRendition {
            state: image.derive_state,
            reason: image.derive_error.clone().unwrap_or_default(),
        }),
    }
}

async fn serve_rendition(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
    kind: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let image = ready_image(state, caller, raw_id).await?;
    serve_kind(state, &image, kind, headers).await
}

/// Serves `image`'s rendition of `kind` (`thumbnail`, `preview`), read in
/// scope and audited by the caller, verified like an original.
pub(crate) async fn serve_kind(
    state: &AppState,
    image: &Image,
    kind: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let rendition = state
        .catalog
        .rendition(image.id, kind, 0, "")
        .await?
        .ok_or(ApiError::DerivePending)?;
    serve_verified(
        state,
        image.id,
        rendition.sha256,
        rendition.size,
        &rendition.media_type,
        headers,
    )
    .await
}

/// `GET /api/v1/images/{id}/thumbnail`: at most 256 px, upright.
#[utoipa::path(get, path = "/api/v1/images/{id}/thumbnail", tag = "images",
    params(("id" = String, Path, description = "Image id")), security(("bearer" = [])),
    responses((status = 200, description = "JPEG", content_type = "image/jpeg"),
        (status = 202, description = "Derive has not finished; retry", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn thumbnail(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve_rendition(&state, &caller, &id, "thumbnail", &headers).await
}

/// `GET /api/v1/images/{id}/preview`: at most 2048 px, upright; frame 0 of DICOM.
#[utoipa::path(get, path = "/api/v1/images/{id}/preview", tag = "images",
    params(("id" = String, Path, description = "Image id")), security(("bearer" = [])),
    responses((status = 200, description = "JPEG", content_type = "image/jpeg"),
        (status = 202, description = "Derive has not finished; retry", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn preview(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve_rendition(&state, &caller, &id, "preview", &headers).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FrameParams {
    /// `center,width` of the VOI window, e.g. `40,400`; default: the file's.
    window: Option<String>,
}

/// `GET /api/v1/images/{id}/frames/{n}/rendered`: one DICOM frame, rendered
/// on first request from the stored original and kept as a derivative.
#[utoipa::path(get, path = "/api/v1/images/{id}/frames/{n}/rendered", tag = "images",
    params(("id" = String, Path, description = "Image id"), ("n" = u32, Path, description = "Frame, from 0"), FrameParams),
    security(("bearer" = [])),
    responses((status = 200, description = "JPEG", content_type = "image/jpeg"),
        (status = 202, description = "Derive has not finished; retry", body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn frame(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, n)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<FrameParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let image = ready_image(&state, &caller, &id).await?;
    let frames = image.frames.unwrap_or(1);
    let frame: u32 = n
        .parse()
        .map_err(|_| ApiError::NotFound { what: "frame" })?;
    if image.media_type != MediaType::Dicom || frame >= frames {
        return Err(ApiError::NotFound { what: "frame" });
    }
    let window = params.window.as_deref().map(parse_window).transpose()?;
    let deps = StageDeps {
        catalog: state.catalog.clone(),
        blobs: state.blobs.clone(),
        webhooks: relay_workers::webhook::TargetPolicy::default(),
        mail: None,
        escalate_to: Vec::new(),
    };
    let rendition = rendered_frame(&deps, &image, frame, window).await?;
    serve_verified(
        &state,
        image.id,
        rendition.sha256,
        rendition.size,
        &rendition.media_type,
        &headers,
    )
    .await
}

fn parse_window(text: &str) -> Result<(f64, f64), ApiError> {
    let bad = || {
        ApiError::InvalidQuery(
            "window must be center,width with a positive width, e.g. 40,400".to_owned(),
        )
    };
    let (c, w) = text.split_once(',').ok_or_else(bad)?;
    let center: f64 = c.trim().parse().map_err(|_| bad())?;
    let width: f64 = w.trim().parse().map_err(|_| bad())?;
    if !center.is_finite() || !width.is_finite() || width <= 0.0 {
        return Err(bad());
    }
    Ok((center, width))
}
