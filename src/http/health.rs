//! Liveness and readiness, for load balancers and orchestrators.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use super::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// One dependency's state: `ok`, or what is wrong with it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub status: &'static str,
    pub database: String,
    pub blobs: String,
}

/// `GET /healthz`: the process is up and answering.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// `GET /readyz`: the database answers and the blob store takes a durable write.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let (database, blobs) = tokio::join!(state.catalog.ping(), state.blobs.probe());
    let ready = database.is_ok() && blobs.is_ok();
    let describe = |r: Result<(), String>| r.err().unwrap_or_else(|| "ok".to_owned());
    if let Err(error) = &database {
        tracing::warn!(%error, "readiness: database failed");
    }
    if let Err(error) = &blobs {
        tracing::warn!(%error, "readiness: blob store failed");
    }
    let body = Readiness {
        status: if ready { "ready" } else { "unavailable" },
        database: describe(database.map_err(|e| e.to_string())),
        blobs: describe(blobs.map_err(|e| e.to_string())),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
