//! Liveness and readiness, for load balancers and orchestrators.

use std::time::Duration;

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

/// How long `/readyz` waits for each store. A store that hangs (a server
/// that accepts connections and never answers) is not ready: it gets a 503
/// saying so, not the request deadline's 408 half a minute later. Longer
/// than the database pool's acquire timeout and the S3 client's retries of
/// a refused connection, so that a store that is down still says why.
const CHECK_TIMEOUT: Duration = Duration::from_secs(6);

/// `GET /readyz`: the database answers and the blob store takes a durable write.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let (database, blobs) = tokio::join!(
        within(CHECK_TIMEOUT, async {
            state.catalog.ping().await.map_err(|e| e.to_string())
        }),
        within(CHECK_TIMEOUT, async {
            state.blobs.probe().await.map_err(|e| e.to_string())
        }),
    );
    let ready = database.is_ok() && blobs.is_ok();
    if let Err(error) = &database {
        tracing::warn!(%error, "readiness: database failed");
    }
    if let Err(error) = &blobs {
        tracing::warn!(%error, "readiness: blob store failed");
    }
    let describe = |r: Result<(), String>| r.err().unwrap_or_else(|| "ok".to_owned());
    let body = Readiness {
        status: if ready { "ready" } else { "unavailable" },
        database: describe(database),
        blobs: describe(blobs),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// A check's outcome, or a failure when it has not answered within `limit`.
async fn within(
    limit: Duration,
    check: impl Future<Output = Result<(), String>>,
) -> Result<(), String> {
    tokio::time::timeout(limit, check)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", limit.as_secs())))
}
