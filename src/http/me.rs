//! `/api/v1/me`: who a token signs in as, so a client can check its token
//! before it uploads anything.

use axum::Json;
use relay_workers::model::{OfficeId, Principal, Role, Specialty, UserId};
use serde::Serialize;

use super::error::{ApiError, ErrorBody};
use super::extract::Caller;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    pub user_id: UserId,
    pub role: Role,
    pub office_id: Option<OfficeId>,
    pub specialty: Option<Specialty>,
}

/// `GET /api/v1/me`
#[utoipa::path(get, path = "/api/v1/me", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(caller: Caller) -> Result<Json<Me>, ApiError> {
    let p = &caller.principal;
    Ok(Json(Me {
        user_id: p.user_id(),
        role: p.role(),
        office_id: match p {
            Principal::Office { office, .. } => Some(*office),
            _ => None,
        },
        specialty: match p {
            Principal::Specialist { specialty, .. } => Some(*specialty),
            _ => None,
        },
    }))
}
