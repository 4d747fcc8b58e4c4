//! STOW-RS: `multipart/related` of Part 10 instances, each through the one
//! ingest path, answered with a DICOM JSON store report.
//!
//! Which case: `?case=ID` names one of the office's draft cases (otherwise
//! `404`, or `409` when it has left draft), checked before a byte is read;
//! without it, the C-STORE door's rule — the first instance of a Study
//! Instance UID opens a draft radiology case for the office, later ones
//! join it. Each part is spooled to disk (bounded by `max_upload_bytes`),
//! checked by ingest before it can open a case, then ingested. The answer
//! is `200` when every instance was stored, `202` when some failed, `409`
//! when none was; failures carry the DIMSE failure reasons the C-STORE
//! door uses, plus `C409` for an instance of another study than the URL's.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dicom_dictionary_std::tags;
use relay_workers::ingest::{CheckedDicom, IngestError};
use relay_workers::model::{Case, CaseId, OfficeId, Principal, Timestamp};
use serde::Deserialize;
use tempfile::NamedTempFile;
use tokio::io::AsyncWriteExt;
use utoipa::IntoParams;

use super::dicom_json::Dataset;
use super::multipart_related::stow_boundary;
use super::{DICOM_JSON, DicomPath, base_url};
use crate::dimse::status;
use crate::dimse::store::referral_via;
use crate::http::AppState;
use crate::http::drain::drain;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiQuery, Caller};
use crate::http::openapi::Binary;

/// An instance of another study than the one the request names
/// (the code dcm4chee uses for the same refusal).
const STUDY_MISMATCH: u16 = 0xC409;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StowParams {
    /// A draft case of the caller's office to store every instance in;
    /// without it, each study goes into its own draft case.
    case: Option<String>,
}

/// `POST /dicomweb/studies`
#[utoipa::path(post, path = "/dicomweb/studies", tag = "dicomweb", params(StowParams),
    request_body(content = Binary, content_type = "multipart/related",
        description = "multipart/related; type=\"application/dicom\": one Part 10 instance per part"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every instance stored: the store report", content_type = "application/dicom+json"),
        (status = 202, description = "Some instances failed (FailedSOPSequence)", content_type = "application/dicom+json"),
        (status = 409, description = "No instance stored", content_type = "application/dicom+json"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn store(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<StowParams>,
    request: Request,
) -> Result<Response, ApiError> {
    stow(state, caller, params, None, request).await
}

/// `POST /dicomweb/studies/{study}`: as `POST /dicomweb/studies`, refusing
/// instances of any other study.
#[utoipa::path(post, path = "/dicomweb/studies/{study}", tag = "dicomweb",
    params(("study" = String, Path, description = "Study Instance UID", pattern = "^[0-9.]{1,64}$"), StowParams),
    request_body(content = Binary, content_type = "multipart/related",
        description = "multipart/related; type=\"application/dicom\": one Part 10 instance per part"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every instance stored: the store report", content_type = "application/dicom+json"),
        (status = 202, description = "Some instances failed (FailedSOPSequence)", content_type = "application/dicom+json"),
        (status = 409, description = "No instance stored", content_type = "application/dicom+json"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn store_in_study(
    State(state): State<AppState>,
    caller: Caller,
    path: DicomPath,
    ApiQuery(params): ApiQuery<StowParams>,
    request: Request,
) -> Result<Response, ApiError> {
    stow(state, caller, params, path.study, request).await
}

/// One instance's outcome.
struct Outcome {
    sop_class: Option<String>,
    sop_instance: Option<String>,
    study: Option<String>,
    series: Option<String>,
    failure: Option<(u16, String)>,
}

impl Outcome {
    fn failed(code: u16, why: impl Into<String>) -> Self {
        Self {
            sop_class: None,
            sop_instance: None,
            study: None,
            series: None,
            failure: Some((code, why.into())),
        }
    }
}

async fn stow(
    state: AppState,
    caller: Caller,
    params: StowParams,
    study: Option<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let headers: HeaderMap = request.headers().clone();
    let mut body = request.into_body().into_data_stream();
    let (office, boundary, case) = match accept(&state, &caller, &headers, &params).await {
        Ok(accepted) => accepted,
        Err(error) => {
            // Read what the client is sending so it receives the refusal
            // rather than a reset connection.
            drain(&mut body).await;
            return Err(error);
        }
    };
    let mut multipart = multer::Multipart::new(body, boundary);
    let mut outcomes = Vec::new();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) if outcomes.is_empty() => {
                return Err(ApiError::InvalidMultipart(e.to_string()));
            }
            Err(e) => {
                // Instances before the break stay stored: report them.
                outcomes.push(Outcome::failed(
                    status::CANNOT_UNDERSTAND,
                    format!("the rest of the body is not valid multipart: {e}"),
                ));
                break;
            }
        };
        let outcome = store_part(&state, &caller, office, case, study.as_deref(), field).await;
        outcomes.push(outcome);
    }
    if outcomes.is_empty() {
        return Err(ApiError::InvalidMultipart(
            "the body holds no instance".to_owned(),
        ));
    }
    Ok(report(&outcomes, &base_url(&state, &headers)))
}

/// The caller's office, the body's boundary and the named case: refused
/// (`403`, `415`, `404`, `409`) before a byte of the body is used.
async fn accept(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    params: &StowParams,
) -> Result<(OfficeId, String, Option<CaseId>), ApiError> {
    let office = caller.office()?;
    let boundary = stow_boundary(headers)?;
    let case = match params.case.as_deref() {
        Some(raw) => {
            let id: CaseId = raw
                .parse()
                .map_err(|_| ApiError::NotFound { what: "case" })?;
            state.catalog.upload_target(caller.scope(), id).await?;
            Some(id)
        }
        None => None,
    };
    Ok((office, boundary, case))
}

/// Spools, checks and ingests one part; never fails the request.
async fn store_part(
    state: &AppState,
    caller: &Caller,
    office: OfficeId,
    case: Option<CaseId>,
    expected_study: Option<&str>,
    mut field: multer::Field<'_>,
) -> Outcome {
    let media = field
        .content_type()
        .map(|m| m.essence_str().to_ascii_lowercase());
    if media.as_deref().is_some_and(|m| m != "application/dicom") {
        return Outcome::failed(
            status::CANNOT_UNDERSTAND,
            "the part is not application/dicom",
        );
    }
    let file = match spool(state, &mut field).await {
        Ok(file) => file,
        Err(outcome) => return outcome,
    };
    let dicom = match state.ingest.check_dicom_file(file).await {
        Ok(dicom) => dicom,
        Err(error) => {
            tracing::info!(%error, "instance refused");
            return Outcome::failed(status::for_ingest(&error), error.to_string());
        }
    };
    let text = |key: &str| dicom.uid(key).to_owned();
    let mut outcome = Outcome {
        sop_class: Some(text("sop_class_uid")),
        sop_instance: Some(text("sop_instance_uid")),
        study: Some(text("study_instance_uid")),
        series: Some(text("series_instance_uid")),
        failure: None,
    };
    let study = text("study_instance_uid");
    if expected_study.is_some_and(|s| s != study) {
        outcome.failure = Some((
            STUDY_MISMATCH,
            "the instance belongs to another study than the request's".to_owned(),
        ));
        return outcome;
    }
    let case = match case {
        Some(case) => case,
        None => match study_case(state, caller, office, &study, &dicom).await {
            Ok(case) => case,
            Err(failure) => {
                outcome.failure = Some(failure);
                return outcome;
            }
        },
    };
    let filename = Some(format!("{}.dcm", text("sop_instance_uid")));
    let result = state
        .ingest
        .ingest_checked(
            &caller.audit,
            caller.principal.user_id(),
            caller.scope(),
            case,
            filename,
            dicom,
        )
        .await;
    state.work_queued();
    match result {
        Ok(ingested) => {
            tracing::info!(
                case.id = %case,
                image.id = %ingested.image.id,
                image.sha256 = %ingested.image.stored_sha256,
                study.uid = %study,
                created = ingested.created,
                "instance stored"
            );
        }
        Err(error) => outcome.failure = Some(ingest_failure(&error)),
    }
    outcome
}

/// The failure reason and text for an instance ingest did not store; a
/// server fault is logged here and described without its cause.
fn ingest_failure(error: &IngestError) -> (u16, String) {
    let code = status::for_ingest(error);
    match error {
        IngestError::Catalog(relay_workers::catalog::CatalogError::Conflict(why)) => {
            (status::PROCESSING_FAILURE, why.clone())
        }
        IngestError::Blob(_) | IngestError::Catalog(_) => {
            tracing::error!(%error, "instance not stored");
            (
                code,
                "the instance could not be stored; retry later".to_owned(),
            )
        }
        _ => (code, error.to_string()),
    }
}

/// Streams a part into a spool file, refusing it past `max_upload_bytes`.
async fn spool(state: &AppState, field: &mut multer::Field<'_>) -> Result<NamedTempFile, Outcome> {
    let limit = state.ingest.limits().max_bytes;
    let io_failure = |error: std::io::Error| {
        tracing::error!(%error, "cannot spool a received instance");
        Outcome::failed(
            status::OUT_OF_RESOURCES,
            "the instance could not be stored; retry later",
        )
    };
    let file = NamedTempFile::new_in(state.ingest.spool_dir()).map_err(io_failure)?;
    let mut out = tokio::fs::File::from_std(file.reopen().map_err(io_failure)?);
    let mut size = 0u64;
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                size += chunk.len() as u64;
                if size > limit {
                    return Err(Outcome::failed(
                        status::OUT_OF_RESOURCES,
                        format!("the instance is larger than the limit of {limit} bytes"),
                    ));
                }
                out.write_all(&chunk).await.map_err(io_failure)?;
            }
            Ok(None) => break,
            Err(e) => {
                return Err(Outcome::failed(
                    status::CANNOT_UNDERSTAND,
                    format!("the part was cut off: {e}"),
                ));
            }
        }
    }
    out.flush().await.map_err(io_failure)?;
    Ok(file)
}

/// The office's draft case for `study`: found, or opened from the
/// instance's patient attributes exactly as the C-STORE door opens it.
async fn study_case(
    state: &AppState,
    caller: &Caller,
    office: OfficeId,
    study: &str,
    dicom: &CheckedDicom,
) -> Result<CaseId, (u16, String)> {
    let new = referral_via(dicom, "DICOMweb (STOW-RS)")
        .map_err(|message| (status::CANNOT_UNDERSTAND, message))?;
    let Principal::Office { user, .. } = caller.principal else {
        return Err((status::PROCESSING_FAILURE, "not an office user".to_owned()));
    };
    let draft = Case::draft(new, office, user, Timestamp::now());
    match state.catalog.study_case(&caller.audit, study, &draft).await {
        Ok(found) => {
            if found.created {
                tracing::info!(case.id = %found.case_id, study.uid = study, "draft case opened for a study");
            }
            Ok(found.case_id)
        }
        Err(error) => {
            tracing::error!(%error, study.uid = study, "cannot find or open the study's case");
            Err((
                status::for_catalog(&error),
                "the study's case could not be opened; retry later".to_owned(),
            ))
        }
    }
}

/// The store report (PS3.18 Table 10.5.3-1) and its status.
fn report(outcomes: &[Outcome], base: &str) -> Response {
    let mut stored = Vec::new();
    let mut failed = Vec::new();
    for outcome in outcomes {
        let mut item = Dataset::new();
        if let Some(class) = &outcome.sop_class {
            item.text(tags::REFERENCED_SOP_CLASS_UID, "UI", Some(class));
        }
        if let Some(instance) = &outcome.sop_instance {
            item.text(tags::REFERENCED_SOP_INSTANCE_UID, "UI", Some(instance));
        }
        match &outcome.failure {
            None => {
                if let (Some(study), Some(series), Some(instance)) =
                    (&outcome.study, &outcome.series, &outcome.sop_instance)
                {
                    item.text(
                        tags::RETRIEVE_URL,
                        "UR",
                        Some(&format!(
                            "{base}/dicomweb/studies/{study}/series/{series}/instances/{instance}"
                        )),
                    );
                }
                stored.push(item);
            }
            Some((code, why)) => {
                tracing::info!(reason = code, %why, "instance not stored");
                item.number(tags::FAILURE_REASON, "US", Some(i64::from(*code)));
                failed.push(item);
            }
        }
    }
    let mut set = Dataset::new();
    let studies: std::collections::BTreeSet<&str> = outcomes
        .iter()
        .filter(|o| o.failure.is_none())
        .filter_map(|o| o.study.as_deref())
        .collect();
    if let [only] = studies.into_iter().collect::<Vec<_>>().as_slice() {
        set.text(
            tags::RETRIEVE_URL,
            "UR",
            Some(&format!("{base}/dicomweb/studies/{only}")),
        );
    }
    let status = match (stored.is_empty(), failed.is_empty()) {
        (false, true) => StatusCode::OK,
        (false, false) => StatusCode::ACCEPTED,
        (true, _) => StatusCode::CONFLICT,
    };
    set.sequence(tags::REFERENCED_SOP_SEQUENCE, stored)
        .sequence(tags::FAILED_SOP_SEQUENCE, failed);
    (
        status,
        [(header::CONTENT_TYPE, DICOM_JSON)],
        set.into_value().to_string(),
    )
        .into_response()
}
