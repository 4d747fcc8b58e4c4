//! The consult loop over HTTP: specialists work their worklist, claim a
//! case, write and sign the report or ask for more; offices answer, read the
//! report, acknowledge it, and follow their notifications.

use axum::Json;
use axum::extract::State;
use relay_workers::catalog::{HistoryEntry, Page};
use relay_workers::model::{
    Case, CaseMessage, Notification, OfficeId, Principal, Priority, Report, ReportDraft,
    ReportText, WorklistItem, WorklistQuery,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Caller, CasePath, JsonBody};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WorklistParams {
    /// routine, urgent or stat.
    #[param(value_type = Option<Priority>)]
    priority: Option<String>,
    /// Only this office's cases.
    office: Option<OfficeId>,
    /// Only cases past their service level.
    overdue: Option<bool>,
    /// Only the cases you hold a claim on.
    mine: Option<bool>,
    #[param(value_type = Option<u64>, minimum = 1, maximum = 4294967295_u64)]
    page: Option<u32>,
    /// At most 100; default 25.
    #[param(minimum = 1, maximum = 100)]
    per_page: Option<u32>,
}

/// `GET /api/v1/worklist`: submitted cases of your specialty, by priority,
/// overdue first, then by how long they have waited.
#[utoipa::path(get, path = "/api/v1/worklist", tag = "consult", params(WorklistParams), security(("bearer" = [])),
    responses((status = 200, body = Page<WorklistItem>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn worklist(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<WorklistParams>,
) -> Result<Json<Page<WorklistItem>>, ApiError> {
    let (me, specialty) = caller.specialist()?;
    let priority = params
        .priority
        .as_deref()
        .map(Priority::parse)
        .transpose()
        .map_err(|e| ApiError::InvalidQuery(e.to_string()))?;
    let (page, per_page) = (params.page.unwrap_or(1), params.per_page.unwrap_or(25));
    if page == 0 || per_page == 0 || per_page > 100 {
        return Err(ApiError::InvalidQuery(
            "page must be at least 1 and per_page between 1 and 100".to_owned(),
        ));
    }
    let query = WorklistQuery {
        priority,
        office: params.office,
        overdue_only: params.overdue.unwrap_or(false),
        mine: params.mine.unwrap_or(false),
        page,
        per_page,
    };
    Ok(Json(
        state
            .catalog
            .worklist(&caller.audit, me, specialty, &query)
            .await?,
    ))
}

/// `POST /api/v1/cases/{id}/claim`: take the case for the claim lease
/// (default 30 minutes); renew with `/claim/renew`.
#[utoipa::path(post, path = "/api/v1/cases/{id}/claim", tag = "consult", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Case), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "already_claimed by another specialist, or not claimable", body = ErrorBody)))]
pub async fn claim(
    State(state): State<AppState>,
    caller: Caller,
    CasePath(id): CasePath,
) -> Result<Json<Case>, ApiError> {
    let (me, _) = caller.specialist()?;
    Ok(Json(
        state
            .catalog
            .claim_case(&caller.audit, caller.scope(), me, id, state.claim_lease)
            .await?,
    ))
}

/// `POST /api/v1/cases/{id}/claim/renew`: extend your claim while you work.
#[utoipa::path(post, path = "/api/v1/cases/{id}/claim/renew", tag = "consult", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Case), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn renew(
    State(state): State<AppState>,
    caller: Caller,
    CasePath(id): CasePath,
) -> Result<Json<Case>, ApiError> {
    let (me, _) = caller.specialist()?;
    Ok(Json(
        state
            .catalog
            .claim_case(&caller.audit, caller.scope(), me, id, state.claim_lease)
            .await?,
    ))
}

/// `POST /api/v1/cases/{id}/release`: give the case back to the worklist.
#[utoipa::path(post, path = "/api/v1/cases/{id}/release", tag = "consult", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Case), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn release(
    State(state): State<AppState>,
    caller: Caller,
    CasePath(id): CasePath,
) -> Result<Json<Case>, ApiError> {
    let (me, _) = caller.specialist()?;
    Ok(Json(
        state
            .catalog
            .release_case(&caller.audit, caller.scope(), me, id)
            .await?,
    ))
}

/// `PUT /api/v1/cases/{id}/report`: save the draft (while holding the claim).
#[utoipa::path(put, path = "/api/v1/cases/{id}/report", tag = "consult", params(("id" = String, Path)), request_body = ReportDraft,
    security(("bearer" = [])),
    responses((status = 200, body = Report), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "claim_required", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn save_draft(
    State(state): State<AppState>,
    caller: Caller,
    CasePath(id): CasePath,
    ApiJson(draft): ApiJson<ReportDraft>,
) -> Result<Json<Report>, ApiError> {
    let (me, _) = caller.specialist()?;
    Ok(Json(
        state
            .catalog
            .save_report_draft(&caller.audit, caller.scope(), me, id, &draft)
            .await?,
    ))
}

/// `POST /api/v1/cases/{id}/report/sign`: sign the draft; it can never change after.
#[utoipa::path(post, path = "/api/v1/cases/{id}/report/sign", tag = "consult", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Report), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn sign(
    State(state): State<AppState>,
    caller: Caller,
    CasePath(id): CasePath,
) -> Result<Json<Report>, ApiError> {
    let (me, _) = caller.specialist()?;
    let report = state
        .catalog
        .sign_report(&caller.audit, caller.scope(), me, id)
        .await?;
    state.work_queued();
    tracing::info!(case.id = %id, "report signed");
    Ok(Json(report))
}

/// A text the client sends: a question, an answer, an addendum.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextBody {
    pub text: ReportText,
}

/// `POST /api/v1/cases/{id}/report/addenda`: a signed addition to a signed report.
#[utoipa::path(post, path = "/api/v1/cases/{id}/report/addenda", tag = "consult", params(("id" = String, Path)), request_body = TextBody,
    security(("bearer" = [])),
    responses((status = 200, body = Report), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn addendum(
    State(state): State<AppState>,
    caller: Caller,
    CasePath(id): CasePath,
    ApiJson(body): ApiJson<TextBody>,
) -> Result<Json<Report>, ApiError> {
    let (me, _) = caller.specialist()?;
    let report = state
        .catalog
        .add_addendum(&caller.audit, caller.scope(), me, id, &body.text)
        .await?;
    state.work_queued();
    Ok(Json(report))
}

/// `GET /api/v1/cases/{id}/report`: the signed report and its addenda
/// (specialists also see the draft).
#[utoipa::path(get, path = "/api/v1/cases/{id}/report", tag = "consult", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Report), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    CasePath(id): CasePath,
) -> Result<Json<Report>, ApiError> {
    let include_draft = matches!(caller.principal, Principal::Specialist { .. });
    Ok(Json(
        state
            .catalog
            .get_report(&caller.audit, caller.scope(), id, include_draft)
            .await?,
    ))
}

/// `POST /api/v1/cases/{id}/request-info`: ask the office a question; the
/// case waits for its answer.
#[utoipa::path(post, path = "/api/v1/cases/{id}/request-info", tag = "consult", params(("id" = String, Path)), request_body = TextBody,
    security(("bearer" = [])),
    responses((status = 200, body = Case), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn request_info(
    State(state): State<AppState>,
    caller: Caller,
    CasePath(id): CasePath,
    ApiJson(body): ApiJson<TextBody>,
) -> Result<Json<Case>, ApiError> {
    let (me, _) = caller.specialist()?;
    let case = state
        .catalog
        .request_info(&caller.audit, caller.scope(), me, id, &body.text)
        .await?;
    state.work_queued();
    Ok(Json(case))
}

/// `POST /api/v1/cases/{id}/answer`: the office answers (attach images first
/// if asked); the case returns to the worklist in its old place.
#[utoipa::path(post, path = "/api/v1/cases/{id}/answer", tag = "consult", params(("id" = String, Path)), request_body = TextBody,
    security(("bearer" = [])),
    responses((status = 200, body = Case), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn answer(
    State(state): State<AppState>,
    caller: Caller,
    CasePath(id): CasePath,
    ApiJson(body): ApiJson<TextBody>,
) -> Result<Json<Case>, ApiError> {
    caller.office()?;
    Ok(Json(
        state
            .catalog
            .answer_info(
                &caller.audit,
                caller.scope(),
                caller.principal.user_id(),
                id,
                &body.text,
            )
            .await?,
    ))
}

/// `POST /api/v1/cases/{id}/acknowledge`: the office has read the report.
#[utoipa::path(post, path = "/api/v1/cases/{id}/acknowledge", tag = "consult", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Case), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn acknowledge(
    State(state): State<AppState>,
    caller: Caller,
    CasePath(id): CasePath,
) -> Result<Json<Case>, ApiError> {
    caller.office()?;
    Ok(Json(
        state
            .catalog
            .acknowledge(&caller.audit, caller.scope(), id)
            .await?,
    ))
}

/// `GET /api/v1/cases/{id}/messages`: questions and answers, in order.
#[utoipa::path(get, path = "/api/v1/cases/{id}/messages", tag = "consult", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Vec<CaseMessage>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn messages(
    State(state): State<AppState>,
    caller: Caller,
    CasePath(id): CasePath,
) -> Result<Json<Vec<CaseMessage>>, ApiError> {
    Ok(Json(
        state
            .catalog
            .case_messages(&caller.audit, caller.scope(), id)
            .await?,
    ))
}

/// `GET /api/v1/cases/{id}/history`: every status change, with actor and time.
#[utoipa::path(get, path = "/api/v1/cases/{id}/history", tag = "consult", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Vec<HistoryEntry>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    CasePath(id): CasePath,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    Ok(Json(
        state
            .catalog
            .case_history(&caller.audit, caller.scope(), id)
            .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NotificationParams {
    /// Only notifications not yet read.
    unread: Option<bool>,
}

/// `GET /api/v1/notifications`: what your office has been told (newest first).
#[utoipa::path(get, path = "/api/v1/notifications", tag = "consult", params(NotificationParams), security(("bearer" = [])),
    responses((status = 200, body = Vec<Notification>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn notifications(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<NotificationParams>,
) -> Result<Json<Vec<Notification>>, ApiError> {
    let office = caller.office()?;
    Ok(Json(
        state
            .catalog
            .notifications(office, params.unread.unwrap_or(false))
            .await?,
    ))
}

impl JsonBody for TextBody {}
