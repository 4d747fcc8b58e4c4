//! `/api/v1/cases`: offices create and follow their referrals; specialists
//! and admins read within their scope.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use relay_workers::catalog::{CaseQuery, Page};
use relay_workers::model::{CancelReason, Case, CasePatch, CaseStatus, NewCase, Timestamp};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Caller, CasePath, JsonBody};

const DEFAULT_PER_PAGE: u32 = 25;
const MAX_PER_PAGE: u32 = 100;

/// `POST /api/v1/cases`
#[utoipa::path(post, path = "/api/v1/cases", tag = "cases", request_body = NewCase,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The new draft case", body = Case),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create_case(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(new): ApiJson<NewCase>,
) -> Result<(StatusCode, Json<Case>), ApiError> {
    let office = caller.office()?;
    let case = Case::draft(new, office, caller.principal.user_id(), Timestamp::now());
    state.catalog.create_case(&caller.audit, &case).await?;
    tracing::info!(case.id = %case.id, "case created");
    Ok((StatusCode::CREATED, Json(case)))
}

/// Paging and filters for `GET /api/v1/cases`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only cases in this status.
    #[param(value_type = Option<CaseStatus>)]
    status: Option<String>,
    /// 1-based page number.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 4294967295_u64)]
    page: Option<u32>,
    /// Cases per page, at most 100.
    #[param(minimum = 1, maximum = 100)]
    per_page: Option<u32>,
}

/// `GET /api/v1/cases`: newest first, within the caller's scope.
#[utoipa::path(get, path = "/api/v1/cases", tag = "cases", params(ListParams),
    security(("bearer" = [])),
    responses((status = 200, body = Page<Case>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_cases(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Page<Case>>, ApiError> {
    let status = params
        .status
        .as_deref()
        .map(CaseStatus::parse)
        .transpose()
        .map_err(|e| ApiError::InvalidQuery(e.to_string()))?;
    let page = params.page.unwrap_or(1);
    let per_page = params.per_page.unwrap_or(DEFAULT_PER_PAGE);
    if page == 0 || per_page == 0 || per_page > MAX_PER_PAGE {
        return Err(ApiError::InvalidQuery(format!(
            "page must be at least 1 and per_page between 1 and {MAX_PER_PAGE}"
        )));
    }
    let query = CaseQuery {
        status,
        page,
        per_page,
    };
    let cases = state
        .catalog
        .list_cases(&caller.audit, caller.scope(), &query)
        .await?;
    Ok(Json(cases))
}

/// `GET /api/v1/cases/{id}`
#[utoipa::path(get, path = "/api/v1/cases/{id}", tag = "cases",
    params(("id" = String, Path, description = "Case id")),
    security(("bearer" = [])),
    responses((status = 200, body = Case), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_case(
    State(state): State<AppState>,
    caller: Caller,
    CasePath(id): CasePath,
) -> Result<Json<Case>, ApiError> {
    let case = state
        .catalog
        .get_case(&caller.audit, caller.scope(), id)
        .await?;
    Ok(Json(case))
}

/// `PATCH /api/v1/cases/{id}`: edit a draft. Absent fields are kept; a
/// clinical field sent as `null` is cleared.
#[utoipa::path(patch, path = "/api/v1/cases/{id}", tag = "cases", request_body = CasePatch,
    params(("id" = String, Path, description = "Case id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Case), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The case is no longer a draft", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn update_case(
    State(state): State<AppState>,
    caller: Caller,
    CasePath(id): CasePath,
    ApiJson(patch): ApiJson<CasePatch>,
) -> Result<Json<Case>, ApiError> {
    caller.office()?;
    let case = state
        .catalog
        .update_case(&caller.audit, caller.scope(), id, patch)
        .await?;
    tracing::info!(case.id = %case.id, "case updated");
    Ok(Json(case))
}

/// Why the office withdraws the case.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    pub reason: CancelReason,
}

/// `POST /api/v1/cases/{id}/cancel`: withdraw a case before it is reported.
#[utoipa::path(post, path = "/api/v1/cases/{id}/cancel", tag = "cases", request_body = CancelRequest,
    params(("id" = String, Path, description = "Case id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Case), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn cancel_case(
    State(state): State<AppState>,
    caller: Caller,
    CasePath(id): CasePath,
    ApiJson(request): ApiJson<CancelRequest>,
) -> Result<Json<Case>, ApiError> {
    caller.office()?;
    let case = state
        .catalog
        .cancel_case(&caller.audit, caller.scope(), id, request.reason)
        .await?;
    tracing::info!(case.id = %case.id, "case cancelled");
    Ok(Json(case))
}

impl JsonBody for CancelRequest {}
