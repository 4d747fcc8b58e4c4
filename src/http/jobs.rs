//! `/api/v1/admin/jobs`: administrators see and steer the job queue.

use axum::Json;
use axum::extract::{Path, State};
use relay_workers::queue::{JobFilter, JobRecord, JobState};
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiQuery, Caller};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobParams {
    /// queued, running, done, dead or cancelled.
    #[param(value_type = Option<JobState>)]
    state: Option<String>,
    kind: Option<String>,
    /// At most 1000; default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// `GET /api/v1/admin/jobs`
#[utoipa::path(get, path = "/api/v1/admin/jobs", tag = "admin", params(JobParams), security(("bearer" = [])),
    responses((status = 200, body = Vec<JobRecord>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<JobParams>,
) -> Result<Json<Vec<JobRecord>>, ApiError> {
    caller.require_admin()?;
    let job_state = params
        .state
        .as_deref()
        .map(JobState::parse)
        .transpose()
        .map_err(|e| ApiError::InvalidQuery(e.to_string()))?;
    let limit = params.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::InvalidQuery(
            "limit must be between 1 and 1000".to_owned(),
        ));
    }
    let filter = JobFilter {
        state: job_state,
        kind: params.kind,
        limit,
    };
    Ok(Json(state.catalog.list_jobs(&filter).await?))
}

/// `GET /api/v1/admin/jobs/{id}`
#[utoipa::path(get, path = "/api/v1/admin/jobs/{id}", tag = "admin", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = JobRecord), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<JobRecord>, ApiError> {
    caller.require_admin()?;
    Ok(Json(state.catalog.get_job(job_id(&id)?).await?))
}

/// `POST /api/v1/admin/jobs/{id}/retry`: a dead or cancelled job runs again.
#[utoipa::path(post, path = "/api/v1/admin/jobs/{id}/retry", tag = "admin", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = JobRecord), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn retry_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<JobRecord>, ApiError> {
    caller.require_admin()?;
    let job = state.catalog.retry_job(job_id(&id)?).await?;
    state.work_queued();
    Ok(Json(job))
}

/// `POST /api/v1/admin/jobs/{id}/cancel`: a queued or dead job will not run.
#[utoipa::path(post, path = "/api/v1/admin/jobs/{id}/cancel", tag = "admin", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = JobRecord), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<JobRecord>, ApiError> {
    caller.require_admin()?;
    Ok(Json(state.catalog.cancel_job(job_id(&id)?).await?))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Retried {
    pub retried: u64,
}

/// `POST /api/v1/admin/jobs/retry-dead`: every dead job runs again.
#[utoipa::path(post, path = "/api/v1/admin/jobs/retry-dead", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Retried), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn retry_dead(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Retried>, ApiError> {
    caller.require_admin()?;
    Ok(Json(Retried {
        retried: state.catalog.retry_dead().await?,
    }))
}

fn job_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound { what: "job" })
}
