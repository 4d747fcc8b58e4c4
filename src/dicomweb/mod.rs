//! DICOMweb (PS3.18): the door viewers, PACS and scripts already speak.
//!
//! STOW-RS stores through the one ingest path (`stow.rs`), QIDO-RS searches
//! the attributes ingest indexed (`qido.rs`), WADO-RS serves the stored
//! bytes, their metadata, frames and the derive stage's renditions
//! (`wado.rs`). Every route authenticates and scopes like the rest of the
//! API: a study outside the caller's scope answers `404` exactly like one
//! that does not exist, and every read or write leaves its audit event.

mod dicom_json;
mod multipart_related;
mod qido;
mod stow;
mod wado;

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::AppState;
use crate::http::error::ApiError;

/// The media type of DICOM JSON answers (exactly this: clients compare it).
pub(crate) const DICOM_JSON: &str = "application/dicom+json";

/// The DICOMweb routes, under `/dicomweb`. They stream (no body limit, no
/// deadline): STOW bounds each part itself, as ingest bounds uploads.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stow::store, qido::search_studies))
        .routes(routes!(stow::store_in_study, wado::retrieve_study))
        .routes(routes!(qido::search_all_series))
        .routes(routes!(qido::search_study_series))
        .routes(routes!(qido::search_study_instances))
        .routes(routes!(qido::search_series_instances))
        .routes(routes!(wado::study_metadata))
        .routes(routes!(wado::retrieve_series))
        .routes(routes!(wado::series_metadata))
        .routes(routes!(wado::retrieve_instance))
        .routes(routes!(wado::instance_metadata))
        .routes(routes!(wado::frames))
        .routes(routes!(wado::rendered))
        .routes(routes!(wado::thumbnail))
}

/// The UIDs in a DICOMweb path. A malformed UID answers `404` like an
/// unknown one, naming the level that was not found.
#[derive(Debug, Clone, Default)]
pub(crate) struct DicomPath {
    pub study: Option<String>,
    pub series: Option<String>,
    pub instance: Option<String>,
    /// The raw frame list of `/frames/{frames}`.
    pub frames: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for DicomPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound { what: "study" })?;
        let mut path = DicomPath::default();
        for (name, value) in &params {
            let uid = |what: &'static str| {
                if is_uid(value) {
                    Ok(Some(value.to_owned()))
                } else {
                    Err(ApiError::NotFound { what })
                }
            };
            match name {
                "study" => path.study = uid("study")?,
                "series" => path.series = uid("series")?,
                "instance" => path.instance = uid("instance")?,
                "frames" => path.frames = Some(value.to_owned()),
                _ => {}
            }
        }
        Ok(path)
    }
}

/// A DICOM UID: digits and dots, at most 64 characters.
pub(crate) fn is_uid(text: &str) -> bool {
    !text.is_empty() && text.len() <= 64 && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Where retrieve URLs point: the request's own origin (`https` when the
/// site is served over TLS), or a path alone without a `Host`.
pub(crate) fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    let scheme = if state.secure_cookies {
        "https"
    } else {
        "http"
    };
    headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', ' ', '"']))
        .map(|host| format!("{scheme}://{host}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_digits_and_dots() {
        assert!(is_uid("1.2.840.10008.5.1.4.1.1.2"));
        assert!(!is_uid(""));
        assert!(!is_uid("1.2.x"));
        assert!(!is_uid(&"1".repeat(65)));
    }
}
