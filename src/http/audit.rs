//! `/api/v1/audit`: administrators search the audit trail. The search is
//! itself recorded.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use relay_workers::audit::{AuditEvent, AuditFilter};
use relay_workers::model::{OfficeId, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiQuery, Caller};

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// Filters for the audit search; all combine.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// The acting user id (or `operator`).
    actor: Option<String>,
    /// An action (`case.read`) or a family of them (`case.`).
    action: Option<String>,
    /// The object acted on, e.g. a case id.
    object_id: Option<String>,
    office_id: Option<OfficeId>,
    /// RFC 3339; events at or after.
    since: Option<DateTime<Utc>>,
    /// RFC 3339; events before.
    until: Option<DateTime<Utc>>,
    /// Page backwards: events with a smaller id than this.
    before_id: Option<i64>,
    /// At most 1000; default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// A page of events, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEvent>,
    /// Pass as `before_id` for the next (older) page; absent on the last.
    pub next_before_id: Option<i64>,
}

/// `GET /api/v1/audit`
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditParams),
    security(("bearer" = [])),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require_admin()?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::InvalidQuery(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let filter = AuditFilter {
        actor: params.actor,
        action: params.action,
        object_id: params.object_id,
        office_id: params.office_id,
        since: params.since.map(Timestamp::from),
        until: params.until.map(Timestamp::from),
        before_id: params.before_id,
        limit,
    };
    let items = state.catalog.list_audit(&caller.audit, &filter).await?;
    let next_before_id = (items.len() == limit as usize)
        .then(|| items.last().map(|e| e.id))
        .flatten();
    Ok(Json(AuditPage {
        items,
        next_before_id,
    }))
}
